"""Regions, addressing and endpoints: redirects to the bucket's region (followed
once, then kept), "auto" addressing, presigned URLs for a public endpoint, and
metadata names as a server folds them. Servers on 127.0.0.1 only: the AWS host
names below are built and compared, never contacted."""
from __future__ import annotations

import hashlib
import hmac
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Iterator

import pytest
from django.core.files.base import ContentFile

from django_s3_storage import _s3
from django_s3_storage.storage import S3Storage

from conftest import S3Target
from servers import FakeS3, Reply, ScriptedServer, Seen

SECRET = "region-test-secret"
# every Client here has keys: none looks for credentials elsewhere
KEYS = {"access_key": "AKIDEXAMPLE", "secret_key": SECRET}


def error_xml(code: str, **fields: str) -> bytes:
    extra = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    return (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>m</Message>{extra}<RequestId>R1</RequestId></Error>").encode()


def scope_region(headers: dict[str, str]) -> str | None:
    m = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/s3/aws4_request",
                  headers.get("Authorization", ""))
    return m.group(1) if m else None


Script = Callable[[Seen], Reply]


class HeaderServer(ScriptedServer):
    """Like FakeS3, but the script sees the whole request (headers and body)."""

    def __init__(self, script: Script) -> None:
        super().__init__(script)

    @property
    def requests(self) -> list[Seen]:
        return self.seen


def regional(home: str, misdirected: Callable[[Seen], Reply]) -> HeaderServer:
    """A bucket that lives in `home`: requests signed for another region get
    `misdirected(request)`, the others a 200."""
    def script(seen: Seen) -> Reply:
        if scope_region(seen.headers) != home:
            return misdirected(seen)
        if "list-type=2" in seen.path:
            return Reply(200, b"<ListBucketResult><IsTruncated>false</IsTruncated>"
                              b"</ListBucketResult>")
        return Reply(200, b"ok", {"ETag": '"e"'})
    return HeaderServer(script)


def client(server: HeaderServer, **kwargs: Any) -> _s3.Client:
    kwargs.setdefault("access_key", "AKIDEXAMPLE")
    kwargs.setdefault("secret_key", SECRET)
    return _s3.Client("bkt", endpoint_url=server.endpoint, **kwargs)


# ---- redirects to the bucket's region ---------------------------------------------

MISDIRECTIONS: dict[str, Callable[[Seen], Reply]] = {
    "301 x-amz-bucket-region": lambda s: Reply(301, b"", {"x-amz-bucket-region": "eu-west-1"}),
    "301 Region in the body": lambda s: Reply(301, error_xml("PermanentRedirect",
                                                             Region="eu-west-1")),
    "301 Endpoint in the body": lambda s: Reply(301, error_xml(
        "PermanentRedirect", Endpoint="bkt.s3.eu-west-1.amazonaws.com", Bucket="bkt")),
    "307 legacy Endpoint": lambda s: Reply(307, error_xml(
        "TemporaryRedirect", Endpoint="bkt.s3-eu-west-1.amazonaws.com")),
    "400 AuthorizationHeaderMalformed": lambda s: Reply(400, error_xml(
        "AuthorizationHeaderMalformed", Region="eu-west-1")),
    "403 with x-amz-bucket-region": lambda s: Reply(
        403, error_xml("AccessDenied"), {"x-amz-bucket-region": "eu-west-1"}),
}


@pytest.mark.parametrize("kind", sorted(MISDIRECTIONS))
def test_redirect_is_followed_once_and_the_region_kept(kind: str) -> None:
    with regional("eu-west-1", MISDIRECTIONS[kind]) as srv:
        c = client(srv, max_attempts=1)   # a redirect is not a failed attempt
        assert c.region == "us-east-1"
        assert c.get_object("k")[0] == b"ok"
        assert [scope_region(r.headers) for r in srv.requests] == ["us-east-1", "eu-west-1"]
        assert srv.requests[0].path == srv.requests[1].path == "/bkt/k"
        assert c.region == "eu-west-1" and "region=eu-west-1" in repr(c)
        # later calls go straight to it: one request each
        c.head_object("k")
        c.list_objects(prefix="p")
        assert [scope_region(r.headers) for r in srv.requests[2:]] == ["eu-west-1"] * 2
        assert "X-Amz-Credential=AKIDEXAMPLE%2F" in c.presign("GET", "k")
        assert "%2Feu-west-1%2Fs3%2F" in c.presign("GET", "k")


