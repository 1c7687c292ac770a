"""SigV4 against the published AWS examples, stage by stage, and the S3 encoding rules."""
from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from django_s3_storage import _s3

VECTORS = json.loads((Path(__file__).parent / "vectors" / "sigv4.json").read_text("utf-8"))
SIGN_KEYS = ("region", "access_key", "secret_key", "timestamp", "service")


def sign_kwargs(case: dict[str, Any]) -> dict[str, Any]:
    kw = {k: case[k] for k in SIGN_KEYS}
    if "session_token" in case:
        kw["session_token"] = case["session_token"]
    return kw


@pytest.mark.parametrize("case", VECTORS["header"], ids=lambda c: c["name"])
def test_header_signature_stages(case: dict[str, Any]) -> None:
    canonical, string_to_sign, signature = _s3._sigv4_stages(
        case["method"], case["url"], dict(case["headers"]), case["payload_hash"],
        **sign_kwargs(case))
    if "canonical_request" in case:
        assert canonical == case["canonical_request"]
    assert canonical.split("\n")[-2] == case["signed_headers"]
    if "canonical_request_sha256" in case:
        assert hashlib.sha256(canonical.encode()).hexdigest() == case["canonical_request_sha256"]
    date = case["timestamp"]
    assert string_to_sign == "\n".join([
        "AWS4-HMAC-SHA256", date,
        f"{date[:8]}/{case['region']}/{case['service']}/aws4_request",
        hashlib.sha256(canonical.encode()).hexdigest()])
    assert signature == case["signature"]


@pytest.mark.parametrize("case", VECTORS["header"], ids=lambda c: c["name"])
def test_sign_v4_headers(case: dict[str, Any]) -> None:
    out = _s3.sign_v4(case["method"], case["url"], dict(case["headers"]), case["payload_hash"],
                      **sign_kwargs(case))
    date = case["timestamp"]
    assert out["Authorization"] == (
        f"AWS4-HMAC-SHA256 Credential={case['access_key']}/{date[:8]}/{case['region']}/"
        f"{case['service']}/aws4_request, SignedHeaders={case['signed_headers']}, "
        f"Signature={case['signature']}")
    assert out["X-Amz-Date"] == date
    if case["service"] == "s3":
        assert out["X-Amz-Content-Sha256"] == case["payload_hash"]
    else:
        assert "X-Amz-Content-Sha256" not in out
    assert out.get("X-Amz-Security-Token") == case.get("session_token")


@pytest.mark.parametrize("case", VECTORS["presign"], ids=lambda c: c["name"])
def test_presign_v4_example(case: dict[str, Any]) -> None:
    url = _s3.presign_v4(case["method"], case["url"], expires=case["expires"],
                         **sign_kwargs(case))
    assert url == case["expected"]


STAGE_KW = dict(region="us-east-1", access_key="AK", secret_key="SK",
                timestamp="20240101T000000Z")


def canonical_parts(url: str) -> tuple[str, str]:
    canonical, _, _ = _s3._sigv4_stages("GET", url, {}, "UNSIGNED-PAYLOAD", **STAGE_KW)
    lines = canonical.split("\n")
    return lines[1], lines[2]


@pytest.mark.parametrize("wire_path,canonical_uri", [
    ("/a%20b", "/a%20b"),                        # spaces
    ("/a+b", "/a%2Bb"),                          # a literal '+' is not a space
    ("/a%2Bb", "/a%2Bb"),
    ("/x~y", "/x~y"),                            # '~' is unreserved
    ("/x%7ey", "/x~y"),                          # however it was sent
    ("/k=v&w", "/k%3Dv%26w"),
    ("/100%25", "/100%25"),                      # '%' itself
    ("/a//b/./c/../d", "/a//b/./c/../d"),        # S3 keys are not normalised
    ("/%C3%BC%E2%98%83", "/%C3%BC%E2%98%83"),    # UTF-8, upper-case hex
    ("/%c3%bc", "/%C3%BC"),
    ("/a%2Fb", "/a/b"),                          # an escaped '/' is a '/'
    ("/a%41", "/aA"),
    ("/a%", "/a%25"),
    ("/a%4", "/a%254"),
])
def test_canonical_uri_s3_rules(wire_path: str, canonical_uri: str) -> None:
    assert canonical_parts("https://b.s3.amazonaws.com" + wire_path)[0] == canonical_uri


@pytest.mark.parametrize("query,canonical", [
    ("b=2&a=1", "a=1&b=2"),
    ("a=2&a=1", "a=1&a=2"),                      # same name: sorted by value
    ("acl", "acl="),                             # a bare name gets '='
    ("x=a+b", "x=a%2Bb"),
    ("x=a%20b", "x=a%20b"),
    ("x=%7E", "x=~"),
    ("x=1%3D2%26y", "x=1%3D2%26y"),
    ("prefix=%C3%BC/", "prefix=%C3%BC%2F"),      # '/' is encoded in the query
    ("a=1&", "a=1"),                             # empty parameters are dropped
    ("a=1&&b=2", "a=1&b=2"),
    ("&a=1", "a=1"),
    ("ab=1&a=2", "a=2&ab=1"),                    # a shorter name first
    ("a=1&a=1", "a=1&a=1"),
    ("%41=1", "A=1"),                            # an escaped unreserved byte
    ("a=%2f", "a=%2F"),                          # lower-case hex
    ("a=%2", "a=%252"),                          # a cut escape is a '%'
    ("a=b=c", "a=b%3Dc"),
])
def test_canonical_query_rules(query: str, canonical: str) -> None:
    assert canonical_parts("https://b.s3.amazonaws.com/k?" + query)[1] == canonical


