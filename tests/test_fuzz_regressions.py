"""Replays what the fuzzers of fuzz/ found (tests/fuzz_regressions/<target>/, one
file per input that once crashed a harness or tripped a sanitizer) and their seed
corpora (fuzz/corpus/<target>/).

Two ways, both run when they can:
- through the libFuzzer harnesses themselves (ASan + UBSan), built here when clang
  with libFuzzer is installed (`make fuzz-build` installs it);
- always, through the Python API over real sockets on 127.0.0.1, where the same C
  parser is reachable: gzip_decompress (the gzip decoder, against zlib as a
  reference), sign_v4 and presign_v4 (URL splitting and the canonical request),
  head_object and get_object against a raw TCP server that sends the input as the
  reply's head (the header parser), list_objects (the listing parser), get_object,
  copy_object and a multipart writer (the Error, CopyObjectResult and
  InitiateMultipartUploadResult parsers), and the credential chain (the shared
  files, credential_process, the container endpoint, instance metadata, STS).
"""
from __future__ import annotations

import os
import shutil
import socketserver
import subprocess
import threading
import time
import zlib
from pathlib import Path
from typing import Callable

import pytest

from django_s3_storage import _s3
from servers import FakeS3, Reply, ScriptedServer, Seen

ROOT = Path(__file__).resolve().parent.parent
REGRESSIONS = ROOT / "tests" / "fuzz_regressions"
TARGETS = ("xml_list", "xml_reply", "gzip", "sigv4", "headers", "credentials")
KEYS = {"access_key": "AKIDEXAMPLE", "secret_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
BOUND_S = 10.0   # no replay may take longer than this
MAX_EPOCH = 253402300800.0   # 10000-01-01: what a 4-digit year reaches


def inputs(target: str) -> list[Path]:
    found = []
    for d in (REGRESSIONS / target, ROOT / "fuzz" / "corpus" / target):
        if d.is_dir():
            found += sorted(p for p in d.iterdir() if p.is_file())
    return found


def ids(paths: list[Path]) -> list[str]:
    return [f"{p.parent.parent.name}/{p.parent.name}/{p.name[:16]}" for p in paths]


def replays(target: str) -> pytest.MarkDecorator:
    paths = inputs(target)
    return pytest.mark.parametrize("path", paths, ids=ids(paths))


def test_every_target_has_inputs_and_the_known_regressions_are_kept() -> None:
    for target in TARGETS:
        assert inputs(target), target
        assert (ROOT / "fuzz" / f"fuzz_{target}.c").is_file()
    kept = {p.parent.name + "/" + p.name for p in REGRESSIONS.glob("*/*")}
    assert {"headers/no-header-lines", "headers/status-line-without-end",
            "sigv4/empty-host-after-default-port", "xml_list/last-modified-out-of-range",
            "xml_reply/last-modified-int-min-year"} <= kept


# ---- through the harnesses ---------------------------------------------------

def _own_env(**extra: str) -> dict[str, str]:
    """The environment for clang's tools and harnesses: without the sanitizer
    runtimes `make sanitize` preloads into this process (gcc's ASan, which clang's
    refuses to run beside) and their options."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def harnesses(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed (make fuzz-build installs it); the inputs are "
                    "still replayed through the Python API below")
    out = tmp_path_factory.mktemp("fuzz")
    r = subprocess.run(["sh", "fuzz/build.sh"], cwd=ROOT, env=_own_env(FUZZ_OUT=str(out)),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.mark.parametrize("target", TARGETS)
def test_the_harness_replays_every_input_cleanly(harnesses: Path, target: str) -> None:
    paths = inputs(target)
    r = subprocess.run([str(harnesses / f"fuzz_{target}"), "-timeout=10", *map(str, paths)],
                       env=_own_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("Executed ") == len(paths)
    assert "runtime error" not in r.stderr and "ERROR:" not in r.stderr


# ---- gzip: gzip_decompress against zlib ----------------------------------------

def zlib_gunzip(data: bytes) -> bytes:
    """gzip members one after another, as gz_feed reads them; ValueError otherwise."""
    out = []
    while True:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out.append(d.decompress(data))
        except zlib.error as e:
            raise ValueError(str(e)) from None
        if not d.eof:
            raise ValueError("truncated")
        data = d.unused_data
        if not data:
            return b"".join(out)


@replays("gzip")
def test_gzip_replay(path: Path) -> None:
    data = path.read_bytes()[1:]   # the harness's first byte picks the piece size
    try:
        expected: bytes | None = zlib_gunzip(data)
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(ValueError):
            _s3.gzip_decompress(data)
    else:
        assert _s3.gzip_decompress(data) == expected
    assert _s3.gzip_decompress(_s3.gzip_compress(data)) == data


# ---- sigv4: sign_v4 and presign_v4 ----------------------------------------------

REFUSED_URLS = {"empty-host-after-default-port"}   # these must be refused


@replays("sigv4")
def test_sigv4_replay(path: Path) -> None:
    fields = [f.decode("utf-8", "replace") for f in path.read_bytes().split(b"\0")]
    if len(fields) < 3:
        fields += [""] * (3 - len(fields))
    method, url, payload = fields[:3]
    headers = dict(zip(fields[3::2], fields[4::2]))
    kw = {"region": "us-east-1", "timestamp": "20150830T123600Z", **KEYS}
    if path.name in REFUSED_URLS:
        with pytest.raises(ValueError):
            _s3.presign_v4(method, url, expires=3600, **kw)
        with pytest.raises(ValueError):
            _s3.sign_v4(method, url, headers, payload, **kw)
        return
    try:
        signed = _s3.sign_v4(method, url, headers, payload, **kw)
    except ValueError:
        pass   # a control character, or not an http(s) URL: refused, named
    else:
        assert "Signature=" in signed["Authorization"]
    try:
        presigned = _s3.presign_v4(method, url, expires=3600, **kw)
    except ValueError:
        pass
    else:
        assert "X-Amz-Signature=" in presigned


# ---- headers: a raw server that sends the input as the reply ---------------------

class RawServer:
    """Answers every request on 127.0.0.1 with `blob`, verbatim, then closes."""

    def __init__(self, blob: bytes) -> None:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(5)
                got = b""
                try:
                    while b"\r\n\r\n" not in got:
                        chunk = self.request.recv(65536)
                        if not chunk:
                            return
                        got += chunk
                    self.request.sendall(blob)
                except OSError:
                    pass

        class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True)
        self.thread.start()

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def client(endpoint: str) -> _s3.Client:
    return _s3.Client("b", endpoint_url=endpoint, max_attempts=1, connect_timeout=2,
                      read_timeout=3, **KEYS)


@replays("headers")
def test_headers_replay(path: Path) -> None:
    blob = path.read_bytes()
    with RawServer(blob) as server:
        c = client(server.endpoint)
        t0 = time.monotonic()
        try:
            meta = c.head_object("k")
        except OSError:
            meta = None
        try:
            c.get_object("k")
        except OSError:
            pass
        assert time.monotonic() - t0 < BOUND_S
    if path.name == "no-header-lines":
        assert meta is not None and "ContentLength" not in meta
    if path.name == "status-line-without-end":
        assert meta is None   # "HTTP/1.1 0" is no reply
    if blob.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 434234" in blob:
        assert meta is not None and meta["ContentLength"] == 434234


# ---- xml: listings, error documents, copy and multipart replies ----------------------

@replays("xml_list")
def test_list_replay(path: Path) -> None:
    doc = path.read_bytes()[1:]
    with FakeS3(lambda m, p: Reply(200, doc)) as fake:
        try:
            listing = client(fake.endpoint).list_objects("media/")
        except OSError as e:
            assert str(e)
            listing = None
    if listing is not None:
        keys = [entry[0] for entry in listing["Contents"]]
        assert all(isinstance(k, str) for k in keys)
        # LastModified in epoch seconds: a time out of range is no time (0.0), never
        # a year 3e12 that datetime cannot hold
        assert all(0.0 <= entry[3] < MAX_EPOCH for entry in listing["Contents"])
        if b"<EncodingType>url</EncodingType>" in doc and b"<Key>media/b%20c+d.txt" in doc:
            assert "media/b c d.txt" in keys
            assert listing["IsTruncated"] is True
            assert listing["NextContinuationToken"].endswith("=")


def multipart_script(doc: bytes) -> Callable[[str, str], Reply]:
    def script(method: str, path: str) -> Reply:
        if method == "POST" and path.endswith("?uploads"):
            return Reply(200, doc)
        if method == "POST":
            return Reply(200, b"<CompleteMultipartUploadResult><ETag>\"e-1\"</ETag>"
                              b"</CompleteMultipartUploadResult>")
        if method == "PUT":
            return Reply(200, b"", {"ETag": '"e"'})
        return Reply(204)
    return script


@replays("xml_reply")
def test_reply_replay(path: Path) -> None:
    doc = path.read_bytes()
    is_error = doc.lstrip().startswith(b"<?xml") and b"<Error>" in doc or doc.startswith(b"<Error>")
    with FakeS3(lambda m, p: Reply(404, doc)) as fake:
        with pytest.raises(OSError) as err:
            client(fake.endpoint).get_object("k")
        if is_error and b"<Code>NoSuchKey</Code>" in doc:
            assert isinstance(err.value, FileNotFoundError)
    with FakeS3(lambda m, p: Reply(200, doc)) as fake:
        try:
            copied = client(fake.endpoint).copy_object("a", "k")
        except OSError as e:
            assert not doc.strip().startswith(b"<?xml") or is_error or str(e)
        else:
            assert not is_error, "an Error document with a 200 is a failure"
            assert isinstance(copied, dict)
            assert 0.0 <= copied.get("LastModified", 0.0) < MAX_EPOCH
    with FakeS3(multipart_script(doc)) as fake:
        w = client(fake.endpoint).writer("k", threshold=0)
        try:
            w.write(b"x")
            done = w.close()
        except OSError:
            w.abort()
            done = None
        if b"<UploadId>VXBsb2Fk" in doc and b"InitiateMultipartUploadResult" in doc:
            assert done is not None and done["Parts"] == 1


# ---- credentials: the chain over local stand-ins ------------------------------------------

def served(answer: Callable[[Seen], Reply]) -> ScriptedServer:
    return ScriptedServer(answer, timeout=5)


@replays("credentials")
def test_credentials_replay(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = path.read_bytes()
    kind, body = raw[0] % 8, raw[1:]
    keys: dict[str, str] = {}
    with FakeS3(lambda m, p: Reply(200, b"ok")) as s3, served(lambda s: Reply(200, body)) as web:
        def imds(seen: Seen) -> Reply:
            if seen.method == "PUT":
                return Reply(200, b"token")
            if seen.path.endswith("/security-credentials/"):
                return Reply(200, b"role")
            return Reply(200, body)

        with served(imds) as meta:
            if kind in (0, 1):
                f = tmp_path / ("config" if kind == 0 else "credentials")
                f.write_bytes(body)
                monkeypatch.setenv("AWS_CONFIG_FILE" if kind == 0 else
                                   "AWS_SHARED_CREDENTIALS_FILE", str(f))
                monkeypatch.setenv("AWS_PROFILE", "dev" if kind == 0 else "default")
            elif kind in (2, 6):
                out = tmp_path / "out.json"
                out.write_bytes(body if kind == 2 else b'{"Version": 1, "AccessKeyId": "A", '
                                b'"SecretAccessKey": "S", "Expiration": "' +
                                body.replace(b'"', b"").replace(b"\\", b"") + b'"}')
                cfg = tmp_path / "config"
                cfg.write_text(f"[default]\ncredential_process = cat '{out}'\n")
                monkeypatch.setenv("AWS_CONFIG_FILE", str(cfg))
            elif kind == 3:
                monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", web.endpoint + "/creds")
            elif kind == 4:
                monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")
                monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", meta.endpoint)
            else:   # 5 and 7: STS, its reply or its error message
                token = tmp_path / "token"
                token.write_text("web-identity-token")
                monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/r")
                monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
                monkeypatch.setenv("AWS_ENDPOINT_URL_STS", web.endpoint)
            c = _s3.Client("b", endpoint_url=s3.endpoint, max_attempts=1, connect_timeout=2,
                           read_timeout=3)
            t0 = time.monotonic()
            try:
                c.get_object("k")
            except OSError as e:
                text = " ".join([str(e), repr(e)])
                keys["error"] = text
                assert "wJalrXUtnFEMI/K7" not in text and "FQoGZXIvYXdzE" not in text
                assert not any(ord(ch) < 0x20 for ch in str(e))
            else:
                auth = s3.requests[-1][2].get("Authorization", "")
                keys["id"] = auth.split("Credential=")[1].split("/")[0] if auth else ""
            assert time.monotonic() - t0 < BOUND_S
    if kind == 1 and b"aws_access_key_id = AKIDEXAMPLE" in body:
        assert keys["id"] == "AKIDEXAMPLE"
    if kind == 2 and b'"SessionToken": "FQoGZXIvYXdzE\\u00e9\\n"' in body:
        # decoded, the token holds a newline: refused, named, not shown
        assert "SessionToken" in keys["error"] and "id" not in keys
    if kind in (3, 4, 5) and b"ASIAEXAMPLE" in body and b"2030-01-02T03:04:05" in body:
        assert keys["id"] == "ASIAEXAMPLE"


@pytest.mark.parametrize("endpoint", ["http://:9000", "https://:443", "https://user@:443/"])
def test_an_endpoint_with_a_port_but_no_host_is_refused_by_name(endpoint: str) -> None:
    # what fuzz_sigv4 found reaches the settings too: before, such an endpoint was
    # accepted and every request signed an empty Host
    with pytest.raises(ValueError, match="endpoint_url"):
        _s3.Client("b", endpoint_url=endpoint, **KEYS)
