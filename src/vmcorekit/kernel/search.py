"""Searching memory for a value or a string, as crash's `search`: kernel memory (-k, through
the direct map, so every page of RAM the dump holds) or physical memory (-p).

    search_value(prog, value, mask=0, start=None, end=None, physical=False, limit=1000)
    search_string(prog, text, ...)

Only bytes the dump holds are read (its memory ranges; a page it lacks is skipped and
counted), in chunks, with numpy for word matches. A value match is an aligned machine word
whose bits outside `mask` equal the value's (crash's -m: mask bits are ignored).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np

from ..errors import MemoryReadError, VmcorekitError

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["Hit", "SearchStats", "search_value", "search_string"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Hit:
    address: int  # virtual (direct map) for a kernel search, physical for -p
    physical: int
    value: int | None
    context: bytes


@dataclass
class SearchStats:
    bytes_read: int = 0
    pages_missing: int = 0
    truncated: bool = False


def _phys_window(prog: "Program", start: int | None, end: int | None, physical: bool) -> tuple[int, int, int]:
    """(physical start, physical end, vaddr - paddr) of the search."""
    from .memmap import _direct_map
    off = 0 if physical else _direct_map(prog)[2]
    top = max((r.end for r in prog.phys.ranges()), default=0)
    lo = 0 if start is None else (start - off) & 0xFFFF_FFFF_FFFF_FFFF
    hi = top if end is None else (end - off) & 0xFFFF_FFFF_FFFF_FFFF
    if not physical and start is not None and not 0 <= lo <= top:
        raise VmcorekitError(f"{start:#x} is not in the direct map: -k searches it from its start")
    return lo, min(hi, top), off


def _chunks(prog: "Program", lo: int, hi: int, stats: SearchStats, overlap: int) -> Iterator[tuple[int, bytes, int]]:
    """(physical address, bytes, bytes of its own before the overlap) of everything the dump holds in [lo, hi), in chunks that
    overlap by `overlap` bytes so a match across a boundary is seen once."""
    ps = prog.page_size
    for r in prog.phys.ranges():
        a, b = max(r.start, lo), min(r.end, hi)
        pos = a
        while pos < b:
            n = min(_CHUNK, b - pos)
            try:
                data = prog.phys.read(pos, min(n + overlap, b - pos))
            except MemoryReadError:
                # page by page: what reads is searched, what does not is counted
                parts = []
                for p in range(pos, pos + n, ps):
                    try:
                        parts.append(prog.phys.read(p, min(ps, pos + n - p)))
                    except MemoryReadError:
                        stats.pages_missing += 1
                        if parts:
                            got = b"".join(parts)
                            yield p - len(got), got, len(got)
                        parts = []
                if parts:
                    got = b"".join(parts)
                    yield pos + n - len(got), got, len(got)
                stats.bytes_read += n
                pos += n
                continue
            stats.bytes_read += n
            yield pos, data, n
            pos += n


def search_value(prog: "Program", value: int, *, mask: int = 0, start: int | None = None,
                 end: int | None = None, physical: bool = False, limit: int = 1000,
                 width: int | None = None) -> tuple[list[Hit], SearchStats]:
    """Aligned words equal to `value` outside `mask`."""
    w = width or prog.space.pointer_size
    dt = {8: "<u8", 4: "<u4", 2: "<u2"}[w]
    full = (1 << (8 * w)) - 1
    keep = np.array(~mask & full, dtype=dt)
    want = np.array(value & ~mask & full, dtype=dt)
    lo, hi, off = _phys_window(prog, start, end, physical)
    lo -= lo % w
    stats = SearchStats()
    hits: list[Hit] = []
    for base, data, _ in _chunks(prog, lo, hi, stats, 0):
        n = len(data) // w * w
        words = np.frombuffer(data[:n], dtype=dt)
        for i in np.nonzero((words & keep) == want)[0]:
            if len(hits) >= limit:
                stats.truncated = True
                return hits, stats
            pa = base + int(i) * w
            hits.append(Hit((pa + off) & 0xFFFF_FFFF_FFFF_FFFF, pa, int(words[i]), b""))
    return hits, stats


def search_string(prog: "Program", text: bytes, *, start: int | None = None, end: int | None = None,
                  physical: bool = False, limit: int = 1000) -> tuple[list[Hit], SearchStats]:
    """Every occurrence of `text`, with up to 64 bytes from it as context."""
    if not text:
        raise VmcorekitError("an empty string matches everywhere")
    lo, hi, off = _phys_window(prog, start, end, physical)
    stats = SearchStats()
    hits: list[Hit] = []
    for base, data, own in _chunks(prog, lo, hi, stats, len(text) - 1):
        i = data.find(text)
        while i != -1 and i < own:  # a match starting in the overlap is the next chunk's
            if len(hits) >= limit:
                stats.truncated = True
                return hits, stats
            pa = base + i
            hits.append(Hit((pa + off) & 0xFFFF_FFFF_FFFF_FFFF, pa, None, data[i:i + 64]))
            i = data.find(text, i + 1)
    return hits, stats
