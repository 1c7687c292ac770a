"""The package builds cleanly: warning-free C, and an sdist that builds on its own."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "csrc").glob("*.c"))


def pkg_cflags() -> list[str]:
    out = subprocess.run(["pkg-config", "--cflags", "libcurl", "libcrypto", "zlib", "libxml-2.0"],
                         check=True, capture_output=True, text=True)
    return out.stdout.split()


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_c_source_compiles_without_warnings(source: Path) -> None:
    cc = os.environ.get("CC", "gcc")
    cmd = [cc, "-fsyntax-only", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
           *pkg_cflags(), "-I" + sysconfig.get_paths()["include"], str(source)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_classifiers_name_the_django_and_python_this_run_tests() -> None:
    # each suite run of scripts/test-all checks that its versions are declared
    import django

    pyproject = (ROOT / "pyproject.toml").read_text()
    for classifier in (f"Framework :: Django :: {django.VERSION[0]}.{django.VERSION[1]}",
                       f"Programming Language :: Python :: {sys.version_info[0]}."
                       f"{sys.version_info[1]}"):
        assert f'"{classifier}"' in pyproject, classifier


def test_sdist_carries_the_sources_and_builds_alone(tmp_path: Path) -> None:
    # the sdist from a copy of the tracked files, so nothing built here leaks in
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if files.returncode != 0:
        pytest.fail("this test needs the git checkout: " + files.stderr)
    src = tmp_path / "src"
    for rel in files.stdout.split("\n"):
        if rel:
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    dist = tmp_path / "dist"
    out = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(dist)], cwd=src,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for source in SOURCES:
        assert f"csrc/{source.name}" in names
        assert f"csrc/{source.stem}.h" in names or source.stem == "client"
    assert "django_s3_storage/_s3.pyi" in names and "README.rst" in names
    # every subpackage, the typing marker and the license (tests/test_wheel.py checks the
    # wheel built from the checkout the way users build it)
    for rel in ("django_s3_storage/management/__init__.py",
                "django_s3_storage/management/commands/__init__.py",
                "django_s3_storage/management/commands/s3_sync_meta.py",
                "django_s3_storage/py.typed", "LICENSE"):
        assert rel in names, rel
    assert "deprecat" not in out.stderr.lower(), out.stderr
    # a wheel from the sdist alone, then the extension imported from that wheel
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                          "--no-build-isolation", "-w", str(dist), str(sdist)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    (wheel,) = dist.glob("*.whl")
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(unpacked)
    assert (unpacked / "django_s3_storage/management/commands/s3_sync_meta.py").is_file()
    probe = ("import django_s3_storage._s3 as m; "
             "assert m.__file__.startswith(%r), m.__file__; "
             "print(m.gzip_decompress(m.gzip_compress(b'ok')).decode())" % str(unpacked))
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path,
                         env=dict(os.environ, PYTHONPATH=str(unpacked)),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
