"""Django's Storage API on S3, each method against the S3 server."""
from __future__ import annotations

import gzip
import threading
import urllib.request
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile, File
from django.test import override_settings
from django.utils import timezone

from django_s3_storage import _s3
from django_s3_storage.storage import S3Storage

from conftest import S3Target
from servers import FakeS3, Reply


@pytest.fixture
def storage(s3: S3Target, prefix: str) -> S3Storage:
    return S3Storage(aws_s3_key_prefix=prefix)


# ---- open ----------------------------------------------------------------------

def test_open_binary_and_text_modes(storage: S3Storage) -> None:
    storage.save("hello.txt", ContentFile("héllo wörld\n".encode()))
    with storage.open("hello.txt") as f:
        assert f.read() == "héllo wörld\n".encode()
    with storage.open("hello.txt", "rb") as f:
        assert f.read() == "héllo wörld\n".encode()
    for mode in ("r", "rt"):
        with storage.open("hello.txt", mode) as f:
            assert f.read() == "héllo wörld\n"


@pytest.mark.parametrize("mode", ["a", "ab", "r+", "rb+", "w+", "x", "xb"])
def test_open_for_appending_or_updating_is_a_value_error(storage: S3Storage, mode: str) -> None:
    # "w" and "wb" open a streaming upload (tests/test_files.py); S3 objects have
    # no append and no update in place
    with pytest.raises(ValueError, match="not '"):
        storage.open("anything.txt", mode)


def test_open_missing_is_file_not_found(storage: S3Storage) -> None:
    with pytest.raises(FileNotFoundError):
        storage.open("not/there.txt")


def test_open_gzipped_file_comes_back_uncompressed(storage: S3Storage) -> None:
    text = "line of css {}\n" * 500
    storage.save("big.css", ContentFile(text.encode()))
    assert storage.meta("big.css")["ContentEncoding"] == "gzip"
    assert storage.open("big.css").read() == text.encode()
    assert storage.open("big.css", "r").read() == text


def test_open_streams_large_files(storage: S3Storage) -> None:
    data = bytes(range(256)) * 100
    storage.save("big.bin", ContentFile(data))
    text = "spooled text ✓\n" * 2000
    storage.save("big.txt", ContentFile(text.encode()))     # gzipped, decoded while spooling
    with storage.open("big.bin") as f:
        assert f.read() == data
    with storage.open("big.txt", "r") as f:
        assert f.read() == text
    f = storage.open("big.bin")
    f.close()
    with f.open() as g:
        assert g.read() == data


def test_opened_file_reopens_after_close(storage: S3Storage) -> None:
    storage.save("re.bin", ContentFile(b"again"))
    f = storage.open("re.bin")
    assert f.read() == b"again"
    f.close()
    assert f.closed
    with f.open() as g:
        assert g.read() == b"again"
    with f.open("r") as g:
        assert g.read() == "again"


# ---- save -------------------------------------------------------------------------

def test_save_bytes_and_text_content(storage: S3Storage) -> None:
    assert storage.save("b.bin", ContentFile(b"\x00\x01bytes")) == "b.bin"
    assert storage.open("b.bin").read() == b"\x00\x01bytes"
    assert storage.save("t.md", ContentFile("text ✓")) == "t.md"
    assert storage.open("t.md").read() == "text ✓".encode()


