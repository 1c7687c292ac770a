"""collectstatic's run against Django's own command in the sequences a review found
wrong: a held upload dropped over an object the server has (a damaged hashed file, gzip
turned on), a failed upload (no new manifest; raised even when post-processing's open()
met it first), collecting() from code around the package's command, size() of a name
the run deleted, writes through open() and copy() inside the run; and a sweep of
--clear, --ignore, changed, removed and renamed files against the bucket Django's own
command leaves."""
from __future__ import annotations

import gzip
import hashlib
import json
import re
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.test import override_settings

from django_s3_storage.storage import S3Error, StaticS3Storage

from test_collectstatic import (BUCKET, MANIFEST, STATIC, FaultProxy, Group, Ours, Plain,
                                Rule, _snapshot, _tree, counting)  # noqa: F401


def _run(command: Callable[[], Any], src: Path, prefix: str, backend: str = MANIFEST,
         endpoint: str | None = None, **settings: Any) -> None:
    extra = {"AWS_S3_ENDPOINT_URL_STATIC": endpoint} if endpoint else {}
    extra.update(settings)
    with override_settings(STATICFILES_DIRS=[str(src)], AWS_S3_KEY_PREFIX_STATIC=prefix,
                           AWS_S3_MAX_ATTEMPTS_STATIC=1,
                           STORAGES={"default": {"BACKEND": "django_s3_storage.storage.S3Storage"},
                                     "staticfiles": {"BACKEND": backend}}, **extra):
        call_command(command(), interactive=False, verbosity=0)


def _hashed_css(snapshot: dict[str, Any]) -> str:
    (name,) = [k for k in snapshot if re.fullmatch(r"css/site\.[0-9a-f]{12}\.css", k)]
    return name


# ---- a held upload that delete() drops, over an object the server has with other bytes:
#      the next save of any bytes is sent ---------------------------------------------

def test_a_damaged_hashed_css_is_repaired_as_djangos_own_command_does(s3: Any,
                                                                      tmp_path: Path) -> None:
    src = tmp_path / "static"
    _tree(src)
    run = uuid.uuid4().hex[:10]
    plain, ours = f"r1-{run}-plain/", f"r1-{run}-ours/"
    _run(Plain, src, plain)
    _run(Ours, src, ours)
    assert _snapshot(s3, plain) == _snapshot(s3, ours)
    name = _hashed_css(_snapshot(s3, ours))
    boto = s3.boto()
    for prefix in (plain, ours):   # the hashed css damaged (a truncated upload, a bad tool)
        boto.put_object(Bucket=BUCKET, Key=prefix + name, Body=b"garbage")
    _run(Plain, src, plain)         # Django's own: post-processing re-saves every css
    _run(Ours, src, ours)
    reference, got = _snapshot(s3, plain), _snapshot(s3, ours)
    assert reference[name][0] != b"garbage"
    assert got[name][0] == reference[name][0]
    assert got == reference


def test_turning_gzip_on_compresses_the_hashed_css_as_djangos_own_command_does(
        s3: Any, tmp_path: Path) -> None:
    src = tmp_path / "static"
    _tree(src)
    run = uuid.uuid4().hex[:10]
    plain, ours = f"r1-{run}-plain/", f"r1-{run}-ours/"
    _run(Plain, src, plain, AWS_S3_GZIP_STATIC=False)
    _run(Ours, src, ours, AWS_S3_GZIP_STATIC=False)
    assert _snapshot(s3, plain) == _snapshot(s3, ours)
    _run(Plain, src, plain, AWS_S3_GZIP_STATIC=True)
    _run(Ours, src, ours, AWS_S3_GZIP_STATIC=True)
    reference, got = _snapshot(s3, plain), _snapshot(s3, ours)
    name = _hashed_css(reference)
    assert reference[name][3] == "gzip"
    assert (got[name][3], got[name][0]) == (reference[name][3], reference[name][0])
    assert got == reference


# ---- a failed upload: no new manifest (Django's own command stops at the failure) ------

def test_a_failed_upload_leaves_no_new_manifest(s3: Any, tmp_path: Path) -> None:
    src = tmp_path / "static"
    _tree(src)
    port = int(s3.endpoint.rsplit(":", 1)[1])
    run = uuid.uuid4().hex[:10]
    plain, ours = f"r1-{run}-plain/", f"r1-{run}-ours/"
    rule = Rule("500-internal-error", "PUT", lambda path, query, headers: re.search(
        r"/img/logo\.[0-9a-f]{12}\.png$", path) is not None, times=100)
    with FaultProxy(("127.0.0.1", port), [rule]) as proxy:
        for prefix, command in ((plain, Plain), (ours, Ours)):
            with pytest.raises((S3Error, Group)):
                _run(command, src, prefix, endpoint=proxy.endpoint)
    reference, got = set(_snapshot(s3, plain)), _snapshot(s3, ours)
    assert "staticfiles.json" not in reference          # Django's own: no manifest
    assert "staticfiles.json" not in got                # nor this package's
    assert any(k.startswith("css/site.") for k in got)  # other files went up


