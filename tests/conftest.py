"""Fixtures: an S3 server on 127.0.0.1 for the session, Clients and storages on it.

S3_TEST_BACKEND=moto (default): moto[server] is started here, in its own process.
S3_TEST_BACKEND=rgw: Ceph RGW, started by scripts/test-all, is reached through
S3_TEST_ENDPOINT_URL, S3_TEST_ACCESS_KEY and S3_TEST_SECRET_KEY. Tests that hit a
documented difference of RGW carry @pytest.mark.rgw_differs("why"); on RGW they
are expected to fail (strictly: if they pass, the mark is wrong).
"""
from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import pytest


def _isolate_from_the_machine() -> None:
    """No test may find the developer's or the runner's AWS credentials, nor reach
    the instance metadata service, a container agent or a real STS endpoint: the
    credential chain sees an empty machine unless a test sets a source itself."""
    for name in list(os.environ):
        if name.startswith("AWS_CONTAINER_") or name in (
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN",
                "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_REGION",
                "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_STS_REGIONAL_ENDPOINTS"):
            del os.environ[name]
    empty = tempfile.mkdtemp(prefix="s3-tests-no-aws-")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.path.join(empty, "no-credentials")
    os.environ["AWS_CONFIG_FILE"] = os.path.join(empty, "no-config")
    # belt and braces: should a test enable a role, STS and IMDS are a closed port
    os.environ["AWS_ENDPOINT_URL_STS"] = "http://127.0.0.1:9"
    os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = "http://127.0.0.1:9"


_isolate_from_the_machine()

from django_s3_storage import _s3  # noqa: E402

from servers import MotoServer, start_auth_moto  # noqa: E402

BACKEND = os.environ.get("S3_TEST_BACKEND", "moto")
BUCKET = "test-bucket"
STATIC_BUCKET = "test-bucket-static"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "rgw_differs(reason): hits a documented RGW difference")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if BACKEND != "rgw":
        return
    for item in items:
        mark = item.get_closest_marker("rgw_differs")
        if mark is not None:
            item.add_marker(pytest.mark.xfail(reason=f"RGW: {mark.args[0]}", strict=True))


@dataclass
class S3Target:
    endpoint: str
    access_key: str
    secret_key: str
    backend: str

    def boto(self) -> Any:
        import boto3  # a test dependency (moto[server] needs it anyway)
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key,
                            config=Config(s3={"addressing_style": "path"}))

    def create_bucket(self, name: str) -> None:
        s3 = self.boto()
        try:
            s3.create_bucket(Bucket=name)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass

    def client(self, bucket: str = BUCKET, **kwargs: Any) -> _s3.Client:
        kwargs.setdefault("access_key", self.access_key)
        kwargs.setdefault("secret_key", self.secret_key)
        kwargs.setdefault("connect_timeout", 5)
        kwargs.setdefault("read_timeout", 30)
        return _s3.Client(bucket, endpoint_url=self.endpoint, **kwargs)


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Target]:
    server = None
    if BACKEND == "rgw":
        target = S3Target(os.environ["S3_TEST_ENDPOINT_URL"], os.environ["S3_TEST_ACCESS_KEY"],
                          os.environ["S3_TEST_SECRET_KEY"], "rgw")
    else:
        server = MotoServer()
        target = S3Target(server.endpoint, "testing", "testing", "moto")
    try:
        for bucket in (BUCKET, STATIC_BUCKET):
            target.create_bucket(bucket)
        # Django's settings were loaded before the server existed: point them at it
        # the way override_settings does, so storages made at import time (a model
        # field's) hear of it; and let subprocesses (legacy settings) find it too.
        from django.test import override_settings

        session_settings = override_settings(
            AWS_S3_ENDPOINT_URL=target.endpoint, AWS_S3_ENDPOINT_URL_STATIC=target.endpoint,
            AWS_ACCESS_KEY_ID=target.access_key, AWS_SECRET_ACCESS_KEY=target.secret_key)
        session_settings.enable()
        os.environ.update(S3_TEST_ENDPOINT_URL=target.endpoint,
                          S3_TEST_ACCESS_KEY=target.access_key,
                          S3_TEST_SECRET_KEY=target.secret_key)
        yield target
    finally:
        if server is not None:
            server.stop()


@pytest.fixture(scope="session")
def signing_server(s3: S3Target) -> Iterator[tuple[str, str, str, str]]:
    """(endpoint, access key, secret key, bucket) of a server that verifies every
    signature: RGW itself, or a moto started with INITIAL_NO_AUTH_ACTION_COUNT and
    a real IAM user's key pair."""
    if s3.backend == "rgw":
        s3.create_bucket("auth-bucket")
        yield s3.endpoint, s3.access_key, s3.secret_key, "auth-bucket"
        return
    server, access, secret = start_auth_moto()
    try:
        S3Target(server.endpoint, access, secret, "moto").create_bucket("auth-bucket")
        yield server.endpoint, access, secret, "auth-bucket"
    finally:
        server.stop()


@pytest.fixture
def client(s3: S3Target) -> _s3.Client:
    return s3.client()


@pytest.fixture
def prefix() -> str:
    """A key prefix of the test's own, so tests never see each other's keys."""
    return f"t-{uuid.uuid4().hex[:12]}/"
