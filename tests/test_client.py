"""The Client against real HTTP servers on 127.0.0.1: moto, moto checking
signatures, and scripted fakes for keep-alive, slowness, retries and hostile XML."""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from django_s3_storage import _s3

from conftest import S3Target
from servers import FakeS3, Reply, in_forked_child, self_signed_cert, ticks_meanwhile

KEYS = [
    "plain.txt",
    "ünïcode/ファイル ☃.txt",
    "spaces in a name.txt",
    "a+b=c&d~e%f$g.txt",
    "double//slash",
    "dot/./segment",
    "semi;colon,comma(paren)'quote'",
]


@pytest.mark.parametrize("name", KEYS)
def test_put_head_get_delete_round_trip(client: _s3.Client, prefix: str, name: str) -> None:
    key = prefix + name
    body = ("body of " + name).encode()
    put = client.put_object(key, body, content_type="text/plain; charset=utf-8",
                            cache_control="private,max-age=60",
                            content_disposition='attachment; filename="x.txt"',
                            content_language="fr", metadata={"origin": "tests"})
    head = client.head_object(key)
    assert head["ETag"] == put["ETag"]
    assert head["ContentLength"] == len(body)
    assert head["ContentType"] == "text/plain; charset=utf-8"
    assert head["CacheControl"] == "private,max-age=60"
    assert head["ContentDisposition"] == 'attachment; filename="x.txt"'
    assert head["ContentLanguage"] == "fr"
    assert head["Metadata"] == {"origin": "tests"}
    assert abs(head["LastModified"] - time.time()) < 300
    assert client.exists(key) is True and client.exists(key + ".missing") is False
    got, meta = client.get_object(key)
    assert got == body
    assert meta["ETag"] == put["ETag"]
    assert client.get_object(key, start=2, end=5)[0] == body[2:6]
    assert client.get_object(key, start=3)[0] == body[3:]
    listed = client.list_objects(prefix=key)["Contents"]
    assert [c[:3] for c in listed] == [(key, len(body), put["ETag"])]
    client.delete_object(key)
    with pytest.raises(FileNotFoundError):
        client.head_object(key)


def test_missing_key_is_file_not_found_with_details(client: _s3.Client, prefix: str) -> None:
    with pytest.raises(FileNotFoundError) as info:
        client.get_object(prefix + "missing")
    err = info.value
    assert isinstance(err, _s3.S3NotFoundError) and isinstance(err, _s3.S3Error)
    assert isinstance(err, OSError)
    assert (err.code, err.status, err.bucket, err.key) == ("NoSuchKey", 404, "test-bucket",
                                                           prefix + "missing")
    assert err.request_id
    assert "NoSuchKey" in str(err) and prefix + "missing" in str(err)
    with pytest.raises(FileNotFoundError) as info:
        client.head_object(prefix + "missing")
    assert info.value.status == 404


def test_copy_replace_and_copy_keep(client: _s3.Client, prefix: str) -> None:
    src, dst, dst2 = prefix + "src ü+.txt", prefix + "dst ü+.txt", prefix + "dst2.txt"
    client.put_object(src, b"payload", content_type="text/plain", metadata={"a": "1"})
    out = client.copy_object(src, dst, metadata_directive="REPLACE",
                             content_type="application/json", metadata={"b": "2"},
                             cache_control="public,max-age=5")
    assert out["ETag"]
    head = client.head_object(dst)
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {"b": "2"}
    assert head["CacheControl"] == "public,max-age=5"
    client.copy_object(src, dst2)
    assert client.head_object(dst2)["Metadata"] == {"a": "1"}
    assert client.get_object(dst)[0] == b"payload"


def test_listing_with_delimiter(client: _s3.Client, prefix: str) -> None:
    for name in ["a.txt", "b/c.txt", "b/d/e.txt", "f g/h.txt"]:
        client.put_object(prefix + name, b"x")
    top = client.list_objects(prefix=prefix, delimiter="/")
    assert [c[0] for c in top["Contents"]] == [prefix + "a.txt"]
    assert top["CommonPrefixes"] == [prefix + "b/", prefix + "f g/"]
    assert top["IsTruncated"] is False and top["NextContinuationToken"] is None
    sub = client.list_objects(prefix=prefix + "b/", delimiter="/")
    assert [c[0] for c in sub["Contents"]] == [prefix + "b/c.txt"]
    assert sub["CommonPrefixes"] == [prefix + "b/d/"]
    assert client.list_objects(prefix=prefix + "nothing/")["Contents"] == []


