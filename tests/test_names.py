"""Names and values that must never reach the wire as given (issue 6, section 6).

Each refusal is shown to happen before any request: the storages point at a FakeS3
that records every request, and the test asserts it saw none.
"""
from __future__ import annotations

import io
import os
import pickle
import sys
import uuid
from typing import Any, Callable, Iterator

import pytest
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.test import override_settings
from django.views.debug import ExceptionReporter

from django_s3_storage import _s3
from django_s3_storage.storage import ManifestStaticS3Storage, S3Storage, StaticS3Storage

from conftest import S3Target
from servers import FakeS3, Reply, free_port

SECRET = "wJalrXUtnFEMI-secret-" + uuid.uuid4().hex
TOKEN = "FwoGZXIvYXdzE-token-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeS3]:
    with FakeS3(lambda m, p: Reply(200, b"", {"ETag": '"e"'}) if m == "PUT"
                else Reply(404, b"", {})) as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeS3) -> FakeS3:
    """A server that takes every PUT and answers 404 to the rest, with no request
    recorded yet."""
    with fake_server.lock:
        fake_server.requests.clear()
    return fake_server


def on(fake: FakeS3, cls: type[S3Storage] = S3Storage, **kwargs: Any) -> S3Storage:
    kwargs.setdefault("aws_s3_bucket_name", "b")
    return cls(aws_s3_endpoint_url=fake.endpoint, aws_access_key_id="AKIDEXAMPLE",
               aws_secret_access_key="secret", **kwargs)


# ---- names that resolve to no object ----------------------------------------------

ROOT_NAMES = ["", ".", "/", "./", "//", "a/..", "a/b/../..", "./a/../", "/.", "a/../."]

OBJECT_OPERATIONS: dict[str, Callable[[S3Storage, str], Any]] = {
    "_save": lambda s, n: s._save(n, ContentFile(b"x")),
    "open": lambda s, n: s.open(n),
    "delete": lambda s, n: s.delete(n),
    "size": lambda s, n: s.size(n),
    "meta": lambda s, n: s.meta(n),
    "modified_time": lambda s, n: s.modified_time(n),
    "created_time": lambda s, n: s.created_time(n),
    "accessed_time": lambda s, n: s.accessed_time(n),
    "get_modified_time": lambda s, n: s.get_modified_time(n),
    "get_created_time": lambda s, n: s.get_created_time(n),
    "get_accessed_time": lambda s, n: s.get_accessed_time(n),
    "url": lambda s, n: s.url(n),
    "url_put": lambda s, n: s.url(n, client_method="put_object"),
    "url_extra": lambda s, n: s.url(n, extra_params={"ResponseContentType": "text/plain"}),
    "copy_from": lambda s, n: s.copy(n, "dst.txt"),
    "copy_to": lambda s, n: s.copy("src.txt", n),
    "rename_from": lambda s, n: s.rename(n, "dst.txt"),
    "rename_to": lambda s, n: s.rename("src.txt", n),
}


@pytest.mark.parametrize("key_prefix", ["", "media/x"])
@pytest.mark.parametrize("operation", sorted(OBJECT_OPERATIONS))
def test_a_name_of_the_root_is_refused_before_any_request(
        fake: FakeS3, key_prefix: str, operation: str) -> None:
    storage = on(fake, aws_s3_key_prefix=key_prefix)
    for name in ROOT_NAMES:
        with pytest.raises(SuspiciousFileOperation, match="names no file"):
            OBJECT_OPERATIONS[operation](storage, name)
    assert fake.requests == []


@pytest.mark.parametrize("kwargs", [{"aws_s3_bucket_auth": False},
                                    {"aws_s3_public_url": "https://cdn.example/media/"}])
def test_plain_and_public_urls_of_the_root_are_refused(fake: FakeS3,
                                                       kwargs: dict[str, Any]) -> None:
    storage = on(fake, **kwargs)
    for name in ROOT_NAMES:
        with pytest.raises(SuspiciousFileOperation):
            storage.url(name)
    assert storage.url("a/b.txt").endswith("/a/b.txt")


def test_public_url_refuses_names_outside_the_storage(fake: FakeS3) -> None:
    storage = on(fake, aws_s3_public_url="https://cdn.example/media/")
    with pytest.raises(SuspiciousFileOperation):
        storage.url("../admin/secret.txt")   # urljoin would have climbed out of /media/


