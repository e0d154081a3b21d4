"""ELF64 core files: kdump's /proc/vmcore copies, QEMU dump-guest-memory output, makedumpfile
-E output and /proc/kcore.

Headers are read wherever e_phoff/e_shoff say (QEMU 7.2 puts two section headers before the
program headers), and e_phnum == PN_XNUM is resolved through section header 0, as the ELF spec
requires for >65534 segments.
"""
from __future__ import annotations

import bisect
import mmap
import os
from array import array
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ..errors import DumpFormatError, PageExcludedError, PageMissingError, PageNotInDumpError, UnsupportedDumpError
from .base import DumpFormat, DumpInfo, PageState, PhysicalMemory, VirtualSegment
from .elf_layout import (
    EHDR64,
    ELF_MAGIC,
    ELFCLASS64,
    ELFDATA2LSB,
    ET_CORE,
    MACHINES,
    PHDR64,
    PN_XNUM,
    PT_LOAD,
    PT_NOTE,
    SHDR64,
    NOTES_BYTES_CAP,
    NOTES_CAP,
    parse_notes,
)

if TYPE_CHECKING:
    from .checks import Progress, VerifyReport

MAX_NOTES_BYTES = NOTES_BYTES_CAP
# Counts a file may claim, far above real dumps (a few notes per CPU; a PT_LOAD per memory
# range): past them a file is refused, so work and memory stay bounded by these, not by it.
MAX_NOTES = NOTES_CAP
MAX_PT_LOAD = 1 << 20  # kept as numpy columns (40 bytes each), never one object per segment
MAX_PHNUM = MAX_PT_LOAD + MAX_NOTES
NO_PADDR = 0xFFFFFFFFFFFFFFFF


def is_elf(head: bytes) -> bool:
    return head[:4] == ELF_MAGIC


class _Segment:
    __slots__ = ("paddr", "vaddr", "offset", "filesz", "memsz")

    def __init__(self, paddr: int, vaddr: int, offset: int, filesz: int, memsz: int) -> None:
        self.paddr, self.vaddr, self.offset, self.filesz, self.memsz = paddr, vaddr, offset, filesz, memsz


class _Segments(Sequence[_Segment]):
    """PT_LOADs as typed columns (array('Q'): 8 bytes a field, no numpy needed to read an
    ELF core); a _Segment is made only for the one looked at."""

    def __init__(self, paddr: array, vaddr: array, offset: array, filesz: array,  # type: ignore[type-arg]
                 memsz: array) -> None:  # type: ignore[type-arg]
        self.paddr, self.vaddr, self.offset, self.filesz, self.memsz = paddr, vaddr, offset, filesz, memsz

    def __len__(self) -> int:
        return len(self.paddr)

    def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return _Segment(self.paddr[i], self.vaddr[i], self.offset[i], self.filesz[i], self.memsz[i])

    def __iter__(self) -> "Iterator[_Segment]":
        return map(_Segment, self.paddr, self.vaddr, self.offset, self.filesz, self.memsz)

    def take(self, idx: "list[int]") -> "_Segments":
        return _Segments(*(array("Q", [col[i] for i in idx]) for col in
                           (self.paddr, self.vaddr, self.offset, self.filesz, self.memsz)))


class _VirtualSegments(Sequence[VirtualSegment]):
    """PhysicalMemory.virtual_segments over the PT_LOAD columns (objects made on demand)."""

    def __init__(self, segs: _Segments) -> None:
        self._s = segs

    def __len__(self) -> int:
        return len(self._s)

    def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        p = self._s.paddr[i]
        return VirtualSegment(self._s.vaddr[i], None if p == NO_PADDR else p, self._s.memsz[i])

    def __iter__(self) -> "Iterator[VirtualSegment]":
        for v, p, m in zip(self._s.vaddr, self._s.paddr, self._s.memsz):
            yield VirtualSegment(v, None if p == NO_PADDR else p, m)


BULK_READ = 64 << 10
# Duplicate PT_LOADs kept as second copies (kexec's kernel-text segment is one; more is hostile).
MAX_ALTERNATES = 64  # reads this large go through pread (see ElfDump.read)