# ---- an upload's failure met by open() inside post-processing, whose hashed_name()
#      takes an OSError for "no file": raised all the same when the run ends ------------

def test_a_failed_upload_is_raised_even_when_open_meets_it(s3: Any, tmp_path: Path) -> None:
    src = tmp_path / "static"
    (src / "a" / "b").mkdir(parents=True)
    pic = bytes(range(256)) * 8
    (src / "a" / "b" / "pic.png").write_bytes(pic)
    hashed = "pic." + hashlib.md5(pic).hexdigest()[:12] + ".png"
    # a css that names the hashed copy (a file post-processing stores in this run)
    (src / "a" / "x.css").write_text(f".a {{ background: url('b/{hashed}') }}\n")
    port = int(s3.endpoint.rsplit(":", 1)[1])
    run = uuid.uuid4().hex[:10]
    plain, ours = f"r1-{run}-plain/", f"r1-{run}-ours/"
    rule = Rule("500-internal-error", "PUT",
                lambda path, query, headers: path.endswith("/a/b/" + hashed), times=100)
    with FaultProxy(("127.0.0.1", port), [rule]) as proxy:
        with pytest.raises((S3Error, Group)):            # Django's own command
            _run(Plain, src, plain, endpoint=proxy.endpoint)
        raised = None
        try:                                             # this package's
            _run(Ours, src, ours, endpoint=proxy.endpoint)
        except (S3Error, Group) as e:
            raised = e
    got = _snapshot(s3, ours)
    body = got["staticfiles.json"][0]
    paths = json.loads(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)["paths"]
    assert rule.faulted == 2
    assert raised is not None, (f"no error; the manifest names {paths['a/b/pic.png']!r}, "
                                f"in the bucket: {paths['a/b/pic.png'] in got}")


# ---- README: "with staticfiles_storage.collecting(): call_command("collectstatic", ...)
#      does the same with any command", this package's command included ---------------

def test_collecting_from_code_around_the_packages_command(s3: Any, tmp_path: Path) -> None:
    from django.contrib.staticfiles.storage import staticfiles_storage

    src = tmp_path / "static"
    _tree(src)
    prefix = f"r1-{uuid.uuid4().hex[:10]}/"
    with override_settings(STATICFILES_DIRS=[str(src)], AWS_S3_KEY_PREFIX_STATIC=prefix,
                           STORAGES={"default": {"BACKEND": "django_s3_storage.storage.S3Storage"},
                                     "staticfiles": {"BACKEND": STATIC}}):
        with staticfiles_storage.collecting():   # the package's command, as INSTALLED_APPS
            call_command(Ours(), interactive=False, verbosity=0)   # in the README picks it
    assert "css/site.css" in _snapshot(s3, prefix)


# ---- answers inside the run, kept current by all of its own writes -------------------

def test_size_of_a_file_deleted_in_the_run(s3: Any, prefix: str) -> None:
    storage = StaticS3Storage(aws_s3_key_prefix=prefix)
    storage.save("a.css", ContentFile(b"abc"))
    with storage.collecting():
        storage.delete("a.css")
        assert not storage.exists("a.css")
        with pytest.raises(FileNotFoundError):
            storage.get_modified_time("a.css")
        with pytest.raises(FileNotFoundError):      # as exists() and the times say
            storage.size("a.css")


def test_exists_after_a_write_through_open_in_the_run(s3: Any, prefix: str) -> None:
    storage = StaticS3Storage(aws_s3_key_prefix=prefix)
    with storage.collecting():
        with storage.open("w.txt", "wb") as f:
            f.write(b"written")
        assert storage.exists("w.txt")


# ---- scenario sweep: the same sequence of runs through both commands -------------------

def _steps_tree(root: Path) -> None:
    _tree(root)
    (root / "dup").mkdir()
    (root / "dup" / "one.js").write_text("var same = 1;\n" * 200)
    (root / "dup" / "two.js").write_text("var same = 1;\n" * 200)     # the same bytes
    (root / "both").write_text("a file named like a directory")
    (root / "skip.tmp").write_text("ignored")
    (root / "deep" / "er").mkdir(parents=True)
    (root / "deep" / "er" / "page.css").write_text(".a { background: url('../../img/logo.png') }\n")


