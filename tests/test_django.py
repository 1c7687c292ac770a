"""The storages inside Django: settings styles, s3_sync_meta, collectstatic,
system checks, FileFields and migrations."""
from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import django
import pytest
from django.core import checks
from django.core.files.base import ContentFile
from django.core.files.storage import StorageHandler, default_storage, storages
from django.core.management import CommandError, call_command
from django.test import override_settings

from django_s3_storage.storage import ManifestStaticS3Storage, S3Storage

from conftest import STATIC_BUCKET, S3Target
from servers import FakeS3, Reply

TESTS = Path(__file__).parent


# ---- settings styles ------------------------------------------------------------

def test_storages_setting_gives_the_s3_storages(s3: S3Target) -> None:
    assert isinstance(storages["default"], S3Storage)
    assert isinstance(storages["staticfiles"], ManifestStaticS3Storage)
    assert storages["staticfiles"].settings.AWS_S3_BUCKET_NAME == STATIC_BUCKET


def test_storages_options_are_keyword_arguments(s3: S3Target, prefix: str) -> None:
    # Django's own handler of the STORAGES setting (override_settings(STORAGES=...)
    # drops OPTIONS on Django 4.2, which a settings module does not)
    handler = StorageHandler({
        "default": {"BACKEND": "django_s3_storage.storage.S3Storage",
                    "OPTIONS": {"aws_s3_key_prefix": prefix, "aws_s3_max_age_seconds": 42}},
    })
    storage = handler["default"]
    storage.save("opt.txt", ContentFile(b"options"))
    assert s3.client().get_object(prefix + "opt.txt")[0] == b"options"
    assert storage.meta("opt.txt")["CacheControl"] == "private,max-age=42"


LEGACY_SCRIPT = """
import django
django.setup()
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
default_storage.settings, staticfiles_storage.settings   # set the lazy objects up
print(type(default_storage._wrapped).__name__, type(staticfiles_storage._wrapped).__name__)
name = default_storage.save("{prefix}legacy.txt", ContentFile(b"legacy settings"))
print(default_storage.open(name).read().decode())
"""


@pytest.mark.skipif(django.VERSION >= (5, 1),
                    reason="Django 5.1 removed DEFAULT_FILE_STORAGE and STATICFILES_STORAGE; "
                           "the Django 4.2 run of .ci/run covers them")
def test_legacy_storage_settings(s3: S3Target, prefix: str) -> None:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="legacy_settings",
               PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-W", "ignore", "-c",
                          LEGACY_SCRIPT.format(prefix=prefix)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-2] == "S3Storage ManifestStaticS3Storage"
    assert lines[-1] == "legacy settings"


# ---- s3_sync_meta ------------------------------------------------------------------

def test_s3_sync_meta_command(s3: S3Target, prefix: str) -> None:
    with override_settings(AWS_S3_KEY_PREFIX=prefix.rstrip("/")):
        default_storage.save("one.txt", ContentFile(b"one " * 100))
        default_storage.save("sub/two.bin", ContentFile(b"two"))
        with override_settings(AWS_S3_MAX_AGE_SECONDS=555):
            out = io.StringIO()
            call_command("s3_sync_meta", "django.core.files.storage.default_storage",
                         stdout=out)
            lines = out.getvalue().splitlines()     # the names, then the summary line
            assert sorted(lines[:-1]) == ["one.txt", "sub/two.bin"]
            assert lines[-1].startswith("2 files rewritten in 1 storage in ")
            assert default_storage.meta("one.txt")["CacheControl"] == "private,max-age=555"
            assert default_storage.meta("sub/two.bin")["CacheControl"] == "private,max-age=555"
            assert default_storage.size("one.txt") == 400
        with override_settings(AWS_S3_MAX_AGE_SECONDS=777):
            quiet = io.StringIO()
            call_command("s3_sync_meta", "django.core.files.storage.default_storage",
                         verbosity=0, stdout=quiet)
            assert quiet.getvalue() == ""
            assert default_storage.meta("one.txt")["CacheControl"] == "private,max-age=777"


def test_s3_sync_meta_several_storages(s3: S3Target, prefix: str) -> None:
    with override_settings(AWS_S3_KEY_PREFIX=prefix + "media",
                           AWS_S3_KEY_PREFIX_STATIC=prefix + "static"):
        default_storage.save("m.txt", ContentFile(b"m"))
        storages["staticfiles"].save("s.css", ContentFile(b"s"))
        out = io.StringIO()
        call_command("s3_sync_meta", "django.core.files.storage.default_storage",
                     "django.contrib.staticfiles.storage.staticfiles_storage", stdout=out)
        lines = out.getvalue().splitlines()
        assert sorted(lines[:-1]) == ["m.txt", "s.css"]
        assert lines[-1].startswith("2 files rewritten in 2 storages in ")


