"""Files of any size through the storage API: streaming save() (multipart above
AWS_S3_MULTIPART_THRESHOLD, gzip chunk by chunk), open() that streams and seeks,
writable files, and the uploaded file's own content type."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile, File
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from django_s3_storage.files import S3File, S3WriteFile
from django_s3_storage.storage import S3Storage, StaticS3Storage

from conftest import BUCKET, S3Target

MiB = 1024 * 1024
PART = 5 * MiB   # S3's smallest part, which moto and RGW enforce too


@pytest.fixture
def storage(s3: S3Target, prefix: str) -> S3Storage:
    return S3Storage(aws_s3_key_prefix=prefix, aws_s3_multipart_threshold=PART,
                     aws_s3_multipart_chunksize=PART)


def pending_uploads(s3: S3Target, prefix: str) -> list[Any]:
    """The multipart uploads the server still holds under `prefix`."""
    reply = s3.boto().list_multipart_uploads(Bucket=BUCKET, Prefix=prefix)
    return reply.get("Uploads", [])


def stored(s3: S3Target, key: str) -> bytes:
    return s3.boto().get_object(Bucket=BUCKET, Key=key)["Body"].read()


class Generated(io.RawIOBase):
    """`size` bytes made up as they are read: a file no one holds in memory."""

    def __init__(self, size: int, seed: bytes = b"s") -> None:
        self.size, self.pos = size, 0
        self.block = hashlib.sha256(seed).digest() * 2048   # 64 KiB
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        assert whence == 0
        self.pos = pos
        self.sha = hashlib.sha256()
        return pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, b: Any) -> int:
        n = min(len(b), self.size - self.pos)
        view = memoryview(b)
        done = 0
        while done < n:
            at = (self.pos + done) % len(self.block)
            take = min(n - done, len(self.block) - at)
            view[done:done + take] = self.block[at:at + take]
            done += take
        self.sha.update(view[:n])
        self.pos += n
        return n


# ---- save() --------------------------------------------------------------------------

def test_small_save_is_one_put_with_a_plain_md5_etag(storage: S3Storage) -> None:
    data = os.urandom(100_000)
    storage.save("small.bin", ContentFile(data))
    etag = storage.meta("small.bin")["ETag"].strip('"')
    assert etag == hashlib.md5(data).hexdigest()


def test_big_save_goes_multipart_and_comes_back_exact(s3: S3Target, storage: S3Storage,
                                                      prefix: str) -> None:
    source = Generated(12 * MiB + 123)
    storage.save("big.bin", File(source, "big.bin"))
    etag = storage.meta("big.bin")["ETag"].strip('"')
    assert etag.endswith("-3"), etag
    got = hashlib.sha256()
    with storage.open("big.bin") as f:
        for chunk in f.chunks(MiB):
            got.update(chunk)
    assert got.hexdigest() == source.sha.hexdigest()
    assert storage.size("big.bin") == 12 * MiB + 123
    assert pending_uploads(s3, prefix) == []


def test_save_of_a_file_that_fails_midway_stores_nothing(s3: S3Target, storage: S3Storage,
                                                         prefix: str) -> None:
    class Breaks(Generated):
        def readinto(self, b: Any) -> int:
            if self.pos >= 11 * MiB:
                raise OSError("the disk went away")
            return super().readinto(b)

    with pytest.raises(OSError, match="the disk went away"):
        storage.save("broken.bin", File(Breaks(20 * MiB), "broken.bin"))
    assert not storage.exists("broken.bin")
    assert pending_uploads(s3, prefix) == []


def test_uploaded_files_own_content_type_wins(storage: S3Storage) -> None:
    upload = SimpleUploadedFile("photo.txt", b"\x89PNG not really", content_type="image/png")
    name = storage.save("photo.txt", upload)
    assert storage.meta(name)["ContentType"] == "image/png"
    # without one, the guess from the name
    storage.save("plain.json", ContentFile(b'{"a": 1}'))
    assert storage.meta("plain.json")["ContentType"] == "application/json"


def test_gzip_streams_into_a_spool_and_reads_back(storage: S3Storage) -> None:
    storage.gzip_spool_size = 4096   # past this the compressed copy is a temporary file
    text = "".join(f"line {i} of a large stylesheet {{}}\n" for i in range(200_000)).encode()
    storage.save("big.css", ContentFile(text))
    meta = storage.meta("big.css")
    assert meta["ContentEncoding"] == "gzip"
    assert meta["ContentLength"] < len(text) // 4
    assert meta["Metadata"]["uncompressed_size"] == str(len(text))
    assert storage.size("big.css") == len(text)
    with storage.open("big.css") as f:
        assert f.read() == text
        assert f.size == len(text)


def test_gzip_tells_the_upload_the_compressed_size(storage: S3Storage) -> None:
    # a known size keeps every part the same size (a grown part is refused by R2);
    # the Writer is the real one, the spy only records what save() asked for
    asked: list[int] = []
    writer = storage._writer

    def spy(key: str, params: dict[str, Any], size_hint: int = -1, **kw: Any) -> Any:
        asked.append(size_hint)
        return writer(key, params, size_hint, **kw)

    storage._writer = spy  # type: ignore[method-assign]
    storage.gzip_spool_size = 4096
    text = b"".join(b"p.note-%d { margin: 0 }\n" % i for i in range(100_000))
    storage.save("sized.css", ContentFile(text))
    storage.save("sized.bin", ContentFile(text))   # not compressed: its own size
    meta = storage.meta("sized.css")
    assert meta["ContentEncoding"] == "gzip"
    assert asked == [meta["ContentLength"], len(text)]


def test_gzip_that_does_not_shrink_stores_the_original(storage: S3Storage) -> None:
    storage.gzip_spool_size = 4096
    noise = os.urandom(300_000)   # text/plain by its name, incompressible
    storage.save("noise.txt", ContentFile(noise))
    meta = storage.meta("noise.txt")
    assert "ContentEncoding" not in meta or meta["ContentEncoding"] != "gzip"
    assert storage.open("noise.txt").read() == noise


def test_gzip_of_content_that_cannot_rewind(storage: S3Storage) -> None:
    class OneWay(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def readinto(self, b: Any) -> int:
            return self.data.readinto(b)

    text = b"body { color: red }\n" * 5000
    storage.save("oneway.css", File(OneWay(text), "oneway.css"))
    assert storage.open("oneway.css").read() == text
    raw = S3Storage(aws_s3_key_prefix=storage.settings.AWS_S3_KEY_PREFIX)
    assert gzip.decompress(raw._client.get_object(raw._object_key("oneway.css"))[0]) == text


# ---- open() for reading --------------------------------------------------------------

def test_open_and_read_ten_bytes_does_not_download_the_object(storage: S3Storage) -> None:
    source = Generated(40 * MiB)
    storage.save("forty.bin", File(source, "forty.bin"))
    with storage.open("forty.bin") as f:
        head = f.read(10)
        assert f.file.bytes_received < 8 * MiB
        assert f.file.requests == 1
    assert head == source.block[:10]


def test_open_seeks_lazily_and_reads_exact_ranges(storage: S3Storage) -> None:
    data = os.urandom(6 * MiB)
    storage.save("seek.bin", ContentFile(data))
    with storage.open("seek.bin") as f:
        for pos in (5 * MiB + 17, 3, 4 * MiB, len(data) - 5):
            f.seek(pos)
            assert f.tell() == pos
            assert f.read(100) == data[pos:pos + 100]
        f.seek(0)
        assert f.read() == data
        assert f.size == len(data)


def test_file_api_keeps_working(storage: S3Storage) -> None:
    lines = [f"line {i} ✓\n" for i in range(2000)]
    storage.save("lines.txt", ContentFile("".join(lines).encode()))
    with storage.open("lines.txt", "r") as f:
        assert list(f) == lines
    with storage.open("lines.txt", "rb") as f:
        assert b"".join(f.chunks(1000)) == "".join(lines).encode()
        assert [next(iter(f))] == [lines[0].encode()]
    f = storage.open("lines.txt")
    f.close()
    with f.open("rb") as g:
        assert isinstance(g, S3File)
        assert g.read(6) == b"line 0"
    with f.open("r") as g:
        assert g.readline() == lines[0]


# ---- open() for writing --------------------------------------------------------------

def test_write_mode_small_is_stored_on_close(storage: S3Storage) -> None:
    f = storage.open("w.bin", "wb")
    assert isinstance(f, S3WriteFile)
    f.write(b"hello ")
    f.write(memoryview(b"world"))
    assert not storage.exists("w.bin")   # nothing before close()
    f.close()
    assert storage.open("w.bin").read() == b"hello world"
    assert storage.meta("w.bin")["ContentType"] == "application/octet-stream"


def test_write_mode_large_goes_multipart(s3: S3Target, storage: S3Storage,
                                         prefix: str) -> None:
    data = os.urandom(11 * MiB + 5)
    with storage.open("wbig.bin", "wb") as f:
        for i in range(0, len(data), 777_777):
            f.write(data[i:i + 777_777])
        assert f.tell() == len(data)
    assert stored(s3, prefix + "wbig.bin") == data
    assert storage.meta("wbig.bin")["ETag"].strip('"').endswith("-3")


def test_text_write_mode_encodes(storage: S3Storage) -> None:
    with storage.open("t.txt", "w") as f:
        f.write("héllo\n")
        f.writelines(["a\n", "b\n"])
        with pytest.raises(TypeError):
            f.write(b"bytes")   # type: ignore[arg-type]
    assert storage.open("t.txt", "r").read() == "héllo\na\nb\n"
    assert storage.meta("t.txt")["ContentType"].startswith("text/plain")


def test_an_exception_inside_with_stores_nothing(s3: S3Target, storage: S3Storage,
                                                 prefix: str) -> None:
    with pytest.raises(RuntimeError, match="changed my mind"):
        with storage.open("never.bin", "wb") as f:
            f.write(os.urandom(12 * MiB))   # two parts are up already
            raise RuntimeError("changed my mind")
    assert not storage.exists("never.bin")
    assert pending_uploads(s3, prefix) == []
    with pytest.raises(RuntimeError):
        with storage.open("never-small.bin", "wb") as f:
            f.write(b"tiny")
            raise RuntimeError("no")
    assert not storage.exists("never-small.bin")


# ---- settings ------------------------------------------------------------------------

@pytest.mark.parametrize("name,value", [
    ("AWS_S3_MULTIPART_CHUNKSIZE", 5 * MiB - 1), ("AWS_S3_MULTIPART_CHUNKSIZE", "8MB"),
    ("AWS_S3_MULTIPART_THRESHOLD", -1), ("AWS_S3_MULTIPART_THRESHOLD", 6 * 1024 ** 3),
    ("AWS_S3_MULTIPART_THRESHOLD", True),
])
def test_multipart_settings_are_checked(s3: S3Target, name: str, value: Any) -> None:
    with override_settings(**{name: value}):
        with pytest.raises(ImproperlyConfigured, match=name):
            S3Storage()
    with override_settings(**{name + "_STATIC": value}):
        with pytest.raises(ImproperlyConfigured, match=name + "_STATIC"):
            StaticS3Storage()


def test_threshold_zero_sends_every_file_multipart(storage: S3Storage) -> None:
    s = S3Storage(aws_s3_key_prefix=storage.settings.AWS_S3_KEY_PREFIX,
                  aws_s3_multipart_threshold=0)
    s.save("zero.bin", ContentFile(b"x" * 1000))
    assert s.meta("zero.bin")["ETag"].strip('"').endswith("-1")
    assert s.open("zero.bin").read() == b"x" * 1000