def test_head_redirect_without_a_body_is_followed() -> None:
    with regional("ap-southeast-2", lambda s: Reply(
            301, b"", {"x-amz-bucket-region": "ap-southeast-2"})) as srv:
        c = client(srv)
        assert c.head_object("k")["ETag"] == '"e"'
        assert [(r.method, scope_region(r.headers)) for r in srv.requests] == \
            [("HEAD", "us-east-1"), ("HEAD", "ap-southeast-2")]


def test_redirected_upload_sends_its_body_again() -> None:
    with regional("eu-central-1", lambda s: Reply(
            400, error_xml("AuthorizationHeaderMalformed", Region="eu-central-1"))) as srv:
        c = client(srv)
        c.put_object("up.bin", b"payload bytes", metadata={"m": "v"})
        assert [r.body for r in srv.requests] == [b"payload bytes"] * 2
        assert srv.requests[1].headers["x-amz-meta-m"] == "v"


def test_a_conditional_upload_sent_to_the_bucket_region_claims_no_other_object() -> None:
    """A redirect to the bucket's region stored nothing: a 412 there means another
    writer has the name, even when its object has the same bytes (the check for a
    lost reply of an earlier attempt of ours does not run)."""
    body = b"the same bytes"
    etag = '"' + hashlib.md5(body).hexdigest() + '"'

    def script(seen: Seen) -> Reply:
        if scope_region(seen.headers) != "eu-west-1":
            return Reply(400, error_xml("AuthorizationHeaderMalformed", Region="eu-west-1"))
        if seen.method == "PUT":
            return Reply(412, error_xml("PreconditionFailed"))
        return Reply(200, b"", {"ETag": etag, "Content-Length": str(len(body))})

    with HeaderServer(script) as srv:
        c = client(srv)
        with pytest.raises(_s3.S3Error) as info:
            with c.writer("taken.txt", if_none_match=True) as w:
                w.write(body)
        assert info.value.code == "PreconditionFailed"
        assert [r.method for r in srv.requests] == ["PUT", "PUT"]


def test_empty_region_discovers_the_bucket_region() -> None:
    with regional("eu-north-1", lambda s: Reply(
            301, b"", {"x-amz-bucket-region": "eu-north-1"})) as srv:
        c = client(srv, region="")
        assert c.region == "us-east-1"
        c.get_object("k")
        assert c.region == "eu-north-1"


def test_storage_with_an_empty_aws_region_discovers_it() -> None:
    with regional("sa-east-1", lambda s: Reply(
            301, b"", {"x-amz-bucket-region": "sa-east-1"})) as srv:
        storage = S3Storage(aws_region="", aws_s3_endpoint_url=srv.endpoint,
                            aws_s3_bucket_name="bkt", aws_access_key_id="AKIDEXAMPLE",
                            aws_secret_access_key=SECRET, aws_s3_file_overwrite=True)
        storage.save("new.txt", ContentFile(b"x"))
        assert storage._client.region == "sa-east-1"
        assert "%2Fsa-east-1%2F" in storage.url("new.txt")


@pytest.mark.parametrize("hint", ["EU-WEST-1", "eu_west_1", "eu-west-1.evil.example",
                                  "x" * 33, "../../etc", "eu west", ""])
def test_a_malformed_hint_is_not_followed(hint: str) -> None:
    with regional("eu-west-1", lambda s: Reply(301, error_xml("PermanentRedirect", Region=hint),
                                               {"x-amz-bucket-region": hint})) as srv:
        c = client(srv)
        with pytest.raises(_s3.S3Error) as info:
            c.get_object("k")
        assert (info.value.status, info.value.code) == (301, "PermanentRedirect")
        assert len(srv.requests) == 1 and c.region == "us-east-1"


