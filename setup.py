"""Build of the C core, django_s3_storage._s3.

Libraries are found with pkg-config (libcurl, libcrypto, zlib, libxml-2.0), with
xml2-config and plain names as fallbacks. S3_DEPS=PREFIX links the static, lean
libcurl and libxml2 that scripts/build-deps builds into PREFIX instead (the wheel and
`make` do; without S3_DEPS, build/deps when it holds them). S3_SANITIZE=1 builds with
ASan/UBSan, S3_COVERAGE=1 with gcov's counters, S3_DEBUG=1 without optimisation.
"""
import os
import shlex
import subprocess

from setuptools import Extension, setup

PKGS = ["libcurl", "libcrypto", "zlib", "libxml-2.0"]


def pkg_config(*args: str) -> list[str]:
    try:
        out = subprocess.run(["pkg-config", *args], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return []
    return shlex.split(out.stdout)


def static_flags(prefix: str) -> tuple[list[str], list[str]]:
    """libcurl and libxml2 from PREFIX, linked in with their symbols kept private
    (another extension's libcurl cannot clash); OpenSSL and zlib stay shared."""
    libdir = os.path.join(prefix, "lib")
    archives = [os.path.join(libdir, f"lib{n}.a") for n in ("curl", "xml2")]
    missing = [a for a in archives if not os.path.isfile(a)]
    if missing:
        raise SystemExit(f"S3_DEPS={prefix!r}: {', '.join(missing)} missing; "
                         "run scripts/build-deps first")
    cflags = [f"-I{prefix}/include", f"-I{prefix}/include/libxml2", "-DCURL_STATICLIB"]
    libs = archives + pkg_config("--libs", "libssl", "libcrypto", "zlib") + ["-lm"]
    if not libs[len(archives):-1]:
        libs[len(archives):-1] = ["-lssl", "-lcrypto", "-lz"]
    return cflags, libs + ["-Wl,--exclude-libs,ALL", "-Wl,--gc-sections"]


def flags() -> tuple[list[str], list[str]]:
    deps = os.environ.get("S3_DEPS") or ""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "build", "deps")
    if not deps and os.path.isfile(os.path.join(here, "lib", "libcurl.a")):
        deps = here     # scripts/build-deps' default place: `make` has built them
    if deps:
        return static_flags(os.path.abspath(deps))
    cflags = pkg_config("--cflags", *PKGS)
    libs = pkg_config("--libs", *PKGS)
    if not libs:
        try:
            xml = subprocess.run(["xml2-config", "--cflags"], check=True, capture_output=True,
                                 text=True).stdout
        except (OSError, subprocess.CalledProcessError):
            xml = "-I/usr/include/libxml2"
        cflags = shlex.split(xml)
        libs = ["-lcurl", "-lcrypto", "-lz", "-lxml2"]
    return cflags, libs


cflags, libs = flags()
extra_compile = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra",
                 "-fvisibility=hidden"]
extra_link = ["-pthread"]
if os.environ.get("S3_DEBUG"):
    extra_compile += ["-O0", "-g3"]
if os.environ.get("S3_COVERAGE"):
    # gcov's line counts (scripts/test-all); atomic: the transfer threads count too
    extra_compile += ["--coverage", "-O1", "-fprofile-update=atomic"]
    extra_link += ["--coverage"]
if os.environ.get("S3_SANITIZE"):
    extra_compile += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
    extra_link += ["-fsanitize=address,undefined"]

setup(
    ext_modules=[
        Extension(
            "django_s3_storage._s3",
            sources=[f"csrc/{n}.c" for n in
                     ("module", "client", "request", "reader", "multipart", "writer",
                      "credentials", "sigv4", "transfer", "gzip", "xml", "buf", "rsa", "log", "url")],
            depends=[f"csrc/{n}.h" for n in
                     ("module", "client", "request", "reader", "multipart", "writer",
                      "credentials", "sigv4", "transfer", "gzip", "xml", "buf", "rsa", "log", "url")],
            extra_compile_args=cflags + extra_compile,
            extra_link_args=libs + extra_link,
        )
    ],
)
