"""A recording view of a dump's physical memory: the same answers as the dump it wraps, and a
note of every page frame a read was answered from.

What it is for: run the commands a person asks first (triage, dmesg, ps, bt, mod) over this
view, then keep only the pages they read (`vmcorekit filter --level triage`). A read that
fails records the pages before the failing one, which the caller was never given but which a
copy must hold for the same read to fail at the same address, and the failing page itself
when the dump holds it as missing or corrupt (a copy keeps it missing); a page that is
excluded or in no range needs nothing kept to fail the same way.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MemoryReadError, PageMissingError, CorruptPageError
from .base import PhysicalMemory

_MAX_PFN = 1 << 40  # 4 PiB of 4 KiB pages: a range end above this is a lie of the headers


class RecordingMemory(PhysicalMemory):
    """`inner`'s memory, ranges, notes and page states, recording the frames of every read.

    The record is one bit a frame up to the end of the dump's last range (bounded by what the
    headers describe, 32 KiB a GiB of RAM)."""

    def __init__(self, inner: PhysicalMemory) -> None:
        super().__init__(inner.path, inner.info)
        self.inner = inner
        self.notes = inner.notes
        self.virtual_segments = inner.virtual_segments
        end = max((r.end for r in inner.ranges()), default=0)
        self._nbits = min(-(-end // inner.page_size), _MAX_PFN)
        self._read_bits = np.zeros((self._nbits + 7) // 8, dtype=np.uint8)
        self._missing: set[int] = set()

    # -- the record --------------------------------------------------------------------------
    def _mark(self, paddr: int, size: int) -> None:
        ps = self.inner.page_size
        a, b = paddr // ps, min((paddr + size - 1) // ps + 1, self._nbits)
        if a >= b:
            return
        if b - a == 1:
            self._read_bits[a >> 3] |= np.uint8(1 << (a & 7))
            return
        bits = np.unpackbits(self._read_bits[a >> 3:(b + 7) >> 3], bitorder="little")
        bits[a & 7:(a & 7) + (b - a)] = 1
        self._read_bits[a >> 3:(b + 7) >> 3] = np.packbits(bits, bitorder="little")

    def read_pfns(self) -> np.ndarray:
        """Sorted frames read successfully, plus the missing or corrupt frames a read stopped at."""
        bits = np.unpackbits(self._read_bits, bitorder="little")[:self._nbits]
        read = np.flatnonzero(bits).astype(np.int64)
        if not self._missing:
            return read
        extra = np.fromiter(sorted(self._missing), dtype=np.int64)
        return np.union1d(read, extra[extra < self._nbits])

    @property
    def nbits(self) -> int:
        """Frames the record covers: every frame of the dump's ranges."""
        return self._nbits

    # -- PhysicalMemory ----------------------------------------------------------------------
    def read(self, paddr: int, size: int) -> bytes:
        try:
            data = self.inner.read(paddr, size)
        except MemoryReadError:
            self._partial(paddr, size)
            raise
        if size > 0:
            self._mark(paddr, size)
        return data

    def _partial(self, paddr: int, size: int) -> None:
        """Page by page up to the first that fails: a copy must fail at the same address."""
        ps = self.inner.page_size
        pos, end = paddr, paddr + size
        while pos < end:
            n = min(end, (pos // ps + 1) * ps) - pos
            try:
                self.inner.read(pos, n)
            except (PageMissingError, CorruptPageError):
                self._missing.add(pos // ps)
                return
            except MemoryReadError:
                return
            self._mark(pos, n)
            pos += n

    def _read_in_range(self, paddr: int, size: int) -> bytes:  # read() never calls it
        return self.read(paddr, size)

    def ranges(self) -> list[Any]:
        return self.inner.ranges()

    def _find_range(self, paddr: int) -> Any:
        return self.inner._find_range(paddr)

    def page_state(self, pfn: int) -> Any:
        return self.inner.page_state(pfn)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        # Reader-specific facts (a kdump file's split flag, eraseinfo, ...) are the inner one's.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
