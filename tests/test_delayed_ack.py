"""A server that writes a reply's headers and its body in two sends, with Nagle's
algorithm on (Ceph RGW does: DigitalOcean Spaces and many on-premises stores run
it), holds the body back until the client acknowledges the headers. A client
that delays that ACK (Linux: at least 40 ms on a kept-alive connection in
request-reply use) waits that long for every small GET. The client acknowledges at
once (TCP_QUICKACK when a response begins), on the pooled handles and on the
Reader's own connections alike.

The measure is the fastest of several GETs on one kept-alive connection: with the
delayed ACK every one of them takes 40 ms or more, without it about a millisecond;
the fastest is not moved by a loaded machine."""
from __future__ import annotations

import hashlib
import socket
import sys
import threading
import time
from typing import Callable, Iterator

import pytest

from django_s3_storage import _s3

BODY = b"x" * 1024
GETS = 8
DELAYED_ACK_MIN = 0.040

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="TCP_QUICKACK and the 40 ms delayed ACK are Linux's")


class TwoSendServer:
    """HTTP/1.1 keep-alive on 127.0.0.1: each reply's headers in one send, its body
    in the next, Nagle on (no TCP_NODELAY). Counts the connections it accepted."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.endpoint = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def __enter__(self) -> "TwoSendServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.sock.close()

    def serve(self) -> None:
        deadline = time.monotonic() + 60   # stops by itself
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.connections += 1
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn: socket.socket) -> None:
        etag = hashlib.md5(BODY).hexdigest()
        conn.settimeout(10)
        pending = b""
        with conn:
            while not self.stop.is_set():
                while b"\r\n\r\n" not in pending:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    pending += chunk
                head, pending = pending.split(b"\r\n\r\n", 1)
                ranged = b"\r\nrange:" in head.lower()
                status = b"206 Partial Content" if ranged else b"200 OK"
                extra = b"Content-Range: bytes 0-%d/%d\r\n" % (len(BODY) - 1, len(BODY)) \
                    if ranged else b""
                conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: %d\r\nETag: \"%s\"\r\n" % (len(BODY), etag.encode())
                             + extra + b"\r\n")
                conn.sendall(BODY)


@pytest.fixture
def server() -> Iterator[TwoSendServer]:
    with TwoSendServer() as s:
        yield s


def fastest(call: Callable[[], bytes]) -> float:
    assert call() == BODY   # opens the connection
    best = float("inf")
    for _ in range(GETS):
        start = time.perf_counter()
        assert call() == BODY
        best = min(best, time.perf_counter() - start)
    return best


def client(server: TwoSendServer) -> _s3.Client:
    return _s3.Client("bucket", endpoint_url=server.endpoint, access_key="AKIDEXAMPLE",
                      secret_key="secret", region="us-east-1", addressing_style="path",
                      read_timeout=5, connect_timeout=5)


def test_a_pooled_get_does_not_wait_for_the_delayed_ack(server: TwoSendServer) -> None:
    c = client(server)
    best = fastest(lambda: c.get_object("small")[0])
    assert best < DELAYED_ACK_MIN / 2, best
    assert server.connections == 1   # one kept-alive connection throughout


def test_a_reader_does_not_wait_for_the_delayed_ack(server: TwoSendServer) -> None:
    c = client(server)

    def read() -> bytes:
        r = c.reader("small")
        try:
            return r.read()
        finally:
            r.close()

    best = fastest(read)
    assert best < DELAYED_ACK_MIN / 2, best
    assert server.connections == 1
