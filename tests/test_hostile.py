"""Hostile servers and hostile input (issue 8, item 2): listings that never end,
servers that stall, replies that are huge or malicious, names and header values of
every kind. Each must give a clear error or a correct result: no crash, no hang,
bounded requests, memory and time. Every server here listens on 127.0.0.1 and
stops with its `with` block; moto (the session's server) where a real one is needed.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.base import ContentFile

from django_s3_storage import _s3
from django_s3_storage.storage import S3Storage

from conftest import S3Target
from servers import FakeS3, Reply, ScriptedServer

COPY_RESULT = (b"<CopyObjectResult><ETag>&quot;e&quot;</ETag>"
               b"<LastModified>2024-01-02T03:04:05.000Z</LastModified></CopyObjectResult>")
HEAD_HEADERS = {"Content-Type": "text/plain", "ETag": '"e"',
                "Last-Modified": "Tue, 02 Jan 2024 03:04:05 GMT"}


class Fake(FakeS3):
    """FakeS3 that stops in 20 ms rather than 0.5 s (this file starts ~80 of them)
    and writes each reply at once: http.server writes the head and the body apart,
    and without TCP_NODELAY every reply waits ~40 ms for the client's delayed ACK
    (1,000 listing pages took 45 s)."""

    def __init__(self, script: Callable[[str, str], Reply]) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.connections: set[int] = set()
        self.versions: list[str] = []
        ScriptedServer.__init__(self, script, poll_interval=0.02)
        handler = self.server.RequestHandlerClass
        setup = handler.setup

        def setup_nodelay(h: Any) -> None:
            setup(h)
            h.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        handler.setup = setup_nodelay  # type: ignore[method-assign]


def fake_client(fake: Any, **kwargs: Any) -> _s3.Client:
    kwargs.setdefault("max_attempts", 1)
    return _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b", **kwargs)


def fake_storage(fake: Any, **kwargs: Any) -> S3Storage:
    kwargs.setdefault("aws_s3_max_attempts", 1)
    return S3Storage(aws_s3_endpoint_url=fake.endpoint, aws_s3_bucket_name="b", **kwargs)


# ---- listings that never end ------------------------------------------------------

def listing(keys: list[str], token: str | None, truncated: bool = True) -> bytes:
    contents = "".join(f"<Contents><Key>{k}</Key><Size>1</Size><ETag>&quot;e&quot;</ETag>"
                       f"<LastModified>2024-01-02T03:04:05.000Z</LastModified></Contents>"
                       for k in keys)
    tok = "" if token is None else f"<NextContinuationToken>{token}</NextContinuationToken>"
    return (f"<ListBucketResult><IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"
            f"{tok}{contents}</ListBucketResult>").encode()


class EndlessListing:
    """A server whose listing pages come from `page(n, token)` -> (keys, next token);
    HEAD and copy (for sync_meta) succeed. It counts the listing requests."""

    def __init__(self, page: Callable[[int, str | None], tuple[Any, ...]]) -> None:
        self.page = page
        self.pages = 0
        self.fake = Fake(self.script)

    def script(self, method: str, path: str) -> Reply:
        query = parse_qs(urlsplit(path).query, keep_blank_values=True)
        if method == "GET" and "list-type" in query:
            self.pages += 1
            if self.pages > 3000:   # the end, so that a client without the guards fails
                return Reply(200, listing([], None, False))   # its test, not hangs in it
            token = query.get("continuation-token", [None])[0]
            keys, next_token, *more = self.page(self.pages, token)
            return Reply(200, listing(keys, next_token, *more), {"Content-Type": "application/xml"})
        if method == "HEAD":
            return Reply(200, b"", HEAD_HEADERS)
        return Reply(200, COPY_RESULT)


ENDLESS: dict[str, tuple[Callable[[int, str | None], tuple[Any, ...]], str, int]] = {
    # name: (pages, what the error says, most listing requests it may take)
    "same token again": (lambda n, t: ([f"k{n}"], "T"), "gave before", 2),
    "token back to an earlier one": (lambda n, t: ([f"k{n}"], f"T{n % 3}"), "gave before", 4),
    "growing token, same page": (lambda n, t: (["k"], "t" * n), "same page twice", 2),
    "growing token, new keys": (lambda n, t: ([f"k{n}"], "t" * 100 * n), "continuation token of",
                                42),
    "growing token, empty pages": (lambda n, t: ([], "t" * n), "empty pages", 1001),
    "truncated, no token": (lambda n, t: (["k"], None), "NextContinuationToken", 1),
    "truncated, empty token": (lambda n, t: (["k"], ""), "NextContinuationToken", 1),
}


@pytest.mark.parametrize("operation", ["listdir", "sync_meta"])
@pytest.mark.parametrize("case", list(ENDLESS))
def test_a_listing_that_never_ends_is_an_error_after_bounded_requests(
        case: str, operation: str) -> None:
    page, says, most = ENDLESS[case]
    server = EndlessListing(page)
    with server.fake:
        storage = fake_storage(server.fake)
        started = time.monotonic()
        with pytest.raises(_s3.S3Error) as info:
            if operation == "listdir":
                storage.listdir("")
            else:
                storage.sync_meta()
        took = time.monotonic() - started
    assert info.value.code == "InvalidReply" and info.value.status == 200
    assert says in str(info.value)
    assert 1 <= server.pages <= most
    assert took < 10
    print(f"\n{case}: {operation} stopped after {server.pages} requests in {took:.2f} s")


def test_a_listing_of_many_pages_with_fresh_tokens_is_followed_to_its_end() -> None:
    # the guards do not stop a real listing: 30 pages, each token new, the last one ends
    server = EndlessListing(lambda n, t: ([f"k{n:03d}"], f"tok{n}") if n < 30
                            else ([f"k{n:03d}"], None, False))
    with server.fake:
        _, files = fake_storage(server.fake).listdir("")
    assert files == [f"k{n:03d}" for n in range(1, 31)] and server.pages == 30


def test_listdir_refuses_a_key_outside_the_prefix_it_asked_for() -> None:
    """listdir's names are the keys after the prefix: a key or common prefix that
    does not start with it is a reply that cannot be right, not a garbled name."""
    for keys in (["d/a", "e/b"], ["d"], ["x"]):
        with Fake(lambda m, p, keys=keys: Reply(200, listing(keys, None, False))) as fake:
            with pytest.raises(_s3.S3Error) as info:
                fake_storage(fake).listdir("d")
        assert info.value.code == "InvalidReply" and "outside the prefix" in str(info.value)
    body = listing(["d/", "d/a", "d/\u00e9\u00e8"], None, False).replace(
        b"</ListBucketResult>",
        b"<CommonPrefixes><Prefix>d/s//</Prefix></CommonPrefixes></ListBucketResult>")
    with Fake(lambda m, p: Reply(200, body)) as fake:
        assert fake_storage(fake).listdir("d") == (["s"], ["a", "\u00e9\u00e8"])
        with pytest.raises(_s3.S3Error, match="outside the prefix"):
            fake_client(fake).list_objects("e/", relative=True)
        page = fake_client(fake).list_objects("d/", relative=True)
        assert page["Contents"] == ["a", "\u00e9\u00e8"] and page["CommonPrefixes"] == ["s"]
        assert fake_client(fake).list_objects(relative=True)["Contents"] == [
            "d/", "d/a", "d/\u00e9\u00e8"]


def test_a_truncated_page_without_a_token_is_an_error_of_the_client_too() -> None:
    with Fake(lambda m, p: Reply(200, listing(["k"], None))) as fake:
        with pytest.raises(_s3.S3Error) as info:
            fake_client(fake).list_objects()
    assert info.value.code == "InvalidReply" and "NextContinuationToken" in str(info.value)


# ---- servers that stall ------------------------------------------------------------

class RawServer:
    """A server on 127.0.0.1 that reads each request (headers and body), sends
    `reply` (maybe a partial one) and then stalls until stopped, or closes the
    connection when `close`. `reply` may be a function of the request line instead:
    its reply is sent and the connection kept for the next, or None: a stall. It
    counts the requests it read."""

    def __init__(self, reply: bytes | Callable[[bytes], bytes | None] = b"",
                 close: bool = False) -> None:
        self.reply, self.close = reply, close
        self.requests = 0
        self.stopping = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()

    def accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                while not self.stopping.is_set():
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        data += chunk
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":", 1)[1])
                    while len(body) < length:
                        body += conn.recv(65536)
                    self.requests += 1
                    out = self.reply(head.split(b"\r\n")[0]) if callable(self.reply) \
                        else self.reply
                    if out is not None:
                        conn.sendall(out)
                    if self.close:
                        return
                    if out is None or not callable(self.reply):
                        self.stopping.wait(30)   # the stall
            except OSError:
                return

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()


STALLS = {
    "PUT, after the body": ("put", b""),
    "GET, before the status line": ("get", b""),
    "GET, in the middle of the body": (
        "get", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10),
    "listing, in the middle of the document": (
        "list", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n<ListBucketResult>"),
}


@pytest.mark.parametrize("case, attempts", [(case, 1) for case in STALLS] +
                         [("PUT, after the body", 2)])
def test_a_stalled_server_fails_at_the_read_timeout(case: str, attempts: int) -> None:
    operation, reply = STALLS[case]
    with RawServer(reply) as server:
        c = fake_client(server, read_timeout=1, max_attempts=attempts)
        started = time.monotonic()
        with pytest.raises(_s3.S3Error) as info:
            if operation == "put":
                c.put_object("k", b"x" * 100_000)
            elif operation == "get":
                c.get_object("k")
            else:
                c.list_objects()
        took = time.monotonic() - started
    assert info.value.code == "Timeout" and "read timeout" in str(info.value)
    assert server.requests == attempts
    # each attempt ends at the read timeout (libcurl's low-speed check came ~5 s late);
    # the retry waits at most 50 ms
    assert attempts * 1.0 - 0.05 <= took < attempts * 1.6
    print(f"\n{case}, read_timeout=1, {attempts} attempt(s): failed after {took:.2f} s")


def test_a_multipart_upload_whose_parts_stall_fails_at_the_read_timeout_and_aborts() -> None:
    initiated = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(INITIATED)
                 + INITIATED)
    lines: list[tuple[bytes, bytes]] = []

    def route(line: bytes) -> bytes | None:
        method, target, _ = line.split(b" ")
        lines.append((method, target.split(b"?")[1].split(b"=")[0]))
        if line.startswith(b"POST"):
            return initiated
        if line.startswith(b"DELETE"):
            return b"HTTP/1.1 204 No Content\r\n\r\n"
        return None                                     # the parts stall

    with RawServer(route) as server:
        started = time.monotonic()
        with pytest.raises(_s3.S3Error) as info:
            with fake_client(server, read_timeout=1).writer(
                    "k", part_size=5 << 20, threshold=5 << 20) as w:
                w.write(b"x" * (6 << 20))
        took = time.monotonic() - started
    assert info.value.code == "Timeout" and 0.95 <= took < 1.6     # it was 6.3 s
    assert lines[0] == (b"POST", b"uploads") and lines[-1] == (b"DELETE", b"uploadId")
    assert lines[1:-1] == [(b"PUT", b"partNumber")] * 2


def test_a_tls_handshake_that_stalls_gets_the_connect_timeout_not_the_read_timeout() -> None:
    # the read timeout starts once connected: a slow handshake has connect_timeout
    with RawServer(b"") as server:
        c = _s3.Client("b", endpoint_url=server.endpoint.replace("http:", "https:"),
                       access_key="a", secret_key="b", max_attempts=1, connect_timeout=2.5,
                       read_timeout=1)
        started = time.monotonic()
        with pytest.raises(_s3.S3Error) as info:
            c.get_object("k")
        took = time.monotonic() - started
    assert info.value.code == "Timeout" and 2.4 <= took < 3.5


def test_a_reader_that_waits_longer_than_the_read_timeout_is_not_a_stall() -> None:
    # the transfer is paused by the reader, not stalled by the server
    data = os.urandom(8 * 1024 * 1024)
    with Fake(lambda m, p: Reply(200, data, {"ETag": '"e"'})) as fake:
        with fake_client(fake, read_timeout=1).reader("k", buffer_size=256 * 1024) as r:
            first = r.read(1000)
            time.sleep(1.5)
            rest = r.read()
    assert first + rest == data


# ---- replies that are huge or malicious --------------------------------------------

HUGE_LENGTH = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000\r\n\r\n"


@pytest.mark.parametrize("operation", ["get_object", "reader", "list_objects"])
def test_a_huge_content_length_is_a_clean_error(operation: str) -> None:
    with RawServer(HUGE_LENGTH + b"<ListBucketResult>" + b"x" * 5000, close=True) as server:
        c = fake_client(server, max_attempts=2)
        started = time.monotonic()
        with pytest.raises(_s3.S3Error) as info:
            if operation == "get_object":
                c.get_object("k")
            elif operation == "reader":
                with c.reader("k") as r:
                    r.read()
            else:
                c.list_objects()
        assert time.monotonic() - started < 5
    if operation == "reader":   # it resumes with a ranged GET, which gets a 200 again
        assert info.value.code == "InvalidReply" and "206" in str(info.value)
    else:
        assert info.value.code == "TransportError" and "remaining" in str(info.value)
    assert server.requests <= 2


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">]>
<ROOT><Contents><Key>&lol5;</Key><Size>1</Size></Contents><Code>&lol5;</Code></ROOT>"""
XXE = b"""<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<ROOT><Contents><Key>&x;</Key><Size>1</Size></Contents><Code>&x;</Code></ROOT>"""
DEEP = b"<ROOT>" + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</ROOT>"