def test_default_port_is_dropped_from_host_and_other_ports_kept() -> None:
    c443, _, _ = _s3._sigv4_stages("GET", "https://h.example:443/k", {}, "x", **STAGE_KW)
    c9000, _, _ = _s3._sigv4_stages("GET", "http://h.example:9000/k", {}, "x", **STAGE_KW)
    assert "host:h.example\n" in c443
    assert "host:h.example:9000\n" in c9000


def test_header_values_are_trimmed_and_repeated_spaces_folded() -> None:
    canonical, _, _ = _s3._sigv4_stages("GET", "https://h/k", {"X-Test": "  a   b  c "}, "x",
                                        **STAGE_KW)
    assert "x-test:a b c\n" in canonical


def test_presign_keeps_existing_query_and_adds_token() -> None:
    url = _s3.presign_v4("GET", "https://b.s3.amazonaws.com/k%20y?response-content-type=text%2Fplain",
                         expires=60, session_token="tok/+=", **STAGE_KW)
    assert url.startswith("https://b.s3.amazonaws.com/k%20y?response-content-type=text%2Fplain&")
    assert "&X-Amz-Security-Token=tok%2F%2B%3D&" in url
    assert "&X-Amz-Expires=60&" in url


def test_signing_rejects_bad_input_cleanly() -> None:
    with pytest.raises(ValueError):
        _s3.sign_v4("GET", "https://h/", {}, "x", **{**STAGE_KW, "timestamp": "2024-01-01"})
    with pytest.raises(ValueError):
        _s3.presign_v4("GET", "ftp://h/", expires=60, **STAGE_KW)
    with pytest.raises(ValueError):
        _s3.presign_v4("GET", "https://h/", expires=0, **STAGE_KW)
    with pytest.raises(TypeError):
        _s3.sign_v4("GET", "https://h/", {"a": 1}, "x", **STAGE_KW)
    with pytest.raises(TypeError):
        _s3.sign_v4("GET", "https://h/", {}, "x", region="r")
    with pytest.raises(TypeError, match="expires"):
        _s3.presign_v4("GET", "https://h/k", **STAGE_KW)


# ---- the canonical forms against a reference written from the SigV4 rules ---------

UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _unescape(s: str) -> bytes:
    """%XX decoded; a malformed or cut escape stays as it is."""
    raw, out, i = s.encode(), bytearray(), 0
    while i < len(raw):
        h = raw[i + 1:i + 3]
        if raw[i] == 0x25 and len(h) == 2 and all(c in b"0123456789abcdefABCDEF" for c in h):
            out.append(int(h, 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def _escape(b: bytes, keep_slash: bool) -> str:
    return "".join(chr(c) if c in UNRESERVED or (keep_slash and c == 0x2F) else f"%{c:02X}"
                   for c in b)


def _reference(path: str, query: str) -> tuple[str, str]:
    params = []
    for p in query.split("&"):
        if p:
            name, _, value = p.partition("=")
            params.append((_escape(_unescape(name), False), _escape(_unescape(value), False)))
    params.sort(key=lambda nv: (nv[0].encode(), nv[1].encode()))
    return _escape(_unescape(path), True), "&".join(f"{n}={v}" for n, v in params)


def test_canonical_path_and_query_agree_with_the_rules_already_canonical_or_not() -> None:
    """Paths and queries that are their own canonical form (the package's own
    requests: taken as they are) and that are not (decoded and encoded again),
    mixed at random: both give what the rules give."""
    rng = random.Random(20261204)
    alphabet = "aAzZ09-._~/%=&+ 2Ff3d7eC"
    seen_canonical = 0
    for _ in range(3000):
        if rng.random() < 0.5:
            path = "/" + "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
            path = path.replace(" ", "%20").replace("&", "%26")
            query = "".join(rng.choice(alphabet) for _ in range(rng.randrange(16)))
            query = query.replace(" ", "%20").replace("/", "%2F")
        else:    # canonical by construction, then at times shuffled or lower-cased
            path = "/" + _escape(bytes(rng.randrange(256) for _ in range(rng.randrange(8))), True)
            params = sorted((_escape(rng.randbytes(rng.randrange(3)), False),
                             _escape(rng.randbytes(rng.randrange(4)), False))
                            for _ in range(rng.randrange(5)))
            params = [p for p in params if p[0]]
            if rng.random() < 0.2:
                rng.shuffle(params)
            query = "&".join(f"{n}={v}" for n, v in params)
            if rng.random() < 0.1:
                query = query.lower()
        want = _reference(path, query)
        seen_canonical += want == (path, query)
        url = "https://b.s3.amazonaws.com" + path + ("?" + query if query else "")
        assert canonical_parts(url) == want, url
    assert seen_canonical > 500


def test_the_date_of_a_signature_made_now_is_utc_now() -> None:
    from django_s3_storage.storage import S3Storage

    st = S3Storage(aws_s3_bucket_name="b", aws_s3_endpoint_url="http://127.0.0.1:9",
                   aws_access_key_id="AK", aws_secret_access_key="SK", aws_region="us-east-1")
    for _ in range(3):    # the same second on both sides
        before = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        url = st.url("k")
        if before == time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()):
            break
    assert f"X-Amz-Date={before}&" in url
    assert f"Credential=AK%2F{before[:8]}%2Fus-east-1%2F" in url
