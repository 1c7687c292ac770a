"""Django file storage for Amazon S3 and S3-compatible servers, with a C core.

The storage classes live in django_s3_storage.storage; the C extension,
django_s3_storage._s3, does the signing, the HTTP transfer, gzip and XML.
"""
