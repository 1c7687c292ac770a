"""A counting TCP proxy on 127.0.0.1, for the benchmarks.

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
"""
from __future__ import annotations

import argparse
import asyncio
import threading
import time
from typing import Self

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

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        with self._lock:
            full = self._open >= self.max_connections
            if not full:
                self._open += 1
                self.connections += 1
        if full:
            client_w.close()
            return
        self._tasks.add(task)
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
            self._tasks.discard(task)

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


def main() -> None:
    ap = argparse.ArgumentParser(description="A counting, optionally delaying, TCP proxy "
                                 "on 127.0.0.1.")
    ap.add_argument("--target", required=True, help="127.0.0.1:PORT to forward to")
    ap.add_argument("--port", type=int, default=0, help="the port to listen on (0: a free one)")
    ap.add_argument("--delay-up", type=float, default=0.0, help="seconds added client->server")
    ap.add_argument("--delay-down", type=float, default=0.0, help="seconds added server->client")
    ap.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: never)")
    args = ap.parse_args()
    host, _, port = args.target.rpartition(":")
    with CountingProxy((host, int(port)), port=args.port, delay_up=args.delay_up,
                       delay_down=args.delay_down) as proxy:
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
