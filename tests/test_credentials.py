"""The credential chain over real sockets on 127.0.0.1: moto's STS, and stand-ins
for the instance metadata service, the container endpoint and STS that count
their calls (tests/cred_servers.py). conftest.py keeps the machine's own AWS
configuration out and points IMDS and STS at a closed local port by default."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from django_s3_storage import _s3

from conftest import S3Target
from cred_servers import (Answer, Blackhole, ContainerServer, CredServer, Creds, ImdsServer,
                          Seen, StsServer, creds_json, sts_xml)
from servers import FakeS3, MotoServer, Reply, Seen, self_signed_cert

EXPIRED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ExpiredToken</Code>'
           b"<Message>The provided token has expired.</Message><RequestId>r</RequestId></Error>")
ROLE = "arn:aws:iam::123456789012:role/storage-role"


def key_id(seen: Seen) -> str:
    m = re.search(r"Credential=([^/]+)/", seen.headers.get("Authorization", ""))
    return m.group(1) if m else ""


def key_ids(server: CredServer) -> list[str]:
    with server.lock:
        return [key_id(s) for s in server.seen]


def make_client(endpoint: str, **kwargs: Any) -> _s3.Client:
    kwargs.setdefault("connect_timeout", 5)
    kwargs.setdefault("read_timeout", 10)
    kwargs.setdefault("max_attempts", 1)
    return _s3.Client("b", endpoint_url=endpoint, **kwargs)


@pytest.fixture
def fake_s3() -> Iterator[CredServer]:
    """An S3 stand-in that answers 200 "ok" to everything and records the headers."""
    with CredServer(lambda seen: Answer(200, b"ok")) as server:
        yield server


@pytest.fixture
def aws_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Writes ~/.aws/credentials and ~/.aws/config stand-ins and points the env at them."""
    def write(credentials: str = "", config: str = "") -> None:
        (tmp_path / "credentials").write_text(credentials)
        (tmp_path / "config").write_text(config)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    return write


@pytest.fixture(scope="module")
def moto_endpoint(s3: S3Target) -> Iterator[str]:
    """moto's server, which answers STS as well as S3."""
    if s3.backend == "moto":
        yield s3.endpoint
        return
    server = MotoServer()
    try:
        yield server.endpoint
    finally:
        server.stop()


def use_container(monkeypatch: pytest.MonkeyPatch, server: CredServer, path: str = "/creds"
                  ) -> None:
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", server.endpoint + path)


def use_imds(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint)


def error_texts(err: BaseException) -> str:
    return " ".join([str(err), repr(err), str(err.args), str(getattr(err, "message", ""))])


# ---- the order of the chain ------------------------------------------------------

def test_each_source_shadows_the_ones_after_it(
        fake_s3: CredServer, aws_files: Callable[..., None], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "web-identity-token"
    token_file.write_text("header.payload.signature")
    with StsServer([Creds("ASIAWEBIDENTITY01", "web-secret", "web-token")]) as sts, \
            ContainerServer([Creds("ASIACONTAINER0001", "ctr-secret", "ctr-token")]) as ctr, \
            ImdsServer([Creds("ASIAIMDS000000001", "imds-secret", "imds-token")]) as imds:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENVIRONMENT01")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
        aws_files(credentials="[default]\naws_access_key_id = AKIDPROFILE000001\n"
                              "aws_secret_access_key = profile-secret\n")
        monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
        monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.endpoint)
        use_container(monkeypatch, ctr)
        use_imds(monkeypatch, imds.endpoint)

        def signer(**kwargs: Any) -> str:
            make_client(fake_s3.endpoint, **kwargs).get_object("k")
            return key_ids(fake_s3)[-1]

        assert signer(access_key="AKIDEXPLICIT00001", secret_key="s") == "AKIDEXPLICIT00001"
        assert signer() == "AKIDENVIRONMENT01"
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        assert signer() == "AKIDPROFILE000001"
        assert (len(sts.seen), ctr.count(), imds.count()) == (0, 0, 0)
        aws_files()   # empty files: no profile
        assert signer() == "ASIAWEBIDENTITY01"
        assert (len(sts.seen), ctr.count(), imds.count()) == (1, 0, 0)
        monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE")
        assert signer() == "ASIACONTAINER0001"
        assert imds.count() == 0
        monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        assert signer() == "ASIAIMDS000000001"
        assert fake_s3.seen[-1].headers["x-amz-security-token"] == "imds-token"


