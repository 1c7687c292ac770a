"""A counting TCP proxy on 127.0.0.1, for the benchmarks, and a fault-injecting one,
for the tests (FaultProxy, below).

    with CountingProxy(("127.0.0.1", 8000), delay_up=0.0, delay_down=0.0) as proxy:
        ... point a client at proxy.endpoint ...
        proxy.reset()            # the counters to zero
        ... one operation ...
        proxy.bytes_up, proxy.bytes_down

It listens on a free port of 127.0.0.1 and forwards every connection to the target,
which must be on 127.0.0.1 too. It counts the bytes in each direction: bytes_up from
the client to the server, bytes_down back. delay_up / delay_down add a latency (in
seconds) to each direction: a chunk read at time t is written at t + delay, while
the next chunks keep arriving, so the proxy adds latency without cutting throughput
(the later latency benchmark uses this).

Bounded: at most `max_connections` connections at once (more are closed at once),
at most `queue_chunks` chunks of at most 256 KiB in flight per direction (the reader
waits for the writer beyond that). The event loop runs in a daemon thread and stops
with the `with` block or stop(). From the command line it serves until interrupted
or for --seconds:

    python bench/proxy.py --target 127.0.0.1:PORT [--port P] [--delay-up S] [--delay-down S]
        [--fault FAULT [--method M] [--query NAME] [--times K]]

FaultProxy is the same proxy reading HTTP/1.1: for the first K requests that match
a Rule (a method and a predicate on the path, query and headers) it resets the
connection, answers an S3 error itself, stalls, or cuts the body short (FAULTS).

    rule = Rule("reset-mid-response", "PUT", lambda path, query, headers: "partNumber" in query)
    with FaultProxy(("127.0.0.1", 8000), [rule]) as proxy:
        ... point a client at proxy.endpoint ...
        rule.seen, rule.faulted     # requests that matched, and those given the fault
"""
from __future__ import annotations

import argparse
import asyncio
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self: Python 3.11+
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape as xml_escape

LOOPBACK = "127.0.0.1"
CHUNK = 256 * 1024


