"""No secret leaks through any failure path (issue 8, item 7).

Recognisable keys and tokens (the secret key, the session token, a web identity
token, a container authorization token, a credential_process's output, a proxy
password, and the credentials the stand-ins hand out) are set, and every failure
path is driven: a wrong signature on a server that checks it, a dead endpoint,
resets and timeouts, servers that echo every request header (the session token and
the signature) back in their error documents, credential services that do the same,
bad settings. For each failure the exception's text, repr, args and attributes, its
formatted traceback (chained exceptions included), Django's DEBUG error page (HTML
and text, with the frames' local variables) and every log record of every logger at
DEBUG are searched for each secret, whole and in halves. The reprs and strs of the
storage, its settings, the Client, a Reader and a Writer, and meta() results too.

Presigned URLs: a presigned URL is itself a bearer credential for one object and
one method until it expires. It never carries the secret key; signed with temporary
credentials it must carry the session token (X-Amz-Security-Token: S3 refuses it
otherwise, as with boto3), and nothing else secret.
"""
from __future__ import annotations

import base64
import hashlib
import html as html_lib
import json
import logging
import socket
import struct
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.test import override_settings
from django.views.debug import ExceptionReporter

from django_s3_storage import _s3
from django_s3_storage.storage import S3Storage

from cred_servers import Blackhole, Creds, CredServer, ImdsServer, StsServer, creds_json
from servers import Reply, ScriptedServer, Seen, free_port


def _mark(what: str) -> str:
    return f"{what}{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}"


ACCESS_KEY = "AKIDSECRETSTEST0001"      # not a secret: shown in logs by design
SECRET = _mark("SecretKeyQZ")
TOKEN = _mark("SessionTokenQZ")
WEB_TOKEN = _mark("WebIdentityQZ")
CONTAINER_TOKEN = _mark("ContainerAuthQZ")
PROCESS_SECRET = _mark("ProcessSecretQZ")
PROCESS_TOKEN = _mark("ProcessTokenQZ")
PROXY_PASSWORD = _mark("ProxyPassQZ")
STS_CREDS = Creds("ASIASTSSECRETS00001", _mark("StsSecretQZ"), _mark("StsTokenQZ"))
CTR_CREDS = Creds("ASIACTRSECRETS00001", _mark("CtrSecretQZ"), _mark("CtrTokenQZ"))
IMDS_CREDS = Creds("ASIAIMDSSECRETS0001", _mark("ImdsSecretQZ"), _mark("ImdsTokenQZ"))

SECRETS = [SECRET, TOKEN, WEB_TOKEN, CONTAINER_TOKEN, PROCESS_SECRET, PROCESS_TOKEN,
           PROXY_PASSWORD, base64.b64encode(f"user:{PROXY_PASSWORD}".encode()).decode()]
for _c in (STS_CREDS, CTR_CREDS, IMDS_CREDS):
    SECRETS += [_c.secret_key, _c.token]


def forms(secret: str) -> list[str]:
    """The secret and its halves, raw and as they would be quoted in a URL or HTML."""
    half = len(secret) // 2
    out = [secret, secret[:half], secret[half:]]
    return out + [quote(s, safe="") for s in out] + [html_lib.escape(s) for s in out]


