"""AWS_S3_OBJECT_PARAMETERS and the get_object_parameters(name) hook, as
django-storages has them: boto3's object parameters (tagging, storage class,
Expires, cache control, content type, metadata, ...) on every upload (single PUT
and multipart), on open(name, "wb") and on s3_sync_meta's copies; what the storage
cannot send is refused naming the parameter, and the C client's headers= refuses
headers that the request or another argument sets."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.test import override_settings

from django_s3_storage import _s3
from django_s3_storage.storage import S3Storage, StaticS3Storage

from conftest import BACKEND, BUCKET, STATIC_BUCKET, S3Target

EXPIRES = datetime(2031, 5, 17, 9, 30, tzinfo=timezone.utc)
# RGW knows STANDARD alone unless its placement says more
STORAGE_CLASS = "STANDARD" if BACKEND == "rgw" else "STANDARD_IA"
# Ceph RGW 16 keeps no tags from a multipart upload's x-amz-tagging, nor from a copy's
# (README.rst, "S3-compatible servers"); AWS and moto do
TAGS_ON_MULTIPART_AND_COPY = BACKEND != "rgw"


def tags(s3: S3Target, key: str, bucket: str = BUCKET) -> dict[str, str]:
    reply = s3.boto().get_object_tagging(Bucket=bucket, Key=key)
    # RGW answers an object with broken tags with an empty document: no TagSet
    return {t["Key"]: t["Value"] for t in reply.get("TagSet", [])}


def head(s3: S3Target, key: str, bucket: str = BUCKET) -> dict[str, Any]:
    return dict(s3.boto().head_object(Bucket=bucket, Key=key))


@pytest.mark.parametrize("cls,suffix,bucket", [(S3Storage, "", BUCKET),
                                               (StaticS3Storage, "_STATIC", STATIC_BUCKET)])
def test_the_setting_reaches_every_upload(s3: S3Target, prefix: str, cls: type[S3Storage],
                                          suffix: str, bucket: str) -> None:
    params = {"Tagging": {"team": "web", "env": "prod x"}, "Expires": EXPIRES,
              "StorageClass": STORAGE_CLASS, "Metadata": {"origin": "params"},
              "CacheControl": "no-cache", "ContentDisposition": "attachment"}
    with override_settings(**{f"AWS_S3_KEY_PREFIX{suffix}": prefix,
                              f"AWS_S3_OBJECT_PARAMETERS{suffix}": params,
                              f"AWS_S3_METADATA{suffix}": {"site": "one"},
                              f"AWS_S3_MULTIPART_THRESHOLD{suffix}": 5 * 1024 * 1024,
                              f"AWS_S3_MULTIPART_CHUNKSIZE{suffix}": 5 * 1024 * 1024}):
        storage = cls()
        storage.save("small.bin", ContentFile(b"x" * 100))
        storage.save("big.bin", ContentFile(b"y" * (6 * 1024 * 1024)))   # multipart
        with storage.open("written.bin", "wb") as f:
            f.write(b"z" * 100)
    for name in ("small.bin", "big.bin", "written.bin"):
        key = prefix + name
        meta = head(s3, key, bucket)
        tagged = name != "big.bin" or TAGS_ON_MULTIPART_AND_COPY
        assert tags(s3, key, bucket) == ({"team": "web", "env": "prod x"} if tagged else {})
        assert meta["Metadata"] == {"site": "one", "origin": "params"}, name
        assert meta["CacheControl"] == "no-cache" and meta["ContentDisposition"] == "attachment"
        assert meta["Expires"] == EXPIRES, name
        assert meta.get("StorageClass", "STANDARD") == STORAGE_CLASS, name


class PerName(S3Storage):
    def get_object_parameters(self, name: str) -> dict[str, Any]:
        params = super().get_object_parameters(name)
        if name.endswith(".csv"):
            params.update(ContentType="text/csv; charset=utf-8", Tagging="kind=report")
        return params


def test_the_hook_chooses_per_name_and_its_content_type_wins(s3: S3Target,
                                                              prefix: str) -> None:
    with override_settings(AWS_S3_KEY_PREFIX=prefix, AWS_S3_GZIP=False):
        storage = PerName()
        storage.save("r.csv", ContentFile(b"a,b\n"))
        storage.save("r.txt", ContentFile(b"a,b\n"))
    assert head(s3, prefix + "r.csv")["ContentType"] == "text/csv; charset=utf-8"
    assert tags(s3, prefix + "r.csv") == {"kind": "report"}
    assert head(s3, prefix + "r.txt")["ContentType"] == "text/plain"
    assert tags(s3, prefix + "r.txt") == {}


def test_sync_meta_replaces_the_tags(s3: S3Target, prefix: str) -> None:
    with override_settings(AWS_S3_KEY_PREFIX=prefix.rstrip("/")):
        storage = S3Storage()
        storage.save("t.bin", ContentFile(b"t"))
        assert tags(s3, prefix + "t.bin") == {}
        with override_settings(AWS_S3_OBJECT_PARAMETERS={"Tagging": "v=2"}):
            assert list(S3Storage().sync_meta_iter()) == ["t.bin"]
    assert tags(s3, prefix + "t.bin") == ({"v": "2"} if TAGS_ON_MULTIPART_AND_COPY else {})


@pytest.mark.parametrize("params,match", [
    ({"Bogus": "1"}, r"AWS_S3_OBJECT_PARAMETERS\['Bogus'\] is not supported"),
    ({"ContentEncoding": "br"}, r"\['ContentEncoding'\].*AWS_S3_GZIP"),
    ({"SSECustomerKey": "k"}, "SSE-C"),
    ({"Tagging": "a=b\r\nX-Evil: 1"}, r"\['Tagging'\]"),
    ({"StorageClass": 3}, r"\['StorageClass'\] must be a str"),
    ({"Expires": datetime(2031, 1, 1)}, "aware datetime"),
    ({"Metadata": {"a": 1}}, r"\['Metadata'\] must be a dict of str to str"),
    ({"Metadata": {"bad name": "v"}}, r"\['Metadata'\] name 'bad name' is not a valid"),
    ({"Metadata": {"n": "caf\u00e9"}}, r"\['Metadata'\]\['n'\] holds a non-ASCII"),
    ({"RequestPayer": "requester"}, "every request"),
    ("Tagging=a", "must be a dict"),
])
def test_what_cannot_be_sent_is_refused_naming_the_parameter(s3: S3Target, params: Any,
                                                             match: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=match):
        S3Storage(aws_s3_object_parameters=params)
    with override_settings(AWS_S3_OBJECT_PARAMETERS_STATIC=params), \
            pytest.raises(ImproperlyConfigured, match="AWS_S3_OBJECT_PARAMETERS_STATIC"):
        StaticS3Storage()


def test_a_bad_hook_result_is_an_error_before_anything_is_sent(s3: S3Target) -> None:
    class Bad(S3Storage):
        def get_object_parameters(self, name: str) -> dict[str, Any]:
            return {"Tagging": 5}

    with pytest.raises(ValueError, match=r"Bad.get_object_parameters\('x.bin'\)\['Tagging'\]"):
        Bad().save("x.bin", ContentFile(b"x"))


@pytest.mark.parametrize("name", ["Authorization", "host", "Content-Type", "content-md5",
                                  "x-amz-meta-a", "x-amz-date", "X-Amz-Content-Sha256",
                                  "x-amz-copy-source-range", "bad name", "", "é"])
def test_the_client_refuses_headers_the_request_or_an_argument_sets(client: _s3.Client,
                                                                    name: str) -> None:
    with pytest.raises(ValueError, match="headers"):
        client.put_object("k-headers", b"x", headers={name: "v"})


def test_the_client_refuses_non_ascii_header_values(client: _s3.Client) -> None:
    with pytest.raises(ValueError, match="not US-ASCII"):
        client.put_object("k-headers", b"x", headers={"x-amz-tagging": "a=caf\u00e9"})


def test_the_client_sends_other_headers_signed(s3: S3Target, client: _s3.Client,
                                               prefix: str) -> None:
    client.put_object(prefix + "h.bin", b"h", headers={"x-amz-tagging": "a=1",
                                                       "Expires": "Thu, 01 Jan 2037 00:00:00 GMT"})
    assert tags(s3, prefix + "h.bin") == {"a": "1"}
    assert head(s3, prefix + "h.bin")["Expires"] == datetime(2037, 1, 1, tzinfo=timezone.utc)
