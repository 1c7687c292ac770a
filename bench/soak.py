"""Soak: THREADS threads x SECONDS of mixed operations through Django's storage API
(django_s3_storage.storage.S3Storage, one instance shared by the threads as Django's
default_storage is), checking every result, while the process's resident set, file
descriptors and TCP connections to the server are sampled.

    python bench/soak.py [--seconds 600] [--threads 8] [--json out.json]

The server comes from --endpoint/--access-key/--secret-key or S3_TEST_ENDPOINT_URL,
S3_TEST_ACCESS_KEY, S3_TEST_SECRET_KEY (127.0.0.1 only); the bucket (--bucket, made
when missing) holds the run's keys under soak-<id>/ only, and each thread deletes what
it wrote. `make soak` starts Ceph RGW for it (scripts/rgw).

Each thread repeats one file's life: a save (text that gzips, binary, a multipart
upload of about 12 MiB in 5 MiB parts, or a file opened "wb" and written in pieces),
then exists, size, url (fetched now and then), get_modified_time, a streaming read to
the end checked by SHA-256, seek + read(n) ranged reads, listdir, now and then a copy
(read back) and a sync_meta over a prefix of its own, and the delete (exists() is then
False). Any exception or wrong result is an error.

After the warm-up (20 % of the run, at most 60 s, and until every thread has saved
each kind of file once) it asserts: no error; every kind of
operation done; the resident set of the last samples within --rss-bound of the first
samples after the warm-up (glibc's malloc thresholds fixed at 1 MiB, see
fix_malloc_thresholds()); file descriptors and connections to the server never above
the bound the pools and open files give (see bounds()); the run's prefix empty at the
end. Exit status 0 when all hold, 1 otherwise; the figures go to --json.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import gzip
import hashlib
import json
import os
import random
import sys
import threading
import time
import traceback
import urllib.request
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

KiB, MiB = 1024, 1024 * 1024
PART = 5 * MiB                          # S3's smallest part: the most parts per byte
POOL = 10                               # AWS_S3_MAX_POOL_CONNECTIONS of the shared storage
FILE_KINDS = ("save_text", "save_binary", "save_multipart", "write_small", "write_multipart")
SYNC_FILES = ("a.txt", "b.bin", "c/d.css")
KINDS = ("save_text", "save_binary", "save_multipart", "write_small", "write_multipart",
         "exists", "size", "url", "url_fetch", "modified_time", "read_stream", "read_range",
         "listdir", "copy", "sync_meta", "delete")
WORDS = ("storage soak thread bucket object multipart stream range gzip django sample "
         "memory descriptor connection server bytes check delete listing copy meta").split()


class CheckFailed(AssertionError):
    """An operation that returned without an exception but with a wrong result."""


def check(ok: bool, what: str) -> None:
    if not ok:
        raise CheckFailed(what)


# ---- what the process holds ------------------------------------------------------------

def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def socket_inodes() -> tuple[int, set[str]]:
    """(the number of open fds, the inodes of those that are sockets)."""
    count, inodes = 0, set()
    for fd in os.listdir("/proc/self/fd"):
        count += 1
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue            # closed meanwhile (or the listing's own fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return count, inodes


TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
              "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK",
              "0B": "CLOSING"}


def connections(port: int, inodes: set[str]) -> Counter[str]:
    """This process's TCP sockets to `port`, by state."""
    states: Counter[str] = Counter()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    remote, state, inode = fields[2], fields[3], fields[9]
                    if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == port:
                        states[TCP_STATES.get(state, state)] += 1
        except FileNotFoundError:
            pass
    return states


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks",
                                               "keepcost")]


def _libc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        return libc
    except (OSError, AttributeError):
        return None     # not glibc 2.33+: the figures at rest are the raw ones only


LIBC = _libc()


def malloc_in_use() -> int | None:
    """Bytes malloc() has handed out and not had back, over all arenas (mallinfo2):
    what a leak of the C core or of Python's big objects would grow."""
    if LIBC is None:
        return None
    m = LIBC.mallinfo2()
    return int(m.uordblks + m.hblkhd)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3     # mallopt's parameters (malloc.h)