class Watch:
    """Collects every text a failure produces; check() searches them for secrets."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []
        self.extra: list[str] = []      # secrets found at run time (signatures)
        self.failures = 0

    def add(self, label: str, text: Any) -> None:
        self.texts.append((label, str(text)))

    def exception(self, label: str, exc: BaseException) -> None:
        self.failures += 1
        self.add(f"{label}: str", exc)
        self.add(f"{label}: repr", repr(exc))
        self.add(f"{label}: args", repr(exc.args))
        self.add(f"{label}: attributes", repr(vars(exc)) + repr(
            [getattr(exc, a, None) for a in ("code", "message", "request_id", "key")]))
        self.add(f"{label}: traceback", "".join(traceback.format_exception(exc)))
        tb = exc.__traceback__
        # from the first frame outside this file (or the last one, which called the C
        # Client): the test's own frames hold the secrets it passes in, as a view's
        # would; the storage's frames must not
        while tb.tb_next is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next
        with override_settings(DEBUG=True):
            reporter = ExceptionReporter(None, type(exc), exc, tb)
            page = reporter.get_traceback_html()
            self.add(f"{label}: DEBUG page", page)
            self.add(f"{label}: DEBUG text", reporter.get_traceback_text())
        assert "Local vars" in page   # the page did print the frames' locals
        logging.getLogger("django.request").error("failed: %s", label, exc_info=exc)

    def fails(self, label: str, fn: Callable[[], Any],
              expect: type[BaseException] | tuple[type[BaseException], ...] = OSError
              ) -> BaseException:
        try:
            fn()
        except expect as e:
            self.exception(label, e)
            return e
        raise AssertionError(f"{label}: did not fail")

    def signatures_of(self, seen: list[Seen]) -> None:
        """Each request's signature is a secret too (it authorises that request)."""
        for s in seen:
            auth = header(s, "Authorization")
            if "Signature=" in auth:
                self.extra.append(auth.rsplit("Signature=", 1)[1])
            sig = parse_qs(urlsplit(s.path).query).get("X-Amz-Signature")
            if sig:
                self.extra.append(sig[0])

    def check(self, records: list[logging.LogRecord]) -> None:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        for r in records:
            self.add(f"log record {r.name}", formatter.format(r) + repr(r.args))
        leaks = []   # reported briefly: pytest's diff of a page-long `in` takes minutes
        for secret in SECRETS + self.extra:
            for form in forms(secret):
                for label, text in self.texts:
                    if form in text:
                        at = text.index(form)
                        leaks.append(f"{label} shows {secret[:16]}...: "
                                     f"{text[max(0, at - 80):at + 20]!r}")
        if leaks:
            pytest.fail(f"{len(leaks)} leaks, e.g.\n" + "\n".join(sorted(set(leaks))[:12]),
                        pytrace=False)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # django.template logs, at DEBUG, each missing variable of the DEBUG page this
        # test renders (with the whole context); the page itself is checked instead
        if not record.name.startswith("django.template"):
            self.records.append(record)


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Watch]:
    """A Watch, with every record of every logger captured at DEBUG meanwhile."""
    handler = _Capture()
    root = logging.getLogger()
    loggers = [root] + [logging.getLogger(n) for n in ("django_s3_storage", "django")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    root.addHandler(handler)
    w = Watch()
    try:
        yield w
    finally:
        root.removeHandler(handler)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    w.check(handler.records)


def storage_on(endpoint: str, **kwargs: Any) -> S3Storage:
    kwargs.setdefault("aws_access_key_id", ACCESS_KEY)
    kwargs.setdefault("aws_secret_access_key", SECRET)
    kwargs.setdefault("aws_session_token", TOKEN)
    kwargs.setdefault("aws_s3_bucket_name", "secrets-bucket")
    kwargs.setdefault("aws_s3_max_attempts", 1)
    kwargs.setdefault("aws_s3_connect_timeout", 2)
    kwargs.setdefault("aws_s3_read_timeout", 5)
    return S3Storage(aws_s3_endpoint_url=endpoint, **kwargs)


NAME = "dir/f.txt"
STORAGE_OPERATIONS: dict[str, Callable[[S3Storage], Any]] = {
    "save": lambda s: s.save(NAME, ContentFile(b"hello " * 10)),
    "save multipart": lambda s: s.save("dir/big.bin", ContentFile(b"x" * (5 * 1024 * 1024 + 1))),
    "open": lambda s: s.open(NAME).read(),
    "exists": lambda s: s.exists(NAME),
    "listdir": lambda s: s.listdir("dir"),
    "size": lambda s: s.size(NAME),
    "meta": lambda s: s.meta(NAME),
    "modified_time": lambda s: s.get_modified_time(NAME),
    "copy": lambda s: s.copy(NAME, "dir/g.txt"),
    "delete": lambda s: s.delete(NAME),
    "sync_meta": lambda s: s.sync_meta(),
}
QUICK = ("save", "open", "exists")   # for the slow faults (timeouts)


def drive(watch: Watch, storage: S3Storage, label: str, ops: Any = STORAGE_OPERATIONS) -> None:
    for name in ops:
        op = STORAGE_OPERATIONS[name]
        watch.fails(f"{label} {name}", lambda: op(storage))
    watch.add(f"{label} storage repr", repr(storage) + str(storage) + repr(storage.settings)
              + repr(storage._client) + repr(storage._kwargs))


# ---- a wrong signature, on a server that checks them -----------------------------

def test_a_wrong_signature(watch: Watch, signing_server: tuple[str, str, str, str]) -> None:
    endpoint, access, _, bucket = signing_server
    for token in (None, TOKEN):
        storage = storage_on(endpoint, aws_access_key_id=access, aws_s3_bucket_name=bucket,
                             aws_session_token=token or "")
        drive(watch, storage, f"wrong signature (token {bool(token)})")
        client = storage._client
        watch.fails("reader", lambda: client.reader("k").read())
        writer = client.writer("k")
        writer.write(b"data")
        watch.add("writer repr", repr(writer))
        watch.fails("writer close", writer.close)
        watch.add("writer repr closed", repr(writer))


# ---- a dead endpoint, resets, timeouts --------------------------------------------

def test_a_dead_endpoint(watch: Watch) -> None:
    drive(watch, storage_on(f"http://127.0.0.1:{free_port()}"), "dead endpoint")


def test_a_dead_proxy_with_a_password(watch: Watch) -> None:
    proxy = f"http://user:{PROXY_PASSWORD}@127.0.0.1:{free_port()}"
    storage = storage_on(f"http://127.0.0.1:{free_port()}", aws_s3_proxy=proxy)
    drive(watch, storage, "dead proxy", QUICK)
    assert storage.settings.AWS_S3_PROXY == proxy   # masked in reprs, intact


class _Resetter(Blackhole):
    """Reads a request's head, then resets the connection (SO_LINGER 0)."""

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(2)
        try:
            conn.recv(65536)
        except OSError:
            pass
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()


def test_resets_and_timeouts(watch: Watch) -> None:
    with _Resetter() as resetter:
        drive(watch, storage_on(resetter.endpoint, aws_s3_max_attempts=2), "reset")
    with Blackhole() as hole:
        drive(watch, storage_on(hole.endpoint, aws_s3_read_timeout=0.3), "timeout", QUICK)


# ---- servers that echo the request back ------------------------------------------

def header(seen: Seen, name: str) -> str:
    return next((v for k, v in seen.headers.items() if k.lower() == name.lower()), "")


def echo_document(seen: Seen, code: str = "AccessDenied") -> bytes:
    """An S3 error document whose every field repeats the request's headers."""
    everything = f"{seen.method} {seen.path} " + " ".join(
        f"{k}: {v}" for k, v in seen.headers.items())
    token = header(seen, "X-Amz-Security-Token")
    auth = header(seen, "Authorization")
    return (f"<?xml version='1.0'?><Error><Code>{code}</Code>"
            f"<Message>{html_lib.escape(everything)}</Message>"
            f"<Key>{html_lib.escape(token)}</Key>"
            f"<RequestId>{html_lib.escape(auth)}</RequestId>"
            f"<HostId>{html_lib.escape(token)}</HostId></Error>").encode()


def echoing(status: int, code: str = "AccessDenied") -> Callable[[Seen], Reply]:
    def script(seen: Seen) -> Reply:
        return Reply(status, echo_document(seen, code),
                     {"Content-Type": "application/xml",
                      "x-amz-request-id": header(seen, "X-Amz-Security-Token"),
                      "x-amz-id-2": header(seen, "Authorization")})
    return script


@pytest.mark.parametrize("status,code", [(403, "AccessDenied"), (400, "InvalidArgument"),
                                         (500, "InternalError")])
def test_a_server_that_echoes_the_request_in_its_errors(
        watch: Watch, status: int, code: str) -> None:
    with ScriptedServer(echoing(status, code), timeout=5) as server:
        storage = storage_on(server.endpoint, aws_s3_max_attempts=2)
        drive(watch, storage, f"echo {status}")
        client = storage._client
        watch.fails("reader", lambda: client.reader("k").read())
        watch.fails("get_object", lambda: client.get_object("k"))
        watch.fails("list_objects", lambda: client.list_objects("p/"))
        watch.signatures_of(server.seen)
    assert any(header(s, "X-Amz-Security-Token") == TOKEN for s in server.seen)


def test_a_copy_answered_200_with_an_echoing_error_document(watch: Watch) -> None:
    def script(seen: Seen) -> Reply:
        if seen.method == "PUT" and "x-amz-copy-source" in {k.lower() for k in seen.headers}:
            return Reply(200, echo_document(seen, "InternalError"))
        return Reply(200, b"", {"ETag": '"e"'})

    with ScriptedServer(script, timeout=5) as server:
        watch.fails("copy 200 error", lambda: storage_on(server.endpoint).copy(NAME, "x"))
        watch.signatures_of(server.seen)


# ---- credential sources that fail, or succeed and then meet an echoing server ------

def use_no_keys(**kwargs: Any) -> dict[str, Any]:
    return {"aws_access_key_id": "", "aws_secret_access_key": "", "aws_session_token": "",
            **kwargs}


def test_web_identity(watch: Watch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(WEB_TOKEN)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/web")

    def refuse(form: dict[str, str]) -> Reply:
        echoed = html_lib.escape(json.dumps(form))
        return Reply(400, (f"<ErrorResponse><Error><Code>{echoed}</Code>"
                           f"<Message>{echoed}</Message></Error></ErrorResponse>").encode())

    with StsServer([STS_CREDS], answer=refuse) as sts, \
            ScriptedServer(echoing(403), timeout=5) as s3:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.endpoint)
        drive(watch, storage_on(s3.endpoint, **use_no_keys()), "web identity refused", QUICK)
        assert sts.forms and sts.forms[0]["WebIdentityToken"] == WEB_TOKEN
        assert s3.seen == []
    with StsServer([STS_CREDS]) as sts, ScriptedServer(echoing(403), timeout=5) as s3:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.endpoint)
        drive(watch, storage_on(s3.endpoint, **use_no_keys()), "web identity creds", QUICK)
        watch.signatures_of(s3.seen)
        assert header(s3.seen[0], "X-Amz-Security-Token") == STS_CREDS.token


