"""Fixtures: S3 servers on 127.0.0.1 (moto in its own process), and Clients on them."""
from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from django_s3_storage import _s3

from servers import MotoServer, start_auth_moto

BUCKET = "test-bucket"


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    server.create_bucket(BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def auth_moto() -> Iterator[tuple[MotoServer, str, str]]:
    """A moto that verifies every signature, with a real IAM user's key pair."""
    server, access, secret = start_auth_moto()
    import boto3

    boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                 aws_access_key_id=access, aws_secret_access_key=secret
                 ).create_bucket(Bucket="auth-bucket")
    yield server, access, secret
    server.stop()


@pytest.fixture
def client(moto: MotoServer) -> _s3.Client:
    return _s3.Client(BUCKET, endpoint_url=moto.endpoint, access_key="testing",
                      secret_key="testing", connect_timeout=5, read_timeout=30)


@pytest.fixture
def prefix() -> str:
    """A key prefix of the test's own, so tests never see each other's keys."""
    return f"t-{uuid.uuid4().hex[:12]}/"
