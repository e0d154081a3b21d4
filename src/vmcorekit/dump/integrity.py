"""What the dump layer can say about a dump's integrity without knowing the kernel: its
format's self-checks (headers, descriptors, page data, bitmaps, notes). `verify` (report/verify.py) adds the VMCOREINFO checks on top; `info
--ranges` uses this alone."""
from __future__ import annotations

import os

from .base import NT_PRSTATUS, PhysicalMemory
from .checks import BadRange, Progress, VerifyReport, check_generic
from .registry import format_of


def check_dump(phys: PhysicalMemory, *, read_data: bool = True, threads: int | None = None,
               progress: Progress | None = None) -> VerifyReport:
    """Run the checks of `phys`'s format over it; bad ranges come sorted by address. With
    read_data=False only headers, notes, bitmaps and descriptors are checked (no page data is
    read or decompressed). `progress(done, total)` is called as page data is processed."""
    threads = threads or os.cpu_count() or 1
    rep = VerifyReport(phys.path, phys.info.format, phys.page_size)
    fmt = format_of(phys)
    check = fmt.check if fmt is not None and fmt.check is not None else check_generic
    check(rep, phys, read_data, threads, progress)
    _check_prstatus(rep, phys)
    rep.bad_ranges.sort(key=lambda r: r.start)
    return rep


def _check_prstatus(rep: VerifyReport, phys: PhysicalMemory) -> None:
    # Their size per architecture is a platform fact: report/verify.py checks it.
    if not phys.notes_named("CORE", NT_PRSTATUS):
        rep.notes.append("no NT_PRSTATUS notes: CPU registers at the crash are unknown")


def damage_hint(phys: PhysicalMemory) -> str | None:
    """A cheap look for damage, reading no page data: a file that ends before its segment data
    or descriptors say, a flattened stream without its end marker, an incomplete-dump flag."""
    fmt = format_of(phys)
    return fmt.damage_hint(phys) if fmt is not None and fmt.damage_hint is not None else None


def unreadable_ranges(phys: PhysicalMemory, *, read_data: bool = True) -> list[BadRange]:
    """The physical ranges whose dumped pages are missing or corrupt (for `info --ranges`)."""
    return check_dump(phys, read_data=read_data).bad_ranges
