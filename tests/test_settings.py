"""Every setting of the storages, each observed through what reaches S3 (or the URL)."""
from __future__ import annotations

import functools
import gzip
import pickle
import socket
import subprocess
import threading
import time
import urllib.request
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.test import override_settings

from django_s3_storage import _s3
from django_s3_storage.storage import ManifestStaticS3Storage, S3Storage, StaticS3Storage

from conftest import BUCKET, STATIC_BUCKET, S3Target
from servers import FakeS3, Reply


@pytest.fixture
def storage(s3: S3Target, prefix: str) -> S3Storage:
    return S3Storage(aws_s3_key_prefix=prefix)


def head(s3: S3Target, key: str, bucket: str = BUCKET) -> dict[str, Any]:
    return s3.client(bucket).head_object(key)


def is_public(s3: S3Target, key: str, bucket: str = BUCKET) -> bool:
    grants = s3.boto().get_object_acl(Bucket=bucket, Key=key)["Grants"]
    return any(g["Grantee"].get("URI", "").endswith("/AllUsers") and
               g["Permission"] in ("READ", "FULL_CONTROL") for g in grants)


# ---- construction ------------------------------------------------------------

@pytest.mark.parametrize("cls,setting", [(S3Storage, "AWS_S3_BUCKET_NAME"),
                                         (StaticS3Storage, "AWS_S3_BUCKET_NAME_STATIC")])
def test_bucket_name_is_required(s3: S3Target, cls: type, setting: str) -> None:
    with override_settings(**{setting: ""}):
        with pytest.raises(ImproperlyConfigured, match=setting):
            cls()


def test_unknown_keyword_is_improperly_configured(s3: S3Target) -> None:
    with pytest.raises(ImproperlyConfigured, match="aws_s3_bucket"):
        S3Storage(aws_s3_bucket="typo")


def test_keywords_override_settings(s3: S3Target, prefix: str) -> None:
    storage = S3Storage(aws_s3_bucket_name=STATIC_BUCKET, aws_s3_key_prefix=prefix)
    storage.save("kw.bin", ContentFile(b"kw"))
    assert s3.client(STATIC_BUCKET).get_object(prefix + "kw.bin")[0] == b"kw"


def test_changed_setting_reconfigures_existing_storages(storage: S3Storage) -> None:
    assert "X-Amz-Expires=3600" in storage.url("a")
    with override_settings(AWS_S3_MAX_AGE_SECONDS=10):
        assert "X-Amz-Expires=10" in storage.url("a")
    assert "X-Amz-Expires=3600" in storage.url("a")
    # a setting invalid for a while breaks nothing until the storage is used
    with override_settings(AWS_S3_BUCKET_NAME=""):
        with pytest.raises(ImproperlyConfigured):
            storage.url("a")
    assert "X-Amz-Signature" in storage.url("a")


def test_storages_pickle(storage: S3Storage) -> None:
    storage.save("p.bin", ContentFile(b"pickled"))
    clone = pickle.loads(pickle.dumps(storage))
    assert clone.open("p.bin").read() == b"pickled"
    assert clone.settings.AWS_S3_KEY_PREFIX == storage.settings.AWS_S3_KEY_PREFIX
    assert clone.deconstruct() == storage.deconstruct()


def test_storages_deconstruct(s3: S3Target) -> None:
    path, args, kwargs = S3Storage(aws_s3_key_prefix="x", aws_s3_max_age_seconds=5).deconstruct()
    assert path == "django_s3_storage.storage.S3Storage"
    assert args == () and kwargs == {"aws_s3_key_prefix": "x", "aws_s3_max_age_seconds": 5}


# ---- authentication ----------------------------------------------------------

def test_region_is_signed_into_urls(s3: S3Target) -> None:
    assert "%2Feu-west-3%2Fs3%2Faws4_request" in S3Storage(aws_region="eu-west-3").url("a")
    assert "%2Fus-east-1%2Fs3%2Faws4_request" in S3Storage().url("a")


