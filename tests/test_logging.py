"""The `django_s3_storage` logger: each attempt of each request at DEBUG (method,
key, status, bytes, milliseconds, attempt), each retry at INFO; never a secret, a
URL or a signature; and nothing recorded at all while the logger is at WARNING
(the C client is given no function)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest
from django.core.files.base import ContentFile
from django.test import override_settings

from django_s3_storage.storage import S3Storage

from conftest import S3Target
from servers import FakeS3, Reply

LOGGER = "django_s3_storage"
SECRET = "not-a-real-secret-0123456789"


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    yield caplog


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The request records (the logger has others: where credentials came from)."""
    return [r for r in caplog.records if r.name == LOGGER and hasattr(r, "s3_method")]


def test_each_request_is_logged_at_debug(s3: S3Target, prefix: str,
                                         debug_log: pytest.LogCaptureFixture) -> None:
    with override_settings(AWS_S3_KEY_PREFIX=prefix.rstrip("/"), AWS_S3_GZIP=False,
                           AWS_S3_FILE_OVERWRITE=True):
        storage = S3Storage()
        assert storage._client.log_enabled
        storage.save("a.bin", ContentFile(b"x" * 1000))
        assert storage.exists("a.bin") and not storage.exists("missing.bin")
        assert storage.open("a.bin").read() == b"x" * 1000
        storage.url("a.bin")                         # no request: no record
        storage.delete("a.bin")
    seen = [(r.s3_method, r.s3_key, r.s3_status) for r in records(debug_log)]  # type: ignore[attr-defined]
    key = prefix + "a.bin"
    assert ("PUT", key, 200) in seen
    assert ("HEAD", key, 200) in seen and ("HEAD", prefix + "missing.bin", 404) in seen
    assert ("GET", key, 200) in seen or ("GET", key, 206) in seen
    assert ("DELETE", key, 204) in seen
    put = next(r for r in records(debug_log) if r.s3_method == "PUT")  # type: ignore[attr-defined]
    assert put.levelno == logging.DEBUG and put.s3_attempt == 1  # type: ignore[attr-defined]
    assert put.s3_bytes == 1000 and put.s3_ms > 0  # type: ignore[attr-defined]
    assert put.getMessage().startswith(f"PUT {key} 200 1000 bytes ")
    assert put.getMessage().endswith(" ms attempt 1")


def test_a_retry_is_logged_at_info_and_no_secret_or_signature_ever(
        debug_log: pytest.LogCaptureFixture) -> None:
    replies = [Reply(503, b"<Error><Code>SlowDown</Code><Message>m</Message></Error>"),
               Reply(200, b"body")]
    with FakeS3(lambda m, p: replies.pop(0) if len(replies) > 1 else replies[0]) as fake:
        storage = S3Storage(aws_s3_endpoint_url=fake.endpoint, aws_s3_bucket_name="b",
                            aws_access_key_id="AKIDLOGTEST", aws_secret_access_key=SECRET,
                            aws_session_token="token-" + SECRET, aws_s3_max_attempts=3)
        assert storage.open("k.txt").read() == b"body"
        storage.url("k.txt")
    logged = records(debug_log)
    retry = [r for r in logged if r.levelno == logging.INFO]
    assert len(retry) == 1
    assert retry[0].getMessage().startswith("GET k.txt: 503 SlowDown after ")
    assert retry[0].getMessage().endswith(" (attempt 1); trying again")
    final = [r for r in logged if r.levelno == logging.DEBUG]
    assert [(r.s3_status, r.s3_attempt) for r in final] == [(200, 2)]  # type: ignore[attr-defined]
    text = "\n".join(r.getMessage() + repr(r.__dict__) for r in logged)
    for secret in (SECRET, "X-Amz-Signature", "Signature=", "AKIDLOGTEST", "http://"):
        assert secret not in text


def test_a_transport_failure_names_no_url(debug_log: pytest.LogCaptureFixture) -> None:
    storage = S3Storage(aws_s3_endpoint_url="http://127.0.0.1:1", aws_s3_bucket_name="b",
                        aws_access_key_id="AKIDLOGTEST", aws_secret_access_key=SECRET,
                        aws_s3_max_attempts=2, aws_s3_connect_timeout=1)
    with pytest.raises(OSError):
        storage.exists("k")
    logged = records(debug_log)
    assert [r.levelno for r in logged] == [logging.INFO, logging.DEBUG]
    assert logged[0].getMessage().startswith("HEAD k: no reply curl 7 after ")
    assert all(r.s3_status == 0 for r in logged)  # type: ignore[attr-defined]


def test_multipart_parts_are_logged(s3: S3Target, prefix: str,
                                    debug_log: pytest.LogCaptureFixture) -> None:
    with override_settings(AWS_S3_KEY_PREFIX=prefix.rstrip("/"),
                           AWS_S3_MULTIPART_THRESHOLD=5 * 1024 * 1024,
                           AWS_S3_MULTIPART_CHUNKSIZE=5 * 1024 * 1024):
        S3Storage().save("big.bin", ContentFile(b"y" * (11 * 1024 * 1024)))
    parts = [r for r in records(debug_log)
             if r.s3_method == "PUT" and r.s3_key == prefix + "big.bin"]  # type: ignore[attr-defined]
    assert len(parts) == 3 and sum(r.s3_bytes for r in parts) == 11 * 1024 * 1024  # type: ignore[attr-defined]
    assert {r.s3_method for r in records(debug_log)} >= {"POST", "PUT"}  # type: ignore[attr-defined]


def test_nothing_is_recorded_at_warning(s3: S3Target, prefix: str,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with override_settings(AWS_S3_KEY_PREFIX=prefix.rstrip("/")):
        storage = S3Storage()
        assert not storage._client.log_enabled       # the C client records nothing
        storage.save("quiet.txt", ContentFile(b"q"))
        storage.exists("quiet.txt")
    assert [r for r in caplog.records if r.name == LOGGER] == []


def test_a_failing_handler_never_fails_the_operation(s3: S3Target, prefix: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("handler bug")

    reported: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append(u.exc_value))
    with override_settings(AWS_S3_KEY_PREFIX=prefix.rstrip("/")):
        storage = S3Storage()
        storage._client.set_log(broken)
        storage.save("h.txt", ContentFile(b"h"))
        assert storage.exists("h.txt") and not storage.exists("nope.txt")
        storage._client.set_log(None)
        assert not storage._client.log_enabled
    # reported as unraisable, once per record
    assert len(reported) >= 4 and all(isinstance(e, RuntimeError) for e in reported)
    with pytest.raises(TypeError):
        storage._client.set_log(42)


def test_a_key_with_control_characters_cannot_forge_a_log_line(
        debug_log: pytest.LogCaptureFixture) -> None:
    from django_s3_storage.storage import _log_request

    _log_request("PUT", "a\nINFO forged\x1b[31m", 200, 1, False, 1.0, 5, None, 0)
    (record,) = records(debug_log)
    assert record.getMessage().startswith("PUT a\\nINFO forged\\x1b[31m 200 5 bytes ")
    assert "\n" not in record.getMessage() and "\x1b" not in record.getMessage()