def test_proxies_libcurl_cannot_parse(watch: Watch, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """libcurl quotes a proxy URL it cannot parse, password and all, in its error
    text: a password with '@' in it given to the Client (its check takes the host
    after the last '@', libcurl after the first; AWS_S3_PROXY refuses it), and in
    the environment's proxy a misspelt scheme or a port out of range, for S3 calls
    and for STS."""
    dead = f"http://127.0.0.1:{free_port()}"
    client = _s3.Client("b", endpoint_url=dead, access_key=ACCESS_KEY, secret_key=SECRET,
                        proxy=f"http://user:at@{PROXY_PASSWORD}@127.0.0.1:{free_port()}",
                        max_attempts=1)
    watch.fails("an '@' in the password", lambda: client.exists("k"))
    watch.add("the client's repr", repr(client))
    token_file = tmp_path / "token"
    token_file.write_text(WEB_TOKEN)
    for proxy in (f"htpp://user:{PROXY_PASSWORD}@127.0.0.1:3128",
                  f"http://user:{PROXY_PASSWORD}@127.0.0.1:312899"):
        monkeypatch.setenv("http_proxy", proxy)
        drive(watch, storage_on(dead), f"http_proxy {proxy[:4]}", QUICK)
        with monkeypatch.context() as m:
            m.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
            m.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/web")
            m.setenv("AWS_ENDPOINT_URL_STS", dead)
            drive(watch, storage_on(dead, **use_no_keys()), f"STS {proxy[:4]}", QUICK)
    said = [text for label, text in watch.texts if label.endswith(": str")]
    assert sum("Unsupported proxy" in text for text in said) >= 5   # libcurl's texts
    assert any("STS at" in text and "proxy" in text for text in said)


def test_container_endpoint(watch: Watch, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(seen: Seen) -> Reply:
        return Reply(401, json.dumps({"Code": seen.headers.get("Authorization", ""),
                                      "Message": dict(seen.headers)}).encode())

    with CredServer(refuse) as ctr, ScriptedServer(echoing(403), timeout=5) as s3:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", ctr.endpoint + "/creds")
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_TOKEN)
        drive(watch, storage_on(s3.endpoint, **use_no_keys()), "container refused", QUICK)
        monkeypatch.delenv("AWS_CONTAINER_AUTHORIZATION_TOKEN")
        token_file = tmp_path / "auth"
        token_file.write_text(CONTAINER_TOKEN)
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token_file))
        drive(watch, storage_on(s3.endpoint, **use_no_keys()), "container file", QUICK)
        assert ctr.seen and all(s.headers["Authorization"] == CONTAINER_TOKEN for s in ctr.seen)
    with CredServer(lambda seen: Reply(200, creds_json(CTR_CREDS))) as ctr, \
            ScriptedServer(echoing(403), timeout=5) as s3:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", ctr.endpoint + "/creds")
        drive(watch, storage_on(s3.endpoint, **use_no_keys()), "container creds", QUICK)
        watch.signatures_of(s3.seen)
        assert header(s3.seen[0], "X-Amz-Security-Token") == CTR_CREDS.token


