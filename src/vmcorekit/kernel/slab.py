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

__all__ = ["SlabCache", "slab_caches", "slab_totals", "MAX_CACHES", "SLAB_RECLAIM_ACCOUNT",
           "SlabUsage", "cache_usage", "find_cache", "SlabInfo", "slab_of_page", "cache_slabs"]

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



# -- allocated objects: the freelists of the per-cpu and partial slabs -----------------------------
# SLUB keeps no count of free objects; they are read off the slabs that can hold any: each CPU's
# active slab (its lockless c->freelist plus the objects freed remotely onto slab->freelist, which
# `objects - inuse` counts), each CPU's partial slabs and each node's partial list. Full slabs
# are on no list (without SLAB_STORE_USER debugging) and hold no free object.
MAX_PARTIAL = 1 << 20


@dataclass(frozen=True)
class SlabUsage:
    """A cache with its free objects counted; `allocated` is objects - free."""

    cache: SlabCache
    free: int
    allocated: int


@dataclass(frozen=True)
class SlabInfo:
    """One slab: its struct slab (struct page before 5.17), the first object's address, the
    object count, those in use, where it sits (cpu N, cpu N partial, node N partial, full)."""

    page: int
    base: int
    objects: int
    inuse: int
    where: str


def _slab_type(prog: "Program") -> str:
    return "struct slab" if prog.types.has_member("struct slab", "slab_cache") else "struct page"


def _slab_fields(prog: "Program", page: int) -> tuple[int, int, int]:
    """(objects, inuse, freelist) of a slab; CorruptKernelDataError when they make no sense."""
    s = Object(prog, _slab_type(prog), address=page)
    objects, inuse = int(s.objects), int(s.inuse)
    if not 0 < objects <= 1 << 15 or not 0 <= inuse <= objects:
        raise CorruptKernelDataError(f"slab {page:#x}: {inuse} of {objects} objects in use")
    return objects, inuse, int(s.freelist)


def _swab64(v: int) -> int:
    return int.from_bytes(v.to_bytes(8, "little"), "big")


def freelist_objects(prog: "Program", cache: Object, head: int, lo: int, hi: int,
                     limit: int) -> list[int]:
    """The objects on a freelist starting at `head`, each inside [lo, hi). Pointers are
    obfuscated under SLAB_FREELIST_HARDENED (cache->random): ptr ^ random ^ swab(where) since
    5.7, ptr ^ random ^ where before; the variant whose next hop lands in the slab is taken.
    A pointer leaving the slab or a repeat ends the walk with CorruptKernelDataError."""
    off = int(cache.offset)
    rnd = int(cache.random) if prog.types.has_member("struct kmem_cache", "random") else None
    decoders = [lambda v, a: v] if rnd is None else [lambda v, a: v ^ rnd ^ _swab64(a),
                                                      lambda v, a: v ^ rnd ^ a]
    out: list[int] = []
    seen: set[int] = set()
    obj = head
    dec = None
    while obj:
        if not lo <= obj < hi or obj in seen or len(out) >= limit:
            raise CorruptKernelDataError(f"freelist of cache at {cache.address_:#x}: object "
                                         f"{obj:#x} outside its slab or met twice")
        seen.add(obj)
        out.append(obj)
        where = obj + off
        raw = prog.read_pointer(where)
        if dec is None:
            for d in decoders:
                nxt = d(raw, where)
                if nxt == 0 or lo <= nxt < hi:
                    dec = d
                    break
            else:
                raise CorruptKernelDataError(f"freelist of cache at {cache.address_:#x}: "
                                             f"{obj:#x} points outside its slab")
        obj = dec(raw, where)
    return out


def _slab_range(prog: "Program", cache: Object, page: int, objects: int) -> tuple[int, int]:
    from .memmap import page_to_virt
    base = page_to_virt(prog, page)
    return base, base + objects * int(cache.size)