def test_listing_of_more_than_1000_keys_paginates(client: _s3.Client, prefix: str) -> None:
    keys = [f"{prefix}k{i:05d}" for i in range(1005)]
    errors: list[BaseException] = []

    def put(chunk: list[str]) -> None:
        try:
            for k in chunk:
                client.put_object(k, b"")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=put, args=(keys[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    first = client.list_objects(prefix=prefix)
    assert len(first["Contents"]) == 1000 and first["IsTruncated"] is True
    assert first["NextContinuationToken"]
    second = client.list_objects(prefix=prefix, continuation_token=first["NextContinuationToken"])
    assert second["IsTruncated"] is False
    assert [c[0] for c in first["Contents"] + second["Contents"]] == keys
    small = client.list_objects(prefix=prefix, max_keys=10, start_after=keys[500])
    assert [c[0] for c in small["Contents"]] == keys[501:511]


def test_presigned_get_fetched_with_plain_http(client: _s3.Client, prefix: str) -> None:
    key = prefix + "shared ü+&.txt"
    client.put_object(key, b"shared body")
    url = client.presign("GET", key, expires=300)
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=300" in url
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"shared body"
    url = client.presign("GET", key, query={"response-content-disposition": "attachment"})
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.headers["Content-Disposition"] == "attachment"


def test_presigned_put_uploads(client: _s3.Client, prefix: str) -> None:
    key = prefix + "uploaded.bin"
    # a real content type: moto's werkzeug would eat a form-encoded body
    req = urllib.request.Request(client.presign("PUT", key), data=b"from a browser",
                                 method="PUT",
                                 headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req, timeout=10).read()
    assert client.get_object(key)[0] == b"from a browser"


def test_presigned_head_and_delete(client: _s3.Client, prefix: str) -> None:
    key = prefix + "to delete ü.txt"
    client.put_object(key, b"12345")
    req = urllib.request.Request(client.presign("HEAD", key), method="HEAD")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200 and resp.headers["Content-Length"] == "5"
    req = urllib.request.Request(client.presign("DELETE", key), method="DELETE")
    urllib.request.urlopen(req, timeout=10).read()
    with pytest.raises(FileNotFoundError):
        client.head_object(key)


def test_url_is_plain_and_escaped(client: _s3.Client, s3: S3Target) -> None:
    assert client.url("a b/ü+.txt") == f"{s3.endpoint}/test-bucket/a%20b/%C3%BC%2B.txt"


def test_gzip_round_trip_through_s3(client: _s3.Client, prefix: str) -> None:
    data = b"<html>" + b"compress me " * 5000 + b"</html>"
    packed = _s3.gzip_compress(data)
    client.put_object(prefix + "page.html", packed, content_type="text/html",
                      content_encoding="gzip")
    raw, meta = client.get_object(prefix + "page.html")
    assert raw == packed and meta["ContentEncoding"] == "gzip"
    plain, meta = client.get_object(prefix + "page.html", decompress=True)
    assert plain == data
    assert meta["ContentLength"] == len(data) and "ContentEncoding" not in meta
    client.put_object(prefix + "plain.txt", b"not compressed")
    assert client.get_object(prefix + "plain.txt", decompress=True)[0] == b"not compressed"


def test_storage_class_and_acl_reach_s3(client: _s3.Client, s3: S3Target, prefix: str) -> None:
    client.put_object(prefix + "rr", b"x", storage_class="REDUCED_REDUNDANCY", acl="public-read")
    client.put_object(prefix + "private", b"y", acl="private")
    assert client.head_object(prefix + "rr")["StorageClass"] == "REDUCED_REDUNDANCY"
    anonymous = _s3.Client("test-bucket", endpoint_url=s3.endpoint, anonymous=True)
    assert anonymous.get_object(prefix + "rr")[0] == b"x"
    grants = s3.boto().get_object_acl(Bucket="test-bucket", Key=prefix + "private")["Grants"]
    assert not any(g["Grantee"].get("URI", "").endswith("AllUsers") for g in grants)


@pytest.mark.rgw_differs("SSE AES256 is accepted but no SSE header comes back on HEAD")
def test_server_side_encryption_reaches_s3(client: _s3.Client, prefix: str) -> None:
    client.put_object(prefix + "sse", b"x", server_side_encryption="AES256")
    assert client.head_object(prefix + "sse")["ServerSideEncryption"] == "AES256"


@pytest.mark.rgw_differs("user metadata names come back with '-' for '_'")
def test_metadata_names_come_back_as_sent(client: _s3.Client, prefix: str) -> None:
    client.put_object(prefix + "m", b"x", metadata={"uncompressed_size": "42"})
    assert client.head_object(prefix + "m")["Metadata"] == {"uncompressed_size": "42"}


def test_eight_threads_share_one_client(client: _s3.Client, prefix: str) -> None:
    results: dict[int, list[bytes]] = {}

    def work(n: int) -> None:
        got = []
        for i in range(10):
            key = f"{prefix}thread{n}/{i}"
            client.put_object(key, f"{n}:{i}".encode())
            got.append(client.get_object(key)[0])
            client.head_object(key)
        results[n] = got

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(results) == list(range(8))
    for n, got in results.items():
        assert got == [f"{n}:{i}".encode() for i in range(10)]


def test_bad_arguments_are_clean_errors(client: _s3.Client) -> None:
    with pytest.raises(TypeError):
        client.put_object("k", "text is not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.put_object("k", b"x", no_such_header="x")
    with pytest.raises(ValueError):
        client.put_object("k", b"x", content_type="a\r\nX-Injected: 1")
    with pytest.raises(ValueError):
        client.put_object("k", b"x", metadata={"bad name": "v"})
    with pytest.raises(ValueError):
        client.get_object("")
    with pytest.raises(ValueError):
        client.get_object("k", start=5, end=2)
    with pytest.raises(ValueError):
        _s3.Client("b", addressing_style="sideways")
    with pytest.raises(ValueError):
        _s3.Client("b", access_key="only-half")


def test_uninitialised_client_is_safe() -> None:
    c = _s3.Client.__new__(_s3.Client)
    assert repr(c) == "<Client (not initialised)>"
    with pytest.raises(RuntimeError):
        c.head_object("k")
    with pytest.raises(RuntimeError):
        c.presign("GET", "k")


@pytest.mark.parametrize("kwargs", [
    {"connect_timeout": float("inf")}, {"read_timeout": float("nan")},
    {"connect_timeout": 0}, {"max_connections": 0}, {"max_attempts": 0},
])
def test_out_of_range_settings_are_value_errors(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        _s3.Client("b", **kwargs)


def test_credentials_in_the_endpoint_are_refused_without_echo() -> None:
    with pytest.raises(ValueError) as info:
        _s3.Client("b", endpoint_url="http://user:hunter2@127.0.0.1:9")
    assert "hunter2" not in str(info.value)


def test_empty_header_values_are_sent_as_signed() -> None:
    with FakeS3(lambda m, p: Reply(200, b"", {"ETag": '"e"'})) as fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b")
        c.put_object("k", b"x", metadata={"empty": "", "full": "v"}, content_language="")
        sent = {k.lower(): v for k, v in fake.requests[0][2].items()}
        signed = sent["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
        assert sent["x-amz-meta-empty"] == "" and "x-amz-meta-empty" in signed
        assert sent["content-language"] == "" and "content-language" in signed
        assert "expect" not in sent


def test_empty_metadata_value_passes_a_checking_server(
        signing_server: tuple[str, str, str, str]) -> None:
    endpoint, access, secret, bucket = signing_server
    c = _s3.Client(bucket, endpoint_url=endpoint, access_key=access, secret_key=secret)
    c.put_object("empty-meta", b"x", metadata={"empty": "", "full": "v"})
    assert c.head_object("empty-meta")["Metadata"].get("full") == "v"


def test_addressing_styles() -> None:
    assert _s3.Client("my-bucket").url("k") == "https://my-bucket.s3.us-east-1.amazonaws.com/k"
    assert _s3.Client("my.dotted.bucket").url("k") == \
        "https://s3.us-east-1.amazonaws.com/my.dotted.bucket/k"
    assert _s3.Client("b", endpoint_url="http://127.0.0.1:9/").url("k") == \
        "http://127.0.0.1:9/b/k"
    assert _s3.Client("bkt", endpoint_url="http://localhost:9", addressing_style="virtual"
                      ).url("k") == "http://bkt.localhost:9/k"
    assert _s3.Client("bkt", region="eu-west-3", addressing_style="path").url("k") == \
        "https://s3.eu-west-3.amazonaws.com/bkt/k"


# ---- a server that checks signatures -------------------------------------

def test_signed_requests_pass_a_checking_server(
        signing_server: tuple[str, str, str, str]) -> None:
    endpoint, access, secret, bucket = signing_server
    c = _s3.Client(bucket, endpoint_url=endpoint, access_key=access, secret_key=secret)
    for name in KEYS:
        c.put_object(name, name.encode(), content_type="text/plain", metadata={"m": "v"})
        assert c.get_object(name)[0] == name.encode()
        assert c.head_object(name)["Metadata"] == {"m": "v"}
    c.copy_object(KEYS[1], "copied ü+", metadata_directive="REPLACE")
    assert {k[0] for k in c.list_objects()["Contents"]} >= set(KEYS)
    assert c.list_objects(prefix="ünïcode/", delimiter="/")["Contents"][0][0] == KEYS[1]
    c.delete_object("copied ü+")


def test_wrong_secret_is_signature_does_not_match(
        signing_server: tuple[str, str, str, str]) -> None:
    endpoint, access, _secret, bucket = signing_server
    wrong = "not-the-secret-Wj8uQ2"
    c = _s3.Client(bucket, endpoint_url=endpoint, access_key=access, secret_key=wrong)
    with pytest.raises(_s3.S3Error) as info:
        c.get_object("plain.txt")
    err = info.value
    assert err.code == "SignatureDoesNotMatch" and err.status == 403
    assert not isinstance(err, FileNotFoundError)
    for text in (str(err), repr(err), repr(c), str(err.args)):
        assert wrong not in text
    assert wrong not in (err.message or "")     # RGW sends no Message here, moto does


def test_unsigned_request_is_refused_by_a_checking_server(
        signing_server: tuple[str, str, str, str]) -> None:
    endpoint, access, secret, bucket = signing_server
    _s3.Client(bucket, endpoint_url=endpoint, access_key=access, secret_key=secret
               ).put_object("private.txt", b"secret data")
    with pytest.raises(_s3.S3Error) as info:
        _s3.Client(bucket, endpoint_url=endpoint, anonymous=True).get_object("private.txt")
    assert info.value.status == 403


# ---- transport ------------------------------------------------------------

def test_nothing_listening_is_a_clean_error_within_the_connect_timeout() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = _s3.Client("b", endpoint_url=f"http://127.0.0.1:{port}", access_key="a",
                   secret_key="b", connect_timeout=2)
    t0 = time.monotonic()
    with pytest.raises(_s3.S3Error) as info:
        c.head_object("k")
    assert time.monotonic() - t0 < 2
    assert info.value.code == "EndpointConnectionError" and info.value.status == 0
    assert f"127.0.0.1:{port}" in str(info.value)


def test_connect_that_hangs_gives_up_at_the_connect_timeout() -> None:
    # A listener whose accept queue is full drops further SYNs: connect hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        time.sleep(0.2)
        c = _s3.Client("b", endpoint_url=f"http://127.0.0.1:{port}", access_key="a",
                       secret_key="b", connect_timeout=0.5, read_timeout=30, max_attempts=1)
        t0 = time.monotonic()
        with pytest.raises(_s3.S3Error) as info:
            c.head_object("k")
        elapsed = time.monotonic() - t0
        assert 0.4 < elapsed < 5
        assert info.value.code in ("Timeout", "EndpointConnectionError")
    finally:
        for f in fillers:
            f.close()
        listener.close()


def test_gil_is_released_while_waiting_on_a_slow_server() -> None:
    with FakeS3(lambda m, p: Reply(200, b"slow", delay=1.0)) as fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b")
        with ticks_meanwhile() as ticks:
            body, _ = c.get_object("k")     # one second in C, waiting on the socket
            during = ticks()
        assert body == b"slow"
        # with the GIL held the spinner would not have run at all for that second
        assert during > 10000


def test_connections_are_kept_alive_and_reused() -> None:
    with FakeS3(lambda m, p: Reply(200, b"ok", {"ETag": '"e"'})) as fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b")
        for i in range(20):
            c.get_object(f"k{i}")
            c.put_object(f"k{i}", b"data")
        assert c.connections_opened == 1
        assert len(fake.connections) == 1
        # no Expect: 100-continue round trip on uploads
        assert all("Expect" not in h for _, _, h in fake.requests)


def test_large_uploads_send_no_expect_header() -> None:
    with FakeS3(lambda m, p: Reply(200, b"", {"ETag": '"e"'})) as fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b")
        c.put_object("big", b"x" * (3 * 1024 * 1024))   # libcurl would add one past 1 MiB
        assert "Expect" not in fake.requests[0][2]
        assert fake.requests[0][2]["Content-Length"] == str(3 * 1024 * 1024)


def test_refused_large_put_does_not_stall_the_next_request(s3: S3Target) -> None:
    # RGW 16 stalls a keep-alive connection after refusing a PUT that carried
    # Expect: 100-continue; a client that sends no Expect is not caught.
    c = s3.client("no-such-bucket-for-this-test", read_timeout=8, max_attempts=1)
    for _ in range(3):
        t0 = time.monotonic()
        with pytest.raises(_s3.S3Error) as info:
            c.put_object("k", b"x" * (2 * 1024 * 1024))
        assert info.value.status == 404
        with pytest.raises(_s3.S3Error):
            c.head_object("k")
        assert time.monotonic() - t0 < 6   # a stall lasts the whole read timeout


def test_pool_size_bounds_concurrent_connections() -> None:
    with FakeS3(lambda m, p: Reply(200, b"ok", delay=0.05)) as fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b",
                       max_connections=2)
        threads = [threading.Thread(target=lambda: [c.get_object("k") for _ in range(5)])
                   for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(fake.requests) == 30
        assert c.connections_opened <= 2


def scripted(*replies: Reply) -> tuple[FakeS3, list[Reply]]:
    queue = list(replies)
    return FakeS3(lambda m, p: queue.pop(0) if len(queue) > 1 else queue[0]), queue


ERROR_XML = ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
             "<Message>msg</Message><RequestId>REQ123</RequestId></Error>")


@pytest.mark.parametrize("first", [
    Reply(503, ERROR_XML.format(code="SlowDown").encode()),
    Reply(500, ERROR_XML.format(code="InternalError").encode()),
    Reply(400, ERROR_XML.format(code="RequestTimeout").encode()),
    Reply(429, b""),
])
def test_transient_failures_are_retried(first: Reply) -> None:
    fake, _ = scripted(first, first, Reply(200, b"finally"))
    with fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b",
                       max_attempts=3)
        assert c.get_object("k")[0] == b"finally"
        assert len(fake.requests) == 3
        # each attempt is signed afresh
        assert all("Authorization" in h for _, _, h in fake.requests)


def test_retries_are_bounded_and_report_the_last_error() -> None:
    fake, _ = scripted(Reply(503, ERROR_XML.format(code="SlowDown").encode()))
    with fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b",
                       max_attempts=2)
        with pytest.raises(_s3.S3Error) as info:
            c.get_object("k")
        assert (info.value.code, info.value.status, info.value.request_id) == \
            ("SlowDown", 503, "REQ123")
        assert len(fake.requests) == 2


def test_client_errors_are_not_retried() -> None:
    fake, _ = scripted(Reply(403, ERROR_XML.format(code="AccessDenied").encode()))
    with fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b",
                       max_attempts=5)
        with pytest.raises(_s3.S3Error) as info:
            c.put_object("k", b"body")
        assert info.value.code == "AccessDenied"
        assert len(fake.requests) == 1


COPY_RESULT = (b"<?xml version='1.0' encoding='UTF-8'?><CopyObjectResult>"
               b"<ETag>&quot;abc&quot;</ETag><LastModified>2024-01-02T03:04:05.000Z</LastModified>"
               b"</CopyObjectResult>")


def test_copy_reply_after_keep_alive_spaces_is_read() -> None:
    # S3 sends spaces while a long copy runs, before the document itself
    fake, _ = scripted(Reply(200, b"    \n  \n" + COPY_RESULT))
    with fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b")
        out = c.copy_object("a", "b")
        assert out["ETag"] == '"abc"' and out["LastModified"] == 1704164645.0


def test_copy_with_an_empty_200_reply_is_a_success() -> None:
    fake, _ = scripted(Reply(200, b"", {"ETag": '"from-header"'}))
    with fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b")
        assert c.copy_object("a", "b")["ETag"] == '"from-header"'


def test_copy_error_after_keep_alive_spaces_is_retried() -> None:
    fake, _ = scripted(Reply(200, b"   " + ERROR_XML.format(code="InternalError").encode()),
                       Reply(200, COPY_RESULT))
    with fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b")
        assert c.copy_object("a", "b")["ETag"] == '"abc"'
        assert len(fake.requests) == 2


def test_copy_error_inside_a_200_is_an_error() -> None:
    fake, _ = scripted(Reply(200, ERROR_XML.format(code="AccessDenied").encode()))
    with fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b",
                       max_attempts=1)
        with pytest.raises(_s3.S3Error) as info:
            c.copy_object("a", "b")
        assert info.value.code == "AccessDenied"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<ListBucketResult><Contents><Key>&lol4;</Key><Size>1</Size></Contents></ListBucketResult>"""
XXE = b"""<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<ListBucketResult><Contents><Key>&x;</Key><Size>1</Size></Contents></ListBucketResult>"""


@pytest.mark.parametrize("body", [
    BILLION_LAUGHS,
    XXE,
    b"<ListBucketResult><Contents><Key>unclosed",
    b"not xml at all",
    b"<ListBucketResult>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</ListBucketResult>",
    b"<ListBucketResult><Contents><Key>k</Key><Size>-5</Size></Contents></ListBucketResult>",
    b"<ListBucketResult><Contents><Key>&undefined;</Key></Contents></ListBucketResult>",
    b"<Other/>",
    b"",
])
def test_hostile_or_broken_listing_is_a_clean_error(body: bytes) -> None:
    fake, _ = scripted(Reply(200, body, {"Content-Type": "application/xml"}))
    with fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b")
        with pytest.raises(_s3.S3Error) as info:
            c.list_objects()
        assert info.value.code == "InvalidReply"
        assert "root:" not in str(info.value)        # nothing of /etc/passwd


def test_a_relative_listing_reads_the_names_alone() -> None:
    # listdir() reads names only: an object's other fields are not even parsed
    # (a malformed Size fails list_objects(), not the relative listing)
    body = (b"<ListBucketResult><Contents><Key>p/k</Key><Size>-5</Size><ETag>e</ETag>"
            b"</Contents><CommonPrefixes><Prefix>p/d/</Prefix></CommonPrefixes>"
            b"</ListBucketResult>")
    fake, _ = scripted(Reply(200, body, {"Content-Type": "application/xml"}))
    with fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b")
        page = c.list_objects(prefix="p/", relative=True)
        assert page["Contents"] == ["k"] and page["CommonPrefixes"] == ["d"]
        with pytest.raises(_s3.S3Error) as info:
            c.list_objects(prefix="p/")
        assert info.value.code == "InvalidReply"


def test_hostile_error_document_still_gives_a_clean_error() -> None:
    fake, _ = scripted(Reply(403, BILLION_LAUGHS.replace(b"ListBucketResult", b"Error")))
    with fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b")
        with pytest.raises(_s3.S3Error) as info:
            c.get_object("k")
        assert info.value.status == 403 and info.value.code == "AccessDenied"


def test_truncated_gzip_body_is_a_clean_error() -> None:
    packed = _s3.gzip_compress(b"x" * 100000)[:-10]
    fake, _ = scripted(Reply(200, packed, {"Content-Encoding": "gzip"}))
    with fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b")
        with pytest.raises(_s3.S3Error) as info:
            c.get_object("k", decompress=True)
        assert info.value.code == "InvalidReply"


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


def test_https_speaks_http_1_1_even_when_h2_is_offered(self_signed: tuple[str, str]) -> None:
    cert, _key = self_signed
    with FakeS3(lambda m, p: Reply(200, b"one-one"), tls=self_signed,
                alpn=["h2", "http/1.1"]) as fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b",
                       ca_bundle=cert, max_attempts=1)
        assert c.get_object("k")[0] == b"one-one"
        assert fake.versions == ["HTTP/1.1"]


def test_tls_is_verified_by_default(self_signed: tuple[str, str]) -> None:
    cert, _key = self_signed
    with FakeS3(lambda m, p: Reply(200, b"secure"), tls=self_signed) as fake:
        strict = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b",
                            max_attempts=1)
        with pytest.raises(_s3.S3Error) as info:
            strict.get_object("k")
        assert info.value.status == 0
        trusting = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b",
                              ca_bundle=cert)
        assert trusting.get_object("k")[0] == b"secure"
        unverified = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a",
                                secret_key="b", verify=False)
        assert unverified.get_object("k")[0] == b"secure"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_share_the_parents_connections() -> None:
    with FakeS3(lambda m, p: Reply(200, b"ok")) as fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b")
        assert c.get_object("before-fork")[0] == b"ok"
        assert c.connections_opened == 1

        def child() -> int:   # its own connection, never the parent's
            body = c.get_object("in-child")[0]
            return 0 if body == b"ok" and c.connections_opened == 1 else 2

        assert in_forked_child(child) == 0
        assert c.get_object("after-fork")[0] == b"ok"
        assert c.connections_opened == 1          # the parent kept its connection
        assert len(fake.connections) == 2         # the child opened one of its own


def test_a_spool_without_a_folder_goes_to_tmpdir(client: _s3.Client, prefix: str,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # $TMPDIR is read when get_object is called, with the GIL: not from the
    # transfer, which runs without it while os.environ may change
    client.put_object(prefix + "big.bin", b"x" * 50000)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    body, _ = client.get_object(prefix + "big.bin", spool_max=1000)
    with body:
        where = os.readlink(f"/proc/self/fd/{body.fileno()}")
        assert where.startswith(str(tmp_path) + "/") and body.read() == b"x" * 50000


def test_large_bodies_spool_to_an_unlinked_file(client: _s3.Client, prefix: str,
                                                tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(50000)
    client.put_object(prefix + "big.bin", data)
    small, _ = client.get_object(prefix + "big.bin", spool_max=len(data))
    assert small == data                                   # fits: bytes
    body, meta = client.get_object(prefix + "big.bin", spool_max=1000, spool_dir=str(tmp_path))
    assert not isinstance(body, bytes)
    with body:
        assert os.fstat(body.fileno()).st_nlink == 0      # unlinked: gone when closed
        assert body.read() == data
    assert list(tmp_path.iterdir()) == []
    text = b"spool me " * 20000
    client.put_object(prefix + "big.txt", _s3.gzip_compress(text), content_encoding="gzip")
    body, meta = client.get_object(prefix + "big.txt", decompress=True, spool_max=4096)
    with body:
        assert body.read() == text
    assert meta["ContentLength"] == len(text) and "ContentEncoding" not in meta
    with pytest.raises(ValueError):
        client.get_object(prefix + "big.bin", spool_max=-1)


BOMB_PROBE = """
import resource, sys
from django_s3_storage import _s3
c = _s3.Client("b", endpoint_url=sys.argv[1], access_key="a", secret_key="b")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
body, meta = c.get_object("bomb", decompress=True, spool_max=1 << 20)
n = 0
while chunk := body.read(1 << 16):
    n += len(chunk)
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(n, meta["ContentLength"], grew)
"""


def test_gzip_bomb_stays_out_of_memory() -> None:
    size = 200 * 1024 * 1024
    bomb = _s3.gzip_compress(b"\0" * size)                 # about 200 KB on the wire
    fake, _ = scripted(Reply(200, bomb, {"Content-Encoding": "gzip"}))
    with fake:
        import sys

        out = subprocess.run([sys.executable, "-c", BOMB_PROBE, fake.endpoint],
                             capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    n, length, grew_kib = map(int, out.stdout.split())
    assert n == size and length == size
    assert grew_kib < 64 * 1024                               # far below the 200 MiB decoded


def test_every_body_carries_a_signed_content_md5_and_an_unsigned_payload() -> None:
    body = b"x" * 100_000
    with FakeS3(lambda m, p: Reply(200, b"", {"ETag": '"e"'})) as fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b")
        c.put_object("k", body)
        c.put_object("empty", b"")
    for (_, _, headers), data in zip(fake.requests, (body, b"")):
        assert headers["Content-MD5"] == base64.b64encode(hashlib.md5(data).digest()).decode()
        assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        signed = headers["Authorization"].split("SignedHeaders=")[1].split(",")[0]
        assert "content-md5" in signed.split(";")



def test_exists_is_false_only_for_not_found() -> None:
    for status, want in ((200, True), (204, True), (404, False)):
        with FakeS3(lambda m, p, status=status: Reply(status, b"")) as fake:
            c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="s",
                           max_attempts=1)
            assert c.exists("k") is want and [r[0] for r in fake.requests] == ["HEAD"]
    for status in (400, 403, 500):
        with FakeS3(lambda m, p, status=status: Reply(status, b"")) as fake:
            c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="s",
                           max_attempts=1)
            with pytest.raises(_s3.S3Error) as info:
                c.exists("k")
            assert info.value.status == status and not isinstance(info.value, FileNotFoundError)
