"""End-to-end check of a dump: `vmcorekit verify`.

The dump layer checks what the file itself says (dump/integrity.py runs the checks each format
registers: headers, notes, bitmaps, descriptors, page data); this adds what needs VMCOREINFO:
the note is present, parses and carries the keys documented for its release and architecture
(vmcoreinfo/spec.py).
"""
from __future__ import annotations

import time
from typing import Any

from ..arch.platform import platform
from ..dump import PhysicalMemory, open_dump
from ..dump.base import NT_PRSTATUS
from ..dump.checks import BadRange, Check, Progress, VerifyReport
from ..dump.integrity import check_dump
from ..vmcoreinfo import VmcoreInfo
from ..vmcoreinfo.spec import check

__all__ = ["BadRange", "Check", "VerifyReport", "verify", "verify_path"]


def verify(phys: PhysicalMemory, *, read_data: bool = True, threads: int | None = None,
           progress: Progress | None = None) -> VerifyReport:
    """Check an open dump end to end. With read_data=False only headers, notes, bitmaps and
    descriptors are checked (no page data is read or decompressed). `progress(done, total)` is
    called as page data is processed."""
    t0 = time.perf_counter()
    rep = check_dump(phys, read_data=read_data, threads=threads, progress=progress)
    _check_prstatus_sizes(rep, phys)
    _check_vmcoreinfo(rep, phys)
    rep.seconds = time.perf_counter() - t0
    return rep


def _check_prstatus_sizes(rep: VerifyReport, phys: PhysicalMemory) -> None:
    """Each CPU's NT_PRSTATUS is one struct elf_prstatus, whose size the platform knows."""
    plat = platform(phys.machine or "")
    if plat is None:
        return
    want = plat.prstatus.note_size
    bad = [len(n.desc) for n in phys.notes_named("CORE", NT_PRSTATUS) if len(n.desc) != want]
    if bad:
        rep.problems.append(f"{len(bad)} NT_PRSTATUS notes of {bad[0]} bytes; expected {want} on {phys.machine}")


def _check_vmcoreinfo(rep: VerifyReport, phys: PhysicalMemory) -> None:
    raw = phys.vmcoreinfo_raw
    if raw is None:
        rep.check("vmcoreinfo", False, "no VMCOREINFO note (kernel facts unknown; give one with --vmcoreinfo)")
        return
    vi = VmcoreInfo.parse(raw, source=phys.path)
    res = check(vi, phys.machine if phys.machine and phys.machine.lower() != "unknown" else None)
    detail = [f"{len(vi.entries)} keys, release {vi.osrelease or 'unknown'}"]
    if res.missing:
        detail.append(f"missing {len(res.missing)} documented keys: {', '.join(res.missing[:8])}"
                      + (" ..." if len(res.missing) > 8 else ""))
    if res.malformed:
        detail.append(f"{len(res.malformed)} malformed lines: {res.malformed[0]}")
    if res.unknown:
        rep.notes.append(f"VMCOREINFO: {len(res.unknown)} keys not in the documented list "
                         f"({', '.join(res.unknown[:5])}{' ...' if len(res.unknown) > 5 else ''})")
    rep.notes.extend(f"VMCOREINFO: {n}" for n in res.notes)
    rep.check("vmcoreinfo", res.ok, "; ".join(detail))


def verify_path(paths: str | list[str], **kw: Any) -> VerifyReport:
    """Open a dump (one file or the files of a split set) and verify it."""
    with open_dump(paths) as phys:
        return verify(phys, **kw)
