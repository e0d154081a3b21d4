"""Swap areas (swap_info[]), as crash's `swap` lists them.

    swap_areas(prog)    # [SwapArea]: address, partition or file, pages, used, priority, path
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CorruptKernelDataError, MemoryReadError, TypeLookupError, VmcorekitError, partial_result
from .meminfo import MAX_SWAPFILES_SCAN

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["SwapArea", "swap_areas", "free_swap_pages"]

_S_IFMT, _S_IFBLK = 0o170000, 0o060000


@dataclass(frozen=True)
class SwapArea:
    address: int
    kind: str  # PARTITION or FILE
    pages: int
    used: int
    priority: int
    path: str

    def as_dict(self, page_size: int) -> dict[str, Any]:
        return {"swap_info": self.address, "type": self.kind, "size_bytes": self.pages * page_size,
                "used_bytes": self.used * page_size, "priority": self.priority, "filename": self.path}


def swap_areas(prog: "Program") -> list[SwapArea]:
    """Every swap area in use (SWP_USED), in swap_info[] order."""
    from ..program.objects import Object
    from .mounts import file_path
    if not prog.has_btf:
        raise TypeLookupError("swap areas need struct swap_info_struct's layout, which only BTF gives")
    addr = prog.try_symbol_address("swap_info")
    n_addr = prog.try_symbol_address("nr_swapfiles")
    if addr is None or n_addr is None:
        raise TypeLookupError("swap_info / nr_swapfiles are not in the symbol table")
    n = int.from_bytes(prog.read(n_addr, 4), "little", signed=True)
    if not 0 <= n <= MAX_SWAPFILES_SCAN:
        raise CorruptKernelDataError(f"nr_swapfiles is {n}")
    try:
        swp_used = prog.types.constant("SWP_USED")
    except (TypeLookupError, VmcorekitError):
        swp_used = 1
    out: list[SwapArea] = []
    ps = prog.space.pointer_size
    for i in range(n):
        p = prog.read_pointer(addr + i * ps)
        if not p:
            continue
        si = Object(prog, "struct swap_info_struct", address=p)
        try:
            if not int(si.flags) & swp_used:
                continue
            f = si.swap_file
            path = file_path(prog, f) if int(f) else ""
            mode = int(f.f_inode.i_mode) if int(f) else 0
            kind = "PARTITION" if mode & _S_IFMT == _S_IFBLK else "FILE"
            out.append(SwapArea(p, kind, int(si.pages), int(si.inuse_pages), int(si.prio), path))
        except (MemoryReadError, CorruptKernelDataError) as e:
            partial_result(f"swap area {i} at {p:#x}: {e}")
    return out


def free_swap_pages(prog: "Program") -> int | None:
    """nr_swap_pages: free swap pages over all areas (None when the symbol is missing)."""
    a = prog.try_symbol_address("nr_swap_pages")
    if a is None:
        return None
    return int.from_bytes(prog.read(a, prog.space.pointer_size), "little", signed=True)
