"""The File objects S3Storage.open() returns.

Reading streams: the object comes in through one GET that is paused while the
caller is not reading (``_s3.Reader``); seek() reads lazily from where it lands.
Writing streams too: bytes go up as a multipart upload as they are written
(``_s3.Writer``), committed on close(), dropped on an exception inside ``with``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from django.core.files.base import File
from django.utils.functional import cached_property

if TYPE_CHECKING:
    from .storage import S3Storage

    _FileBase = File[Any]
else:
    _FileBase = File

READ_MODES = ("rb", "r", "rt")
WRITE_MODES = ("wb", "w", "wt")


class S3File(_FileBase):
    """A file read from S3 as it streams in; it can be opened again after close()."""

    def __init__(self, reader: Any, name: str, storage: S3Storage, mode: str = "rb") -> None:
        self._reader = reader
        file: Any = reader
        if "b" not in mode:
            file = io.TextIOWrapper(io.BufferedReader(reader), encoding="utf-8")
        super().__init__(file, name)
        self._storage = storage
        self.mode = mode

    @cached_property
    def size(self) -> int:
        """The size of what read() gives (uncompressed), without another request
        when the GET that opened the file told it."""
        size: int | None = self._reader.size
        return self._storage.size(str(self.name)) if size is None else size

    def open(self, mode: str | None = None, *args: Any, **kwargs: Any) -> S3File:
        mode = mode or self.mode
        if self.closed or mode != self.mode:
            if not self.closed:
                self.close()
            again = self._storage._open(str(self.name), mode)
            assert isinstance(again, S3File)
            self._reader, self.file, self.mode = again._reader, again.file, mode
        else:
            self.seek(0)
        return self


class S3WriteFile(_FileBase):
    """A file written to S3: a single PUT when it stays small, a multipart upload
    once it outgrows AWS_S3_MULTIPART_THRESHOLD; nothing is stored before close()."""

    def __init__(
        self,
        writer: Any,
        name: str,
        storage: S3Storage,
        mode: str = "wb",
        stored: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(writer, name)
        self._writer = writer  # _s3.Writer
        self._storage = storage
        self.mode = mode
        self._text = "b" not in mode
        self._stored = stored  # told the size once the object is stored

    def write(self, data: Any) -> int:
        if self._text:
            if not isinstance(data, str):
                raise TypeError(f"write() argument must be str, not {type(data).__name__}")
            self._writer.write(data.encode("utf-8"))
            return len(data)
        if isinstance(data, str):
            raise TypeError("a bytes-like object is required, not 'str'")
        written: int = self._writer.write(data)
        return written

    def writelines(self, lines: Iterable[Any], /) -> None:
        for line in lines:
            self.write(line)

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        written: int = self._writer.bytes_written
        return written

    @property
    def size(self) -> int:
        return self.tell()

    @property
    def closed(self) -> bool:
        closed: bool = self._writer.closed
        return closed

    def flush(self) -> None:
        """Nothing to do: bytes are stored on close()."""

    def close(self) -> None:
        """Commits what was written: the object exists from here on."""
        committing = not self._writer.closed
        self._writer.close()
        if committing and self._stored is not None:
            self._stored(self._writer.bytes_written)

    def abort(self) -> None:
        """Drops what was written; no object and no multipart upload remain."""
        self._writer.abort()

    def open(self, mode: str | None = None, *args: Any, **kwargs: Any) -> S3WriteFile:
        raise ValueError(
            "a file written to S3 cannot be opened again; open the storage's file by name instead"
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()
