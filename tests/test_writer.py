"""_s3.Writer: one PutObject within the threshold, a multipart upload past it, with parts
in flight at once, Content-MD5 on every body, ETags checked, and every failure aborted.
Against moto (the suite's server) and scripted stand-ins on 127.0.0.1."""
from __future__ import annotations

import base64
import gc
import hashlib
import os
import re
import socket
import threading
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from typing import Callable

import pytest

from django_s3_storage import _s3

from conftest import BUCKET, S3Target
from cred_servers import ContainerServer, Creds
from servers import Reply, ScriptedS3, ScriptedServer, Seen, in_forked_child, ticks_meanwhile

MiB = 1 << 20
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def data(n: int, seed: int = 0) -> bytes:
    """n bytes that differ from part to part (an offset error shows)."""
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    out = bytearray()
    i = 0
    while len(out) < n:
        out += bytes([i & 0xFF]) + block[: MiB - 1]
        i += 1
    return bytes(out[:n])


def write_in_chunks(w: _s3.Writer, body: bytes, chunk: int = 777_777) -> None:
    for i in range(0, len(body), chunk):
        assert w.write(body[i : i + chunk]) == len(body[i : i + chunk])


def multipart_uploads(s3: S3Target, key: str) -> list[str]:
    """The upload ids of `key` that the server still holds (GET ?uploads, signed)."""
    url = f"{s3.endpoint}/{BUCKET}?uploads"
    ts = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    headers = _s3.sign_v4("GET", url, {}, EMPTY_SHA256, region="us-east-1",
                          access_key=s3.access_key, secret_key=s3.secret_key, timestamp=ts)
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        root = ET.fromstring(r.read())
    ids = []
    for upload in root.iter():
        if upload.tag.endswith("}Upload") or upload.tag == "Upload":
            fields = {c.tag.rsplit("}", 1)[-1]: c.text for c in upload}
            if fields.get("Key") == key:
                ids.append(fields.get("UploadId") or "")
    return ids


# ---- against moto ------------------------------------------------------------


def test_small_object_is_one_put(client: _s3.Client, prefix: str) -> None:
    key = prefix + "small.bin"
    body = data(300_000)
    w = client.writer(key)
    write_in_chunks(w, body, 100_000)
    assert w.upload_id is None and w.bytes_written == len(body)
    result = w.close()
    assert result is not None
    assert result["Parts"] == 0 and result["Size"] == len(body)
    assert result["ETag"].strip('"') == hashlib.md5(body).hexdigest()
    assert w.closed and w.close() is None
    assert client.get_object(key)[0] == body


def test_empty_object_is_one_put(client: _s3.Client, prefix: str) -> None:
    key = prefix + "empty"
    with client.writer(key, threshold=0) as w:
        pass
    assert w.closed
    assert client.get_object(key)[0] == b""


def test_large_object_goes_multipart(client: _s3.Client, s3: S3Target, prefix: str) -> None:
    key = prefix + "large.bin"
    body = data(12 * MiB + 12345)
    w = client.writer(key, part_size=5 * MiB, threshold=5 * MiB)
    write_in_chunks(w, body)
    assert w.upload_id
    result = w.close()
    assert result is not None
    assert result["Parts"] == 3 and result["Size"] == len(body)
    parts = [hashlib.md5(body[i : i + 5 * MiB]).digest() for i in range(0, len(body), 5 * MiB)]
    # Ceph RGW 16 answers CompleteMultipartUpload with an empty ETag: ask HEAD there
    etag = result["ETag"] or client.head_object(key)["ETag"]
    assert etag.strip('"') == hashlib.md5(b"".join(parts)).hexdigest() + "-3"
    got, meta = client.get_object(key)
    assert got == body and meta["ETag"] == etag
    assert multipart_uploads(s3, key) == []


def test_object_headers_reach_a_multipart_object(client: _s3.Client, prefix: str) -> None:
    key = prefix + "headers.bin"
    with client.writer(key, part_size=5 * MiB, threshold=0, content_type="application/x-test",
                       cache_control="max-age=60", content_disposition="attachment",
                       metadata={"origin": "writer"}) as w:
        w.write(data(11 * MiB))
    meta = client.head_object(key)
    assert meta["ContentType"] == "application/x-test"
    assert meta["CacheControl"] == "max-age=60"
    assert meta["ContentDisposition"] == "attachment"
    assert meta["Metadata"] == {"origin": "writer"}
    assert meta["ETag"].strip('"').endswith("-3")


