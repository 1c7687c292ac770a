"""A quick collectstatic measure (the full benchmark against peers is elsewhere):
Django admin plus N generated files (css referencing a png, js, png) collected into
ManifestStaticS3Storage on a moto server of its own, through bench/proxy.py: a
CountingProxy adding the round trip in front of a FaultProxy counting requests by
method. First run, then an unchanged re-run, in one process.

    python bench/cs_quick.py new|old [--rtt 0.02] [--files 10]

With S3_TEST_ENDPOINT_URL, S3_TEST_ACCESS_KEY and S3_TEST_SECRET_KEY set (scripts/rgw
start prints them) it uses that server (Ceph RGW on 127.0.0.1) instead of moto, and
a bucket of its own there.

"new": the package's collectstatic command (the storage's collecting() run);
"old": Django's own command, the sequence of requests 0.15 sends."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

from proxy import CountingProxy, FaultProxy, Rule  # noqa: E402
from servers import MotoServer  # noqa: E402

BUCKET = "static-bench"
METHODS = ("GET", "HEAD", "PUT", "DELETE", "POST")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("new", "old"))
    ap.add_argument("--rtt", type=float, default=0.02, help="round trip added, seconds")
    ap.add_argument("--files", type=int, default=10, help="css, js and png files each")
    args = ap.parse_args()
    import boto3
    import django
    from django.conf import settings

    endpoint = os.environ.get("S3_TEST_ENDPOINT_URL")
    server = None if endpoint else MotoServer()
    if server is not None:
        endpoint, access, secret = server.endpoint, "t", "t"
    else:
        access, secret = os.environ["S3_TEST_ACCESS_KEY"], os.environ["S3_TEST_SECRET_KEY"]
    bucket = f"{BUCKET}-{os.getpid()}"
    port = int(endpoint.rsplit(":", 1)[1])
    src = Path(tempfile.mkdtemp(prefix="cs-quick-"))
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id=access, aws_secret_access_key=secret
                     ).create_bucket(Bucket=bucket)
        for i in range(args.files):
            (src / f"gen{i}.css").write_text(f".c{i} {{ background: url('img{i}.png') }}\n")
            (src / f"img{i}.png").write_bytes(os.urandom(2000))
            (src / f"gen{i}.js").write_text(f"var x{i} = {i};\n" * 200)
        rules = [Rule("reset-before-request", m, times=0) for m in METHODS]
        with FaultProxy(("127.0.0.1", port), rules) as counter, \
                CountingProxy(("127.0.0.1", counter.port), delay_up=args.rtt / 2,
                              delay_down=args.rtt / 2) as latency:
            settings.configure(
                INSTALLED_APPS=["django_s3_storage", "django.contrib.staticfiles",
                                "django.contrib.admin", "django.contrib.contenttypes",
                                "django.contrib.auth", "django.contrib.messages"],
                STATIC_URL="/static/", STATICFILES_DIRS=[str(src)], USE_TZ=True,
                STORAGES={"staticfiles": {
                    "BACKEND": "django_s3_storage.storage.ManifestStaticS3Storage"}},
                AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret,
                AWS_S3_ENDPOINT_URL_STATIC=latency.endpoint, AWS_S3_BUCKET_NAME_STATIC=bucket,
                AWS_S3_KEY_PREFIX_STATIC="p")
            django.setup()
            from django.contrib.staticfiles.management.commands.collectstatic import \
                Command as Plain
            from django.core.management import call_command

            from django_s3_storage.management.commands.collectstatic import Command as Ours
            for run in ("first", "re-run"):
                for rule in rules:
                    rule.seen = 0
                wall, cpu = time.monotonic(), time.process_time()
                call_command((Ours if args.mode == "new" else Plain)(), interactive=False,
                             verbosity=0)
                wall, cpu = time.monotonic() - wall, time.process_time() - cpu
                counts = {r.method: r.seen for r in rules if r.seen}
                print(f"{args.mode} {run}: wall {wall:.2f} s, client CPU {cpu:.2f} s, "
                      f"{sum(counts.values())} requests {counts}", flush=True)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(src)


if __name__ == "__main__":
    main()
