"""The demo site: uploads in a private bucket (presigned links), the admin's static
files collected into a public bucket and served from there. example/run.py starts
the local S3 server and sets DEMO_S3_ENDPOINT and DEMO_DIR."""

import os

ENDPOINT = os.environ.get("DEMO_S3_ENDPOINT", "http://127.0.0.1:9000")
DIR = os.environ.get("DEMO_DIR", "/tmp/django-s3-storage-demo")

SECRET_KEY = "demo-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "demo_site.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_s3_storage",  # before staticfiles: its collectstatic
    "django.contrib.staticfiles",
    "demo_site",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(DIR, "db.sqlite3")}
}

# the storages: what this demo is about
AWS_S3_ENDPOINT_URL = ENDPOINT
AWS_REGION = "us-east-1"
AWS_ACCESS_KEY_ID = "demo"
AWS_SECRET_ACCESS_KEY = "demo-secret"
AWS_S3_BUCKET_NAME = "demo-media"  # private: url() is presigned
AWS_S3_ENDPOINT_URL_STATIC = ENDPOINT
AWS_S3_BUCKET_NAME_STATIC = "demo-static"  # public: plain URLs
STORAGES = {
    "default": {"BACKEND": "django_s3_storage.storage.S3Storage"},
    "staticfiles": {"BACKEND": "django_s3_storage.storage.ManifestStaticS3Storage"},
}
STATIC_URL = f"{ENDPOINT}/demo-static/"
