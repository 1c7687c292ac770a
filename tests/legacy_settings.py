"""The test project with the pre-STORAGES settings (Django 4.2 still reads them)."""
from django_settings import *  # noqa: F401,F403

del STORAGES  # noqa: F821
DEFAULT_FILE_STORAGE = "django_s3_storage.storage.S3Storage"
STATICFILES_STORAGE = "django_s3_storage.storage.ManifestStaticS3Storage"