def test_save_from_a_real_file_rewinds_it(storage: S3Storage, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "local.bin"
    path.write_bytes(b"from disk" * 1000)
    with open(path, "rb") as fh:
        fh.read(5)
        storage.save("disk.bin", File(fh))
    assert storage.open("disk.bin").read() == b"from disk" * 1000


@pytest.mark.parametrize("name,content_type", [
    ("a.txt", "text/plain"), ("a.json", "application/json"), ("a.png", "image/png"),
    ("a.css", "text/css"), ("noext", "application/octet-stream"),
    ("a.unknownext", "application/octet-stream"),
])
def test_save_content_type_from_the_name(storage: S3Storage, name: str,
                                         content_type: str) -> None:
    storage.save(name, ContentFile(b"x"))
    assert storage.meta(name)["ContentType"] == content_type


def test_save_gzip_only_compressible_and_only_when_smaller(storage: S3Storage,
                                                           s3: S3Target, prefix: str) -> None:
    body = b'{"key": "value"}' * 300
    storage.save("data.json", ContentFile(body))
    meta = storage.meta("data.json")
    assert meta["ContentEncoding"] == "gzip"
    assert meta["Metadata"].get("uncompressed_size",
                                meta["Metadata"].get("uncompressed-size")) == str(len(body))
    assert gzip.decompress(s3.client().get_object(prefix + "data.json")[0]) == body
    storage.save("tiny.txt", ContentFile(b"a"))              # gzip would be larger
    assert "ContentEncoding" not in storage.meta("tiny.txt")
    storage.save("img.png", ContentFile(b"\x00" * 5000))     # not a text type
    assert "ContentEncoding" not in storage.meta("img.png")
    storage.save("feed.atom", ContentFile(b"<feed/>" * 500))  # application/atom+xml
    assert storage.meta("feed.atom")["ContentEncoding"] == "gzip"


def test_saved_headers_and_acl_follow_the_settings(storage: S3Storage) -> None:
    storage.save("h.txt", ContentFile(b"h"))
    meta = storage.meta("h.txt")
    assert meta["CacheControl"] == "private,max-age=3600"
    assert meta["ContentType"] == "text/plain"


# ---- delete, exists -----------------------------------------------------------------

def test_delete(storage: S3Storage) -> None:
    storage.save("gone.txt", ContentFile(b"x"))
    assert storage.exists("gone.txt")
    storage.delete("gone.txt")
    assert not storage.exists("gone.txt")
    storage.delete("gone.txt")    # deleting what is not there is not an error


def test_exists_for_files_and_directories(storage: S3Storage) -> None:
    storage.save("dir/sub/file.txt", ContentFile(b"x"))
    assert storage.exists("dir/sub/file.txt")
    assert storage.exists("dir/") and storage.exists("dir") and storage.exists("dir/sub/")
    assert storage.exists("dir/sub")
    assert not storage.exists("dir/sub/file.tx")
    assert not storage.exists("di")           # a prefix of a name is not a directory
    assert not storage.exists("nothing/")
    assert storage.exists("dir/../dir/sub/./file.txt")   # normalises inside the prefix
    assert storage.exists("/dir/sub/file.txt")


def test_names_outside_the_prefix_are_refused_before_any_request(s3: S3Target) -> None:
    with FakeS3(lambda m, p: Reply(200, b"")) as fake:
        storage = S3Storage(aws_s3_endpoint_url=fake.endpoint, aws_s3_key_prefix="media")
        for call in (lambda: storage.exists("../secret.txt"),
                     lambda: storage.open("a/../../secret.txt"),
                     lambda: storage.url("../../etc/passwd"),
                     lambda: storage.delete("../x"),
                     lambda: storage.listdir("..")):
            with pytest.raises(SuspiciousFileOperation):
                call()
        assert fake.requests == []
        bare = S3Storage(aws_s3_endpoint_url=fake.endpoint)
        with pytest.raises(SuspiciousFileOperation):
            bare.exists("../outside")
        assert fake.requests == []


@pytest.mark.parametrize("status", [403, 500])
def test_exists_raises_on_failures_that_are_not_not_found(s3: S3Target, status: int) -> None:
    with FakeS3(lambda m, p: Reply(status, b"")) as fake:
        storage = S3Storage(aws_s3_endpoint_url=fake.endpoint)
        with pytest.raises(_s3.S3Error) as info:
            storage.exists("k")
        assert info.value.status == status
        assert not isinstance(info.value, FileNotFoundError)


def test_exists_raises_when_the_endpoint_is_dead(s3: S3Target) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    storage = S3Storage(aws_s3_endpoint_url=f"http://127.0.0.1:{port}")
    with pytest.raises(_s3.S3Error):
        storage.exists("k")


# ---- listdir -----------------------------------------------------------------------------

@pytest.fixture
def tree(storage: S3Storage) -> S3Storage:
    for name in ("top.txt", "a/one.txt", "a/two.txt", "a/b/deep.txt", "c d/e.txt"):
        storage.save(name, ContentFile(b"x"))
    return storage


@pytest.mark.parametrize("path,dirs,files", [
    ("", ["a", "c d"], ["top.txt"]),
    ("/", ["a", "c d"], ["top.txt"]),
    ("a", ["b"], ["one.txt", "two.txt"]),
    ("/a", ["b"], ["one.txt", "two.txt"]),
    ("a/", ["b"], ["one.txt", "two.txt"]),
    ("a/b", [], ["deep.txt"]),
    ("missing", [], []),
])
def test_listdir(tree: S3Storage, path: str, dirs: list[str], files: list[str]) -> None:
    got_dirs, got_files = tree.listdir(path)
    assert sorted(got_dirs) == dirs and sorted(got_files) == files


def test_listdir_of_more_than_1000_files_paginates(storage: S3Storage, s3: S3Target,
                                                   prefix: str) -> None:
    client = s3.client()
    names = [f"many/f{i:04d}" for i in range(1010)]

    def put(chunk: list[str]) -> None:
        for n in chunk:
            client.put_object(prefix + n, b"")

    threads = [threading.Thread(target=put, args=(names[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    dirs, files = storage.listdir("many")
    assert dirs == [] and files == [n.split("/")[1] for n in names]


# ---- size, url, times, meta ------------------------------------------------------------

def test_size_plain_and_gzipped(storage: S3Storage) -> None:
    storage.save("plain.bin", ContentFile(b"12345"))
    assert storage.size("plain.bin") == 5
    text = b"gzip me please " * 1000
    storage.save("z.txt", ContentFile(text))
    assert storage.meta("z.txt")["ContentEncoding"] == "gzip"
    assert storage.meta("z.txt")["ContentLength"] < len(text)
    assert storage.size("z.txt") == len(text)     # on RGW too, where the name has a '-'
    with pytest.raises(FileNotFoundError):
        storage.size("missing.bin")


def test_url_presigned_fetches(storage: S3Storage) -> None:
    storage.save("dl/report ü+.txt", ContentFile(b"report " * 100))
    url = storage.url("dl/report ü+.txt")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=3600" in url
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read()
        if resp.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
    assert body == b"report " * 100


def test_url_expire_per_call(storage: S3Storage) -> None:
    """url(name, expire=...) as in django-storages: that many seconds, this call only."""
    storage.save("exp.bin", ContentFile(b"expiring"))
    url = storage.url("exp.bin", expire=120)
    assert "X-Amz-Expires=120&" in url or url.endswith("X-Amz-Expires=120")
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"expiring"
    assert "X-Amz-Expires=3600" in storage.url("exp.bin")     # the setting again
    put = storage.url("exp-put.bin", client_method="put_object", expire=60)
    assert "X-Amz-Expires=60" in put
    with pytest.raises(TypeError):   # keyword only: the third argument is client_method
        storage.url("exp.bin", None, "get_object", 60)  # type: ignore[misc]
    for bad in (0, 604801, -1, 1.5, "60", True):
        with pytest.raises(ValueError, match="expire must be"):
            storage.url("exp.bin", expire=bad)  # type: ignore[arg-type]
    # unsigned forms have no expiry to set: ignored, as django-storages does
    assert S3Storage(aws_s3_bucket_auth=False).url("a", expire=60) == \
        S3Storage(aws_s3_bucket_auth=False).url("a")


def test_url_extra_params(storage: S3Storage) -> None:
    storage.save("x.bin", ContentFile(b"x"))
    url = storage.url("x.bin", extra_params={
        "ResponseContentDisposition": 'attachment; filename="y.bin"'})
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.headers["Content-Disposition"] == 'attachment; filename="y.bin"'
    with pytest.raises(ValueError, match="Bogus"):
        storage.url("x.bin", extra_params={"Bogus": "1"})


def test_url_client_method_put_object_for_browser_uploads(storage: S3Storage) -> None:
    url = storage.url("uploads/direct.bin", client_method="put_object")
    req = urllib.request.Request(url, data=b"direct upload", method="PUT",
                                 headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req, timeout=10).read()
    assert storage.open("uploads/direct.bin").read() == b"direct upload"
    with pytest.raises(ValueError):
        storage.url("a", client_method="list_buckets")


def test_url_without_bucket_auth_refuses_extras(s3: S3Target) -> None:
    storage = S3Storage(aws_s3_bucket_auth=False)
    assert "?" not in storage.url("a")
    with pytest.raises(ValueError):
        storage.url("a", extra_params={"ResponseContentType": "text/plain"})
    with pytest.raises(ValueError):
        storage.url("a", client_method="put_object")


def test_times(storage: S3Storage) -> None:
    before = datetime.now(dt_timezone.utc) - timedelta(minutes=5)
    storage.save("time.bin", ContentFile(b"t"))
    after = datetime.now(dt_timezone.utc) + timedelta(minutes=5)
    for method in (storage.modified_time, storage.created_time, storage.accessed_time):
        naive = method("time.bin")
        assert naive.tzinfo is None
        assert before <= naive.replace(tzinfo=dt_timezone.utc) <= after
    for method in (storage.get_modified_time, storage.get_created_time,
                   storage.get_accessed_time):
        aware = method("time.bin")
        assert aware.tzinfo is not None and before <= aware <= after
    with override_settings(USE_TZ=False):
        local = storage.get_modified_time("time.bin")
        assert local.tzinfo is None
        assert local == timezone.make_naive(storage.meta("time.bin")["LastModified"])
    with pytest.raises(FileNotFoundError):
        storage.modified_time("missing.bin")


def test_meta_has_the_head_object_shape(storage: S3Storage) -> None:
    storage.save("m.txt", ContentFile(b"meta body " * 50))
    meta = storage.meta("m.txt")
    assert meta["ContentType"] == "text/plain"
    assert isinstance(meta["ContentLength"], int)
    assert meta["ETag"].startswith('"')
    assert isinstance(meta["LastModified"], datetime)
    assert meta["LastModified"].tzinfo is not None
    assert meta["LastModified"].utcoffset() == timedelta(0)
    assert isinstance(meta["Metadata"], dict)
    assert meta["CacheControl"] == "private,max-age=3600"


# ---- names ------------------------------------------------------------------------------

def test_get_available_name(storage: S3Storage) -> None:
    assert storage.get_available_name("free.txt") == "free.txt"
    storage.save("taken.txt", ContentFile(b"x"))
    alt = storage.get_available_name("taken.txt")
    assert alt != "taken.txt" and alt.startswith("taken_") and alt.endswith(".txt")
    short = storage.get_available_name("taken.txt", max_length=14)
    assert len(short) <= 14 and short.startswith("ta_") and short.endswith(".txt")


def test_save_tells_a_taken_name_from_names_that_start_the_same(storage: S3Storage) -> None:
    """save() asks one listing whether a name is free: on the suite's server, the
    file and a "directory" of the name are told apart from names that only start
    the same way, before and after the name + "/" in the listing's order."""
    for name in ("near.txt-1", "near.txt.bak", "nearer.txt-1", "nearer.txt/in", "dir.txt/in",
                 "past.txt0", "file.txt", "\u00e9.txt"):
        assert storage.save(name, ContentFile(b"old")) == name
    for free in ("near.txt", "past.txt", "fresh.txt", "\u00e9"):
        assert storage.save(free, ContentFile(b"new")) == free
    for taken in ("nearer.txt", "dir.txt", "file.txt", "\u00e9.txt"):
        saved = storage.save(taken, ContentFile(b"new"))
        assert saved != taken and saved.startswith(taken[:-4] + "_") and saved.endswith(".txt")
        with storage.open(saved) as f:
            assert f.read() == b"new"
    with storage.open("file.txt") as f:
        assert f.read() == b"old"


def test_get_available_name_with_overwrite(s3: S3Target, prefix: str) -> None:
    storage = S3Storage(aws_s3_file_overwrite=True, aws_s3_key_prefix=prefix)
    storage.save("taken.txt", ContentFile(b"x"))
    assert storage.get_available_name("taken.txt") == "taken.txt"
    # 21 characters into 15: the root loses 6, the directory and extension stay
    assert storage.get_available_name("dir/averylongname.txt", max_length=15) == \
        "dir/averylo.txt"
    with pytest.raises(SuspiciousFileOperation):
        storage.get_available_name("dir/name.txt", max_length=5)


def test_generate_filename(storage: S3Storage) -> None:
    assert storage.generate_filename("dir/a file?.txt") == "dir/a_file.txt"
    with pytest.raises(SuspiciousFileOperation):
        storage.generate_filename("../escape.txt")


# ---- copy, rename, sync_meta --------------------------------------------------------------

def test_copy_and_rename(storage: S3Storage) -> None:
    storage.save("orig.txt", ContentFile(b"copy me " * 100))
    assert storage.copy("orig.txt", "copied.txt") == "copied.txt"
    assert storage.open("copied.txt").read() == b"copy me " * 100
    assert storage.size("copied.txt") == 800
    assert storage.rename("copied.txt", "moved/there.txt") == "moved/there.txt"
    assert not storage.exists("copied.txt")
    assert storage.open("moved/there.txt").read() == b"copy me " * 100


def test_sync_meta_rewrites_headers_from_current_settings(s3: S3Target, prefix: str) -> None:
    old = S3Storage(aws_s3_key_prefix=prefix)
    old.save("a.txt", ContentFile(b"gzipped text " * 200))
    old.save("dir/b.bin", ContentFile(b"\x00binary"))
    new = S3Storage(aws_s3_key_prefix=prefix, aws_s3_bucket_auth=False,
                    aws_s3_max_age_seconds=999, aws_s3_metadata={"v": "2"},
                    aws_s3_content_disposition=lambda name: f"inline; x={name}")
    assert sorted(new.sync_meta_iter()) == ["a.txt", "dir/b.bin"]
    a = new.meta("a.txt")
    assert a["CacheControl"] == "public,max-age=999"
    assert a["ContentDisposition"] == "inline; x=a.txt"
    assert a["ContentType"] == "text/plain"
    assert a["ContentEncoding"] == "gzip"                     # kept
    assert a["Metadata"].get("v") == "2"
    assert new.size("a.txt") == len(b"gzipped text " * 200)   # uncompressed_size kept
    assert new.open("a.txt").read() == b"gzipped text " * 200
    b = new.meta("dir/b.bin")
    assert b["ContentType"] == "application/octet-stream" and "ContentEncoding" not in b
    grants = s3.boto().get_object_acl(Bucket="test-bucket", Key=prefix + "a.txt")["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") for g in grants)
    new.sync_meta()   # the plain form runs too
    assert new.meta("a.txt")["CacheControl"] == "public,max-age=999"


def test_sync_meta_applies_storage_class(s3: S3Target, prefix: str) -> None:
    S3Storage(aws_s3_key_prefix=prefix).save("c.bin", ContentFile(b"c"))
    new = S3Storage(aws_s3_key_prefix=prefix, aws_s3_reduced_redundancy=True)
    assert list(new.sync_meta_iter()) == ["c.bin"]
    assert new.meta("c.bin")["StorageClass"] == "REDUCED_REDUNDANCY"


@pytest.mark.rgw_differs("SSE AES256 is accepted but no SSE header comes back on HEAD")
def test_sync_meta_applies_encryption(s3: S3Target, prefix: str) -> None:
    S3Storage(aws_s3_key_prefix=prefix).save("e.bin", ContentFile(b"e"))
    new = S3Storage(aws_s3_key_prefix=prefix, aws_s3_encrypt_key=True)
    assert list(new.sync_meta_iter()) == ["e.bin"]
    assert new.meta("e.bin")["ServerSideEncryption"] == "AES256"
    assert new.open("e.bin").read() == b"e"


@pytest.mark.parametrize("key_prefix", ["", "media/x"])
@pytest.mark.parametrize("name", [
    "a.txt", "dir/file name.txt", "a/b.c/d", "x..y/z", "ü/ß.txt", "a.", "a/b.",
    "/lead", "a//b", "a/./b", "a/../b", "./a", ".hidden", "dir/", "a/.b",
])
def test_key_names_are_the_normalised_join(s3: S3Target, key_prefix: str, name: str) -> None:
    import posixpath

    storage = S3Storage(aws_s3_key_prefix=key_prefix)
    expected = posixpath.normpath(posixpath.join(key_prefix, name.lstrip("/")))
    assert storage._get_key_name(name) == expected
