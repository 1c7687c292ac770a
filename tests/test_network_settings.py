"""Timeouts, retries and backoff, TLS and CA bundles, proxies and the User-Agent:
the settings AWS_S3_READ_TIMEOUT, AWS_S3_MAX_ATTEMPTS, AWS_S3_VERIFY and
AWS_S3_PROXY, and the environment variables they meet, each observed on real
sockets on 127.0.0.1 (moto, FakeS3, a CA made here by openssl, a local proxy)."""
from __future__ import annotations

import http.client
import http.server
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile

import django_s3_storage
from django_s3_storage import _s3
from django_s3_storage.storage import S3Storage, StaticS3Storage

from conftest import S3Target
from servers import FakeS3, LocalServer, Reply, free_port

ROOT = Path(__file__).resolve().parent.parent

ERROR_XML = ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
             "<Message>msg</Message><RequestId>REQ1</RequestId></Error>")

KEYS = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "not-a-real-secret"}


def fake_storage(fake: FakeS3, **kwargs: Any) -> S3Storage:
    return S3Storage(aws_s3_endpoint_url=fake.endpoint, aws_s3_bucket_name="b", **KEYS,
                     **kwargs)


def scripted(*replies: Reply) -> FakeS3:
    queue = list(replies)
    return FakeS3(lambda m, p: queue.pop(0) if len(queue) > 1 else queue[0])


# ---- validation: errors name the setting ---------------------------------------

@pytest.mark.parametrize("setting,value", [
    ("AWS_S3_READ_TIMEOUT", "soon"), ("AWS_S3_READ_TIMEOUT", 0), ("AWS_S3_READ_TIMEOUT", -5),
    ("AWS_S3_READ_TIMEOUT", None), ("AWS_S3_READ_TIMEOUT", True),
    ("AWS_S3_READ_TIMEOUT", float("nan")), ("AWS_S3_READ_TIMEOUT", 1e9),
    ("AWS_S3_MAX_ATTEMPTS", 0), ("AWS_S3_MAX_ATTEMPTS", 21), ("AWS_S3_MAX_ATTEMPTS", "three"),
    ("AWS_S3_MAX_ATTEMPTS", 2.5), ("AWS_S3_MAX_ATTEMPTS", None),
    ("AWS_S3_VERIFY", "/nonexistent/ca.pem"), ("AWS_S3_VERIFY", 1.5),
    ("AWS_S3_PROXY", "127.0.0.1:3128"), ("AWS_S3_PROXY", "socks5://127.0.0.1:1080"),
    ("AWS_S3_PROXY", "http://127.0.0.1"), ("AWS_S3_PROXY", "http://127.0.0.1:99999"),
    ("AWS_S3_PROXY", "http://127.0.0.1:3128/path"), ("AWS_S3_PROXY", "http://pro xy:3128"),
    ("AWS_S3_PROXY", "http://127.0.0.1:3128\r\nX-Evil: 1"), ("AWS_S3_PROXY", 3128),
    ("AWS_S3_PUBLIC_ENDPOINT_URL", "localhost:9000"),
    ("AWS_S3_PUBLIC_ENDPOINT_URL", "http://user:pw@localhost:9000"),
])
@pytest.mark.parametrize("cls,suffix", [(S3Storage, ""), (StaticS3Storage, "_STATIC")])
def test_bad_values_are_improperly_configured_naming_the_setting(
        s3: S3Target, settings: Any, cls: type, suffix: str, setting: str, value: Any) -> None:
    setattr(settings, setting + suffix, value)
    with pytest.raises(ImproperlyConfigured, match=setting + suffix):
        cls()


def test_proxy_credentials_are_never_echoed(s3: S3Target, settings: Any) -> None:
    settings.AWS_S3_PROXY = "http://alice:pr0xy-s3cret@127.0.0.1:3128/extra"
    with pytest.raises(ImproperlyConfigured) as info:
        S3Storage()
    assert "pr0xy-s3cret" not in str(info.value) and "alice" not in str(info.value)
    # nor from the C Client, which checks it too
    with pytest.raises(ValueError) as info2:
        _s3.Client("b", proxy="http://alice:pr0xy-s3cret@127.0.0.1/")
    assert "pr0xy-s3cret" not in str(info2.value)


