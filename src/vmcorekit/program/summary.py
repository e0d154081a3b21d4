"""The facts `vmcorekit info` reports, gathered once for the CLI, triage and scripts."""
from __future__ import annotations

import datetime as _dt
from typing import Any

from ..dump import PageState, PhysicalMemory
from ..errors import VmcorekitError
from ..vmcoreinfo import VmcoreInfo


def dump_summary(phys: PhysicalMemory, vmcoreinfo: VmcoreInfo | None = None) -> dict[str, Any]:
    """Format, arch, release, page size, CPUs, memory ranges, KASLR, crash time, filtering.
    Each part that cannot be computed is reported under `problems` instead of failing."""
    from ..arch import address_space

    info = phys.info
    problems: list[str] = []
    out: dict[str, Any] = {
        "path": phys.path,
        "format": info.format,
        "codec": info.codec,
        "header_version": info.header_version,
        "arch": phys.machine,
        "page_size": phys.page_size,
        "dump_level": info.dump_level,
        "filtered": bool(info.dump_level),
        "incomplete": info.incomplete,
        "memory_ranges": [{"start": r.start, "end": r.end, "size": r.size} for r in phys.ranges()],
        "memory_bytes": sum(r.size for r in phys.ranges()),
        "notes": [{"owner": n.owner, "type": n.type, "size": len(n.desc)} for n in phys.notes],
    }
    out.update({k: v for k, v in info.extra.items() if isinstance(v, (int, str, bool, float, type(None)))})
    from ..dump.integrity import damage_hint
    hint = damage_hint(phys)
    if hint:  # a truncated file is incomplete whatever its header says
        problems.append(hint)
        out["incomplete"] = True
    if vmcoreinfo is None and phys.vmcoreinfo_raw is not None:
        vmcoreinfo = VmcoreInfo.parse(phys.vmcoreinfo_raw, source=phys.path)
    if vmcoreinfo is None:
        problems.append("no VMCOREINFO note: kernel facts unknown")
        out["problems"] = problems
        return out
    vi = vmcoreinfo
    out["release"] = vi.osrelease
    out["build_id"] = vi.build_id
    if vi.page_size:
        out["page_size"] = vi.page_size
    out["kaslr_offset"] = vi.kerneloffset
    ct = vi.crashtime
    out["crash_time"] = ct
    if ct is not None:
        out["crash_time_utc"] = _dt.datetime.fromtimestamp(ct, _dt.timezone.utc).isoformat()
    out["arch"] = out["arch"] or vi.guess_arch()
    try:
        space = address_space(phys, vi)
        out["arch"] = space.arch  # the container may say "Unknown" (QEMU's arm64 kdump header)
        d = space.describe()
        out["arch_facts"] = {k: v for k, v in d.items() if k != "regions"}
        out["regions"] = d.get("regions", [])
        cpus = space.cpu_registers()
        out["cpu_notes"] = len(cpus)
    except VmcorekitError as e:
        problems.append(f"address space: {e}")
    nr = info.extra.get("nr_cpus")
    out["cpus"] = nr if isinstance(nr, int) and nr > 0 else out.get("cpu_notes")
    if problems:
        out["problems"] = problems
    return out


def page_census(phys: PhysicalMemory, limit_pages: int = 1 << 26) -> dict[str, int]:
    """Pages by state over the dump's ranges (bounded: huge dumps are sampled by range)."""
    counts: dict[str, int] = {s.value: 0 for s in PageState}
    ps = phys.page_size
    budget = limit_pages
    for r in phys.ranges():
        for pfn in range(r.start // ps, (r.end + ps - 1) // ps):
            counts[phys.page_state(pfn).value] += 1
            budget -= 1
            if budget <= 0:
                return counts
    return counts


def damage_summary(phys: PhysicalMemory, *, read_data: bool = True) -> dict[str, Any]:
    """Pages by state and the physical ranges whose dumped pages are missing or unreadable
    (see dump/integrity.py), for `info --ranges`. With read_data, every compressed page is
    decompressed to find the corrupt ones."""
    from ..dump.integrity import check_dump

    rep = check_dump(phys, read_data=read_data)
    return {"pages": dict(rep.pages), "unreadable_ranges": [r.to_json() for r in rep.bad_ranges],
            "problems": list(rep.problems), "data_checked": rep.data_checked}