def test_save_of_a_root_name_is_refused(fake: FakeS3) -> None:
    storage = on(fake, aws_s3_key_prefix="media")
    for name in ("", "a/..", "."):
        with pytest.raises(SuspiciousFileOperation):
            storage.save(name, ContentFile(b"x"))
    assert fake.requests == []


def test_directory_operations_keep_working(s3: S3Target, prefix: str) -> None:
    storage = S3Storage(aws_s3_key_prefix=prefix)
    storage.save("dir/f.txt", ContentFile(b"f"))
    for root in ("", ".", "/", "a/.."):
        assert storage.exists(root)
        assert storage.listdir(root) == (["dir"], [])
    assert storage.exists("dir/") and storage.exists("dir")
    assert storage.listdir("dir") == ([], ["f.txt"])
    assert not S3Storage(aws_s3_key_prefix=prefix + "empty/").exists("")


def test_the_client_refuses_empty_and_nul_keys(fake: FakeS3) -> None:
    c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="s")
    calls: list[Callable[[], Any]] = [
        lambda: c.url(""), lambda: c.presign("GET", ""), lambda: c.head_object(""),
        lambda: c.put_object("", b"x"), lambda: c.copy_object("", "k"),
        lambda: c.copy_object("k", ""), lambda: c.delete_object(""),
        lambda: c.get_object("a\x00b"), lambda: c.presign("GET", "a\x00b"),
        lambda: c.url("a\x00"), lambda: c.copy_object("a\x00", "k"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="S3 key"):
            call()
    assert fake.requests == []


@pytest.mark.parametrize("kwargs", [
    {"bucket": "b\r\nX-Injected: 1", "addressing_style": "virtual"},
    {"bucket": "b c"}, {"bucket": "b\x7f"}, {"bucket": "bü"},
    {"endpoint_url": "http://127.0.0.1:9\r\nX-Injected: 1"},
    {"endpoint_url": "http://127.0.0.1:9/a b"}, {"endpoint_url": "http://exämple.com"},
])
def test_the_client_refuses_what_would_break_the_url_or_host(kwargs: dict[str, Any]) -> None:
    kwargs = {"bucket": "b", "endpoint_url": "http://127.0.0.1:9", **kwargs}
    with pytest.raises(ValueError, match="spaces or control characters"):
        _s3.Client(kwargs.pop("bucket"), **kwargs)


# ---- names with control characters ---------------------------------------------------

@pytest.mark.parametrize("name", ["a\nb.txt", "log\r\nINFO forged.txt", "nul\x00.txt",
                                  "esc\x1b[31m.txt", "tab\t.txt", "del\x7f.txt", "dir\x01/f"])
def test_names_with_control_characters_are_refused(fake: FakeS3, name: str) -> None:
    storage = on(fake, aws_s3_key_prefix="media")
    for operation in ("_save", "open", "delete", "meta", "url", "copy_to", "copy_from"):
        with pytest.raises(SuspiciousFileOperation, match="control character") as info:
            OBJECT_OPERATIONS[operation](storage, name)
        text = str(info.value)
        assert not any(ch in text for ch in "\n\r\x00\x1b\t\x7f\x01")   # shown escaped
    with pytest.raises(SuspiciousFileOperation):
        storage.exists(name)
    with pytest.raises(SuspiciousFileOperation):
        storage.listdir(name)
    assert fake.requests == []


def test_names_that_are_printable_but_not_plain_still_work(s3: S3Target, prefix: str) -> None:
    storage = S3Storage(aws_s3_key_prefix=prefix)
    for name in ("nbsp\u00a0name.txt", "zero\u200bwidth.txt", "ü/ß.txt"):
        storage.save(name, ContentFile(name.encode()))
        assert storage.open(name).read() == name.encode()


# ---- listings: keys XML cannot carry -------------------------------------------------

ODD_KEYS = ["ctl\x01a.txt", "esc\x1b[31m.txt", "a b+c%41.txt", "ü+ß.txt", "amp&<lt>.txt",
            "bell\x07/inside.txt"]


def put_odd_keys(s3: S3Target, prefix: str) -> None:
    boto = s3.boto()
    for key in ODD_KEYS:
        boto.put_object(Bucket="test-bucket", Key=prefix + key, Body=key.encode())


def test_keys_with_control_characters_list(s3: S3Target, prefix: str) -> None:
    put_odd_keys(s3, prefix)
    client = s3.client()
    page = client.list_objects(prefix=prefix, delimiter="/")
    assert sorted(c[0] for c in page["Contents"]) == sorted(
        prefix + k for k in ODD_KEYS if "/" not in k)
    assert page["CommonPrefixes"] == [prefix + "bell\x07/"]
    storage = S3Storage(aws_s3_key_prefix=prefix)
    dirs, files = storage.listdir("")
    assert dirs == ["bell\x07"]
    assert sorted(files) == sorted(k for k in ODD_KEYS if "/" not in k)
    # the storage's own names are refused, but a key listed can be read with the client
    assert client.get_object(prefix + "ctl\x01a.txt")[0] == b"ctl\x01a.txt"


@pytest.mark.rgw_differs("NextContinuationToken is the last key as it is, not URL-encoded: "
                         "a key with a control character there makes the reply bad XML")
def test_keys_with_control_characters_list_page_by_page(s3: S3Target, prefix: str) -> None:
    put_odd_keys(s3, prefix)
    client = s3.client()
    # the continuation token is not URL-encoded, and goes back as it came
    seen, token = [], None
    while True:
        page = client.list_objects(prefix=prefix, max_keys=1, continuation_token=token)
        seen += [c[0] for c in page["Contents"]]
        token = page["NextContinuationToken"]
        if not page["IsTruncated"]:
            break
    assert sorted(seen) == sorted(prefix + k for k in ODD_KEYS)


def test_sync_meta_rewrites_keys_with_control_characters(s3: S3Target, prefix: str) -> None:
    put_odd_keys(s3, prefix)
    out = io.StringIO()
    with override_settings(AWS_S3_KEY_PREFIX=prefix.rstrip("/"), AWS_S3_MAX_AGE_SECONDS=321):
        call_command("s3_sync_meta", "django.core.files.storage.default_storage", stdout=out)
    lines = out.getvalue().splitlines()[:-1]     # the last: the summary
    assert sorted(lines) == sorted(k if k.isprintable() else repr(k)[1:-1] for k in ODD_KEYS)
    assert "ctl\\x01a.txt" in lines and "bell\\x07/inside.txt" in lines
    head = s3.client().head_object(prefix + "esc\x1b[31m.txt")
    assert head["CacheControl"] == "private,max-age=321"


LIST_HEAD = (b'<?xml version="1.0" encoding="UTF-8"?>'
             b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">')


def listing(encoding: bytes) -> bytes:
    return (LIST_HEAD + b"<Name>b</Name><Prefix>p%2F</Prefix><IsTruncated>true</IsTruncated>"
            b"<Contents><Key>p/a%41+b%2Bc%0A%ZZ</Key><Size>1</Size></Contents>"
            b"<CommonPrefixes><Prefix>p/d%01+/</Prefix></CommonPrefixes>"
            b"<NextContinuationToken>t%2B+1</NextContinuationToken>" + encoding +
            b"</ListBucketResult>")


@pytest.mark.parametrize("encoding,key,common,token", [
    # EncodingType after the keys, as AWS sends it: '+' is a space, %XX a byte, a
    # malformed escape stays; the token is opaque
    (b"<EncodingType>url</EncodingType>", "p/aA b+c\n%ZZ", "p/d\x01 /", "t%2B+1"),
    # a server that ignored encoding-type=url: nothing is decoded
    (b"", "p/a%41+b%2Bc%0A%ZZ", "p/d%01+/", "t%2B+1"),
])
def test_listing_is_decoded_only_when_the_reply_says_so(
        encoding: bytes, key: str, common: str, token: str) -> None:
    with FakeS3(lambda m, p: Reply(200, listing(encoding))) as fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="s")
        page = c.list_objects(prefix="p/", delimiter="/")
        assert [e[0] for e in page["Contents"]] == [key]
        assert page["CommonPrefixes"] == [common]
        assert page["NextContinuationToken"] == token
        c.list_objects(continuation_token="t+1")
        paths = [p for _m, p, _h in fake.requests]
    assert all("encoding-type=url" in p for p in paths)
    assert paths[0] == "/b/?delimiter=%2F&encoding-type=url&list-type=2&prefix=p%2F"


# ---- values that go into headers -------------------------------------------------------

BAD_SETTINGS = [
    ("AWS_S3_CONTENT_DISPOSITION", "inline\r\nX-Injected: 1", "control character"),
    ("AWS_S3_CONTENT_DISPOSITION", "attachment; filename=\"é.pdf\"", "non-ASCII"),
    ("AWS_S3_CONTENT_DISPOSITION", "x" * 9000, "9000 characters"),
    ("AWS_S3_CONTENT_LANGUAGE", "en\x00", "control character"),
    ("AWS_S3_CONTENT_LANGUAGE", "en\tfr", "control character"),
    ("AWS_S3_CONTENT_LANGUAGE", 42, "string or a callable"),
    ("AWS_S3_KMS_ENCRYPTION_KEY_ID", "key\x7fid", "control character"),
    ("AWS_S3_ENCRYPT_KEY", "aws:kms\n", "control character"),
    ("AWS_S3_METADATA", {"a": "b\nc"}, "control character"),
    ("AWS_S3_METADATA", {"a": "ünïcode"}, "non-ASCII"),
    ("AWS_S3_METADATA", {"bad name": "v"}, "not a valid metadata name"),
    ("AWS_S3_METADATA", {"a": "x" * 1500, "b": "y" * 600}, "2048"),
    ("AWS_S3_METADATA", ["not", "a", "dict"], "must be a dict"),
    ("AWS_S3_MAX_AGE_SECONDS", "60\r\nX-Injected: 1", "whole number"),
    ("AWS_S3_MAX_AGE_SECONDS", -1, "whole number"),
    ("AWS_S3_KEY_PREFIX", "media\x1b[2J", "control character"),
    ("AWS_S3_BUCKET_NAME", "b\r\nHost: evil", "control character"),
    ("AWS_S3_BUCKET_NAME", "b c", "space"),
    ("AWS_S3_ENDPOINT_URL", "http://127.0.0.1:9/\r\nX: 1", "control character"),
]


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("setting,value,problem", BAD_SETTINGS)
def test_bad_settings_are_improperly_configured_naming_the_setting(
        fake: FakeS3, static: bool, setting: str, value: Any, problem: str) -> None:
    cls = StaticS3Storage if static else S3Storage
    name = setting + ("_STATIC" if static else "")
    kwargs = {"aws_s3_endpoint_url": fake.endpoint, "aws_s3_bucket_name": "b"}
    kwargs.pop(setting.lower(), None)   # the setting under test comes from the settings
    with override_settings(**{name: value}):
        with pytest.raises(ImproperlyConfigured, match=problem) as info:
            cls(**kwargs)
    assert name in str(info.value)
    assert not any(ch in str(info.value) for ch in "\r\n\x00\x1b\x7f")
    assert fake.requests == []


CREDENTIAL_SETTINGS = [
    ("AWS_REGION", "us-east-1\r\nX: 1", "control character"),
    ("AWS_REGION", "eu/west", "not a region name"),
    ("AWS_REGION", "us east", "space"),
    ("AWS_ACCESS_KEY_ID", "AKID\nEXAMPLE", "control character"),
    ("AWS_ACCESS_KEY_ID", "AKID/EXAMPLE", "credential scope"),
    ("AWS_ACCESS_KEY_ID", "AKID, Signature=x", "space"),
    ("AWS_ACCESS_KEY_ID", "A" * 200, "200 characters"),
    ("AWS_SESSION_TOKEN", TOKEN + "\r\nX-Injected: 1", "control character"),
    ("AWS_SESSION_TOKEN", TOKEN + "é", "non-ASCII"),
    ("AWS_SESSION_TOKEN", TOKEN * 200, "characters long"),
]


@pytest.mark.parametrize("setting,value,problem", CREDENTIAL_SETTINGS)
def test_bad_credential_settings_are_refused_without_echo(
        fake: FakeS3, setting: str, value: str, problem: str) -> None:
    values = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": SECRET,
              setting: value}
    with override_settings(**values):
        with pytest.raises(ImproperlyConfigured, match=problem) as info:
            S3Storage(aws_s3_endpoint_url=fake.endpoint, aws_s3_bucket_name="b")
    text = str(info.value)
    assert setting in text
    assert TOKEN not in text and SECRET not in text and "EXAMPLE" not in text
    assert fake.requests == []