def test_abort_leaves_no_object_and_no_upload(client: _s3.Client, s3: S3Target,
                                              prefix: str) -> None:
    key = prefix + "aborted.bin"
    w = client.writer(key, part_size=5 * MiB, threshold=5 * MiB)
    w.write(data(11 * MiB))
    assert multipart_uploads(s3, key) == [w.upload_id]
    w.abort()
    assert w.closed
    w.abort()   # idempotent
    assert w.close() is None
    with pytest.raises(ValueError):
        w.write(b"more")
    assert multipart_uploads(s3, key) == []
    with pytest.raises(FileNotFoundError):
        client.head_object(key)


def test_exception_inside_with_aborts(client: _s3.Client, s3: S3Target, prefix: str) -> None:
    key = prefix + "raised.bin"
    ids = []
    with pytest.raises(KeyError, match="boom"):
        with client.writer(key, part_size=5 * MiB, threshold=5 * MiB) as w:
            w.write(data(11 * MiB))
            ids.append(w.upload_id)
            assert multipart_uploads(s3, key) == ids
            raise KeyError("boom")
    assert w.closed
    assert multipart_uploads(s3, key) == []
    with pytest.raises(FileNotFoundError):
        client.head_object(key)


def test_writer_dropped_unclosed_never_commits(client: _s3.Client, s3: S3Target,
                                               prefix: str) -> None:
    key = prefix + "dropped.bin"
    w = client.writer(key, part_size=5 * MiB, threshold=5 * MiB)
    w.write(data(11 * MiB))
    assert multipart_uploads(s3, key) == [w.upload_id]
    del w
    gc.collect()
    assert multipart_uploads(s3, key) == []
    with pytest.raises(FileNotFoundError):
        client.head_object(key)
    small = client.writer(prefix + "dropped-small")
    small.write(b"never sent")
    del small
    with pytest.raises(FileNotFoundError):
        client.head_object(prefix + "dropped-small")


def test_multipart_requests_pass_a_server_that_checks_signatures(
        signing_server: tuple[str, str, str, str]) -> None:
    endpoint, access, secret, bucket = signing_server
    c = _s3.Client(bucket, endpoint_url=endpoint, access_key=access, secret_key=secret)
    key = "writer/ünïcode key+=&.bin"
    body = data(11 * MiB, seed=3)
    with c.writer(key, part_size=5 * MiB, threshold=0, content_type="application/x-test",
                  metadata={"m": "v"}) as w:
        write_in_chunks(w, body)
    assert c.get_object(key)[0] == body
    assert c.head_object(key)["Metadata"] == {"m": "v"}
    w = c.writer(key + ".aborted", part_size=5 * MiB, threshold=0)
    w.write(data(6 * MiB))
    w.abort()   # AbortMultipartUpload is signed and accepted too
    with pytest.raises(FileNotFoundError):
        c.head_object(key + ".aborted")
    c.delete_object(key)


def test_arguments_are_checked_at_once(client: _s3.Client) -> None:
    for kwargs, word in (({"part_size": 5 * MiB - 1}, "part_size"),
                         ({"part_size": 5 * 1024 * MiB + 1}, "part_size"),
                         ({"threshold": -1}, "threshold"),
                         ({"max_inflight": -1}, "max_inflight"),
                         ({"size_hint": -2}, "size_hint")):
        with pytest.raises(ValueError, match=word):
            client.writer("k", **kwargs)
    with pytest.raises(TypeError, match="bogus"):
        client.writer("k", bogus="x")
    with pytest.raises(ValueError, match="control"):
        client.writer("k", content_type="text/plain\r\nX-Evil: 1")
    with pytest.raises(TypeError):
        client.writer("k").write("text")
    with pytest.raises(TypeError):
        _s3.Writer()