@pytest.mark.parametrize("doc", [BILLION_LAUGHS, XXE, DEEP], ids=["entities", "xxe", "deep"])
@pytest.mark.parametrize("where", ["listdir", "error document", "copy reply"])
def test_hostile_xml_is_a_clean_error(doc: bytes, where: str) -> None:
    root = {"listdir": b"ListBucketResult", "error document": b"Error",
            "copy reply": b"CopyObjectResult"}[where]
    body = doc.replace(b"ROOT", root)
    status = 403 if where == "error document" else 200
    with Fake(lambda m, p: Reply(status, body, {"Content-Type": "application/xml"})) as fake:
        storage = fake_storage(fake)
        started = time.monotonic()
        with pytest.raises(_s3.S3Error) as info:
            if where == "listdir":
                storage.listdir("")
            elif where == "error document":
                storage.open("k").read()
            else:
                storage.copy("a", "b")
        assert time.monotonic() - started < 5
    assert "root:" not in str(info.value) and "lollol" not in str(info.value)
    assert info.value.status == status
    if where != "error document":
        assert info.value.code == "InvalidReply"


INITIATED = b"<InitiateMultipartUploadResult><UploadId>UP1</UploadId></InitiateMultipartUploadResult>"


@pytest.mark.parametrize("doc", [BILLION_LAUGHS, XXE, DEEP], ids=["entities", "xxe", "deep"])
@pytest.mark.parametrize("stage", ["initiate", "complete"])
def test_hostile_xml_in_a_multipart_upload_is_a_clean_error_and_no_orphan(
        stage: str, doc: bytes) -> None:
    def script(method: str, path: str) -> Reply:
        if method == "POST" and path.endswith("?uploads"):
            return Reply(200, doc.replace(b"ROOT", b"InitiateMultipartUploadResult")
                         if stage == "initiate" else INITIATED)
        if method == "POST":
            return Reply(200, doc.replace(b"ROOT", b"CompleteMultipartUploadResult"))
        return Reply(204 if method == "DELETE" else 200, b"", {"ETag": '"e"'})

    with Fake(script) as fake:
        with pytest.raises(_s3.S3Error) as info:
            with fake_client(fake).writer("k", part_size=5 << 20, threshold=5 << 20) as w:
                w.write(b"x" * (6 << 20))
    assert info.value.code == "InvalidReply" and "root:" not in str(info.value)
    sent = [(m, p.split("?")[1].split("&")[0]) for m, p, _ in fake.requests]
    if stage == "initiate":
        assert sent == [("POST", "uploads")]
    else:   # the upload it began is aborted
        assert sent[-2:] == [("POST", "uploadId=UP1"), ("DELETE", "uploadId=UP1")]