def test_good_values_pass(s3: S3Target, prefix: str) -> None:
    storage = S3Storage(
        aws_s3_key_prefix=prefix, aws_s3_max_age_seconds="120",
        aws_s3_content_disposition="attachment; filename*=UTF-8''%C3%A9t%C3%A9.pdf",
        aws_s3_content_language="fr-CA, en", aws_s3_metadata={"a": "x" * 1000, "b": 7})
    storage.save("ok.txt", ContentFile(b"ok"))
    meta = storage.meta("ok.txt")
    assert meta["ContentDisposition"] == "attachment; filename*=UTF-8''%C3%A9t%C3%A9.pdf"
    assert meta["CacheControl"] == "private,max-age=120"
    assert meta["Metadata"]["b"] == "7" and meta["Metadata"]["a"] == "x" * 1000


BAD_CALLABLES = [
    ("aws_s3_content_disposition", lambda n: f"attachment; filename={n}\r\nX-Injected: 1",
     "AWS_S3_CONTENT_DISPOSITION", "control character"),
    ("aws_s3_content_language", lambda n: "ü", "AWS_S3_CONTENT_LANGUAGE", "non-ASCII"),
    ("aws_s3_content_language", lambda n: 5, "AWS_S3_CONTENT_LANGUAGE", "not a str"),
    ("aws_s3_content_disposition", lambda n: "x" * 10000, "AWS_S3_CONTENT_DISPOSITION",
     "10000 characters"),
    ("aws_s3_metadata", {"who": lambda n: "a\x00b"}, "AWS_S3_METADATA['who']",
     "control character"),
    ("aws_s3_metadata", {"who": lambda n: "é"}, "AWS_S3_METADATA['who']", "non-ASCII"),
    ("aws_s3_metadata", {"who": lambda n: "x" * 2100}, "AWS_S3_METADATA", "2048"),
]


