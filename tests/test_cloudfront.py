"""CloudFront signed URLs: AWS_S3_CLOUDFRONT_KEY_ID and AWS_S3_CLOUDFRONT_KEY with
AWS_S3_PUBLIC_URL. url() signs CloudFront's canned policy, cloudfront_url() a custom
one (not before, source IP, wildcard resource); signatures are RSA-SHA1 by a key
loaded once (_s3.SigningKey) and checked here with openssl. The key never shows in a
repr, an error or a pickle."""
from __future__ import annotations

import base64
import json
import pickle
import re
import subprocess
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_s3_storage import _s3
from django_s3_storage.storage import ManifestStaticS3Storage, S3Storage, StaticS3Storage

from conftest import STATIC_BUCKET, S3Target

PUBLIC = "https://d111111abcdef8.cloudfront.net/media/"
KEY_ID = "K2JCJMDEHXQW5F"


def openssl(*args: str, data: bytes | None = None) -> bytes:
    out = subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("cloudfront")
    key, pub = d / "key.pem", d / "pub.pem"
    openssl("genrsa", "-out", str(key), "2048")
    openssl("rsa", "-in", str(key), "-pubout", "-out", str(pub))
    return {"key": str(key), "pem": key.read_text(), "pub": str(pub), "dir": str(d)}


def unb64(text: str) -> bytes:
    return base64.b64decode(text.translate(str.maketrans("-_~", "+=/")))


def verifies(keys: dict[str, str], policy: bytes, signature: bytes) -> bool:
    d = Path(keys["dir"])
    (d / "policy").write_bytes(policy)
    (d / "sig").write_bytes(signature)
    out = subprocess.run(["openssl", "dgst", "-sha1", "-verify", keys["pub"], "-signature",
                          str(d / "sig"), str(d / "policy")], capture_output=True, timeout=60)
    return out.returncode == 0 and b"Verified OK" in out.stdout


def storage(keys: dict[str, str], **kwargs: object) -> S3Storage:
    return S3Storage(aws_s3_public_url=PUBLIC, aws_s3_cloudfront_key_id=KEY_ID,
                     aws_s3_cloudfront_key=keys["pem"], **kwargs)


def test_url_signs_the_canned_policy(s3: S3Target, keys: dict[str, str]) -> None:
    before = int(time.time())
    url = storage(keys, aws_s3_max_age_seconds=600).url("dir/photo 1.jpg")
    base, _, query = url.partition("?")
    assert base == PUBLIC + "dir/photo%201.jpg"
    q = {k: v[0] for k, v in parse_qs(query).items()}
    assert list(q) == ["Expires", "Signature", "Key-Pair-Id"] and q["Key-Pair-Id"] == KEY_ID
    assert before + 600 <= int(q["Expires"]) <= int(time.time()) + 600
    policy = ('{"Statement":[{"Resource":"%s","Condition":{"DateLessThan":'
              '{"AWS:EpochTime":%s}}}]}' % (base, q["Expires"])).encode()
    assert re.fullmatch(r"[A-Za-z0-9~_-]+", q["Signature"])       # CloudFront's base64
    assert verifies(keys, policy, unb64(q["Signature"]))
    assert not verifies(keys, policy.replace(b"photo", b"other"), unb64(q["Signature"]))



def test_the_manifest_storage_signs_too(s3: S3Target, keys: dict[str, str]) -> None:
    # every url() of a CloudFront storage takes storage.py's path, which must be
    # S3Storage's own even where Django's HashedFilesMixin has a _url() of its own
    with override_settings(DEBUG=True):
        st = ManifestStaticS3Storage(aws_s3_bucket_name=STATIC_BUCKET, aws_s3_public_url=PUBLIC,
                                     aws_s3_cloudfront_key_id=KEY_ID,
                                     aws_s3_cloudfront_key=keys["pem"])
        base, _, query = st.url("css/site.css").partition("?")
    assert base == PUBLIC + "css/site.css" and f"Key-Pair-Id={KEY_ID}" in query

def test_expire_per_call_and_the_key_from_a_file(s3: S3Target, keys: dict[str, str]) -> None:
    url = storage(keys).url("a.txt", expire=30)
    expires = int(parse_qs(urlsplit(url).query)["Expires"][0])
    assert abs(expires - (time.time() + 30)) < 5
    by_path = S3Storage(aws_s3_public_url=PUBLIC, aws_s3_cloudfront_key_id=KEY_ID,
                        aws_s3_cloudfront_key=keys["key"])
    assert "Signature=" in by_path.url("a.txt")