def test_part_size_grows_to_fit_10000_parts() -> None:
    size = _s3.Writer._part_size_for
    assert size(5 * MiB, 10_000 * 5 * MiB, 1) == 5 * MiB
    assert size(5 * MiB, 10_000 * 5 * MiB + 1, 1) == 6 * MiB
    assert size(8 * MiB, 1 << 40, 1) == 105 * MiB            # 1 TiB in <= 10,000 whole MiB
    # without a hint: doubled every 1,000 parts, so 10,000 parts reach terabytes
    assert [size(8 * MiB, -1, n) // MiB for n in (1, 1000, 1001, 2001, 9001)] == \
        [8, 8, 16, 32, 4096]
    assert sum(size(8 * MiB, -1, n) for n in range(1, 10_001)) > 8 * 10**12
    assert size(5 * 1024 * MiB, -1, 5000) == 5 * 1024 * MiB  # never past S3's 5 GiB


# ---- a scripted S3 for what moto cannot do --------------------------------------


class MiniS3(ScriptedS3):
    """Just enough multipart S3 on a ScriptedServer (threaded: parts overlap), with
    hooks for failures; it records every request (with its body) and the most
    parts it saw in flight at once."""

    def __init__(self, part: Callable[[int, Seen], Reply | None] | None = None,
                 complete: Callable[[str], Reply] | None = None,
                 put_etag: Callable[[bytes], str] | None = None, delay: float = 0.0) -> None:
        self.part_hook, self.complete_hook, self.put_etag = part, complete, put_etag
        self.delay = delay
        self.parts: dict[int, bytes] = {}
        self.by_key: dict[str, dict[int, bytes]] = {}   # uploads of several keys at once
        self.active = self.max_active = 0
        super().__init__()

    def requests(self, method: str, query: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and query in s.path]

    def answer(self, seen: Seen) -> Reply:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(seen.path).query,
                                      keep_blank_values=True)
        if seen.method == "POST" and "uploads" in query:
            return Reply(200, b'<?xml version="1.0"?><InitiateMultipartUploadResult>'
                              b"<Bucket>b</Bucket><Key>k</Key><UploadId>up/1+x=</UploadId>"
                              b"</InitiateMultipartUploadResult>")
        if seen.method == "PUT" and "partNumber" in query:
            assert query["uploadId"] == ["up/1+x="]
            number = int(query["partNumber"][0])
            with self.lock:
                self.active += 1
                self.max_active = max(self.max_active, self.active)
            try:
                time.sleep(self.delay)
                reply = self.part_hook(number, seen) if self.part_hook else None
                if reply is not None:
                    return reply
                self.parts[number] = seen.body
                with self.lock:
                    self.by_key.setdefault(seen.path.split("?")[0], {})[number] = seen.body
                return Reply(200, b"", {"ETag": f'"{hashlib.md5(seen.body).hexdigest()}"'})
            finally:
                with self.lock:
                    self.active -= 1
        if seen.method == "POST" and "uploadId" in query:
            parts = self.by_key.get(seen.path.split("?")[0], {})
            digests = b"".join(hashlib.md5(parts[n]).digest() for n in sorted(parts))
            etag = f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'
            if self.complete_hook:
                return self.complete_hook(etag)
            return Reply(200, f"<CompleteMultipartUploadResult><ETag>{etag.replace(chr(34), '&quot;')}"
                              f"</ETag></CompleteMultipartUploadResult>".encode())
        if seen.method == "PUT":
            etag = self.put_etag(seen.body) if self.put_etag else hashlib.md5(seen.body).hexdigest()
            return Reply(200, b"", {"ETag": f'"{etag}"'})
        if seen.method == "DELETE":
            return Reply(204)
        return Reply(400)


def fake_client(fake: MiniS3, **kwargs: object) -> _s3.Client:
    return _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b",
                      connect_timeout=5, read_timeout=10, **kwargs)


def content_md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def test_content_md5_on_the_put_and_on_every_part() -> None:
    with MiniS3() as fake:
        c = fake_client(fake)
        small = data(1000)
        with c.writer("small") as w:
            w.write(small)
        body = data(13 * MiB, seed=1)
        with c.writer("big", part_size=5 * MiB, threshold=5 * MiB) as w:
            write_in_chunks(w, body)
        bodies = [s for s in fake.seen if s.method == "PUT"]
        assert sorted(len(s.body) for s in bodies) == [1000, 3 * MiB, 5 * MiB, 5 * MiB]
        for s in bodies:
            assert s.headers["Content-MD5"] == content_md5(s.body)
        assert b"".join(fake.parts[n] for n in (1, 2, 3)) == body
        # the upload id went URI-encoded into the query of every part and the Complete
        assert all("uploadId=up%2F1%2Bx%3D" in s.path for s in fake.requests("PUT", "part"))
        assert len(fake.requests("POST", "uploadId=up%2F1%2Bx%3D")) == 1


