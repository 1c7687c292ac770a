"""A short demo of django-s3-storage against a local S3 server started for it.

Run with `make demo`. It starts moto's S3 server on 127.0.0.1 (a free port),
configures Django with S3Storage as the default storage, and goes through the
main job: upload, a presigned URL fetched back with plain HTTP, a listing, and a
gzip round trip. The server stops at the end.
"""
from __future__ import annotations

import gzip
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers import MotoServer  # noqa: E402


def main() -> None:
    server = MotoServer()
    try:
        server.create_bucket("demo-bucket")
        print(f"S3 server (moto) on {server.endpoint}, bucket demo-bucket")

        import django
        from django.conf import settings

        settings.configure(
            INSTALLED_APPS=["django_s3_storage"],
            STORAGES={"default": {"BACKEND": "django_s3_storage.storage.S3Storage"}},
            AWS_S3_ENDPOINT_URL=server.endpoint,
            AWS_S3_BUCKET_NAME="demo-bucket",
            AWS_ACCESS_KEY_ID="demo",
            AWS_SECRET_ACCESS_KEY="demo-secret",
            AWS_S3_KEY_PREFIX="media",
        )
        django.setup()
        from django.core.files.base import ContentFile
        from django.core.files.storage import default_storage as storage

        name = storage.save("docs/hello ü.txt", ContentFile("Hello from C! " * 50))
        print(f"saved {name!r}: stored as "
              f"{storage.meta(name)['ContentLength']} bytes gzipped, size() says "
              f"{storage.size(name)}")

        url = storage.url(name)
        print(f"presigned URL: {url[:90]}...")
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read()
            if resp.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
        print(f"fetched with urllib: {body[:28]!r}... ({len(body)} bytes)")

        for i in range(3):
            storage.save(f"docs/more/{i}.bin", ContentFile(b"x" * i))
        print("listdir('docs'):", storage.listdir("docs"))
        print("exists('docs/more'):", storage.exists("docs/more"))

        css = "body { color: #333; }\n" * 200
        storage.save("site.css", ContentFile(css))
        with storage.open("site.css", "r") as f:
            back = f.read()
        assert back == css
        meta = storage.meta("site.css")
        print(f"gzip round trip: {len(css)} characters stored as {meta['ContentLength']} "
              f"bytes ({meta['ContentType']}, {meta['ContentEncoding']}), read back whole")
        print("demo OK")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
