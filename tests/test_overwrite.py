"""No lost writes: with AWS_S3_FILE_OVERWRITE = False, save() commits only if the name
is still free (If-None-Match: * on the PutObject or the CompleteMultipartUpload), and a
name taken meanwhile (412 PreconditionFailed, 409 ConditionalRequestConflict) moves the
file to the next free name. Against the suite's server, and scripted stand-ins on
127.0.0.1 for the replies a real server gives only in a race."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable

import pytest
from django.core.files.base import ContentFile, File

from django_s3_storage import _s3
from django_s3_storage.storage import S3Storage

from conftest import BUCKET, S3Target
from servers import Reply, ScriptedS3, Seen, in_forked_child, listing_reply

MiB = 1 << 20
WRITERS = 8


def body(i: int, n: int = 1000) -> bytes:
    """n bytes that only writer i sends."""
    seed = hashlib.sha256(f"writer {i}".encode()).digest()
    return (seed * (n // 32 + 1))[:n]


class TakenMeanwhile(S3Storage):
    """A storage whose get_available_name lets `meanwhile()` run after it found a name
    free and before the upload: the moment another process takes the name."""

    def __init__(self, meanwhile: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.meanwhile = meanwhile
        self.names: list[str] = []

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        name = super().get_available_name(name, max_length)
        self.names.append(name)
        self.meanwhile(name)
        return name


def objects(s3: S3Target, prefix: str) -> dict[str, bytes]:
    """Every object under prefix, by name (the prefix cut off), with its bytes."""
    boto = s3.boto()
    keys = [o["Key"] for o in boto.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get(
        "Contents", [])]
    return {k[len(prefix):]: boto.get_object(Bucket=BUCKET, Key=k)["Body"].read()
            for k in keys}


def uploads(s3: S3Target, prefix: str) -> list[str]:
    boto = s3.boto()
    return [u["Key"] for u in boto.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get(
        "Uploads", [])]


# ---- against the suite's server ---------------------------------------------------


def race(s3: S3Target, prefix: str, size: int, same: bool = False,
         **settings: Any) -> tuple[list[str], dict]:
    """WRITERS threads save one name at once, each with its own bytes (the same
    bytes for all of them with `same`). All of them
    find the name free before any uploads (a barrier in get_available_name, the
    window of the exists-then-put race): every upload races for the one name."""
    barrier = threading.Barrier(WRITERS, timeout=30)
    first_look = threading.local()

    def meanwhile(name: str) -> None:
        if not getattr(first_look, "done", False):
            first_look.done = True
            barrier.wait()

    storage = TakenMeanwhile(meanwhile, aws_s3_key_prefix=prefix, **settings)
    names: list[str] = [""] * WRITERS
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            names[i] = storage.save("race/same.bin", ContentFile(body(0 if same else i, size)))
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    return names, objects(s3, prefix)


def test_eight_threads_saving_one_name_lose_no_write(s3: S3Target, prefix: str) -> None:
    names, stored = race(s3, prefix, 1000)
    # every writer got a name of its own, and each holds exactly that writer's bytes
    assert len(set(names)) == WRITERS and "race/same.bin" in names
    assert sorted(stored) == sorted(names)
    assert {stored[names[i]] for i in range(WRITERS)} == {body(i) for i in range(WRITERS)}
    for i in range(WRITERS):
        assert stored[names[i]] == body(i)
    for name in names:
        assert name.startswith("race/same") and name.endswith(".bin")


def test_eight_threads_saving_the_same_bytes_keep_eight_objects(s3: S3Target,
                                                                prefix: str) -> None:
    # a 412 is taken for a commit of one's own only after an attempt of one's own
    # handed over the body: a writer that saved identical bytes first is another
    # writer, whose object another record may delete
    names, stored = race(s3, prefix, 1000, same=True)
    assert len(set(names)) == WRITERS and "race/same.bin" in names
    assert sorted(stored) == sorted(names)
    assert set(stored.values()) == {body(0)}


# One worker process: it finds the name free, waits until every worker has (a file
# each in a shared folder), then uploads.
WORKER = """
import hashlib, sys, time
from pathlib import Path
import django
django.setup()
from django.core.files.base import ContentFile
from django_s3_storage.storage import S3Storage

i, prefix, ready, count = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
seed = hashlib.sha256(f"writer {i}".encode()).digest()

