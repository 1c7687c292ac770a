#!/usr/bin/env bash
# The peers of the large-file benchmark, each in its own virtual environment under
# bench/venvs/ (ignored by git), from PyPI, with the Python and the Django of the
# checkout's own .venv (which `make build` makes):
#
#   bench/venvs/dss015    django-s3-storage==0.15.0
#   bench/venvs/storages  django-storages[s3]==1.14.6 (boto3 comes with it)
#
# Idempotent: a venv whose packages are already there is left alone.
#   VENV=path/to/.venv bench/peers.sh     (default: the checkout's .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || { echo "$VENV/bin/python is missing: run 'make build' first" >&2; exit 1; }

base=$("$VENV/bin/python" -c 'import sys; print(sys._base_executable)')
django=$("$VENV/bin/python" -c 'import django; print(django.get_version())')

peer() {  # peer NAME CHECK-MODULE PIP-SPEC...
  local name=$1 module=$2 dir=bench/venvs/$1
  shift 2
  if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "import $module, django, sys; sys.exit(django.get_version() != '$django')" 2>/dev/null; then
    echo "bench/venvs/$name: present"
    return 0
  fi
  [ -x "$dir/bin/python" ] || "$base" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "Django==$django" "$@"
  echo "bench/venvs/$name: made ($*, Django $django)"
}

peer dss015 django_s3_storage "django-s3-storage==0.15.0"
peer storages storages "django-storages[s3]==1.14.6"
# The small-operation and collectstatic benchmarks (bench/small.py, bench/collectstatic.py)
# add collectfasta to the django-storages venv (enabled only in the "+cf" settings) and capo:
#   bench/venvs/storages  + collectfasta==3.3.5
#   bench/venvs/capo      django-capo-s3==0.7.1
peer storages collectfasta "django-storages[s3]==1.14.6" "collectfasta==3.3.5"
peer capo capo_s3 "django-capo-s3==0.7.1"