def test_instance_metadata(watch: Watch, monkeypatch: pytest.MonkeyPatch) -> None:
    with ImdsServer([IMDS_CREDS]) as imds, ScriptedServer(echoing(403), timeout=5) as s3:
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint)
        drive(watch, storage_on(s3.endpoint, **use_no_keys()), "imds creds", QUICK)
        watch.signatures_of(s3.seen)
        assert header(s3.seen[0], "X-Amz-Security-Token") == IMDS_CREDS.token


def test_credential_process(watch: Watch, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    good = {"Version": 1, "AccessKeyId": "ASIAPROCESS00000001",
            "SecretAccessKey": PROCESS_SECRET, "SessionToken": PROCESS_TOKEN}
    outputs = {
        "good": json.dumps(good),
        "v2": json.dumps({**good, "Version": 2}),
        "nojson": f"SecretAccessKey={PROCESS_SECRET} SessionToken={PROCESS_TOKEN}",
        "badtoken": json.dumps({**good, "SessionToken": PROCESS_TOKEN + "\n" + PROCESS_TOKEN}),
        "badexp": json.dumps({**good, "Expiration": PROCESS_TOKEN}),
        "failing": json.dumps(good),
    }
    config = ""
    for name, out in outputs.items():
        path = tmp_path / f"{name}.json"
        path.write_text(out)
        tail = "; exit 3" if name == "failing" else ""
        config += f"[profile {name}]\ncredential_process = cat '{path}'{tail}\n"
    (tmp_path / "config").write_text(config)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    with ScriptedServer(echoing(403), timeout=5) as s3:
        for name in outputs:
            storage = storage_on(s3.endpoint, **use_no_keys(aws_s3_profile=name))
            drive(watch, storage, f"credential_process {name}", QUICK)
        watch.signatures_of(s3.seen)
        assert {header(s, "X-Amz-Security-Token") for s in s3.seen} == {PROCESS_TOKEN}


# ---- bad settings ------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    {"aws_s3_acl": "no-such-acl"},
    {"aws_s3_typo": 1},
    {"aws_s3_endpoint_url": "ftp://nowhere"},
    {"aws_region": "eu/west"},
    {"aws_session_token": TOKEN + "\r\nX-Injected: 1"},
    {"aws_session_token": TOKEN + "é"},
    {"aws_session_token": TOKEN * 300},
    {"aws_secret_access_key": ""},
    {"aws_s3_proxy": f"ftp://user:{PROXY_PASSWORD}@127.0.0.1:3128"},
    {"aws_s3_proxy": f"http://user:{PROXY_PASSWORD}\n@127.0.0.1:3128"},
    {"aws_s3_proxy": f"http://user:{PROXY_PASSWORD}@127.0.0.1:99999"},
    {"aws_s3_proxy": f"http://user:{PROXY_PASSWORD}@127.0.0.1:1",
     "aws_s3_public_endpoint_url": "nope"},
])
def test_bad_settings(watch: Watch, bad: dict[str, Any]) -> None:
    kwargs = {"aws_s3_proxy": f"http://user:{PROXY_PASSWORD}@127.0.0.1:3128", **bad}
    endpoint = kwargs.pop("aws_s3_endpoint_url", "http://127.0.0.1:1")
    watch.fails(f"settings {sorted(bad)}", lambda: storage_on(endpoint, **kwargs),
                ImproperlyConfigured)