class Racing(S3Storage):
    looked = False

    def get_available_name(self, name, max_length=None):
        name = super().get_available_name(name, max_length)
        if not self.looked:
            self.looked = True
            (ready / str(i)).touch()
            deadline = time.monotonic() + 60
            while len(list(ready.iterdir())) < count:
                if time.monotonic() > deadline:
                    sys.exit("the other workers never came")
                time.sleep(0.002)
        return name

print(Racing(aws_s3_key_prefix=prefix).save("race/same.bin",
                                            ContentFile((seed * 32)[:1000])))
"""


def test_eight_processes_saving_one_name_lose_no_write(s3: S3Target, prefix: str,
                                                       tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    procs = [subprocess.Popen([sys.executable, "-W", "ignore", "-c", WORKER, str(i), prefix,
                               str(tmp_path), str(WRITERS)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(WRITERS)]
    names = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        names.append(out.strip().splitlines()[-1])
    stored = objects(s3, prefix)
    assert len(set(names)) == WRITERS and "race/same.bin" in names
    assert sorted(stored) == sorted(names)
    for i in range(WRITERS):
        assert stored[names[i]] == body(i)


def test_with_overwrite_the_race_keeps_one_object(s3: S3Target, prefix: str) -> None:
    # what the condition prevents: without it every writer takes the one name
    names, stored = race(s3, prefix, 1000, aws_s3_file_overwrite=True)
    assert names == ["race/same.bin"] * WRITERS
    assert list(stored) == ["race/same.bin"]
    assert stored["race/same.bin"] in {body(i) for i in range(WRITERS)}


def test_a_name_taken_meanwhile_moves_a_small_file(s3: S3Target, prefix: str) -> None:
    other = S3Storage(aws_s3_key_prefix=prefix, aws_s3_file_overwrite=True)

    def meanwhile(name: str) -> None:
        if name == "doc.bin":
            other.save(name, ContentFile(b"the other's"))

    storage = TakenMeanwhile(meanwhile, aws_s3_key_prefix=prefix)
    name = storage.save("doc.bin", ContentFile(b"mine"))
    assert name != "doc.bin" and name.startswith("doc_") and name.endswith(".bin")
    assert storage.names == ["doc.bin", name]
    assert objects(s3, prefix) == {"doc.bin": b"the other's", name: b"mine"}


@pytest.mark.rgw_differs("RGW 16 ignores If-None-Match on CompleteMultipartUpload: the "
                         "multipart upload overwrites")
def test_a_name_taken_meanwhile_moves_a_multipart_file(s3: S3Target, prefix: str) -> None:
    other = S3Storage(aws_s3_key_prefix=prefix, aws_s3_file_overwrite=True)
    taken: list[str] = []

    def meanwhile(name: str) -> None:
        if not taken:
            taken.append(name)
            other.save(name, ContentFile(b"the other's"))

    storage = TakenMeanwhile(meanwhile, aws_s3_key_prefix=prefix,
                             aws_s3_multipart_threshold=5 * MiB,
                             aws_s3_multipart_chunksize=5 * MiB)
    mine = body(1, 6 * MiB)
    name = storage.save("big.bin", ContentFile(mine))
    assert name != "big.bin"
    assert objects(s3, prefix) == {"big.bin": b"the other's", name: mine}
    assert uploads(s3, prefix) == []   # the refused upload was aborted


def test_writer_if_none_match_refuses_an_existing_key(client: _s3.Client, prefix: str) -> None:
    key = prefix + "exists"
    client.put_object(key, b"first")
    w = client.writer(key, if_none_match=True)
    w.write(b"second")
    with pytest.raises(_s3.S3Error) as info:
        w.close()
    assert (info.value.code, info.value.status) == ("PreconditionFailed", 412)
    assert w.closed
    assert client.get_object(key)[0] == b"first"
    # a free key is written as ever
    with client.writer(prefix + "free", if_none_match=True) as w:
        w.write(b"new")
    assert client.get_object(prefix + "free")[0] == b"new"


def test_writer_if_none_match_refuses_the_same_bytes_stored_by_another(
        client: _s3.Client, prefix: str) -> None:
    key = prefix + "same"
    client.put_object(key, b"identical")
    w = client.writer(key, if_none_match=True)
    w.write(b"identical")
    with pytest.raises(_s3.S3Error) as info:
        w.close()
    assert (info.value.code, info.value.status) == ("PreconditionFailed", 412)


@pytest.mark.rgw_differs("RGW 16 ignores If-None-Match on CompleteMultipartUpload")
def test_writer_if_none_match_refuses_the_same_parts_stored_by_another(
        client: _s3.Client, s3: S3Target, prefix: str) -> None:
    key = prefix + "same"
    data = body(3, 6 * MiB)
    with client.writer(key, threshold=0, part_size=5 * MiB) as w:
        w.write(data)
    w = client.writer(key, if_none_match=True, threshold=0, part_size=5 * MiB)
    w.write(data)
    with pytest.raises(_s3.S3Error) as info:
        w.close()
    assert (info.value.code, info.value.status) == ("PreconditionFailed", 412)
    assert uploads(s3, prefix) == []


@pytest.mark.rgw_differs("RGW 16 ignores If-None-Match on CompleteMultipartUpload")
def test_writer_if_none_match_refuses_an_existing_key_multipart(
        client: _s3.Client, s3: S3Target, prefix: str) -> None:
    key = prefix + "exists"
    client.put_object(key, b"first")
    w = client.writer(key, if_none_match=True, threshold=0, part_size=5 * MiB)
    w.write(body(2, 6 * MiB))
    with pytest.raises(_s3.S3Error) as info:
        w.close()
    assert (info.value.code, info.value.status) == ("PreconditionFailed", 412)
    assert client.get_object(key)[0] == b"first"
    assert uploads(s3, prefix) == []


def test_writer_if_none_match_must_be_a_bool(client: _s3.Client) -> None:
    for bad in ("yes", 1, None):
        with pytest.raises(TypeError, match="if_none_match"):
            client.writer("k", if_none_match=bad)


# ---- a scripted S3 that answers what a race would ------------------------------------


class RacyS3(ScriptedS3):
    """Just enough S3 for save() on a ScriptedServer: HEAD, a listing, PUT,
    multipart. `taken(key, seen)` decides, for each request that commits (the PUT, the
    Complete), whether another writer got there first: then it answers that error
    (412 PreconditionFailed by default) and the key exists from then on."""

    def __init__(self, taken: Callable[[str, Seen], bool],
                 error: tuple[int, str] = (412, "PreconditionFailed")) -> None:
        self.taken, self.error = taken, error
        self.stored: dict[str, bytes] = {}
        self.parts: dict[str, dict[int, bytes]] = {}
        super().__init__()

    def commits(self) -> list[Seen]:
        return [s for s in self.seen if (s.method == "PUT" and "partNumber" not in s.path) or
                (s.method == "POST" and "uploadId=" in s.path)]

    def refuse(self, key: str) -> Reply:
        self.stored.setdefault(key, b"the other writer's")
        status, code = self.error
        return Reply(status, f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>"
                             f"taken</Message></Error>".encode())

    def answer(self, seen: Seen) -> Reply:
        url = urllib.parse.urlsplit(seen.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        key = urllib.parse.unquote(url.path).split("/", 2)[2] if url.path.count("/") >= 2 else ""
        with self.lock:
            if seen.method == "GET" and "list-type" in query:
                return listing_reply(self.stored, query)
            if seen.method == "HEAD":
                return Reply(200) if key in self.stored else Reply(404)
            if seen.method == "POST" and "uploads" in query:
                upload = f"up-{len(self.parts)}"
                self.parts[upload] = {}
                return Reply(200, f"<InitiateMultipartUploadResult><UploadId>{upload}"
                                  f"</UploadId></InitiateMultipartUploadResult>".encode())
            if seen.method == "PUT" and "partNumber" in query:
                self.parts[query["uploadId"][0]][int(query["partNumber"][0])] = seen.body
                return Reply(200, b"", {"ETag": f'"{hashlib.md5(seen.body).hexdigest()}"'})
            if seen.method == "POST" and "uploadId" in query:
                if self.taken(key, seen):
                    return self.refuse(key)
                parts = self.parts.pop(query["uploadId"][0])
                self.stored[key] = b"".join(parts[n] for n in sorted(parts))
                md5s = b"".join(hashlib.md5(parts[n]).digest() for n in sorted(parts))
                etag = f"&quot;{hashlib.md5(md5s).hexdigest()}-{len(parts)}&quot;"
                return Reply(200, f"<CompleteMultipartUploadResult><ETag>{etag}</ETag>"
                                  f"</CompleteMultipartUploadResult>".encode())
            if seen.method == "PUT":
                if self.taken(key, seen):
                    return self.refuse(key)
                self.stored[key] = seen.body
                return Reply(200, b"", {"ETag": f'"{hashlib.md5(seen.body).hexdigest()}"'})
            if seen.method == "DELETE" and "uploadId" in query:
                self.parts.pop(query["uploadId"][0], None)
                return Reply(204)
            return Reply(400)


def first_commit_taken() -> Callable[[str, Seen], bool]:
    """The first commit finds its name taken; the others find theirs free."""
    commits = 0

    def taken(key: str, seen: Seen) -> bool:
        nonlocal commits
        commits += 1
        return commits == 1
    return taken


def scripted_storage(fake: RacyS3, **settings: Any) -> S3Storage:
    return S3Storage(aws_s3_endpoint_url=fake.endpoint, aws_s3_bucket_name="b", **settings)


def condition(seen: Seen) -> str | None:
    return {k.lower(): v for k, v in seen.headers.items()}.get("if-none-match")


def test_a_412_on_the_put_saves_under_the_next_free_name() -> None:
    with RacyS3(first_commit_taken()) as fake:
        storage = scripted_storage(fake)
        name = storage.save("a/doc.bin", ContentFile(b"mine"))
        assert name != "a/doc.bin" and name.startswith("a/doc_") and name.endswith(".bin")
        commits = fake.commits()
        assert [urllib.parse.unquote(s.path) for s in commits] == ["/b/a/doc.bin", f"/b/{name}"]
        assert [condition(s) for s in commits] == ["*", "*"]
        assert [s.body for s in commits] == [b"mine", b"mine"]
        assert fake.stored[name] == b"mine"


def test_a_412_on_the_complete_aborts_and_saves_under_the_next_free_name() -> None:
    with RacyS3(first_commit_taken()) as fake:
        storage = scripted_storage(fake, aws_s3_multipart_threshold=5 * MiB,
                                   aws_s3_multipart_chunksize=5 * MiB)
        mine = body(3, 6 * MiB)
        name = storage.save("big.bin", ContentFile(mine))
        assert name != "big.bin" and name.startswith("big_")
        completes = [s for s in fake.seen if s.method == "POST" and "uploadId=" in s.path]
        creates = [s for s in fake.seen if s.method == "POST" and s.path.endswith("?uploads")]
        aborts = [s for s in fake.seen if s.method == "DELETE"]
        assert [condition(s) for s in completes] == ["*", "*"]
        assert [condition(s) for s in creates] == [None, None]   # the condition commits
        assert [s.path for s in aborts] == ["/b/big.bin?uploadId=up-0"]
        assert fake.parts == {}   # no upload left
        assert fake.stored[name] == mine


def test_a_409_conditional_request_conflict_is_a_name_taken_too() -> None:
    with RacyS3(first_commit_taken(), error=(409, "ConditionalRequestConflict")) as fake:
        storage = scripted_storage(fake, aws_s3_multipart_threshold=5 * MiB,
                                   aws_s3_multipart_chunksize=5 * MiB)
        mine = body(4, 6 * MiB)
        name = storage.save("big.bin", ContentFile(mine))
        assert fake.stored[name] == mine and fake.parts == {}
        assert len([s for s in fake.seen if s.method == "DELETE"]) == 1


def test_overwrite_true_sends_no_condition() -> None:
    with RacyS3(lambda key, seen: False) as fake:
        storage = scripted_storage(fake, aws_s3_file_overwrite=True,
                                   aws_s3_multipart_threshold=5 * MiB,
                                   aws_s3_multipart_chunksize=5 * MiB)
        assert storage.save("small.bin", ContentFile(b"x")) == "small.bin"
        assert storage.save("big.bin", ContentFile(body(5, 6 * MiB))) == "big.bin"
        commits = fake.commits()
        assert len(commits) == 2 and [condition(s) for s in commits] == [None, None]


def test_a_direct_save_overwrites_as_post_processing_expects() -> None:
    # collectstatic's post-processing and its manifest call _save() on purpose
    with RacyS3(lambda key, seen: condition(seen) is not None) as fake:
        storage = scripted_storage(fake)
        assert storage._save("staticfiles.json", ContentFile(b"{}")) == "staticfiles.json"
        assert [condition(s) for s in fake.commits()] == [None]


def test_the_retry_sends_unseekable_content_again_from_a_copy() -> None:
    class Pipe(io.RawIOBase):
        """Bytes that can be read once: no seek."""

        def __init__(self, data: bytes) -> None:
            self.left = data

        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            n = min(len(b), len(self.left))
            b[:n], self.left = self.left[:n], self.left[n:]
            return n

    mine = body(6, 3 * MiB)
    with RacyS3(first_commit_taken()) as fake:
        storage = scripted_storage(fake)
        content = File(Pipe(mine), name="pipe.bin")
        assert not storage._rewinds(content)
        name = storage.save("pipe.bin", content)
        assert [s.body for s in fake.commits()] == [mine, mine]
        assert fake.stored[name] == mine


def test_the_retry_sends_the_same_gzip_bytes() -> None:
    text = ("body { color: red }\n" * 5000).encode()
    with RacyS3(first_commit_taken()) as fake:
        storage = scripted_storage(fake)
        name = storage.save("site.css", ContentFile(text))
        first, second = fake.commits()
        assert first.body == second.body and gzip.decompress(second.body) == text
        headers = {k.lower(): v for k, v in second.headers.items()}
        assert headers["content-encoding"] == "gzip"
        assert headers["x-amz-meta-uncompressed_size"] == str(len(text))
        assert fake.stored[name] == second.body


def test_the_next_name_keeps_within_max_length() -> None:
    with RacyS3(first_commit_taken()) as fake:
        storage = scripted_storage(fake)
        name = storage.save("dir/a-long-file-name.bin", ContentFile(b"mine"), max_length=26)
        assert name != "dir/a-long-file-name.bin" and len(name) <= 26
        assert name.startswith("dir/") and name.endswith(".bin")


def test_names_taken_again_and_again_give_up_with_a_clear_error() -> None:
    with RacyS3(lambda key, seen: True) as fake:
        storage = scripted_storage(fake, aws_s3_multipart_threshold=5 * MiB,
                                   aws_s3_multipart_chunksize=5 * MiB)
        with pytest.raises(FileExistsError, match="names in a row were taken") as info:
            storage.save("big.bin", ContentFile(body(7, 6 * MiB)))
        completes = [s for s in fake.seen if s.method == "POST" and "uploadId=" in s.path]
        assert len(completes) == 10 and fake.parts == {}   # bounded, and all aborted
        last = urllib.parse.unquote(completes[-1].path.split("?")[0]).split("/", 2)[2]
        assert repr(last) in str(info.value)


def test_save_asks_one_listing_whether_a_name_is_free() -> None:
    """save()'s check that a name is free is one LIST of what starts with the key,
    no HEAD: it answers for the file and for a "directory" of that name, as 0.15's
    HEAD and LIST did. Only a listing that stops at a name between the key and
    key + "/" (key-1, key.bak) needs the "directory" LIST of its own. A forked
    child does the same."""
    with RacyS3(lambda key, seen: False) as fake:
        old = {"file.txt": b"f", "dir.txt/x": b"d", "past.txt0": b"p", "near.txt-1": b"n",
               "near.txt.bak": b"n", "nearer.txt-1": b"n", "nearer.txt/y": b"n"}
        fake.stored.update(old)
        storage = scripted_storage(fake)

        def save(name: str) -> tuple[str, list[str]]:
            before = len(fake.seen)
            saved = storage.save(name, ContentFile(b"new"))
            kinds = ["LIST" if "list-type" in s.path else s.method for s in fake.seen[before:]]
            return saved, kinds

        assert save("free.txt") == ("free.txt", ["LIST", "PUT"])
        assert save("past.txt") == ("past.txt", ["LIST", "PUT"])     # listed beyond "past.txt/"
        assert save("near.txt") == ("near.txt", ["LIST", "LIST", "PUT"])
        for taken in ("file.txt", "dir.txt", "nearer.txt"):
            saved, kinds = save(taken)
            root = taken.removesuffix(".txt")
            assert saved.startswith(root + "_") and saved.endswith(".txt"), saved
            assert "HEAD" not in kinds and kinds[-1] == "PUT" and fake.stored[saved] == b"new"
        assert all(fake.stored[k] == v for k, v in old.items())
        assert storage.exists("file.txt") and storage.exists("dir.txt")
        assert not storage.exists("near.txt.b")
        assert in_forked_child(lambda: 0 if storage.save(
            "child.txt", ContentFile(b"c")) == "child.txt" else 1) == 0
        assert fake.stored["child.txt"] == b"c"