def test_size_hint_grows_the_parts_sent() -> None:
    with MiniS3() as fake:
        c = fake_client(fake)
        with c.writer("hinted", part_size=5 * MiB, threshold=0, size_hint=60 << 30) as w:
            w.write(data(13 * MiB))
        # 60 GiB in 10,000 parts needs 6.2 MiB parts: 7 MiB, whole MiB
        assert [len(fake.parts[n]) for n in sorted(fake.parts)] == [7 * MiB, 6 * MiB]


def test_a_part_that_fails_twice_with_500_is_retried() -> None:
    tries: dict[int, int] = {}

    def part(number: int, seen: Seen) -> Reply | None:
        tries[number] = tries.get(number, 0) + 1
        if number == 2 and tries[number] <= 2:
            return Reply(500, b"<Error><Code>InternalError</Code></Error>")
        return None

    with MiniS3(part=part) as fake:
        c = fake_client(fake)
        body = data(12 * MiB)
        with c.writer("retried", part_size=5 * MiB, threshold=0) as w:
            w.write(body)
        assert tries == {1: 1, 2: 3, 3: 1}
        assert b"".join(fake.parts[n] for n in (1, 2, 3)) == body
        # every attempt resent the same bytes, with their MD5
        for s in fake.requests("PUT", "partNumber=2"):
            assert s.body == body[5 * MiB : 10 * MiB]
            assert s.headers["Content-MD5"] == content_md5(s.body)
        assert fake.requests("DELETE", "uploadId") == []


