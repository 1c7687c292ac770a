"""Build of the C core, django_s3_storage._s3.

Libraries are found with pkg-config (libcurl, libcrypto, zlib, libxml-2.0), with
xml2-config and plain names as fallbacks. S3_SANITIZE=1 builds with ASan/UBSan,
S3_DEBUG=1 without optimisation.
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


def flags() -> tuple[list[str], list[str]]:
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
if os.environ.get("S3_SANITIZE"):
    extra_compile += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
    extra_link += ["-fsanitize=address,undefined"]

setup(
    ext_modules=[
        Extension(
            "django_s3_storage._s3",
            sources=[f"csrc/{n}.c" for n in
                     ("module", "client", "request", "reader", "multipart", "writer",
                      "credentials", "sigv4", "transfer", "gzip", "xml", "buf")],
            depends=[f"csrc/{n}.h" for n in
                     ("module", "client", "request", "reader", "multipart", "writer",
                      "credentials", "sigv4", "transfer", "gzip", "xml", "buf")],
            extra_compile_args=cflags + extra_compile,
            extra_link_args=libs + extra_link,
        )
    ],
)
