"""manage.py s3_sync_meta: storages named by STORAGES alias or dotted path, --prefix,
--dry-run, a progress bar on a terminal and plain lines otherwise, a summary line,
failures collected and reported at the end with a non-zero exit, and objects
rewritten AWS_S3_MAX_POOL_CONNECTIONS at a time (moto, and a scripted server on
127.0.0.1 for failures and concurrency)."""
from __future__ import annotations

import io
import re
import threading
import time
from typing import Any, Iterator

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.test import override_settings

from django_s3_storage.storage import S3Storage

from conftest import S3Target
from servers import FakeS3, Reply

# a storage a test puts here, for the command's dotted path
TARGET: S3Storage | None = None
SUMMARY = re.compile(r"^(\d+) files? (rewritten|would be rewritten) in (\d+) storages? "
                     r"in [0-9.]+ s(, (\d+) failed)?\.$")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(*args: str, **options: Any) -> tuple[list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("s3_sync_meta", *args, stdout=out, stderr=err, **options)
    return out.getvalue().splitlines(), err.getvalue()


@pytest.fixture
def media(s3: S3Target, prefix: str) -> Iterator[None]:
    with override_settings(AWS_S3_KEY_PREFIX=prefix.rstrip("/")):
        for name in ("a.txt", "css/b.css", "css/c.css", "img/d.png"):
            default_storage.save(name, ContentFile(name.encode() * 10))
        yield


def cache_control(name: str) -> str:
    return str(default_storage.meta(name)["CacheControl"])


def test_aliases_name_the_storages_and_a_summary_line_ends_the_output(media: None) -> None:
    with override_settings(AWS_S3_MAX_AGE_SECONDS=555):
        lines, err = run("default")
    assert sorted(lines[:-1]) == ["a.txt", "css/b.css", "css/c.css", "img/d.png"]
    m = SUMMARY.match(lines[-1])
    assert m and m.group(1, 2, 3) == ("4", "rewritten", "1") and m.group(4) is None, lines[-1]
    assert err == ""
    assert cache_control("img/d.png") == "private,max-age=555"


def test_no_storage_named_is_an_error_not_a_silent_success(s3: S3Target) -> None:
    with pytest.raises(CommandError, match="Name at least one storage"):
        call_command("s3_sync_meta")


def test_an_unknown_alias_is_an_error_naming_it(s3: S3Target) -> None:
    with pytest.raises(CommandError, match="No storage 'nope' in STORAGES"):
        call_command("s3_sync_meta", "nope")


def test_dry_run_lists_what_it_would_rewrite_and_changes_nothing(media: None) -> None:
    before = cache_control("a.txt")
    with override_settings(AWS_S3_MAX_AGE_SECONDS=4242):
        lines, _ = run("default", dry_run=True)
    assert sorted(lines[:-1]) == ["a.txt", "css/b.css", "css/c.css", "img/d.png"]
    assert SUMMARY.match(lines[-1]).group(1, 2) == ("4", "would be rewritten")  # type: ignore[union-attr]
    assert cache_control("a.txt") == before != "private,max-age=4242"


def test_prefix_limits_the_run_to_the_names_under_it(media: None) -> None:
    with override_settings(AWS_S3_MAX_AGE_SECONDS=31):
        lines, _ = run("default", prefix="css/")
    assert lines[:-1] == ["css/b.css", "css/c.css"]          # in listing order
    assert cache_control("css/c.css") == "private,max-age=31"
    assert cache_control("a.txt") != "private,max-age=31"
    with pytest.raises(CommandError, match="--prefix"):
        call_command("s3_sync_meta", "default", prefix="/css")


def test_a_terminal_gets_a_progress_bar_instead_of_the_names(media: None) -> None:
    out = Terminal()
    call_command("s3_sync_meta", "default", stdout=out)
    text = out.getvalue()
    assert "a.txt" not in text
    bar = text.split("\n")[0]
    assert bar.startswith("\rdefault [") and "0/4" in bar
    final = bar.rsplit("\r", 1)[1]
    assert re.fullmatch(r"default \[#{30}\] 4/4 \d+ files/s", final), final
    assert SUMMARY.match(text.split("\n")[1])
    # -v 2: the names too
    out = Terminal()
    call_command("s3_sync_meta", "default", stdout=out, verbosity=2)
    assert "img/d.png" in out.getvalue()


def listing(keys: list[str]) -> bytes:
    contents = "".join(
        f"<Contents><Key>{k}</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>"
        f'<ETag>"0cc175b9c0f1b6a831c399e269772661"</ETag><Size>1</Size>'
        f"<StorageClass>STANDARD</StorageClass></Contents>" for k in keys)
    return (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult '
            f'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix>'
            f"<KeyCount>{len(keys)}</KeyCount><MaxKeys>1000</MaxKeys>"
            f"<IsTruncated>false</IsTruncated>{contents}</ListBucketResult>").encode()


COPIED = (b'<?xml version="1.0" encoding="UTF-8"?><CopyObjectResult>'
          b'<LastModified>2026-01-02T00:00:00.000Z</LastModified>'
          b'<ETag>"0cc175b9c0f1b6a831c399e269772661"</ETag></CopyObjectResult>')
FAILED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
          b"<Message>Access Denied</Message><RequestId>R1</RequestId></Error>")


