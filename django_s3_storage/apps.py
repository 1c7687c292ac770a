from django.apps import AppConfig


class DjangoS3StorageConfig(AppConfig):
    name = "django_s3_storage"
    verbose_name = "S3 storage"

    def ready(self) -> None:
        from django_s3_storage import checks  # noqa: F401  (registers the checks)