def test_bad_settings_from_django_settings(watch: Watch) -> None:
    with override_settings(AWS_SECRET_ACCESS_KEY=SECRET, AWS_SESSION_TOKEN=TOKEN + "\x01",
                           AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_S3_BUCKET_NAME="b"):
        watch.fails("django settings", lambda: S3Storage(), ImproperlyConfigured)


# ---- what works: reprs, meta(), presigned URLs ----------------------------------------

def _stub(seen: Seen) -> Reply:
    """A server that takes every PUT and answers GET and HEAD with a small object."""
    headers = {"ETag": '"0123456789abcdef0123456789abcdef"', "Content-Type": "text/plain",
               "Last-Modified": "Wed, 01 Jan 2025 00:00:00 GMT", "x-amz-meta-owner": "me"}
    if seen.method == "GET" and "list-type=2" in seen.path:
        return Reply(200, b"<ListBucketResult><IsTruncated>false</IsTruncated>"
                          b"<EncodingType>url</EncodingType></ListBucketResult>")
    if seen.method == "PUT":
        return Reply(200, b"", {"ETag": f'"{hashlib.md5(seen.body).hexdigest()}"'})
    if urlsplit(seen.path).path.endswith("/" + NAME):
        return Reply(200, b"hello", headers)
    return Reply(404, b"")