def test_unreachable_proxy_error_does_not_carry_its_credentials(s3: S3Target) -> None:
    port = free_port()   # nothing listens there
    storage = S3Storage(aws_s3_proxy=f"http://alice:pr0xy-s3cret@127.0.0.1:{port}",
                        aws_s3_max_attempts=1, aws_s3_connect_timeout=5)
    with pytest.raises(_s3.S3Error) as info:
        storage.exists("x")
    assert info.value.status == 0
    for text in (str(info.value), repr(info.value), repr(storage._client)):
        assert "pr0xy-s3cret" not in text


@pytest.mark.parametrize("value", ["http://127.0.0.1:3128", "https://proxy.internal:443/",
                                   "http://u:p@[::1]:8080", "HTTP://Proxy-1.example:80"])
def test_good_proxy_values_are_accepted(s3: S3Target, value: str) -> None:
    assert S3Storage(aws_s3_proxy=value).settings.AWS_S3_PROXY == value


# ---- read timeout and attempts -----------------------------------------------------

def test_read_timeout_setting_bounds_a_stalled_reply() -> None:
    with FakeS3(lambda m, p: Reply(200, b"late", delay=2.5)) as fake:
        storage = fake_storage(fake, aws_s3_read_timeout=1, aws_s3_max_attempts=1)
        t0 = time.monotonic()
        with pytest.raises(_s3.S3Error) as info:
            storage.open("k").read()
        assert info.value.code == "Timeout"
        assert time.monotonic() - t0 < 2.4
        patient = fake_storage(fake, aws_s3_read_timeout=6, aws_s3_max_attempts=1)
        assert patient.open("k").read() == b"late"


@pytest.mark.parametrize("attempts", [1, 2, 4])
def test_max_attempts_setting_bounds_the_requests(attempts: int) -> None:
    with scripted(Reply(500, ERROR_XML.format(code="InternalError").encode())) as fake:
        storage = fake_storage(fake, aws_s3_max_attempts=attempts)
        with pytest.raises(_s3.S3Error) as info:
            storage.open("k")
        assert info.value.status == 500
        assert len(fake.requests) == attempts


def test_max_attempts_static_twin(settings: Any) -> None:
    with scripted(Reply(503, ERROR_XML.format(code="ServiceUnavailable").encode())) as fake:
        settings.AWS_S3_MAX_ATTEMPTS_STATIC = 1
        static = StaticS3Storage(aws_s3_endpoint_url=fake.endpoint, aws_s3_bucket_name="b",
                                 **KEYS)
        with pytest.raises(_s3.S3Error):
            static.exists("k")
        assert len(fake.requests) == 1


# ---- backoff: botocore's standard mode ------------------------------------------------

def test_backoff_is_botocore_standard_mode() -> None:
    delay = _s3.Client._backoff_delay
    # throttling: rand(0,1) * min(1 s * 2**(retry-1), 20 s)
    assert [delay(r, True, 1.0) for r in range(1, 8)] == [1, 2, 4, 8, 16, 20, 20]
    assert delay(3, True, 0.25) == 1.0
    # other transient failures start at 50 ms
    assert [round(delay(r, False, 1.0), 6) for r in (1, 2, 3, 4)] == [0.05, 0.1, 0.2, 0.4]
    assert delay(30, False, 1.0) == 20 and delay(1000, True, 0.999999) <= 20
    assert delay(5, True, 0.0) == 0.0
    # x-amz-retry-after raises the wait towards it, by at most 5 s more than computed
    assert delay(1, False, 0.0, 0.3) == 0.3
    assert delay(1, True, 0.5, 0.2) == 0.5
    assert delay(1, True, 0.5, 60.0) == 5.5


def test_transient_retries_wait_briefly() -> None:
    with scripted(Reply(500, ERROR_XML.format(code="InternalError").encode()),
                  Reply(502, b""), Reply(200, b"done")) as fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b",
                       max_attempts=3)
        t0 = time.monotonic()
        assert c.get_object("k")[0] == b"done"
        assert time.monotonic() - t0 < 0.15 + 0.5     # at most 50 + 100 ms of backoff
        assert len(fake.requests) == 3


def test_throttling_waits_up_to_a_second_and_retry_after_is_honoured() -> None:
    with scripted(Reply(503, ERROR_XML.format(code="SlowDown").encode()),
                  Reply(200, b"done")) as fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b")
        t0 = time.monotonic()
        assert c.get_object("k")[0] == b"done"
        assert time.monotonic() - t0 < 1.0 + 0.5
    with scripted(Reply(500, b"", headers={"x-amz-retry-after": "400"}),
                  Reply(200, b"done")) as fake:
        c = _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b")
        t0 = time.monotonic()
        assert c.get_object("k")[0] == b"done"
        assert 0.4 <= time.monotonic() - t0 < 0.4 + 0.5