class Bucket:
    """A bucket of `keys` whose copies of `refused` fail; copies are held `hold`
    seconds each, and the most in flight at once is counted."""

    def __init__(self, keys: list[str], refused: set[str], hold: float = 0.0) -> None:
        self.keys, self.refused, self.hold = keys, refused, hold
        self.lock = threading.Lock()
        self.active = self.most = 0
        self.copied: list[str] = []

    def __call__(self, method: str, path: str) -> Reply:
        key = path.split("?", 1)[0].removeprefix("/b/")
        if method == "GET" and "list-type=2" in path:
            return Reply(200, listing(self.keys), {"Content-Type": "application/xml"})
        if method == "HEAD":
            return Reply(200, b"", {"Content-Type": "text/plain", "ETag": '"0cc1"',
                                    "Content-Length": "1"})
        if method == "PUT":
            if key in self.refused:
                return Reply(403, FAILED, {"Content-Type": "application/xml"})
            with self.lock:
                self.active += 1
                self.most = max(self.most, self.active)
            time.sleep(self.hold)
            with self.lock:
                self.active -= 1
                self.copied.append(key)
            return Reply(200, COPIED, {"Content-Type": "application/xml"})
        return Reply(404, b"")


def scripted_storage(fake: FakeS3, **kwargs: Any) -> S3Storage:
    return S3Storage(aws_s3_endpoint_url=fake.endpoint, aws_s3_bucket_name="b",
                     aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="not-a-secret",
                     aws_s3_max_attempts=1, **kwargs)


def test_failures_are_collected_reported_at_the_end_and_exit_non_zero() -> None:
    global TARGET
    keys = ["k1", "k2", "k3", "k4"]
    bucket = Bucket(keys, refused={"k2"})
    with FakeS3(bucket) as fake:
        TARGET = scripted_storage(fake)
        try:
            out, err = io.StringIO(), io.StringIO()
            with pytest.raises(CommandError, match="1 file could not be rewritten"):
                call_command("s3_sync_meta", "test_sync_meta.TARGET", stdout=out, stderr=err)
        finally:
            TARGET = None
    lines = out.getvalue().splitlines()
    assert lines[:-1] == ["k1", "k3", "k4"]             # the others went on
    m = SUMMARY.match(lines[-1])
    assert m and m.group(1) == "3" and m.group(5) == "1", lines[-1]
    assert err.getvalue().startswith("k2: S3Error: ") and "AccessDenied" in err.getvalue()
    assert sorted(bucket.copied) == ["k1", "k3", "k4"]


def test_objects_are_rewritten_several_at_a_time_and_named_in_listing_order() -> None:
    keys = [f"k{i:02d}" for i in range(16)]
    bucket = Bucket(keys, refused=set(), hold=0.1)
    with FakeS3(bucket) as fake:
        storage = scripted_storage(fake, aws_s3_max_pool_connections=4)
        assert list(storage.sync_meta_iter()) == keys
        assert sorted(bucket.copied) == keys
    assert 2 <= bucket.most <= 4, bucket.most


def test_without_an_error_list_the_first_failure_is_raised() -> None:
    bucket = Bucket(["k1", "k2", "k3"], refused={"k2"})
    with FakeS3(bucket) as fake:
        storage = scripted_storage(fake)
        with pytest.raises(Exception, match="AccessDenied"):
            storage.sync_meta()


def test_a_listing_that_fails_is_reported_and_the_next_storage_still_runs(
        media: None) -> None:
    global TARGET
    with FakeS3(lambda m, p: Reply(403, FAILED, {"Content-Type": "application/xml"})) as fake:
        TARGET = scripted_storage(fake)
        try:
            out, err = io.StringIO(), io.StringIO()
            with pytest.raises(CommandError, match="1 file could not be rewritten"):
                call_command("s3_sync_meta", "test_sync_meta.TARGET", "default",
                             stdout=out, stderr=err)
        finally:
            TARGET = None
    assert err.getvalue().startswith("test_sync_meta.TARGET (the listing): S3Error: ")
    lines = out.getvalue().splitlines()
    assert sorted(lines[:-1]) == ["a.txt", "css/b.css", "css/c.css", "img/d.png"]