def test_listing_pages_are_bounded_but_a_full_page_of_the_longest_keys_fits() -> None:
    euro = "%E2%82%AC" * 340                           # 1,020 bytes once decoded
    entry = ("<Contents><Key>{i:04d}" + euro + "</Key><Size>1</Size><ETag>&quot;"
             + "0" * 32 + "&quot;</ETag><LastModified>2024-01-02T03:04:05.000Z</LastModified>"
             "<StorageClass>STANDARD</StorageClass></Contents>")
    full = ("<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>"
            + "".join(entry.format(i=i) for i in range(1000)) + "</ListBucketResult>").encode()
    crowded = (b"<ListBucketResult>" + b"<Contents><Key>k</Key></Contents>" * 10_001
               + b"</ListBucketResult>")
    padded = (b"<ListBucketResult>" + (b"<Pad>" + b"p" * 1000 + b"</Pad>") * 9000
              + b"</ListBucketResult>")
    replies = {"/b/?encoding-type=url&list-type=2&prefix=full": full,
               "/b/?encoding-type=url&list-type=2&prefix=crowded": crowded,
               "/b/?encoding-type=url&list-type=2&prefix=padded": padded}
    with Fake(lambda m, p: Reply(200, replies[p])) as fake:
        c = fake_client(fake)
        page = c.list_objects("full")
        assert len(full) > 3_000_000 and len(page["Contents"]) == 1000
        assert page["Contents"][999][0] == "0999" + "€" * 340
        assert len(page["Contents"][0][0].encode()) == 1024
        for prefix, says in (("crowded", "more than 10000"), ("padded", "over 8 MiB")):
            with pytest.raises(_s3.S3Error) as info:
                c.list_objects(prefix)
            assert info.value.code == "InvalidReply" and says in str(info.value)


