"""The extension as `make` and the wheel build it: libcurl (HTTP and HTTPS only) and
libxml2 (no ICU) linked in statically from scripts/build-deps, their symbols kept
private; only OpenSSL, zlib and the C library loaded beside it. Debian's shared
libcurl brought 40 libraries (LDAP, SASL, Kerberos, GnuTLS, RTMP, SSH, ICU through
libxml2) and most of the import's time."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import django_s3_storage
from django_s3_storage import _s3

ROOT = Path(__file__).resolve().parent.parent
# the package this suite tests: the checkout's, or an installed wheel's
PACKAGE_PARENT = Path(django_s3_storage.__file__).resolve().parent.parent

# none of these may be loaded by importing the package (Python's own lzma module
# may load liblzma: it is not in the list)
HEAVY = ("libcurl.so", "libxml2.so", "libldap", "liblber", "libsasl2", "libgnutls",
         "libgssapi", "libkrb5", "librtmp", "libssh", "libnghttp2", "libidn2", "libpsl",
         "libicu", "libstdc++", "libbrotli", "libzstd")
# what the extension itself needs (an auditwheel-repaired wheel renames OpenSSL's
# and zlib's copies: libssl-1a2b3c4d.so.3)
NEEDED = ("libssl", "libcrypto", "libz", "libm.so", "libc.so", "libpthread.so")
# `make sanitize` builds it with ASan and UBSan, whose runtimes (and their libstdc++)
# come along
SANITIZED = "libasan" in os.environ.get("LD_PRELOAD", "")
if SANITIZED:
    NEEDED += ("libasan", "libubsan")
    HEAVY = tuple(h for h in HEAVY if h != "libstdc++")


def loaded_after_import() -> dict[str, object]:
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); "
            "import django_s3_storage.storage; from django_s3_storage import _s3; "
            "maps = open('/proc/self/maps').read().split(chr(10)); "
            "libs = sorted({l.split()[-1].rsplit('/', 1)[-1] for l in maps if '.so' in l}); "
            "print(json.dumps({'libs': libs, 'ext': _s3.__file__}))")
    out = subprocess.run([sys.executable, "-c", code, str(PACKAGE_PARENT)], capture_output=True,
                         text=True, check=True, timeout=60)
    return json.loads(out.stdout)


def test_importing_loads_only_openssl_and_zlib_beside_the_extension() -> None:
    probe = loaded_after_import()
    libs = probe["libs"]
    assert isinstance(libs, list)
    heavy = [lib for lib in libs if lib.startswith(HEAVY)]
    assert heavy == [], f"{probe['ext']} was built against shared libraries ({heavy}): " \
                        "build it with `make` (S3_DEPS, scripts/build-deps)"
    assert any(lib.startswith("libssl.so") for lib in libs)
    assert any(lib.startswith("libz.so") for lib in libs)


def test_the_extension_needs_only_openssl_zlib_and_the_c_library() -> None:
    out = subprocess.run(["readelf", "-d", _s3.__file__], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    needed = [line.split("[", 1)[1].rstrip("]") for line in out.splitlines()
              if "(NEEDED)" in line]
    assert needed and all(n.startswith(NEEDED) for n in needed), needed


def test_libcurl_speaks_http_and_tls_only() -> None:
    parts = _s3.curl_version.split()
    assert parts[0] == _s3.libcurl_version
    assert [p.split("/")[0] for p in parts[1:]] == ["OpenSSL", "zlib"], _s3.curl_version


def test_the_extension_exports_its_init_function_alone() -> None:
    out = subprocess.run(["nm", "-D", "--defined-only", _s3.__file__], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    exported = sorted(line.split()[-1] for line in out.splitlines() if line.strip())
    assert exported == ["PyInit__s3"], exported[:20]


def test_the_suite_tests_the_package_it_was_asked_to() -> None:
    """scripts/test-all runs the Django 4.2 suite on the manylinux wheel installed in a
    fresh virtual environment (S3_TEST_INSTALLED_WHEEL names it): the package must be
    that wheel's, not the checkout's; the other runs test the checkout's build."""
    wheel = os.environ.get("S3_TEST_INSTALLED_WHEEL")
    package = Path(django_s3_storage.__file__).resolve().parent
    needed = subprocess.run(["readelf", "-d", _s3.__file__], capture_output=True, text=True,
                            check=True, timeout=60).stdout
    if wheel:
        assert "-manylinux_" in wheel
        # (the virtual environment may lie inside the checkout: .venv-django42)
        assert package != ROOT / "django_s3_storage", package
        assert package.parent.name == "site-packages", package
        # auditwheel's copy of OpenSSL, beside the package
        assert "libssl-" in needed and (package.parent / "django_s3_storage.libs").is_dir()
    else:
        assert package == ROOT / "django_s3_storage", package
        assert "libssl.so.3" in needed
