"""Django file storage for Amazon S3 and S3-compatible servers, with a C core.

The storage classes live in django_s3_storage.storage; the C extension,
django_s3_storage._s3, does the signing, the HTTP transfer, gzip and XML.
"""

__version__ = "0.16.0.dev0"
#: The version as a tuple, as django-s3-storage 0.15 had it.
VERSION = (0, 16, 0, "dev", 0)
