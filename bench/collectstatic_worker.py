"""One collectstatic run for bench/collectstatic.py, in a fresh process of the
implementation's venv, with DJANGO_SETTINGS_MODULE naming the generated settings.
Prints {"wall": seconds of call_command("collectstatic"), "cpu": the process's CPU
seconds in it (all threads), "versions": ...}."""
from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    import django

    django.setup()
    from django.core.management import call_command

    t0, c0 = time.perf_counter(), time.process_time()
    call_command("collectstatic", interactive=False, verbosity=0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": sys.version.split()[0]}
    for dist in ("django", "django-s3-storage", "django-storages", "boto3", "django-capo-s3",
                 "collectfasta"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            pass
    json.dump({"wall": wall, "cpu": cpu, "versions": versions}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