RSS_PROBE = """
import sys
from django_s3_storage import _s3
def c():
    return _s3.Client("b", endpoint_url=sys.argv[1], access_key="a", secret_key="b",
                      max_attempts=1)
def peak():
    # VmHWM, not ru_maxrss: that one keeps the peak of the process that forked us
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
base = peak()
out = []
try:                                      # a 100 MB listing: over the 1 MiB reply cap
    c().list_objects()
    out.append("list:ok")
except _s3.S3Error as e:
    out.append(f"list:{e.code}")
out.append(str(peak() - base))
try:                                      # a 100 MB error document: its first MiB kept
    c().get_object("error")
    out.append("error:ok")
except _s3.S3Error as e:
    out.append(f"error:{e.status}")
out.append(str(peak() - base))
n = 0                                     # a 100 MB object, streamed
with c().reader("object") as r:
    while chunk := r.read(1 << 20):
        n += len(chunk)
out.append(f"read:{n}")
out.append(str(peak() - base))
body, meta = c().get_object("object", spool_max=1 << 20)   # spooled to a file
n = 0
with body:
    while chunk := body.read(1 << 20):
        n += len(chunk)
out.append(f"spooled:{n}")
out.append(str(peak() - base))
body, meta = c().get_object("object")     # the instrument: 100 MB held as bytes
out.append(f"held:{len(body)}")
out.append(str(peak() - base))
out.append(f"base:{base}")
print(" ".join(out))
"""

