"""AWS_S3_ACL: the x-amz-acl header that save, copy and sync_meta send (or not).

Over HTTP: a FakeS3 that records every request's headers, one that refuses ACLs as a
bucket with Object Ownership "bucket owner enforced" does, and moto for the ACL an
object really ends up with.
"""
from __future__ import annotations

import urllib.request
from typing import Any, Iterator

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.test import override_settings

from django_s3_storage import _s3
from django_s3_storage.storage import S3Storage, StaticS3Storage

from conftest import S3Target
from servers import FakeS3, Reply

LISTING = (b'<?xml version="1.0" encoding="UTF-8"?>'
           b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
           b"<Name>b</Name><Prefix></Prefix><MaxKeys>1000</MaxKeys>"
           b"<IsTruncated>false</IsTruncated><Contents><Key>old.txt</Key>"
           b"<LastModified>2024-01-01T00:00:00.000Z</LastModified><ETag>&quot;e&quot;</ETag>"
           b"<Size>3</Size><StorageClass>STANDARD</StorageClass></Contents>"
           b"</ListBucketResult>")
EMPTY_LISTING = (b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                 b"<IsTruncated>false</IsTruncated></ListBucketResult>")
COPIED = (b"<CopyObjectResult><ETag>&quot;e&quot;</ETag>"
          b"<LastModified>2024-01-01T00:00:00.000Z</LastModified></CopyObjectResult>")
ACL_REFUSED = (b"<Error><Code>AccessControlListNotSupported</Code>"
               b"<Message>The bucket does not allow ACLs</Message>"
               b"<RequestId>R1</RequestId></Error>")


class Bucket:
    """A FakeS3 with one object, old.txt; with refuse_acl, every request that carries
    x-amz-acl is answered 400 AccessControlListNotSupported, as AWS does."""

    def __init__(self, refuse_acl: bool = False) -> None:
        self.refuse_acl = refuse_acl
        self.fake = FakeS3(self.reply)

    def reply(self, method: str, path: str) -> Reply:
        headers = self.last_headers()
        if self.refuse_acl and "x-amz-acl" in headers:
            return Reply(400, ACL_REFUSED, {"Content-Type": "application/xml"})
        if method == "GET" and "list-type=2" in path:
            # the whole bucket for sync_meta; nothing under a "directory" for exists()
            body = LISTING if "prefix=" not in path else EMPTY_LISTING
            return Reply(200, body, {"Content-Type": "application/xml"})
        if method == "HEAD" and path.endswith("/old.txt"):
            return Reply(200, b"", {"Content-Type": "text/plain", "ETag": '"e"'})
        if method in ("HEAD", "GET"):
            return Reply(404, b"", {})   # exists() is False: save() keeps the name
        if method == "PUT" and "x-amz-copy-source" in headers:
            return Reply(200, COPIED, {"Content-Type": "application/xml"})
        return Reply(200, b"", {"ETag": '"e"'})

    def last_headers(self) -> dict[str, str]:
        with self.fake.lock:
            return {k.lower(): v for k, v in self.fake.requests[-1][2].items()}

    def puts(self) -> list[dict[str, str]]:
        """The headers of every PUT so far (saves and copies), lower-cased names."""
        with self.fake.lock:
            return [{k.lower(): v for k, v in h.items()}
                    for m, _p, h in self.fake.requests if m == "PUT"]

    def storage(self, cls: type[S3Storage] = S3Storage, **kwargs: Any) -> S3Storage:
        kwargs.setdefault("aws_s3_bucket_name", "b")
        return cls(aws_s3_endpoint_url=self.fake.endpoint, aws_access_key_id="AKIDEXAMPLE",
                   aws_secret_access_key="secret", **kwargs)


@pytest.fixture
def bucket() -> Iterator[Bucket]:
    b = Bucket()
    try:
        yield b
    finally:
        b.fake.stop()


@pytest.fixture
def acl_less_bucket() -> Iterator[Bucket]:
    b = Bucket(refuse_acl=True)
    try:
        yield b
    finally:
        b.fake.stop()


NOT_SENT = object()
CHOICES = [
    # (AWS_S3_BUCKET_AUTH, AWS_S3_ACL or NOT_SENT for the default, x-amz-acl sent or None)
    (True, NOT_SENT, "private"),
    (False, NOT_SENT, "public-read"),
    (True, "auto", "private"),
    (False, "auto", "public-read"),
    (True, None, None),
    (False, None, None),
    (True, "bucket-owner-full-control", "bucket-owner-full-control"),
    (False, "private", "private"),
    (True, "public-read", "public-read"),
    (True, "authenticated-read", "authenticated-read"),
]


@pytest.mark.parametrize("auth,acl,expected", CHOICES)
def test_save_copy_and_sync_meta_send_the_acl_of_the_setting(
        bucket: Bucket, auth: bool, acl: Any, expected: str | None) -> None:
    kwargs: dict[str, Any] = {"aws_s3_bucket_auth": auth}
    if acl is not NOT_SENT:
        kwargs["aws_s3_acl"] = acl
    storage = bucket.storage(**kwargs)
    storage.save("new.txt", ContentFile(b"new"))
    storage.copy("old.txt", "copy.txt")
    assert list(storage.sync_meta_iter()) == ["old.txt"]
    save, copy, sync = bucket.puts()
    assert "x-amz-copy-source" not in save
    assert copy["x-amz-copy-source"] == "/b/old.txt" and "x-amz-metadata-directive" not in copy
    assert sync["x-amz-copy-source"] == "/b/old.txt"
    assert sync["x-amz-metadata-directive"] == "REPLACE"
    for sent in (save, copy, sync):
        assert sent.get("x-amz-acl") == expected
        if expected is None:
            # not even an empty header, and nothing signed for it
            assert "x-amz-acl" not in sent
            assert "x-amz-acl" not in sent["authorization"]


