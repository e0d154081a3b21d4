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

from ..errors import CorruptPageError, MemoryReadError, PageMissingError
from .base import PhysicalMemory


class RecordingMemory(PhysicalMemory):
    """`inner`'s memory, ranges, notes and page states, recording the frames of every read.

    The record is a set: it grows with the pages read (a few thousand for the questions a
    minidump answers), never with what the headers claim."""

    def __init__(self, inner: PhysicalMemory) -> None:
        super().__init__(inner.path, inner.info)
        self.inner = inner
        self.notes = inner.notes
        self.virtual_segments = inner.virtual_segments
        self._read: set[int] = set()
        self._missing: set[int] = set()

    # -- the record --------------------------------------------------------------------------
    def _mark(self, paddr: int, size: int) -> None:
        ps = self.inner.page_size
        self._read.update(range(paddr // ps, (paddr + size - 1) // ps + 1))

    def read_pfns(self) -> np.ndarray:
        """Sorted frames read successfully, plus the missing or corrupt frames a read stopped at."""
        return np.array(sorted(self._read | self._missing), dtype=np.int64)

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