def test_s3_sync_meta_unknown_path_is_a_command_error(s3: S3Target) -> None:
    with pytest.raises(CommandError, match="no.such.storage"):
        call_command("s3_sync_meta", "no.such.storage")
    with pytest.raises(CommandError, match="not an S3 storage"):
        call_command("s3_sync_meta", "django.conf.settings")


# ---- collectstatic into ManifestStaticS3Storage --------------------------------------

def fetch(url: str) -> tuple[bytes, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read()
        headers = {k.lower(): v for k, v in resp.headers.items()}
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return body, headers


def test_collectstatic_into_manifest_storage(s3: S3Target, prefix: str) -> None:
    with override_settings(AWS_S3_KEY_PREFIX_STATIC=prefix.rstrip("/")):
        storage = storages["staticfiles"]
        call_command("collectstatic", interactive=False, verbosity=0)
        manifest = json.loads(storage.open("staticfiles.json").read())
        paths = manifest["paths"]
        hashed_css = paths["s3_test_app/site.css"]
        assert hashed_css != "s3_test_app/site.css" and hashed_css.endswith(".css")
        assert "s3_test_app/img/logo.png" in paths and "s3_test_app/app.js" in paths

        storage.hashed_files = manifest["paths"]   # as a fresh process would load it
        url = storage.url("s3_test_app/site.css")
        assert hashed_css in url
        assert "?" not in url                         # no query-string auth in static URLs
        body, headers = fetch(url)
        assert headers["cache-control"] == "public,max-age=31536000"
        assert paths["s3_test_app/img/logo.png"].split("/")[-1].encode() in body  # rewritten
        _, plain_headers = fetch(storage._client.url(prefix + "s3_test_app/site.css"))
        assert plain_headers["cache-control"] == "public,max-age=3600"
        _, manifest_headers = fetch(storage._client.url(prefix + "staticfiles.json"))
        # saved by post-processing with the hashed files, as 0.15 does
        assert manifest_headers["cache-control"] == "public,max-age=31536000"

        # sync_meta keeps the long max age for the hashed names only
        with override_settings(AWS_S3_MAX_AGE_SECONDS_CACHED_STATIC=1000,
                               AWS_S3_MAX_AGE_SECONDS_STATIC=10):
            synced = set(storage.sync_meta_iter())
            assert hashed_css in synced and "staticfiles.json" in synced
            assert storage.meta(hashed_css)["CacheControl"] == "public,max-age=1000"
            assert storage.meta("s3_test_app/site.css")["CacheControl"] == "public,max-age=10"
            assert storage.meta("staticfiles.json")["CacheControl"] == "public,max-age=10"


# ---- system checks ------------------------------------------------------------------

def run_w001() -> list[str]:
    return [m.id for m in checks.run_checks(tags=[checks.Tags.security])
            if m.id == "django_s3_storage.W001"]


def test_w001_public_url_with_bucket_auth(s3: S3Target) -> None:
    assert run_w001() == []
    with override_settings(AWS_S3_PUBLIC_URL="https://cdn.example.com/"):
        assert run_w001() == ["django_s3_storage.W001"]
    with override_settings(AWS_S3_PUBLIC_URL="https://cdn.example.com/",
                           AWS_S3_BUCKET_AUTH=False):
        assert run_w001() == []
    with override_settings(AWS_S3_PUBLIC_URL_STATIC="https://cdn.example.com/",
                           AWS_S3_BUCKET_AUTH_STATIC=True):
        assert run_w001() == ["django_s3_storage.W001"]


S3 = "django_s3_storage.storage.S3Storage"
STATIC = "django.contrib.staticfiles.storage.StaticFilesStorage"


def ours(*, deploy: bool = False) -> list[checks.CheckMessage]:
    return [m for m in checks.run_checks(include_deployment_checks=deploy)
            if m.id and m.id.startswith("django_s3_storage.") and m.id != "django_s3_storage.W002"]


def test_e001_a_storage_without_a_bucket_name(s3: S3Target) -> None:
    assert ours() == []
    with override_settings(AWS_S3_BUCKET_NAME=""):
        (error,) = ours()
    assert error.id == "django_s3_storage.E001" and error.level == checks.ERROR
    assert "STORAGES['default'] (S3Storage)" in error.msg and "AWS_S3_BUCKET_NAME" in error.msg
    assert "'aws_s3_bucket_name' in STORAGES['default']['OPTIONS']" in str(error.hint)
    # given through OPTIONS, it is found there
    with override_settings(AWS_S3_BUCKET_NAME="", STORAGES={
            "default": {"BACKEND": S3, "OPTIONS": {"aws_s3_bucket_name": "b"}},
            "staticfiles": {"BACKEND": STATIC}}):
        assert ours() == []


def test_e002_any_other_setting_the_storage_refuses(s3: S3Target) -> None:
    with override_settings(STORAGES={
            "default": {"BACKEND": S3, "OPTIONS": {"aws_s3_acl": "everyone"}},
            "staticfiles": {"BACKEND": STATIC}}):
        (error,) = ours()
    assert error.id == "django_s3_storage.E002" and "AWS_S3_ACL" in error.msg


def test_w001_also_for_settings_given_through_storages_options(s3: S3Target) -> None:
    with override_settings(STORAGES={
            "default": {"BACKEND": S3, "OPTIONS": {"aws_s3_public_url": "https://cdn.example/"}},
            "staticfiles": {"BACKEND": STATIC}}):
        (warning,) = ours()
    assert warning.id == "django_s3_storage.W001"
    assert "STORAGES['default']['OPTIONS']['aws_s3_public_url']" in warning.msg
    assert "AWS_S3_BUCKET_AUTH is True" in warning.msg


def test_the_checks_send_no_request(s3: S3Target) -> None:
    """A Manifest storage made the usual way GETs its manifest: the checks make it
    without that (they run on every migrate and runserver)."""
    with FakeS3(lambda m, p: Reply(500, b"")) as fake, override_settings(STORAGES={
            "default": {"BACKEND": S3, "OPTIONS": {"aws_s3_endpoint_url": fake.endpoint}},
            "staticfiles": {"BACKEND": "django_s3_storage.storage.ManifestStaticS3Storage",
                            "OPTIONS": {"aws_s3_endpoint_url": fake.endpoint,
                                        "aws_s3_public_url": "https://cdn.example/",
                                        "aws_s3_bucket_auth": True}}}):
        assert [m.id for m in ours(deploy=True)] == ["django_s3_storage.W001"]
        assert fake.requests == []


def test_deploy_checks_warn_of_plain_http_and_tls_verification_off(s3: S3Target) -> None:
    with override_settings(AWS_S3_ENDPOINT_URL="http://s3.internal:9000"):
        assert ours() == []                                   # --deploy only
        (warning,) = ours(deploy=True)
    assert warning.id == "django_s3_storage.W003" and "AWS_S3_ENDPOINT_URL " in warning.msg
    with override_settings(AWS_S3_ENDPOINT_URL="http://127.0.0.1:9000"):
        assert ours(deploy=True) == []                        # this machine: no one between
    with override_settings(STORAGES={
            "default": {"BACKEND": S3},
            "staticfiles": {"BACKEND": "django_s3_storage.storage.StaticS3Storage",
                            "OPTIONS": {"aws_s3_verify": False}}}):
        (warning,) = ours(deploy=True)
    assert warning.id == "django_s3_storage.W004"
    assert "STORAGES['staticfiles']['OPTIONS']['aws_s3_verify'] is False" in warning.msg
    with override_settings(AWS_S3_VERIFY_STATIC=False, STORAGES={
            "default": {"BACKEND": S3},
            "staticfiles": {"BACKEND": "django_s3_storage.storage.StaticS3Storage"}}):
        assert [w.msg.split(": ")[1].split()[0] for w in ours(deploy=True)] == \
            ["AWS_S3_VERIFY_STATIC"]


def run_w002() -> list[str]:
    return [m.id for m in checks.run_checks(tags=[checks.Tags.staticfiles])
            if m.id == "django_s3_storage.W002"]


def test_w002_collectstatic_command_order(s3: S3Target) -> None:
    # the test settings list staticfiles first, with this package's static storage
    assert run_w002() == ["django_s3_storage.W002"]
    with override_settings(INSTALLED_APPS=["django.contrib.contenttypes", "django_s3_storage",
                                           "django.contrib.staticfiles", "s3_test_app"]):
        assert run_w002() == []
    other = {"default": {"BACKEND": "django_s3_storage.storage.S3Storage"},
             "staticfiles": {"BACKEND":
                             "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    with override_settings(STORAGES=other):
        assert run_w002() == []


# ---- models and migrations ----------------------------------------------------------

@pytest.mark.django_db
def test_file_field_saves_through_the_storage(s3: S3Target) -> None:
    from s3_test_app.models import Document

    doc = Document(upload=ContentFile(b"attached", name="report.pdf"))
    doc.save()
    assert doc.upload.name.startswith("docs/report") and doc.upload.name.endswith(".pdf")
    assert s3.client().get_object("models/" + doc.upload.name)[0] == b"attached"
    doc.upload.open()
    assert doc.upload.read() == b"attached"
    doc.upload.close()
    assert "X-Amz-Signature" in doc.upload.url
    assert doc.upload.size == 8


@pytest.mark.django_db
def test_file_field_with_storage_makes_a_migration(s3: S3Target) -> None:
    out = io.StringIO()
    call_command("makemigrations", "s3_test_app", dry_run=True, verbosity=3, stdout=out)
    text = out.getvalue()
    assert "django_s3_storage.storage.S3Storage(aws_s3_key_prefix='models')" in text
    assert "upload_to='docs/'" in text
