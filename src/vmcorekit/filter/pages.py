"""Reading the dumped pages of an input, a batch at a time, into reusable buffers.

A batch is a list of pfn runs (at most `batch` pages). Workers read their batch into a
buffer of their own (one per thread, reused), so no page is copied twice and the resident
set stays a few buffers however big the dump. From an ELF file the runs are read with
os.preadv straight into the buffer (the GIL is released meanwhile); other inputs go through
PhysicalMemory.read. Pages that cannot be read come back zeroed and marked missing.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import numpy as np

from ..dump.base import PhysicalMemory
from ..errors import MemoryReadError
from .bitmaps import PfnBitmap
from .compress import native_module

Runs = list[tuple[int, int]]  # (first pfn, page count)


def batch_plans(bm: PfnBitmap, start: int, end: int, batch: int) -> Iterator[tuple[Runs, int]]:
    """(runs, pages) covering the set bits of `bm` in [start, end) in pfn order, at most
    `batch` pages each."""
    runs: Runs = []
    have = 0
    for a, b in bm.runs(start, end):
        while a < b:
            n = min(b - a, batch - have)
            runs.append((a, n))
            have += n
            a += n
            if have == batch:
                yield runs, have
                runs, have = [], 0
    if have:
        yield runs, have


def run_pfns(runs: Runs) -> np.ndarray:
    return np.concatenate([np.arange(a, a + n, dtype=np.int64) for a, n in runs]) if runs else \
        np.zeros(0, dtype=np.int64)


class PageSource:
    """Reads runs of pages of `phys` (thread-safe; one buffer per calling thread)."""

    def __init__(self, phys: PhysicalMemory, page_size: int, batch: int) -> None:
        self.phys = phys
        self.page_size = page_size
        self.batch = batch
        self._tls = threading.local()
        fileno = getattr(phys, "fileno", None)
        self._fd = fileno() if callable(fileno) and callable(getattr(phys, "file_offset", None)) else None

    def _buffer(self) -> np.ndarray:
        buf = getattr(self._tls, "buf", None)
        if buf is None:
            buf = self._tls.buf = np.empty((self.batch, self.page_size), dtype=np.uint8)
        return buf

    def read(self, runs: Runs, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(pages as n x page_size uint8, missing) for `runs` (n pages in all). The pages are
        a view of the calling thread's buffer: valid until its next read()."""
        if n > self.batch:
            raise ValueError(f"{n} pages in a batch of {self.batch}")
        pages = self._buffer()[:n]
        flat = pages.reshape(-1)
        missing = np.zeros(n, dtype=bool)
        ps, row = self.page_size, 0
        for pfn, k in runs:
            if not self._pread(pfn, k, flat[row * ps:(row + k) * ps]):
                self._read_slow(pfn, k, flat[row * ps:(row + k) * ps], missing[row:row + k])
            row += k
        return pages, missing

    def _pread(self, pfn: int, k: int, out: np.ndarray) -> bool:
        """One preadv for a run stored contiguously in an ELF file; False if it is not."""
        if self._fd is None:
            return False
        ps = self.page_size
        off_of = self.phys.file_offset  # type: ignore[attr-defined]
        first, last = off_of(pfn * ps), off_of((pfn + k - 1) * ps)
        if first is None or last is None or last - first != (k - 1) * ps:
            return False
        try:
            return os.preadv(self._fd, [out], first) == len(out)
        except OSError:
            return False

    def _read_slow(self, pfn: int, k: int, out: np.ndarray, missing: np.ndarray) -> None:
        ps = self.page_size
        try:
            out[:] = np.frombuffer(self.phys.read(pfn * ps, k * ps), dtype=np.uint8)
            return
        except MemoryReadError:
            pass
        for i in range(k):
            try:
                out[i * ps:(i + 1) * ps] = np.frombuffer(self.phys.read((pfn + i) * ps, ps), dtype=np.uint8)
            except MemoryReadError:
                out[i * ps:(i + 1) * ps] = 0
                missing[i] = True


def zero_rows(pages: np.ndarray) -> np.ndarray:
    """Which rows of `pages` (n x page_size uint8) are all zeros (in C where the native page
    loop was built: it stops at a page's first nonzero word; numpy reads every byte)."""
    if pages.shape[1] % 8 == 0 and pages.flags.c_contiguous:
        pp = native_module()
        if pp is not None and hasattr(pp, "zero_rows") and pages.dtype == np.uint8:
            return np.frombuffer(pp.zero_rows(pages, pages.shape[1]), dtype=bool)
        return ~pages.view(np.uint64).any(axis=1)
    return ~pages.any(axis=1)