def cache_slabs(prog: "Program", cache_addr: int, *, full: bool = False) -> list[SlabInfo]:
    """The slabs of a cache that can hold free objects (each CPU's active and partial slabs,
    each node's partial list); with `full`, also the full ones, found by one pass over the
    struct pages (PG_slab with this cache). Bounded; a broken list is reported and ends."""
    from .memmap import page_to_virt
    from .percpu import per_cpu_ptr
    from .cpus import possible_cpus
    st = _slab_type(prog)
    c = Object(prog, "struct kmem_cache", address=cache_addr)
    out: list[SlabInfo] = []
    seen: set[int] = set()

    def add(page: int, where: str) -> None:
        if not page or page in seen:
            return
        seen.add(page)
        objects, inuse, _ = _slab_fields(prog, page)
        out.append(SlabInfo(page, page_to_virt(prog, page) + _red_left(c), objects, inuse, where))

    slab_member = "slab" if prog.types.has_member("struct kmem_cache_cpu", "slab") else "page"
    for cpu in possible_cpus(prog):
        try:
            cc = per_cpu_ptr(c.cpu_slab, cpu)
            add(int(getattr(cc, slab_member)), f"cpu {cpu}")
            p = int(cc.partial) if prog.types.has_member("struct kmem_cache_cpu", "partial") else 0
            n = 0
            while p and n < MAX_PARTIAL:
                add(p, f"cpu {cpu} partial")
                p = int(Object(prog, st, address=p).next)
                n += 1
        except (MemoryReadError, CorruptKernelDataError) as e:
            partial_result(f"slab cache at {cache_addr:#x}: cpu {cpu}: {e}")
    link = "slab_list" if prog.types.has_member(st, "slab_list") else "lru"
    nodes = c.node
    for i in range(_nr_nodes(prog, len(nodes))):
        nptr = int(nodes[i])
        if not nptr:
            continue
        n = Object(prog, "struct kmem_cache_node", address=nptr)
        try:
            for node in list_nodes(prog, n.partial.address_, what=f"node {i} partial slabs",
                                   limit=MAX_PARTIAL):
                add(node - prog.offsetof(st, link), f"node {i} partial")
        except (MemoryReadError, CorruptKernelDataError) as e:
            partial_result(f"slab cache at {cache_addr:#x}: node {i}: {e}")
    if full:
        for page in _pages_of_cache(prog, cache_addr):
            if page not in seen:
                try:
                    add(page, "full")
                except (MemoryReadError, CorruptKernelDataError) as e:
                    partial_result(f"slab cache at {cache_addr:#x}: {e}")
    return out


def _red_left(c: Object) -> int:
    try:
        return int(c.red_left_pad)
    except (VmcorekitError, LookupError, AttributeError):
        return 0


