"""ELF64 core output (makedumpfile -E).

Layout as makedumpfile writes it: ELF header, program headers (PT_NOTE first, then PT_LOADs),
the notes, then each PT_LOAD's data back to back. Each PT_LOAD of the input is walked page by
page against the 2nd bitmap: an excluded run of 256 pages or more splits the segment (the run
becomes p_memsz without p_filesz), shorter runs stay in the file with their data, and excluded
pages at the end of a segment are left out of p_filesz. The page loop is done run by run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dump.elf_layout import (
    DUMP_ELF_INCOMPLETE,
    EHDR64,
    ELF64_LE_IDENT,
    ET_CORE,
    EV_CURRENT,
    MACHINE_NUMBERS,
    PHDR64,
    PN_XNUM,
    PT_LOAD,
    PT_NOTE,
    SHDR64,
)
from .bitmaps import PfnBitmap
from .sink import Sink

PFN_EXCLUDED = 256  # makedumpfile splits a segment only at excluded runs this long


@dataclass(frozen=True)
class InputSegment:
    """A PT_LOAD of the input: physical start, memsz, virtual start, flags."""

    paddr: int
    memsz: int
    vaddr: int
    flags: int = 7


@dataclass
class OutputLoad:
    paddr: int
    vaddr: int
    memsz: int
    filesz: int
    offset: int = 0
    flags: int = 7
    last: bool = False  # the final piece of an input PT_LOAD


def plan_loads(segments: list[InputSegment], bm2: PfnBitmap, page_size: int) -> list[OutputLoad]:
    """The PT_LOADs makedumpfile's write_elf_pages_cyclic() produces for these segments."""
    out: list[OutputLoad] = []
    ps = page_size
    for seg in segments:
        pfn_start = seg.paddr // ps
        pfn_end = (seg.paddr + seg.memsz) // ps
        frac_head = ps - seg.paddr % ps
        frac_tail = (seg.paddr + seg.memsz) % ps
        memsz = filesz = 0
        if frac_head and frac_head != ps:
            memsz = filesz = frac_head
            pfn_start += 1
        if frac_tail:
            pfn_end += 1
        cur_paddr, cur_vaddr = seg.paddr, seg.vaddr
        num_excluded = 0

        def size_of(last: int) -> int:
            return frac_tail if (last == pfn_end - 1 and frac_tail) else ps

        # Walk runs of equal dumpability instead of single pages.
        bits = bm2.get(pfn_start, pfn_end) if pfn_end > pfn_start else None
        runs: list[tuple[bool, int, int]] = []
        if bits is not None and len(bits):
            change = np.flatnonzero(np.diff(bits.astype(np.int8))) + 1
            edges = [0, *change.tolist(), len(bits)]
            runs = [(bool(bits[a]), pfn_start + a, pfn_start + b) for a, b in zip(edges, edges[1:])]
        for dumpable, a, b in runs:
            if not dumpable:
                num_excluded += b - a
                memsz += (b - a - 1) * ps + size_of(b - 1)
                continue
            # first dumpable page of the run
            sz = size_of(a)
            if not num_excluded:
                memsz += sz
                filesz += sz
            elif num_excluded < PFN_EXCLUDED:
                memsz += sz
                filesz += ps * num_excluded + sz
                num_excluded = 0
            else:
                out.append(OutputLoad(cur_paddr, cur_vaddr, memsz, filesz, flags=seg.flags))
                cur_paddr += memsz
                cur_vaddr += memsz
                num_excluded = 0
                memsz = filesz = ps
            if b - a > 1:
                rest = (b - a - 2) * ps + size_of(b - 1)
                memsz += rest
                filesz += rest
        out.append(OutputLoad(cur_paddr, cur_vaddr, memsz, filesz, flags=seg.flags, last=True))
    return out


def elf_headers(loads: list[OutputLoad], notes: bytes, machine: str | None, *, incomplete: bool = False
                ) -> tuple[bytes, int]:
    """ELF header + program headers (+ section header 0 when PN_XNUM is needed) + notes, and
    the file offset where segment data starts. Assigns each load its p_offset."""
    nphdr = len(loads) + 1
    xnum = nphdr >= PN_XNUM
    phoff = EHDR64.size
    note_off = phoff + nphdr * PHDR64.size + (SHDR64.size if xnum else 0)
    data_off = note_off + len(notes)
    pos = data_off
    for ld in loads:
        # makedumpfile gives the last piece of an input PT_LOAD an offset even without data.
        ld.offset = pos if (ld.filesz or ld.last) else 0
        pos += ld.filesz
    ehdr = EHDR64.pack(ELF64_LE_IDENT, ET_CORE, MACHINE_NUMBERS.get(machine or "", 0), EV_CURRENT, 0, phoff,
                       (phoff + nphdr * PHDR64.size) if xnum else 0, DUMP_ELF_INCOMPLETE if incomplete else 0,
                       EHDR64.size, PHDR64.size, PN_XNUM if xnum else nphdr, SHDR64.size if xnum else 0,
                       1 if xnum else 0, 0)
    parts = [ehdr, PHDR64.pack(PT_NOTE, 0, note_off, 0, 0, len(notes), len(notes), 0)]
    for ld in loads:
        parts.append(PHDR64.pack(PT_LOAD, ld.flags, ld.offset, ld.vaddr, ld.paddr, ld.filesz, ld.memsz, 0))
    if xnum:
        parts.append(SHDR64.pack(0, 0, 0, 0, 0, 1, 0, nphdr, 0, 0))
    parts.append(notes)
    return b"".join(parts), data_off


class ElfWriter:
    """Streams the planned segments' data: `begin()`, then `add(data)` in file order."""

    def __init__(self, sink: Sink, loads: list[OutputLoad], notes: bytes, machine: str | None) -> None:
        self.sink = sink
        self.loads = loads
        self.head, self.data_off = elf_headers(loads, notes, machine)
        self._pos = self.data_off
        self._buf: list[bytes] = []
        self._buf_len = 0

    def begin(self) -> None:
        self.sink.write_at(0, self.head)

    def add(self, data: bytes) -> None:
        self._buf.append(data)
        self._buf_len += len(data)
        if self._buf_len >= 1 << 22:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self.sink.write_at(self._pos, b"".join(self._buf))
            self._pos += self._buf_len
            self._buf, self._buf_len = [], 0

    def end(self) -> int:
        self.flush()
        self.sink.finish()
        return self.sink.size