def test_a_hint_naming_the_region_signed_for_is_not_retried() -> None:
    with regional("eu-west-1", lambda s: Reply(
            400, error_xml("AuthorizationHeaderMalformed", Region="us-east-1"))) as srv:
        c = client(srv)
        with pytest.raises(_s3.S3Error) as info:
            c.get_object("k")
        assert info.value.code == "AuthorizationHeaderMalformed"
        assert len(srv.requests) == 1


def test_a_second_redirect_in_one_call_is_an_error() -> None:
    # a server that always says "not here": followed once, never in a loop
    def ping_pong(seen: Seen) -> Reply:
        other = "eu-west-1" if scope_region(seen.headers) != "eu-west-1" else "us-west-2"
        return Reply(301, b"", {"x-amz-bucket-region": other})
    with HeaderServer(ping_pong) as srv:
        c = client(srv, max_attempts=5)
        with pytest.raises(_s3.S3Error) as info:
            c.get_object("k")
        assert info.value.status == 301
        assert len(srv.requests) == 2


def test_concurrent_calls_while_the_region_changes() -> None:
    """Threads call while another one keeps moving the client between regions:
    every call either succeeds or fails with the server's redirect (when it was
    moved twice under it), nothing else, and nothing crashes."""
    with regional("eu-west-1", lambda s: Reply(
            301, b"", {"x-amz-bucket-region": "eu-west-1"})) as srv:
        c = client(srv, max_connections=4)
        stop = threading.Event()
        errors: list[BaseException] = []
        ok = [0]

        def worker() -> None:
            try:
                for i in range(40):
                    try:
                        assert c.get_object(f"k{i}")[0] == b"ok"
                        ok[0] += 1
                    except _s3.S3Error as e:
                        assert e.status == 301, e
            except BaseException as e:      # noqa: BLE001 - reported below
                errors.append(e)

        def mover() -> None:
            try:
                while not stop.is_set():
                    c._follow_region("us-east-1")
                    assert c.region in ("us-east-1", "eu-west-1")
                    assert c.url("k").startswith(srv.endpoint + "/bkt/")
                    assert "X-Amz-Signature=" in c.presign("GET", "k")
                    repr(c)
                    assert c.endpoint_url == srv.endpoint
            except BaseException as e:      # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(6)]
        m = threading.Thread(target=mover)
        m.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        stop.set()
        m.join(timeout=30)
        assert not errors, errors[:3]
        assert ok[0] > 0
        # settled: one redirect at most, then straight there
        c.get_object("last")
        n = len(srv.requests)
        c.get_object("after")
        assert len(srv.requests) == n + 1 and c.region == "eu-west-1"


def test_region_on_aws_moves_the_host_too() -> None:
    # no request is made: _follow_region() is what a redirect does, without one
    virtual = _s3.Client("my-bucket", access_key="AKIDEXAMPLE", secret_key=SECRET)
    path = _s3.Client("my.dotted.bucket", **KEYS)
    custom = _s3.Client("bkt", endpoint_url="http://127.0.0.1:9", **KEYS)
    for c in (virtual, path, custom):
        c._follow_region("eu-west-3")
        assert c.region == "eu-west-3"
    assert virtual.url("k") == "https://my-bucket.s3.eu-west-3.amazonaws.com/k"
    assert virtual.endpoint_url == "https://s3.eu-west-3.amazonaws.com"
    signed = virtual.presign("GET", "k", timestamp="20240101T000000Z")
    assert signed.startswith("https://my-bucket.s3.eu-west-3.amazonaws.com/k?")
    assert "X-Amz-Credential=AKIDEXAMPLE%2F20240101%2Feu-west-3%2Fs3%2Faws4_request" in signed
    assert path.url("k") == "https://s3.eu-west-3.amazonaws.com/my.dotted.bucket/k"
    assert custom.url("k") == "http://127.0.0.1:9/bkt/k"      # a custom endpoint stays
    for bad in ("EU", "a" * 33, "eu-west-3/x", ""):
        with pytest.raises(ValueError):
            custom._follow_region(bad)


# ---- addressing --------------------------------------------------------------------

