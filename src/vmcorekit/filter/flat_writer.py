"""makedumpfile's flattened format: a dump written as a stream (-F, for `| ssh host ...`) and
put back together into a seekable file (-R).

Stream: a 4096-byte header ("makedumpfile", type 1, version 1, big-endian), then records of
(offset, size) as big-endian int64 followed by `size` bytes that belong at `offset` of the
file described, ended by (-1, -1). The layout is dump/flat_layout.py's, shared with the reader.
"""
from __future__ import annotations

from typing import BinaryIO

from ..dump.flat_layout import (
    END_MARK,
    FLAT_HEADER_SIZE,
    FLAT_SIGNATURE,
    FLAT_TYPE,
    FLAT_TYPE_VERSION,
    RECORD,
    TYPE_VERSION_OFF,
    flat_header,
)
from ..errors import FilterError, OutputError
from .sink import Sink

MAX_RECORD = 1 << 30  # a record larger than this is corrupt, not data


class FlatSink(Sink):
    """Writes every `write_at` as one record of the flattened stream on `stream`."""

    def __init__(self, stream: BinaryIO, name: str = "<stdout>", max_size: int | None = None) -> None:
        super().__init__(max_size)
        self.stream = stream
        self.name = name
        self._started = False

    def _overhead(self) -> int:
        return RECORD.size + (0 if self._started else FLAT_HEADER_SIZE)

    def _emit(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        if not self._started:
            self.stream.write(flat_header())
        self.stream.write(RECORD.pack(offset, len(data)))
        self.stream.write(data)

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        super().write_at(offset, data)
        self._started = True

    def finish(self) -> None:
        try:
            if not self._started:
                self.stream.write(flat_header())
                self._started = True
            self.stream.write(END_MARK)
            self.stream.flush()
        except BrokenPipeError:
            raise OutputError(f"{self.name}: the reading end of the pipe went away") from None


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    parts = []
    got = 0
    while got < n:
        b = stream.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def reassemble(stream: BinaryIO, out: Sink, *, copy_chunk: int = 1 << 22) -> int:
    """Rebuild the file a flattened stream describes (makedumpfile -R) into `out`; returns the
    number of records. Memory stays bounded by `copy_chunk` whatever the record sizes."""
    head = _read_exact(stream, FLAT_HEADER_SIZE)
    if len(head) < 16 or head[:len(FLAT_SIGNATURE)] != FLAT_SIGNATURE:
        raise FilterError("standard input is not a flattened dump: expected the 'makedumpfile' signature "
                          f"at offset 0, found {head[:12]!r}")
    ftype, version = (FLAT_TYPE_VERSION.unpack_from(head, TYPE_VERSION_OFF)
                      if len(head) >= TYPE_VERSION_OFF + FLAT_TYPE_VERSION.size else (None, None))
    if len(head) < FLAT_HEADER_SIZE or ftype != FLAT_TYPE:
        raise FilterError(f"flattened header: type {ftype} version {version}; expected type 1 "
                          f"(and a {FLAT_HEADER_SIZE}-byte header)")
    records = 0
    pos = FLAT_HEADER_SIZE
    while True:
        rec = _read_exact(stream, RECORD.size)
        if len(rec) < RECORD.size:
            raise FilterError(f"flattened stream ends at byte {pos + len(rec)} without its end marker "
                              f"(after {records} records): the transfer was cut off")
        offset, size = RECORD.unpack(rec)
        pos += RECORD.size
        if offset == -1 and size == -1:
            break
        if offset < 0 or size < 0 or size > MAX_RECORD:
            raise FilterError(f"flattened record at byte {pos - RECORD.size} claims offset {offset} size {size}")
        left = size
        at = offset
        while left:
            chunk = _read_exact(stream, min(left, copy_chunk))
            if not chunk:
                raise FilterError(f"flattened stream ends inside the record at byte {pos - RECORD.size} "
                                  f"({size - left} of {size} bytes): the transfer was cut off")
            out.write_at(at, chunk)
            at += len(chunk)
            left -= len(chunk)
            pos += len(chunk)
        records += 1
    out.finish()
    return records