HUNDRED_MB = 100 * 1000 * 1000


def test_100_mb_replies_stay_out_of_memory() -> None:
    entry = b"<Contents><Key>k</Key><Size>1</Size></Contents>"
    big_listing = b"<ListBucketResult>" + entry * (HUNDRED_MB // len(entry))
    big_error = b"<Error><Code>AccessDenied</Code><Message>" + b"x" * HUNDRED_MB
    big_object = b"o" * HUNDRED_MB

    def script(method: str, path: str) -> Reply:
        if "list-type" in path:
            return Reply(200, big_listing)
        if path.endswith("/error"):
            return Reply(403, big_error)
        return Reply(200, big_object, {"ETag": '"e"'})

    # under `make sanitize`, ASan's quarantine would keep 256 MB of freed blocks resident
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = ":".join(filter(None, [
        env.get("ASAN_OPTIONS"), "quarantine_size_mb=0", "thread_local_quarantine_size_kb=0"]))
    with Fake(script) as fake:
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-c", RSS_PROBE, fake.endpoint],
                             capture_output=True, text=True, timeout=120, env=env,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        took = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    words = out.stdout.split()
    assert words[0] == "list:InvalidReply" and words[2] == "error:403"
    assert words[4] == f"read:{HUNDRED_MB}" and words[6] == f"spooled:{HUNDRED_MB}"
    assert words[8] == f"held:{HUNDRED_MB}"
    peaks_kib = [int(w) for w in words[1:10:2]]
    assert max(peaks_kib[:4]) < 24 * 1024, peaks_kib  # far below the 100 MB of each reply
    assert peaks_kib[4] > 90 * 1024, peaks_kib         # and the probe does see 100 MB held
    print(f"\n100 MB replies: peak RSS growth {[p // 1024 for p in peaks_kib]} MiB over "
          f"{int(words[10][5:]) // 1024} MiB after import, {took:.1f} s")


# ---- names ---------------------------------------------------------------------------

REFUSED_NAMES = {
    "../x": SuspiciousFileOperation,
    "a/../../x": SuspiciousFileOperation,
    "/../etc/passwd": SuspiciousFileOperation,
    "a\x00b": SuspiciousFileOperation,
    "a\nb": SuspiciousFileOperation,
    "a\rb": SuspiciousFileOperation,
    "a\tb": SuspiciousFileOperation,
    "a\x1bb": SuspiciousFileOperation,
    "a\x7fb": SuspiciousFileOperation,
    "a\ud800b": SuspiciousFileOperation,
    "\udcff.txt": SuspiciousFileOperation,
    "é" * 509 + "x": ValueError,           # 1,025 bytes of UTF-8 with the prefix "media/"
}


@pytest.mark.parametrize("name", list(REFUSED_NAMES), ids=ascii)
def test_hostile_names_are_refused_before_any_request(name: str) -> None:
    error = REFUSED_NAMES[name]
    with Fake(lambda m, p: Reply(200, b"")) as fake:
        storage = fake_storage(fake, aws_s3_key_prefix="media")
        for call in (lambda: storage.save(name, ContentFile(b"x")),
                     lambda: storage.open(name),
                     lambda: storage.open(name, "wb"),
                     lambda: storage.exists(name),
                     lambda: storage.url(name),
                     lambda: storage.size(name),
                     lambda: storage.delete(name),
                     lambda: storage.copy("ok.txt", name)):
            with pytest.raises(error):
                call()
        assert fake.requests == []


def test_a_prefix_with_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="AWS_S3_KEY_PREFIX"):
        S3Storage(aws_s3_key_prefix="media\udc80")


