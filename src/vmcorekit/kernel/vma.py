"""A process's memory map: its VMAs (crash's `vm`).

    vmas(mm)                  # [Vma] in address order
    maple_entries(prog, mt)   # every entry of a maple tree (6.1+: mm->mm_mt)

Since 6.1 the VMAs live in a maple tree (`mm->mm_mt`); before, in a list (`mm->mmap`,
`vm_area_struct.vm_next`). A maple node pointer carries its type in bits 3-6 (maple_dense,
maple_leaf_64, maple_range_64, maple_arange_64; include/linux/maple_tree.h) and the node is
256-byte aligned. Internal nodes' slots are child nodes, leaves' slots entries. The walk
collects every non-NULL slot, bounded in nodes and depth; an entry is kept as a VMA only when
it points back to the mm (`vm_mm`), which also drops stale slots past a node's end.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CorruptKernelDataError, MemoryReadError, VmcorekitError
from .lists import linked_nodes

if TYPE_CHECKING:
    from ..program.core import Program
    from ..program.objects import Object

__all__ = ["Vma", "vmas", "maple_entries", "MAX_VMAS"]

MAX_VMAS = 1 << 20  # vm.max_map_count is 65530 by default; far above any real map
MAX_NODES = 1 << 18
MAPLE_HEIGHT_MAX = 31
_NODE_MASK = 0xFF
_LEAF_64, _RANGE_64, _ARANGE_64 = 1, 2, 3


def _is_node(entry: int) -> bool:
    """xa_is_node(): an internal pointer (low bits 10) above the reserved values."""
    return entry & 3 == 2 and entry > 4096


def maple_entries(prog: "Program", tree: int) -> list[int]:
    """Every non-NULL entry of the maple tree (struct maple_tree) at `tree`."""
    root = prog.read_pointer(tree + prog.offsetof("struct maple_tree", "ma_root"))
    if not _is_node(root):
        return [root] if root else []
    ps = prog.platform.pointer_size
    sample = prog.object("struct maple_node", root & ~_NODE_MASK)  # for the layout only
    layout = {}
    for typ, member in ((_LEAF_64, "mr64"), (_RANGE_64, "mr64"), (_ARANGE_64, "ma64")):
        slots = sample.member_(member).slot
        layout[typ] = (prog.offsetof("struct maple_node", f"{member}.slot"),
                       slots.type_.strip_typedefs().length or 0)
    out: list[int] = []
    stack = [(root, 0)]
    nodes = 0
    while stack:
        enode, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES or depth > MAPLE_HEIGHT_MAX:
            raise CorruptKernelDataError(f"maple tree {tree:#x}: more than {MAX_NODES} nodes or deeper than "
                                         f"{MAPLE_HEIGHT_MAX} levels (a loop?)")
        typ = (enode >> 3) & 0xF
        if typ not in layout:
            raise CorruptKernelDataError(f"maple tree {tree:#x}: node {enode:#x} has type {typ}, not a "
                                         f"64-bit range node")
        node = enode & ~_NODE_MASK
        off, n = layout[typ]
        try:
            raw = prog.read(node + off, n * ps)
        except MemoryReadError as e:
            raise CorruptKernelDataError(f"maple tree {tree:#x}: node {node:#x} does not read: {e}") from None
        slots = [int.from_bytes(raw[i * ps:(i + 1) * ps], prog.platform.byteorder) for i in range(n)]
        if typ == _LEAF_64:
            # A VMA is an aligned kernel pointer; small values are the node's metadata
            # (its end and gap kept in the last slot of a node that is not full).
            out += [s for s in slots if s > 4096 and s % 8 == 0]
            if len(out) > MAX_VMAS:
                raise CorruptKernelDataError(f"maple tree {tree:#x}: more than {MAX_VMAS} entries")
        else:
            stack += [(s, depth + 1) for s in reversed(slots) if _is_node(s)]
    return out


@dataclass
class Vma:
    address: int
    start: int
    end: int
    flags: int
    file: int
    path: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"vma": self.address, "start": self.start, "end": self.end, "flags": self.flags,
                "file": self.file or None, "path": self.path}


def vmas(mm: "Object", problems: list[str] | None = None) -> list[Vma]:
    """The VMAs of `mm` (a struct mm_struct or a pointer to one) in address order. A file whose path cannot be made keeps its VMA with
    `path` None (the reason in `problems`)."""
    from ..program.types.model import TypeKind
    from .fs import d_path
    prog = mm.prog_
    if mm.type_.strip_typedefs().kind == TypeKind.POINTER:
        mm = mm.deref()
    entries: list[int] = []
    try:
        if prog.try_offsetof("struct mm_struct", "mm_mt") is not None:
            entries = maple_entries(prog, mm.mm_mt.address_)
        elif int(mm.mmap):
            nxt = prog.offsetof("struct vm_area_struct", "vm_next")
            for e in linked_nodes(prog, int(mm.mmap), nxt, what=f"mm {mm.address_:#x} vma list", limit=MAX_VMAS):
                entries.append(e)
    except (CorruptKernelDataError, MemoryReadError) as err:  # keep what was found before the break
        if problems is not None:
            problems.append(f"mm {mm.address_:#x}: {err}")
    out: list[Vma] = []
    seen: set[int] = set()
    for e in entries:
        if e in seen:
            continue
        seen.add(e)
        try:
            v = prog.object("struct vm_area_struct", e)
            if int(v.vm_mm) != mm.address_:
                continue  # a stale slot, or not a VMA of this mm
            f = int(v.vm_file)
            row = Vma(e, int(v.vm_start), int(v.vm_end), int(v.vm_flags), f, None)
        except (MemoryReadError, VmcorekitError, LookupError) as err:
            if problems is not None:
                problems.append(f"vma {e:#x}: {err}")
            continue
        if f:
            try:
                fo = prog.object("struct file", f)
                row.path = d_path(prog, int(fo.f_path.mnt), int(fo.f_path.dentry))
            except (MemoryReadError, VmcorekitError, LookupError) as err:
                if problems is not None:
                    problems.append(f"vma {e:#x} file {f:#x}: {err}")
        out.append(row)
    out.sort(key=lambda r: r.start)
    return out
