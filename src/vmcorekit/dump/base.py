"""The physical-memory interface every dump reader presents.

A reader knows file formats and nothing about the kernel: it maps physical addresses to bytes,
keeps the ELF notes (VMCOREINFO, per-CPU register notes) as raw bytes, and says, for any page,
whether it is present, excluded by filtering, missing from a damaged file, or a hole.
"""
from __future__ import annotations

import bisect
import enum
from abc import ABC, abstractmethod
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import CorruptPageError, PageMissingError, PageNotInDumpError

if TYPE_CHECKING:
    from .checks import Progress, VerifyReport

NT_PRSTATUS = 1
NT_PRPSINFO = 3
NT_TASKSTRUCT = 4
NT_AUXV = 6
NT_VMCOREINFO = 0  # owner "VMCOREINFO"


@dataclass(frozen=True)
class MemRange:
    """A run of physical memory [start, end) that the dump describes."""

    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Note:
    """One ELF note as stored in the dump; `offset` is where its descriptor lies in the file
    (None for notes that were reconstructed, e.g. VMCOREINFO from a kdump sub-header)."""

    owner: str
    type: int
    desc: bytes
    offset: int | None = None


@dataclass(frozen=True)
class VirtualSegment:
    """An ELF PT_LOAD as the file states it: [vaddr, vaddr+size) -> paddr (None when the
    segment has no physical address, as in /proc/kcore's vmalloc segments)."""

    vaddr: int
    paddr: int | None
    size: int


class PageState(enum.Enum):
    PRESENT = "present"
    ZERO = "zero"  # stored as the shared zero page / known to be all zeros
    EXCLUDED = "excluded"  # dropped by filtering
    MISSING = "missing"  # claimed by the dump, but its data is not in the file
    CORRUPT = "corrupt"  # stored, but cannot be decoded
    HOLE = "hole"  # not in any range of the dump


@dataclass
class DumpInfo:
    """Facts a reader learns from its headers, for `vmcorekit info`."""

    format: str
    codec: str | None = None
    machine: str | None = None
    page_size: int = 4096
    dump_level: int | None = None
    incomplete: bool = False
    header_version: int | None = None
    extra: dict[str, object] = field(default_factory=dict)


