"""collectstatic into this package's storages: the package's command (the storage's
collecting() run: one listing, no PUT or DELETE for what the bucket holds, concurrent
uploads) leaves the bucket exactly as Django's own command does, sends few requests
on an unchanged re-run, raises every failed upload, and leaves nothing cached behind."""
from __future__ import annotations

import builtins
import gzip
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from django.contrib.staticfiles.management.commands.collectstatic import Command as Plain
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.test import override_settings

from django_s3_storage.management.commands.collectstatic import Command as Ours
from django_s3_storage.storage import S3Error, StaticS3Storage

from servers import Reply, bench_module

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "test-bucket-static"
MANIFEST = "django_s3_storage.storage.ManifestStaticS3Storage"
STATIC = "django_s3_storage.storage.StaticS3Storage"


proxy_module = bench_module("proxy")
FaultProxy, Rule = proxy_module.FaultProxy, proxy_module.Rule
METHODS = ("GET", "HEAD", "PUT", "DELETE", "POST")
Group: Any = getattr(builtins, "ExceptionGroup", S3Error)   # Python 3.11+


def _tree(root: Path) -> None:
    (root / "css").mkdir(parents=True)
    (root / "js").mkdir()
    (root / "img").mkdir()
    (root / "img" / "logo.png").write_bytes(bytes(range(256)) * 8)
    (root / "img" / "bg.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'></svg>\n" * 20)
    (root / "css" / "site.css").write_text(
        "body { background: url('../img/logo.png') }\n"
        ".x { background: url(\"../img/bg.svg#frag\") }\n" * 40)
    (root / "css" / "changes.css").write_text(".v1 { color: red }\n" * 50)
    (root / "css" / "gone.css").write_text(".gone { color: blue }\n" * 50)
    (root / "js" / "app.js").write_text("var app = 1;\n" * 300)
    (root / "robots.txt").write_text("x")    # too small to compress


def _change(root: Path) -> None:
    path = root / "css" / "changes.css"
    path.write_text(".v2 { color: green; background: url('../img/logo.png') }\n" * 50)
    later = time.time() + 3600   # newer than the copy in the bucket, whatever the clocks
    os.utime(path, (later, later))
    (root / "css" / "gone.css").unlink()


def _collect(command: Callable[[], Any], src: Path, prefix: str, backend: str,
             endpoint: str | None = None) -> None:
    extra = {"AWS_S3_ENDPOINT_URL_STATIC": endpoint} if endpoint else {}
    with override_settings(STATICFILES_DIRS=[str(src)], AWS_S3_KEY_PREFIX_STATIC=prefix,
                           AWS_S3_MAX_ATTEMPTS_STATIC=1,
                           STORAGES={"default": {"BACKEND": "django_s3_storage.storage.S3Storage"},
                                     "staticfiles": {"BACKEND": backend}}, **extra):
        call_command(command(), interactive=False, verbosity=0)


def _snapshot(s3: Any, prefix: str) -> dict[str, tuple[Any, ...]]:
    """Every object under the prefix: bytes and the headers a browser or S3 shows."""
    boto = s3.boto()
    out = {}
    for page in boto.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            obj = boto.get_object(Bucket=BUCKET, Key=item["Key"])
            out[item["Key"][len(prefix):]] = (
                obj["Body"].read(), obj.get("ContentType"), obj.get("CacheControl"),
                obj.get("ContentEncoding"), obj.get("Metadata"), item["ETag"])
    return out


@pytest.fixture
def counting(s3: Any) -> Any:
    port = int(s3.endpoint.rsplit(":", 1)[1])
    rules = [Rule("reset-before-request", m, times=0) for m in METHODS]
    with FaultProxy(("127.0.0.1", port), rules) as proxy:
        proxy.rules_by_method = dict(zip(METHODS, rules))
        yield proxy


def _counts(proxy: Any) -> dict[str, int]:
    return {m: r.seen for m, r in proxy.rules_by_method.items() if r.seen}


def _zero(proxy: Any) -> None:
    for rule in proxy.rules:
        rule.seen = 0