@pytest.mark.parametrize("kwarg,value,setting,problem", BAD_CALLABLES)
def test_bad_values_from_callables_are_value_errors_naming_the_setting(
        fake: FakeS3, kwarg: str, value: Any, setting: str, problem: str) -> None:
    storage = on(fake, **{kwarg: value})
    with pytest.raises(ValueError, match=problem) as info:
        storage._save("f.txt", ContentFile(b"x"))
    assert setting in str(info.value)
    assert "\r" not in str(info.value) and "\n" not in str(info.value)
    assert fake.requests == []


def test_gzip_size_metadata_counts_towards_the_limit(fake: FakeS3) -> None:
    storage = on(fake, aws_s3_metadata={"m": "x" * 2030})   # 2031 bytes: fits alone
    storage._save("f.bin", ContentFile(b"binary"))   # not compressible: sent
    with pytest.raises(ValueError, match="2048"):
        storage._save("f.css", ContentFile(b"body { color: red }\n" * 100))
    assert len(fake.requests) == 1


def test_control_characters_in_extra_params_are_refused(fake: FakeS3) -> None:
    with pytest.raises(ValueError, match="ResponseContentDisposition"):
        on(fake).url("f.txt", extra_params={"ResponseContentDisposition": "a\r\nX: 1"})


