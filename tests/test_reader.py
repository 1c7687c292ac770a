"""Client.reader(): the streaming Reader, against moto and against ObjectServer, a
stand-in on 127.0.0.1 that serves objects with Range and If-Match and the faults
moto cannot make (a cut connection, a lying ETag, a slow body, hostile replies)."""
from __future__ import annotations

import hashlib
import http.server
import io
import os
import random
import socket
import threading
import time
from typing import Iterator

import pytest

from django_s3_storage import _s3

from servers import LocalServer, in_forked_child

MiB = 1024 * 1024


def md5_etag(body: bytes) -> str:
    return '"' + hashlib.md5(body).hexdigest() + '"'


class ObjectServer(LocalServer):
    """GETs of objects held in memory at /bucket/<key>: 200, or 206 for
    `Range: bytes=N-`; 412 when If-Match is not the ETag; 404 for other keys.
    Faults, each for the next GET that matches: `cut_after` bytes then a closed
    connection; `chunk_delay` seconds before each 64 KiB; on ranged GETs,
    `overflow` (a chunked body longer than the range) or `bad_range` (a
    Content-Range that starts elsewhere)."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.connections: list[int] = []   # the connection of each request (its id)
        self.cut_after: int | None = None
        self.chunk_delay = 0.0
        self.overflow = False
        self.bad_range = False
        self.lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30

            def do_GET(self) -> None:
                owner.serve(self)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(Handler, poll_interval=0.1)
        # a reader that drops a transfer closes its connection: no traceback for that
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]

    def put(self, key: str, body: bytes, etag: str | None = None,
            **headers: str) -> None:
        self.objects["/bucket/" + key] = (body, {"ETag": etag or md5_etag(body), **headers})

    def client(self, **kwargs: object) -> _s3.Client:
        kwargs.setdefault("max_attempts", 3)
        return _s3.Client("bucket", endpoint_url=self.endpoint, access_key="a", secret_key="b",
                          read_timeout=10, **kwargs)

    def serve(self, h: http.server.BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.requests.append((h.path, dict(h.headers)))
            self.connections.append(id(h.connection))
            cut, self.cut_after = self.cut_after, None
        obj = self.objects.get(h.path.split("?")[0])
        if obj is None:
            return self.reply(h, 404, b"<Error><Code>NoSuchKey</Code></Error>", {})
        body, headers = obj
        if h.headers.get("If-Match") not in (None, headers["ETag"]):
            return self.reply(h, 412, b"<Error><Code>PreconditionFailed</Code></Error>", {})
        rng = h.headers.get("Range")
        if rng is None:
            return self.reply(h, 200, body, headers, cut)
        start = int(rng.removeprefix("bytes=").removesuffix("-"))
        first = start + 1 if self.bad_range else start
        headers = {**headers, "Content-Range": f"bytes {first}-{len(body) - 1}/{len(body)}"}
        if self.overflow:
            return self.reply_chunked(h, body[start:] + b"x" * 100000, headers)
        return self.reply(h, 206, body[start:], headers, cut)

    def reply(self, h: http.server.BaseHTTPRequestHandler, status: int, body: bytes,
              headers: dict[str, str], cut: int | None = None) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        sent = body if cut is None else body[:cut]
        for i in range(0, len(sent), 65536):
            if self.chunk_delay:
                time.sleep(self.chunk_delay)
            h.wfile.write(sent[i:i + 65536])
        if cut is not None:
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)
            h.close_connection = True

    def reply_chunked(self, h: http.server.BaseHTTPRequestHandler, body: bytes,
                      headers: dict[str, str]) -> None:
        h.send_response(206)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for i in range(0, len(body), 65536):
            piece = body[i:i + 65536]
            h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        h.wfile.write(b"0\r\n\r\n")

    def ranges(self) -> list[str | None]:
        return [headers.get("Range") for _, headers in self.requests]


@pytest.fixture
def objects() -> Iterator[ObjectServer]:
    with ObjectServer() as server:
        yield server


def blob(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


# ---- moto ------------------------------------------------------------------------

def test_reading_to_the_end_is_one_get(client: _s3.Client, prefix: str) -> None:
    data = blob(3 * MiB + 17)
    client.put_object(prefix + "k", data)
    with client.reader(prefix + "k", buffer_size=256 * 1024) as r:
        assert r.requests == 1
        chunks = []
        while chunk := r.read(65536):
            chunks.append(chunk)
        assert b"".join(chunks) == data
        assert r.requests == 1
        assert r.bytes_received == len(data)
        assert r.read() == b"" and r.read(10) == b""
    with client.reader(prefix + "k") as r:
        assert r.read() == data
        assert r.requests == 1
        assert r.tell() == len(data)


def test_read_10_of_a_40_mib_object_moves_about_a_buffer(client: _s3.Client,
                                                          prefix: str) -> None:
    data = blob(40 * MiB, seed=2)
    client.put_object(prefix + "big", data)
    buffer_size = 256 * 1024
    r = client.reader(prefix + "big", buffer_size=buffer_size)
    assert r.read(10) == data[:10]
    time.sleep(0.2)   # what more could come, would
    assert r.read(10) == data[10:20]
    assert r.bytes_received <= 2 * buffer_size
    assert r.requests == 1
    # a seek far ahead drops the transfer; the next read is a ranged GET
    r.seek(30 * MiB)
    assert r.read(100) == data[30 * MiB:30 * MiB + 100]
    assert r.requests == 2
    assert r.bytes_received <= 4 * buffer_size
    r.close()
    assert r.closed


def test_meta_size_and_encoding(client: _s3.Client, prefix: str) -> None:
    data = b"hello reader"
    put = client.put_object(prefix + "m.txt", data, content_type="text/plain",
                            metadata={"origin": "tests"})
    with client.reader(prefix + "m.txt") as r:
        assert r.meta["ContentLength"] == len(data)
        assert r.meta["ETag"] == put["ETag"]
        assert r.meta["ContentType"] == "text/plain"
        assert r.meta["Metadata"] == {"origin": "tests"}
        assert r.size == len(data)
        assert r.content_encoding is None
        assert r.decompressing is False
        assert r.readable() and r.seekable() and not r.writable()



def test_meta_is_the_first_replys_after_ranged_gets(client: _s3.Client, prefix: str) -> None:
    # meta is made when first asked, from the first reply's headers kept apart: a
    # later ranged GET (another Content-Length) must not show through
    data = blob(2 * MiB, seed=5)
    put = client.put_object(prefix + "k", data, metadata={"origin": "first"})
    with client.reader(prefix + "k", buffer_size=64 * 1024) as r:
        assert r.read(10) == data[:10]
        r.seek(MiB)
        assert r.read(10) == data[MiB:MiB + 10]
        assert r.requests == 2
        assert r.meta["ContentLength"] == len(data) and r.meta["ETag"] == put["ETag"]
        assert r.meta["Metadata"] == {"origin": "first"}
        assert r.meta is r.meta and r.content_encoding is None
    assert r.meta["ContentLength"] == len(data)   # still there once closed

def test_missing_key_raises_file_not_found_at_open(client: _s3.Client, prefix: str) -> None:
    with pytest.raises(FileNotFoundError) as info:
        client.reader(prefix + "nothing-here")
    assert isinstance(info.value, _s3.S3NotFoundError)
    assert info.value.status == 404


def test_empty_object(client: _s3.Client, prefix: str) -> None:
    client.put_object(prefix + "empty", b"")
    with client.reader(prefix + "empty") as r:
        assert r.size == 0
        assert r.read() == b""
        assert r.read(5) == b""
        r.seek(10)
        assert r.read() == b""
        assert r.requests == 1


def test_seek_within_the_buffer_sends_nothing(client: _s3.Client, prefix: str) -> None:
    data = blob(2 * MiB, seed=3)
    client.put_object(prefix + "k", data)
    with client.reader(prefix + "k", buffer_size=512 * 1024) as r:
        assert r.read(1000) == data[:1000]
        assert r.seek(10) == 10
        assert r.read(50) == data[10:60]
        assert r.seek(100000) == 100000         # a little ahead: read on and drop
        assert r.read(10) == data[100000:100010]
        assert r.seek(-20, 1) == 99990
        assert r.read(20) == data[99990:100010]
        assert r.requests == 1
        assert r.seek(-10, 2) == len(data) - 10
        assert r.read() == data[-10:]
        assert r.seek(5, 2) == len(data) + 5   # past the end: nothing to read, no request
        before = r.requests
        assert r.read(10) == b""
        assert r.requests == before
        with pytest.raises(ValueError):
            r.seek(-1)
        with pytest.raises(ValueError):
            r.seek(0, 3)


def test_seek_and_read_at_random_offsets_is_exact(client: _s3.Client, prefix: str) -> None:
    data = blob(5 * MiB + 3, seed=4)
    client.put_object(prefix + "k", data)
    rnd = random.Random(5)
    with client.reader(prefix + "k", buffer_size=64 * 1024) as r:
        for _ in range(40):
            at = rnd.randrange(0, len(data) + 10)
            n = rnd.choice([1, 10, 1000, 70000, 300000])
            r.seek(at)
            assert r.read(n) == data[at:at + n]
            assert r.tell() == min(at + n, len(data)) if at < len(data) else at
        assert r.requests > 10


def test_gzip_object_streams_decompressed(client: _s3.Client, prefix: str) -> None:
    text = b"".join(b"line %d of a compressible text file\n" % i for i in range(200000))
    gz = _s3.gzip_compress(text)
    client.put_object(prefix + "t.txt", gz, content_encoding="gzip", content_type="text/plain",
                      metadata={"uncompressed_size": str(len(text))})
    with client.reader(prefix + "t.txt", buffer_size=64 * 1024) as r:
        assert r.decompressing is True
        assert r.content_encoding == "gzip"
        assert r.size == len(text)
        assert r.meta["ContentLength"] == len(gz)
        assert r.read(100) == text[:100]
        r.seek(3 * len(text) // 4)      # forward: reads on, no new GET
        assert r.read(1000) == text[3 * len(text) // 4:3 * len(text) // 4 + 1000]
        assert r.requests == 1
        r.seek(500)                     # back: from the start again
        assert r.read(100) == text[500:600]
        assert r.requests == 2
        assert r.seek(-50, 2) == len(text) - 50
        assert r.read() == text[-50:]
        r.seek(0)
        assert r.read() == text
        assert r.requests == 3
    with client.reader(prefix + "t.txt", decompress=False) as r:
        assert r.decompressing is False
        assert r.size == len(gz)
        assert r.read() == gz


def test_gzip_without_its_size_cannot_seek_from_the_end(client: _s3.Client,
                                                        prefix: str) -> None:
    text = b"abc" * 100000
    client.put_object(prefix + "t.txt", _s3.gzip_compress(text), content_encoding="gzip")
    with client.reader(prefix + "t.txt") as r:
        assert r.size is None
        with pytest.raises(io.UnsupportedOperation):
            r.seek(-1, 2)
        r.seek(len(text) + 100)
        assert r.read() == b""
        r.seek(1)
        assert r.read() == text[1:]


def test_a_wrong_uncompressed_size_does_not_cut_the_stream(client: _s3.Client,
                                                           prefix: str) -> None:
    text = blob(50000, seed=19) * 6
    for claimed in ("10", str(10 * len(text))):
        client.put_object(prefix + "t", _s3.gzip_compress(text), content_encoding="gzip",
                          metadata={"uncompressed_size": claimed})
        with client.reader(prefix + "t", buffer_size=16 * 1024) as r:
            assert r.size == int(claimed)
            chunks = []
            while chunk := r.read(65536):
                chunks.append(chunk)
            assert b"".join(chunks) == text
            r.seek(7)
            assert r.read() == text[7:]


def test_the_uncompressed_size_under_rgws_metadata_name(client: _s3.Client,
                                                        prefix: str) -> None:
    # Ceph RGW hands x-amz-meta-uncompressed_size back as x-amz-meta-uncompressed-size
    text = b"a line of text\n" * 1000
    client.put_object(prefix + "rgw", _s3.gzip_compress(text), content_encoding="gzip",
                      metadata={"uncompressed-size": str(len(text))})
    with client.reader(prefix + "rgw") as r:
        assert r.size == len(text)
        r.seek(-5, 2)
        assert r.read() == text[-5:]


def test_bad_gzip_data_is_an_error(client: _s3.Client, prefix: str) -> None:
    client.put_object(prefix + "bad.gz", b"this is not gzip at all" * 100,
                      content_encoding="gzip")
    with pytest.raises(_s3.S3Error) as info:
        with client.reader(prefix + "bad.gz") as r:
            r.read()
    assert info.value.code == "InvalidReply"
    truncated = _s3.gzip_compress(blob(100000, seed=9))[:-20]
    client.put_object(prefix + "cut.gz", truncated, content_encoding="gzip")
    with client.reader(prefix + "cut.gz") as r:
        assert r.read(10)   # what inflates before the cut is delivered
        with pytest.raises(_s3.S3Error) as info:
            r.read()
        assert "truncated gzip" in str(info.value)


def test_object_replaced_between_seeks_is_a_clear_error(client: _s3.Client,
                                                        prefix: str) -> None:
    data = blob(2 * MiB, seed=6)
    client.put_object(prefix + "k", data)
    r = client.reader(prefix + "k", buffer_size=64 * 1024)
    assert r.read(10) == data[:10]
    client.put_object(prefix + "k", blob(2 * MiB, seed=7))
    r.seek(MiB)
    with pytest.raises(_s3.S3Error) as info:
        r.read(10)
    assert info.value.status == 412
    assert info.value.code == "PreconditionFailed"
    assert "changed" in str(info.value)
    r.close()


def test_many_open_readers_do_not_deadlock_the_pool(s3, prefix: str) -> None:  # type: ignore[no-untyped-def]
    client = s3.client(max_connections=2)
    data = blob(MiB, seed=8)
    client.put_object(prefix + "k", data)
    done: list[bool] = []

    def run() -> None:
        readers = [client.reader(prefix + "k", buffer_size=16 * 1024) for _ in range(6)]
        for i, r in enumerate(readers):
            assert r.read(100 + i) == data[:100 + i]
        for r in readers:
            r.seek(1000)
            assert r.read() == data[1000:]
            r.close()
        done.append(True)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=30)
    assert done == [True]


def test_open_readers_do_not_starve_other_calls(objects: ObjectServer) -> None:
    data = blob(2 * MiB, seed=18)
    objects.put("k", data)
    c = objects.client(max_connections=2)
    readers = [c.reader("k", buffer_size=16 * 1024) for _ in range(3)]   # paused mid-body
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(c.get_object("k")[0]), daemon=True)
    t.start()
    t.join(timeout=10)
    assert got == [data]
    for r in readers:
        assert r.read(5) == data[:5]
        r.close()


def test_buffered_reader_and_text_wrapper(client: _s3.Client, prefix: str) -> None:
    lines = [f"ligne {i}: ünïcödé ☃ {'x' * (i % 50)}\n" for i in range(20000)]
    text = "".join(lines)
    data = text.encode()
    client.put_object(prefix + "u.txt", data)
    with io.BufferedReader(client.reader(prefix + "u.txt", buffer_size=32 * 1024)) as f:
        assert f.readline() == lines[0].encode()
        assert f.read(5) == data[len(lines[0].encode()):len(lines[0].encode()) + 5]
        f.seek(0)
        assert list(f) == [line.encode() for line in lines]
    raw = client.reader(prefix + "u.txt", buffer_size=32 * 1024)
    with io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8") as t:
        assert t.readline() == lines[0]
        assert list(t) == lines[1:]
        t.seek(0)
        assert t.read() == text
    assert raw.closed
    # gzip-stored text through the same layers
    client.put_object(prefix + "u.gz", _s3.gzip_compress(data), content_encoding="gzip")
    with io.TextIOWrapper(io.BufferedReader(client.reader(prefix + "u.gz")),
                          encoding="utf-8") as t:
        assert [line for line in t] == lines


def test_closed_reader(client: _s3.Client, prefix: str) -> None:
    client.put_object(prefix + "k", b"abc")
    r = client.reader(prefix + "k")
    r.close()
    r.close()
    for call in (r.read, r.tell, r.readable, lambda: r.seek(0),
                 lambda: r.readinto(bytearray(3))):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ValueError):
        client.reader(prefix + "k", buffer_size=0)


def test_readinto(client: _s3.Client, prefix: str) -> None:
    data = blob(300000, seed=10)
    client.put_object(prefix + "k", data)
    with client.reader(prefix + "k", buffer_size=64 * 1024) as r:
        b = bytearray(100000)
        assert r.readinto(b) == 100000 and bytes(b) == data[:100000]
        view = memoryview(b)[:5]
        assert r.readinto(view) == 5 and bytes(b[:5]) == data[100000:100005]
        r.seek(len(data) - 3)
        assert r.readinto(b) == 3 and bytes(b[:3]) == data[-3:]
        assert r.readinto(b) == 0


# ---- ObjectServer -----------------------------------------------------------------

def test_ranged_gets_carry_if_match(objects: ObjectServer) -> None:
    data = blob(MiB, seed=11)
    objects.put("k", data)
    with objects.client().reader("k", buffer_size=16 * 1024) as r:
        r.seek(700000)
        assert r.read(10) == data[700000:700010]
        r.seek(5)
        assert r.read(10) == data[5:15]
    assert objects.ranges() == [None, "bytes=700000-", "bytes=5-"]
    assert "If-Match" not in objects.requests[0][1]
    assert [h["If-Match"] for _, h in objects.requests[1:]] == [md5_etag(data)] * 2


def test_readers_reuse_connections(objects: ObjectServer) -> None:
    objects.put("k", b"x" * 1024)
    c = objects.client()
    for _ in range(30):
        with c.reader("k") as r:
            assert r.read() == b"x" * 1024
    assert c.connections_opened == 1
    open_at_once = [c.reader("k") for _ in range(3)]
    assert c.connections_opened == 3
    for r in open_at_once:
        r.close()
    for _ in range(10):
        assert c.reader("k").read(2) == b"xx"   # a small body is read to its end at once
    assert c.connections_opened == 3


def test_etag_mismatch_is_a_checksum_error(objects: ObjectServer) -> None:
    data = blob(200000, seed=12)
    objects.put("k", data, etag=md5_etag(b"something else"))
    with objects.client().reader("k", buffer_size=16 * 1024) as r:
        assert r.read(1000) == data[:1000]   # not the end: delivered
        with pytest.raises(_s3.S3Error) as info:
            r.read()
        assert info.value.code == "ChecksumMismatch"
        r.seek(1000)
        assert r.read(len(data) - 1001) == data[1000:-1]
        with pytest.raises(_s3.S3Error):
            r.read(1)               # the last byte is never delivered
    with objects.client().reader("k", verify=False) as r:
        assert r.read() == data


def test_multipart_etag_is_not_verified(objects: ObjectServer) -> None:
    data = blob(300000, seed=13)
    objects.put("k", data, etag='"' + hashlib.md5(b"parts").hexdigest() + '-2"')
    with objects.client().reader("k") as r:
        assert r.read() == data
    objects.put("kms", data, etag=md5_etag(b"sealed"),
                **{"x-amz-server-side-encryption": "aws:kms"})
    with objects.client().reader("kms") as r:
        assert r.read() == data


def test_a_cut_connection_resumes_where_it_stopped(objects: ObjectServer) -> None:
    data = blob(MiB, seed=14)
    objects.put("k", data)
    objects.cut_after = 300000
    with objects.client().reader("k", buffer_size=MiB) as r:
        assert r.read() == data          # and its MD5 matched across both GETs
        assert r.requests == 2
        assert r.bytes_received == len(data)
    assert objects.ranges() == [None, "bytes=300000-"]
    assert objects.requests[1][1]["If-Match"] == md5_etag(data)


def test_meta_is_the_first_replys_when_it_was_cut_before_a_byte_came_out(
        objects: ObjectServer) -> None:
    # a gzip body cut inside its 10-byte header gives no byte yet: the open itself
    # resumes with a ranged GET, whose 206 headers must not become meta's
    text = b"hello world " * 1000
    gz = _s3.gzip_compress(text)
    objects.put("t.txt", gz, **{"Content-Encoding": "gzip", "x-amz-meta-origin": "first"})
    objects.cut_after = 5
    with objects.client().reader("t.txt", decompress=True) as r:
        assert objects.ranges() == [None, "bytes=5-"]
        assert r.meta["ContentLength"] == len(gz) and "ContentRange" not in r.meta
        assert r.meta["Metadata"] == {"origin": "first"} and r.content_encoding == "gzip"
        assert r.read() == text


def test_a_cut_connection_without_retries_left_is_an_error(objects: ObjectServer) -> None:
    data = blob(MiB, seed=20)
    objects.put("k", data)
    objects.cut_after = 300000
    with objects.client(max_attempts=1).reader("k", buffer_size=64 * 1024) as r:
        assert r.read(100000) == data[:100000]   # what came before the cut is exact
        with pytest.raises(_s3.S3Error) as info:
            r.read()
        assert info.value.code == "TransportError" and info.value.status == 0
        assert r.requests == 1
        r.seek(500000)                            # a new stream: a new GET
        assert r.read(10) == data[500000:500010]
        assert r.requests == 2


def test_a_cut_connection_with_a_lying_etag_still_fails(objects: ObjectServer) -> None:
    data = blob(MiB, seed=15)
    objects.put("k", data, etag=md5_etag(b"not it"))
    objects.cut_after = 100000
    with objects.client().reader("k") as r:
        with pytest.raises(_s3.S3Error) as info:
            r.read()
        assert info.value.code == "ChecksumMismatch"


def test_hostile_replies_raise(objects: ObjectServer) -> None:
    data = blob(300000, seed=16)
    objects.put("k", data)
    c = objects.client()
    objects.overflow = True
    with c.reader("k", buffer_size=16 * 1024) as r:
        r.seek(200000)
        with pytest.raises(_s3.S3Error) as info:
            r.read()
        assert info.value.code == "InvalidReply"
    objects.overflow = False
    objects.bad_range = True
    with c.reader("k", buffer_size=16 * 1024) as r:
        r.seek(200000)
        with pytest.raises(_s3.S3Error) as info:
            r.read(10)
        assert "Content-Range" in str(info.value)


def slow_reader(objects: ObjectServer) -> tuple[_s3.Reader, bytes]:
    data = blob(640 * 1024, seed=17)
    objects.put("slow", data)
    objects.chunk_delay = 0.1    # ten chunks: about a second
    return objects.client().reader("slow", buffer_size=64 * 1024), data


def test_the_gil_is_released_while_waiting(objects: ObjectServer) -> None:
    r, data = slow_reader(objects)
    got: list[bytes] = []
    reading = threading.Thread(target=lambda: got.append(r.read()))
    reading.start()
    time.sleep(0.1)    # the reader's thread now waits on the slow body, in C
    t0 = time.monotonic()
    total = sum(i * i for i in range(200000))   # pure Python: it needs the GIL
    worked = time.monotonic() - t0
    # done while the read still waits: the GIL was not held through that wait
    still_reading = reading.is_alive()
    reading.join(timeout=20)
    assert total > 0 and worked < 0.5
    assert still_reading
    assert got == [data]
    r.close()


def test_two_threads_on_one_reader(objects: ObjectServer) -> None:
    r, data = slow_reader(objects)
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(r.read()))
    t.start()
    time.sleep(0.2)
    for call in (lambda: r.read(1), r.tell, lambda: r.seek(0), r.close):
        with pytest.raises(RuntimeError):
            call()
    t.join(timeout=20)
    assert got == [data]
    r.close()


def test_a_huge_claimed_uncompressed_size_allocates_nothing_for_it(
        objects: ObjectServer) -> None:
    # x-amz-meta-uncompressed_size is whatever the object's writer said: read()
    # grows with what comes, it does not reserve what the metadata claims
    text = blob(30000, seed=20) * 4
    objects.put("claims", _s3.gzip_compress(text), **{
        "Content-Encoding": "gzip", "x-amz-meta-uncompressed_size": "9" * 17})
    with objects.client().reader("claims", buffer_size=16 * 1024) as r:
        assert r.size == int("9" * 17)
        assert r.read() == text
    with objects.client().reader("claims", buffer_size=16 * 1024) as r:
        assert r.read(1 << 50) == text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_reader_open_across_fork_never_shares_the_parents_connection(
        objects: ObjectServer) -> None:
    # the child goes on with a ranged GET of its own; the parent's paused transfer
    # is left to the parent (a shared socket would split one body between them)
    data = blob(400 * 1024, seed=21)
    objects.put("k", data)
    r = objects.client().reader("k", buffer_size=16 * 1024)
    assert r.read(10) == data[:10]          # the GET is paused, its socket open

    def child() -> int:
        got = r.read()
        r.close()
        return 0 if got == data[10:] else 2

    assert in_forked_child(child) == 0
    start = time.monotonic()
    assert r.read() == data[10:]
    assert time.monotonic() - start < 5     # not a stall on a drained socket
    r.close()
    first, child = objects.ranges()    # the child's GET goes on from what it had buffered
    assert first is None and child is not None and int(child[6:-1]) >= 10
    assert len(set(objects.connections)) == 2