def test_keys_are_used_and_a_wrong_secret_fails(
        signing_server: tuple[str, str, str, str]) -> None:
    endpoint, access, secret, bucket = signing_server
    good = S3Storage(aws_s3_endpoint_url=endpoint, aws_s3_bucket_name=bucket,
                     aws_access_key_id=access, aws_secret_access_key=secret)
    good.save("signed.txt", ContentFile(b"signed"))
    assert good.open("signed.txt").read() == b"signed"
    bad = S3Storage(aws_s3_endpoint_url=endpoint, aws_s3_bucket_name=bucket,
                    aws_access_key_id=access, aws_secret_access_key="WRONG-secret-value")
    with pytest.raises(_s3.S3Error) as info:
        bad.open("signed.txt")
    assert info.value.code == "SignatureDoesNotMatch"
    assert "WRONG-secret-value" not in str(info.value) + repr(bad.__dict__.get("_client"))
    # exists() does not answer False for a failure that is not "not found"
    with pytest.raises(_s3.S3Error):
        bad.exists("signed.txt")


def test_keys_fall_back_to_the_environment(s3: S3Target, monkeypatch: pytest.MonkeyPatch,
                                           prefix: str) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    storage = S3Storage(aws_access_key_id="", aws_secret_access_key="", aws_s3_key_prefix=prefix)
    assert f"X-Amz-Credential={s3.access_key}%2F" in storage.url("a")
    storage.save("env.txt", ContentFile(b"env"))
    assert storage.exists("env.txt")


def test_session_token_is_sent_and_signed(s3: S3Target) -> None:
    with FakeS3(lambda m, p: Reply(200, b"ok")) as fake:
        storage = S3Storage(aws_s3_endpoint_url=fake.endpoint, aws_session_token="TOKEN/x+y")
        assert storage.open("k").read() == b"ok"
        sent = fake.requests[0][2]
        assert sent["x-amz-security-token"] == "TOKEN/x+y"
        assert "x-amz-security-token" in sent["Authorization"]
        assert "X-Amz-Security-Token=TOKEN%2Fx%2By" in storage.url("k")


# ---- where the files go ----------------------------------------------------------

@pytest.mark.parametrize("style,expected", [
    ("path", "http://localhost:9000/test-bucket/a/b.txt?"),
    ("virtual", "http://test-bucket.localhost:9000/a/b.txt?"),
    ("auto", "http://localhost:9000/test-bucket/a/b.txt?"),
])
def test_addressing_style(s3: S3Target, style: str, expected: str) -> None:
    storage = S3Storage(aws_s3_addressing_style=style,
                        aws_s3_endpoint_url="http://localhost:9000")
    assert storage.url("a/b.txt").startswith(expected)


def test_bad_addressing_style_is_improperly_configured(s3: S3Target) -> None:
    with pytest.raises(ImproperlyConfigured, match="AWS_S3_ADDRESSING_STYLE"):
        S3Storage(aws_s3_addressing_style="diagonal")


def test_endpoint_url(s3: S3Target) -> None:
    with FakeS3(lambda m, p: Reply(200, b"from the fake")) as fake:
        storage = S3Storage(aws_s3_endpoint_url=fake.endpoint)
        assert storage.open("some/key").read() == b"from the fake"
        assert fake.requests[0][1] == "/test-bucket/some/key"
    assert S3Storage(aws_s3_endpoint_url="").url("k").startswith(
        "https://test-bucket.s3.us-east-1.amazonaws.com/k?")


def test_key_prefix(s3: S3Target, prefix: str) -> None:
    storage = S3Storage(aws_s3_key_prefix=prefix + "media/")
    storage.save("dir/file.bin", ContentFile(b"prefixed"))
    assert s3.client().get_object(prefix + "media/dir/file.bin")[0] == b"prefixed"
    assert storage.listdir("") == (["dir"], [])
    assert storage.exists("dir/file.bin") and storage.exists("dir")
    assert S3Storage(aws_s3_key_prefix=prefix).exists("media/dir/file.bin")