def _pages_of_cache(prog: "Program", cache_addr: int) -> list[int]:
    """Every head struct page with PG_slab whose slab_cache is `cache_addr` (one numpy pass)."""
    import numpy as np
    from .memmap import find_memory_model, page_flag_bit, read_struct_pages
    vi = prog.vmcoreinfo
    size = vi.size("page")
    bit = page_flag_bit(prog, "PG_slab")
    if bit is None:
        raise TypeLookupError("the kernel has no PG_slab flag: full slabs cannot be found")
    st = _slab_type(prog)
    dt = np.dtype({"names": ["flags", "cache"], "formats": ["<u8", "<u8"],
                   "offsets": [vi.offset("page.flags"), prog.offsetof(st, "slab_cache")],
                   "itemsize": size})
    end = max((r.end for r in prog.phys.ranges()), default=0)
    model = find_memory_model(prog.space, vi, end // prog.page_size)
    out: list[int] = []
    step = 1 << 15
    want, flag = np.uint64(cache_addr), np.uint64(1 << bit)
    for ch in model.chunks:
        for start in range(ch.pfn_start, ch.pfn_end, step):
            n = min(step, ch.pfn_end - start)
            va = ch.vaddr + (start - ch.pfn_start) * size
            raw, valid = read_struct_pages(prog.space, va, n, size, prog.page_size)
            pages = np.frombuffer(raw, dtype=dt, count=n)
            hit = np.nonzero(valid & ((pages["flags"] & flag) != 0) & (pages["cache"] == want))[0]
            out += [va + int(k) * size for k in hit]
    return out


def cache_usage(prog: "Program", cache: SlabCache) -> SlabUsage:
    """Free objects of `cache` counted off its freelists (see above); allocated = objects - free."""
    c = Object(prog, "struct kmem_cache", address=cache.address)
    free = 0
    for s in cache_slabs(prog, cache.address):
        free += s.objects - s.inuse
        if s.where.startswith("cpu ") and not s.where.endswith("partial"):
            cpu = int(s.where.split()[1])
            from .percpu import per_cpu_ptr
            head = int(per_cpu_ptr(c.cpu_slab, cpu).freelist)
            lo, hi = _slab_range(prog, c, s.page, s.objects)
            try:
                free += len(freelist_objects(prog, c, head, lo, hi, s.objects))
            except (MemoryReadError, CorruptKernelDataError) as e:
                partial_result(f"slab cache {cache.name}: cpu {cpu} freelist: {e}")
    free = min(free, cache.objects)
    return SlabUsage(cache, free, cache.objects - free)


def find_cache(prog: "Program", name_or_address: str) -> SlabCache:
    """A cache by name, or by its kmem_cache address in hex."""
    caches = slab_caches(prog)
    for c in caches:
        if c.name == name_or_address:
            return c
    try:
        a = int(name_or_address, 16)
    except ValueError:
        a = None
    for c in caches:
        if c.address == a:
            return c
    raise LookupError(f"no slab cache {name_or_address!r}")


def slab_of_page(prog: "Program", page: int) -> int | None:
    """The kmem_cache of a PG_slab page (its compound head's slab_cache), None when not slab."""
    from .memmap import page_flag_bit
    bit = page_flag_bit(prog, "PG_slab")
    if bit is None:
        return None
    head = _compound_head(prog, page)
    flags = prog.read_u64(head + prog.vmcoreinfo.offset("page.flags"))
    if not flags >> bit & 1:
        return None
    return prog.read_pointer(head + prog.offsetof(_slab_type(prog), "slab_cache"))


def _compound_head(prog: "Program", page: int) -> int:
    """page->compound_head with bit 0 set names the head of a compound page."""
    off = prog.try_offsetof("struct page", "compound_head")
    if off is None:
        return page
    v = prog.read_pointer(page + off)
    return v - 1 if v & 1 else page


def slab_objects(prog: "Program", cache_addr: int, slabs: list[SlabInfo],
                 limit: int) -> list[tuple[SlabInfo, int, list[tuple[int, bool]]]]:
    """Each slab with its free-object count and its objects as (address, allocated), at
    most `limit` objects in all; an
    object is free when a freelist of its slab (and, for a CPU's active slab, the CPU's
    lockless freelist) holds it."""
    from .percpu import per_cpu_ptr
    c = Object(prog, "struct kmem_cache", address=cache_addr)
    stride = int(c.size)
    out: list[tuple[SlabInfo, int, list[tuple[int, bool]]]] = []
    left = limit
    for s in slabs:
        if left <= 0:
            break
        lo, hi = s.base, s.base + s.objects * stride
        free: set[int] = set()
        heads = [_slab_fields(prog, s.page)[2]]
        if s.where.startswith("cpu ") and not s.where.endswith("partial"):
            heads.append(int(per_cpu_ptr(c.cpu_slab, int(s.where.split()[1])).freelist))
        for h in heads:
            try:
                free.update(freelist_objects(prog, c, h, lo, hi, s.objects))
            except (MemoryReadError, CorruptKernelDataError) as e:
                partial_result(f"slab {s.page:#x}: {e}")
        n = max(min(s.objects, left), 0)
        out.append((s, len(free), [(lo + i * stride, lo + i * stride not in free) for i in range(n)]))
        left -= n
    return out
