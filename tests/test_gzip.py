"""gzip in C: the gzip format (what browsers read), both directions, bad input."""
from __future__ import annotations

import gzip
import os

import pytest

from django_s3_storage import _s3


@pytest.mark.parametrize("size", [0, 1, 1000, 65536, 65537, 3 * 1024 * 1024 + 7])
def test_round_trip_and_interop_with_python_gzip(size: int) -> None:
    data = (b"The quick brown fox jumps over the lazy dog. " * (size // 45 + 1))[:size]
    packed = _s3.gzip_compress(data)
    assert packed[:2] == b"\x1f\x8b"               # the gzip magic, not zlib's
    assert gzip.decompress(packed) == data
    assert _s3.gzip_decompress(packed) == data
    assert _s3.gzip_decompress(gzip.compress(data)) == data


def test_level_is_honoured() -> None:
    data = os.urandom(2000).hex().encode() * 20
    fast, best = _s3.gzip_compress(data, level=1), _s3.gzip_compress(data, level=9)
    assert len(best) <= len(fast)
    assert _s3.gzip_decompress(_s3.gzip_compress(data, level=0)) == data
    with pytest.raises(ValueError):
        _s3.gzip_compress(data, level=10)


def test_concatenated_members_decode_whole() -> None:
    assert _s3.gzip_decompress(gzip.compress(b"ab") + gzip.compress(b"cd")) == b"abcd"


@pytest.mark.parametrize("bad", [
    b"", b"not gzip at all", gzip.compress(b"x" * 1000)[:-6], gzip.compress(b"ok") + b"junk",
])
def test_bad_input_is_a_value_error(bad: bytes) -> None:
    with pytest.raises(ValueError):
        _s3.gzip_decompress(bad)


def test_str_is_refused() -> None:
    with pytest.raises(TypeError):
        _s3.gzip_compress("text")  # type: ignore[arg-type]