def everything_shown(watch: Watch, storage: S3Storage, label: str, prefix: str = "") -> None:
    storage.save(NAME, ContentFile(b"hello"))
    watch.add(f"{label} meta", repr(storage.meta(NAME)))
    with storage.open(NAME) as f:
        f.read(2)
        watch.add(f"{label} S3File", repr(f) + str(f) + repr(f.file))
    with storage.open("dir/w.txt", "wb") as w:
        w.write(b"hello")
        watch.add(f"{label} S3WriteFile", repr(w) + str(w) + repr(w.file))
    client = storage._client
    reader = client.reader(prefix + NAME)
    reader.read(1)
    writer = client.writer(prefix + "dir/w2.txt")
    writer.write(b"abc")
    watch.add(f"{label} Reader Writer", repr(reader) + str(reader) + repr(reader.meta)
              + repr(writer) + str(writer))
    writer.close()
    reader.close()
    watch.add(f"{label} reprs", repr(storage) + str(storage) + repr(storage.settings)
              + str(storage.settings) + repr(vars(storage)) + repr(client) + str(client)
              + repr(storage.listdir("dir")) + repr(storage.get_modified_time(NAME)))


def test_reprs_and_meta_with_a_session_token(watch: Watch) -> None:
    with ScriptedServer(_stub, timeout=5) as server:
        everything_shown(watch, storage_on(server.endpoint), "stub")
        assert server.seen and all(header(s, "X-Amz-Security-Token") == TOKEN
                                   for s in server.seen)
        watch.signatures_of(server.seen)


def test_reprs_and_meta_on_a_signing_server(
        watch: Watch, signing_server: tuple[str, str, str, str], prefix: str) -> None:
    endpoint, access, secret, bucket = signing_server
    storage = storage_on(endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
                         aws_session_token="", aws_s3_bucket_name=bucket,
                         aws_s3_key_prefix=prefix)
    watch.extra.append(secret)   # the server's real secret: shown nowhere either
    everything_shown(watch, storage, "signing server", prefix)


def test_presigned_urls_carry_the_token_and_never_the_secret(watch: Watch) -> None:
    url = storage_on("http://127.0.0.1:1").url(NAME)
    query = parse_qs(urlsplit(url).query)
    # the token is part of what a presigned URL with temporary credentials is
    assert query["X-Amz-Security-Token"] == [TOKEN]
    assert query["X-Amz-Credential"][0].startswith(ACCESS_KEY + "/")
    assert len(query["X-Amz-Signature"][0]) == 64
    for form in forms(SECRET):
        assert form not in url
    # exactly once: nowhere but its own parameter
    assert url.count(quote(TOKEN, safe="")) == 1
    static = storage_on("http://127.0.0.1:1", aws_session_token="").url(NAME)
    assert "X-Amz-Security-Token" not in static
    for secret in SECRETS:
        for form in forms(secret):
            assert form not in static
    watch.add("url", "")   # the watch checks the log records made meanwhile