# the C client's own guard, for values that do not come through the storage

@pytest.mark.parametrize("kwargs,match", [
    ({"content_disposition": "a\x01b"}, r"Content-Disposition header .*\\x01 at byte 1"),
    ({"content_type": "text/plain\tx"}, r"Content-Type header .*\\x09"),
    ({"cache_control": "max-age=1\x7f"}, r"Cache-Control header .*\\x7f"),
    ({"content_language": "x" * 9000}, "Content-Language header value is 9000 bytes"),
    ({"sse_kms_key_id": "k\x00"}, "kms-key-id header"),
    ({"metadata": {"a": "b\nc"}}, "x-amz-meta-a header"),
    ({"metadata": {"a": "é"}}, "US-ASCII"),
    ({"metadata": {"a": "x" * 1000, "b": "y" * 1100}}, "2048"),
])
def test_the_client_guards_every_header_value(fake: FakeS3, kwargs: dict[str, Any],
                                              match: str) -> None:
    c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="s")
    with pytest.raises(ValueError, match=match):
        c.put_object("k", b"x", **kwargs)
    with pytest.raises(ValueError, match=match):
        c.copy_object("src", "k", **kwargs)
    assert fake.requests == []


# ---- error texts -----------------------------------------------------------------

def test_error_texts_escape_what_could_forge_a_log_line() -> None:
    body = (b"<Error><Code>NoSuchKey</Code><Message>no key&#13;&#10;INFO forged</Message>"
            b"<RequestId>R&#10;ID</RequestId></Error>")
    with FakeS3(lambda m, p: Reply(404, body)) as fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="s")
        key = "a\nINFO user=admin logged in\r\x1b[0m\x85\u2028\\x0a.txt"
        with pytest.raises(FileNotFoundError) as info:
            c.get_object(key)
    e = info.value
    text = str(e)
    assert not any(ch in text for ch in "\n\r\x1b\x85\u2028")
    assert "key a\\nINFO user=admin logged in\\r\\x1b[0m\\x85\\u2028\\\\x0a.txt" in text
    assert "no key\\r\\nINFO forged" in text and "request id R\\nID" in text
    assert e.key == key   # the attribute keeps the key as it is