@pytest.mark.parametrize("bucket,kwargs,url", [
    ("my-bucket", {}, "https://my-bucket.s3.us-east-1.amazonaws.com/k"),
    ("a" * 63, {}, f"https://{'a' * 63}.s3.us-east-1.amazonaws.com/k"),
    ("b-1.2", {"addressing_style": "path"}, "https://s3.us-east-1.amazonaws.com/b-1.2/k"),
    # dots: valid host names, but the wildcard certificate does not cover them
    ("my.dotted.bucket", {}, "https://s3.us-east-1.amazonaws.com/my.dotted.bucket/k"),
    ("my.dotted.bucket", {"addressing_style": "virtual"},
     "https://my.dotted.bucket.s3.us-east-1.amazonaws.com/k"),
    # not DNS-compatible: path style
    ("a" * 64, {}, f"https://s3.us-east-1.amazonaws.com/{'a' * 64}/k"),
    ("ab", {}, "https://s3.us-east-1.amazonaws.com/ab/k"),
    ("My_Bucket", {}, "https://s3.us-east-1.amazonaws.com/My_Bucket/k"),
    ("-bucket", {}, "https://s3.us-east-1.amazonaws.com/-bucket/k"),
    ("bucket-", {}, "https://s3.us-east-1.amazonaws.com/bucket-/k"),
    ("my..bucket", {}, "https://s3.us-east-1.amazonaws.com/my..bucket/k"),
    ("my.-bucket", {}, "https://s3.us-east-1.amazonaws.com/my.-bucket/k"),
    ("192.168.10.12", {}, "https://s3.us-east-1.amazonaws.com/192.168.10.12/k"),
    ("bucket", {"region": "eu-west-1"}, "https://bucket.s3.eu-west-1.amazonaws.com/k"),
    # custom endpoints: path style unless asked otherwise
    ("my-bucket", {"endpoint_url": "https://minio.internal:9000"},
     "https://minio.internal:9000/my-bucket/k"),
    ("my-bucket", {"endpoint_url": "http://127.0.0.1:9", "addressing_style": "virtual"},
     "http://my-bucket.127.0.0.1:9/k"),
    ("my-bucket", {"endpoint_url": "https://gw.example/s3/"},
     "https://gw.example/s3/my-bucket/k"),
])
def test_auto_addressing(bucket: str, kwargs: dict[str, Any], url: str) -> None:
    c = _s3.Client(bucket, **KEYS, **kwargs)
    assert c.url("k") == url
    assert c.addressing_style == ("virtual" if url.startswith(f"https://{bucket}.") or
                                  url.startswith(f"http://{bucket}.") else "path")


@pytest.mark.parametrize("bucket", ["bucket?x", "b#1"])
def test_virtual_style_refuses_a_name_that_cannot_be_a_host(bucket: str) -> None:
    with pytest.raises(ValueError, match="virtual"):
        _s3.Client(bucket, addressing_style="virtual")
    assert "%" in _s3.Client(bucket, addressing_style="path").url("k")   # escaped there


@pytest.mark.parametrize("bucket", ["a b", "\u00fc-bucket"])
@pytest.mark.parametrize("style", ["virtual", "path", "auto"])
def test_a_bucket_with_spaces_or_non_ascii_is_refused_in_every_style(bucket: str,
                                                                     style: str) -> None:
    # it would go into the Host header or the URL's authority as it is
    with pytest.raises(ValueError, match="bucket must be a bucket name"):
        _s3.Client(bucket, addressing_style=style)


# ---- a public endpoint for presigned URLs -------------------------------------------

def public_of(endpoint: str) -> str:
    # the same server under its other name: localhost is 127.0.0.1 here
    assert "127.0.0.1" in endpoint
    return endpoint.replace("127.0.0.1", "localhost")


def test_presigned_url_for_the_public_endpoint_is_fetched(s3: S3Target, prefix: str) -> None:
    public = public_of(s3.endpoint)
    c = s3.client(public_endpoint_url=public + "/")
    c.put_object(prefix + "pub ü.txt", b"public body")     # over 127.0.0.1
    url = c.presign("GET", prefix + "pub ü.txt", expires=300)
    assert url.startswith(f"{public}/test-bucket/{prefix}pub%20%C3%BC.txt?")
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"public body"
    assert c.url("x") == f"{public}/test-bucket/x"
    assert c.endpoint_url == s3.endpoint                   # the server is still reached here


