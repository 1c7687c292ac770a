"""The soak's CI slice: bench/soak.py (what `make soak` runs for 10 minutes) in a
subprocess, 8 threads for 30 s on the Ceph RGW of the RGW run and for 12 s on moto
(the suite runs three times on moto). The same assertions as the long run: exit
status 0, no error, every kind of operation done, no growth of the resident set at
rest, fds and connections within the pools' bounds, nothing left in the bucket."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import django_s3_storage

from conftest import BACKEND, S3Target

ROOT = Path(__file__).resolve().parent.parent
# the package this suite tests: the checkout's, or an installed wheel's
PACKAGE_PARENT = Path(django_s3_storage.__file__).resolve().parent.parent
SECONDS = 30 if BACKEND == "rgw" else 12
THREADS = 8
KINDS = {"save_text", "save_binary", "save_multipart", "write_small", "write_multipart",
         "exists", "size", "url", "url_fetch", "modified_time", "read_stream", "read_range",
         "listdir", "copy", "sync_meta", "delete"}


def test_soak_slice_has_no_error_and_no_growth(s3: S3Target, tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    env = dict(os.environ, S3_TEST_ENDPOINT_URL=s3.endpoint, S3_TEST_ACCESS_KEY=s3.access_key,
               S3_TEST_SECRET_KEY=s3.secret_key,
               PYTHONPATH=os.pathsep.join(filter(None, [str(PACKAGE_PARENT),
                                                        os.environ.get("PYTHONPATH")])))
    args = ["--seconds", str(SECONDS), "--threads", str(THREADS), "--bucket", "soak-bucket",
            "--json", str(out)]
    if "libasan" in env.get("LD_PRELOAD", ""):
        # ASan keeps freed memory in quarantine (256 MiB) and its own allocator is
        # not glibc's: the resident set says nothing there; everything else holds
        args += ["--rss-bound", str(1 << 30)]
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), *args],
                          cwd=str(ROOT), env=env, capture_output=True, text=True,
                          timeout=SECONDS + 300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    r = json.loads(out.read_text())
    assert r["threads"] == THREADS and r["elapsed"] >= SECONDS
    assert r["errors"] == 0 and r["error_samples"] == [] and r["failures"] == []
    assert set(r["ops"]) == KINDS and min(r["ops"].values()) > 0, r["ops"]
    # saves and writes of ~12 MiB went multipart (5 MiB parts) and were read back whole
    assert r["bytes"]["save_multipart"] >= 11 * 1024 * 1024 * r["ops"]["save_multipart"]
    assert r["bytes"]["read_stream"] >= r["bytes"]["save_multipart"]
    assert len(r["checkpoints"]) >= 7
    assert r["rss_drift"] <= r["rss_bound"]
    assert r["fds_max"] <= r["fd_bound"] and r["connections_max"] <= r["connection_bound"]
    assert r["leftover_keys"] == []
    assert all(s["errors"] == 0 for s in r["samples"])