def _sweep(s3: Any, tmp_path: Path, steps: list[tuple[Callable[[Path], None], dict[str, Any]]],
           backend: str) -> None:
    src = tmp_path / "static"
    _steps_tree(src)
    run = uuid.uuid4().hex[:10]
    plain, ours = f"r1-{run}-plain/", f"r1-{run}-ours/"
    boto = s3.boto()
    boto.put_object(Bucket=BUCKET, Key=plain + "both/inside.txt", Body=b"x")
    boto.put_object(Bucket=BUCKET, Key=ours + "both/inside.txt", Body=b"x")
    for i, (change, options) in enumerate(steps):
        change(src)
        settings = options.pop("settings", {})
        for prefix, command in ((plain, Plain), (ours, Ours)):
            extra = dict(settings)
            with override_settings(STATICFILES_DIRS=[str(src)], AWS_S3_KEY_PREFIX_STATIC=prefix,
                                   STORAGES={"default": {"BACKEND": "django_s3_storage.storage.S3Storage"},
                                             "staticfiles": {"BACKEND": backend}}, **extra):
                call_command(command(), interactive=False, verbosity=0, **options)
        a, b = _snapshot(s3, plain), _snapshot(s3, ours)
        # "both" is a file and a "directory": saved under a random free name each run
        assert _norm(a) == _norm(b), f"step {i}"
        for k in a:
            if "both_" not in k:
                assert a[k][:5] == b[k][:5], (i, k)


def _norm(keys: Any) -> list[str]:
    return sorted(re.sub(r"both_[A-Za-z0-9]{7}", "both_*", k) for k in keys)


def _touch(path: Path, text: str | None = None) -> None:
    import os
    import time
    if text is not None:
        path.write_text(text)
    later = time.time() + 3600
    os.utime(path, (later, later))


def _nothing(root: Path) -> None:
    pass


@pytest.mark.parametrize("backend", [MANIFEST, STATIC])
def test_sweep_clear_change_remove_ignore(s3: Any, tmp_path: Path, backend: str) -> None:
    def change_image(root: Path) -> None:
        _touch(root / "img" / "logo.png")
        (root / "img" / "logo.png").write_bytes(bytes(range(255, -1, -1)) * 8)
        _touch(root / "img" / "logo.png")

    def remove(root: Path) -> None:
        (root / "css" / "gone.css").unlink()
        _touch(root / "dup" / "two.js", "var other = 2;\n" * 200)

    def same_again(root: Path) -> None:
        _touch(root / "dup" / "two.js", "var same = 1;\n" * 200)
        _touch(root / "css" / "site.css")

    _sweep(s3, tmp_path, [
        (_nothing, {"ignore_patterns": ["*.tmp"]}),
        (_nothing, {}),
        (change_image, {}),
        (remove, {"clear": True}),
        (same_again, {"ignore_patterns": ["*.tmp"]}),
        (_nothing, {"clear": True, "settings": {"AWS_S3_MULTIPART_THRESHOLD_STATIC": 1000}}),
        (change_image, {"settings": {"AWS_S3_MULTIPART_THRESHOLD_STATIC": 1000}}),
    ], backend)


def test_a_write_through_open_then_the_old_bytes_saved_again(s3: Any, prefix: str) -> None:
    storage = StaticS3Storage(aws_s3_key_prefix=prefix)
    storage.save("k.bin", ContentFile(b"old bytes"))
    with storage.collecting():
        with storage.open("k.bin", "wb") as f:       # the run's own write ...
            f.write(b"new bytes")
        storage._save("k.bin", ContentFile(b"old bytes"))   # ... then the old bytes again
    with storage.open("k.bin") as f:
        assert f.read() == b"old bytes"


def test_copy_in_the_run(s3: Any, prefix: str) -> None:
    storage = StaticS3Storage(aws_s3_key_prefix=prefix)
    storage.save("a.css", ContentFile(b"a"))
    with storage.collecting():
        storage.delete("a.css")                      # held back
        assert not storage.exists("a.css")
        with pytest.raises(OSError):                 # Django's own: the source is gone
            storage.copy("a.css", "b.css")


def test_a_copy_in_the_run_is_in_its_listing(s3: Any, prefix: str) -> None:
    storage = StaticS3Storage(aws_s3_key_prefix=prefix)
    with storage.collecting():
        storage._save("src.css", ContentFile(b"body { }"))   # its upload under way
        storage.copy("src.css", "dst.css")                   # waits for it
        assert storage.exists("dst.css")
    with storage.open("dst.css") as f:
        assert f.read() == b"body { }"


def test_a_write_dropped_inside_the_run_leaves_the_listing_as_it_was(s3: Any,
                                                                     prefix: str) -> None:
    storage = StaticS3Storage(aws_s3_key_prefix=prefix)
    with storage.collecting():
        with pytest.raises(RuntimeError):
            with storage.open("dropped.txt", "wb") as f:
                f.write(b"x")
                raise RuntimeError("the caller gave up")
        assert not storage.exists("dropped.txt")
    assert not storage.exists("dropped.txt")