def echo_proxy_authorization(seen: Seen) -> Reply:
    echoed = html_lib.escape(header(seen, "Proxy-Authorization"))
    return Reply(403, (f"<Error><Code>AccessDenied</Code><Message>{echoed}</Message>"
                       f"<RequestId>{echoed}</RequestId></Error>").encode())


@pytest.mark.parametrize("echo", [echoing(403), echo_proxy_authorization])
@pytest.mark.parametrize("anonymous", [False, True])
def test_a_proxy_that_echoes_the_request_in_its_errors(
        watch: Watch, echo: Callable[[Seen], Reply], anonymous: bool) -> None:
    """A proxy sees Proxy-Authorization (the password, base64) and the signed headers;
    an error document that repeats them shows none of them."""
    with ScriptedServer(echo, timeout=5) as proxy:
        proxy_url = proxy.endpoint.replace("http://", f"http://user:{PROXY_PASSWORD}@")
        storage = storage_on("http://127.0.0.1:1", aws_s3_proxy=proxy_url,
                             aws_s3_anonymous=anonymous)
        drive(watch, storage, "echoing proxy")
        watch.signatures_of(proxy.seen)
    assert header(proxy.seen[0], "Proxy-Authorization") == "Basic " + base64.b64encode(
        f"user:{PROXY_PASSWORD}".encode()).decode()


def test_the_watch_finds_a_secret() -> None:
    """The searching itself: a text with a secret, or half of one, quoted or not,
    fails the check."""
    for text in (SECRET, "x" + TOKEN[:len(TOKEN) // 2 + 1], quote("/" + PROXY_PASSWORD),
                 html_lib.escape(f"'{WEB_TOKEN}'")):
        w = Watch()
        w.add("text", text)
        with pytest.raises(pytest.fail.Exception, match="leaks, e.g."):
            w.check([])
    w = Watch()
    w.add("clean", "AccessDenied (HTTP 403): Access Denied")
    w.check([])


def test_only_the_echo_is_hidden(watch: Watch) -> None:
    """A server's own words stay; an echo of part of the token or the signature goes,
    and a code that repeats one becomes the status's name."""
    def script(seen: Seen) -> Reply:
        token, auth = header(seen, "X-Amz-Security-Token"), header(seen, "Authorization")
        sig = auth.rsplit("Signature=", 1)[1]
        if seen.path.endswith("/plain"):
            doc = "<Code>AccessDenied</Code><Message>Access Denied</Message>" \
                  "<RequestId>REQ123</RequestId>"
        elif seen.path.endswith("/part"):
            doc = f"<Code>AccessDenied</Code><Message>tok {token[5:25]}</Message>" \
                  f"<RequestId>{sig[10:30]}</RequestId>"
        else:
            doc = f"<Code>{token}</Code><Message>{sig}</Message><RequestId>R</RequestId>"
        return Reply(403, f"<Error>{doc}</Error>".encode())

    with ScriptedServer(script, timeout=5) as server:
        client = storage_on(server.endpoint)._client
        plain = watch.fails("plain", lambda: client.get_object("plain"))
        part = watch.fails("part", lambda: client.get_object("part"))
        code = watch.fails("code", lambda: client.get_object("code"))
        watch.signatures_of(server.seen)
    assert isinstance(plain, _s3.S3Error) and isinstance(part, _s3.S3Error)
    assert isinstance(code, _s3.S3Error)
    assert (plain.code, plain.message, plain.request_id) == ("AccessDenied", "Access Denied",
                                                            "REQ123")
    assert part.code == "AccessDenied" and "not shown" in str(part.message)
    assert not part.request_id
    assert code.code == "AccessDenied" and code.status == 403   # the status's name
    assert "not shown" in str(code.message) and code.request_id == "R"