# ---- User-Agent ----------------------------------------------------------------------

def test_curl_version_is_made_on_first_use_only() -> None:
    """Importing the extension does not ask libcurl for its full version string
    (that initialises OpenLDAP and its SASL plugins: milliseconds of every import)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from django_s3_storage import _s3; "
            "import django_s3_storage.storage; "
            "print(open('/proc/self/maps').read().count('/sasl2/'), _s3.libcurl_version, "
            "_s3.curl_version.split()[0])")
    package_parent = Path(django_s3_storage.__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code, str(package_parent)], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[0] == "0" and out[1] == out[2] and out[1].startswith("libcurl/")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _s3.nope  # noqa: B018


def test_user_agent_names_the_package_and_its_version() -> None:
    with FakeS3(lambda m, p: Reply(200, b"ok")) as fake:
        fake_storage(fake).open("k").read()
        ua = fake.requests[-1][2]["User-Agent"]
        libcurl = _s3.curl_version.split()[0]
        assert ua == f"django-s3-storage/{django_s3_storage.__version__} {libcurl}"
        assert libcurl.startswith("libcurl/") and libcurl == _s3.libcurl_version
        # the Client alone, and a caller's own
        _s3.Client("b", endpoint_url=fake.endpoint, access_key="a",
                   secret_key="b").get_object("k")
        assert fake.requests[-1][2]["User-Agent"] == f"django-s3-storage {libcurl}"
        _s3.Client("b", endpoint_url=fake.endpoint, access_key="a", secret_key="b",
                   user_agent="mine/1.0").get_object("k")
        assert fake.requests[-1][2]["User-Agent"] == "mine/1.0"


@pytest.mark.parametrize("agent", ["", "a\r\nX-Evil: 1", "ü", "x" * 257])
def test_bad_user_agents_are_refused(agent: str) -> None:
    with pytest.raises(ValueError, match="user_agent"):
        _s3.Client("b", user_agent=agent)


# ---- TLS with a CA of our own ----------------------------------------------------------

def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, and a server certificate for 127.0.0.1 and localhost signed by it."""
    d: Path = tmp_path_factory.mktemp("ca")
    ca_key, ca, key, csr, cert, ext = (str(d / n) for n in (
        "ca.key", "ca.pem", "server.key", "server.csr", "server.pem", "ext.cnf"))
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
            "-days", "1", "-subj", "/CN=django-s3-storage test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
            "-subj", "/CN=127.0.0.1")
    Path(ext).write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                         "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-out", cert, "-days", "1", "-extfile", ext)
    return {"ca": ca, "cert": cert, "key": key}


@pytest.fixture
def tls_fake(tls_ca: dict[str, str]) -> Iterator[FakeS3]:
    with FakeS3(lambda m, p: Reply(200, b"over tls"), tls=(tls_ca["cert"], tls_ca["key"])) as f:
        yield f


