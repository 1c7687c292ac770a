"""Fault injection over real sockets (issue 8, item 1): each operation of the storage
goes through bench/proxy.py's FaultProxy to the S3 server, and the proxy resets,
answers errors, stalls or cuts short the operation's main request. A fault given once
must be survived by a retry with the exact bytes stored; a fault given every time
must end in a clear OSError within the timeouts. Either way: no truncated or
corrupted object, no orphaned multipart upload, no hang. The outcomes make the
table in README.rst ("Reliability"); test_readme_table_is_the_one_this_run_produced
compares them, and S3_WRITE_FAULT_TABLE=1 (or `make fault-table`) rewrites it.
"""
from __future__ import annotations

import concurrent.futures
import os
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from django.core.files.base import ContentFile

from django_s3_storage import _s3
from django_s3_storage.storage import S3Storage

from conftest import BACKEND, BUCKET, S3Target
from servers import bench_module

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.rst"
TABLE_START, TABLE_END = ".. fault-table-start", ".. fault-table-end"


proxy_module = bench_module("proxy")
FaultProxy, Rule = proxy_module.FaultProxy, proxy_module.Rule

READ_TIMEOUT = 1.0
ATTEMPTS = 2            # one retry: a fault given once is survived, one given always is not
ALWAYS = 50             # "every time": more than any operation's attempts
PART = 5 * 1024 * 1024  # S3's smallest part: a multipart save of two parts
SLACK = 8.0             # for a loaded machine (and ASan): the bounds are not timings
WORKERS = 6             # cases of one fault at once (stalls wait; most time is theirs)
HANG = 90.0             # a case still running after this is a hang


