"""Slab caches of the crashed kernel (SLUB): what each cache holds, from the dump alone.

    slab_caches(prog)          # [SlabCache]: name, object size, slabs, objects, pages, ...
    slab_totals(caches)        # (reclaimable pages, unreclaimable pages) over all caches

The caches are on the `slab_caches` list (kmem_cache.list). A kernel whose symbol table
lacks that list head (arm64 Debian kallsyms has no `slab_caches`) is walked from a cache it
does name, `kmalloc_caches[][]`: the walk then meets the head as one more node, which is no
cache (no readable name, no sane size) and is left out.

Sizes come from the per-node `kmem_cache_node` counters SLUB keeps under SLUB_DEBUG
(`nr_slabs`, `total_objects`), as /proc/slabinfo shows them; a slab's pages are
2^order of the cache's preferred `oo` (the kernel's slabinfo makes the same approximation
for the few slabs that fell back to the minimum order). A cache is reclaimable when it was
created with SLAB_RECLAIM_ACCOUNT (its pages count as SReclaimable, the rest SUnreclaim).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import (CorruptKernelDataError, MemoryReadError, TypeLookupError, VmcorekitError,
                      note, partial_result)
from ..program.objects import Object
from .lists import list_nodes

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["SlabCache", "slab_caches", "slab_totals", "MAX_CACHES", "SLAB_RECLAIM_ACCOUNT"]

# A kernel has a few hundred caches; more than this on the list is a loop or a corrupt list.
MAX_CACHES = 4096
# MAX_NUMNODES is 1 << 10 at most (NODES_SHIFT 10).
MAX_NODES = 1024
# No slab is bigger than 2^MAX_ORDER pages; no cache holds 2^40 pages.
_MAX_ORDER = 12
_MAX_SLABS = 1 << 40
# include/linux/slab.h, up to 6.9; from 6.10 the bit is enum _slab_flag_bits's value.
SLAB_RECLAIM_ACCOUNT = 0x00020000


@dataclass(frozen=True)
class SlabCache:
    """One kmem_cache. `pages` is slabs << order; `objects` the objects those slabs hold
    (allocated or not: SLUB's per-node count); `reclaimable` SLAB_RECLAIM_ACCOUNT."""

    address: int
    name: str
    object_size: int
    size: int  # with metadata and alignment: what one object costs
    order: int
    slabs: int
    objects: int
    pages: int
    reclaimable: bool

    def as_dict(self, page_size: int) -> dict[str, Any]:
        return {"name": self.name, "address": f"{self.address:#x}", "object_size_bytes": self.object_size,
                "stride_bytes": self.size, "order": self.order, "slabs": self.slabs, "objects": self.objects,
                "pages": self.pages, "bytes": self.pages * page_size, "reclaimable": self.reclaimable}


def _reclaim_flag(prog: "Program") -> int:
    try:
        return 1 << prog.types.constant("_SLAB_RECLAIM_ACCOUNT")
    except (TypeLookupError, VmcorekitError, LookupError):
        return SLAB_RECLAIM_ACCOUNT


def _nr_nodes(prog: "Program", array_len: int) -> int:
    addr = prog.try_symbol_address("nr_node_ids")
    n = None
    if addr is not None:
        try:
            n = prog.read_u32(addr)
        except MemoryReadError:
            n = None
    if n is None or not 0 < n <= array_len:
        n = array_len  # the array's NULL entries end the per-node loop anyway
    return min(n, MAX_NODES)


def _head_and_start(prog: "Program") -> tuple[int | None, int]:
    """(the list head's address when known, a list_head to start from)."""
    head = prog.try_symbol_address("slab_caches")
    if head is not None:
        return head, head
    base = prog.try_symbol_address("kmalloc_caches")
    if base is None:
        raise TypeLookupError("neither slab_caches nor kmalloc_caches is in the symbol table: "
                              "slab caches cannot be found")
    o_list = prog.offsetof("struct kmem_cache", "list")
    ps = prog.platform.pointer_size
    # kmalloc_caches[NR_KMALLOC_TYPES][KMALLOC_SHIFT_HIGH + 1]: the first non-NULL entry
    sym = prog.symbols.get("kmalloc_caches")
    n = min((sym.size if sym is not None and sym.size else 64 * ps) // ps, 1024)
    for i in range(n):
        try:
            c = prog.read_pointer(base + i * ps)
        except MemoryReadError:
            continue
        if c:
            return None, c + o_list
    raise CorruptKernelDataError("kmalloc_caches holds no cache: slab caches cannot be found")


def _read_cache(prog: "Program", addr: int, flag: int) -> SlabCache | None:
    """One cache, or None when `addr` is no kmem_cache (the list head met mid-walk)."""
    c = Object(prog, "struct kmem_cache", address=addr)
    try:
        name = prog.read_cstring(int(c.name), 64).decode("utf-8", "backslashreplace")
        object_size, size = int(c.object_size), int(c.size)
    except (MemoryReadError, VmcorekitError):
        return None
    if not name or not 0 < object_size <= size <= 1 << 30:
        return None
    oo = int(c.oo.x)
    order = oo >> 16
    if order > _MAX_ORDER:
        raise CorruptKernelDataError(f"slab cache {name} at {addr:#x}: order {order}")
    nodes = c.node
    slabs = objects = 0
    for i in range(_nr_nodes(prog, len(nodes))):
        p = int(nodes[i])
        if not p:
            continue
        n = Object(prog, "struct kmem_cache_node", address=p)
        try:
            slabs += int(n.nr_slabs.counter)
            objects += int(n.total_objects.counter)
        except MemoryReadError as e:
            note(f"slab cache {name}: node {i} unreadable: {e}")
    if not 0 <= slabs <= _MAX_SLABS or not 0 <= objects <= _MAX_SLABS << 16:
        raise CorruptKernelDataError(f"slab cache {name} at {addr:#x}: {slabs} slabs, "
                                     f"{objects} objects")
    return SlabCache(address=addr, name=name, object_size=object_size, size=size, order=order,
                     slabs=slabs, objects=objects, pages=slabs << order,
                     reclaimable=bool(int(c.flags) & flag))


def slab_caches(prog: "Program", *, limit: int = MAX_CACHES) -> list[SlabCache]:
    """Every slab cache, in list order (bounded by `limit`; a loop ends the walk). Needs BTF
    and SLUB's per-node counters (SLUB_DEBUG, on in distribution kernels)."""
    return list(prog.memo((slab_caches, limit), lambda: tuple(_walk(prog, limit))))


def _walk(prog: "Program", limit: int) -> list[SlabCache]:
    if not prog.has_btf:
        raise TypeLookupError("slab caches need the kmem_cache layout, which only BTF gives")
    T = prog.types
    if not T.has_member("struct kmem_cache_node", "nr_slabs"):
        raise TypeLookupError("kmem_cache_node has no nr_slabs (SLAB, or SLUB without "
                              "SLUB_DEBUG): cache sizes unknown")
    head, start = _head_and_start(prog)
    o_list = prog.offsetof("struct kmem_cache", "list")
    flag = _reclaim_flag(prog)
    out: list[SlabCache] = []
    seen: set[int] = set()
    nodes = list_nodes(prog, start, what="slab_caches", limit=limit)
    if head is None:
        nodes = iter([start, *nodes])  # the start is a cache; the head comes up as a node
    try:
        for node in nodes:
            if node == head or node in seen:
                continue
            seen.add(node)
            try:
                c = _read_cache(prog, node - o_list, flag)
            except CorruptKernelDataError as e:  # one cache's nonsense: the others still count
                partial_result(f"slab caches: {e}")
                continue
            if c is not None:
                out.append(c)
    except (CorruptKernelDataError, MemoryReadError) as e:
        # a loop, a wild pointer: the caches before it are still an answer, a partial one
        partial_result(f"slab caches: {e} (after {len(out)} caches)")
    return out


def slab_totals(caches: list[SlabCache]) -> tuple[int, int]:
    """(reclaimable pages, unreclaimable pages) summed over `caches`."""
    rec = sum(c.pages for c in caches if c.reclaimable)
    return rec, sum(c.pages for c in caches) - rec
