"""The package as users install it: the sdist and the manylinux wheel that
scripts/build-wheel makes (`python -m build` on the lean static libcurl and libxml2,
then `auditwheel repair`), the wheel installed (not editable) in a fresh virtual
environment outside the checkout, running a Django project there against the test
server. (scripts/test-all also runs the whole suite on that wheel, with Django 4.2.)

Marked `wheel`, which pyproject.toml's addopts deselects: building and installing
takes a while, so scripts/test-all runs this file once, with `-m wheel`.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import django
import pytest

import django_s3_storage

from conftest import BUCKET, S3Target

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "django_s3_storage"
PREFIX = f"wheel-{uuid.uuid4().hex[:12]}"


@dataclass
class Installed:
    wheel: Path
    sdist: Path
    build_log: str
    python: Path  # the fresh virtual environment's interpreter
    venv: Path
    site: Path  # the Django project, outside the checkout
    env: dict[str, str]


def run(cmd: list[str], timeout: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert out.returncode == 0, f"{cmd} exited {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


def user_env() -> dict[str, str]:
    """A user's shell, for pip: no PYTHONPATH, no virtual environment, no settings
    module of the test suite (pip keeps the machine's index, proxy and cache)."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE")
    return {k: v for k, v in os.environ.items() if k not in drop}


def site_env(tmp: Path) -> dict[str, str]:
    """For the Django project: besides, no AWS or proxy variables and no shared AWS
    files, so nothing can reach past the test server on 127.0.0.1."""
    env = {k: v for k, v in user_env().items()
           if not k.startswith("AWS_") and not k.lower().endswith("_proxy")}
    env.update(AWS_EC2_METADATA_DISABLED="true", PYTHONNOUSERSITE="1",
               AWS_CONFIG_FILE=str(tmp / "no-aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-aws-credentials"))
    return env


MANAGE_PY = """\
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

SETTINGS_PY = """\
SECRET_KEY = "wheel-test-not-secret"
USE_TZ = True
INSTALLED_APPS = ["django_s3_storage"]
DATABASES = {{}}
AWS_REGION = "us-east-1"
AWS_ACCESS_KEY_ID = {access_key!r}
AWS_SECRET_ACCESS_KEY = {secret_key!r}
AWS_S3_KEY_PREFIX = {prefix!r}  # this project's keys only, for s3_sync_meta
STORAGES = {{
    "default": {{
        "BACKEND": "django_s3_storage.storage.S3Storage",
        "OPTIONS": {{"aws_s3_endpoint_url": {endpoint!r}, "aws_s3_bucket_name": {bucket!r}}},
    }},
    "staticfiles": {{"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}},
}}
"""

# Where the package comes from, as the installed interpreter sees it.
PROBE_PY = """\
import importlib.metadata, json, sys
import django, django_s3_storage
from django_s3_storage import _s3
print(json.dumps({
    "file": django_s3_storage.__file__,
    "ext": _s3.__file__,
    "version": django_s3_storage.__version__,
    "VERSION": list(django_s3_storage.VERSION),
    "dist_version": importlib.metadata.version("django-s3-storage"),
    "django": django.get_version(),
    "prefix": sys.prefix,
    "path": sys.path,
}))
"""

ROUND_TRIP_PY = """\
import hashlib, json, os, sys, urllib.request
import django

django.setup()
from django.core.files.base import ContentFile
from django.core.files.storage import storages

storage = storages["default"]
data = os.urandom(4096) + b"from the wheel"
name = storage.save(sys.argv[1], ContentFile(data))
url = storage.url(name)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 only
with opener.open(url, timeout=30) as reply:
    fetched = reply.read()
with storage.open(name, "rb") as f:
    opened = f.read()
sha = lambda b: hashlib.sha256(b).hexdigest()
print(json.dumps({"class": type(storage).__module__ + "." + type(storage).__name__,
                  "name": name, "url": url, "saved": sha(data), "fetched": sha(fetched),
                  "opened": sha(opened)}))
"""

DELETE_PY = """\
import json, sys
import django

django.setup()
from django.core.files.storage import storages

storage = storages["default"]
storage.delete(sys.argv[1])
print(json.dumps({"exists_after_delete": storage.exists(sys.argv[1])}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, s3: S3Target) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    assert ROOT not in tmp.parents, "the virtual environment must lie outside the checkout"
    dist, venv, site = tmp / "dist", tmp / "venv", tmp / "site"
    pip_env = user_env()
    # python -m build (build isolation and all; -v shows the backend's warnings), repaired
    run([str(ROOT / "scripts" / "build-wheel"), sys.executable, str(dist)], timeout=900,
        cwd=tmp, env=pip_env)
    build_log = (dist / "build.log").read_text()
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    run([sys.executable, "-m", "venv", str(venv)], timeout=300, cwd=tmp, env=pip_env)
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", str(wheel),
         f"Django=={django.get_version()}"], timeout=600, cwd=tmp, env=pip_env)
    site.mkdir()
    (site / "manage.py").write_text(MANAGE_PY)
    (site / "site_settings.py").write_text(SETTINGS_PY.format(
        access_key=s3.access_key, secret_key=s3.secret_key, endpoint=s3.endpoint, bucket=BUCKET,
        prefix=PREFIX))
    (site / "round_trip.py").write_text(ROUND_TRIP_PY)
    (site / "delete.py").write_text(DELETE_PY)
    (site / "probe.py").write_text(PROBE_PY)
    return Installed(wheel, sdist, build_log, python, venv, site, site_env(tmp))


def test_wheel_carries_every_subpackage_the_typing_files_and_the_license(
        installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as zf:
        names = set(zf.namelist())
        dist_info = f"{PACKAGE}-{django_s3_storage.__version__}.dist-info"
        metadata = zf.read(f"{dist_info}/METADATA").decode()
        license_text = zf.read(f"{dist_info}/licenses/LICENSE").decode()
    for sub in (PACKAGE, *(p.parent.relative_to(ROOT).as_posix()
                           for p in (ROOT / PACKAGE).rglob("__init__.py"))):
        assert f"{sub}/__init__.py" in names, sub
    for rel in ("management/commands/s3_sync_meta.py", "py.typed", "_s3.pyi", "apps.py",
                "checks.py", "storage.py"):
        assert f"{PACKAGE}/{rel}" in names, rel
    assert any(n.startswith(f"{PACKAGE}/_s3.") and n.endswith(".so") for n in names)
    assert "Redistribution and use in source and binary forms" in license_text
    headers = metadata.split("\n\n", 1)[0].splitlines()
    assert f"Version: {django_s3_storage.__version__}" in headers
    assert "License-Expression: BSD-3-Clause" in headers
    assert "License-File: LICENSE" in headers
    for classifier in ("Framework :: Django :: 4.2", "Framework :: Django :: 5.2",
                       "Framework :: Django :: 6", "Framework :: Django :: 6.1",
                       "Programming Language :: Python :: 3.11",
                       "Programming Language :: Python :: 3.13"):
        assert f"Classifier: {classifier}" in headers
    # PEP 639: with a license expression, License :: classifiers are not allowed
    assert not [h for h in headers if h.startswith("Classifier: License ::")]
    assert any(h.startswith("Project-URL: Source, https://") for h in headers)
    # no deprecated configuration (the license table, packages installed "as data", ...)
    log = installed.build_log
    assert "deprecat" not in log.lower() and "BuildBackendWarning" not in log, log


def test_installed_package_is_the_wheels_not_the_checkouts(installed: Installed) -> None:
    out = run([str(installed.python), "probe.py"], timeout=60, cwd=installed.site,
              env=installed.env)
    probe = json.loads(out.stdout)
    venv = installed.venv.resolve()
    for key in ("file", "ext"):
        assert venv in Path(probe[key]).resolve().parents, probe[key]
    assert Path(probe["prefix"]).resolve() == venv
    assert all(not Path(p).resolve().is_relative_to(ROOT) for p in probe["path"] if p)
    package = Path(probe["file"]).parent
    assert (package / "management" / "commands" / "s3_sync_meta.py").is_file()
    assert (package / "py.typed").is_file() and (package / "_s3.pyi").is_file()
    assert probe["version"] == probe["dist_version"] == django_s3_storage.__version__
    assert tuple(probe["VERSION"]) == django_s3_storage.VERSION
    assert probe["django"] == django.get_version()


def test_manage_py_knows_the_command_and_passes_the_checks(installed: Installed) -> None:
    python, site, env = str(installed.python), installed.site, installed.env
    out = run([python, "manage.py", "s3_sync_meta", "--help"], timeout=60, cwd=site, env=env)
    assert "usage: manage.py s3_sync_meta" in out.stdout
    assert "--dry-run" in out.stdout and "STORAGES alias" in out.stdout
    out = run([python, "manage.py", "check"], timeout=60, cwd=site, env=env)
    assert "System check identified no issues" in out.stdout


def test_save_url_open_sync_meta_delete_from_the_installed_package(installed: Installed,
                                                                  s3: S3Target) -> None:
    python, site = str(installed.python), installed.site
    env = dict(installed.env, DJANGO_SETTINGS_MODULE="site_settings")
    name = "uploads/blob.bin"
    out = run([python, "round_trip.py", name], timeout=120, cwd=site, env=env)
    result = json.loads(out.stdout)
    assert result["class"] == "django_s3_storage.storage.S3Storage"
    assert result["name"] == name
    assert result["url"].startswith(f"{s3.endpoint}/{BUCKET}/{PREFIX}/{name}?")
    assert "X-Amz-Signature=" in result["url"]
    assert result["fetched"] == result["saved"] == result["opened"]
    # the management command itself, on the file just saved
    out = run([python, "manage.py", "s3_sync_meta", "django.core.files.storage.default_storage"],
              timeout=120, cwd=site, env=env)
    assert out.stdout.splitlines()[0] == name
    assert out.stdout.splitlines()[1].startswith("1 file rewritten in 1 storage in ")
    out = run([python, "manage.py", "s3_sync_meta", "default", "--dry-run"],
              timeout=120, cwd=site, env=env)
    assert out.stdout.splitlines()[0] == name
    out = run([python, "delete.py", name], timeout=60, cwd=site, env=env)
    assert json.loads(out.stdout) == {"exists_after_delete": False}


def test_the_wheel_is_manylinux_bundles_openssl_alone_and_its_size_is_in_the_readme(
        installed: Installed) -> None:
    assert "-manylinux_" in installed.wheel.name, installed.wheel.name
    with zipfile.ZipFile(installed.wheel) as zf:
        libs = sorted(n.split("/", 1)[1] for n in zf.namelist()
                      if n.startswith(f"{PACKAGE}.libs/") and not n.endswith("/"))
        sbom = zf.read(next(n for n in zf.namelist() if n.endswith("auditwheel.cdx.json")))
    # libcurl and libxml2 are inside the extension; zlib and glibc are the system's
    assert [lib.split("-")[0] for lib in libs] == ["libcrypto", "libssl"], libs
    assert b"curl" not in sbom and b"xml2" not in sbom
    size_mib = installed.wheel.stat().st_size / 2**20
    assert size_mib < 4, size_mib
    readme = (ROOT / "README.rst").read_text()
    m = re.search(r"The wheel is ([0-9.]+) MiB", readme)
    assert m, "README.rst must give the wheel's size"
    assert abs(float(m.group(1)) - size_mib) <= 0.2, (m.group(1), size_mib)


def test_the_sdist_builds_the_extension_from_source(installed: Installed) -> None:
    with tarfile.open(installed.sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for rel in ("setup.py", "pyproject.toml", "scripts/build-deps", "scripts/build-wheel",
                "csrc/client.c", "csrc/client.h", "django_s3_storage/_s3.pyi", "LICENSE",
                "README.rst"):
        assert rel in names, rel
    assert not [n for n in names if n.endswith((".so", ".o", ".a"))]


LEAN_PY = """\
import json
import django_s3_storage.storage
from django_s3_storage import _s3
maps = open("/proc/self/maps").read()
print(json.dumps({"curl": _s3.curl_version, "ext": _s3.__file__,
                  "heavy": [n for n in ("libcurl.so", "libxml2.so", "libldap", "libgnutls",
                                        "libicu", "libsasl2") if n in maps]}))
"""


def test_the_installed_wheel_loads_its_own_lean_libcurl(installed: Installed) -> None:
    (installed.site / "lean.py").write_text(LEAN_PY)
    out = run([str(installed.python), "lean.py"], timeout=60, cwd=installed.site,
              env=installed.env)
    probe = json.loads(out.stdout)
    assert probe["heavy"] == []
    assert installed.venv.resolve() in Path(probe["ext"]).resolve().parents
    assert [p.split("/")[0] for p in probe["curl"].split()] == ["libcurl", "OpenSSL", "zlib"]
