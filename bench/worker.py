"""One measurement of the large-file benchmark, in a fresh process of the
implementation's own virtual environment (bench/large.py starts it).

Reads one JSON object on stdin, writes one JSON object on stdout:

    {"impl": "ours" | "dss015" | "storages", "op": "save" | "read" | "open10" | "delete"
     | "mkbucket", "endpoint": "http://127.0.0.1:PORT", "access_key": ..., "secret_key": ...,
     "bucket": ..., "name": ..., "size": N, "seed": N, "chunk": N}

Every figure is taken around the storage API call alone (the storage is made and
Django set up before): the wall time, and the growth of the peak resident set
(VmHWM, reset by writing 5 to /proc/self/clear_refs just before, less VmRSS then).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import sys
import time
from typing import Any

BLOCK = 1024 * 1024


class PseudoRandomFile(io.RawIOBase):
    """`size` deterministic pseudo-random bytes, made on the fly and never held
    whole: block i (1 MiB) is a random 1 MiB base rotated by i * 1000003 bytes, so
    every block differs (1000003 is odd, the block size a power of 2) and a read
    costs one copy (slices of the base written twice over, joined). Reading it hashes what it hands out (SHA-256), in
    order; a read that skips ahead of what was hashed spoils the hash (`gap`)."""

    def __init__(self, size: int, seed: int) -> None:
        super().__init__()
        self.size = size
        self.name = "bench.bin"
        base = random.Random(seed).randbytes(BLOCK)
        self._twice = memoryview(base + base)   # block i is one slice of it
        self._pos = 0
        self._hashed = 0
        self._sha = hashlib.sha256()
        self.gap = False
        self.busy = 0.0           # seconds spent making and hashing bytes

    def produce(self, pos: int, n: int) -> bytes:
        """The n bytes at pos (fewer at the end), copied once."""
        n = max(0, min(n, self.size - pos))
        parts = []
        while n > 0:
            index, offset = divmod(pos, BLOCK)
            take = min(n, BLOCK - offset)
            start = (index * 1000003) % BLOCK + offset      # block i: the base rotated
            parts.append(self._twice[start:start + take])
            pos += take
            n -= take
        return b"".join(parts)

    def read(self, n: int | None = -1) -> bytes:
        t0 = time.perf_counter()
        if n is None or n < 0:
            n = self.size - self._pos
        data = self.produce(self._pos, n)
        end = self._pos + len(data)
        if self._pos > self._hashed:
            self.gap = True
        elif end > self._hashed:
            self._sha.update(memoryview(data)[self._hashed - self._pos:])
            self._hashed = end
        self._pos = end
        self.busy += time.perf_counter() - t0
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def sha256(self) -> str | None:
        """The SHA-256 of everything handed out, or None when that is not the whole
        file read in order."""
        if self.gap or self._hashed != self.size:
            return None
        return self._sha.hexdigest()


def expected_sha256(size: int, seed: int) -> str:
    """The SHA-256 the file of (size, seed) has, read straight through."""
    f = PseudoRandomFile(size, seed)
    while f.read(8 * BLOCK):
        pass
    digest = f.sha256()
    assert digest is not None
    return digest


# ---- the implementations ------------------------------------------------------------

def configure(cfg: dict[str, Any]) -> Any:
    """Django settings for the implementation, and its storage."""
    from django.conf import settings

    common = dict(DEBUG=False, USE_TZ=True, SECRET_KEY="bench", INSTALLED_APPS=[])
    impl = cfg["impl"]
    if impl in ("ours", "dss015"):
        # the same setting names in 0.15 and in this package
        settings.configure(
            **common, AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID=cfg["access_key"],
            AWS_SECRET_ACCESS_KEY=cfg["secret_key"], AWS_S3_BUCKET_NAME=cfg["bucket"],
            AWS_S3_ENDPOINT_URL=cfg["endpoint"], AWS_S3_ADDRESSING_STYLE="path")
        import django

        django.setup()
        from django_s3_storage.storage import S3Storage

        return S3Storage()
    if impl == "storages":
        settings.configure(
            **common, AWS_S3_REGION_NAME="us-east-1", AWS_S3_ACCESS_KEY_ID=cfg["access_key"],
            AWS_S3_SECRET_ACCESS_KEY=cfg["secret_key"], AWS_STORAGE_BUCKET_NAME=cfg["bucket"],
            AWS_S3_ENDPOINT_URL=cfg["endpoint"], AWS_S3_ADDRESSING_STYLE="path",
            AWS_IS_GZIPPED=False, AWS_S3_USE_SSL=False)
        import django

        django.setup()
        from storages.backends.s3 import S3Storage as StoragesS3Storage

        return StoragesS3Storage()
    raise SystemExit(f"unknown implementation {impl!r}")


def versions(impl: str) -> dict[str, str]:
    import django

    out = {"python": sys.version.split()[0], "django": django.get_version()}
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("django-s3-storage", "django-storages", "boto3", "botocore"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    if impl == "ours":
        import django_s3_storage

        out["django_s3_storage_path"] = os.path.dirname(django_s3_storage.__file__)
    return out


# ---- measuring -----------------------------------------------------------------------

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class Measure:
    def __enter__(self) -> "Measure":
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")        # VmHWM := VmRSS
        self.rss_before = _status_kib("VmRSS")
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.peak_growth = (_status_kib("VmHWM") - self.rss_before) * 1024

    def figures(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "peak_rss_growth": self.peak_growth,
                "rss_before": self.rss_before * 1024}


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    op = cfg["op"]
    if op == "mkbucket":
        import boto3
        from botocore.config import Config

        s3 = boto3.client("s3", endpoint_url=cfg["endpoint"], region_name="us-east-1",
                          aws_access_key_id=cfg["access_key"],
                          aws_secret_access_key=cfg["secret_key"],
                          config=Config(s3={"addressing_style": "path"}))
        try:
            s3.create_bucket(Bucket=cfg["bucket"])
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        return {"ok": True}

    storage = configure(cfg)
    out: dict[str, Any] = {"impl": cfg["impl"], "op": op, "versions": versions(cfg["impl"])}
    name = cfg["name"]
    if op == "save":
        from django.core.files import File

        src = PseudoRandomFile(cfg["size"], cfg["seed"])
        content = File(src, name=name)
        with Measure() as m:
            saved = storage.save(name, content)
        out.update(m.figures(), saved_name=saved, sha256=src.sha256(), source_seconds=src.busy,
                   bytes=src.size)
    elif op == "read":
        chunk = int(cfg.get("chunk") or BLOCK)
        sha = hashlib.sha256()
        n = 0
        hashing = 0.0             # the benchmark's own SHA-256, not the storage's work
        with Measure() as m:
            f = storage.open(name, "rb")
            try:
                while True:
                    data = f.read(chunk)
                    if not data:
                        break
                    t0 = time.perf_counter()
                    sha.update(data)
                    hashing += time.perf_counter() - t0
                    n += len(data)
                    del data
            finally:
                f.close()
        out.update(m.figures(), sha256=sha.hexdigest(), bytes=n, hash_seconds=hashing)
    elif op == "open10":
        with Measure() as m:
            f = storage.open(name, "rb")
            try:
                head = f.read(10)
            finally:
                f.close()
        src = PseudoRandomFile(cfg["size"], cfg["seed"])
        out.update(m.figures(), head_ok=head == src.produce(0, 10), bytes=len(head))
    elif op == "delete":
        storage.delete(name)
        out.update(ok=True)
    else:
        raise SystemExit(f"unknown op {op!r}")
    return out


def main() -> None:
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    cfg = json.load(sys.stdin)
    result = run(cfg)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