def test_odd_but_valid_names_round_trip(s3: S3Target, prefix: str) -> None:
    storage = S3Storage(aws_s3_key_prefix=prefix)
    room = 1024 - len(prefix.encode())                # prefix holds the "/" of the key
    names = ["back\\slash.txt", "\u202etxt.exe", "sp ace & 'quote' \"dq\" %2e%2e.txt",
             "ünïcödé/名前.txt", "e" * room, "é" * (room // 2) + "e" * (room % 2)]
    for name in names:
        # Django's save() stores '\\' as '/', as on Windows
        assert storage.save(name, ContentFile(name.encode())) == name.replace("\\", "/")
    assert len((prefix + names[4]).encode()) == len((prefix + names[5]).encode()) == 1024
    for name in names:
        stored = name.replace("\\", "/")
        assert storage.exists(stored)
        with storage.open(stored) as f:
            assert f.read() == name.encode()
    names[0] = names[0].replace("\\", "/")
    # Django's save() refuses "..", open() for writing normalises inside the prefix
    with pytest.raises(SuspiciousFileOperation):
        storage.save("a/./b/../c.txt", ContentFile(b"x"))
    with storage.open("a/./b/../c.txt", "wb") as f:
        f.write(b"normalised")
    with storage.open("a/c.txt") as f:
        assert f.read() == b"normalised"
    dirs, files = storage.listdir("")
    assert set(files) == {names[1], names[2], names[4], names[5]}
    assert set(dirs) == {"back", "ünïcödé", "a"}
    assert storage.listdir("ünïcödé") == ([], ["名前.txt"])
    with pytest.raises(ValueError, match="1024 bytes"):
        storage.save("e" * (room + 1), ContentFile(b"x"))


# ---- header values from every setting and callable ------------------------------------

OBJECT_HEADERS = {"content_type": "Content-Type", "content_encoding": "Content-Encoding",
                  "cache_control": "Cache-Control", "content_disposition": "Content-Disposition",
                  "content_language": "Content-Language", "acl": "x-amz-acl",
                  "storage_class": "x-amz-storage-class",
                  "server_side_encryption": "x-amz-server-side-encryption",
                  "sse_kms_key_id": "x-amz-server-side-encryption-aws-kms-key-id"}
CONTROLS = [chr(i) for i in range(32)] + ["\x7f"]


def test_object_header_values_of_every_size_and_control_character() -> None:
    with Fake(lambda m, p: Reply(200, COPY_RESULT, {"ETag": '"e"'})) as fake:
        c = fake_client(fake)
        for kw, header in OBJECT_HEADERS.items():
            value = "v" * 8192                         # the most a value may hold: sent
            c.put_object("k", b"x", **{kw: value})
            assert fake.requests[-1][2][header] == value
            sent = len(fake.requests)
            for bad in ("v" * 8193, "v" * (1 << 20), *(f"a{ch}b" for ch in CONTROLS)):
                for call in (lambda: c.put_object("k", b"x", **{kw: bad}),
                             lambda: c.writer("k", **{kw: bad}).close(),
                             lambda: c.copy_object("a", "b", metadata_directive="REPLACE",
                                                   **{kw: bad})):
                    with pytest.raises(ValueError, match=header):
                        call()
            assert len(fake.requests) == sent          # nothing went out
        for meta in ({"m": "v" * (1 << 20)}, {"m" * (1 << 20): "v"}, {"m": "a\r\nb"}):
            with pytest.raises(ValueError):
                c.put_object("k", b"x", metadata=meta)
        assert len(fake.requests) == sent


MIB = "a" * (1 << 20)


@pytest.mark.parametrize("kwargs, names", [
    ({"bucket": "b" * 256}, "bucket"),
    ({"bucket": MIB}, "bucket"),
    ({"endpoint_url": "http://" + "h" * 2048}, "endpoint_url"),
    ({"endpoint_url": "http://" + MIB}, "endpoint_url"),
    ({"public_endpoint_url": "http://" + MIB}, "public_endpoint_url"),
    ({"proxy": "http://" + MIB + ":8080"}, "proxy"),
    ({"user_agent": "u" * 257}, "user_agent"),
    ({"user_agent": MIB}, "user_agent"),
    ({"session_token": MIB}, "session_token"),
    ({"access_key": MIB}, "access_key"),
    ({"region": MIB}, "region"),
    ({"user_agent": "agent\r\nX-Injected: 1"}, "user_agent"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_client_settings_too_long_or_with_controls_are_value_errors(
        kwargs: dict[str, Any], names: str) -> None:
    # a 1 MiB bucket name went into the request line and failed in libcurl as
    # "Out of memory"; every such value is refused when the Client is made
    args: dict[str, Any] = {"bucket": "b", "endpoint_url": "http://127.0.0.1:9",
                            "access_key": "a", "secret_key": "b"}
    args.update(kwargs)
    if "session_token" in kwargs:
        args.update(access_key="a", secret_key="b")
    with pytest.raises(ValueError, match=names) as info:
        _s3.Client(args.pop("bucket"), **args)
    assert len(str(info.value)) < 300                  # the value is not echoed


def test_the_longest_bucket_name_s3_ever_allowed_still_works() -> None:
    with Fake(lambda m, p: Reply(200, b"ok")) as fake:
        c = _s3.Client("b" * 255, endpoint_url=fake.endpoint, access_key="a", secret_key="b")
        assert c.get_object("k")[0] == b"ok"
        assert fake.requests[0][1] == "/" + "b" * 255 + "/k"


@pytest.mark.parametrize("setting, value", [
    ("aws_s3_bucket_name", "b" * 256),
    ("aws_s3_bucket_name", MIB),
    ("aws_s3_endpoint_url", "http://" + MIB),
    ("aws_s3_public_endpoint_url", "http://" + MIB),
    ("aws_s3_proxy", "http://" + MIB + ":8080"),
    ("aws_session_token", MIB),
    ("aws_access_key_id", MIB),
    ("aws_region", MIB),
    ("aws_s3_content_disposition", MIB),
    ("aws_s3_content_language", "a\x00b"),
    ("aws_s3_kms_encryption_key_id", MIB),
    ("aws_s3_encrypt_key", "AES256\r\nX: 1"),
    ("aws_s3_metadata", {"m": MIB}),
    ("aws_s3_metadata", {"m": "é"}),
    ("aws_s3_key_prefix", "a\x01b"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "")
def test_storage_settings_too_long_or_with_controls_name_the_setting(
        setting: str, value: Any) -> None:
    kwargs: dict[str, Any] = {"aws_s3_bucket_name": "b", "aws_s3_endpoint_url": "http://127.0.0.1:9",
                              "aws_access_key_id": "a", "aws_secret_access_key": "b"}
    kwargs[setting] = value
    with pytest.raises(ImproperlyConfigured, match=setting.upper()):
        S3Storage(**kwargs)


@pytest.mark.parametrize("setting, key", [
    ("aws_s3_content_disposition", None),
    ("aws_s3_content_language", None),
    ("aws_s3_metadata", "m"),
])
@pytest.mark.parametrize("returned", [MIB, "a" * 8193, "a\nb", "é", 42],
                         ids=["1MiB", "8193", "newline", "non-ascii", "int"])
def test_callables_returning_bad_header_values_fail_before_any_request(
        setting: str, key: str | None, returned: Any) -> None:
    def produce(name: str) -> Any:
        return returned
    value: Any = {key: produce} if key else produce
    with Fake(lambda m, p: Reply(200, b"", {"ETag": '"e"'})) as fake:
        storage = fake_storage(fake, aws_s3_file_overwrite=True, **{setting: value})
        if setting == "aws_s3_metadata" and isinstance(returned, int):
            storage.save("f.txt", ContentFile(b"x"))      # str() of it: a valid value
            assert fake.requests[-1][2]["x-amz-meta-m"] == "42"
            return
        for call in (lambda: storage.save("f.txt", ContentFile(b"x")),
                     lambda: storage.open("f.txt", "wb")):
            with pytest.raises(ValueError, match=setting.upper()):
                call()
        assert fake.requests == []


@pytest.mark.parametrize("sent", ["x" * 300, "text/plain\x00", "text/plain\r\nX-Evil: 1",
                                  "tëxt/plain", "", 5],
                         ids=["300 chars", "NUL", "CRLF", "non-ASCII", "empty", "int"])
def test_a_hostile_uploaded_content_type_falls_back_to_the_guess(sent: Any) -> None:
    with Fake(lambda m, p: Reply(200, b"", {"ETag": '"e"'})) as fake:
        storage = fake_storage(fake, aws_s3_file_overwrite=True, aws_s3_gzip=False)
        upload = ContentFile(b"hello")
        upload.content_type = sent  # type: ignore[attr-defined]
        storage.save("page.html", upload)
        good = ContentFile(b"hello")
        good.content_type = "text/plain; charset=utf-8"  # type: ignore[attr-defined]
        storage.save("kept.html", good)
    assert fake.requests[0][2]["Content-Type"] == "text/html"
    assert fake.requests[1][2]["Content-Type"] == "text/plain; charset=utf-8"