# ---- headers and ACL of uploads ---------------------------------------------------

def test_bucket_auth_true_means_presigned_urls_and_private_files(s3: S3Target,
                                                                 prefix: str) -> None:
    storage = S3Storage(aws_s3_bucket_auth=True, aws_s3_key_prefix=prefix)
    storage.save("private.txt", ContentFile(b"private"))
    assert "X-Amz-Signature=" in storage.url("private.txt")
    assert not is_public(s3, prefix + "private.txt")
    assert head(s3, prefix + "private.txt")["CacheControl"] == "private,max-age=3600"


def test_bucket_auth_false_means_plain_urls_and_public_files(s3: S3Target, prefix: str) -> None:
    storage = S3Storage(aws_s3_bucket_auth=False, aws_s3_key_prefix=prefix)
    storage.save("public file.bin", ContentFile(b"public"))
    url = storage.url("public file.bin")
    assert "?" not in url and url.endswith("/public%20file.bin")
    assert is_public(s3, prefix + "public file.bin")
    with urllib.request.urlopen(url, timeout=10) as resp:   # no signature needed
        assert resp.read() == b"public"
    assert head(s3, prefix + "public file.bin")["CacheControl"] == "public,max-age=3600"


def test_max_age_seconds(s3: S3Target, prefix: str) -> None:
    storage = S3Storage(aws_s3_max_age_seconds=123, aws_s3_key_prefix=prefix)
    storage.save("m.bin", ContentFile(b"m"))
    assert head(s3, prefix + "m.bin")["CacheControl"] == "private,max-age=123"
    assert "X-Amz-Expires=123" in storage.url("m.bin")


def test_public_url(s3: S3Target) -> None:
    storage = S3Storage(aws_s3_public_url="https://cdn.example.com/media/",
                        aws_s3_bucket_auth=False)
    assert storage.url("a b/ü.txt") == "https://cdn.example.com/media/a%20b/%C3%BC.txt"
    with pytest.raises(ValueError):
        storage.url("a", extra_params={"ResponseContentType": "text/plain"})
    with pytest.raises(ValueError):
        storage.url("a", client_method="put_object")


@pytest.mark.parametrize("on,expected", [(True, "REDUCED_REDUNDANCY"), (False, "STANDARD")])
def test_reduced_redundancy(s3: S3Target, prefix: str, on: bool, expected: str) -> None:
    storage = S3Storage(aws_s3_reduced_redundancy=on, aws_s3_key_prefix=prefix)
    storage.save("rr.bin", ContentFile(b"rr"))
    assert head(s3, prefix + "rr.bin").get("StorageClass", "STANDARD") == expected


@pytest.mark.parametrize("setting,meta_key", [
    ("aws_s3_content_disposition", "ContentDisposition"),
    ("aws_s3_content_language", "ContentLanguage"),
])
def test_content_disposition_and_language_string_or_callable(
        s3: S3Target, prefix: str, setting: str, meta_key: str) -> None:
    S3Storage(**{setting: "inline", "aws_s3_key_prefix": prefix}).save(
        "s.bin", ContentFile(b"s"))
    assert head(s3, prefix + "s.bin")[meta_key] == "inline"
    S3Storage(**{setting: lambda name: f"x-{name}", "aws_s3_key_prefix": prefix}).save(
        "c.bin", ContentFile(b"c"))
    assert head(s3, prefix + "c.bin")[meta_key] == "x-c.bin"


def test_metadata_strings_and_callables(s3: S3Target, prefix: str) -> None:
    storage = S3Storage(aws_s3_metadata={"team": "web", "source": lambda name: name.upper()},
                        aws_s3_key_prefix=prefix)
    storage.save("meta.bin", ContentFile(b"m"))
    assert head(s3, prefix + "meta.bin")["Metadata"] == {"team": "web", "source": "META.BIN"}