def test_verify_with_a_ca_bundle_path(tls_fake: FakeS3, tls_ca: dict[str, str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    assert fake_storage(tls_fake, aws_s3_verify=tls_ca["ca"]).open("k").read() == b"over tls"


def test_default_verify_refuses_a_server_the_system_does_not_trust(
        tls_fake: FakeS3, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    storage = fake_storage(tls_fake, aws_s3_max_attempts=1)
    with pytest.raises(_s3.S3Error) as info:
        storage.open("k")
    assert info.value.status == 0 and "certificate" in str(info.value).lower()
    assert tls_fake.requests == []       # nothing was sent to it


def test_aws_ca_bundle_from_the_environment(tls_fake: FakeS3, tls_ca: dict[str, str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", tls_ca["ca"])
    assert fake_storage(tls_fake).open("k").read() == b"over tls"
    monkeypatch.setenv("AWS_CA_BUNDLE", "/nonexistent/bundle.pem")
    with pytest.raises(ImproperlyConfigured, match="AWS_CA_BUNDLE"):
        fake_storage(tls_fake)


def test_verify_false_accepts_any_certificate(tls_fake: FakeS3,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    assert fake_storage(tls_fake, aws_s3_verify=False).open("k").read() == b"over tls"


def test_an_explicit_ca_bundle_wins_over_the_environment(
        tls_fake: FakeS3, tls_ca: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    other = str(tmp_path / "other-ca.pem")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "k"),
            "-out", other, "-days", "1", "-subj", "/CN=another CA")
    monkeypatch.setenv("AWS_CA_BUNDLE", tls_ca["ca"])
    storage = fake_storage(tls_fake, aws_s3_verify=other, aws_s3_max_attempts=1)
    with pytest.raises(_s3.S3Error) as info:
        storage.open("k")
    assert "certificate" in str(info.value).lower()


# ---- the system's CA bundle (the extension's libcurl has none of its own) ---------------

def test_the_systems_ca_bundle_verifies_when_no_setting_names_one(
        tls_fake: FakeS3, tls_ca: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", tls_ca["ca"])     # OpenSSL's variable, first
    storage = fake_storage(tls_fake)
    assert storage.open("k").read() == b"over tls"
    monkeypatch.setenv("SSL_CERT_FILE", str(ROOT / "no-such-bundle.pem"))
    with pytest.raises(_s3.S3Error, match="(?i)certificate"):
        fake_storage(tls_fake, aws_s3_max_attempts=1).open("k")


def test_find_ca_bundle_takes_ssl_cert_file_then_the_first_system_bundle_then_certifi(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import certifi
    from django_s3_storage.storage import CA_BUNDLES, find_ca_bundle
    assert "/etc/ssl/certs/ca-certificates.crt" in CA_BUNDLES        # Debian, Ubuntu
    assert "/etc/pki/tls/certs/ca-bundle.crt" in CA_BUNDLES          # Fedora, RHEL
    a, b = tmp_path / "a.pem", tmp_path / "b.pem"
    a.write_text("a")
    b.write_text("b")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    assert find_ca_bundle((str(tmp_path / "missing.pem"), str(b), str(a))) == str(b)
    assert find_ca_bundle((str(tmp_path),)) == certifi.where()        # a folder is no bundle
    monkeypatch.setenv("SSL_CERT_FILE", str(a))
    assert find_ca_bundle((str(b),)) == str(a)
    monkeypatch.setitem(sys.modules, "certifi", None)                 # not installed
    monkeypatch.delenv("SSL_CERT_FILE")
    assert find_ca_bundle(()) is None
    assert find_ca_bundle() == next(p for p in CA_BUNDLES if Path(p).is_file())


@pytest.mark.parametrize("cls,suffix", [(S3Storage, ""), (StaticS3Storage, "_STATIC")])
def test_no_ca_bundle_anywhere_is_an_error_naming_the_setting_for_https_only(
        cls: type[S3Storage], suffix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from django_s3_storage import storage as module
    monkeypatch.setattr(module, "CA_BUNDLES", ())
    monkeypatch.setitem(sys.modules, "certifi", None)
    for var in ("SSL_CERT_FILE", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ImproperlyConfigured, match=f"AWS_S3_VERIFY{suffix} is on, and no CA"):
        cls(aws_s3_bucket_name="b", aws_s3_endpoint_url="https://127.0.0.1:1", **KEYS)
    cls(aws_s3_bucket_name="b", aws_s3_endpoint_url="http://127.0.0.1:1", **KEYS)
    cls(aws_s3_bucket_name="b", aws_s3_endpoint_url="https://127.0.0.1:1",
        aws_s3_verify=False, **KEYS)


# ---- proxies ---------------------------------------------------------------------------

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
       "upgrade", "proxy-authorization", "server", "date"}


class ForwardProxy(LocalServer):
    """A forward HTTP proxy on 127.0.0.1: absolute-URI requests for http://127.0.0.1
    are forwarded, CONNECT to 127.0.0.1 is tunnelled, anything else is refused
    (403). It records what it was asked, and stops with its fixture."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def _record(self) -> None:
                with proxy.lock:
                    proxy.requests.append((self.command, self.path))

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._record()
                url = urllib.parse.urlsplit(self.path)
                if url.scheme != "http" or url.hostname != "127.0.0.1" or not url.port:
                    self.send_error(403)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", url.port, timeout=10)
                try:
                    conn.request(self.command, url.path + (f"?{url.query}" if url.query else ""),
                                 body=body, headers={k: v for k, v in self.headers.items()
                                                     if k.lower() not in HOP})
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _forward

            def do_CONNECT(self) -> None:
                self._record()
                host, _, port = self.path.rpartition(":")
                if host != "127.0.0.1" or not port.isdigit():
                    self.send_error(403)
                    return
                upstream = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
                self.send_response(200, "Connection established")
                self.end_headers()
                self.close_connection = True
                ends = [self.connection, upstream]
                try:
                    while True:
                        ready, _, _ = select.select(ends, [], [], 10)
                        if not ready:
                            return
                        for s in ready:
                            chunk = s.recv(65536)
                            if not chunk:
                                return
                            (upstream if s is self.connection else self.connection).sendall(chunk)
                finally:
                    upstream.close()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(Handler)
        self.url = self.endpoint


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardProxy]:
    # the environment's proxies are for the tests that set them
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    p = ForwardProxy()
    try:
        yield p
    finally:
        p.stop()


def test_proxy_setting_sends_every_request_through_the_proxy(
        s3: S3Target, proxy: ForwardProxy, prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # an explicit proxy serves every host: the environment's NO_PROXY is not for it
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    storage = S3Storage(aws_s3_proxy=proxy.url, aws_s3_key_prefix=prefix)
    storage.save("via-proxy.txt", ContentFile(b"proxied body"))
    assert storage.open("via-proxy.txt").read() == b"proxied body"
    assert storage.exists("via-proxy.txt")
    methods = {m for m, _ in proxy.requests}
    assert {"PUT", "GET", "HEAD"} <= methods, proxy.requests
    assert all(url.startswith(s3.endpoint + "/") for _, url in proxy.requests)
    # and without the setting, nothing goes through it
    seen = len(proxy.requests)
    assert S3Storage(aws_s3_key_prefix=prefix).exists("via-proxy.txt")
    assert len(proxy.requests) == seen


def test_environment_http_proxy_lower_case_is_honoured(
        s3: S3Target, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", proxy.url)
    s3.client().list_objects(max_keys=1)
    assert [m for m, _ in proxy.requests] == ["GET"]


def test_environment_http_proxy_upper_case_is_ignored(
        s3: S3Target, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    # libcurl reads only the lower-case http_proxy (HTTP_PROXY can be set by a CGI
    # request's "Proxy:" header)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    s3.client().list_objects(max_keys=1)
    assert proxy.requests == []


def test_environment_no_proxy_bypasses_the_environment_proxy(
        s3: S3Target, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    s3.client().list_objects(max_keys=1)
    assert proxy.requests == []


def test_the_environment_proxy_is_read_when_the_client_is_made(
        s3: S3Target, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    # read once, with the GIL (libcurl would read it on every transfer without it,
    # racing os.environ), as botocore reads it when its client is made
    monkeypatch.setenv("http_proxy", proxy.url)
    proxied = s3.client()
    monkeypatch.delenv("http_proxy")
    direct = s3.client()
    monkeypatch.setenv("http_proxy", proxy.url)
    direct.list_objects(max_keys=1)
    assert proxy.requests == []
    monkeypatch.delenv("http_proxy")
    proxied.list_objects(max_keys=1)
    assert [m for m, _ in proxy.requests] == ["GET"]


@pytest.mark.parametrize("name", ["http_proxy", "all_proxy", "no_proxy", "NO_PROXY"])
def test_an_environment_proxy_with_control_characters_is_refused_by_name(
        proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "http://user:pa\x01ss@127.0.0.1:3128")
    with pytest.raises(ValueError, match=f"^{name} in the environment") as info:
        _s3.Client("b", endpoint_url="http://127.0.0.1:9", access_key="a", secret_key="b")
    assert "pa" not in str(info.value).split(" in the environment")[1]
    # a proxy setting leaves the environment's alone
    _s3.Client("b", endpoint_url="http://127.0.0.1:9", access_key="a", secret_key="b",
               proxy=proxy.url)


def test_environment_https_proxy_tunnels_tls(
        tls_ca: dict[str, str], tls_fake: FakeS3, proxy: ForwardProxy,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    c = _s3.Client("b", endpoint_url=tls_fake.endpoint, ca_bundle=tls_ca["ca"], access_key="a",
                   secret_key="b")
    assert c.get_object("k")[0] == b"over tls"
    assert proxy.requests == [("CONNECT", f"127.0.0.1:{tls_fake.port}")]


def test_proxy_setting_tunnels_tls(tls_ca: dict[str, str], tls_fake: FakeS3,
                                   proxy: ForwardProxy) -> None:
    storage = fake_storage(tls_fake, aws_s3_verify=tls_ca["ca"], aws_s3_proxy=proxy.url)
    assert storage.open("k").read() == b"over tls"
    assert proxy.requests == [("CONNECT", f"127.0.0.1:{tls_fake.port}")]