def test_a_refused_part_aborts_the_upload() -> None:
    def part(number: int, seen: Seen) -> Reply | None:
        if number == 2:
            return Reply(403, b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>")
        return None

    with MiniS3(part=part) as fake:
        c = fake_client(fake)
        w = c.writer("refused/key.bin", part_size=5 * MiB, threshold=0)
        with pytest.raises(_s3.S3Error) as info:
            w.write(data(12 * MiB))
            w.close()
        assert info.value.code == "AccessDenied" and info.value.status == 403
        assert info.value.key == "refused/key.bin" and info.value.bucket == "b"
        assert "refused/key.bin" in str(info.value)
        assert w.closed
        assert len(fake.requests("DELETE", "uploadId=")) == 1
        assert fake.requests("POST", "uploadId=") == []
        assert len(fake.requests("PUT", "partNumber=2")) == 1   # a 403 is not retried


def test_complete_answered_200_with_an_error_document_aborts() -> None:
    def complete(etag: str) -> Reply:
        return Reply(200, b"<?xml version='1.0'?>\n<Error><Code>InvalidPart</Code>"
                          b"<Message>one part is missing</Message></Error>")

    with MiniS3(complete=complete) as fake:
        c = fake_client(fake)
        w = c.writer("complete-error", part_size=5 * MiB, threshold=0)
        w.write(data(6 * MiB))
        with pytest.raises(_s3.S3Error) as info:
            w.close()
        assert info.value.code == "InvalidPart" and info.value.key == "complete-error"
        assert w.closed
        assert len(fake.requests("DELETE", "uploadId=")) == 1


def test_a_multipart_etag_that_does_not_match_is_an_error_and_deleted() -> None:
    def complete(etag: str) -> Reply:
        return Reply(200, b"<CompleteMultipartUploadResult><ETag>&quot;"
                          + b"0" * 32 + b"-2&quot;</ETag></CompleteMultipartUploadResult>")

    with MiniS3(complete=complete) as fake:
        c = fake_client(fake)
        w = c.writer("mismatch", part_size=5 * MiB, threshold=0)
        w.write(data(6 * MiB))
        with pytest.raises(_s3.S3Error) as info:
            w.close()
        assert info.value.code == "ChecksumMismatch" and info.value.key == "mismatch"
        # the wrong object is deleted
        deletes = [s.path for s in fake.seen if s.method == "DELETE"]
        assert deletes == ["/b/mismatch"]


def test_a_part_etag_that_does_not_match_aborts() -> None:
    def part(number: int, seen: Seen) -> Reply | None:
        return Reply(200, b"", {"ETag": '"' + "f" * 32 + '"'}) if number == 1 else None

    with MiniS3(part=part) as fake:
        c = fake_client(fake)
        w = c.writer("part-mismatch", part_size=5 * MiB, threshold=0)
        with pytest.raises(_s3.S3Error) as info:
            w.write(data(6 * MiB))
            w.close()
        assert info.value.code == "ChecksumMismatch"
        assert len(fake.requests("DELETE", "uploadId=")) == 1
        assert fake.requests("POST", "uploadId=") == []


def test_a_single_put_etag_that_does_not_match_is_an_error_and_deleted() -> None:
    with MiniS3(put_etag=lambda body: "0" * 32) as fake:
        c = fake_client(fake)
        w = c.writer("put-mismatch")
        w.write(b"payload")
        with pytest.raises(_s3.S3Error) as info:
            w.close()
        assert info.value.code == "ChecksumMismatch"
        assert [s.path for s in fake.seen if s.method == "DELETE"] == ["/b/put-mismatch"]
        # with SSE-KMS an ETag is no MD5: nothing to compare
        with c.writer("kms", server_side_encryption="aws:kms") as w:
            w.write(b"payload")
        assert [s.path for s in fake.seen if s.method == "DELETE"] == ["/b/put-mismatch"]


def test_refused_temporary_credentials_are_renewed_for_a_part(
        monkeypatch: pytest.MonkeyPatch) -> None:
    expired = (b'<?xml version="1.0"?><Error><Code>ExpiredToken</Code>'
               b"<Message>The provided token has expired.</Message></Error>")

    def key_id(seen: Seen) -> str:
        m = re.search(r"Credential=([^/]+)/", seen.headers.get("Authorization", ""))
        return m.group(1) if m else ""

    def part(number: int, seen: Seen) -> Reply | None:
        return Reply(400, expired) if key_id(seen) == "ASIASTALE00000001" else None

    with MiniS3(part=part) as fake, ContainerServer(
            [Creds("ASIASTALE00000001", "s", "t"), Creds("ASIAFRESH00000001", "s", "t2")]) as cs:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", cs.endpoint + "/creds")
        c = _s3.Client("b", endpoint_url=fake.endpoint, connect_timeout=5, read_timeout=10)
        body = data(11 * MiB)
        with c.writer("renewed", part_size=5 * MiB, threshold=0) as w:
            w.write(body)
        assert b"".join(fake.parts[n] for n in (1, 2, 3)) == body
        assert cs.issued == 2
        parts = fake.requests("PUT", "partNumber=")
        assert key_id(parts[0]) == "ASIASTALE00000001"
        last = {urllib.parse.parse_qs(urllib.parse.urlsplit(s.path).query)["partNumber"][0]:
                key_id(s) for s in parts}
        assert last == {"1": "ASIAFRESH00000001", "2": "ASIAFRESH00000001",
                        "3": "ASIAFRESH00000001"}
        assert key_id(fake.requests("POST", "uploadId=")[0]) == "ASIAFRESH00000001"


@pytest.mark.parametrize("upload_id", [b"with space", b"x" * 1025, b"",
                                       b"tab&#9;inside", b"\xc3\xa9t\xc3\xa9"])
def test_a_hostile_upload_id_is_refused_before_any_part(upload_id: bytes) -> None:
    def script(seen: Seen) -> Reply:
        if seen.method == "POST" and "uploads" in seen.path:
            return Reply(200, b"<InitiateMultipartUploadResult><UploadId>" + upload_id
                              + b"</UploadId></InitiateMultipartUploadResult>")
        return Reply(204)

    with ScriptedServer(script) as server:
        c = _s3.Client("b", endpoint_url=server.endpoint, access_key="a", secret_key="b")
        w = c.writer("k", part_size=5 * MiB, threshold=0)
        with pytest.raises(_s3.S3Error) as info:
            w.write(b"data")
        assert info.value.code == "InvalidReply" and info.value.key == "k"
        assert w.closed and w.upload_id is None
        assert [s.method for s in server.seen] == ["POST"]   # no part, nothing to abort


@pytest.mark.parametrize("inflight", [1, 3])
def test_parts_are_in_flight_at_once(inflight: int) -> None:
    with MiniS3(delay=0.3) as fake:
        c = fake_client(fake)
        with c.writer("concurrent", part_size=5 * MiB, threshold=0,
                      max_inflight=inflight) as w:
            w.write(data(16 * MiB))
        assert len(fake.parts) == 4
        # the server saw this many parts at once (each held 0.3 s): concurrency by
        # count, not by a wall-clock bound that a loaded 2-core runner can break
        assert fake.max_active == inflight


def test_a_busy_pool_bounds_the_parts_and_never_deadlocks() -> None:
    # two pooled connections, shared with another thread's requests: the writer's
    # parts go on connections of their own (never waiting for the pool, never
    # making the pool wait), as many at once as the pool's size when not asked
    with MiniS3(delay=0.2) as fake:
        c = fake_client(fake, max_connections=2)
        done = threading.Event()
        others: list[BaseException] = []

        def other_user() -> None:
            try:
                while not done.is_set():
                    c.put_object("other", b"small")
            except BaseException as e:  # noqa: BLE001 - reported below
                others.append(e)

        t = threading.Thread(target=other_user)
        t.start()
        try:
            with c.writer("pooled", part_size=5 * MiB, threshold=0) as w:
                w.write(data(21 * MiB))
        finally:
            done.set()
            t.join(timeout=10)
        assert others == [] and len(fake.parts) == 5
        assert 1 <= fake.max_active <= 2


def test_memory_budget_bounds_the_parts_in_flight() -> None:
    # 40 MiB of part buffers: with 10 MiB parts, 3 in flight and one filling
    with MiniS3(delay=0.2) as fake:
        c = fake_client(fake)
        with c.writer("budget", part_size=10 * MiB, threshold=0, max_inflight=10) as w:
            w.write(data(50 * MiB))
        assert len(fake.parts) == 5
        assert fake.max_active == 3


def test_the_gil_is_released_while_a_part_is_slow() -> None:
    with MiniS3(delay=1.0) as fake:
        c = fake_client(fake)
        with ticks_meanwhile() as ticks:
            w = c.writer("slow", part_size=5 * MiB, threshold=0, max_inflight=1)
            w.write(data(11 * MiB))   # the second part waits a second for the first
            w.close()
            during = ticks()
        assert len(fake.parts) == 3
        assert during > 10000


def test_a_writer_used_by_two_threads_at_once_is_refused() -> None:
    with MiniS3(delay=1.0) as fake:
        c = fake_client(fake)
        w = c.writer("shared", part_size=5 * MiB, threshold=0, max_inflight=1)
        errors: list[BaseException] = []

        def first() -> None:
            try:
                w.write(data(11 * MiB))   # blocked about a second on the first part
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        t = threading.Thread(target=first)
        t.start()
        time.sleep(0.3)
        with pytest.raises(RuntimeError, match="another thread"):
            w.write(b"x")
        with pytest.raises(RuntimeError):
            w.close()
        t.join(timeout=10)
        assert errors == []
        assert w.close()["Parts"] == 3


def in_thread_within(seconds: float, work: Callable[[], object]) -> list[BaseException]:
    """Runs `work` in a daemon thread; fails the test when it has not ended in time
    (a thread stuck in C cannot be stopped, but it cannot hold the suite either)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=seconds)
    assert not t.is_alive(), "deadlocked: the work did not end"
    return errors


def test_an_open_writer_never_makes_a_call_in_its_own_thread_wait() -> None:
    # parts in flight stay in flight between write() calls; when they held counted
    # handles of the pool, a call from the same thread (the only one that can drive
    # them) waited for the pool for ever
    with MiniS3(delay=0.3) as fake:
        c = fake_client(fake, max_connections=2)

        def work() -> None:
            w = c.writer("open", part_size=5 * MiB, threshold=0, max_inflight=2)
            w.write(data(11 * MiB))          # two parts in flight when write() returns
            c.put_object("meanwhile", b"small")
            w2 = c.writer("second", part_size=5 * MiB, threshold=0, max_inflight=2)
            w2.write(data(11 * MiB, seed=2))   # a second open writer in the same thread
            assert w2.close()["Parts"] == 3
            assert w.close()["Parts"] == 3

        assert in_thread_within(30, work) == []
        assert len(fake.requests("PUT", "partNumber=")) == 6


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_child_after_fork_never_aborts_or_continues_the_parents_upload() -> None:
    with MiniS3() as fake:
        c = fake_client(fake)
        w = c.writer("forked", part_size=5 * MiB, threshold=0)
        body = data(11 * MiB)
        w.write(body)                     # the upload begun, parts in flight

        def child() -> int:
            nonlocal w
            try:
                w.write(b"more")
                return 2                  # the child may not add to the parent's upload
            except RuntimeError:
                del w                     # and dropping it must not abort the upload
                gc.collect()
                return 0

        assert in_forked_child(child) == 0
        assert fake.requests("DELETE", "uploadId=") == []
        assert w.close()["Parts"] == 3
        assert b"".join(fake.parts[n] for n in (1, 2, 3)) == body


def test_a_complete_reply_without_end_is_cut_off_not_buffered() -> None:
    # S3 may send whitespace before the Complete's document; a server that keeps
    # sending is refused after a bound, not held in memory to the end
    def complete(etag: str) -> Reply:
        return Reply(200, b" " * (48 * MiB) + b"<CompleteMultipartUploadResult><ETag>"
                          + etag.replace('"', "&quot;").encode()
                          + b"</ETag></CompleteMultipartUploadResult>")

    with MiniS3(complete=complete) as fake:
        fake.server.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        c = fake_client(fake, max_attempts=1)
        w = c.writer("endless", part_size=5 * MiB, threshold=0)
        w.write(data(6 * MiB))
        with pytest.raises(_s3.S3Error) as info:
            w.close()
        assert info.value.code == "InvalidReply" and "too long" in str(info.value)


def test_parts_move_on_while_the_caller_is_away() -> None:
    """A part in flight keeps going between two write() calls (a thread of ours
    drives it): a server that drops a request body idle for a second (S3's is
    about 20 s) stores every part although the caller pauses longer than that, with
    a receive window too small for one write() to push a whole part."""
    done: dict[int, float] = {}

    def script(seen: Seen) -> Reply:
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(seen.path).query,
                                  keep_blank_values=True)
        if seen.method == "POST" and "uploads" in q:
            return Reply(200, b"<InitiateMultipartUploadResult><UploadId>u1</UploadId>"
                              b"</InitiateMultipartUploadResult>")
        if seen.method == "PUT" and "partNumber" in q:
            done[int(q["partNumber"][0])] = time.monotonic()
            return Reply(200, b"", {"ETag": f'"{hashlib.md5(seen.body).hexdigest()}"'})
        if seen.method == "POST" and "uploadId" in q:
            return Reply(200, b"<CompleteMultipartUploadResult><ETag>x</ETag>"
                              b"</CompleteMultipartUploadResult>")
        return Reply(204)

    with ScriptedServer(script, timeout=1) as server:
        accept = server.server.get_request

        def small_window():  # type: ignore[no-untyped-def]
            conn, address = accept()
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            return conn, address
        server.server.get_request = small_window  # type: ignore[method-assign]
        client = _s3.Client("b", endpoint_url=server.endpoint, access_key="a", secret_key="b",
                            max_attempts=1, read_timeout=30)
        with client.writer("k", part_size=5 << 20, threshold=0) as w:
            w.write(b"x" * (5 << 20))        # part 1 goes, and write() returns
            paused = time.monotonic()
            time.sleep(2.5)                  # the caller does something else
            assert 1 in done and done[1] < paused + 2.5
            w.write(b"y" * 1000)
        assert sorted(done) == [1, 2]
        assert not [s for s in server.seen if s.method == "DELETE"]   # nothing aborted


def test_an_upload_over_leaves_no_pump_thread_behind() -> None:
    """The thread that drives an upload's parts ends with the upload (close(), abort(),
    a failed write), not when the Writer object goes: a closed file kept around (as
    Django's File keeps its file) holds no thread."""
    def c_threads() -> int:   # OS threads that are no Python thread: the pumps
        return len(os.listdir("/proc/self/task")) - threading.active_count()

    with MiniS3() as fake:
        c = fake_client(fake)
        gc.collect()
        before = c_threads()
        kept = []
        for i in range(6):
            w = c.writer(f"over{i}", part_size=5 * MiB, threshold=0)
            w.write(data(6 * MiB))
            if i % 2:
                w.abort()
            else:
                assert w.close()["Parts"] == 2
            kept.append(w)
        # the server's handler threads may take a moment to be gone from the OS
        deadline = time.monotonic() + 5
        while c_threads() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c_threads() <= before
        assert len(fake.requests("DELETE", "uploadId=")) == 3


@pytest.mark.parametrize("caller", ["away", "fetching"])
def test_a_part_waiting_for_renewed_credentials_stops_no_other_part(
        monkeypatch: pytest.MonkeyPatch, caller: str) -> None:
    """One part refused for expired credentials waits for renewed ones, which the
    caller fetches (with the GIL) at its next call; the other parts go on, both while
    the caller is away between two write() calls and while its fetch takes long: here
    part 2's retry after a 503 is stored meanwhile, and part 1 goes again with the
    renewed set."""
    expired = (b'<?xml version="1.0"?><Error><Code>ExpiredToken</Code>'
               b"<Message>The provided token has expired.</Message></Error>")
    slow_down = b'<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>m</Message></Error>'
    stored: dict[int, float] = {}
    attempts: dict[int, list[str]] = {1: [], 2: [], 3: []}

    def key_id(seen: Seen) -> str:
        m = re.search(r"Credential=([^/]+)/", seen.headers.get("Authorization", ""))
        return m.group(1) if m else ""

    def script(seen: Seen) -> Reply:
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(seen.path).query,
                                  keep_blank_values=True)
        if seen.method == "POST" and "uploads" in q:
            return Reply(200, b"<InitiateMultipartUploadResult><UploadId>u1</UploadId>"
                              b"</InitiateMultipartUploadResult>")
        if seen.method == "PUT" and "partNumber" in q:
            number = int(q["partNumber"][0])
            attempts[number].append(key_id(seen))
            if number == 1 and key_id(seen) == "ASIASTALE00000001":
                return Reply(400, expired)
            if number == 2 and len(attempts[2]) == 1:
                # answered after part 1's refusal; the retry 50 ms later
                return Reply(503, slow_down, {"x-amz-retry-after": "50"}, delay=0.5)
            stored[number] = time.monotonic()
            return Reply(200, b"", {"ETag": f'"{hashlib.md5(seen.body).hexdigest()}"'})
        if seen.method == "POST" and "uploadId" in q:
            return Reply(200, b"<CompleteMultipartUploadResult><ETag>x</ETag>"
                              b"</CompleteMultipartUploadResult>")
        return Reply(204)

    creds = [Creds("ASIASTALE00000001", "s", "t"), Creds("ASIAFRESH00000001", "s", "t2")]
    fetch = 1.5 if caller == "fetching" else 0.0   # the source answers within 2 s
    with ScriptedServer(script) as server, ContainerServer(creds, delay=[0.0, fetch]) as cs:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", cs.endpoint + "/creds")
        c = _s3.Client("b", endpoint_url=server.endpoint, connect_timeout=5, read_timeout=10)
        with c.writer("k", part_size=5 * MiB, threshold=0, max_inflight=2) as w:
            w.write(b"x" * (10 * MiB))     # parts 1 and 2 in flight when write() returns
            began = time.monotonic()
            if caller == "away":           # the caller does something else
                while 2 not in stored and time.monotonic() < began + 10:
                    time.sleep(0.05)
                assert 2 in stored, "part 2 stood still while part 1 waited for credentials"
                assert 1 not in stored and attempts[1] == ["ASIASTALE00000001"]
            else:                          # back at once (part 1 refused), a slow renewal
                while not attempts[1] and time.monotonic() < began + 10:
                    time.sleep(0.01)
                time.sleep(0.1)
                w.write(b"y" * 1000)
                assert time.monotonic() - began >= fetch
                assert 2 in stored and stored[2] - began < fetch, \
                    "part 2 stood still while the caller fetched credentials"
            w.write(b"y" * 1000)
        assert sorted(stored) == [1, 2, 3]
        assert attempts[1] == ["ASIASTALE00000001", "ASIAFRESH00000001"]
        assert len(attempts[2]) == 2 and cs.issued == 2
        assert not [s for s in server.seen if s.method == "DELETE"]
