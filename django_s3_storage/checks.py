"""System checks: django_s3_storage.E001, E002 and W001 to W004."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from django_s3_storage.storage import S3Storage

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _s3_storages() -> list[tuple[str, type[S3Storage], dict[str, Any]]]:
    """(alias, backend class, OPTIONS) of each STORAGES entry whose backend is one of
    this package's storages (on Django 4.2 the legacy DEFAULT_FILE_STORAGE and
    STATICFILES_STORAGE settings are there too)."""
    from django_s3_storage.storage import S3Storage

    found: list[tuple[str, type[S3Storage], dict[str, Any]]] = []
    for alias, entry in (getattr(settings, "STORAGES", None) or {}).items():
        if not isinstance(entry, dict):
            continue
        try:
            backend = import_string(entry.get("BACKEND", ""))
        except ImportError:
            continue
        if isinstance(backend, type) and issubclass(backend, S3Storage):
            found.append((alias, backend, dict(entry.get("OPTIONS") or {})))
    return found


def _where(alias: str, options: dict[str, Any], setting: str, suffix: str) -> str:
    """Where a value comes from: the storage's OPTIONS, or the setting."""
    if setting.lower() in options:
        return f"STORAGES[{alias!r}]['OPTIONS'][{setting.lower()!r}]"
    return setting + suffix


def _settings_of(backend: type[S3Storage], options: dict[str, Any]) -> S3Storage:
    """The storage's settings as it would take them, and nothing else: no request.
    A Manifest storage is made without ManifestFilesMixin.__init__, which would GET
    its manifest from the bucket (checks run on every migrate and runserver)."""
    from django_s3_storage.storage import S3Storage

    storage = backend.__new__(backend)
    own = {k: v for k, v in options.items() if k not in ("manifest_location", "manifest_storage")}
    S3Storage.__init__(storage, **own)
    return storage


def _configured() -> Iterator[tuple[str, Any, dict[str, Any], str]]:
    """(alias, storage, OPTIONS, settings suffix) of each S3 storage that can be made."""
    for alias, backend, options in _s3_storages():
        try:
            storage = _settings_of(backend, options)
        except ImproperlyConfigured:
            continue  # check_storages_can_be_made reports it
        yield alias, storage, options, backend.s3_settings_suffix


@register(Tags.files)
def check_storages_can_be_made(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """E001: a storage without a bucket name; E002: any other setting it refuses,
    both reported by `manage.py check` instead of on the first request."""
    errors = []
    for alias, backend, options in _s3_storages():
        try:
            _settings_of(backend, options)
        except ImproperlyConfigured as e:
            missing = "AWS_S3_BUCKET_NAME" in str(e) and "is required" in str(e)
            errors.append(
                Error(
                    f"STORAGES[{alias!r}] ({backend.__name__}): {e}",
                    hint=(
                        f"Set AWS_S3_BUCKET_NAME{backend.s3_settings_suffix}, or "
                        f"'aws_s3_bucket_name' in STORAGES[{alias!r}]['OPTIONS']."
                    )
                    if missing
                    else None,
                    id="django_s3_storage.E001" if missing else "django_s3_storage.E002",
                )
            )
    return errors


@register(Tags.security)
def check_public_url_with_bucket_auth(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    warnings = []
    for alias, storage, options, suffix in _configured():
        s = storage.settings
        if s.AWS_S3_PUBLIC_URL and s.AWS_S3_BUCKET_AUTH and not s.AWS_S3_CLOUDFRONT_KEY_ID:
            public = _where(alias, options, "AWS_S3_PUBLIC_URL", suffix)
            auth = _where(alias, options, "AWS_S3_BUCKET_AUTH", suffix)
            warnings.append(
                Warning(
                    f"STORAGES[{alias!r}]: {public} is set while {auth} is True.",
                    hint=(
                        f"URLs are built from {public} and carry no signature, while uploads "
                        f"are stored private. Set {auth} = False for public files, or remove "
                        f"{public}."
                    ),
                    id="django_s3_storage.W001",
                )
            )
    return warnings


@register(Tags.security, deploy=True)
def check_transport_security(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """`check --deploy`: W003, an endpoint reached over plain http (beyond this
    machine); W004, TLS verification turned off."""
    warnings = []
    for alias, storage, options, suffix in _configured():
        s = storage.settings
        endpoint = str(s.AWS_S3_ENDPOINT_URL or "")
        host = urlsplit(endpoint).hostname or ""
        if endpoint.lower().startswith("http:") and host not in _LOOPBACK:
            where = _where(alias, options, "AWS_S3_ENDPOINT_URL", suffix)
            warnings.append(
                Warning(
                    f"STORAGES[{alias!r}]: {where} = {endpoint!r} is plain http.",
                    hint="Files, signed requests and presigned URLs travel unencrypted: use an "
                    "https endpoint.",
                    id="django_s3_storage.W003",
                )
            )
        if s.AWS_S3_VERIFY is False:
            where = _where(alias, options, "AWS_S3_VERIFY", suffix)
            warnings.append(
                Warning(
                    f"STORAGES[{alias!r}]: {where} is False: the server's certificate is not "
                    "checked.",
                    hint="Anyone on the path can read and change files. Set it to True, or to "
                    "the path of the CA bundle that signed the server's certificate.",
                    id="django_s3_storage.W004",
                )
            )
    return warnings


def _static_backend() -> str:
    storages = getattr(settings, "STORAGES", None) or {}
    backend = storages.get("staticfiles", {}).get("BACKEND")
    return backend or getattr(settings, "STATICFILES_STORAGE", "") or ""


@register(Tags.staticfiles)
def check_collectstatic_command_order(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """The package's collectstatic (one listing, concurrent uploads) runs only when
    Django finds it first: "django_s3_storage" listed before "django.contrib.staticfiles"."""
    from django_s3_storage.storage import S3Storage

    apps = list(getattr(settings, "INSTALLED_APPS", []))
    names = [a.split(".apps.")[0] for a in apps]
    if (
        "django_s3_storage" not in names
        or "django.contrib.staticfiles" not in names
        or names.index("django_s3_storage") < names.index("django.contrib.staticfiles")
    ):
        return []
    try:
        backend = import_string(_static_backend())
    except ImportError:
        return []
    if not (isinstance(backend, type) and issubclass(backend, S3Storage)):
        return []
    return [
        Warning(
            "collectstatic runs Django's own command, which sends a HEAD, a DELETE and a PUT "
            "per file, one at a time.",
            hint=(
                'List "django_s3_storage" before "django.contrib.staticfiles" in '
                "INSTALLED_APPS: Django then runs this package's collectstatic (one listing, "
                "unchanged files skipped, uploads concurrent; the bucket ends up the same)."
            ),
            id="django_s3_storage.W002",
        )
    ]