@pytest.mark.parametrize("backend", [MANIFEST, STATIC])
def test_bucket_as_djangos_own_command_leaves_it(s3: Any, tmp_path: Path, counting: Any,
                                                 backend: str) -> None:
    src = tmp_path / "static"
    _tree(src)
    run = uuid.uuid4().hex[:10]
    plain, ours = f"cs-{run}-plain/", f"cs-{run}-ours/"
    _collect(Plain, src, plain, backend)
    _zero(counting)
    _collect(Ours, src, ours, backend, counting.endpoint)
    first = _counts(counting)
    reference = _snapshot(s3, plain)
    assert _snapshot(s3, ours) == reference
    assert "staticfiles.json" in reference or backend == STATIC
    assert any(v[3] == "gzip" for v in reference.values())           # some went compressed
    assert first.get("HEAD", 0) == 0 and first.get("DELETE", 0) == 0  # the listing answered
    assert first["PUT"] == len(reference)

    # unchanged: the listing, the manifest read when the storage is made, nothing else
    _zero(counting)
    _collect(Ours, src, ours, backend, counting.endpoint)
    again = _counts(counting)
    assert sum(again.values()) <= 2, again
    assert "PUT" not in again and "DELETE" not in again and "HEAD" not in again
    assert _snapshot(s3, ours) == reference

    # a file changed (and is referenced by nothing), a file removed from the source
    _change(src)
    _collect(Plain, src, plain, backend)
    _zero(counting)
    _collect(Ours, src, ours, backend, counting.endpoint)
    changed = _counts(counting)
    reference = _snapshot(s3, plain)
    assert any(b".v2" in v[0] or v[3] == "gzip" for k, v in reference.items()
               if "changes" in k)
    assert _snapshot(s3, ours) == reference
    # only what changed went up: changes.css (and its hashed name and the manifest)
    assert 1 <= changed.get("PUT", 0) <= 3, changed
    assert "HEAD" not in changed


def test_failed_upload_in_the_batch_is_raised(s3: Any, tmp_path: Path) -> None:
    src = tmp_path / "static"
    _tree(src)
    port = int(s3.endpoint.rsplit(":", 1)[1])
    rule = Rule("500-internal-error", "PUT", lambda path, query, headers: path.endswith(
        ("/js/app.js", "/robots.txt")), times=100)
    prefix = f"cs-{uuid.uuid4().hex[:10]}/"
    with FaultProxy(("127.0.0.1", port), [rule]) as proxy:
        with pytest.raises((S3Error, Group)) as info:
            _collect(Ours, src, prefix, STATIC, proxy.endpoint)
    errors = info.value.exceptions if hasattr(info.value, "exceptions") else [info.value]
    # both failures, not only the first (Python 3.10 has no ExceptionGroup: the first)
    assert len(errors) == (2 if Group is not S3Error else 1)
    assert all(getattr(e, "code", None) == "InternalError" for e in errors)
    names = {e.key.rsplit("/", 1)[-1] for e in errors}
    assert names == {"app.js", "robots.txt"} or (len(errors) == 1 and names < {"app.js",
                                                                              "robots.txt"})
    assert rule.faulted >= 2
    keys = set(_snapshot(s3, prefix))
    assert "js/app.js" not in keys and "robots.txt" not in keys
    assert "css/site.css" in keys   # the others went up


def test_the_same_bytes_are_compressed_once_in_a_run(s3: Any, prefix: str) -> None:
    # post-processing stores most files twice (name and hashed name): one gzip
    storage = StaticS3Storage(aws_s3_key_prefix=prefix)
    packed: list[int] = []
    gzipped = storage._gzipped
    storage._gzipped = lambda content: packed.append(1) or gzipped(content)  # type: ignore
    body = b"var app = 1;\n" * 300
    with storage.collecting():
        for name in ("a.js", "a.0123456789ab.js", "b.js"):
            storage.save(name, ContentFile(body if name != "b.js" else body + b"//\n"))
    assert len(packed) == 2
    stored = _snapshot(s3, prefix)
    assert stored["a.js"][0] == stored["a.0123456789ab.js"][0]
    assert stored["a.js"][3] == "gzip" and gzip.decompress(stored["a.js"][0]) == body
    assert gzip.decompress(stored["b.js"][0]) == body + b"//\n"


