"""System checks: django_s3_storage.W001 and W002."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register
from django.utils.module_loading import import_string


@register(Tags.security)
def check_public_url_with_bucket_auth(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    warnings = []
    for suffix, auth_default in (("", True), ("_STATIC", False)):
        public_url = getattr(settings, f"AWS_S3_PUBLIC_URL{suffix}", "")
        bucket_auth = getattr(settings, f"AWS_S3_BUCKET_AUTH{suffix}", auth_default)
        if public_url and bucket_auth:
            warnings.append(Warning(
                f"AWS_S3_PUBLIC_URL{suffix} is set while AWS_S3_BUCKET_AUTH{suffix} is True.",
                hint=(f"URLs are built from AWS_S3_PUBLIC_URL{suffix} and carry no signature, "
                      f"while uploads are stored private. Set AWS_S3_BUCKET_AUTH{suffix} = "
                      f"False for public files, or remove AWS_S3_PUBLIC_URL{suffix}."),
                id="django_s3_storage.W001",
            ))
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
    if ("django_s3_storage" not in names or "django.contrib.staticfiles" not in names
            or names.index("django_s3_storage") < names.index("django.contrib.staticfiles")):
        return []
    try:
        backend = import_string(_static_backend())
    except ImportError:
        return []
    if not (isinstance(backend, type) and issubclass(backend, S3Storage)):
        return []
    return [Warning(
        "collectstatic runs Django's own command, which sends a HEAD, a DELETE and a PUT "
        "per file, one at a time.",
        hint=('List "django_s3_storage" before "django.contrib.staticfiles" in '
              "INSTALLED_APPS: Django then runs this package's collectstatic (one listing, "
              "unchanged files skipped, uploads concurrent; the bucket ends up the same)."),
        id="django_s3_storage.W002",
    )]
