"""Local servers for the tests, all on 127.0.0.1, all stopped by their fixtures.

- MotoServer: `python -m moto.server` in a separate process on a free port.
- LocalServer: a threaded HTTP server on a free port of 127.0.0.1 (daemon
  threads, optional TLS) that stops with its `with` block: the base of the rest.
- ScriptedServer: a LocalServer whose replies a test scripts; it records every
  request. cred_servers.py and the region tests build their stand-ins on it.
- FakeS3: a small HTTP/1.1 keep-alive server whose replies a test scripts, for
  what moto cannot do: keep-alive, slow replies, 5xx then success, hostile XML.
- ScriptedS3: the base of a test's own small S3 (its state, a lock, `answer(seen)`)
  on a ScriptedServer; test_writer's MiniS3 and test_overwrite's RacyS3 build on it.

Helpers that are not servers: ticks_meanwhile (did a call release the GIL?),
in_forked_child (run a function in a fork, get its exit status) and bench_module
(bench/NAME.py as a module: the benchmark's proxy and workers).
"""
from __future__ import annotations

import http.server
import importlib.util
import json
import os
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Callable, Iterable, Iterator
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self: Python 3.11+


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


def self_signed_cert(d: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 made by openssl in `d`: (cert.pem, key.pem)."""
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class MotoServer:
    """moto[server] as a real HTTP S3 server in its own process."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        full_env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                         "AWS_DEFAULT_REGION": "us-east-1"})
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port, proc=self.proc)
        except Exception:
            self.stop()
            raise

    def create_bucket(self, name: str) -> None:
        req = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        urllib.request.urlopen(req, timeout=10).read()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_auth_moto() -> tuple[MotoServer, str, str]:
    """moto that checks signatures: the first 4 actions create an IAM user with
    an s3:* policy and its access key; every request after that is verified."""
    import boto3  # moto[server] depends on it

    server = MotoServer({"INITIAL_NO_AUTH_ACTION_COUNT": "4"})
    iam = boto3.client("iam", endpoint_url=server.endpoint, region_name="us-east-1",
                       aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam.create_user(UserName="storage")
    policy = iam.create_policy(PolicyName="storage-s3", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }))
    iam.attach_user_policy(UserName="storage", PolicyArn=policy["Policy"]["Arn"])
    key = iam.create_access_key(UserName="storage")["AccessKey"]
    return server, key["AccessKeyId"], key["SecretAccessKey"]


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) running `handler` in daemon
    threads, TLS-capable; `stop()` or the end of its `with` block stops it."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler],
                 tls: tuple[str, str] | None = None, alpn: list[str] | None = None,
                 poll_interval: float = 0.5) -> None:
        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), handler)
        scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            if alpn:
                ctx.set_alpn_protocols(alpn)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.port = self.server.server_address[1]
        self.endpoint = f"{scheme}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(poll_interval,),
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ScriptedServer(LocalServer):
    """An HTTP/1.1 keep-alive server that reads each request's body, asks
    `answer(handler, body)` for a Reply (the hook that records the request and runs
    the test's script) and writes that Reply, after its delay. By default the
    script is a function of the whole request, a Seen, and `seen` keeps them all;
    a subclass that overrides `answer` records and calls `script` its own way."""

    def __init__(self, script: Callable[..., Reply], *, timeout: float = 30,
                 methods: tuple[str, ...] = ("GET", "PUT", "HEAD", "DELETE", "POST"),
                 tls: tuple[str, str] | None = None, alpn: list[str] | None = None,
                 poll_interval: float = 0.5) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                reply = owner.answer(self, self.rfile.read(length) if length else b"")
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            def log_message(self, *args: object) -> None:
                pass

        Handler.timeout = timeout  # an idle keep-alive connection closes by itself
        for method in methods:
            setattr(Handler, f"do_{method}", Handler._serve)
        super().__init__(Handler, tls, alpn, poll_interval)

    def answer(self, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> Reply:
        seen = Seen(handler.command, handler.path, dict(handler.headers), body)
        with self.lock:
            self.seen.append(seen)
        return self.script(seen)


class FakeS3(ScriptedServer):
    """An HTTP/1.1 server with keep-alive whose replies come from `script`: a
    function of (method, path) to a Reply. It records what it saw."""

    def __init__(self, script: Callable[[str, str], Reply], tls: tuple[str, str] | None = None,
                 alpn: list[str] | None = None):
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.connections: set[int] = set()
        self.versions: list[str] = []
        super().__init__(script, tls=tls, alpn=alpn)

    def answer(self, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> Reply:
        with self.lock:
            self.requests.append((handler.command, handler.path, dict(handler.headers)))
            self.versions.append(handler.request_version)
            self.connections.add(id(handler.connection))
        return self.script(handler.command, handler.path)


class ScriptedS3:
    """The base of a test's own S3 on a ScriptedServer: a subclass sets up its state,
    then calls this __init__, and answers each request in `answer(seen)` (under
    `self.lock` where it touches its state). It has the server's endpoint and the
    requests it saw (`seen`); the end of its `with` block stops the server."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.server = ScriptedServer(self.answer)
        self.endpoint = self.server.endpoint

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def seen(self) -> list[Seen]:
        return self.server.seen

    def answer(self, seen: Seen) -> Reply:
        raise NotImplementedError


def listing_reply(keys: Iterable[str], query: dict[str, list[str]]) -> Reply:
    """A ListObjectsV2 reply over `keys` as S3 gives it: in UTF-8 byte order, with
    the query's prefix, delimiter and max-keys (a token, but no continuation)."""
    prefix = query.get("prefix", [""])[0]
    delimiter = query.get("delimiter", [""])[0]
    room = int(query.get("max-keys", ["1000"])[0])
    entries: list[tuple[bool, str]] = []  # (a common prefix, the name)
    for key in sorted(k for k in keys if k.startswith(prefix)):
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        entry = (False, key) if cut < 0 else (True, key[:cut + len(delimiter)])
        if not entries or entries[-1] != entry:
            entries.append(entry)
    shown, truncated = entries[:room], len(entries) > room
    body = "".join(
        f"<CommonPrefixes><Prefix>{escape(name)}</Prefix></CommonPrefixes>" if common
        else f"<Contents><Key>{escape(name)}</Key><Size>1</Size></Contents>"
        for common, name in shown)
    token = f"<NextContinuationToken>t{len(shown)}</NextContinuationToken>" if truncated else ""
    return Reply(200, (f"<ListBucketResult><IsTruncated>{str(truncated).lower()}</IsTruncated>"
                       f"{token}{body}</ListBucketResult>").encode())


@contextmanager
def ticks_meanwhile() -> Iterator[Callable[[], int]]:
    """A Python thread that counts while the block runs; the callable gives how far
    it got since the block began. A call that held the GIL for a second leaves it
    near 0; one that released it, in the millions."""
    count = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal count
        while not stop.is_set():
            count += 1

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    time.sleep(0.05)
    start = count
    try:
        yield lambda: count - start
    finally:
        stop.set()
        spinner.join()


def in_forked_child(child: Callable[[], int]) -> int:
    """Forks (silencing Python's warning about a fork with threads running), runs
    `child` in the child and ends it with what `child` returns as its exit status
    (1 where it raised); the parent waits for the child and gets that status."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = child()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WEXITSTATUS(status)


def bench_module(name: str) -> ModuleType:
    """bench/NAME.py as the module bench_NAME (bench/ is no package, nor on the path),
    loaded once: every test then shares its classes."""
    key = f"bench_{name}"
    if key not in sys.modules:
        path = Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(key, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[key]
            raise
    return sys.modules[key]