def test_nothing_cached_outside_the_run(s3: Any, prefix: str) -> None:
    storage = StaticS3Storage(aws_s3_key_prefix=prefix)
    boto = s3.boto()
    storage.save("a.css", ContentFile(b"a"))
    seen_from_other_thread: list[bool] = []
    with storage.collecting():
        boto.put_object(Bucket=BUCKET, Key=prefix + "b.css", Body=b"b")
        assert not storage.exists("b.css")      # the run's listing, taken before
        assert storage.exists("a.css")
        # another thread (a web request in the same process) asks the server
        t = threading.Thread(target=lambda: seen_from_other_thread.append(
            storage.exists("b.css")))
        t.start()
        t.join(30)
        storage.delete("a.css")                 # held back ...
        assert not storage.exists("a.css")
    assert seen_from_other_thread == [True]
    assert not storage.exists("a.css")          # ... and sent when the run ends
    assert storage.exists("b.css")
    boto.delete_object(Bucket=BUCKET, Key=prefix + "b.css")
    assert not storage.exists("b.css")
    boto.put_object(Bucket=BUCKET, Key=prefix + "c.css", Body=b"c")
    assert storage.exists("c.css")
    assert storage.save("c.css", ContentFile(b"x")) != "c.css"   # taken: another name


def test_the_bodies_in_flight_stay_within_their_byte_budget() -> None:
    """The run's uploads hold their bodies in memory: at most _INFLIGHT_MAX bytes of
    them queued or being sent (a bigger one alone), however many files wait."""
    from django_s3_storage.storage import _Budget

    budget = _Budget(100)
    peak, alone, lock = [0], [], threading.Lock()

    def one(n: int) -> None:
        budget.acquire(n)
        with lock:
            peak[0] = max(peak[0], budget.used)
            if n > 100:
                alone.append(budget.used == n)
        time.sleep(0.002)
        budget.release(n)

    sizes = [30, 70, 40, 150, 10, 99, 1, 60] * 8
    threads = [threading.Thread(target=one, args=(n,)) for n in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert peak[0] <= 150 and alone == [True] * 8 and budget.used == 0
    budget.acquire(60)
    waiter = threading.Thread(target=budget.acquire, args=(50,))
    waiter.start()
    waiter.join(timeout=0.2)
    assert waiter.is_alive()            # 110 > 100: waits for the release
    budget.release(60)
    waiter.join(timeout=5)
    assert not waiter.is_alive() and budget.used == 50


def test_post_processing_hashes_copied_files_without_waiting_for_their_uploads(
        tmp_path: Path) -> None:
    """An image a css refers to is hashed from its source file while its own upload
    still runs: post-processing never waits on the network for bytes it has on disk.
    The css lies deeper than the image, so Django hashes it first and has to read the
    image; the server holds the image's PUT until the rewritten css has arrived."""
    from test_overwrite import RacyS3

    release, css_seen = threading.Event(), threading.Event()

    class HeldImage(RacyS3):
        def answer(self, seen: Any) -> Any:
            path = seen.path.split("?")[0]
            if seen.method == "PUT" and path.endswith("/held/pic.png"):
                release.wait(30)
            elif seen.method == "PUT" and "/held/deep/er/page." in path and \
                    not path.endswith("/page.css"):
                css_seen.set()
            elif seen.method == "GET" and "list-type" not in seen.path:
                return Reply(404, b"<Error><Code>NoSuchKey</Code></Error>")   # no manifest yet
            return super().answer(seen)

    src = tmp_path / "src"
    (src / "deep" / "er").mkdir(parents=True)
    (src / "pic.png").write_bytes(bytes(range(256)) * 8)
    (src / "deep" / "er" / "page.css").write_text(".a { background: url('../../pic.png') }\n")
    errors: list[BaseException] = []

    def collect() -> None:
        try:
            _collect(Ours, src, "held", MANIFEST, endpoint=fake.endpoint)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    with HeldImage(lambda key, seen: False) as fake:
        worker = threading.Thread(target=collect)
        worker.start()
        try:
            assert css_seen.wait(20), f"post-processing waited for the image's upload {errors}"
        finally:
            release.set()
            worker.join(60)
        assert not worker.is_alive() and errors == []
        names = set(fake.stored)
        assert {"held/pic.png", "held/deep/er/page.css"} <= names
        (css,) = [n for n in names if n.startswith("held/deep/er/page.") and n.endswith(".css")
                  and n != "held/deep/er/page.css"]
        (pic,) = [n for n in names if n.startswith("held/pic.") and n != "held/pic.png"]
        body = fake.stored[css]
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        assert pic.rsplit("/", 1)[1].encode() in body