def _data(n: int, seed: int) -> bytes:
    block = bytes((i * 131 + seed * 7 + (i >> 8)) & 0xFF for i in range(65536))
    return (block * (n // len(block) + 1))[:n]


SMALL = _data(150_000, 1)
LARGE = _data(PART + 64 * 1024, 2)
FAR = _data(4 * 1024 * 1024, 3)   # a seek 3 MB in is far beyond the reader's buffer


# ---- the operations -------------------------------------------------------------------

def _q(name: str) -> Callable[[str, dict[str, list[str]], dict[str, str]], bool]:
    return lambda path, query, headers: name in query


def _plain_put(path: str, query: dict[str, list[str]], headers: dict[str, str]) -> bool:
    return not query and "x-amz-copy-source" not in headers


def _copy(path: str, query: dict[str, list[str]], headers: dict[str, str]) -> bool:
    return "x-amz-copy-source" in headers


def _object_get(path: str, query: dict[str, list[str]], headers: dict[str, str]) -> bool:
    return "list-type" not in query


def _ranged_get(path: str, query: dict[str, list[str]], headers: dict[str, str]) -> bool:
    return "range" in headers


def _object_delete(path: str, query: dict[str, list[str]], headers: dict[str, str]) -> bool:
    return "uploadId" not in query


@dataclass
class Case:
    """One operation under one fault: `key(name)` is a key of its own prefix."""

    s3: S3Target
    direct: _s3.Client        # to the server, around the proxy
    storage: S3Storage        # through the proxy
    prefix: str

    def key(self, name: str) -> str:
        return self.prefix + name

    def put(self, name: str, data: bytes) -> None:
        self.direct.put_object(self.key(name), data, content_type="application/octet-stream")

    def stored(self, name: str) -> bytes | None:
        try:
            return self.direct.get_object(self.key(name))[0]
        except FileNotFoundError:
            return None


@dataclass
class Operation:
    title: str
    method: str
    match: Callable[[str, dict[str, list[str]], dict[str, str]], bool]
    setup: Callable[[Case], None]
    run: Callable[[Case], None]
    # the state after the run: `ok` says whether it succeeded. Raises AssertionError.
    check: Callable[[Case, bool], None]


def _nothing(case: Case) -> None:
    pass


def _saved(name: str, data: bytes) -> Callable[[Case, bool], None]:
    def check(case: Case, ok: bool) -> None:
        stored = case.stored(name)
        if ok:
            assert stored == data, "the save succeeded but the object is not the bytes saved"
        else:
            assert stored in (None, data), "a failed save left an object with other bytes"
    return check


def _save(name: str, data: bytes) -> Callable[[Case], None]:
    def run(case: Case) -> None:
        assert case.storage.save(name, ContentFile(data)) == name
    return run


def _setup_one(case: Case) -> None:
    case.put("f.bin", SMALL)


def _read(case: Case) -> None:
    with case.storage.open("f.bin") as f:
        assert f.read() == SMALL, "open().read() returned other bytes"


def _setup_far(case: Case) -> None:
    case.put("f.bin", FAR)


def _ranged(case: Case) -> None:
    with case.storage.open("f.bin") as f:
        f.seek(3_000_000)
        assert f.read(1_000_000) == FAR[3_000_000:4_000_000], "a ranged read returned other bytes"


def _unchanged_far(case: Case, ok: bool) -> None:
    assert case.stored("f.bin") == FAR, "a read changed the object"


def _unchanged(case: Case, ok: bool) -> None:
    assert case.stored("f.bin") == SMALL, "a read changed the object"


def _setup_three(case: Case) -> None:
    for name in ("a.bin", "b.bin", "d/c.bin"):
        case.put(name, SMALL)


def _listdir(case: Case) -> None:
    assert case.storage.listdir("") == (["d"], ["a.bin", "b.bin"]), "listdir is wrong"


def _unchanged_three(case: Case, ok: bool) -> None:
    for name in ("a.bin", "b.bin", "d/c.bin"):
        assert case.stored(name) == SMALL, "a listing changed an object"


def _copy_run(case: Case) -> None:
    assert case.storage.copy("f.bin", "g.bin") == "g.bin"


def _copied(case: Case, ok: bool) -> None:
    assert case.stored("f.bin") == SMALL, "a copy changed its source"
    _saved("g.bin", SMALL)(case, ok)


def _delete(case: Case) -> None:
    case.storage.delete("f.bin")


def _deleted(case: Case, ok: bool) -> None:
    stored = case.stored("f.bin")
    if ok:
        assert stored is None, "delete() succeeded but the object is there"
    else:
        assert stored in (None, SMALL), "a failed delete changed the object"


def _setup_two(case: Case) -> None:
    for name in ("a.bin", "b.bin"):
        case.put(name, SMALL)


def _sync_meta(case: Case) -> None:
    case.storage.sync_meta()


def _synced(case: Case, ok: bool) -> None:
    for name in ("a.bin", "b.bin"):
        assert case.stored(name) == SMALL, "sync_meta changed an object's bytes"
    if ok:
        for name in ("a.bin", "b.bin"):
            meta = case.direct.head_object(case.key(name))
            assert "max-age=3600" in (meta.get("CacheControl") or ""), \
                "sync_meta succeeded but did not rewrite the headers"


OPERATIONS: dict[str, Operation] = {op.title: op for op in [
    Operation("save", "PUT", _plain_put, _nothing, _save("f.bin", SMALL),
              _saved("f.bin", SMALL)),
    Operation("save multipart", "PUT", _q("partNumber"), _nothing, _save("m.bin", LARGE),
              _saved("m.bin", LARGE)),
    Operation("multipart complete", "POST", _q("uploadId"), _nothing, _save("m.bin", LARGE),
              _saved("m.bin", LARGE)),
    Operation("read", "GET", _object_get, _setup_one, _read, _unchanged),
    Operation("ranged read", "GET", _ranged_get, _setup_far, _ranged, _unchanged_far),
    Operation("listdir", "GET", _q("list-type"), _setup_three, _listdir, _unchanged_three),
    Operation("copy", "PUT", _copy, _setup_one, _copy_run, _copied),
    Operation("delete", "DELETE", _object_delete, _setup_one, _delete, _deleted),
    Operation("sync_meta", "PUT", _copy, _setup_two, _sync_meta, _synced),
]}

# the request each operation's faults hit
TARGETS = {
    "save": "the PutObject",
    "save multipart": "each UploadPart (2 parts of 5 MiB and 64 KiB)",
    "multipart complete": "the CompleteMultipartUpload",
    "read": "each GET of the object (150 KB, read to its end)",
    "ranged read": "each GET with a Range (4 MiB object: seek to 3 MB, read 1 MB)",
    "listdir": "the ListObjectsV2",
    "copy": "the CopyObject",
    "delete": "the DeleteObject",
    "sync_meta": "each CopyObject (2 objects)",
}

NO_FAULT = "none"
FAULTS = (NO_FAULT,) + tuple(proxy_module.FAULTS)
# S3 sends a 200 with an error document only for CopyObject, UploadPartCopy and
# CompleteMultipartUpload: to other requests it would be a success that is not one
NOT_APPLICABLE = {
    ("200-error-document", op): "S3 sends a 200 with an error document only to a copy "
                                "or a CompleteMultipartUpload"
    for op in ("save", "save multipart", "read", "ranged read", "listdir", "delete")}


# ---- running a case ------------------------------------------------------------------

@dataclass
class Outcome:
    fault: str
    times: str            # "once" or "always"
    op: str
    text: str             # the table's wording
    seconds: float
    ok: bool
    seen: int = 0         # the requests the rule matched
    faulted: int = 0      # and those the fault was applied to
    problem: str | None = None


def _error_text(e: BaseException) -> str:
    """An S3Error's code (TransportError, Timeout, SlowDown...), else the class."""
    code = getattr(e, "code", None)
    return code if isinstance(e, _s3.S3Error) and code else type(e).__name__


def _bound(fault: str) -> float:
    """The most a failing call may take: each attempt waits at most the read timeout
    (a stall), a throttled retry at most 1 s (backoff 0-1 s), a transient one 50 ms."""
    return ATTEMPTS * READ_TIMEOUT + 1.0 + SLACK


def _run_case(s3: S3Target, boto: Any, base: str, fault: str, times: str, op: Operation
              ) -> Outcome:
    prefix = f"{base}{fault}-{times}-{op.title.replace(' ', '-')}/"
    direct = s3.client()
    count = 0 if fault == NO_FAULT else (1 if times == "once" else ALWAYS)
    rule = Rule(fault if fault != NO_FAULT else "reset-before-request", op.method, op.match,
                count)
    with FaultProxy(("127.0.0.1", int(s3.endpoint.rsplit(":", 1)[1])), [rule],
                    idle_timeout=20) as proxy:
        storage = S3Storage(aws_s3_endpoint_url=proxy.endpoint, aws_s3_bucket_name=BUCKET,
                            aws_access_key_id=s3.access_key,
                            aws_secret_access_key=s3.secret_key,
                            aws_s3_key_prefix=prefix, aws_s3_read_timeout=READ_TIMEOUT,
                            aws_s3_connect_timeout=5, aws_s3_max_attempts=ATTEMPTS,
                            aws_s3_multipart_threshold=PART, aws_s3_multipart_chunksize=PART)
        case = Case(s3, direct, storage, prefix)
        op.setup(case)
        started = time.monotonic()
        error: BaseException | None = None
        wrong: str | None = None
        try:
            op.run(case)
        except AssertionError as e:   # it returned, but not what it should have
            wrong = str(e).split("\n")[0]
        except BaseException as e:  # noqa: BLE001 - judged below
            error = e
        took = time.monotonic() - started
        seen, faulted = rule.seen, rule.faulted
    outcome = Outcome(fault, times, op.title, "ok", took, error is None, seen, faulted)
    problems = [wrong] if wrong else []
    if error is not None:
        outcome.text = _error_text(error)
        if not isinstance(error, OSError):
            problems.append(f"raised {type(error).__name__}, not an OSError: {error}")
        if took > _bound(fault):
            problems.append(f"failed after {took:.1f} s, beyond {_bound(fault):.1f} s")
    try:
        op.check(case, error is None)
    except AssertionError as e:
        problems.append(str(e))
    uploads = boto.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", [])
    if uploads:
        problems.append(f"{len(uploads)} multipart upload(s) left open")
        for u in uploads:
            boto.abort_multipart_upload(Bucket=BUCKET, Key=u["Key"], UploadId=u["UploadId"])
    if problems:
        outcome.problem = f"{fault} {times}, {op.title}: " + "; ".join(problems) + \
            (f" (error: {error})" if error is not None else "")
    return outcome


# ---- the outcomes of a whole fault, kept for the table -------------------------------

RESULTS: dict[str, list[Outcome]] = {}
BASELINE: dict[str, int] = {}     # the matching requests of each operation without a fault
_results_lock = threading.Lock()


def _outcomes(s3: S3Target, fault: str) -> list[Outcome]:
    """Every operation under `fault`, once and always, a few at a time (each case has
    its own proxy and prefix), bounded: a case not done in HANG seconds is a hang."""
    with _results_lock:
        if fault in RESULTS:
            return RESULTS[fault]
    if fault != NO_FAULT:
        _outcomes(s3, NO_FAULT)
    boto = s3.boto()
    base = f"faults-{os.getpid()}-{time.monotonic_ns() % 10**9}/"
    jobs = [(times, op) for op in OPERATIONS.values()
            for times in (("once",) if fault == NO_FAULT else ("once", "always"))
            if (fault, op.title) not in NOT_APPLICABLE]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS)
    try:
        futures = [pool.submit(_run_case, s3, boto, base, fault, times, op)
                   for times, op in jobs]
        done, pending = concurrent.futures.wait(futures, timeout=HANG)
        assert not pending, f"{len(pending)} case(s) of {fault} still running after {HANG} s"
        outcomes = [f.result() for f in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    for o in outcomes:
        if o.ok:
            retries = o.seen - BASELINE.get(o.op, o.seen)
            if retries > 0:
                o.text = f"ok +{retries}"
    if fault == NO_FAULT:
        for o in outcomes:
            BASELINE[o.op] = o.seen
    with _results_lock:
        RESULTS[fault] = outcomes
    return outcomes


@pytest.mark.parametrize("fault", FAULTS)
def test_each_operation_survives_the_fault_or_fails_cleanly(s3: S3Target, fault: str) -> None:
    outcomes = _outcomes(s3, fault)
    problems = []
    for o in outcomes:
        print(f"{fault:22} {o.times:6} {o.op:18} {o.text:32} {o.seconds:5.2f} s")
        if o.problem:
            problems.append(o.problem)
        if fault == NO_FAULT and not (o.ok and o.text == "ok" and o.seen >= 1):
            problems.append(f"{o.op} without a fault: {o.text}, {o.seen} requests of its own")
        if fault != NO_FAULT and not o.faulted:
            problems.append(f"{o.op}: {fault} never applied")
        if o.times == "once" and not o.ok:
            # given once, a fault is survived: by a retry, or it did no harm
            problems.append(f"{o.op} did not survive {fault} given once: {o.text}")
    assert not problems, "\n".join(problems)


# ---- the table ---------------------------------------------------------------------------

SHORT = {"save": "save", "save multipart": "multipart", "multipart complete": "complete",
         "read": "read", "ranged read": "range", "listdir": "listdir", "copy": "copy",
         "delete": "delete", "sync_meta": "sync_meta"}


def render_table(results: dict[str, list[Outcome]]) -> str:
    """The RST table of fault x operation x outcome, and what its words mean."""
    ops = list(OPERATIONS)
    header = ["fault"] + [SHORT[op] for op in ops]
    rows = []
    for fault in FAULTS:
        by = {(o.times, o.op): o.text for o in results[fault]}
        for times in (("once",) if fault == NO_FAULT else ("once", "always")):
            label = fault if fault == NO_FAULT else f"{fault}, {times}"
            rows.append([label] + [by.get((times, op), "n/a") for op in ops])
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    rule = " ".join("=" * w for w in widths)

    def line(cells: list[str]) -> str:
        return " ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    table = [rule, line(header), rule] + [line(r) for r in rows] + [rule]
    reasons = sorted(set(NOT_APPLICABLE.values()))
    notes = [
        "", "ok: the call succeeded and the bytes stored or read are exact; +1: after one "
        "retry of the request the fault hit. Otherwise the call raised S3Error (an "
        "OSError) with this code, within the read timeout per attempt plus backoff; no "
        "object was left truncated or changed, no multipart upload open.",
        "", "The request each column's faults hit: " +
        "; ".join(f"{SHORT[op]}: {TARGETS[op]}" for op in ops) + ".",
        "", "save, always, ok +1: the first PUT was stored and its reply lost, the retry was "
        "refused (412: the name is taken, by that PUT) and a HEAD found the object stored "
        "is the one sent. delete, short-body: a 204 has no body to cut.",
        "", "n/a: " + "; ".join(reasons) + "."]
    notes = [textwrap.fill(n, 88) if n else n for n in notes]
    return "\n".join(table + notes)


def _readme_table() -> tuple[str, str, str]:
    text = README.read_text()
    before, start, rest = text.partition(TABLE_START)
    inside, end, after = rest.partition(TABLE_END)
    assert start and end, f"README.rst has no {TABLE_START} ... {TABLE_END}"
    return before + start, inside, end + after


def _table_block(table: str) -> str:
    return "\n\n" + table + "\n\n"


def test_readme_table_is_the_one_this_run_produced(s3: S3Target) -> None:
    results = {fault: _outcomes(s3, fault) for fault in FAULTS}
    table = render_table(results)
    head, inside, tail = _readme_table()
    if os.environ.get("S3_WRITE_FAULT_TABLE") == "1":
        README.write_text(head + _table_block(table) + tail)
        return
    # the wording holds no time and no server's own words: moto and Ceph RGW
    # produce the same table
    assert inside.strip() == table, (f"README.rst's fault table is not this run's on "
                                     f"{BACKEND}: rewrite it with `make fault-table`\n" + table)


# ---- what the faults found ------------------------------------------------------------

def _storage_through(proxy: Any, s3: S3Target, prefix: str) -> S3Storage:
    return S3Storage(aws_s3_endpoint_url=proxy.endpoint, aws_s3_bucket_name=BUCKET,
                     aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
                     aws_s3_key_prefix=prefix, aws_s3_read_timeout=READ_TIMEOUT,
                     aws_s3_max_attempts=ATTEMPTS, aws_s3_multipart_threshold=PART,
                     aws_s3_multipart_chunksize=PART)


@pytest.mark.parametrize("size", [len(SMALL), len(LARGE)], ids=["put", "multipart"])
def test_a_save_whose_reply_was_lost_keeps_its_name_and_stores_one_object(
        s3: S3Target, prefix: str, size: int) -> None:
    # AWS_S3_FILE_OVERWRITE = False (the default): the commit is conditional. Its
    # first attempt stored the object, the reply was lost, the retry was refused
    # (412: the name is taken, by that attempt): the file used to be saved again
    # under the next free name, leaving the first copy behind, referenced by nothing.
    # The retry may be libcurl's own, unseen by the client: the PUT went on a
    # kept-alive connection (save() looked whether the name is free on it first)
    # that died before any byte of a reply came.
    data = SMALL if size == len(SMALL) else LARGE
    matches = _plain_put if size == len(SMALL) else _q("uploadId")
    rule = Rule("reset-after-request", "PUT" if size == len(SMALL) else "POST", matches, 1)
    with FaultProxy(("127.0.0.1", int(s3.endpoint.rsplit(":", 1)[1])), [rule]) as proxy:
        storage = _storage_through(proxy, s3, prefix)
        assert storage.save("f.bin", ContentFile(data)) == "f.bin"
    assert rule.faulted == 1 and rule.seen == 2
    listed = s3.boto().list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    assert [o["Key"] for o in listed] == [prefix + "f.bin"]
    assert s3.client().get_object(prefix + "f.bin")[0] == data


def test_a_read_cut_short_every_time_fails_within_its_attempts(
        s3: S3Target, prefix: str) -> None:
    # each attempt got half of what was left, then a stall: every attempt moved
    # bytes, so the count of attempts started afresh each time, and a 150 KB read
    # took 17 read timeouts (23 s for read_timeout=1, one per halving)
    s3.client().put_object(prefix + "f.bin", SMALL)
    rule = Rule("stall-mid-response", "GET", _object_get, ALWAYS)
    with FaultProxy(("127.0.0.1", int(s3.endpoint.rsplit(":", 1)[1])), [rule]) as proxy:
        storage = _storage_through(proxy, s3, prefix)
        started = time.monotonic()
        with pytest.raises(_s3.S3Error) as info:
            storage.open("f.bin").read()
        took = time.monotonic() - started
    assert info.value.code == "Timeout"
    assert rule.seen == ATTEMPTS
    assert took < ATTEMPTS * READ_TIMEOUT + SLACK
