"""Django's collectstatic, run inside the storage's collecting() when the static
storage is one of this package's: one listing instead of a HEAD per file, no PUT or
DELETE for a file the bucket already holds, the uploads concurrent. List
"django_s3_storage" before "django.contrib.staticfiles" in INSTALLED_APPS for Django
to pick this command; the bucket ends up the same either way."""

from __future__ import annotations

from typing import Any

from django.contrib.staticfiles.management.commands import collectstatic

from django_s3_storage.storage import S3Storage


class Command(collectstatic.Command):
    def collect(self) -> dict[str, Any]:
        storage = self.storage  # a LazyObject passes isinstance on to what it wraps
        if self.dry_run or not isinstance(storage, S3Storage):
            return super().collect()
        with storage.collecting():
            return super().collect()
