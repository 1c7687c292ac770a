"""Stand-ins for the services credentials come from, all on 127.0.0.1.

- CredServer: a threaded HTTP/1.1 server whose replies a test scripts, that
  records every request (method, path, headers, body) and counts them.
- ImdsServer: the instance metadata service (IMDSv2 session tokens).
- ContainerServer: the ECS / EKS Pod Identity credentials endpoint.
- StsServer: STS AssumeRole and AssumeRoleWithWebIdentity, recording the form.
- Blackhole: accepts connections, counts them, and never answers.

Each one stops by itself when its `with` block ends; handler threads are daemons.
"""
from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable
from urllib.parse import parse_qs

from servers import Reply, ScriptedServer, Seen


# the replies a credentials stand-in gives are FakeS3's
Answer = Reply


@dataclass
class Creds:
    """What a stand-in hands out; `lifetime` seconds from the moment it does."""
    access_key: str
    secret_key: str
    token: str
    lifetime: float = 3600.0

    def expiration(self) -> str:
        at = datetime.now(timezone.utc) + timedelta(seconds=self.lifetime)
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")


class CredServer(ScriptedServer):
    """A ScriptedServer whose script sees every request as a Seen; it answers
    CONNECT too (a stand-in proxy) and stops quickly."""

    def __init__(self, script: Callable[[Seen], Answer]) -> None:
        super().__init__(script, timeout=10, poll_interval=0.05,
                         methods=("GET", "PUT", "POST", "HEAD", "DELETE", "CONNECT"))

    def count(self, path_part: str = "") -> int:
        with self.lock:
            return sum(1 for s in self.seen if path_part in s.path)


class _Issuer:
    """Hands out `creds` in turn; the last one again once they run out."""

    def __init__(self, creds: list[Creds], delay: float | list[float] = 0.0) -> None:
        self.creds = creds
        self.delays = delay if isinstance(delay, list) else [delay]
        self.issued = 0
        self.lock = threading.Lock()

    def next(self) -> tuple[Creds, float]:
        with self.lock:
            i = self.issued
            self.issued += 1
        return (self.creds[min(i, len(self.creds) - 1)],
                self.delays[min(i, len(self.delays) - 1)])


def creds_json(c: Creds, token_name: str = "Token", **extra: object) -> bytes:
    doc: dict[str, object] = {"AccessKeyId": c.access_key, "SecretAccessKey": c.secret_key,
                              token_name: c.token, "Expiration": c.expiration()}
    doc.update(extra)
    return json.dumps(doc).encode()


class ContainerServer(CredServer):
    """GET <path>: the credentials, when the Authorization header is `auth`."""

    def __init__(self, creds: list[Creds], auth: str | None = None,
                 delay: float | list[float] = 0.0,
                 body: Callable[[Creds], bytes] | None = None) -> None:
        self.issuer = _Issuer(creds, delay)
        self.fetches = 0

        def script(seen: Seen) -> Answer:
            if auth is not None and seen.headers.get("Authorization") != auth:
                return Answer(401, b'{"message": "no"}')
            c, d = self.issuer.next()
            return Answer(200, body(c) if body else creds_json(c), delay=d)

        super().__init__(script)

    @property
    def issued(self) -> int:
        return self.issuer.issued


class ImdsServer(CredServer):
    """IMDSv2: PUT /latest/api/token, then the role list and the role's credentials,
    which are only given to a request carrying the session token."""

    TOKEN = "imds-session-token-123"

    def __init__(self, creds: list[Creds], role: str = "web-role",
                 delay: float | list[float] = 0.0, v1_only: bool = False) -> None:
        self.issuer = _Issuer(creds, delay)
        base = "/latest/meta-data/iam/security-credentials/"

        def script(seen: Seen) -> Answer:
            if seen.method == "PUT" and seen.path == "/latest/api/token":
                if v1_only:
                    return Answer(405)
                if "X-aws-ec2-metadata-token-ttl-seconds" not in seen.headers:
                    return Answer(400)
                return Answer(200, self.TOKEN.encode())
            if not v1_only and seen.headers.get("X-aws-ec2-metadata-token") != self.TOKEN:
                return Answer(401)
            if seen.method == "GET" and seen.path == base:
                return Answer(200, role.encode())
            if seen.method == "GET" and seen.path == base + role:
                c, d = self.issuer.next()
                return Answer(200, creds_json(c, Code="Success", Type="AWS-HMAC"), delay=d)
            return Answer(404)

        super().__init__(script)

    @property
    def issued(self) -> int:
        return self.issuer.issued


def sts_xml(action: str, c: Creds) -> bytes:
    return (f'<{action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f"<{action}Result><Credentials>"
            f"<AccessKeyId>{c.access_key}</AccessKeyId>"
            f"<SecretAccessKey>{c.secret_key}</SecretAccessKey>"
            f"<SessionToken>{c.token}</SessionToken>"
            f"<Expiration>{c.expiration()}</Expiration>"
            f"</Credentials></{action}Result>"
            f"<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>"
            f"</{action}Response>").encode()


class StsServer(CredServer):
    """POST / with a form: answers AssumeRole and AssumeRoleWithWebIdentity with
    the next credentials; `forms` keeps every form it was sent."""

    def __init__(self, creds: list[Creds], answer: Callable[[dict[str, str]], Answer] | None
                 = None) -> None:
        self.issuer = _Issuer(creds)
        self.forms: list[dict[str, str]] = []

        def script(seen: Seen) -> Answer:
            form = {k: v[0] for k, v in parse_qs(seen.body.decode()).items()}
            self.forms.append(form)
            if answer is not None:
                return answer(form)
            c, _ = self.issuer.next()
            return Answer(200, sts_xml(form.get("Action", "AssumeRole"), c),
                          {"Content-Type": "text/xml"})

        super().__init__(script)


class Blackhole:
    """Accepts TCP connections, counts them, never answers a byte. A subclass does
    something else with each connection it accepts by overriding `handle`."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        self.accepted.append(conn)   # held open, unanswered, until stop()

    def stop(self) -> None:
        self.running = False
        self.thread.join(timeout=5)
        for c in self.accepted:
            c.close()
        self.sock.close()

    def __enter__(self) -> "Blackhole":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
