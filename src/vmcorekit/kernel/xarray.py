"""Index -> pointer trees of the kernel: the XArray (radix tree) and the maple tree, walked
read-only and bounded (depth, entries), for tables kept in them (irq descriptors, ...).

    xa_entries(prog, xa_address)        # [(index, entry)] of a struct xarray / radix_tree_root
    mt_entries(prog, mt_address)        # [(first index, entry)] of a struct maple_tree

Internal entries are tagged pointers: an XArray node is `node | 2`; a maple node pointer
carries its type in bits 3-6 and its flags below (the node is 256-byte aligned).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import CorruptKernelDataError, TypeLookupError, VmcorekitError

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["xa_entries", "mt_entries", "MAX_ENTRIES"]

MAX_ENTRIES = 1 << 20
_MAX_DEPTH = 16
_XA_CHUNK = 64  # XA_CHUNK_SIZE with XA_CHUNK_SHIFT 6 (BASE_SMALL 0)


def _xa_is_node(v: int) -> bool:
    return v & 3 == 2 and v > 4096


def xa_entries(prog: "Program", xa: int, *, limit: int = MAX_ENTRIES) -> list[tuple[int, int]]:
    """Every present entry of the XArray at `xa` (xa_head after the lock), by index."""
    o_head = prog.offsetof("struct xarray", "xa_head") if prog.types.has_member("struct xarray", "xa_head") \
        else prog.offsetof("struct radix_tree_root", "xa_head")
    o_shift = prog.offsetof("struct xa_node", "shift")
    o_slots = prog.offsetof("struct xa_node", "slots")
    ps = prog.space.pointer_size
    out: list[tuple[int, int]] = []

    def walk(entry: int, base: int, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise CorruptKernelDataError(f"xarray at {xa:#x}: deeper than {_MAX_DEPTH} levels")
        node = entry - 2
        shift = prog.read_u8(node + o_shift)
        if shift % 6 or shift > 60:
            raise CorruptKernelDataError(f"xarray node {node:#x}: shift {shift}")
        raw = prog.read(node + o_slots, _XA_CHUNK * ps)
        for i in range(_XA_CHUNK):
            v = int.from_bytes(raw[i * ps:(i + 1) * ps], "little")
            if not v:
                continue
            if _xa_is_node(v) and shift:
                walk(v, base + (i << shift), depth + 1)
            elif v & 3 == 2:
                continue  # sibling, retry or zero entry: no value of its own
            else:
                if len(out) >= limit:
                    raise CorruptKernelDataError(f"xarray at {xa:#x}: more than {limit} entries")
                out.append((base + (i << shift), v))

    head = prog.read_pointer(xa + o_head)
    if _xa_is_node(head):
        walk(head, 0, 0)
    elif head and head & 3 != 2:
        out.append((0, head))
    return out


def _maple_types(prog: "Program") -> dict[str, int]:
    try:
        return dict(prog.types.lookup("enum maple_type").strip_typedefs().enumerators or [])
    except (TypeLookupError, VmcorekitError):
        return {"maple_dense": 0, "maple_leaf_64": 1, "maple_range_64": 2, "maple_arange_64": 3}


def mt_entries(prog: "Program", mt: int, *, limit: int = MAX_ENTRIES) -> list[tuple[int, int]]:
    """Every present entry of the maple tree at `mt`, as (first index of its range, entry)."""
    types = _maple_types(prog)
    leaf, rng, arng, dense = (types.get("maple_leaf_64", 1), types.get("maple_range_64", 2),
                              types.get("maple_arange_64", 3), types.get("maple_dense", 0))
    o_piv_r = prog.offsetof("struct maple_range_64", "pivot")
    o_slot_r = o_piv_r + 15 * 8
    o_piv_a = prog.offsetof("struct maple_arange_64", "pivot")
    o_slot_a = prog.offsetof("struct maple_arange_64", "slot")
    out: list[tuple[int, int]] = []
    top = (1 << 64) - 1

    def walk(entry: int, lo: int, hi: int, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise CorruptKernelDataError(f"maple tree at {mt:#x}: deeper than {_MAX_DEPTH} levels")
        node = entry & ~0xFF
        typ = (entry >> 3) & 0xF
        if typ in (leaf, rng):
            n, o_piv, o_slot = 16, o_piv_r, o_slot_r
        elif typ == arng:
            n, o_piv, o_slot = 10, o_piv_a, o_slot_a
        elif typ == dense:
            raw = prog.read(node + 8, 31 * 8)
            for i in range(31):
                v = int.from_bytes(raw[i * 8:(i + 1) * 8], "little")
                if v:
                    out.append((lo + i, v))
            return
        else:
            raise CorruptKernelDataError(f"maple node {node:#x}: type {typ}")
        raw_p = prog.read(node + o_piv, (n - 1) * 8)
        raw_s = prog.read(node + o_slot, n * 8)
        prev = lo
        for i in range(n):
            piv = int.from_bytes(raw_p[i * 8:(i + 1) * 8], "little") if i < n - 1 else hi
            if i and piv == 0:
                break  # unused slots: pivots left at 0
            if piv < prev or piv > hi:
                raise CorruptKernelDataError(f"maple node {node:#x}: pivot {piv:#x} outside "
                                             f"{prev:#x}-{hi:#x}")
            v = int.from_bytes(raw_s[i * 8:(i + 1) * 8], "little")
            if v:
                if typ == leaf:
                    if len(out) >= limit:
                        raise CorruptKernelDataError(f"maple tree at {mt:#x}: more than {limit} entries")
                    out.append((prev, v))
                else:
                    walk(v, prev, piv, depth + 1)
            if piv >= hi:
                break
            prev = piv + 1

    root = prog.read_pointer(mt + prog.offsetof("struct maple_tree", "ma_root"))
    if _xa_is_node(root):
        walk(root, 0, top, 0)
    elif root:
        out.append((0, root))
    return out