def test_storage_public_endpoint_setting(s3: S3Target, prefix: str) -> None:
    public = public_of(s3.endpoint)
    storage = S3Storage(aws_s3_public_endpoint_url=public, aws_s3_key_prefix=prefix)
    storage.save("doc.txt", ContentFile(b"through the public name"))
    url = storage.url("doc.txt")
    assert url.startswith(f"{public}/test-bucket/{prefix}doc.txt?") and "X-Amz-Signature" in url
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"through the public name"
    plain = S3Storage(aws_s3_public_endpoint_url=public, aws_s3_bucket_auth=False,
                      aws_s3_key_prefix=prefix)
    assert plain.url("doc.txt") == f"{public}/test-bucket/{prefix}doc.txt"


def presign_ok(seen: Seen) -> bool:
    """An independent check of a presigned URL's SigV4 signature, against the
    Host header the request arrived with."""
    path, _, query = seen.path.partition("?")
    params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    signature = params.pop("X-Amz-Signature", "")
    enc = lambda s: urllib.parse.quote(s, safe="-_.~")   # noqa: E731
    canonical_query = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(params.items()))
    canonical = "\n".join([seen.method, path, canonical_query,
                           f"host:{seen.headers['Host']}", "", "host", "UNSIGNED-PAYLOAD"])
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    to_sign = "\n".join(["AWS4-HMAC-SHA256", params["X-Amz-Date"], scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + SECRET).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(),
                               signature)


@pytest.fixture
def checking_server() -> Iterator[HeaderServer]:
    with HeaderServer(lambda s: Reply(200, b"signed ok") if presign_ok(s) else
                      Reply(403, error_xml("SignatureDoesNotMatch"))) as srv:
        yield srv


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_public_presigned_url_is_signed_for_the_public_host(
        checking_server: HeaderServer) -> None:
    public = public_of(checking_server.endpoint)
    c = client(checking_server, public_endpoint_url=public)
    url = c.presign("GET", "dir/the key.txt")
    assert fetch(url) == (200, b"signed ok")
    # the same signature presented to the other host name is refused
    status, body = fetch(url.replace(public, checking_server.endpoint))
    assert status == 403 and b"SignatureDoesNotMatch" in body
    # and a URL signed for the internal host is refused under the public name
    internal = client(checking_server).presign("GET", "dir/the key.txt")
    assert fetch(internal) == (200, b"signed ok")
    assert fetch(internal.replace(checking_server.endpoint, public))[0] == 403


@pytest.mark.parametrize("bad", ["localhost:9000", "ftp://localhost", "http://u:p@localhost",
                                 "http://localhost/?x=1", "http://local host"])
def test_bad_public_endpoint_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="public_endpoint_url"):
        _s3.Client("b", public_endpoint_url=bad)


# ---- metadata names as a server folds them ---------------------------------------------

def test_meta_shows_uncompressed_size_as_written() -> None:
    headers = {"Content-Encoding": "gzip", "x-amz-meta-uncompressed-size": "1234",
               "x-amz-meta-other-name": "v", "Content-Type": "text/css"}
    with FakeS3(lambda m, p: Reply(200, b"", headers)) as fake:
        storage = S3Storage(aws_s3_endpoint_url=fake.endpoint, aws_s3_bucket_name="b")
        meta = storage.meta("style.css")
        assert meta["Metadata"] == {"uncompressed_size": "1234", "other-name": "v"}
        assert storage.size("style.css") == 1234


def test_meta_keeps_uncompressed_size_when_the_server_keeps_it() -> None:
    headers = {"x-amz-meta-uncompressed_size": "77", "x-amz-meta-uncompressed-size": "5"}
    with FakeS3(lambda m, p: Reply(200, b"", headers)) as fake:
        storage = S3Storage(aws_s3_endpoint_url=fake.endpoint, aws_s3_bucket_name="b")
        assert storage.meta("k")["Metadata"] == {"uncompressed_size": "77",
                                                 "uncompressed-size": "5"}