def test_cloudfront_url_signs_a_custom_policy(s3: S3Target, keys: dict[str, str]) -> None:
    not_before = datetime(2026, 1, 1, tzinfo=timezone.utc)
    url = storage(keys).cloudfront_url("v/clip.mp4", expire=120, not_before=not_before,
                                       source_ip="192.0.2.7/24", resource=PUBLIC + "v/*")
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert list(q) == ["Policy", "Signature", "Key-Pair-Id"]
    policy = unb64(q["Policy"])
    statement = json.loads(policy)["Statement"][0]
    assert statement["Resource"] == PUBLIC + "v/*"
    cond = statement["Condition"]
    assert cond["DateGreaterThan"] == {"AWS:EpochTime": int(not_before.timestamp())}
    assert cond["IpAddress"] == {"AWS:SourceIp": "192.0.2.0/24"}
    assert abs(cond["DateLessThan"]["AWS:EpochTime"] - (time.time() + 120)) < 5
    assert verifies(keys, policy, unb64(q["Signature"]))
    for bad in ({"source_ip": "not-an-ip"}, {"not_before": datetime(2026, 1, 1)},
                {"expire": 0}, {"resource": "a\nb"}):
        with pytest.raises(ValueError):
            storage(keys).cloudfront_url("v/clip.mp4", **bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls,suffix", [(S3Storage, ""), (StaticS3Storage, "_STATIC")])
def test_settings_that_cannot_sign_are_refused_naming_them(
        s3: S3Target, keys: dict[str, str], cls: type[S3Storage], suffix: str) -> None:
    with override_settings(**{f"AWS_S3_CLOUDFRONT_KEY_ID{suffix}": KEY_ID,
                              f"AWS_S3_PUBLIC_URL{suffix}": PUBLIC}):
        with pytest.raises(ImproperlyConfigured, match=f"AWS_S3_CLOUDFRONT_KEY{suffix}"):
            cls()
    with override_settings(**{f"AWS_S3_CLOUDFRONT_KEY_ID{suffix}": KEY_ID,
                              f"AWS_S3_CLOUDFRONT_KEY{suffix}": keys["pem"]}):
        with pytest.raises(ImproperlyConfigured, match=f"AWS_S3_PUBLIC_URL{suffix}"):
            cls()
    secret_text = "-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END PRIVATE KEY-----\n"
    for key in (secret_text, "/no/such/key.pem", keys["pub"]):
        with override_settings(**{f"AWS_S3_CLOUDFRONT_KEY_ID{suffix}": KEY_ID,
                                  f"AWS_S3_CLOUDFRONT_KEY{suffix}": key,
                                  f"AWS_S3_PUBLIC_URL{suffix}": PUBLIC}):
            with pytest.raises(ImproperlyConfigured,
                               match=f"AWS_S3_CLOUDFRONT_KEY{suffix}") as info:
                cls()
            assert "TOPSECRET" not in str(info.value) and "/no/such" not in str(info.value)


def test_the_key_never_shows(s3: S3Target, keys: dict[str, str]) -> None:
    st = storage(keys)
    body = keys["pem"].splitlines()[1]
    assert body not in repr(st._kwargs) and body not in repr(st.settings.AWS_S3_CLOUDFRONT_KEY)
    assert repr(_s3.SigningKey(keys["pem"].encode())) == "<SigningKey RSA-2048>"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(_s3.SigningKey(keys["pem"].encode()))
    again = pickle.loads(pickle.dumps(st))           # the storage pickles, and signs again
    assert "Signature=" in again.url("a.txt")
    with pytest.raises(ValueError, match="not an unencrypted PEM RSA private key"):
        _s3.SigningKey(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


def test_the_key_is_in_no_traceback_local(s3: S3Target, keys: dict[str, str]) -> None:
    """Django's DEBUG page and error trackers show every frame's locals."""
    body = keys["pem"].splitlines()[1]
    for kwargs in ({"aws_s3_bucket_name": "", "aws_s3_cloudfront_key": keys["pem"]},
                   {"aws_s3_cloudfront_key": keys["pem"].replace(body, body[::-1])},
                   {"aws_s3_cloudfront_key": keys["key"], "aws_s3_acl": "nope"}):
        with pytest.raises(ImproperlyConfigured) as info:
            S3Storage(aws_s3_public_url=PUBLIC, aws_s3_cloudfront_key_id=KEY_ID,
                      **kwargs)  # type: ignore[arg-type]
        frames = [f for f, _ in traceback.walk_tb(info.tb)
                  if "/django_s3_storage/" in f.f_code.co_filename]   # the package's
        assert frames
        for frame in frames:
            for name, value in frame.f_locals.items():
                assert body not in repr(value) and body[::-1] not in repr(value), name


def test_w001_is_not_raised_for_signed_cloudfront_urls(s3: S3Target,
                                                       keys: dict[str, str]) -> None:
    def w001() -> list[str]:
        return [m.id for m in checks.run_checks(tags=[checks.Tags.security])
                if m.id == "django_s3_storage.W001"]

    with override_settings(AWS_S3_PUBLIC_URL=PUBLIC):
        assert w001() == ["django_s3_storage.W001"]
        with override_settings(AWS_S3_CLOUDFRONT_KEY_ID=KEY_ID,
                               AWS_S3_CLOUDFRONT_KEY=keys["pem"]):
            assert w001() == []