def test_storage_errors_show_names_escaped(fake: FakeS3) -> None:
    storage = on(fake)
    with pytest.raises(SuspiciousFileOperation) as info:
        storage.url("../x\nINFO forged")
    assert "\n" not in str(info.value)
    with pytest.raises(SuspiciousFileOperation) as info:
        S3Storage(aws_s3_file_overwrite=True,
                  aws_s3_endpoint_url=fake.endpoint).get_available_name(
                      "a\nb/" + "x" * 50 + ".txt", max_length=5)
    assert "\n" not in str(info.value)


# ---- secrets: DEBUG pages, tracebacks, reprs ------------------------------------------

def debug_page(exc_info: Any) -> tuple[str, str]:
    """Django's DEBUG page of the error, from the frame below the test's own (which
    holds the secrets the test passed in) down: the frames a view would have."""
    etype, value, tb = exc_info
    with override_settings(DEBUG=True):
        reporter = ExceptionReporter(None, etype, value, tb.tb_next)
        return reporter.get_traceback_html(), reporter.get_traceback_text()


def assert_no_secret(exc_info: Any, *must_show: str) -> None:
    html, text = debug_page(exc_info)
    for page in (html, text):
        assert SECRET not in page and TOKEN not in page
    for shown in must_show:   # the page did show the frames and their locals
        assert shown in html


def dead_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_debug_page_of_a_failed_save_shows_no_secret() -> None:
    storage = S3Storage(aws_s3_endpoint_url=dead_endpoint(), aws_access_key_id="AKIDEXAMPLE",
                        aws_secret_access_key=SECRET, aws_session_token=TOKEN,
                        aws_s3_connect_timeout=2, aws_s3_file_overwrite=True)
    with pytest.raises(_s3.S3Error):
        try:
            storage.save("f.txt", ContentFile(b"x"))
        except _s3.S3Error:
            assert_no_secret(sys.exc_info(), "_save", "params")
            raise


def test_debug_page_of_a_missing_file_shows_no_secret(s3: S3Target) -> None:
    with override_settings(AWS_SECRET_ACCESS_KEY=SECRET, AWS_SESSION_TOKEN=TOKEN,
                           AWS_ACCESS_KEY_ID="AKIDEXAMPLE"):
        storage = S3Storage()
        # moto takes any key: FileNotFoundError; RGW refuses this one: S3Error
        with pytest.raises(_s3.S3Error):
            try:
                storage.open(f"missing-{uuid.uuid4().hex}.txt")
            except _s3.S3Error:
                assert_no_secret(sys.exc_info(), "_open")
                raise


@pytest.mark.parametrize("cls", [S3Storage, StaticS3Storage, ManifestStaticS3Storage])
def test_debug_page_of_a_failed_construction_shows_no_secret(fake: FakeS3, cls: type) -> None:
    kwargs = {"aws_s3_endpoint_url": fake.endpoint, "aws_access_key_id": "AKIDEXAMPLE",
              "aws_secret_access_key": SECRET, "aws_session_token": TOKEN}
    # refused by the settings' checks, by __init__, and by the C client in _setup
    for bad, match in (({"aws_s3_acl": "no-such-acl"}, "AWS_S3_ACL"),
                       ({"aws_s3_typo": 1}, "aws_s3_typo"),
                       ({"aws_s3_endpoint_url": "ftp://nowhere"}, "endpoint_url")):
        with pytest.raises(ImproperlyConfigured, match=match):
            try:
                cls(**{**kwargs, **bad})
            except ImproperlyConfigured:
                assert_no_secret(sys.exc_info(), "__init__")
                raise
    # and from the environment
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        env.setenv("AWS_SESSION_TOKEN", TOKEN)
        env.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        with override_settings(AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY=""):
            with pytest.raises(ImproperlyConfigured, match="endpoint_url"):
                try:
                    cls(aws_s3_endpoint_url="ftp://nowhere")
                except ImproperlyConfigured:
                    assert_no_secret(sys.exc_info(), "_setup")
                    raise


