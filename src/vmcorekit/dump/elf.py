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
from typing import TYPE_CHECKING

from ..errors import DumpFormatError, PageExcludedError, PageMissingError, PageNotInDumpError, UnsupportedDumpError
from .base import DumpFormat, DumpInfo, MemRange, PageState, PhysicalMemory, VirtualSegment
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
    parse_notes,
)

if TYPE_CHECKING:
    from .checks import Progress, VerifyReport

MAX_NOTES_BYTES = 64 << 20  # far above any real note area; bounds hostile p_filesz


def is_elf(head: bytes) -> bool:
    return head[:4] == ELF_MAGIC


class _Segment:
    __slots__ = ("paddr", "vaddr", "offset", "filesz", "memsz")

    def __init__(self, paddr: int, vaddr: int, offset: int, filesz: int, memsz: int) -> None:
        self.paddr, self.vaddr, self.offset, self.filesz, self.memsz = paddr, vaddr, offset, filesz, memsz


BULK_READ = 64 << 10  # reads this large go through pread (see ElfDump.read)


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
        if e_phoff + e_phnum * e_phentsize > self.file_size:
            raise self._err(e_phoff, f"{e_phnum} program headers of {e_phentsize} bytes run past the end "
                                     f"of the file ({self.file_size} bytes)")
        segs: list[_Segment] = []
        table = bytes(data[e_phoff:e_phoff + e_phnum * e_phentsize])
        for i in range(e_phnum):
            off = e_phoff + i * e_phentsize
            p_type, _, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, _ = PHDR64.unpack_from(table, i * e_phentsize)
            if p_type == PT_NOTE:
                if p_offset >= self.file_size:
                    continue
                size = min(p_filesz, self.file_size - p_offset, MAX_NOTES_BYTES)
                self.notes.extend(parse_notes(bytes(data[p_offset:p_offset + size]), p_offset, path=self.path))
            elif p_type == PT_LOAD:
                if p_memsz >= 1 << 62 or p_filesz > p_memsz:
                    raise self._err(off, f"PT_LOAD {i}: implausible sizes (filesz {p_filesz:#x}, memsz {p_memsz:#x})")
                segs.append(_Segment(p_paddr, p_vaddr, p_offset, p_filesz, p_memsz))
        self._load_segments(segs)
        ps = 4096
        self.info.page_size = ps
        trunc = [s for s in segs if s.offset + s.filesz > self.file_size]
        if trunc:
            self.info.incomplete = True
            self.info.extra["truncated_at"] = self.file_size
        self.info.extra["phnum"] = e_phnum
        self.info.extra["pt_load"] = len(segs)

    def _load_segments(self, segs: list[_Segment]) -> None:
        # /proc/kcore marks segments without a physical address with p_paddr = -1 (or 0 for
        # some); those are only reachable by virtual address.
        self.virtual_segments = [
            VirtualSegment(s.vaddr, None if s.paddr in (0xFFFFFFFFFFFFFFFF,) else s.paddr, s.memsz) for s in segs
        ]
        phys = [s for s in segs if s.paddr != 0xFFFFFFFFFFFFFFFF]
        # kexec-tools also emits a PT_LOAD for the kernel-text mapping whose physical range
        # duplicates part of a direct-map one; keep one segment per physical byte.
        phys.sort(key=lambda s: (s.paddr, -s.memsz))
        kept: list[_Segment] = []
        for s in phys:
            if kept and s.paddr + s.memsz <= kept[-1].paddr + kept[-1].memsz:
                continue
            kept.append(s)
        self._segs = kept
        self._seg_starts = [s.paddr for s in kept]
        self._set_ranges([MemRange(s.paddr, s.paddr + s.memsz) for s in kept])

    # -- reads -------------------------------------------------------------------------------
    def _segment(self, paddr: int) -> _Segment | None:
        i = bisect.bisect_right(self._seg_starts, paddr) - 1
        while i >= 0:
            s = self._segs[i]
            if paddr < s.paddr + s.memsz:
                return s
            if s.paddr + s.memsz <= paddr:
                return None
            i -= 1
        return None

    def _read_in_range(self, paddr: int, size: int) -> bytes:
        out = []
        end = paddr + size
        pos = paddr
        while pos < end:
            s = self._segment(pos)
            if s is None:
                raise PageNotInDumpError(pos, "not in any PT_LOAD of the dump")
            rel = pos - s.paddr
            n = min(end, s.paddr + s.memsz) - pos
            if rel >= s.filesz:
                # Past p_filesz: makedumpfile -E leaves excluded pages out this way.
                raise PageExcludedError(pos, "beyond the segment's p_filesz (excluded from the dump)")
            n = min(n, s.filesz - rel)
            foff = s.offset + rel
            if foff + n > self.file_size:
                raise PageMissingError(max(pos, s.paddr + (self.file_size - s.offset)),
                                       f"segment data runs past the end of the file ({self.file_size} bytes)")
            out.append(self._map[foff:foff + n])
            pos += n
        return out[0] if len(out) == 1 else b"".join(out)

    def read(self, paddr: int, size: int) -> bytes:
        # Fast path for the common case: one segment, fully in the file.
        i = bisect.bisect_right(self._seg_starts, paddr) - 1
        if i >= 0 and size > 0:
            s = self._segs[i]
            rel = paddr - s.paddr
            if rel + size <= s.filesz and s.offset + rel + size <= self.file_size:
                off = s.offset + rel
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
        s = self._segment(paddr)
        if s is None:
            return PageState.HOLE
        rel = paddr - s.paddr
        if rel >= s.filesz:
            return PageState.EXCLUDED
        if s.offset + rel + min(self.page_size, s.filesz - rel) > self.file_size:
            return PageState.MISSING
        return PageState.PRESENT

    def file_offset(self, paddr: int) -> int | None:
        """Where physical address `paddr` is stored in the file, if it is."""
        s = self._segment(paddr)
        if s is None or paddr - s.paddr >= s.filesz:
            return None
        return s.offset + paddr - s.paddr

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
