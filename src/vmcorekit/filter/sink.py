"""Where writers put bytes: a seekable file, makedumpfile's flattened stream, or nowhere
(--dry-run). Every sink enforces --max-size and turns a full disk into one clear error."""
from __future__ import annotations

import errno
from typing import BinaryIO

from ..errors import OutputError


class Sink:
    """Random-access output: `write_at(offset, data)`. `size` is the size of the file being
    described (the highest byte written), `written` the bytes actually emitted."""

    name: str = "<output>"

    def __init__(self, max_size: int | None = None) -> None:
        self.max_size = max_size
        self.size = 0
        self.written = 0

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        if not n:
            return
        end = offset + n
        self._check_limit(max(self.size, end), self.written + n + self._overhead())
        try:
            self._emit(offset, data)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise OutputError(f"{self.name}: no space left on device after {self.written} bytes; "
                                  "nothing was left under the output name") from None
            if e.errno == errno.EDQUOT:
                raise OutputError(f"{self.name}: disk quota exceeded after {self.written} bytes") from None
            if e.errno == errno.EPIPE:
                raise OutputError(f"{self.name}: the reading end of the pipe went away") from None
            raise
        self.size = max(self.size, end)
        self.written += n + self._overhead()

    def _overhead(self) -> int:
        return 0

    def _check_limit(self, size: int, written: int) -> None:
        if self.max_size is not None and max(size, written) > self.max_size:
            raise OutputError(f"{self.name}: the output would exceed the size limit of {self.max_size} bytes "
                              f"(--max-size); nothing was left under the output name")

    def _emit(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Called once after the last write."""


class FileSink(Sink):
    """A seekable binary file (normally the temporary file of util.fileout.atomic_output)."""

    def __init__(self, f: BinaryIO, name: str, max_size: int | None = None) -> None:
        super().__init__(max_size)
        self.f = f
        self.name = name
        self._pos = 0

    def _emit(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        if offset != self._pos:
            self.f.seek(offset)
        self.f.write(data)
        self._pos = offset + len(data)

    def finish(self) -> None:
        # A file whose last region is a hole (bitmaps of absent pages) still needs its length.
        self.f.flush()
        if self._pos < self.size:
            self.f.seek(self.size)
        self.f.truncate(self.size)


class NullSink(Sink):
    """--dry-run: count what would be written."""

    name = "<dry run>"

    def _emit(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        pass