@pytest.mark.rgw_differs("SSE AES256 is accepted but no SSE header comes back on HEAD")
def test_encrypt_key_true_is_aes256(s3: S3Target, prefix: str) -> None:
    S3Storage(aws_s3_encrypt_key=True, aws_s3_key_prefix=prefix).save("e.bin", ContentFile(b"e"))
    assert head(s3, prefix + "e.bin")["ServerSideEncryption"] == "AES256"


def test_encrypt_key_kms_with_key_id(s3: S3Target, prefix: str) -> None:
    storage = S3Storage(aws_s3_encrypt_key="aws:kms", aws_s3_kms_encryption_key_id="testkey-1",
                        aws_s3_key_prefix=prefix)
    storage.save("kms.bin", ContentFile(b"kms"))
    meta = head(s3, prefix + "kms.bin")
    assert meta["ServerSideEncryption"] == "aws:kms"
    assert "testkey-1" in meta["SSEKMSKeyId"]
    assert storage.open("kms.bin").read() == b"kms"


def test_gzip_on_and_off(s3: S3Target, prefix: str) -> None:
    text = b"compressible text " * 200
    S3Storage(aws_s3_key_prefix=prefix).save("on.txt", ContentFile(text))
    raw, meta = s3.client().get_object(prefix + "on.txt")
    assert meta["ContentEncoding"] == "gzip" and gzip.decompress(raw) == text
    S3Storage(aws_s3_gzip=False, aws_s3_key_prefix=prefix).save("off.txt", ContentFile(text))
    raw, meta = s3.client().get_object(prefix + "off.txt")
    assert "ContentEncoding" not in meta and raw == text


def test_signature_version(s3: S3Target) -> None:
    assert "X-Amz-Signature" in S3Storage(aws_s3_signature_version="s3v4").url("a")
    assert "X-Amz-Signature" in S3Storage(aws_s3_signature_version=None).url("a")
    with pytest.raises(ImproperlyConfigured, match="AWS_S3_SIGNATURE_VERSION"):
        S3Storage(aws_s3_signature_version="s3")


def test_file_overwrite(s3: S3Target, prefix: str) -> None:
    keep = S3Storage(aws_s3_key_prefix=prefix)
    first = keep.save("same.txt", ContentFile(b"one"))
    second = keep.save("same.txt", ContentFile(b"two"))
    assert first == "same.txt" and second != "same.txt"
    assert keep.open("same.txt").read() == b"one"
    over = S3Storage(aws_s3_file_overwrite=True, aws_s3_key_prefix=prefix)
    assert over.save("same.txt", ContentFile(b"three")) == "same.txt"
    assert over.open("same.txt").read() == b"three"


def test_max_pool_connections_bounds_connections(s3: S3Target) -> None:
    with FakeS3(lambda m, p: Reply(200, b"ok", delay=0.05)) as fake:
        storage = S3Storage(aws_s3_endpoint_url=fake.endpoint, aws_s3_max_pool_connections=2)

        def work() -> None:
            for _ in range(4):
                storage.size("k")
                storage.exists("k")

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(fake.requests) == 48
        # requests share the pool; an open file streams on a connection of its own
        # (README, "Large files"), so open() is not part of this bound
        assert len(fake.connections) <= 2


def test_static_storages_pool_32_connections_by_default(s3: S3Target) -> None:
    """collectstatic uploads AWS_S3_MAX_POOL_CONNECTIONS_STATIC files at a time:
    32 by default (the file storage keeps 0.15's 10); the setting still wins."""
    assert S3Storage().settings.AWS_S3_MAX_POOL_CONNECTIONS == 10
    assert StaticS3Storage().settings.AWS_S3_MAX_POOL_CONNECTIONS == 32
    assert ManifestStaticS3Storage().settings.AWS_S3_MAX_POOL_CONNECTIONS == 32
    with override_settings(AWS_S3_MAX_POOL_CONNECTIONS_STATIC=4):
        assert StaticS3Storage().settings.AWS_S3_MAX_POOL_CONNECTIONS == 4
    with override_settings(AWS_S3_MAX_POOL_CONNECTIONS=4):   # the file storage's only
        assert StaticS3Storage().settings.AWS_S3_MAX_POOL_CONNECTIONS == 32