def fix_malloc_thresholds() -> None:
    """Fixes glibc's thresholds before the workers start: 1 MiB and up is mmap()ed and
    unmapped on free(), and an arena keeps at most 1 MiB of free memory on top.

    Left dynamic, each free() of a big buffer (a multipart part) raises both, up to
    32 and 64 MiB; malloc_trim() does not shrink the top of the threads' arenas, so
    the resident set at rest then swings by tens of MiB with where the last big
    buffers happened to land (seen: -15 to +19 MiB between two samples of a 12 s run
    while malloc's bytes in use stayed within 0.1 MiB). Fixed, it moves by under
    2 MiB and a leak of the process shows as growth."""
    if LIBC is not None:
        LIBC.mallopt(M_MMAP_THRESHOLD, 1 << 20)
        LIBC.mallopt(M_TRIM_THRESHOLD, 1 << 20)


def trim() -> None:
    """Gives the free memory of every malloc arena back to the system, so the resident
    set at rest is what the process holds, not where the last frees happened to land."""
    if LIBC is not None:
        LIBC.malloc_trim(0)


class Stats:
    """Operations and errors, counted by all threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.errors: list[dict[str, Any]] = []
        self.error_count = 0

    def done(self, kind: str, nbytes: int = 0) -> None:
        with self.lock:
            self.ops[kind] += 1
            self.bytes[kind] += nbytes

    def error(self, thread: int, op: str, exc: BaseException) -> None:
        with self.lock:
            self.error_count += 1
            if len(self.errors) < 20:
                self.errors.append({
                    "thread": thread, "op": op, "type": type(exc).__name__, "error": str(exc),
                    "traceback": "".join(traceback.format_exception(exc))[-2000:]})


class Sampler(threading.Thread):
    def __init__(self, port: int, stats: Stats, every: float, stop: threading.Event,
                 t0: float) -> None:
        super().__init__(name="sampler", daemon=True)
        self.port, self.stats, self.every, self.stop, self.t0 = port, stats, every, stop, t0
        self.samples: list[dict[str, Any]] = []

    def sample(self, rest: bool = False) -> dict[str, Any]:
        """One sample; at rest (the workers parked) also the resident set after
        trim() and the bytes malloc holds."""
        extra: dict[str, Any] = {}
        if rest:
            extra["rss_raw_kib"] = rss_kib()
            trim()
            extra["malloc_in_use"] = malloc_in_use()
        fds, inodes = socket_inodes()
        conns = connections(self.port, inodes)
        with self.stats.lock:
            ops, errors = sum(self.stats.ops.values()), self.stats.error_count
        s = {"t": round(time.monotonic() - self.t0, 2), "rss_kib": rss_kib(), "fds": fds,
             "connections": sum(conns.values()), "states": dict(conns), "ops": ops,
             "errors": errors, "rest": rest, **extra}
        with self.stats.lock:
            self.samples.append(s)
        return s

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.sample()


# ---- the threads -----------------------------------------------------------------------

def make_content(rng: random.Random, kind: str) -> tuple[str, bytes]:
    """(the file name's extension, the bytes) for a save or write of `kind`."""
    if kind == "save_text":
        n = rng.randint(1, 256 * KiB)
        words, size = [], 0
        while size < n:
            w = rng.choice(WORDS) + rng.choice(" \n ")
            words.append(w)
            size += len(w)
        return ".txt", "".join(words).encode()[:n]       # gzips (text/plain)
    if kind in ("save_binary", "write_small"):
        return ".bin", rng.randbytes(rng.randint(0, 256 * KiB))
    if kind in ("save_multipart", "write_multipart"):
        return ".bin", rng.randbytes(12 * MiB + rng.randint(-MiB, MiB))   # 3 parts
    raise ValueError(kind)


class Control:
    """Pauses the workers between two operations, so the main thread can sample the
    process at rest (nothing in flight) at checkpoints, and stops them at the end."""

    def __init__(self, threads: int, timeout: float) -> None:
        self.pause = threading.Event()
        self.barrier = threading.Barrier(threads + 1, timeout=timeout)
        self.done = False
        self.warmed = threading.Semaphore(0)    # a release per worker past its warm-up

    def carry_on(self) -> bool:
        """In a worker, between two files: False when the run is over."""
        if self.pause.is_set():
            try:
                self.barrier.wait()     # all parked
                self.barrier.wait()     # sampled
            except threading.BrokenBarrierError:
                return False
        return not self.done

    def checkpoint(self, sample: Callable[[], None], last: bool) -> None:
        """In the main thread: parks every worker, samples, lets them go on (or end)."""
        self.pause.set()
        self.barrier.wait()
        try:
            sample()
        finally:
            self.pause.clear()
            self.done = last
            self.barrier.wait()


class Worker(threading.Thread):
    def __init__(self, index: int, storage: Any, sync_storage: Any, run: str, seed: int,
                 control: "Control", stats: Stats, endpoint: str) -> None:
        super().__init__(name=f"soak-{index}", daemon=True)
        self.index, self.storage, self.sync = index, storage, sync_storage
        self.dir = f"{run}/t{index}"
        self.rng = random.Random(seed * 1000 + index)
        self.control, self.stats, self.endpoint = control, stats, endpoint
        self.sync_content: dict[str, bytes] = {}
        self.leftovers: set[str] = set()

    def op(self, kind: str, fn: Callable[[], Any], nbytes: int = 0) -> Any:
        self.current = kind
        result = fn()
        self.stats.done(kind, nbytes)
        return result

    def run(self) -> None:
        from django.core.files.base import ContentFile

        self.current = "setup"
        try:
            for name in SYNC_FILES:
                data = make_content(self.rng, "save_text" if name.endswith((".txt", ".css"))
                                    else "save_binary")[1]
                check(self.sync.save(name, ContentFile(data)) == name, f"sync file {name}")
                self.sync_content[name] = data
        except Exception as e:  # noqa: BLE001 - counted, the run goes on
            self.stats.error(self.index, self.current, e)
        n = 0
        while self.control.carry_on():
            n += 1
            try:
                self.iteration(n)
            except Exception as e:  # noqa: BLE001 - counted, the run goes on
                self.stats.error(self.index, self.current, e)
                self.cleanup()
            if n == len(FILE_KINDS):
                self.control.warmed.release()
        self.current = "teardown"
        try:
            self.cleanup()
            for name in self.sync_content:
                self.sync.delete(name)
        except Exception as e:  # noqa: BLE001
            self.stats.error(self.index, self.current, e)

    def cleanup(self) -> None:
        for name in list(self.leftovers):
            try:
                self.storage.delete(name)
                self.leftovers.discard(name)
            except Exception as e:  # noqa: BLE001
                self.stats.error(self.index, "cleanup", e)

    def iteration(self, n: int) -> None:
        from django.core.files.base import ContentFile

        s, rng = self.storage, self.rng
        if n <= len(FILE_KINDS):    # the warm-up: each kind of file once, then at random
            kind = FILE_KINDS[n - 1]
        else:
            kind = rng.choices(FILE_KINDS, weights=(30, 30, 12, 16, 12))[0]
        ext, data = make_content(rng, kind)
        name = f"{self.dir}/{n}-{kind}{ext}"
        digest = hashlib.sha256(data).hexdigest()
        self.leftovers.add(name)
        if kind.startswith("save"):
            saved = self.op(kind, lambda: s.save(name, ContentFile(data)), len(data))
            check(saved == name, f"save() stored {saved!r}, not {name!r}")
        else:
            def write() -> None:
                with s.open(name, "wb") as f:
                    pos = 0
                    while pos < len(data):
                        step = rng.choice((1, 4 * KiB, 64 * KiB, MiB, 3 * MiB))
                        check(f.write(data[pos:pos + step]) == len(data[pos:pos + step]),
                              "write() count")
                        pos += step
            self.op(kind, write, len(data))

        check(self.op("exists", lambda: s.exists(name)) is True, f"exists({name!r}) after save")
        size = self.op("size", lambda: s.size(name))
        check(size == len(data), f"size() {size} != {len(data)}")
        url = self.op("url", lambda: s.url(name))
        check(url.startswith(self.endpoint) and "X-Amz-Signature=" in url, f"url() {url!r}")
        if n % 8 == 1 and len(data) <= 256 * KiB:
            self.fetch(url, data)
        stamp = self.op("modified_time", lambda: s.get_modified_time(name))
        now = datetime.now(timezone.utc)
        check(stamp.tzinfo is not None and abs(now - stamp) < timedelta(minutes=5),
              f"get_modified_time() {stamp!r} (now {now!r})")

        self.read_stream(name, data, digest)
        self.read_ranges(name, data)

        dirs, files = self.op("listdir", lambda: s.listdir(self.dir))
        base = name.rsplit("/", 1)[1]
        check(dirs == [] and base in files, f"listdir({self.dir!r}) = {dirs!r}, {files!r}")

        if n % 4 == 2:
            copy = name + ".copy"
            self.leftovers.add(copy)
            check(self.op("copy", lambda: s.copy(name, copy), len(data)) == copy, "copy()")
            self.read_stream(copy, data, digest)
            self.op("delete", lambda: s.delete(copy))
            self.leftovers.discard(copy)
        if n % 10 == 3 and self.sync_content:
            self.sync_meta()

        self.op("delete", lambda: s.delete(name))
        self.leftovers.discard(name)
        check(self.op("exists", lambda: s.exists(name)) is False, f"exists({name!r}) after delete")

    def fetch(self, url: str, data: bytes) -> None:
        def get() -> bytes:
            with urllib.request.urlopen(url, timeout=60) as r:
                body = r.read()
                return gzip.decompress(body) if r.headers.get("Content-Encoding") == "gzip" \
                    else body
        check(self.op("url_fetch", get, len(data)) == data, "the presigned URL's bytes")

    def read_stream(self, name: str, data: bytes, digest: str) -> None:
        def read() -> tuple[str, int]:
            sha, n = hashlib.sha256(), 0
            with self.storage.open(name, "rb") as f:
                while True:
                    chunk = f.read(self.rng.choice((1000, 64 * KiB, 1 * MiB)))
                    if not chunk:
                        break
                    sha.update(chunk)
                    n += len(chunk)
            return sha.hexdigest(), n
        got, n = self.op("read_stream", read, len(data))
        check(n == len(data) and got == digest, f"read of {name!r}: {n} bytes, sha256 differs"
              if got != digest else f"read of {name!r}: {n} bytes")

    def read_ranges(self, name: str, data: bytes) -> None:
        def ranges() -> int:
            with self.storage.open(name, "rb") as f:
                for _ in range(3):
                    at = self.rng.randint(0, len(data))
                    want = self.rng.choice((1, 100, 64 * KiB, 2 * MiB))
                    f.seek(at)
                    got = f.read(want)
                    check(got == data[at:at + want],
                          f"{name!r}: read({want}) at {at} gave {len(got)} bytes, not the stored")
            return 3
        self.op("read_range", ranges)

    def sync_meta(self) -> None:
        names = self.op("sync_meta", lambda: sorted(self.sync.sync_meta_iter()))
        check(names == sorted(self.sync_content), f"sync_meta() went over {names!r}")
        name = self.rng.choice(list(self.sync_content))
        want = self.sync_content[name]
        with self.sync.open(name, "rb") as f:
            got = f.read()
        check(got == want and self.sync.size(name) == len(want),
              f"{name!r} after sync_meta: {len(got)} bytes, size() {self.sync.size(name)}")


# ---- the run -----------------------------------------------------------------------------

def configure(args: argparse.Namespace) -> None:
    from django.conf import settings

    settings.configure(
        DEBUG=False, USE_TZ=True, SECRET_KEY="soak", INSTALLED_APPS=[],
        AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID=args.access_key,
        AWS_SECRET_ACCESS_KEY=args.secret_key, AWS_S3_BUCKET_NAME=args.bucket,
        AWS_S3_ENDPOINT_URL=args.endpoint, AWS_S3_ADDRESSING_STYLE="path",
        AWS_S3_MULTIPART_THRESHOLD=PART, AWS_S3_MULTIPART_CHUNKSIZE=PART,
        AWS_S3_MAX_POOL_CONNECTIONS=POOL)
    import django

    django.setup()


def make_bucket(args: argparse.Namespace) -> None:
    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url=args.endpoint, region_name="us-east-1",
                      aws_access_key_id=args.access_key, aws_secret_access_key=args.secret_key,
                      config=Config(s3={"addressing_style": "path"}))
    try:
        s3.create_bucket(Bucket=args.bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    finally:
        s3.close()      # its connection would count as ours


def bounds(threads: int, fd_start: int) -> tuple[int, int]:
    """(connections, fds) the run may hold at most, from the pools' sizes.

    A Client keeps up to max_connections idle easy handles and as many idle multi
    handles (the streaming readers'), each with at most one connection; libcurl gives
    every multi handle, and every easy handle that ran curl_easy_perform, a socketpair
    to wake it (2 fds). The shared storage has a pool of POOL, each thread's
    sync_meta storage a pool of 1. A multipart upload runs its parts on a multi
    handle of its own (2 fds) with one connection per part in flight (3 parts of a
    12 MiB file); a presigned URL fetched with urllib holds one more connection. Two
    fds per thread more for a temporary file or a socket being closed."""
    clients = POOL + threads                    # pooled handle slots, easy and multi alike
    conns = 2 * clients + 3 * threads + threads
    fds = fd_start + 2 * 2 * clients + 2 * threads + conns + 2 * threads
    return conns, fds


def floor(samples: list[dict[str, Any]], key: str) -> int:
    return min(s[key] for s in samples)


def verdict(args: argparse.Namespace, stats: Stats, samples: list[dict[str, Any]],
            fd_start: int, leftover: list[str]) -> dict[str, Any]:
    """The figures and the failures. The resident set is compared at rest: at each
    checkpoint the workers are parked between two files (nothing in flight) and malloc's
    free memory is trimmed, so what it holds is what the process keeps, not the parts
    and buffers of the moment (which swing it by 200 MiB with 8 threads). Even so it
    varies by up to 20 MiB from one checkpoint to the next (Python's and malloc's
    partly used pages), upwards only: the drift is the floor (lowest) of the last third
    of the checkpoints less the floor of the first third, which a leak raises."""
    rest = [s for s in samples if s["rest"]]
    running = [s for s in samples if not s["rest"] and s["t"] >= rest[0]["t"]] if rest else []
    conn_bound, fd_bound = bounds(args.threads, fd_start)
    third = max(1, len(rest) // 3)
    mib = lambda kib: kib * KiB  # noqa: E731
    out: dict[str, Any] = {
        "warmup_seconds": rest[0]["t"] if rest else None,
        "checkpoints": [{k: s[k] for k in ("t", "rss_kib", "rss_raw_kib", "malloc_in_use",
                                           "fds", "connections", "ops")} for s in rest],
        "rss_raw_drift": mib(rest[-1]["rss_raw_kib"] - rest[0]["rss_raw_kib"]) if rest else None,
        "rss_at_warmup_end": mib(floor(rest[:third], "rss_kib")) if rest else None,
        "rss_at_end": mib(floor(rest[-third:], "rss_kib")) if rest else None,
        "rss_drift": mib(floor(rest[-third:], "rss_kib") - floor(rest[:third], "rss_kib"))
        if rest else None,
        "rss_bound": args.rss_bound,
        "rss_running_min": mib(min(s["rss_kib"] for s in running)) if running else None,
        "rss_running_max": mib(max(s["rss_kib"] for s in running)) if running else None,
        "fd_start": fd_start, "fd_bound": fd_bound, "connection_bound": conn_bound,
        "fds_min": min(s["fds"] for s in running) if running else None,
        "fds_max": max(s["fds"] for s in samples),
        "fds_at_warmup_end": rest[0]["fds"] if rest else None,
        "fds_at_end": rest[-1]["fds"] if rest else None,
        "connections_min": min(s["connections"] for s in running) if running else None,
        "connections_max": max(s["connections"] for s in samples),
        "connections_at_warmup_end": rest[0]["connections"] if rest else None,
        "connections_at_end": rest[-1]["connections"] if rest else None,
        "leftover_keys": leftover[:20],
    }
    failures = []
    if stats.error_count:
        failures.append(f"{stats.error_count} errors")
    missing = [k for k in KINDS if not stats.ops[k]]
    if missing:
        failures.append(f"operations never done: {', '.join(missing)}")
    if len(rest) < 2:
        failures.append("no checkpoint after the warm-up")
    else:
        if out["rss_drift"] > args.rss_bound:
            failures.append(f"the resident set at rest grew {out['rss_drift'] / MiB:.1f} MiB "
                            f"after the warm-up (bound {args.rss_bound / MiB:.0f} MiB)")
        # at rest every handle is back in its pool: no more than after the warm-up,
        # but for the pools' slots not yet filled then (2 fds and a connection each)
        room = 2 * (POOL + args.threads) - rest[0]["connections"]
        if rest[-1]["fds"] > rest[0]["fds"] + 3 * max(room, 0):
            failures.append(f"fds at rest grew from {rest[0]['fds']} to {rest[-1]['fds']}")
    if out["fds_max"] > fd_bound:
        failures.append(f"{out['fds_max']} fds open (bound {fd_bound})")
    if out["connections_max"] > conn_bound:
        failures.append(f"{out['connections_max']} connections to the server "
                        f"(bound {conn_bound})")
    if leftover:
        failures.append(f"{len(leftover)} keys left under the run's prefix")
    out["failures"] = failures
    return out


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=float(env("SOAK_SECONDS", "600")))
    ap.add_argument("--threads", type=int, default=int(env("SOAK_THREADS", "8")))
    ap.add_argument("--endpoint", default=env("S3_TEST_ENDPOINT_URL", ""))
    ap.add_argument("--access-key", default=env("S3_TEST_ACCESS_KEY", ""))
    ap.add_argument("--secret-key", default=env("S3_TEST_SECRET_KEY", ""))
    ap.add_argument("--bucket", default=env("SOAK_BUCKET", "soak"))
    ap.add_argument("--sample-every", type=float, default=None,
                    help="seconds between samples (default: the run / 150, 0.2 to 5)")
    ap.add_argument("--rss-bound", type=int, default=16 * MiB,
                    help="the most the resident set may grow after the warm-up (bytes)")
    ap.add_argument("--checkpoints", type=int, default=None,
                    help="pauses after the warm-up to sample the process at rest "
                    "(default: one every 30 s, at least 6)")
    ap.add_argument("--seed", type=int, default=int(env("SOAK_SEED", "0")) or None)
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--command", default=env("SOAK_COMMAND", ""),
                    help="the command line to note in the JSON")
    args = ap.parse_args(argv)
    if not args.endpoint or not args.access_key or not args.secret_key:
        ap.error("give --endpoint, --access-key and --secret-key (or S3_TEST_ENDPOINT_URL, "
                 "S3_TEST_ACCESS_KEY, S3_TEST_SECRET_KEY)")
    url = urlsplit(args.endpoint)
    if url.hostname not in ("127.0.0.1", "localhost") or url.port is None:
        ap.error(f"the soak talks to 127.0.0.1:PORT only, not {args.endpoint!r}")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    fix_malloc_thresholds()
    seed = args.seed if args.seed is not None else random.randrange(1, 1 << 30)
    every = args.sample_every or min(5.0, max(0.2, args.seconds / 150))

    configure(args)
    make_bucket(args)
    from django_s3_storage.storage import S3Storage

    run = f"soak-{uuid.uuid4().hex[:10]}"
    storage = S3Storage()
    syncs = [S3Storage(aws_s3_key_prefix=f"{run}/sync{i}", aws_s3_max_pool_connections=1)
             for i in range(args.threads)]
    stats, stop = Stats(), threading.Event()
    fd_start = socket_inodes()[0]
    t0 = time.monotonic()
    sampler = Sampler(url.port, stats, every, stop, t0)
    sampler.sample()
    sampler.start()
    # a worker parks between two files: at most one file's life, at worst a few
    # calls that each give up within the read timeout and retries
    control = Control(args.threads, timeout=600)
    workers = [Worker(i, storage, syncs[i], run, seed, control, stats, args.endpoint)
               for i in range(args.threads)]
    warmup = min(60.0, 0.2 * args.seconds)
    args.checkpoints = args.checkpoints or max(6, int((args.seconds - warmup) / 30))
    marks = [warmup + (args.seconds - warmup) * i / args.checkpoints
             for i in range(args.checkpoints + 1)]
    print(f"soak: {args.threads} threads x {args.seconds:g} s against {args.endpoint}, "
          f"bucket {args.bucket}, prefix {run}/, seed {seed}; warm-up {warmup:g} s", flush=True)
    for w in workers:
        w.start()

    def at_rest() -> None:
        gc.collect()
        s = sampler.sample(rest=True)
        heap = s["malloc_in_use"]
        print(f"  {s['t']:7.1f} s  {s['ops']:7d} ops  {s['errors']} errors  at rest: "
              f"RSS {s['rss_kib'] / KiB:6.1f} MiB (before trim {s['rss_raw_kib'] / KiB:.1f}, "
              f"malloc {heap / MiB if heap is not None else -1:.1f})  {s['fds']} fds  "
              f"{s['connections']} connections", flush=True)

    for _ in workers:      # every thread did each kind of file once (or gave up)
        control.warmed.acquire(timeout=max(1.0, t0 + args.seconds - time.monotonic()))
    warmup = max(warmup, time.monotonic() - t0)
    marks = [warmup + (args.seconds - warmup) * i / args.checkpoints
             for i in range(args.checkpoints + 1)]
    try:
        for i, mark in enumerate(marks):
            time.sleep(max(0.0, t0 + mark - time.monotonic()))
            control.checkpoint(at_rest, last=i == len(marks) - 1)
    except threading.BrokenBarrierError:
        stats.error(-1, "checkpoint", RuntimeError("a worker did not park within 600 s"))
        control.done = True
    for w in workers:
        w.join(timeout=600)
    elapsed = time.monotonic() - t0
    stop.set()
    sampler.join()
    leftover = [k[0] for k in storage._client.list_objects(prefix=run + "/")["Contents"]]

    figures = verdict(args, stats, sampler.samples, fd_start, leftover)
    result = {
        "command": args.command or " ".join([sys.executable] + sys.argv),
        "endpoint": args.endpoint, "threads": args.threads, "seconds": args.seconds,
        "elapsed": round(elapsed, 1), "seed": seed, "prefix": run,
        "ops": dict(sorted(stats.ops.items())), "ops_total": sum(stats.ops.values()),
        "bytes": dict(sorted(stats.bytes.items())), "errors": stats.error_count,
        "error_samples": stats.errors, **figures, "samples": sampler.samples,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")

    print(f"\n{result['ops_total']} operations in {elapsed:.0f} s, {stats.error_count} errors")
    for kind in KINDS:
        print(f"  {kind:16} {stats.ops[kind]:8d}   {stats.bytes[kind] / MiB:10.1f} MiB")
    mib = lambda v: f"{v / MiB:.1f} MiB" if v is not None else "-"  # noqa: E731
    drift = figures["rss_drift"]
    print(f"RSS at rest after the warm-up ({figures['warmup_seconds'] or 0:.0f} s) "
          f"{mib(figures['rss_at_warmup_end'])}, at the end {mib(figures['rss_at_end'])}: "
          f"drift {mib(drift)} (bound {args.rss_bound / MiB:.0f} MiB); while running "
          f"{mib(figures['rss_running_min'])} to {mib(figures['rss_running_max'])}")
    print(f"fds {figures['fds_min']}..{figures['fds_max']} (at rest {figures['fds_at_warmup_end']}"
          f" -> {figures['fds_at_end']}; start {fd_start}, bound {figures['fd_bound']}); "
          f"connections {figures['connections_min']}..{figures['connections_max']} (at rest "
          f"{figures['connections_at_warmup_end']} -> {figures['connections_at_end']}; "
          f"bound {figures['connection_bound']})")
    for e in stats.errors[:5]:
        print(f"error in thread {e['thread']}, {e['op']}: {e['type']}: {e['error']}")
    if figures["failures"]:
        print("FAILED: " + "; ".join(figures["failures"]))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