def test_resolution_waits_for_the_first_request(fake_s3: CredServer,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with ContainerServer([Creds("ASIACONTAINER0001", "s", "t")]) as ctr:
        use_container(monkeypatch, ctr)
        client = make_client(fake_s3.endpoint)
        assert ctr.count() == 0                        # not at construction
        client.get_object("k")
        client.get_object("k")
        assert ctr.count() == 1                        # once, then cached
        assert key_ids(fake_s3) == ["ASIACONTAINER0001"] * 2


def test_no_credentials_is_a_clear_error_naming_every_source(fake_s3: CredServer) -> None:
    client = make_client(fake_s3.endpoint)
    with pytest.raises(_s3.S3Error) as info:
        client.get_object("k")
    err = info.value
    assert isinstance(err, OSError) and err.code == "NoCredentials"
    text = str(err)
    for source in ("settings", "environment", "shared files", "profile 'default'",
                   "web identity", "container", "instance metadata", "AWS_S3_ANONYMOUS"):
        assert source in text, source
    assert fake_s3.seen == []                          # nothing went out unsigned
    with pytest.raises(_s3.S3Error, match="NoCredentials"):
        client.presign("GET", "k")


def test_anonymous_sends_no_authorization(fake_s3: CredServer,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENVIRONMENT01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    client = make_client(fake_s3.endpoint, anonymous=True)
    assert client.get_object("k")[0] == b"ok"
    assert "Authorization" not in fake_s3.seen[0].headers
    assert client.presign("GET", "k") == fake_s3.endpoint + "/b/k"
    assert "anonymous" in repr(client)
    with pytest.raises(ValueError, match="anonymous"):
        make_client(fake_s3.endpoint, anonymous=True, access_key="a", secret_key="b")


def test_the_source_is_logged_once_without_keys(fake_s3: CredServer,
                                                monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENVIRONMENT01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-value")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-token-value")
    caplog.set_level(logging.INFO, logger="django_s3_storage")
    client = make_client(fake_s3.endpoint)
    client.get_object("k")
    client.get_object("k")
    messages = [r.getMessage() for r in caplog.records if r.name == "django_s3_storage"]
    assert messages == ["credentials from the environment"]
    assert fake_s3.seen[0].headers["x-amz-security-token"] == "env-token-value"
    assert "x-amz-security-token" in fake_s3.seen[0].headers["Authorization"]


# ---- values are checked before they are used ------------------------------------

@pytest.mark.parametrize("var,value,named", [
    ("AWS_SESSION_TOKEN", "SECRET-TOKEN\r\nX-Injected: 1", "AWS_SESSION_TOKEN in the environment"),
    ("AWS_ACCESS_KEY_ID", "AKID WITH SPACE", "AWS_ACCESS_KEY_ID in the environment"),
    ("AWS_SECRET_ACCESS_KEY", "SECRET\x01VALUE", "AWS_SECRET_ACCESS_KEY in the environment"),
])
def test_bad_values_from_the_environment_are_refused_by_name(
        fake_s3: CredServer, monkeypatch: pytest.MonkeyPatch, var: str, value: str,
        named: str) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENVIRONMENT01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv(var, value)
    with pytest.raises(_s3.S3Error) as info:
        make_client(fake_s3.endpoint).get_object("k")
    assert info.value.code == "CredentialsError" and named in str(info.value)
    assert value not in error_texts(info.value) and value.split()[0] not in error_texts(info.value)
    assert fake_s3.seen == []


def test_error_texts_carry_no_control_characters(fake_s3: CredServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/x\nFORGED: line")
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
    with pytest.raises(_s3.S3Error) as info:
        make_client(fake_s3.endpoint).get_object("k")
    assert "/nonexistent/x?FORGED: line does not exist" in str(info.value)
    assert "\n" not in str(info.value)


def test_half_a_key_pair_in_the_environment_is_an_error(
        fake_s3: CredServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENVIRONMENT01")
    with pytest.raises(_s3.S3Error, match="AWS_SECRET_ACCESS_KEY is not"):
        make_client(fake_s3.endpoint).get_object("k")


def test_bad_explicit_keys_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"access_key \(AWS_ACCESS_KEY_ID\)") as info:
        _s3.Client("b", access_key="AKID\nINJECT", secret_key="s")
    assert "INJECT" not in str(info.value)
    with pytest.raises(ValueError, match="session_token") as info:
        _s3.Client("b", access_key="a", secret_key="s", session_token="QZXQ\x01QZXQ")
    assert "QZXQ" not in str(info.value)


# ---- shared files ------------------------------------------------------------------

def test_profile_from_the_client_then_aws_profile_then_default(
        fake_s3: CredServer, aws_files: Callable[..., None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    aws_files(credentials="# the developer's keys\n"
                          "[default]\naws_access_key_id=AKIDDEFAULT000001\n"
                          "aws_secret_access_key=d\n"
                          "[ci]\naws_access_key_id = AKIDCIPROFILE0001\n"
                          "aws_secret_access_key = c\naws_session_token = ci-token\n",
              config="[profile cfgonly]\naws_access_key_id = AKIDCONFIGFILE001\n"
                     "aws_secret_access_key = x\ns3 =\n  addressing_style = path\n")

    def signer(**kwargs: Any) -> str:
        make_client(fake_s3.endpoint, **kwargs).get_object("k")
        return key_ids(fake_s3)[-1]

    assert signer() == "AKIDDEFAULT000001"
    monkeypatch.setenv("AWS_PROFILE", "ci")
    assert signer() == "AKIDCIPROFILE0001"
    assert fake_s3.seen[-1].headers["x-amz-security-token"] == "ci-token"
    assert signer(profile="cfgonly") == "AKIDCONFIGFILE001"     # the setting beats AWS_PROFILE
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENVIRONMENT01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    assert signer() == "AKIDENVIRONMENT01"                    # the environment beats AWS_PROFILE
    assert signer(profile="cfgonly") == "AKIDCONFIGFILE001"   # a named profile beats both
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(_s3.S3Error, match="profile 'missing' is in neither") as info:
        signer(profile="missing")
    assert info.value.code == "CredentialsError"


def test_region_comes_from_the_environment_then_the_profile(
        aws_files: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> None:
    aws_files(config="[default]\nregion = ap-south-1\n[profile eu]\nregion = eu-central-1\n")
    assert _s3.Client("b").region == "ap-south-1"
    assert _s3.Client("b", profile="eu").region == "eu-central-1"
    assert _s3.Client("media-bucket", profile="eu").url("k") == \
        "https://media-bucket.s3.eu-central-1.amazonaws.com/k"
    monkeypatch.setenv("AWS_PROFILE", "eu")
    assert _s3.Client("b").region == "eu-central-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "sa-east-1")
    assert _s3.Client("b", profile="eu").region == "sa-east-1"
    monkeypatch.setenv("AWS_REGION", "ca-central-1")
    assert _s3.Client("b").region == "ca-central-1"
    assert _s3.Client("b", region="us-west-2").region == "us-west-2"
    monkeypatch.setenv("AWS_REGION", "eu-west-1\r\nX-Injected: 1")
    with pytest.raises(ValueError, match="AWS_REGION in the environment"):
        _s3.Client("b")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    aws_files()
    assert _s3.Client("b").region == "us-east-1"


def test_credential_process(fake_s3: CredServer, aws_files: Callable[..., None], tmp_path: Path,
                            caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "process-output.json"
    out.write_text(json.dumps({"Version": 1, "AccessKeyId": "ASIAPROCESS000001",
                               "SecretAccessKey": "process-secret",
                               "SessionToken": "process-token",
                               "Expiration": "2099-01-01T00:00:00Z"}))
    aws_files(config=f"[profile tool]\ncredential_process = cat '{out}'\n"
                     "[profile failing]\ncredential_process = sh -c 'exit 3'\n"
                     "[profile chatty]\ncredential_process = yes process-secret\n"
                     f"[profile v2]\ncredential_process = printf "
                     "'{\"Version\": 2, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"B\"}'\n")
    caplog.set_level(logging.INFO, logger="django_s3_storage")
    make_client(fake_s3.endpoint, profile="tool").get_object("k")
    assert key_ids(fake_s3) == ["ASIAPROCESS000001"]
    assert fake_s3.seen[0].headers["x-amz-security-token"] == "process-token"
    assert "credentials from profile 'tool' (credential_process)" in caplog.text
    for profile, message in [("failing", "exited with status 3"),
                             ("chatty", "wrote more than"),
                             ("v2", "Version 2, not 1")]:
        t0 = time.monotonic()
        with pytest.raises(_s3.S3Error, match=message) as info:
            make_client(fake_s3.endpoint, profile=profile).get_object("k")
        assert time.monotonic() - t0 < 5
        assert "process-secret" not in error_texts(info.value)
    assert len(fake_s3.seen) == 1


def test_a_json_null_is_no_value(fake_s3: CredServer, aws_files: Callable[..., None],
                                tmp_path: Path) -> None:
    # botocore reads "SessionToken": null as no token: not as the token "null"
    out = tmp_path / "process-output.json"
    out.write_text(json.dumps({"Version": 1, "AccessKeyId": "AKIAPROCESS000002",
                               "SecretAccessKey": "process-secret", "SessionToken": None,
                               "Expiration": None}))
    aws_files(config=f"[profile tool]\ncredential_process = cat '{out}'\n")
    client = make_client(fake_s3.endpoint, profile="tool")
    client.get_object("k")
    assert key_ids(fake_s3) == ["AKIAPROCESS000002"]
    assert "x-amz-security-token" not in fake_s3.seen[0].headers
    assert "X-Amz-Security-Token" not in client.presign("GET", "k", expires=60)


def test_a_credential_process_that_hangs_is_killed_at_the_read_timeout(
        fake_s3: CredServer, aws_files: Callable[..., None], tmp_path: Path) -> None:
    marker = tmp_path / "still-running"
    aws_files(config=f"[profile slow]\ncredential_process = sleep 2; touch '{marker}'\n")
    t0 = time.monotonic()
    with pytest.raises(_s3.S3Error, match="did not finish within 1 s"):
        make_client(fake_s3.endpoint, profile="slow", read_timeout=1).get_object("k")
    assert time.monotonic() - t0 < 1.8
    time.sleep(1.5)
    assert not marker.exists()          # the shell was killed, not left to finish


def test_role_arn_with_source_profile_signs_assume_role_with_the_source_keys(
        fake_s3: CredServer, aws_files: Callable[..., None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    aws_files(credentials="[base]\naws_access_key_id = AKIDBASEPROFILE01\n"
                          "aws_secret_access_key = base-secret\n",
              config=f"[profile app]\nrole_arn = {ROLE}\nsource_profile = base\n"
                     "role_session_name = web-1\nregion = eu-west-1\n")
    with StsServer([Creds("ASIAASSUMEDROLE01", "role-secret", "role-token")]) as sts:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.endpoint)
        make_client(fake_s3.endpoint, profile="app").get_object("k")
        form = sts.forms[0]
        assert form["Action"] == "AssumeRole" and form["RoleArn"] == ROLE
        assert form["RoleSessionName"] == "web-1"
        seen = sts.seen[0]
        assert re.search(r"Credential=AKIDBASEPROFILE01/\d{8}/eu-west-1/sts/aws4_request",
                         seen.headers["Authorization"])
        # the signature is the one the source profile's secret makes
        expected = _s3.sign_v4(
            "POST", sts.endpoint + "/", {"Content-Type": seen.headers["Content-Type"]},
            hashlib.sha256(seen.body).hexdigest(), region="eu-west-1",
            access_key="AKIDBASEPROFILE01", secret_key="base-secret",
            timestamp=seen.headers["X-Amz-Date"], service="sts")
        assert seen.headers["Authorization"] == expected["Authorization"]
    assert key_ids(fake_s3) == ["ASIAASSUMEDROLE01"]
    assert fake_s3.seen[0].headers["x-amz-security-token"] == "role-token"


def test_an_sts_error_that_echoes_the_requests_signature_is_not_shown(
        fake_s3: CredServer, aws_files: Callable[..., None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the AssumeRole request's signature could be replayed for a while: an error
    # document that repeats it (a proxy, a custom STS endpoint) is not shown
    aws_files(credentials="[base]\naws_access_key_id = AKIDBASEPROFILE01\n"
                          "aws_secret_access_key = base-secret\n",
              config=f"[profile app]\nrole_arn = {ROLE}\nsource_profile = base\n")
    signatures: list[str] = []

    def echo(seen: Seen) -> Reply:
        signatures.append(seen.headers["Authorization"].split("Signature=")[1])
        return Reply(403, f"<ErrorResponse><Error><Code>AccessDenied</Code><Message>not "
                          f"for {signatures[-1]}</Message></Error></ErrorResponse>".encode())

    with CredServer(echo) as sts:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.endpoint)
        with pytest.raises(_s3.S3Error, match="AccessDenied") as info:
            make_client(fake_s3.endpoint, profile="app").get_object("k")
    assert len(signatures[0]) == 64 and signatures[0][:16] not in error_texts(info.value)
    assert "it repeats a secret" in str(info.value)


def test_role_arn_with_credential_source_and_the_profiles_that_cannot_work(
        fake_s3: CredServer, aws_files: Callable[..., None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    aws_files(config=f"[profile ecs]\nrole_arn = {ROLE}\ncredential_source = EcsContainer\n"
                     f"[profile mfa]\nrole_arn = {ROLE}\nsource_profile = mfa\n"
                     "mfa_serial = arn:aws:iam::123456789012:mfa/me\n"
                     f"[profile nosource]\nrole_arn = {ROLE}\n"
                     f"[profile odd]\nrole_arn = {ROLE}\ncredential_source = Floppy\n"
                     "[profile half]\naws_access_key_id = AKIDHALF000000001\n"
                     f"[profile loop]\nrole_arn = {ROLE}\nsource_profile = loop2\n"
                     f"[profile loop2]\nrole_arn = {ROLE}\nsource_profile = loop\n")
    with StsServer([Creds("ASIAECSROLE000001", "s", "t")]) as sts, \
            ContainerServer([Creds("ASIACONTAINER0001", "s", "ctr-token")]) as ctr:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.endpoint)
        use_container(monkeypatch, ctr)
        make_client(fake_s3.endpoint, profile="ecs").get_object("k")
        assert "Credential=ASIACONTAINER0001/" in sts.seen[0].headers["Authorization"]
        assert sts.seen[0].headers["X-Amz-Security-Token"] == "ctr-token"
        for profile, message in [("mfa", "MFA"), ("nosource", "no source_profile"),
                                 ("odd", "credential_source must be"),
                                 ("half", "only one of aws_access_key_id"),
                                 ("loop", "deeper than")]:
            with pytest.raises(_s3.S3Error, match=message):
                make_client(fake_s3.endpoint, profile=profile).get_object("k")
        assert len(sts.seen) == 1
    assert key_ids(fake_s3) == ["ASIAECSROLE000001"]


def test_credential_source_environment_works_when_the_storage_names_the_profile(
        fake_s3: CredServer, aws_files: Callable[..., None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    with StsServer([Creds("ASIAROLE000000001", "s", "t")]) as sts:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENVIRONMENT01")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
        aws_files(config=f"[profile r]\nrole_arn = {ROLE}\ncredential_source = Environment\n")
        make_client(fake_s3.endpoint, profile="r").get_object("k")
        assert "Credential=AKIDENVIRONMENT01/" in sts.seen[0].headers["Authorization"]
    assert key_ids(fake_s3) == ["ASIAROLE000000001"]


def test_role_arn_and_web_identity_against_moto_sts(
        fake_s3: CredServer, aws_files: Callable[..., None], moto_endpoint: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_endpoint)
    token_file = tmp_path / "token"
    token_file.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n")
    aws_files(credentials="[base]\naws_access_key_id = AKIDBASEPROFILE01\n"
                          "aws_secret_access_key = base-secret\n",
              config=f"[profile app]\nrole_arn = {ROLE}\nsource_profile = base\n"
                     f"[profile oidc]\nrole_arn = {ROLE}\n"
                     f"web_identity_token_file = {token_file}\n")
    make_client(fake_s3.endpoint, profile="app").get_object("k")
    make_client(fake_s3.endpoint, profile="oidc").get_object("k")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
    monkeypatch.setenv("AWS_ROLE_SESSION_NAME", "github-actions")
    make_client(fake_s3.endpoint).get_object("k")
    ids = key_ids(fake_s3)
    assert len(ids) == 3 and all(i.startswith("ASIA") for i in ids) and len(set(ids)) == 3
    assert all(len(s.headers["x-amz-security-token"]) > 100 for s in fake_s3.seen)


def test_sts_endpoint_overrides(fake_s3: CredServer, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
    with StsServer([Creds("ASIASTSSPECIFIC01", "s", "t")]) as specific, \
            StsServer([Creds("ASIASTSGENERAL001", "s", "t")]) as general:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", specific.endpoint)
        monkeypatch.setenv("AWS_ENDPOINT_URL", general.endpoint)
        make_client(fake_s3.endpoint).get_object("k")
        monkeypatch.delenv("AWS_ENDPOINT_URL_STS")
        make_client(fake_s3.endpoint).get_object("k")
    assert key_ids(fake_s3) == ["ASIASTSSPECIFIC01", "ASIASTSGENERAL001"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://user:pw@127.0.0.1:9")
    with pytest.raises(_s3.S3Error, match="AWS_ENDPOINT_URL_STS in the environment"):
        make_client(fake_s3.endpoint).get_object("k")
    monkeypatch.delenv("AWS_ENDPOINT_URL_STS")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_STS_REGIONAL_ENDPOINTS", "sideways")
    with pytest.raises(_s3.S3Error, match="AWS_STS_REGIONAL_ENDPOINTS"):
        make_client(fake_s3.endpoint).get_object("k")


def test_sts_regional_and_legacy_endpoints(fake_s3: CredServer, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Which STS host is asked, seen by a local proxy that refuses every tunnel: nothing
    leaves 127.0.0.1. A probe to an .invalid host shows the proxy is used at all
    before any amazonaws.com name is tried."""
    token_file = tmp_path / "token"
    token_file.write_text("tok")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
    for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with CredServer(lambda seen: Answer(403)) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.endpoint)
        monkeypatch.setenv("https_proxy", proxy.endpoint)
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "https://sts-probe.invalid")
        with pytest.raises(_s3.S3Error):
            make_client(fake_s3.endpoint).get_object("k")
        assert [(s.method, s.path) for s in proxy.seen] == [("CONNECT", "sts-probe.invalid:443")]
        monkeypatch.delenv("AWS_ENDPOINT_URL_STS")
        for mode, region, host in [(None, "eu-west-3", "sts.eu-west-3.amazonaws.com:443"),
                                   ("regional", "ap-east-1", "sts.ap-east-1.amazonaws.com:443"),
                                   ("legacy", "eu-west-3", "sts.amazonaws.com:443")]:
            if mode:
                monkeypatch.setenv("AWS_STS_REGIONAL_ENDPOINTS", mode)
            with pytest.raises(_s3.S3Error, match="STS at https://sts"):
                make_client(fake_s3.endpoint, region=region).get_object("k")
            assert proxy.seen[-1].method == "CONNECT" and proxy.seen[-1].path == host
    assert fake_s3.seen == []


def test_fifos_and_devices_are_refused_without_blocking(
        fake_s3: CredServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(fifo))
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
    client = make_client(fake_s3.endpoint, read_timeout=1)
    result: list[BaseException] = []
    worker = threading.Thread(target=lambda: result.append(
        pytest.raises(_s3.S3Error, client.get_object, "k").value), daemon=True)
    worker.start()
    worker.join(5)
    try:
        assert not worker.is_alive(), "the refresh blocked in open() of a FIFO"
    finally:
        if worker.is_alive():                      # let the blocked open() go
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            worker.join(5)
    assert "is not a regular file" in str(result[0]) and fake_s3.seen == []


def test_a_fifo_as_the_config_file_does_not_hang_construction(tmp_path: Path) -> None:
    # Client() reads the profile's region with the GIL held: a blocked open() there
    # would stop every thread of the process, so this runs in a child of its own
    fifo = tmp_path / "config"
    os.mkfifo(fifo)
    env = dict(os.environ, AWS_CONFIG_FILE=str(fifo))
    code = ("from django_s3_storage import _s3\n"
            "print(_s3.Client('b', endpoint_url='http://127.0.0.1:9').region)\n")
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                             cwd=str(Path(__file__).resolve().parent.parent))
    try:
        out, _ = child.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        pytest.fail("Client() hung on a FIFO named by AWS_CONFIG_FILE")
    assert child.returncode == 0 and out.strip() == b"us-east-1"


def test_indented_key_lines_are_keys_and_nested_blocks_are_not(
        fake_s3: CredServer, aws_files: Callable[..., None]) -> None:
    # as botocore's configparser reads them
    aws_files(credentials="[default]\n  aws_access_key_id = AKIDINDENT0000001\n"
                          "  aws_secret_access_key = x\n",
              config="[profile nested]\ns3 =\n  aws_access_key_id = AKIDNESTED0000001\n"
                     "  aws_secret_access_key = y\n"
                     "  # a comment inside the block\n"
                     "\taddressing_style = path\n")
    make_client(fake_s3.endpoint).get_object("k")
    assert key_ids(fake_s3) == ["AKIDINDENT0000001"]
    with pytest.raises(_s3.S3Error, match="profile 'nested' holds no credentials"):
        make_client(fake_s3.endpoint, profile="nested").get_object("k")


def test_credential_process_gets_default_signals_and_no_inherited_fds(
        fake_s3: CredServer, aws_files: Callable[..., None], tmp_path: Path) -> None:
    out = tmp_path / "seen"
    # grep reads its own status: it has what the shell had when it forked (the shell's own
    # /proc entry shows every signal blocked while it waits for a child: dash does that)
    aws_files(config=f"[profile p]\ncredential_process = grep -E '^Sig(Ign|Blk)' "
                     f"/proc/self/status > '{out}'; ls -l /proc/$$/fd >> '{out}'; exit 1\n")
    other = make_client(fake_s3.endpoint, access_key="AKIDEXPLICIT00001", secret_key="s")
    other.get_object("k")          # a pooled keep-alive socket stays open meanwhile
    errors: list[BaseException] = []

    def run() -> None:             # with SIGUSR1 blocked in the calling thread
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        try:
            make_client(fake_s3.endpoint, profile="p").get_object("k")
        except _s3.S3Error as e:
            errors.append(e)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(30)
    assert len(errors) == 1 and "exited with status 1" in str(errors[0])
    text = out.read_text()
    fields = dict(line.split(":\t") for line in text.splitlines() if line.startswith("Sig"))
    ignored, blocked = int(fields["SigIgn"], 16), int(fields["SigBlk"], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)), "SIGPIPE ignored"
    assert not ignored & (1 << (signal.SIGXFSZ - 1)), "SIGXFSZ ignored"
    assert blocked == 0, f"signal mask {blocked:#x} inherited"
    assert "socket:" not in text, text              # the pooled connection stayed ours


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


def test_the_storages_verify_setting_reaches_only_an_sts_endpoint_the_environment_names(
        fake_s3: CredServer, self_signed: tuple[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """verify=False (for a local MinIO, say) must not turn off the certificate checks
    of the credential services: an overridden STS endpoint inherits it, the container
    endpoint (like STS at AWS) is verified always, AWS_CA_BUNDLE naming the CAs."""
    cert, _key = self_signed
    token_file = tmp_path / "token"
    token_file.write_text("tok")
    sts_reply = sts_xml("AssumeRoleWithWebIdentity", Creds("ASIASTSOVERTLS001", "s", "t"))
    with FakeS3(lambda m, p: Reply(200, sts_reply), tls=self_signed) as sts, \
            FakeS3(lambda m, p: Reply(200, creds_json(Creds("ASIACTROVERTLS01", "s", "t"))),
                   tls=self_signed) as ctr:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.endpoint)
        monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
        monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
        make_client(fake_s3.endpoint, verify=False).get_object("k")
        with pytest.raises(_s3.S3Error, match="STS at https://127.0.0.1"):
            make_client(fake_s3.endpoint).get_object("k")
        make_client(fake_s3.endpoint, ca_bundle=cert).get_object("k")
        monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE")
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", ctr.endpoint + "/creds")
        for kwargs in ({"verify": False}, {"ca_bundle": cert}):
            with pytest.raises(_s3.S3Error, match="the container endpoint https://127.0.0.1"):
                make_client(fake_s3.endpoint, **kwargs).get_object("k")
        assert len(ctr.requests) == 0                  # refused in the TLS handshake
        monkeypatch.setenv("AWS_CA_BUNDLE", cert)
        make_client(fake_s3.endpoint, verify=False).get_object("k")
    assert key_ids(fake_s3) == ["ASIASTSOVERTLS001"] * 2 + ["ASIACTROVERTLS01"]


def test_credential_services_verify_with_the_systems_ca_bundle(
        fake_s3: CredServer, self_signed: tuple[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The extension's libcurl has no CA bundle of its own: the container endpoint
    (and STS at AWS) are verified with the one the storage found on the system."""
    cert, _key = self_signed
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with FakeS3(lambda m, p: Reply(200, creds_json(Creds("ASIACTRSYSTEMCA1", "s", "t"))),
                tls=self_signed) as ctr:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", ctr.endpoint + "/creds")
        with pytest.raises(_s3.S3Error, match="the container endpoint https://127.0.0.1"):
            make_client(fake_s3.endpoint).get_object("k")
        make_client(fake_s3.endpoint, system_ca_bundle=cert).get_object("k")
        assert len(ctr.requests) == 1
    assert key_ids(fake_s3) == ["ASIACTRSYSTEMCA1"]


def test_the_storage_gives_the_systems_ca_bundle_whatever_aws_s3_verify_says(
        fake_s3: CredServer, self_signed: tuple[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_S3_VERIFY = False (a local MinIO) or a private CA's path is for the S3
    endpoint: the container endpoint is still verified, with the system's bundle."""
    from django_s3_storage.storage import S3Storage

    cert, _key = self_signed
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", cert)       # this "system" trusts the server
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    with FakeS3(lambda m, p: Reply(200, creds_json(Creds("ASIACTRVERIFYOFF", "s", "t"))),
                tls=self_signed) as ctr:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", ctr.endpoint + "/creds")
        for verify in (False, cert):
            storage = S3Storage(aws_s3_endpoint_url=fake_s3.endpoint, aws_s3_bucket_name="b",
                                aws_access_key_id="", aws_secret_access_key="",
                                aws_session_token="", aws_s3_verify=verify,
                                aws_s3_max_attempts=1)
            storage.exists("k")
    assert key_ids(fake_s3) == ["ASIACTRVERIFYOFF"] * 2


def test_the_proxy_for_sts_comes_from_the_snapshot_not_the_live_environment(
        fake_s3: CredServer, aws_files: Callable[..., None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """libcurl would read http_proxy itself, without the GIL, while os.environ may be
    changing: the proxy is taken from the environment as it was when the renewal
    began. Here http_proxy appears while the chain waits on the container endpoint,
    before it calls STS: that call must not see it."""
    for var in ("http_proxy", "all_proxy", "ALL_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    # the S3 requests (which read the live environment) go to "localhost", kept off
    # the proxy; STS is at 127.0.0.1
    monkeypatch.setenv("NO_PROXY", "localhost")
    s3_endpoint = fake_s3.endpoint.replace("127.0.0.1", "localhost")
    aws_files(config=f"[profile ecs]\nrole_arn = {ROLE}\ncredential_source = EcsContainer\n")
    with StsServer([Creds("ASIAECSROLE000001", "s", "t")]) as sts, \
            ContainerServer([Creds("ASIACONTAINER0001", "s", "t")], delay=1.0) as ctr, \
            CredServer(lambda seen: Answer(403)) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.endpoint)
        use_container(monkeypatch, ctr)

        def change_env() -> None:
            t0 = time.monotonic()
            while ctr.count() == 0 and time.monotonic() - t0 < 5:
                time.sleep(0.01)
            os.environ["http_proxy"] = proxy.endpoint

        changer = threading.Thread(target=change_env)
        changer.start()
        try:
            make_client(s3_endpoint, profile="ecs").get_object("k")
        finally:
            changer.join()
            os.environ.pop("http_proxy", None)
        assert proxy.seen == [] and len(sts.seen) == 1
        # and a proxy in the environment when the renewal begins is used, NO_PROXY too
        monkeypatch.setenv("http_proxy", proxy.endpoint)
        with pytest.raises(_s3.S3Error, match="answered HTTP 403"):
            make_client(s3_endpoint, profile="ecs").get_object("k")
        assert proxy.seen[-1].method == "POST" and proxy.seen[-1].path == sts.endpoint + "/"
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        make_client(s3_endpoint, profile="ecs").get_object("k")
        assert len(proxy.seen) == 1 and len(sts.seen) == 2
    assert key_ids(fake_s3) == ["ASIAECSROLE000001"] * 2


# ---- web identity ------------------------------------------------------------------

def test_a_rotated_web_identity_token_file_is_read_again(
        fake_s3: CredServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("token-one")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
    monkeypatch.setenv("AWS_ROLE_SESSION_NAME", "pod-7")
    with StsServer([Creds("ASIAFIRST0000001", "s1", "t1", lifetime=900),
                    Creds("ASIASECOND000001", "s2", "t2", lifetime=7200)]) as sts:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.endpoint)
        client = make_client(fake_s3.endpoint)
        client.get_object("k")
        token_file.write_text("token-two\n")          # the kubelet rotates it
        # a URL that must outlive the first credentials makes the client renew them
        url = client.presign("GET", "k", expires=3600)
        assert [f["WebIdentityToken"] for f in sts.forms] == ["token-one", "token-two"]
        assert all(f["Action"] == "AssumeRoleWithWebIdentity" and f["RoleArn"] == ROLE and
                   f["RoleSessionName"] == "pod-7" for f in sts.forms)
        assert all("Authorization" not in s.headers for s in sts.seen)   # unsigned
    assert "X-Amz-Credential=ASIASECOND000001%2F" in url


def sts_refusal(fake_s3: CredServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                token: str) -> _s3.S3Error:
    """The error a client gets from an STS that refuses `token`, echoing it."""
    token_file = tmp_path / "token"
    token_file.write_text(token)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)

    def refuse(form: dict[str, str]) -> Answer:
        return Answer(400, ("<ErrorResponse><Error><Code>InvalidIdentityToken</Code><Message>"
                            f"bad token {form['WebIdentityToken']}</Message></Error>"
                            "</ErrorResponse>").encode())

    with StsServer([], answer=refuse) as sts:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.endpoint)
        with pytest.raises(_s3.S3Error) as info:
            make_client(fake_s3.endpoint).get_object("k")
    return info.value


def test_sts_errors_never_echo_the_token(fake_s3: CredServer, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    err = sts_refusal(fake_s3, tmp_path, monkeypatch, "very-secret-oidc-token")
    assert "InvalidIdentityToken" in str(err) and "HTTP 400" in str(err)
    assert "very-secret-oidc-token" not in error_texts(err)
    dtd = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "y">]><AssumeRoleWithWebIdentity'
           b'Response><Credentials><AccessKeyId>&x;</AccessKeyId></Credentials>'
           b'</AssumeRoleWithWebIdentityResponse>')
    with StsServer([], answer=lambda form: Answer(200, dtd)) as sts:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.endpoint)
        with pytest.raises(_s3.S3Error, match="without Credentials: XML with a DTD is refused"):
            make_client(fake_s3.endpoint).get_object("k")


def test_sts_errors_never_echo_part_of_a_long_token(fake_s3: CredServer, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # the message is cut short before it is shown: what is left still holds a run
    # of the token, and is not shown either
    token = "eyJhbGciOiJSUzI1NiJ9." + "A" * 400 + ".SIGNATUREPART" + "S" * 400
    text = error_texts(sts_refusal(fake_s3, tmp_path, monkeypatch, token))
    assert "InvalidIdentityToken" in text and "not shown: it repeats a secret" in text
    assert "eyJhbGciOiJSUzI1NiJ9" not in text and "A" * 16 not in text


# ---- container and instance metadata ----------------------------------------------

def test_container_endpoint_with_an_authorization_token(
        fake_s3: CredServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ContainerServer([Creds("ASIACONTAINER0001", "s", "t")], auth="pod-identity-token") as c:
        use_container(monkeypatch, c, "/v1/credentials")
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "pod-identity-token")
        make_client(fake_s3.endpoint).get_object("k")
        token_file = tmp_path / "eks-pod-identity-token"
        token_file.write_text("pod-identity-token\n")
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong-token")
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token_file))
        make_client(fake_s3.endpoint).get_object("k")          # the file wins
        monkeypatch.delenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
        with pytest.raises(_s3.S3Error, match="answered HTTP 401") as info:
            make_client(fake_s3.endpoint).get_object("k")
        assert "wrong-token" not in error_texts(info.value)
        assert [s.path for s in c.seen] == ["/v1/credentials"] * 3
    assert key_ids(fake_s3) == ["ASIACONTAINER0001"] * 2
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "tok\r\nX-Injected: 1")
    with pytest.raises(_s3.S3Error, match="AWS_CONTAINER_AUTHORIZATION_TOKEN"):
        make_client(fake_s3.endpoint).get_object("k")
    # plain http only to a loopback or container agent address; checked before any request
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://example.invalid/creds")
    with pytest.raises(_s3.S3Error, match="AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        make_client(fake_s3.endpoint).get_object("k")
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "no-leading-slash")
    with pytest.raises(_s3.S3Error, match="AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        make_client(fake_s3.endpoint).get_object("k")


def test_plain_http_container_hosts_are_literal_loopback_addresses(
        fake_s3: CredServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # libcurl answers *.localhost itself (127.0.0.1, no DNS): a name that merely
    # starts with "127." must be refused before any connection, or the
    # authorization token would go out in cleartext to whatever it resolves to
    with ContainerServer([Creds("ASIACONTAINER0001", "s", "t")], auth="pod-token") as ctr:
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "pod-token")
        port = ctr.endpoint.rsplit(":", 1)[1]
        for host in ("127.evil.localhost", "127.0.0.1.localhost", "127.0.0.256",
                     "127.0.0.1.2"):
            monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI",
                               f"http://{host}:{port}/creds")
            with pytest.raises(_s3.S3Error, match="AWS_CONTAINER_CREDENTIALS_FULL_URI"):
                make_client(fake_s3.endpoint).get_object("k")
        assert ctr.seen == []
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{port}/c")
        make_client(fake_s3.endpoint).get_object("k")
    assert key_ids(fake_s3) == ["ASIACONTAINER0001"]


def test_expired_credentials_from_a_source_are_refused(
        fake_s3: CredServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with ContainerServer([Creds("ASIAEXPIRED000001", "s", "t", lifetime=-10)]) as ctr:
        use_container(monkeypatch, ctr)
        with pytest.raises(_s3.S3Error, match="already expired") as info:
            make_client(fake_s3.endpoint).get_object("k")
    assert info.value.code == "CredentialsError" and fake_s3.seen == []


@pytest.mark.parametrize("body", [
    b"not json", b'{"AccessKeyId": {"nested": 1}}', b'{"AccessKeyId": "A"', b"[]",
    b'{"AccessKeyId": "A", "SecretAccessKey": "B", "Expiration": "tomorrow"}',
    b'{"AccessKeyId": "A\\u0000B", "SecretAccessKey": "B"}',
    b'{"AccessKeyId": "A", "SecretAccessKey": "B"} trailing',
    b'{"AccessKeyId": "A", "SecretAccessKey": "B", "n": 1\x00}',
    b'{"AccessKeyId": "A", "SecretAccessKey": "B", "Expiration": "2099-01-01T-1:00:00Z"}',
    b'{"AccessKeyId": "A", "SecretAccessKey": "B", "Expiration": "2099-01-01T01:00:00+-1:00"}',
    b'{"AccessKeyId": "A", "SecretAccessKey": "B", "Expiration": "2099-01-01T01:00:00+9999"}',
])
def test_hostile_container_replies_are_errors(fake_s3: CredServer,
                                              monkeypatch: pytest.MonkeyPatch,
                                              body: bytes) -> None:
    with ContainerServer([Creds("A", "B", "C")], body=lambda c: body) as c:
        use_container(monkeypatch, c)
        with pytest.raises(_s3.S3Error) as info:
            make_client(fake_s3.endpoint).get_object("k")
    assert info.value.code == "CredentialsError" and "container endpoint" in str(info.value)
    assert fake_s3.seen == []


def test_a_huge_container_reply_is_cut_off(fake_s3: CredServer,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    huge = b'{"AccessKeyId": "' + b"A" * (1 << 20) + b'"}'
    with ContainerServer([Creds("A", "B", "C")], body=lambda c: huge) as c:
        use_container(monkeypatch, c)
        with pytest.raises(_s3.S3Error, match="longer than"):
            make_client(fake_s3.endpoint).get_object("k")


def test_imds_v2_with_a_session_token(fake_s3: CredServer,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with ImdsServer([Creds("ASIAIMDS000000001", "s", "imds-token")]) as imds:
        use_imds(monkeypatch, imds.endpoint + "/")
        make_client(fake_s3.endpoint).get_object("k")
        assert [(s.method, s.path) for s in imds.seen] == [
            ("PUT", "/latest/api/token"),
            ("GET", "/latest/meta-data/iam/security-credentials/"),
            ("GET", "/latest/meta-data/iam/security-credentials/web-role")]
        assert imds.seen[0].headers["X-aws-ec2-metadata-token-ttl-seconds"] == "21600"
    assert key_ids(fake_s3) == ["ASIAIMDS000000001"]


def test_imds_v1_only_service(fake_s3: CredServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with ImdsServer([Creds("ASIAIMDSV10000001", "s", "t")], v1_only=True) as imds:
        use_imds(monkeypatch, imds.endpoint)
        make_client(fake_s3.endpoint).get_object("k")
        assert all("X-aws-ec2-metadata-token" not in s.headers for s in imds.seen[1:])
    assert key_ids(fake_s3) == ["ASIAIMDSV10000001"]


def test_imds_disabled_is_never_asked(fake_s3: CredServer,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with ImdsServer([Creds("ASIAIMDS000000001", "s", "t")]) as imds:
        use_imds(monkeypatch, imds.endpoint)
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "TRUE")
        with pytest.raises(_s3.S3Error, match="disabled by AWS_EC2_METADATA_DISABLED"):
            make_client(fake_s3.endpoint).get_object("k")
        assert imds.seen == []


def test_imds_that_never_answers_costs_one_attempt_of_one_second(
        fake_s3: CredServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with Blackhole() as hole:
        use_imds(monkeypatch, hole.endpoint)
        t0 = time.monotonic()
        with pytest.raises(_s3.S3Error) as info:
            make_client(fake_s3.endpoint).get_object("k")
        elapsed = time.monotonic() - t0
        time.sleep(0.3)   # let the accept loop see every connection
        assert len(hole.accepted) == 1
    assert info.value.code == "NoCredentials" and "instance metadata" in str(info.value)
    assert 0.9 < elapsed < 2.0


# ---- renewal ------------------------------------------------------------------------

def test_eight_threads_crossing_an_expiry_cause_exactly_one_renewal(
        fake_s3: CredServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with ContainerServer([Creds("ASIAOLD000000001", "s", "t", lifetime=2),
                          Creds("ASIANEW000000001", "s", "t", lifetime=3600)],
                         delay=[0.0, 0.5]) as ctr:
        use_container(monkeypatch, ctr)
        client = make_client(fake_s3.endpoint, max_connections=8)
        client.get_object("k")
        assert ctr.issued == 1
        time.sleep(2.1)                                # the credentials have expired now
        barrier = threading.Barrier(8)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                barrier.wait()
                client.get_object("k")
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert errors == []
        assert ctr.issued == 2
    assert key_ids(fake_s3) == ["ASIAOLD000000001"] + ["ASIANEW000000001"] * 8


def test_early_renewal_is_done_by_one_thread_while_the_others_keep_signing(
        fake_s3: CredServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with ContainerServer([Creds("ASIAOLD000000001", "s", "t", lifetime=302.5),
                          Creds("ASIANEW000000001", "s", "t", lifetime=3600)],
                         delay=[0.0, 1.0]) as ctr:
        use_container(monkeypatch, ctr)
        client = make_client(fake_s3.endpoint, max_connections=8)
        client.get_object("k")
        time.sleep(2.7)                                # inside the 5-minute advisory window
        barrier = threading.Barrier(8)
        threads = [threading.Thread(target=lambda: (barrier.wait(), client.get_object("k")))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        client.get_object("k")
        assert ctr.issued == 2
    ids = key_ids(fake_s3)
    assert ids[0] == "ASIAOLD000000001" and ids[-1] == "ASIANEW000000001"
    assert sorted(ids[1:9]) == ["ASIANEW000000001"] + ["ASIAOLD000000001"] * 7


@pytest.mark.parametrize("code", ["ExpiredToken", "InvalidToken", "InvalidAccessKeyId"])
def test_refused_temporary_credentials_are_renewed_and_the_request_sent_again(
        monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    refused = EXPIRED.replace(b"ExpiredToken", code.encode())

    def s3(seen: Seen) -> Answer:
        return Answer(403, refused) if key_id(seen) != "ASIAFRESH00000001" else Answer(200, b"ok")

    with CredServer(s3) as server, ContainerServer(
            [Creds("ASIASTALE00000001", "s", "t"), Creds("ASIAFRESH00000001", "s", "t2")]) as c:
        use_container(monkeypatch, c)
        assert make_client(server.endpoint).get_object("k")[0] == b"ok"
        assert key_ids(server) == ["ASIASTALE00000001", "ASIAFRESH00000001"]
        assert server.seen[1].headers["x-amz-security-token"] == "t2"


def test_expired_token_renews_and_retries_once(monkeypatch: pytest.MonkeyPatch) -> None:
    def s3(seen: Seen) -> Answer:
        return Answer(400, EXPIRED) if key_id(seen) != "ASIAFRESH00000001" else Answer(200, b"ok")

    with CredServer(s3) as server, ContainerServer(
            [Creds("ASIASTALE00000001", "s", "t"), Creds("ASIAFRESH00000001", "s", "t2")]) as c:
        use_container(monkeypatch, c)
        assert make_client(server.endpoint).get_object("k")[0] == b"ok"
        assert key_ids(server) == ["ASIASTALE00000001", "ASIAFRESH00000001"]
        assert c.issued == 2
    with CredServer(lambda seen: Answer(400, EXPIRED)) as server, ContainerServer(
            [Creds("ASIASTALE00000001", "s", "t")]) as c:
        use_container(monkeypatch, c)
        client = make_client(server.endpoint, max_attempts=3)
        with pytest.raises(_s3.S3Error) as info:
            client.get_object("k")
        assert info.value.code == "ExpiredToken"
        assert len(server.seen) == 2                   # one retry, not a loop
        assert c.issued == 2
        # fresh credentials refused as well: the next calls do not each ask the
        # source again (one renewal for a refusal in 30 s)
        for _ in range(3):
            with pytest.raises(_s3.S3Error, match="ExpiredToken"):
                client.get_object("k")
        assert len(server.seen) == 5 and c.issued == 2
    with CredServer(lambda seen: Answer(400, EXPIRED)) as server:
        with pytest.raises(_s3.S3Error, match="ExpiredToken"):
            make_client(server.endpoint, access_key="a", secret_key="b").get_object("k")
        assert len(server.seen) == 1                   # keys that cannot be renewed


def test_presign_renews_credentials_that_would_expire_before_the_url(
        fake_s3: CredServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with ContainerServer([Creds("ASIASHORT0000001", "s", "t", lifetime=900),
                          Creds("ASIALONG00000001", "s", "t", lifetime=7200)]) as ctr:
        use_container(monkeypatch, ctr)
        client = make_client(fake_s3.endpoint)
        client.get_object("k")
        assert "ASIASHORT0000001" in client.presign("GET", "k", expires=600)
        assert ctr.issued == 1                         # they outlive a 10-minute URL
        assert "ASIALONG00000001" in client.presign("GET", "k", expires=3600)
        assert "ASIALONG00000001" in client.presign("GET", "k", expires=3600)
        assert ctr.issued == 2
    # a source that cannot do better is not asked on every url()
    with ContainerServer([Creds("ASIASHORT0000001", "s", "t", lifetime=900)]) as ctr:
        use_container(monkeypatch, ctr)
        client = make_client(fake_s3.endpoint)
        client.get_object("k")
        for _ in range(5):
            assert "ASIASHORT0000001" in client.presign("GET", "k", expires=3600)
        assert ctr.issued == 2


def test_a_failed_renewal_is_the_answer_of_every_waiter_and_then_tried_again(
        fake_s3: CredServer, aws_files: Callable[..., None], tmp_path: Path) -> None:
    runs, script = tmp_path / "runs", tmp_path / "tool.sh"
    script.write_text(f"echo run >> '{runs}'; sleep 1; exit 1\n")
    aws_files(config=f"[profile tool]\ncredential_process = sh '{script}'\n")
    client = make_client(fake_s3.endpoint, profile="tool", max_connections=6)
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def work() -> None:
        barrier.wait()
        try:
            client.get_object("k")
        except _s3.S3Error as e:
            errors.append(e)

    t0 = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    failed_by = time.monotonic()
    assert failed_by - t0 < 4                          # not six runs of 1 s one after another
    assert len(errors) == 6 and all("exited with status 1" in str(e) for e in errors)
    assert len(runs.read_text().splitlines()) == 1
    # right after the failure the same answer, without running the process again
    with pytest.raises(_s3.S3Error, match="exited with status 1"):
        client.get_object("k")
    assert len(runs.read_text().splitlines()) == 1
    # a few seconds later it is tried again, and the storage recovers
    script.write_text("echo run >> '%s'; printf '%s'\n" % (runs, json.dumps(
        {"Version": 1, "AccessKeyId": "ASIARECOVERED0001", "SecretAccessKey": "s"})))
    time.sleep(max(0.0, failed_by + 5.2 - time.monotonic()))
    client.get_object("k")
    assert len(runs.read_text().splitlines()) == 2
    assert key_ids(fake_s3) == ["ASIARECOVERED0001"]


def test_a_url_longer_than_the_credentials_live_does_not_renew_them_again_and_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # a source that gives 1-hour credentials cannot cover a 2-hour URL: once it
    # has been asked for such a URL, renewing is not tried again for it (before,
    # every url() after any other renewal, or 30 s, ran a synchronous renewal)
    def s3(seen: Seen) -> Answer:
        return Answer(400, EXPIRED) if key_id(seen) == "ASIAHOUR00000001" else Answer(200, b"ok")

    with CredServer(s3) as server, ContainerServer(
            [Creds(f"ASIAHOUR0000000{i}", "s", "t", lifetime=3600) for i in range(1, 5)]) as c:
        use_container(monkeypatch, c)
        client = make_client(server.endpoint)
        assert "ASIAHOUR00000001" in client.presign("GET", "k", expires=7200)
        assert "ASIAHOUR00000001" in client.presign("GET", "k", expires=7200)
        assert c.issued == 1
        assert client.get_object("k")[0] == b"ok"       # refused, renewed, sent again
        assert c.issued == 2
        for _ in range(3):
            assert "ASIAHOUR00000002" in client.presign("GET", "k", expires=7200)
        assert c.issued == 2


# ---- the storage ------------------------------------------------------------------------

def test_storage_settings_profile_and_anonymous(
        fake_s3: CredServer, aws_files: Callable[..., None]) -> None:
    from django_s3_storage.storage import S3Storage

    aws_files(credentials="[site]\naws_access_key_id = AKIDSITEPROFILE01\n"
                          "aws_secret_access_key = site-secret\n",
              config="[profile site]\nregion = eu-north-1\n")
    storage = S3Storage(aws_s3_endpoint_url=fake_s3.endpoint, aws_access_key_id="",
                        aws_secret_access_key="", aws_s3_profile="site", aws_region=None)
    assert "X-Amz-Credential=AKIDSITEPROFILE01%2F" in storage.url("a.txt")
    assert "%2Feu-north-1%2Fs3%2F" in storage.url("a.txt")
    assert storage.open("a.txt").read() == b"ok"
    assert key_ids(fake_s3) == ["AKIDSITEPROFILE01"]
    anonymous = S3Storage(aws_s3_endpoint_url=fake_s3.endpoint, aws_s3_anonymous=True)
    assert "X-Amz" not in anonymous.url("a.txt")
    assert anonymous.open("a.txt").read() == b"ok"
    assert "Authorization" not in fake_s3.seen[-1].headers
    assert "site-secret" not in repr(storage._client) + repr(vars(storage.settings))


def test_static_storage_reads_its_own_anonymous_and_profile_settings(
        aws_files: Callable[..., None]) -> None:
    from django.test import override_settings

    from django_s3_storage.storage import StaticS3Storage

    aws_files(config="[profile assets]\nregion = eu-south-1\n")
    with override_settings(AWS_S3_ANONYMOUS_STATIC=True, AWS_S3_PROFILE_STATIC="assets",
                           AWS_REGION=None):
        storage = StaticS3Storage()
        assert "anonymous" in repr(storage._client)
        assert storage._client.region == "eu-south-1"


def test_the_gil_is_released_while_credentials_are_fetched(
        fake_s3: CredServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with ContainerServer([Creds("ASIACONTAINER0001", "s", "t")], delay=1.0) as ctr:
        use_container(monkeypatch, ctr)
        client = make_client(fake_s3.endpoint)
        worker = threading.Thread(target=client.get_object, args=("k",))
        ticks = 0
        worker.start()
        t0 = time.monotonic()
        while worker.is_alive() and time.monotonic() - t0 < 5:
            ticks += 1
            time.sleep(0.01)
        worker.join()
    assert ticks > 50          # this thread ran all along the one-second fetch
    assert key_ids(fake_s3) == ["ASIACONTAINER0001"]


def test_no_secret_in_the_client_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    c = _s3.Client("b", access_key="AKIDEXPLICIT00001", secret_key="the-secret-key",
                   session_token="the-session-token")
    assert "the-secret-key" not in repr(c) and "the-session-token" not in repr(c)
    assert "AKIDEXPLICIT00001" not in repr(c)


def test_the_test_run_is_isolated_from_the_machine() -> None:
    # conftest.py: no inherited keys, no real ~/.aws, IMDS off, STS on a closed port
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    assert not os.path.exists(os.environ["AWS_SHARED_CREDENTIALS_FILE"])
    assert not os.path.exists(os.environ["AWS_CONFIG_FILE"])
    assert "AWS_ACCESS_KEY_ID" not in os.environ and "AWS_PROFILE" not in os.environ
    assert os.environ["AWS_ENDPOINT_URL_STS"].startswith("http://127.0.0.1:")
    assert sys.modules["conftest"] is not None