class ElfDump(PhysicalMemory):
    """An ELF64 core file as physical memory."""

    def __init__(self, path: str) -> None:
        super().__init__(path, DumpInfo(format="elf"))
        self._fd = os.open(path, os.O_RDONLY)
        try:
            self.file_size = os.fstat(self._fd).st_size
            self._map = self._open_map()
            self._parse()
        except BaseException:
            self.close()
            raise

    def _open_map(self) -> "mmap.mmap | _PreadView | bytes":
        if not self.file_size:
            return b""
        try:
            return mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            # /proc/kcore and pipes-turned-files cannot be mapped; read them with pread.
            return _PreadView(self._fd, self.file_size)

    def close(self) -> None:
        m = getattr(self, "_map", None)
        if isinstance(m, mmap.mmap):
            m.close()
        self._map = b""
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- header parsing ----------------------------------------------------------------------
    def _err(self, offset: int | None, msg: str) -> DumpFormatError:
        return DumpFormatError(self.path, offset, msg)

    def _parse(self) -> None:
        data = self._map
        if self.file_size < 16 or data[:4] != ELF_MAGIC:
            raise self._err(0, "expected ELF magic 7f 45 4c 46" if self.file_size else "file is empty")
        if data[4] != ELFCLASS64:
            raise UnsupportedDumpError(self.path, 4, f"expected a 64-bit ELF (EI_CLASS 2), found class {data[4]}")
        if data[5] != ELFDATA2LSB:
            raise UnsupportedDumpError(self.path, 5, "expected a little-endian ELF (EI_DATA 1)")
        if self.file_size < EHDR64.size:
            raise self._err(self.file_size, f"truncated ELF header: {self.file_size} of {EHDR64.size} bytes")
        (_, e_type, e_machine, _, _, e_phoff, e_shoff, _, _, e_phentsize, e_phnum,
         e_shentsize, e_shnum, _) = EHDR64.unpack(bytes(data[0:EHDR64.size]))
        if e_type != ET_CORE:
            raise self._err(16, f"expected an ELF core file (e_type 4), found e_type {e_type}")
        self.info.machine = MACHINES.get(e_machine, f"elf-machine-{e_machine}")
        if e_phnum == PN_XNUM or (e_shoff and e_shnum == 0):
            # Extended numbering: the real counts live in section header 0.
            if not e_shoff or e_shoff + SHDR64.size > self.file_size:
                raise self._err(e_shoff, "e_phnum is PN_XNUM but section header 0 is not in the file")
            sh = SHDR64.unpack(bytes(data[e_shoff:e_shoff + SHDR64.size]))
            if e_phnum == PN_XNUM:
                e_phnum = sh[7]  # sh_info
        if e_phnum and e_phentsize < PHDR64.size:
            raise self._err(54, f"expected e_phentsize >= {PHDR64.size}, found {e_phentsize}")
        if e_phnum > MAX_PHNUM:
            raise self._err(56, f"{e_phnum} program headers; expected at most {MAX_PHNUM} "
                                f"({MAX_PT_LOAD} PT_LOAD and {MAX_NOTES} PT_NOTE)")
        if e_phoff + e_phnum * e_phentsize > self.file_size:
            raise self._err(e_phoff, f"{e_phnum} program headers of {e_phentsize} bytes run past the end "
                                     f"of the file ({self.file_size} bytes)")
        # The table as typed columns: one pass, no object kept per header.
        table = bytes(data[e_phoff:e_phoff + e_phnum * e_phentsize])
        cols: tuple[array, ...] = tuple(array("Q") for _ in range(5))  # type: ignore[type-arg]
        a_paddr, a_vaddr, a_off, a_filesz, a_memsz = cols
        notes_at: list[tuple[int, int, int]] = []
        unpack = PHDR64.unpack_from
        for i in range(e_phnum):
            p_type, _, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, _ = unpack(table, i * e_phentsize)
            if p_type == PT_NOTE:
                notes_at.append((i, p_offset, p_filesz))
            elif p_type == PT_LOAD:
                if len(a_paddr) == MAX_PT_LOAD:
                    raise self._err(e_phoff + i * e_phentsize, f"more than {MAX_PT_LOAD} PT_LOAD program headers; "
                                                               f"expected at most {MAX_PT_LOAD}")
                if p_memsz >= 1 << 62 or p_filesz > p_memsz:
                    raise self._err(e_phoff + i * e_phentsize, f"PT_LOAD {i}: implausible sizes (filesz "
                                                               f"{p_filesz:#x}, memsz {p_memsz:#x})")
                a_paddr.append(p_paddr)
                a_vaddr.append(p_vaddr)
                a_off.append(p_offset)
                a_filesz.append(p_filesz)
                a_memsz.append(p_memsz)
        del table
        self._parse_notes(data, notes_at)
        segs = _Segments(*cols)
        self._load_segments(segs)
        ps = 4096
        self.info.page_size = ps
        size = self.file_size
        if any(o + f > size for o, f in zip(a_off, a_filesz)):
            self.info.incomplete = True
            self.info.extra["truncated_at"] = size
        self.info.extra["phnum"] = e_phnum
        self.info.extra["pt_load"] = len(segs)

    def _parse_notes(self, data: "mmap.mmap | _PreadView | bytes", notes_at: list[tuple[int, int, int]]) -> None:
        """The notes of every PT_NOTE (index, offset, size), at most MAX_NOTES in all and
        MAX_NOTES_BYTES read."""
        budget = MAX_NOTES_BYTES
        for i, p_offset, p_filesz in notes_at:
            if p_offset >= self.file_size or budget <= 0:
                continue
            size = min(p_filesz, self.file_size - p_offset, budget)
            budget -= size
            room = MAX_NOTES - len(self.notes)
            if isinstance(data, mmap.mmap):
                # Parsed where it lies: only the pages the walk reaches are touched.
                with memoryview(data) as whole, whole[p_offset:p_offset + size] as area:
                    notes = parse_notes(area, p_offset, path=self.path, limit=room + 1)  # type: ignore[arg-type]
            else:
                notes = parse_notes(bytes(data[p_offset:p_offset + size]), p_offset, path=self.path, limit=room + 1)
            if len(notes) > room:
                raise self._err(notes[room].offset, f"more than {MAX_NOTES} ELF notes (PT_NOTE {i}); expected at "
                                                    f"most {MAX_NOTES}: a few per CPU")
            self.notes.extend(notes)

    def _load_segments(self, segs: _Segments) -> None:
        # /proc/kcore marks segments without a physical address with p_paddr = -1; those are
        # only reachable by virtual address.
        self.virtual_segments = _VirtualSegments(segs)  # type: ignore[assignment]
        paddr, memsz = segs.paddr, segs.memsz
        # kexec-tools also emits a PT_LOAD for the kernel-text mapping whose physical range
        # duplicates part of a direct-map one; keep one segment per physical byte: sorted by
        # (start, longest first), a segment ending within the furthest end so far is dropped.
        # (An end past 2^64 is cut there: only a hostile header says so.)
        order = sorted((i for i in range(len(segs)) if paddr[i] != NO_PADDR), key=lambda i: (paddr[i], -memsz[i]))
        kept: list[int] = []
        dropped: list[int] = []
        reach = -1
        for i in order:
            end = min(paddr[i] + memsz[i], NO_PADDR)
            if end > reach:
                kept.append(i)
                reach = end
            elif len(dropped) < MAX_ALTERNATES and segs.filesz[i]:
                dropped.append(i)
        # A dropped duplicate still holds its bytes: when the kept copy of a page is cut off
        # (a truncated file) or left out, the other copy serves it.
        self._alts = [(segs.paddr[i], min(segs.paddr[i] + segs.memsz[i], NO_PADDR), segs.offset[i],
                       segs.filesz[i]) for i in dropped]
        k = segs.take(kept)
        del order, kept
        self._segs = k
        # Per-read lookups: typed arrays (bisect works on them).
        self._seg_starts = k.paddr
        self._seg_ends = array("Q", (min(p + m, NO_PADDR) for p, m in zip(k.paddr, k.memsz)))
        self._seg_off = k.offset
        self._seg_filesz = k.filesz
        self._set_range_arrays(self._seg_starts, self._seg_ends)

    # -- reads -------------------------------------------------------------------------------
    def _segment(self, paddr: int) -> int:
        """Index of the kept segment holding `paddr`, or -1."""
        i = bisect.bisect_right(self._seg_starts, paddr) - 1
        # Kept segments never nest, so the one starting last at or below paddr is the only
        # candidate (an earlier one ends before it ends).
        if i >= 0 and paddr < self._seg_ends[i]:
            return i
        return -1

    def _alternate(self, pos: int, end: int) -> tuple[int, int] | None:
        """(file offset, length) of the bytes at physical `pos` (up to `end`) in a duplicate
        segment, when one has them in the file."""
        for start, seg_end, off, filesz in self._alts:
            if start <= pos < seg_end:
                rel = pos - start
                n = min(end, seg_end, start + filesz) - pos
                n = min(n, self.file_size - (off + rel))
                if n > 0:
                    return off + rel, n
        return None

    def _read_in_range(self, paddr: int, size: int) -> bytes:
        out = []
        end = paddr + size
        pos = paddr
        while pos < end:
            i = self._segment(pos)
            if i < 0:
                raise PageNotInDumpError(pos, "not in any PT_LOAD of the dump")
            start, seg_end, foff0, filesz = self._seg_starts[i], self._seg_ends[i], self._seg_off[i], self._seg_filesz[i]
            rel = pos - start
            n = min(end, seg_end) - pos
            alt = self._alternate(pos, end) if self._alts else None
            if rel >= filesz:
                if alt is not None:
                    out.append(self._map[alt[0]:alt[0] + alt[1]])
                    pos += alt[1]
                    continue
                # Past p_filesz: makedumpfile -E leaves excluded pages out this way.
                raise PageExcludedError(pos, "beyond the segment's p_filesz (excluded from the dump)")
            n = min(n, filesz - rel)
            foff = foff0 + rel
            if foff + n > self.file_size:
                if foff < self.file_size:
                    n = self.file_size - foff  # the part still in the file, then look again
                    out.append(self._map[foff:foff + n])
                    pos += n
                    continue
                if alt is not None:
                    out.append(self._map[alt[0]:alt[0] + alt[1]])
                    pos += alt[1]
                    continue
                raise PageMissingError(max(pos, start + (self.file_size - foff0)),
                                       f"segment data runs past the end of the file ({self.file_size} bytes)")
            out.append(self._map[foff:foff + n])
            pos += n
        return out[0] if len(out) == 1 else b"".join(out)

    def read(self, paddr: int, size: int) -> bytes:
        # Fast path for the common case: one segment, fully in the file.
        i = bisect.bisect_right(self._seg_starts, paddr) - 1
        if i >= 0 and size > 0:
            rel = paddr - self._seg_starts[i]
            if rel + size <= self._seg_filesz[i] and self._seg_off[i] + rel + size <= self.file_size:
                off = self._seg_off[i] + rel
                if size >= BULK_READ and isinstance(self._map, mmap.mmap):
                    # Bulk reads (a filter's struct pages: 1.6% of RAM) by pread, not through
                    # the mapping, whose touched pages would stay in this process's RSS.
                    data = os.pread(self._fd, size, off)
                    if len(data) == size:
                        return data
                return self._map[off:off + size]
        return super().read(paddr, size)

    def page_state(self, pfn: int) -> PageState:
        paddr = pfn * self.page_size
        i = self._segment(paddr)
        if i < 0:
            return PageState.HOLE
        rel = paddr - self._seg_starts[i]
        filesz = self._seg_filesz[i]
        state = PageState.PRESENT
        if rel >= filesz:
            state = PageState.EXCLUDED
        elif self._seg_off[i] + rel + min(self.page_size, filesz - rel) > self.file_size:
            state = PageState.MISSING
        if state != PageState.PRESENT and self._alts:
            alt = self._alternate(paddr, paddr + self.page_size)
            if alt is not None and alt[1] == self.page_size:
                return PageState.PRESENT
        return state

    def file_offset(self, paddr: int) -> int | None:
        """Where physical address `paddr` is stored in the file, if it is."""
        i = self._segment(paddr)
        if i < 0:
            return None
        off = self._seg_off[i] + paddr - self._seg_starts[i]
        if paddr - self._seg_starts[i] >= self._seg_filesz[i] or off >= self.file_size:
            alt = self._alternate(paddr, paddr + 1) if self._alts else None
            return alt[0] if alt is not None else None
        return off

    def fileno(self) -> int:
        """The dump file's open descriptor, for bulk reads (os.preadv) at file_offset()s."""
        return self._fd


class _PreadView:
    """The slice interface of an mmap over pread, for files that cannot be mapped."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd, self._size = fd, size

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, key: "int | slice") -> "bytes | int":
        if isinstance(key, int):
            return os.pread(self._fd, 1, key)[0]
        start, stop, _ = key.indices(self._size)
        return os.pread(self._fd, max(0, stop - start), start)


# -- the registry's entry --------------------------------------------------------------------------
# The checks load only when used: reading an ELF core needs no numpy.
def _open(paths: list[str]) -> PhysicalMemory:
    return ElfDump(paths[0])


def _check(rep: VerifyReport, phys: PhysicalMemory, read_data: bool, threads: int,
           progress: Progress | None) -> None:
    from .elf_checks import check_elf

    assert isinstance(phys, ElfDump)
    check_elf(rep, phys, read_data, threads, progress)  # its notes included


def _damage_hint(phys: PhysicalMemory) -> str | None:
    from .elf_checks import damage_hint

    return damage_hint(phys) if isinstance(phys, ElfDump) else None


FORMAT = DumpFormat("elf", "an ELF core", is_elf, _open, readers=(ElfDump,), check=_check,
                    damage_hint=_damage_hint)