def test_connect_timeout(s3: S3Target) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(8):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(listener.getsockname())
            fillers.append(f)
        time.sleep(0.2)
        port = listener.getsockname()[1]
        storage = S3Storage(aws_s3_endpoint_url=f"http://127.0.0.1:{port}",
                            aws_s3_connect_timeout=0.3)
        t0 = time.monotonic()
        with pytest.raises(_s3.S3Error):
            storage.exists("k")
        assert time.monotonic() - t0 < 10   # 3 attempts of 0.3 s and backoff, not 60 s
    finally:
        for f in fillers:
            f.close()
        listener.close()


@pytest.mark.parametrize("value", [True, False])
def test_use_threads_is_accepted(s3: S3Target, prefix: str, value: bool) -> None:
    storage = S3Storage(aws_s3_use_threads=value, aws_s3_key_prefix=prefix)
    storage.save("t.bin", ContentFile(b"t"))
    assert storage.open("t.bin").read() == b"t"


# ---- the static storage ------------------------------------------------------------

def test_static_storage_reads_the_static_settings(s3: S3Target, prefix: str) -> None:
    with override_settings(AWS_S3_KEY_PREFIX_STATIC=prefix, AWS_S3_MAX_AGE_SECONDS_STATIC=77,
                           AWS_S3_METADATA_STATIC={"kind": "static"},
                           AWS_S3_CONTENT_LANGUAGE_STATIC="de"):
        storage = StaticS3Storage()
        storage.save("s.bin", ContentFile(b"static"))
        url = storage.url("s.bin")
    meta = head(s3, prefix + "s.bin", STATIC_BUCKET)
    assert meta["CacheControl"] == "public,max-age=77"         # bucket auth off by default
    assert meta["Metadata"] == {"kind": "static"} and meta["ContentLanguage"] == "de"
    assert is_public(s3, prefix + "s.bin", STATIC_BUCKET)
    assert "?" not in url and f"/{STATIC_BUCKET}/{prefix}s.bin" in url


def test_static_storage_bucket_auth_can_be_turned_on(s3: S3Target) -> None:
    with override_settings(AWS_S3_BUCKET_AUTH_STATIC=True):
        assert "X-Amz-Signature" in StaticS3Storage().url("a.css")
    assert "X-Amz-Signature" not in StaticS3Storage().url("a.css")


SENTINELS = {
    "AWS_S3_ADDRESSING_STYLE": "path", "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_S3_KEY_PREFIX": "pfx", "AWS_S3_BUCKET_AUTH": True, "AWS_S3_MAX_AGE_SECONDS": 5,
    "AWS_S3_PUBLIC_URL": "https://cdn.example/", "AWS_S3_REDUCED_REDUNDANCY": True,
    "AWS_S3_CONTENT_DISPOSITION": "inline", "AWS_S3_CONTENT_LANGUAGE": "en",
    "AWS_S3_METADATA": {"a": "b"}, "AWS_S3_ENCRYPT_KEY": True,
    "AWS_S3_KMS_ENCRYPTION_KEY_ID": "k", "AWS_S3_GZIP": False,
    "AWS_S3_GZIP_CONTENT_TYPES": ["text/css"],
    "AWS_S3_OBJECT_PARAMETERS": {"Tagging": "a=b"},
    "AWS_S3_CLOUDFRONT_KEY_ID": "K2JCJMDEHXQW5F",
    "AWS_S3_CLOUDFRONT_KEY": "",     # a PEM made by openssl: cloudfront_key()
    "AWS_S3_SIGNATURE_VERSION": "s3v4", "AWS_S3_FILE_OVERWRITE": True,
    "AWS_S3_MAX_POOL_CONNECTIONS": 3, "AWS_S3_CONNECT_TIMEOUT": 7, "AWS_S3_USE_THREADS": False,
    "AWS_S3_BUCKET_NAME": "other-bucket",
    "AWS_S3_PROFILE": "static-profile", "AWS_S3_ANONYMOUS": True,
    "AWS_S3_READ_TIMEOUT": 7.5, "AWS_S3_MAX_ATTEMPTS": 2, "AWS_S3_VERIFY": False,
    "AWS_S3_PROXY": "http://127.0.0.1:3128", "AWS_S3_PUBLIC_ENDPOINT_URL": "http://localhost:9",
    "AWS_S3_ACL": "bucket-owner-full-control",
    "AWS_S3_MULTIPART_THRESHOLD": 0, "AWS_S3_MULTIPART_CHUNKSIZE": 64 * 1024 * 1024,
}


