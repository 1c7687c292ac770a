"""A short demo of django-s3-storage against a local S3 server started for it.

Run with `make demo`. It starts moto's S3 server on 127.0.0.1 (a free port),
then goes through what the package does: upload, a presigned URL fetched back
with plain HTTP, a listing, and a gzip round trip. It stops the server at the end.
"""
from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers import MotoServer  # noqa: E402

from django_s3_storage import _s3  # noqa: E402


def main() -> None:
    server = MotoServer()
    try:
        server.create_bucket("demo-bucket")
        print(f"S3 server (moto) on {server.endpoint}, bucket demo-bucket")
        client = _s3.Client("demo-bucket", endpoint_url=server.endpoint,
                            access_key="demo", secret_key="demo-secret")

        t0 = time.perf_counter()
        put = client.put_object("docs/hello ü.txt", b"Hello from C!", content_type="text/plain")
        print(f"uploaded docs/hello ü.txt, ETag {put['ETag']} "
              f"({(time.perf_counter() - t0) * 1e3:.1f} ms)")

        url = client.presign("GET", "docs/hello ü.txt", expires=300)
        with urllib.request.urlopen(url, timeout=10) as resp:
            print(f"presigned URL fetched with urllib: {resp.read()!r}")

        for i in range(3):
            client.put_object(f"docs/more/{i}.txt", b"x" * i)
        page = client.list_objects(prefix="docs/", delimiter="/")
        print("listing of docs/: files", [c[0] for c in page["Contents"]],
              "dirs", page["CommonPrefixes"])

        css = b"body { color: #333; }\n" * 200
        packed = _s3.gzip_compress(css)
        client.put_object("static/site.css", packed, content_type="text/css",
                          content_encoding="gzip")
        back, meta = client.get_object("static/site.css", decompress=True)
        assert back == css
        print(f"gzip round trip: {len(css)} bytes stored as {len(packed)}, read back "
              f"{len(back)} bytes ({meta['ContentType']})")
        print("demo OK")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