class PhysicalMemory(ABC):
    """Read-only physical memory of a crashed machine, whatever file it came from."""

    path: str
    info: DumpInfo
    notes: list[Note]
    virtual_segments: list[VirtualSegment]
    damaged_reads: int = 0  # reads that met a cut-off or damaged page (see `damaged`)

    def __init__(self, path: str, info: DumpInfo) -> None:
        self.path = path
        self.info = info
        self.notes = []
        self.virtual_segments = []
        self._range_starts: list[int] = []
        self._ranges: Sequence[MemRange] = []
        self.damaged_reads = 0

    # -- what subclasses provide -------------------------------------------------------------
    @abstractmethod
    def _read_in_range(self, paddr: int, size: int) -> bytes:
        """Read [paddr, paddr+size), which lies inside one MemRange; raise a MemoryReadError
        subclass for any page that cannot be read."""

    def page_state(self, pfn: int) -> PageState:
        return PageState.PRESENT if self._find_range(pfn * self.page_size) is not None else PageState.HOLE

    # -- shared behaviour --------------------------------------------------------------------
    @property
    def page_size(self) -> int:
        return self.info.page_size

    @property
    def machine(self) -> str | None:
        return self.info.machine

    def _set_ranges(self, ranges: list[MemRange]) -> None:
        merged: list[MemRange] = []
        for r in sorted(ranges, key=lambda r: r.start):
            if r.size <= 0:
                continue
            if merged and r.start <= merged[-1].end:
                if r.end > merged[-1].end:
                    merged[-1] = MemRange(merged[-1].start, r.end)
                continue
            merged.append(r)
        self._ranges = merged
        self._range_starts = [r.start for r in merged]

    def _set_range_arrays(self, starts: "Sequence[int]", ends: "Sequence[int]") -> None:
        """_set_ranges() for many ranges at once, sorted by start: kept as typed arrays, 16
        bytes a range, a MemRange made only for the one looked at."""
        rs, re_ = array("Q"), array("Q")
        for a, b in zip(starts, ends):
            if b <= a:
                continue
            if rs and a <= re_[-1]:  # touching or overlapping: one range
                if b > re_[-1]:
                    re_[-1] = b
                continue
            rs.append(a)
            re_.append(b)
        self._range_starts = rs  # type: ignore[assignment]
        self._range_ends = re_
        self._ranges = _RangeList(rs, re_)

    def ranges(self) -> list[MemRange]:
        """Physical ranges the dump describes (present, excluded or missing pages alike)."""
        return list(self._ranges)

    def _find_range(self, paddr: int) -> MemRange | None:
        i = bisect.bisect_right(self._range_starts, paddr) - 1
        if i >= 0:
            r = self._ranges[i]
            if paddr < r.end:
                return r
        return None

    def read(self, paddr: int, size: int) -> bytes:
        """Bytes at physical [paddr, paddr+size); raises a MemoryReadError subclass naming the
        first address that cannot be read."""
        if size <= 0:
            return b""
        try:
            r = self._find_range(paddr)
            if r is not None and paddr + size <= r.end:
                return self._read_in_range(paddr, size)
            parts = []
            pos, end = paddr, paddr + size
            while pos < end:
                r = self._find_range(pos)
                if r is None:
                    raise PageNotInDumpError(pos, "not in any memory range of the dump")
                n = min(end, r.end) - pos
                parts.append(self._read_in_range(pos, n))
                pos += n
            return b"".join(parts)
        except (PageMissingError, CorruptPageError):
            # Pages the dump claims but cannot give (cut off, damaged): an answer that lacks
            # something because of them is partial (see `damaged`).
            self.damaged_reads += 1
            raise

    @property
    def damaged(self) -> bool:
        """Whether the file is cut short or a read has met a damaged page so far: a fact
        unknown in such a dump may be one the intact dump has."""
        return bool(getattr(self.info, "incomplete", False) or self.damaged_reads)

    def notes_named(self, owner: str, type_: int | None = None) -> list[Note]:
        return [n for n in self.notes if n.owner == owner and (type_ is None or n.type == type_)]

    @property
    def vmcoreinfo_raw(self) -> bytes | None:
        found = self.notes_named("VMCOREINFO")
        return found[0].desc if found else None

    def close(self) -> None:
        pass

    def __enter__(self) -> "PhysicalMemory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _RangeList(Sequence[MemRange]):
    """Merged ranges as two typed arrays; a MemRange is made for the one looked at."""

    def __init__(self, starts: array, ends: array) -> None:  # type: ignore[type-arg]
        self._starts, self._ends = starts, ends

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
        if isinstance(i, slice):
            return [MemRange(a, b) for a, b in zip(self._starts[i], self._ends[i])]
        return MemRange(self._starts[i], self._ends[i])

    def __iter__(self) -> "Iterator[MemRange]":
        return map(MemRange, self._starts, self._ends)


@dataclass(frozen=True)
class DumpFormat:
    """What a format file registers (dump/registry.py lists them): how to recognise the format
    from a file's first 16 bytes, how to open it, and its own checks for `verify`.

    A container (a dump inside gzip, say) has `unwrap` instead of `open`: the path of a plain
    copy, which is then probed again."""

    name: str  # detect_format()'s answer
    signature: str | None  # how "unrecognised file" names this format's magic (None: not named)
    probe: Callable[[bytes], bool]
    # One file, or several when `split_family` is set: files whose formats share a family may
    # be the parts of one --split set.
    open: Callable[[list[str]], PhysicalMemory] | None = None
    split_family: str | None = None
    readers: tuple[type[PhysicalMemory], ...] = ()  # the classes open() returns
    # check(report, dump, read_data, threads, progress): the format's self-checks, including
    # its notes; they add to the report, never raise on damage.
    check: Callable[[VerifyReport, PhysicalMemory, bool, int, Progress | None], None] | None = None
    # A cheap look for damage that reads no page data (None: nothing seen).
    damage_hint: Callable[[PhysicalMemory], str | None] | None = None
    # unwrap(path, accept): accept(first bytes) tells whether the plain content is a dump.
    unwrap: Callable[[str, Callable[[bytes], bool]], str] | None = None
