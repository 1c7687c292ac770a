from django.db import models

from django_s3_storage.storage import S3Storage


class Document(models.Model):
    upload = models.FileField(upload_to="docs/", storage=S3Storage(aws_s3_key_prefix="models"))
    default_storage_upload = models.FileField(upload_to="other/", blank=True)
