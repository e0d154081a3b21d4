"""Byte sources: random access to a dump file's bytes, whether it is a plain file or
makedumpfile's *flattened* stream.

makedumpfile -F (and QEMU 7.2's kdump-zlib output) writes a sequential stream instead of a
seekable file: a 4096-byte header ("makedumpfile", type 1, version 1, big-endian), then records
of (offset, size) big-endian int64 followed by `size` bytes that belong at `offset` of the file
the stream describes, ended by (-1, -1). `FlatFile` indexes the records once and serves reads
of the described file straight from the stream, without writing the reassembled file.
"""
from __future__ import annotations

import bisect
import contextlib
import errno
import heapq
import mmap
import os
from abc import ABC, abstractmethod
from array import array
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

from ..errors import DumpFormatError, UnsupportedDumpError
from .flat_layout import (
    FLAT_HEADER_SIZE,
    FLAT_TYPE,
    FLAT_TYPE_VERSION,
    FLAT_VERSION,
    RECORD,
    TYPE_VERSION_OFF,
    is_flattened,
)

PURE_RECORDS = 20_000  # a stream of at most this many records is indexed without numpy

SCAN_STEP = 8 << 20  # bytes read at once by ByteSource.scan


class ByteSource(ABC):
    """Read-only random access to the bytes of a (possibly reassembled) dump file."""

    path: str
    size: int  # bytes in the file the source describes
    flattened: bool = False

    @abstractmethod
    def read(self, offset: int, n: int) -> bytes:
        """The bytes at [offset, offset+n) that are available: shorter than n when the range
        runs past the end of the file or into a part the source does not hold."""

    def view(self, offset: int, n: int) -> "bytes | memoryview":
        """The available bytes at [offset, offset+n) without a copy where the source can give
        one (a plain file's mapping): large tables such as the kdump bitmaps are looked at
        where they lie, not copied into memory because a header says they are large."""
        return self.read(offset, n)

    def scan(self, offset: int, n: int, step: int = SCAN_STEP) -> "Iterator[tuple[int, bytes]]":
        """(offset, bytes) pieces of at most `step` bytes covering the available bytes of
        [offset, offset+n), for one pass over a large region in bounded memory. Parts of a
        sparse file that are holes (zeros) may be skipped: callers treat what is not yielded
        as zero bytes."""
        end = offset + n
        for pos in range(offset, end, step):
            data = self.read(pos, min(step, end - pos))
            if data:
                yield pos, data

    def extents(self, offset: int, n: int) -> list[tuple[int, int]]:
        """[start, end) parts of [offset, offset+n) that may hold non-zero bytes (all of it,
        unless the source knows its holes)."""
        return [(offset, offset + n)] if n > 0 else []

    def forget(self, offset: int, n: int) -> None:
        """Drop [offset, offset+n) of the source's mapping from this process's memory (it is
        read again from the page cache if touched): after a pass over a large view."""

    def close(self) -> None:
        pass

    def __enter__(self) -> "ByteSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileSource(ByteSource):
    """A plain file, memory-mapped read-only."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._whole: memoryview | None = None
        self._f = open(path, "rb")
        try:
            self.size = os.fstat(self._f.fileno()).st_size
            # mmap refuses empty files; an empty source simply reads nothing.
            try:
                self._mm: mmap.mmap | None = (
                    mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ) if self.size else None
                )
            except (OSError, ValueError) as e:  # address space exhausted (a limit), not mappable
                raise DumpFormatError(path, None, f"cannot map the file ({self.size} bytes): {e}") from None
        except BaseException:
            self._f.close()
            raise

    def read(self, offset: int, n: int) -> bytes:
        if self._mm is None or offset < 0 or n <= 0:
            return b""
        return self._mm[offset:offset + n]

    def view(self, offset: int, n: int) -> "bytes | memoryview":
        if self._mm is None or offset < 0 or n <= 0:
            return b""
        if self._whole is None:
            self._whole = memoryview(self._mm)
        return self._whole[offset:min(offset + n, self.size)]

    def scan(self, offset: int, n: int, step: int = SCAN_STEP) -> "Iterator[tuple[int, bytes]]":
        # pread, not the mapping: a pass over a large region must not leave all of it in this
        # process's RSS; and holes of a sparse file (SEEK_DATA) are skipped, not read as zeros.
        fd = self._f.fileno()
        for a, b in _data_extents(fd, offset, min(offset + n, self.size)):
            while a < b:
                data = os.pread(fd, min(step, b - a), a)
                if not data:
                    return
                yield a, data
                a += len(data)

    def extents(self, offset: int, n: int) -> list[tuple[int, int]]:
        return _data_extents(self._f.fileno(), offset, min(offset + n, self.size))

    def forget(self, offset: int, n: int) -> None:
        if self._mm is None or n <= 0 or not hasattr(mmap, "MADV_DONTNEED"):
            return
        page = mmap.PAGESIZE
        a = offset - offset % page
        b = min(self.size, offset + n)
        if b > a:
            with contextlib.suppress(OSError, ValueError):
                self._mm.madvise(mmap.MADV_DONTNEED, a, b - a)

    def close(self) -> None:
        if self._whole is not None:
            try:
                self._whole.release()
            except BufferError:  # a view is still in use: the mapping goes with the last one
                self._mm = None
            self._whole = None
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass
            self._mm = None
        self._f.close()


class FlatFile(ByteSource):
    """The file a flattened stream describes, as a seekable read-only byte view.

    Records may overlap (makedumpfile writes the dump header once at the start and again,
    updated, at the end): the later record wins. Ranges no record covers read as missing
    (short reads). A stream cut off mid-way (e.g. a dropped ssh pipe) keeps every record that
    arrived; `truncated` tells that the end marker was not seen.
    """

    flattened = True

    def __init__(self, path: str) -> None:
        self.path = path
        self._f = open(path, "rb")
        try:
            fsize = os.fstat(self._f.fileno()).st_size
            self._mm: mmap.mmap | None = (
                mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ) if fsize else None
            )
            self._index(fsize)
        except BaseException:
            self.close()
            raise

    def _index(self, fsize: int) -> None:
        mm = self._mm
        if mm is None or fsize < FLAT_HEADER_SIZE:
            raise DumpFormatError(
                self.path, None,
                f"flattened header needs {FLAT_HEADER_SIZE} bytes but file is {fsize} bytes")
        if not is_flattened(mm[:16]):
            raise DumpFormatError(self.path, 0, "expected signature 'makedumpfile' (flattened format)")
        ftype, version = FLAT_TYPE_VERSION.unpack_from(mm, TYPE_VERSION_OFF)
        if ftype != FLAT_TYPE or version != FLAT_VERSION:
            raise UnsupportedDumpError(
                self.path, TYPE_VERSION_OFF,
                f"flattened header type {ftype} version {version}; expected type 1 version 1")

        offsets: list[int] = []
        sizes: list[int] = []
        fpos: list[int] = []
        pos = FLAT_HEADER_SIZE
        self.truncated = True
        unpack = RECORD.unpack_from
        while pos + RECORD.size <= fsize:
            off, sz = unpack(mm, pos)
            if off == -1 and sz == -1:
                self.truncated = False
                break
            if off < 0 or sz < 0:
                raise DumpFormatError(
                    self.path, pos,
                    f"flattened record claims offset {off} size {sz}; expected non-negative values"
                    " or the end marker (-1, -1)")
            data = pos + RECORD.size
            avail = min(sz, fsize - data)
            if avail > 0:
                offsets.append(off)
                sizes.append(avail)
                fpos.append(data)
            if avail < sz:
                break  # stream cut off inside this record's data
            pos = data + sz
        self.records = len(offsets)
        if len(offsets) <= PURE_RECORDS:
            self._build_segments_pure(offsets, sizes, fpos)
            return
        import numpy as np  # here: only a large stream's records need it
        self._build_segments(np.array(offsets, dtype=np.int64), np.array(sizes, dtype=np.int64),
                             np.array(fpos, dtype=np.int64))

    def _build_segments_pure(self, offsets: list[int], sizes: list[int], fpos: list[int]) -> None:
        """_build_segments() for a few records, without numpy (whose import costs more)."""
        order = sorted(range(len(offsets)), key=offsets.__getitem__)  # stable, as argsort's
        off = [offsets[i] for i in order]
        end = [offsets[i] + sizes[i] for i in order]
        pos = [fpos[i] for i in order]
        involved = [False] * len(off)
        reach = end[0] if end else 0
        for k in range(1, len(off)):
            if off[k] < reach:
                involved[k] = involved[k - 1] = True
            reach = max(reach, end[k])
        if any(involved):
            ks = [k for k, v in enumerate(involved) if v]
            s2, e2, f2 = _sweep([off[k] for k in ks], [end[k] for k in ks], [pos[k] for k in ks],
                                [order[k] for k in ks])
            keep = [k for k, v in enumerate(involved) if not v]
            off = [off[k] for k in keep] + list(s2)
            end = [end[k] for k in keep] + list(e2)
            pos = [pos[k] for k in keep] + list(f2)
            again = sorted(range(len(off)), key=off.__getitem__)
            off, end, pos = [off[i] for i in again], [end[i] for i in again], [pos[i] for i in again]
        self._starts = array("q", off)
        self._ends = array("q", end)
        self._fpos = array("q", pos)
        self.size = max(end) if end else 0

    def _build_segments(self, off: np.ndarray, size: np.ndarray, fpos: np.ndarray) -> None:
        """Turn records into sorted, disjoint segments (start, end, file position)."""
        import numpy as np
        order = np.argsort(off, kind="stable")
        off, end, fpos = off[order], (off + size)[order], fpos[order]
        seq = order  # record number: higher = written later
        if len(off) > 1:
            reach = np.maximum.accumulate(end)
            overlap = off[1:] < reach[:-1]
        else:
            overlap = np.zeros(0, dtype=bool)
        if overlap.any():
            # Records that overlap something (a chain of overlaps forms a cluster) are resolved
            # by a sweep; all others are already disjoint segments.
            involved = np.zeros(len(off), dtype=bool)
            involved[1:] |= overlap
            involved[:-1] |= overlap
            keep = ~involved
            s2, e2, f2 = _sweep(off[involved].tolist(), end[involved].tolist(),
                                fpos[involved].tolist(), seq[involved].tolist())
            off = np.concatenate([off[keep], np.array(s2, dtype=np.int64)])
            end = np.concatenate([end[keep], np.array(e2, dtype=np.int64)])
            fpos = np.concatenate([fpos[keep], np.array(f2, dtype=np.int64)])
            order = np.argsort(off, kind="stable")
            off, end, fpos = off[order], end[order], fpos[order]
        # array.array: compact, and bisect on it yields Python ints without numpy overhead.
        self._starts = array("q", off.tobytes())
        self._ends = array("q", end.tobytes())
        self._fpos = array("q", fpos.tobytes())
        self.size = int(end.max()) if len(end) else 0

    def segments(self) -> list[tuple[int, int]]:
        """The [start, end) ranges of the described file that the stream holds."""
        out: list[tuple[int, int]] = []
        for s, e in zip(self._starts, self._ends):
            if out and out[-1][1] == s:
                out[-1] = (out[-1][0], e)
            else:
                out.append((s, e))
        return out

    def read(self, offset: int, n: int) -> bytes:
        mm = self._mm
        if mm is None or offset < 0 or n <= 0:
            return b""
        i = bisect.bisect_right(self._starts, offset) - 1
        if i < 0:
            return b""
        stop = offset + n
        ends = self._ends
        if offset < ends[i] and stop <= ends[i]:  # the common case: one segment
            p = self._fpos[i] + offset - self._starts[i]
            return mm[p:p + n]
        parts = []
        pos = offset
        nseg = len(ends)
        while pos < stop and i < nseg and self._starts[i] <= pos < ends[i]:
            p = self._fpos[i] + pos - self._starts[i]
            take = min(stop, ends[i]) - pos
            parts.append(mm[p:p + take])
            pos += take
            i += 1
        return b"".join(parts)

    def close(self) -> None:
        mm = getattr(self, "_mm", None)
        if mm is not None:
            mm.close()
            self._mm = None
        self._f.close()


def _sweep(starts: list[int], ends: list[int], fpos: list[int], seqs: list[int]
           ) -> tuple[list[int], list[int], list[int]]:
    """Resolve overlapping records (sorted by start): at every point the record with the
    highest sequence number wins. O(n log n) in the number of records given."""
    points = sorted(set(starts) | set(ends))
    heap: list[tuple[int, int, int, int]] = []  # (-seq, end, start, fpos)
    out_s: list[int] = []
    out_e: list[int] = []
    out_f: list[int] = []
    j = 0
    n = len(starts)
    last_seq = None
    for k in range(len(points) - 1):
        x, y = points[k], points[k + 1]
        while j < n and starts[j] <= x:
            heapq.heappush(heap, (-seqs[j], ends[j], starts[j], fpos[j]))
            j += 1
        while heap and heap[0][1] <= x:
            heapq.heappop(heap)
        if not heap:
            last_seq = None
            continue
        negseq, _, st, fp = heap[0]
        if last_seq == negseq and out_e and out_e[-1] == x:
            out_e[-1] = y  # same record continues
        else:
            out_s.append(x)
            out_e.append(y)
            out_f.append(fp + x - st)
        last_seq = negseq
    return out_s, out_e, out_f


def open_source(path: str) -> ByteSource:
    """A FlatFile if `path` holds a flattened stream, else a memory-mapped FileSource."""
    with open(path, "rb") as f:
        head = f.read(16)
    return FlatFile(path) if is_flattened(head) else FileSource(path)



def _data_extents(fd: int, offset: int, end: int) -> list[tuple[int, int]]:
    """[start, end) parts of a file's [offset, end) that are not holes (SEEK_DATA/SEEK_HOLE;
    all of it where the system cannot tell)."""
    pos = max(0, offset)
    if pos >= end:
        return []
    if not hasattr(os, "SEEK_DATA"):
        return [(pos, end)]
    out = []
    while pos < end:
        try:
            data_at = os.lseek(fd, pos, os.SEEK_DATA)
            hole_at = os.lseek(fd, data_at, os.SEEK_HOLE)
        except OSError as e:
            if e.errno == errno.ENXIO:  # nothing but a hole up to the end of the file
                break
            return [(max(0, offset), end)]
        if data_at >= end:
            break
        out.append((data_at, min(end, hole_at)))
        pos = min(end, hole_at)
    return out