def test_reprs_hide_secrets(fake: FakeS3) -> None:
    storage = S3Storage(aws_s3_endpoint_url=fake.endpoint, aws_secret_access_key=SECRET,
                        aws_access_key_id="AKIDEXAMPLE", aws_session_token=TOKEN)
    for text in (repr(storage.settings), repr(storage._kwargs), repr(storage._client),
                 repr(storage), repr(storage.settings.AWS_SECRET_ACCESS_KEY)):
        assert SECRET not in text and TOKEN not in text
    assert "AWS_S3_BUCKET_NAME='test-bucket'" in repr(storage.settings)
    assert "aws_s3_endpoint_url" in repr(storage._kwargs)
    # masked only in repr: the values themselves are intact, and survive pickling
    assert storage.settings.AWS_SECRET_ACCESS_KEY == SECRET
    again = pickle.loads(pickle.dumps(storage))
    assert again.settings.AWS_SESSION_TOKEN == TOKEN and again._kwargs == storage._kwargs
    assert SECRET not in repr(again._kwargs)


PROXY_PASSWORD = "hunter2-proxy-password"


def test_a_proxy_password_shows_in_no_repr_and_no_debug_page(fake: FakeS3) -> None:
    proxy = f"http://user:{PROXY_PASSWORD}@127.0.0.1:3128"
    storage = S3Storage(aws_s3_endpoint_url=fake.endpoint, aws_s3_proxy=proxy)
    for text in (repr(storage.settings), repr(storage._kwargs), repr(storage._client)):
        assert PROXY_PASSWORD not in text
    assert storage.settings.AWS_S3_PROXY == proxy   # masked in repr only
    # a settings error raised after the proxy was read: its frames hold the proxy
    with pytest.raises(ImproperlyConfigured, match="AWS_S3_PUBLIC_ENDPOINT_URL"):
        try:
            S3Storage(aws_s3_endpoint_url=fake.endpoint, aws_s3_proxy=proxy,
                      aws_s3_public_endpoint_url="ftp://x")
        except ImproperlyConfigured:
            html, text = debug_page(sys.exc_info())
            assert "_network_options" in html   # the frame that read the proxy is shown
            assert PROXY_PASSWORD not in html and PROXY_PASSWORD not in text
            raise


@pytest.mark.parametrize("value", ["http://h:1/#x", "http://h:1/a\nb", "http://h :1",
                                   "http://h\u00e9:1"])
def test_public_endpoint_errors_name_the_setting(fake: FakeS3, value: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="AWS_S3_PUBLIC_ENDPOINT_URL"):
        S3Storage(aws_s3_endpoint_url=fake.endpoint, aws_s3_public_endpoint_url=value)


def test_a_region_too_long_for_the_client_names_the_setting(fake: FakeS3) -> None:
    with pytest.raises(ImproperlyConfigured, match="AWS_REGION"):
        S3Storage(aws_s3_endpoint_url=fake.endpoint, aws_region="r" * 64)
    assert S3Storage(aws_s3_endpoint_url=fake.endpoint, aws_region="r" * 63)._client.region \
        == "r" * 63


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="ASan's quarantine keeps freed memory resident (make sanitize)")
def test_a_refused_endpoint_leaks_nothing() -> None:
    # each refusal used to leave the copy of the URL behind (about 4 KiB a time)
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    bad = "http://h/" + "\u00e9" * 2000
    for _ in range(1000):   # warm up the allocator
        with pytest.raises(ValueError):
            _s3.Client("b", endpoint_url=bad, anonymous=True)
    before = rss()
    for _ in range(20000):
        with pytest.raises(ValueError):
            _s3.Client("b", endpoint_url=bad, anonymous=True)
    assert rss() - before < 16 * 1024 * 1024