@functools.cache
def cloudfront_key() -> str:
    return subprocess.run(["openssl", "genrsa", "1024"], capture_output=True, text=True,
                          check=True, timeout=60).stdout


# settings that only work together: each is set with the others
COMPANIONS = {"AWS_S3_CLOUDFRONT_KEY_ID": ("AWS_S3_CLOUDFRONT_KEY", "AWS_S3_PUBLIC_URL"),
              "AWS_S3_CLOUDFRONT_KEY": ("AWS_S3_CLOUDFRONT_KEY_ID", "AWS_S3_PUBLIC_URL")}


@pytest.mark.parametrize("name", sorted(StaticS3Storage.default_s3_settings))
def test_every_file_setting_has_a_static_twin(s3: S3Target, name: str) -> None:
    assert name in SENTINELS, f"no sentinel for {name}"
    sentinels = dict(SENTINELS, AWS_S3_CLOUDFRONT_KEY=cloudfront_key())
    given = {n + "_STATIC": sentinels[n] for n in (name, *COMPANIONS.get(name, ()))}
    with override_settings(**given):
        assert getattr(StaticS3Storage().settings, name) == sentinels[name]
        assert getattr(S3Storage().settings, name) != sentinels[name] or \
            S3Storage.default_s3_settings[name] == sentinels[name]


# ---- AWS_S3_GZIP_CONTENT_TYPES ---------------------------------------------------------

@pytest.mark.parametrize("cls,suffix", [(S3Storage, ""), (StaticS3Storage, "_STATIC")])
def test_gzip_content_types_choose_what_is_compressed(
        s3: S3Target, prefix: str, cls: type[S3Storage], suffix: str) -> None:
    body = b"compressible text, " * 200
    bucket = STATIC_BUCKET if suffix else BUCKET
    with override_settings(**{"AWS_S3_KEY_PREFIX" + suffix: prefix,
                              "AWS_S3_GZIP_CONTENT_TYPES" + suffix: ["text/css", "image/*"]}):
        storage = cls()
        for name in ("a.css", "b.txt", "c.svg", "d.js"):
            storage.save(name, ContentFile(body))
        assert storage.open("b.txt").read() == storage.open("a.css").read() == body
    encodings = {name: head(s3, prefix + name, bucket).get("ContentEncoding")
                 for name in ("a.css", "b.txt", "c.svg", "d.js")}
    assert encodings == {"a.css": "gzip", "b.txt": None, "c.svg": "gzip", "d.js": None}


@pytest.mark.parametrize("value", ["text/css", ["text"], ["text/css", 3], [" text/css"],
                                   ["*/*"], {"text/css": 1}])
def test_gzip_content_types_refuse_what_is_not_a_list_of_types(s3: S3Target,
                                                               value: object) -> None:
    with pytest.raises(ImproperlyConfigured, match="AWS_S3_GZIP_CONTENT_TYPES"):
        S3Storage(aws_s3_gzip_content_types=value)