def test_static_storage_has_its_own_acl_setting(bucket: Bucket) -> None:
    with override_settings(AWS_S3_ACL_STATIC=None, AWS_S3_ACL="bucket-owner-read"):
        bucket.storage(StaticS3Storage, aws_s3_bucket_name="b").save(
            "s.css", ContentFile(b"s"))
        bucket.storage(S3Storage).save("m.txt", ContentFile(b"m"))
    with override_settings(AWS_S3_ACL=None):
        bucket.storage(StaticS3Storage).save("t.css", ContentFile(b"t"))
    with override_settings(AWS_S3_ACL_STATIC="public-read-write"):
        bucket.storage(StaticS3Storage).save("u.css", ContentFile(b"u"))
    static_none, media, static_default, static_set = bucket.puts()
    assert "x-amz-acl" not in static_none
    assert media["x-amz-acl"] == "bucket-owner-read"
    assert static_default["x-amz-acl"] == "public-read"   # StaticS3Storage: no bucket auth
    assert static_set["x-amz-acl"] == "public-read-write"


@pytest.mark.parametrize("cls,setting", [(S3Storage, "AWS_S3_ACL"),
                                         (StaticS3Storage, "AWS_S3_ACL_STATIC")])
@pytest.mark.parametrize("value", ["public", "Private", "", "log-delivery-write",
                                   "private\r\nx-amz-grant-full-control: id=1", 1, True])
def test_unknown_acl_is_improperly_configured(s3: S3Target, cls: type, setting: str,
                                              value: Any) -> None:
    with override_settings(**{setting: value}):
        with pytest.raises(ImproperlyConfigured, match=setting) as info:
            cls()
    assert "bucket-owner-full-control" in str(info.value)   # the choices are listed
    assert "\r" not in str(info.value) and "\n" not in str(info.value)


def test_a_bucket_that_refuses_acls_takes_files_with_acl_none(acl_less_bucket: Bucket) -> None:
    default = acl_less_bucket.storage()
    with pytest.raises(_s3.S3Error) as info:
        default.save("refused.txt", ContentFile(b"x"))
    assert info.value.code == "AccessControlListNotSupported" and info.value.status == 400
    storage = acl_less_bucket.storage(aws_s3_acl=None)
    assert storage.save("taken.txt", ContentFile(b"x")) == "taken.txt"
    assert storage.copy("old.txt", "copy.txt") == "copy.txt"
    storage.rename("old.txt", "renamed.txt")
    assert list(storage.sync_meta_iter()) == ["old.txt"]
    static = acl_less_bucket.storage(StaticS3Storage, aws_s3_acl=None)
    static.save("app.css", ContentFile(b"body{}"))
    refused, *accepted = acl_less_bucket.puts()
    assert refused["x-amz-acl"] == "private"
    assert len(accepted) == 5 and all("x-amz-acl" not in h for h in accepted)


# ---- what the ACL does on a real S3 server -----------------------------------------

def is_public(s3: S3Target, key: str) -> bool:
    grants = s3.boto().get_object_acl(Bucket="test-bucket", Key=key)["Grants"]
    return any(g["Grantee"].get("URI", "").endswith("/AllUsers") for g in grants)


def test_acl_setting_decides_what_an_object_allows(s3: S3Target, prefix: str) -> None:
    S3Storage(aws_s3_key_prefix=prefix, aws_s3_bucket_auth=False,
              aws_s3_acl=None).save("none.txt", ContentFile(b"n"))
    assert not is_public(s3, prefix + "none.txt")           # the bucket's default: private
    S3Storage(aws_s3_key_prefix=prefix, aws_s3_bucket_auth=True,
              aws_s3_acl="public-read").save("pub.txt", ContentFile(b"p"))
    assert is_public(s3, prefix + "pub.txt")
    S3Storage(aws_s3_key_prefix=prefix, aws_s3_bucket_auth=False).save(
        "auto.txt", ContentFile(b"a"))
    assert is_public(s3, prefix + "auto.txt")


def test_a_copy_gets_the_acl_of_the_setting(s3: S3Target, prefix: str) -> None:
    public = S3Storage(aws_s3_key_prefix=prefix, aws_s3_bucket_auth=False)
    public.save("src.txt", ContentFile(b"copied"))
    public.copy("src.txt", "dst.txt")
    assert is_public(s3, prefix + "dst.txt")   # S3 itself copies no ACL
    with urllib.request.urlopen(public.url("dst.txt"), timeout=10) as resp:
        assert resp.read() == b"copied"
    S3Storage(aws_s3_key_prefix=prefix, aws_s3_acl=None).copy("src.txt", "plain.txt")
    assert not is_public(s3, prefix + "plain.txt")
