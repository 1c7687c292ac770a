"""System checks: django_s3_storage.W001."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register


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
