"""One measurement of the small-operation benchmark (bench/small.py), in a fresh
process of the implementation's own virtual environment.

Reads one JSON object on stdin, writes one JSON object on stdout:

    {"impl": "ours" | "dss015" | "storages" | "capo" | "boto3", "op": OP,
     "endpoint": ..., "access_key": ..., "secret_key": ..., "bucket": ..., "n": N, ...}

OP is one of
  import     wall and RSS added by importing the storage, making it and its first url()
  url        client CPU per call of url(): presigned, plain, public URL (custom domain)
  ops        client CPU and wall per exists, size, open().read() 1 KiB, save 1 KiB, delete
  listdir    client CPU of listdir() over the prefix given ("prefix", "keys")
  threads    ops/s of 8 threads of mixed small ops
  getobject  (impl "boto3") wall of boto3's own get_object of a 1 KiB object
  populate   saves "keys" 1-byte objects under "prefix" (set-up, not measured)
Django is set up before anything is measured, except in "import".
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from typing import Any, Callable

KiB = 1024
PUBLIC = "https://cdn.example.com"


def settings_for(cfg: dict[str, Any], variant: str) -> dict[str, Any]:
    """Django settings: variant "presigned", "plain" or "public"."""
    impl = cfg["impl"]
    common: dict[str, Any] = dict(DEBUG=False, USE_TZ=True, SECRET_KEY="bench", INSTALLED_APPS=[])
    if impl in ("ours", "dss015"):
        s = dict(common, AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID=cfg["access_key"],
                 AWS_SECRET_ACCESS_KEY=cfg["secret_key"], AWS_S3_BUCKET_NAME=cfg["bucket"],
                 AWS_S3_ENDPOINT_URL=cfg["endpoint"], AWS_S3_ADDRESSING_STYLE="path")
        if variant == "plain":
            s["AWS_S3_BUCKET_AUTH"] = False
        elif variant == "public":
            s["AWS_S3_PUBLIC_URL"] = PUBLIC + "/"
        return s
    s = dict(common, AWS_S3_REGION_NAME="us-east-1", AWS_S3_ACCESS_KEY_ID=cfg["access_key"],
             AWS_S3_SECRET_ACCESS_KEY=cfg["secret_key"], AWS_STORAGE_BUCKET_NAME=cfg["bucket"],
             AWS_S3_ENDPOINT_URL=cfg["endpoint"], AWS_S3_ADDRESSING_STYLE="path",
             AWS_IS_GZIPPED=False)
    if variant == "plain":
        s["AWS_QUERYSTRING_AUTH"] = False
    elif variant == "public":
        s["AWS_S3_CUSTOM_DOMAIN"] = PUBLIC.removeprefix("https://")
    return s


def storage_class(impl: str) -> Any:
    if impl in ("ours", "dss015"):
        from django_s3_storage.storage import S3Storage
        return S3Storage
    if impl == "storages":
        from storages.backends.s3 import S3Storage
        return S3Storage
    if impl == "capo":
        from django_capo_s3.storage import S3Storage
        return S3Storage
    raise SystemExit(f"unknown implementation {impl!r}")


def setup(cfg: dict[str, Any], variant: str = "presigned") -> None:
    from django.conf import settings

    settings.configure(**settings_for(cfg, variant))
    import django

    django.setup()


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for dist in ("django", "django-s3-storage", "django-storages", "boto3", "django-capo-s3",
                 "collectfasta"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def per_call(fn: Callable[[], Any], n: int) -> dict[str, float]:
    """Client CPU (process_time) and wall per call, over n calls after one warm-up."""
    fn()
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        fn()
    c1, w1 = time.process_time(), time.perf_counter()
    return {"cpu": (c1 - c0) / n, "wall": (w1 - w0) / n}


def payload(i: int) -> bytes:
    return (f"{i:08d}" * (KiB // 8)).encode()[:KiB]


def op_import(cfg: dict[str, Any]) -> dict[str, Any]:
    # Django itself is the same for everyone: imported and set up first
    setup(cfg)
    rss0, t0 = rss_kib(), time.perf_counter()
    storage = storage_class(cfg["impl"])()
    url = storage.url("bench/first.txt")
    t1 = time.perf_counter()
    return {"wall": t1 - t0, "rss_added": (rss_kib() - rss0) * KiB, "url_ok": "first.txt" in url}


def op_url(cfg: dict[str, Any]) -> dict[str, Any]:
    setup(cfg)
    from django.conf import settings

    n = int(cfg["n"])
    out: dict[str, Any] = {}
    cls = storage_class(cfg["impl"])
    for variant in ("presigned", "plain", "public"):
        # one settings object per process: the variant's settings are set before a new storage
        for key, value in settings_for(cfg, variant).items():
            setattr(settings, key, value)
        for key in ("AWS_S3_BUCKET_AUTH", "AWS_S3_PUBLIC_URL", "AWS_QUERYSTRING_AUTH",
                    "AWS_S3_CUSTOM_DOMAIN"):
            if key not in settings_for(cfg, variant) and hasattr(settings, key):
                delattr(settings, key)
        storage = cls()
        url = storage.url("bench/some dir/file name.txt")
        signed = "Signature=" in url
        if variant == "presigned" and not signed or variant != "presigned" and signed:
            raise SystemExit(f"{cfg['impl']} {variant}: unexpected url {url!r}")
        if variant == "public" and not url.startswith(("https://cdn.example.com/",
                                                       "http://cdn.example.com/")):
            raise SystemExit(f"{cfg['impl']} public: unexpected url {url!r}")
        out[variant] = per_call(lambda: storage.url("bench/some dir/file name.txt"), n)["cpu"]
    return out


def op_ops(cfg: dict[str, Any]) -> dict[str, Any]:
    setup(cfg)
    from django.core.files.base import ContentFile

    storage = storage_class(cfg["impl"])()
    n = int(cfg["n"])
    prefix = cfg["prefix"].rstrip("/") + "/"
    name = prefix + "obj.txt"
    storage.save(name, ContentFile(payload(0)))   # the file overwrites, or gets a suffix
    name = storage.save(prefix + "read.txt", ContentFile(payload(1)))
    out: dict[str, Any] = {}
    out["exists"] = per_call(lambda: storage.exists(name), n)
    out["size"] = per_call(lambda: storage.size(name), n)
    data: list[bytes] = []

    def read() -> None:
        with storage.open(name, "rb") as f:
            data.append(f.read())

    out["read"] = per_call(read, n)
    if any(d != payload(1) for d in data):
        raise SystemExit(f"{cfg['impl']}: open().read() gave other bytes")
    names: list[str] = []
    counter = iter(range(10**9))

    def save() -> None:
        i = next(counter)
        names.append(storage.save(f"{prefix}s/{i}.txt", ContentFile(payload(i))))

    out["save"] = per_call(save, n)
    todo = iter(list(names))
    out["delete"] = per_call(lambda: storage.delete(next(todo)), len(names) - 1)
    storage.delete(name)
    out["deleted_ok"] = not storage.exists(names[-1])
    return out


def op_listdir(cfg: dict[str, Any]) -> dict[str, Any]:
    setup(cfg)
    storage = storage_class(cfg["impl"])()
    runs = []
    files: list[str] = []
    for _ in range(int(cfg["n"])):
        c0, w0 = time.process_time(), time.perf_counter()
        dirs, files = storage.listdir(cfg["prefix"])
        runs.append((time.process_time() - c0, time.perf_counter() - w0))
    return {"cpu": statistics.median(r[0] for r in runs),
            "wall": statistics.median(r[1] for r in runs), "files": len(files)}


def op_threads(cfg: dict[str, Any]) -> dict[str, Any]:
    setup(cfg)
    from django.core.files.base import ContentFile

    storage = storage_class(cfg["impl"])()
    prefix = cfg["prefix"].rstrip("/") + "/"
    name = storage.save(prefix + "shared.txt", ContentFile(payload(2)))
    per_thread = int(cfg["n"])
    errors: list[BaseException] = []
    done = [0] * 8

    def work(t: int) -> None:
        try:
            for i in range(per_thread):
                k = i % 5
                if k == 0:
                    storage.exists(name)
                elif k == 1:
                    storage.size(name)
                elif k == 2:
                    with storage.open(name, "rb") as f:
                        f.read()
                elif k == 3:
                    storage.save(f"{prefix}t{t}/{i}.txt", ContentFile(payload(i)))
                else:
                    storage.url(name)
                done[t] += 1
        except BaseException as e:  # reported, not swallowed
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{cfg['impl']} threads: {errors[0]!r}")
    return {"ops": sum(done), "wall": wall, "ops_per_s": sum(done) / wall}


def op_populate(cfg: dict[str, Any]) -> dict[str, Any]:
    setup(cfg)
    from django.core.files.base import ContentFile

    storage = storage_class(cfg["impl"])()
    prefix = cfg["prefix"].rstrip("/") + "/"
    for i in range(int(cfg["keys"])):
        storage.save(f"{prefix}{i:05d}.txt", ContentFile(b"x"))
    return {"ok": True}


def op_getobject(cfg: dict[str, Any]) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url=cfg["endpoint"], region_name="us-east-1",
                      aws_access_key_id=cfg["access_key"], aws_secret_access_key=cfg["secret_key"],
                      config=Config(s3={"addressing_style": "path"}))
    key = cfg["prefix"].rstrip("/") + "/get.txt"
    s3.put_object(Bucket=cfg["bucket"], Key=key, Body=payload(3))
    got: list[bytes] = []
    out = per_call(lambda: got.append(s3.get_object(Bucket=cfg["bucket"], Key=key)["Body"].read()),
                   int(cfg["n"]))
    s3.delete_object(Bucket=cfg["bucket"], Key=key)
    if any(g != payload(3) for g in got):
        raise SystemExit("get_object gave other bytes")
    return {"getobject": out}


OPS = {"import": op_import, "url": op_url, "ops": op_ops, "listdir": op_listdir,
       "threads": op_threads, "populate": op_populate, "getobject": op_getobject}


def main() -> None:
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    cfg = json.load(sys.stdin)
    out = OPS[cfg["op"]](cfg)
    out.update(impl=cfg["impl"], op=cfg["op"], versions=versions())
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