class CountingProxy:
    def __init__(self, target: tuple[str, int], *, port: int = 0, delay_up: float = 0.0,
                 delay_down: float = 0.0, max_connections: int = 64,
                 queue_chunks: int = 64) -> None:
        host, target_port = target
        if host not in (LOOPBACK, "localhost"):
            raise ValueError(f"the proxy forwards to {LOOPBACK} only, not {host!r}")
        if delay_up < 0 or delay_down < 0:
            raise ValueError("a delay is a number of seconds >= 0")
        self.target = (LOOPBACK, int(target_port))
        self.delay_up = float(delay_up)
        self.delay_down = float(delay_down)
        self.max_connections = max_connections
        self.queue_chunks = queue_chunks
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0          # accepted since the last reset()
        self._open = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, args=(port,), daemon=True,
                                        name="counting-proxy")
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        if self._server is None:
            raise RuntimeError("the proxy did not start within 10 s")
        self.port: int = self._server.sockets[0].getsockname()[1]
        self.endpoint = f"http://{LOOPBACK}:{self.port}"

    # ---- public ---------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.bytes_up = self.bytes_down = self.connections = 0

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"bytes_up": self.bytes_up, "bytes_down": self.bytes_down,
                    "connections": self.connections}

    def stop(self) -> None:
        if self._stopped.is_set() or not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._shutdown)
        self._thread.join(10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the loop thread --------------------------------------------------------

    def _run(self, port: int) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, LOOPBACK, port, backlog=self.max_connections))
        except BaseException as e:  # noqa: BLE001 - handed to the starting thread
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()
            self._stopped.set()

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        self._loop.call_later(0.05, self._loop.stop)

    def _admit(self, client_w: asyncio.StreamWriter) -> bool:
        """Counts a new client connection and tracks its task; False (the client
        closed) when max_connections are open."""
        task = asyncio.current_task()
        assert task is not None
        with self._lock:
            full = self._open >= self.max_connections
            if not full:
                self._open += 1
                self.connections += 1
        if full:
            client_w.close()
            return False
        self._tasks.add(task)
        return True

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if not self._admit(client_w):
            return
        server_w: asyncio.StreamWriter | None = None
        try:
            server_r, server_w = await asyncio.wait_for(
                asyncio.open_connection(*self.target), timeout=10)
            up = asyncio.ensure_future(self._pipe(client_r, server_w, "up", self.delay_up))
            down = asyncio.ensure_future(self._pipe(server_r, client_w, "down", self.delay_down))
            try:
                await asyncio.gather(up, down)
            finally:
                up.cancel()
                down.cancel()
        except (OSError, asyncio.TimeoutError, asyncio.CancelledError):
            pass
        finally:
            for w in (client_w, server_w):
                if w is not None:
                    w.close()
            with self._lock:
                self._open -= 1
            self._tasks.discard(asyncio.current_task())

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, direction: str,
                    delay: float) -> None:
        """Copies r to w, counting; with a delay, a bounded queue of (due, chunk)
        between a reader and a writer keeps the bytes flowing meanwhile."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(self.queue_chunks)

        async def writer() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                w.write(chunk)
                await w.drain()
            if w.can_write_eof():
                w.write_eof()

        out = asyncio.ensure_future(writer())
        try:
            while True:
                chunk = await r.read(CHUNK)
                with self._lock:
                    if direction == "up":
                        self.bytes_up += len(chunk)
                    else:
                        self.bytes_down += len(chunk)
                if delay:
                    await queue.put((time.monotonic() + delay, chunk))
                elif chunk:
                    w.write(chunk)
                    await w.drain()
                if not chunk:
                    break
            if not delay and w.can_write_eof():
                w.write_eof()
            if delay:
                await out
        except OSError:
            pass
        finally:
            out.cancel()


# ---- faults ---------------------------------------------------------------------------

#: What FaultProxy can do to a request that matches a rule.
RESETS = ("reset-before-request", "reset-mid-request", "reset-after-request",
          "reset-mid-response", "reset-after-response")
ANSWERS = {   # answered by the proxy itself, the request consumed, never forwarded
    "500-internal-error": (500, "Internal Server Error", "InternalError",
                           "We encountered an internal error. Please try again."),
    "503-slow-down": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "400-request-timeout": (400, "Bad Request", "RequestTimeout",
                            "Your socket connection to the server was not read from or "
                            "written to within the timeout period."),
    "429-too-many-requests": (429, "Too Many Requests", "TooManyRequests",
                              "Please reduce your request rate."),
    "200-error-document": (200, "OK", "InternalError",
                           "We encountered an internal error. Please try again."),
}
STALLS = ("stall-before-status", "stall-mid-response", "stall-after-request")
FAULTS = RESETS + tuple(ANSWERS) + STALLS + ("short-body",)

HEAD_MAX = 64 * 1024          # a request or response head longer than this ends the connection
CHUNKED_MAX = 64 * 1024 * 1024


@dataclass
class Rule:
    """`fault` for the first `times` requests whose method is `method` ("*": any) and
    for which `match(path, query, headers)` is true (query: the parsed query string,
    headers: lower-case names). `seen` counts the matching requests, `faulted` those
    the fault was applied to."""

    fault: str
    method: str = "*"
    match: Callable[[str, dict[str, list[str]], dict[str, str]], bool] = \
        field(default=lambda path, query, headers: True)
    times: int = 1
    seen: int = 0
    faulted: int = 0

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}: one of {', '.join(FAULTS)}")


def error_document(code: str, message: str, resource: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{}</Code><Message>{}</Message>'
            '<Resource>{}</Resource><RequestId>FAULTPROXY</RequestId></Error>').format(
                code, message, xml_escape(resource)).encode()


@dataclass
class _Head:
    first: bytes                      # the request or status line
    headers: list[tuple[str, str]]    # as sent
    raw: bytes

    def get(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


def _parse_head(raw: bytes) -> _Head:
    lines = raw[:-4].decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError("a header line without ':'")
        headers.append((name.strip(), value.strip()))
    return _Head(lines[0].encode("latin-1"), headers, raw)


def _body_length(head: _Head) -> int:
    value = head.get("content-length")
    if value is None:
        return 0
    n = int(value)
    if n < 0:
        raise ValueError("a negative Content-Length")
    return n


def _rst(w: asyncio.StreamWriter) -> None:
    """Closes with an RST (SO_LINGER 0) rather than a FIN."""
    sock = w.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    w.transport.abort()


class FaultProxy(CountingProxy):
    """The counting proxy that understands HTTP/1.1 (heads, Content-Length and chunked
    bodies, keep-alive, Expect: 100-continue) and applies `rules` to the requests
    that match them: resets (RST) before, in the middle of or after a request or its
    response; answers of its own (500 InternalError, 503 SlowDown, 400
    RequestTimeout, 429, a 200 with an error document: the request is read, never
    forwarded); stalls (before the status line, in the middle of the response, after
    reading the request without forwarding it: nothing more is sent until the client
    goes, or `idle_timeout`); a short body (fewer bytes than its Content-Length, then
    a close). "reset-after-response" resets the connection when the client sends
    its next request on it (a reset at once could destroy the reply unread in the
    client's socket). Requests no rule takes are forwarded as they are. Each
    connection waits at most `idle_timeout` for a byte; delay_up and delay_down
    do not apply."""

    def __init__(self, target: tuple[str, int], rules: list[Rule] | None = None, *,
                 idle_timeout: float = 30.0, **kwargs: Any) -> None:
        self.rules = list(rules or [])
        self.idle_timeout = idle_timeout
        self.faults_applied: list[tuple[str, str, str]] = []   # (fault, method, target)
        super().__init__(target, **kwargs)

    def _fault_for(self, method: str, target: str, head: _Head) -> str | None:
        url = urlsplit(target)
        query = parse_qs(url.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in head.headers}
        with self._lock:
            for rule in self.rules:
                if rule.method not in ("*", method) or not rule.match(url.path, query, headers):
                    continue
                rule.seen += 1
                if rule.seen <= rule.times:
                    rule.faulted += 1
                    self.faults_applied.append((rule.fault, method, target))
                    return rule.fault
                return None
        return None

    def _count(self, direction: str, n: int) -> None:
        with self._lock:
            if direction == "up":
                self.bytes_up += n
            else:
                self.bytes_down += n

    async def _read_head(self, r: asyncio.StreamReader, direction: str) -> _Head | None:
        try:
            raw = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), self.idle_timeout)
        except asyncio.IncompleteReadError as e:
            if e.partial:
                raise ConnectionError("the connection ended inside a head") from None
            return None
        except asyncio.LimitOverrunError:
            raise ConnectionError("a head over 64 KiB") from None
        self._count(direction, len(raw))
        return _parse_head(raw)

    async def _copy(self, r: asyncio.StreamReader, w: asyncio.StreamWriter | None, n: int,
                    direction: str) -> bytes:
        """Copies n bytes from r to w (None: keeps them); returns what it kept."""
        kept = bytearray()
        while n > 0:
            chunk = await asyncio.wait_for(r.read(min(n, CHUNK)), self.idle_timeout)
            if not chunk:
                raise ConnectionError("the connection ended inside a body")
            n -= len(chunk)
            self._count(direction, len(chunk))
            if w is None:
                kept += chunk
            else:
                w.write(chunk)
                await w.drain()
        return bytes(kept)

    async def _read_chunked(self, r: asyncio.StreamReader) -> bytes:
        body = bytearray()
        while True:
            line = await asyncio.wait_for(r.readuntil(b"\r\n"), self.idle_timeout)
            size = int(line.split(b";")[0].strip(), 16)
            self._count("down", len(line))
            if size == 0:
                while (await asyncio.wait_for(r.readuntil(b"\r\n"), self.idle_timeout)) != b"\r\n":
                    pass      # trailers
                return bytes(body)
            if len(body) + size > CHUNKED_MAX:
                raise ConnectionError("a chunked body over 64 MiB")
            body += await self._copy(r, None, size, "down")
            await asyncio.wait_for(r.readexactly(2), self.idle_timeout)

    async def _stall(self, client_r: asyncio.StreamReader) -> None:
        """Sends nothing more: waits for the client to go (or idle_timeout)."""
        try:
            while await asyncio.wait_for(client_r.read(CHUNK), self.idle_timeout):
                pass
        except asyncio.TimeoutError:
            pass

    @staticmethod
    async def _rst_after(w: asyncio.StreamWriter, data: bytes = b"") -> None:
        """Writes data, lets it reach the peer, then resets."""
        if data:
            w.write(data)
            await w.drain()
            await asyncio.sleep(0.05)
        _rst(w)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if not self.rules:
            await super()._serve(client_r, client_w)
            return
        if not self._admit(client_w):
            return
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                keep, server = await self._exchange(client_r, client_w, server)
                if not keep:
                    break
        except (OSError, ValueError, asyncio.TimeoutError, asyncio.CancelledError,
                asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            for w in (client_w, server[1] if server else None):
                if w is not None:
                    w.close()
            with self._lock:
                self._open -= 1
            self._tasks.discard(asyncio.current_task())

    async def _exchange(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                        server: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None
                        ) -> tuple[bool, tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]:
        """One request and its response; (keep the connection?, the server connection)."""
        head = await self._read_head(client_r, "up")
        if head is None:
            return False, server
        method, target, _ = head.first.decode("latin-1").split(" ", 2)
        if "chunked" in (head.get("transfer-encoding") or "").lower():
            raise ValueError("chunked requests are not supported")
        length = _body_length(head)
        expect = (head.get("expect") or "").lower() == "100-continue"
        fault = self._fault_for(method, target, head)

        if fault == "reset-before-request":
            _rst(client_w)
            return False, server
        if fault in ANSWERS or fault == "stall-after-request":
            if expect:
                client_w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await self._copy(client_r, None, length, "up")
            if fault == "stall-after-request":
                await self._stall(client_r)
                return False, server
            status, reason, code, message = ANSWERS[fault]
            body = error_document(code, message, urlsplit(target).path)
            client_w.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
                           "x-amz-request-id: FAULTPROXY\r\n"
                           f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await client_w.drain()
            return True, server

        if server is None or server[1].is_closing():
            if server is not None:
                server[1].close()
            server = await asyncio.wait_for(asyncio.open_connection(*self.target),
                                            self.idle_timeout)
        server_r, server_w = server
        server_w.write(head.raw)
        response: _Head | None = None
        sent_body = True
        if expect:
            response = await self._read_head(server_r, "down")
            if response is None:
                return False, server
            if response.first.split(b" ")[1:2] == [b"100"]:
                client_w.write(response.raw)
                response = None
        if fault == "reset-mid-request":
            half = (len(head.raw) + length) // 2
            if half < len(head.raw) or response is not None:
                server_w.transport.abort()
                _rst(client_w)
                return False, None
            await self._copy(client_r, server_w, half - len(head.raw), "up")
            await asyncio.sleep(0.05)
            server_w.transport.abort()
            _rst(client_w)
            return False, None
        if response is None:
            await self._copy(client_r, server_w, length, "up")
            response = await self._read_head(server_r, "down")
            while response is not None and response.first.split(b" ")[1:2] == [b"100"]:
                response = await self._read_head(server_r, "down")
            if response is None:
                return False, server
        else:
            sent_body = False   # a final answer before the body: the body never comes
        status = int(response.first.split(b" ")[1])
        if fault == "reset-after-request":
            server_w.transport.abort()
            _rst(client_w)
            return False, None

        # the response body
        te = (response.get("transfer-encoding") or "").lower()
        head_out = response.raw
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "chunked" in te:
            body = await self._read_chunked(server_r)
            # re-framed with a Content-Length, which the faults below work on
            lines = [f"{k}: {v}" for k, v in response.headers if k.lower() != "transfer-encoding"]
            lines.append(f"Content-Length: {len(body)}")
            head_out = (response.first.decode("latin-1") + "\r\n" + "\r\n".join(lines) +
                        "\r\n\r\n").encode("latin-1")
        else:
            body = b""
            n = _body_length(response)
            if fault is None or fault == "reset-after-response":
                client_w.write(head_out)
                await self._copy(server_r, client_w, n, "down")
                head_out = b""
            else:
                body = await self._copy(server_r, None, n, "down")
        keep = sent_body and "close" not in (response.get("connection") or "").lower()

        if fault == "stall-before-status":
            await self._stall(client_r)
            return False, server
        if fault in ("reset-mid-response", "stall-mid-response"):
            whole = head_out + body
            cut = whole[:max(1, len(whole) // 2)]
            if fault == "reset-mid-response":
                await self._rst_after(client_w, cut)
                return False, server
            client_w.write(cut)
            await client_w.drain()
            await self._stall(client_r)
            return False, server
        if fault == "short-body":
            if body:
                client_w.write(head_out + body[:len(body) // 2])
            elif method != "HEAD" and status not in (204, 304):
                # no body to cut: one is announced that never comes
                lines = [f"{k}: {v}" for k, v in response.headers
                         if k.lower() not in ("content-length", "transfer-encoding")]
                lines.append("Content-Length: 16")
                client_w.write((response.first.decode("latin-1") + "\r\n" + "\r\n".join(lines)
                                + "\r\n\r\n").encode("latin-1"))
            else:
                client_w.write(head_out)   # a reply without a body cannot be short
            await client_w.drain()
            client_w.close()
            return False, server
        if head_out or body:
            client_w.write(head_out + body)
        await client_w.drain()
        if fault == "reset-after-response":
            # the kept-alive connection dies: the reset meets the client's next
            # request on it (a reset at once could destroy the reply unread)
            try:
                more = await asyncio.wait_for(client_r.read(1), self.idle_timeout)
            except asyncio.TimeoutError:
                more = b""
            if more:
                _rst(client_w)
            return False, server
        return keep, server


def main() -> None:
    ap = argparse.ArgumentParser(description="A counting, optionally delaying, TCP proxy "
                                 "on 127.0.0.1.")
    ap.add_argument("--target", required=True, help="127.0.0.1:PORT to forward to")
    ap.add_argument("--port", type=int, default=0, help="the port to listen on (0: a free one)")
    ap.add_argument("--delay-up", type=float, default=0.0, help="seconds added client->server")
    ap.add_argument("--delay-down", type=float, default=0.0, help="seconds added server->client")
    ap.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: never)")
    ap.add_argument("--fault", choices=FAULTS, help="apply this fault to matching requests")
    ap.add_argument("--method", default="*", help="the method the fault's requests have")
    ap.add_argument("--query", help="a query parameter the fault's requests have")
    ap.add_argument("--times", type=int, default=1, help="the first this many matching requests")
    args = ap.parse_args()
    host, _, port = args.target.rpartition(":")
    kwargs: dict[str, Any] = dict(port=args.port, delay_up=args.delay_up,
                                  delay_down=args.delay_down)
    proxy: CountingProxy
    if args.fault:
        rule = Rule(args.fault, args.method.upper(),
                    lambda path, query, headers: args.query is None or args.query in query,
                    args.times)
        proxy = FaultProxy((host, int(port)), [rule], **kwargs)
    else:
        proxy = CountingProxy((host, int(port)), **kwargs)
    with proxy:
        print(f"PROXY_ENDPOINT={proxy.endpoint}", flush=True)
        try:
            deadline = time.monotonic() + args.seconds if args.seconds else None
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        print(f"bytes_up={proxy.bytes_up} bytes_down={proxy.bytes_down}", flush=True)


if __name__ == "__main__":
    main()
