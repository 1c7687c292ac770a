"""Django settings of the test project. The S3 endpoint and keys come from the
session fixture (conftest.py), which starts the server, or from the environment
when the suite runs against an engine started outside it (scripts/test-all)."""
import os

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "Europe/Paris"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "django_s3_storage",
    "s3_test_app",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
STATIC_URL = "/static/"

AWS_REGION = "us-east-1"
AWS_ACCESS_KEY_ID = os.environ.get("S3_TEST_ACCESS_KEY", "testing")
AWS_SECRET_ACCESS_KEY = os.environ.get("S3_TEST_SECRET_KEY", "testing")
AWS_S3_ENDPOINT_URL = os.environ.get("S3_TEST_ENDPOINT_URL", "")
AWS_S3_BUCKET_NAME = "test-bucket"
AWS_S3_ENDPOINT_URL_STATIC = AWS_S3_ENDPOINT_URL
AWS_S3_BUCKET_NAME_STATIC = "test-bucket-static"

STORAGES = {
    "default": {"BACKEND": "django_s3_storage.storage.S3Storage"},
    "staticfiles": {"BACKEND": "django_s3_storage.storage.ManifestStaticS3Storage"},
}
