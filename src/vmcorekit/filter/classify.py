"""Page classification from the kernel's struct page array, the way makedumpfile 1.7 does it.

The kernel facts come from kernel/memmap.py, from VMCOREINFO alone: the memory model (which
mem_map chunk holds each pfn's struct page), struct page's layout, the PG_* bit numbers and the
page-type values of buddy, offline, slab and hugetlb pages. Here are makedumpfile's decisions
over them. struct page arrays are read one mem_map chunk (a SPARSEMEM section, or a slice of a
FLATMEM map) at a time and decoded with one structured numpy dtype; no Python code runs per
page.

The decision for one page follows makedumpfile's __exclude_unnecessary_pages() (1.7.2) in the
same order: compound tail pages are skipped (their head decides); then free (buddy) pages,
non-private cache, all cache, user data (anonymous or hugetlb), hwpoison and offline pages.
An excluded head page excludes its whole compound page (or buddy block), and the pages it
covers are not looked at again, as in makedumpfile's loop. Zero pages are content, not
struct page state: the writers decide those while copying.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import CorruptKernelDataError, VmcoreinfoError
from ..kernel.memmap import (MemMapChunk, PageLayout, VirtualReader, find_memory_model, online_pgdats,
                             read_pointer, read_struct_pages, flag_set)
from ..vmcoreinfo import VmcoreInfo

# Dump level bits (makedumpfile -d).
DL_EXCLUDE_ZERO = 1
DL_EXCLUDE_CACHE = 2
DL_EXCLUDE_CACHE_PRI = 4
DL_EXCLUDE_USER_DATA = 8
DL_EXCLUDE_FREE = 16
MAX_DUMP_LEVEL = 31

# Page classes (values of the per-page class arrays). KEEP must stay 0.
KEEP, CACHE, CACHE_PRIVATE, USER, FREE, HWPOISON, OFFLINE, ZERO = range(8)
CLASS_NAMES = {
    KEEP: "kept", CACHE: "Non-private cache pages", CACHE_PRIVATE: "Private cache pages",
    USER: "User process data pages", FREE: "Free pages", HWPOISON: "Hwpoison pages",
    OFFLINE: "Offline pages", ZERO: "Pages filled with zero",
}
CLASS_KEYS = {KEEP: "kept", CACHE: "cache", CACHE_PRIVATE: "cache_private", USER: "user", FREE: "free",
              HWPOISON: "hwpoison", OFFLINE: "offline", ZERO: "zero"}

# makedumpfile reads struct pages PGMM_CACHED at a time and cannot see the page after the last
# one of a block: a head page at pfn % 512 == 511 is treated as order 0.
PGMM_CACHED = 512
PAGE_MAPPING_ANON = 1
CHUNK_PAGES = 1 << 15  # struct pages decoded at once (2 MiB of 64-byte struct pages)


@dataclass
class Predicates:
    """Per-page facts of one chunk, independent of the dump level."""

    pfn_start: int
    n: int
    valid: np.ndarray  # struct page could be read
    tail: np.ndarray
    order: np.ndarray  # compound order of heads (0 otherwise), int64
    buddy: np.ndarray
    buddy_order: np.ndarray  # page.private of buddy pages, int64
    cache: np.ndarray
    private: np.ndarray
    anon: np.ndarray
    hugetlb: np.ndarray
    hwpoison: np.ndarray
    offline: np.ndarray
    wild_buddy: np.ndarray  # buddy pages whose order is beyond MAX_ORDER
    bad_buddy_order: int = 0  # how many of those (kept, counted, warned about)


def page_predicates(layout: PageLayout, raw: bytes | bytearray | memoryview, pfn_start: int, n: int,
                    valid: np.ndarray | None = None) -> Predicates:
    """Decode `n` struct pages (plus, if present in `raw`, the one after them, which holds the
    last head page's order) and compute every per-page fact the dump levels need."""
    size = layout.struct_size
    have = len(raw) // size
    if have < n:
        raise ValueError(f"{have} struct pages given, {n} needed")
    rec = np.frombuffer(raw, dtype=layout.dtype(), count=min(have, n + 1))
    page = rec[:n]
    # page[1] of each page: the next record, zero for the last one when it was not read.
    nxt = np.zeros(n, dtype=rec.dtype)
    nxt[: len(rec) - 1] = rec[1:]
    flags = page["flags"].astype(np.uint64)
    names = rec.dtype.names or ()
    mapcount = page["mapcount"].astype(np.uint32) if "mapcount" in names else np.zeros(n, np.uint32)
    private = page["private"].astype(np.uint64) if "private" in names else np.zeros(n, np.uint64)
    chead = page["chead"].astype(np.uint64) if "chead" in names else np.zeros(n, np.uint64)
    mapping = page["mapping"].astype(np.uint64)
    pfns = np.arange(pfn_start, pfn_start + n, dtype=np.int64)
    if valid is None:
        valid = np.ones(n, dtype=bool)

    head = (flags & np.uint64(layout.head_mask)) != 0 if layout.head_mask is not None else np.zeros(n, bool)
    head &= (pfns % PGMM_CACHED) != PGMM_CACHED - 1
    order = np.zeros(n, dtype=np.int64)
    if layout.order_kind == "flags1":
        order = np.where(head, (nxt["order"].astype(np.uint64) & np.uint64(0xFF)).astype(np.int64), 0)
    elif layout.order_kind != "none":
        raw_order = nxt["order"].astype(np.uint64)
        order = np.where(head, np.minimum(raw_order, np.uint64(64)).astype(np.int64), 0)
    # An order makedumpfile cannot believe (too big, or a head not aligned to it) counts as 0.
    bad = (order >= 64) | ((pfns & ((np.int64(1) << np.minimum(order, 62)) - 1)) != 0)
    order = np.where(bad, 0, order)

    slab = flag_set(flags, layout.pg_slab)
    if layout.slab_type is not None:
        slab |= layout.slab_type.bit_clear(mapcount)

    hugetlb = np.zeros(n, dtype=bool)
    if layout.hugetlb_type is not None:
        hugetlb = head & layout.hugetlb_type.bit_clear(mapcount)
    elif layout.pg_hugetlb is not None:
        hugetlb = head & flag_set(nxt["order"].astype(np.uint64), layout.pg_hugetlb)
    elif layout.dtor_kind != "none" and layout.hugetlb_dtors:
        dtor = np.where(head, nxt["dtor"].astype(np.uint64), np.uint64(0))
        for d in layout.hugetlb_dtors:
            hugetlb |= dtor == np.uint64(d & 0xFFFFFFFFFFFFFFFF)

    bad_buddy = 0
    wild = np.zeros(n, dtype=bool)
    if layout.buddy_method == "mapcount":
        assert layout.buddy_type is not None
        buddy = ~slab & layout.buddy_type.equal(mapcount)
    elif layout.buddy_method == "flag":
        buddy = flag_set(flags, layout.pg_buddy)
    else:
        buddy = np.zeros(n, dtype=bool)
    buddy_order = np.minimum(private, np.uint64(63)).astype(np.int64)
    if layout.max_order is not None:
        # Newer makedumpfile keeps (and warns about) a buddy page whose order is impossible, and
        # looks no further at it; excluding 2**order pages from a corrupt value could drop most
        # of memory.
        wild = buddy & (private >= np.uint64(layout.max_order))
        bad_buddy = int(np.count_nonzero(wild & valid))
        buddy &= ~wild

    lru = flag_set(flags, layout.pg_lru)
    swapcache = flag_set(flags, layout.pg_swapcache)
    swapbacked = flag_set(flags, layout.pg_swapbacked) if layout.pg_swapbacked is not None else np.ones(n, bool)
    cache = lru | (swapbacked & swapcache)
    offline = np.zeros(n, dtype=bool)
    if layout.offline_type is not None:
        offline = ~slab & layout.offline_type.equal(mapcount)
    return Predicates(
        pfn_start=pfn_start, n=n, valid=valid,
        tail=(chead & np.uint64(1)) == 1,
        order=order, buddy=buddy, buddy_order=buddy_order, cache=cache,
        private=flag_set(flags, layout.pg_private),
        anon=((mapping & np.uint64(PAGE_MAPPING_ANON)) != 0) & ~slab,
        hugetlb=hugetlb, hwpoison=flag_set(flags, layout.pg_hwpoison), offline=offline,
        wild_buddy=wild, bad_buddy_order=bad_buddy,
    )


def decide(p: Predicates, level: int, evaluate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class, span) per page for pages makedumpfile would look at (`evaluate`): the first
    matching rule of __exclude_unnecessary_pages wins; span is the number of pages an
    exclusion covers (2**order of a compound head, 2**private of a buddy block)."""
    cls = np.zeros(p.n, dtype=np.int8)
    rem = evaluate & p.valid & ~p.tail
    span = np.ones(p.n, dtype=np.int64)
    if level & DL_EXCLUDE_FREE:
        rem &= ~p.wild_buddy
        m = rem & p.buddy
        cls[m] = FREE
        span[m] = np.int64(1) << p.buddy_order[m]
        rem &= ~m
    if level & DL_EXCLUDE_CACHE:
        m = rem & p.cache & ~p.private & ~p.anon
        cls[m] = CACHE
        rem &= ~m
    if level & DL_EXCLUDE_CACHE_PRI:
        m = rem & p.cache & ~p.anon
        cls[m] = np.where(p.private[m], CACHE_PRIVATE, CACHE)
        rem &= ~m
    if level & DL_EXCLUDE_USER_DATA:
        m = rem & (p.anon | p.hugetlb)
        cls[m] = USER
        rem &= ~m
    m = rem & p.hwpoison
    cls[m] = HWPOISON
    rem &= ~m
    m = rem & p.offline
    cls[m] = OFFLINE
    rest = (cls != KEEP) & (cls != FREE)
    span[rest] = np.int64(1) << p.order[rest]
    return cls, span


def struct_pages_looked_at(layout: PageLayout, level: int) -> bool:
    """Whether makedumpfile's create_2nd_bitmap() walks the struct pages at all for this level:
    for cache or user pages, when the kernel exports PG_hwpoison (hwpoison and offline pages go
    whatever the level), or for free pages found by page type."""
    return bool(level & (DL_EXCLUDE_CACHE | DL_EXCLUDE_CACHE_PRI | DL_EXCLUDE_USER_DATA)) \
        or layout.pg_hwpoison is not None \
        or bool(level & DL_EXCLUDE_FREE and layout.buddy_method != "freelist")


@dataclass
class Carry:
    """An exclusion that runs past the end of the chunk that started it."""

    end: int = 0
    cls: int = KEEP
    same_map: bool = True  # next chunk continues the same mem_map: covered pages are skipped


def resolve(p: Predicates, level: int, evaluate: np.ndarray, carry: Carry) -> tuple[np.ndarray, Carry]:
    """Final class per page of the chunk, applying multi-page exclusions in pfn order the way
    makedumpfile's loop does (pages inside an excluded block are not looked at themselves).
    Returns the classes and the exclusion carried into the next chunk."""
    n, base = p.n, p.pfn_start
    ev = evaluate.copy()
    carried = min(max(carry.end - base, 0), n) if carry.cls != KEEP else 0
    if carried and carry.same_map:
        ev[:carried] = False
    cls, span = decide(p, level, ev)
    idx = np.flatnonzero((cls != KEEP) & (span > 1))
    final = cls
    new_carry = Carry()
    if len(idx):
        starts = idx.astype(np.int64)
        ends = starts + span[idx]
        prior = carried if carry.same_map else 0
        aligned = bool(np.all((base + starts) % span[idx] == 0))
        if aligned:
            # Aligned power-of-two blocks nest or are disjoint: a block is looked at only if it
            # starts after every earlier one ends.
            reach = np.maximum.accumulate(np.concatenate(([prior], ends[:-1])))
            accepted = starts >= reach
        else:
            accepted = np.zeros(len(starts), dtype=bool)
            reach_end = prior
            for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):  # rare: corrupt orders
                if s >= reach_end:
                    accepted[i] = True
                    reach_end = e
        s_acc, e_acc = starts[accepted], ends[accepted]
        c_acc = cls[idx[accepted]]
        if len(s_acc):
            mark = np.zeros(n + 1, dtype=np.int64)
            ids = np.arange(1, len(s_acc) + 1, dtype=np.int64)
            np.add.at(mark, s_acc, ids)
            np.add.at(mark, np.minimum(e_acc, n), -ids)
            owner = np.cumsum(mark[:n])
            final = np.where(owner > 0, c_acc[np.maximum(owner - 1, 0)], cls).astype(np.int8)
            if e_acc[-1] > n:
                new_carry = Carry(base + int(e_acc[-1]), int(c_acc[-1]))
    if carried:
        # Pages the previous chunk's block covers were cleared already, whatever this chunk says.
        final = final.copy() if final is cls else final
        final[:carried] = carry.cls
        if carry.end > base + n and new_carry.cls == KEEP:
            new_carry = Carry(carry.end, carry.cls)
    return final, new_carry


@dataclass
class ChunkResult:
    pfn_start: int
    classes: np.ndarray  # int8 per pfn (KEEP where not excluded)


class PageClassifier:
    """Streams class arrays for the pfns every mem_map chunk covers, for one dump level (or
    several at once, sharing the struct page reads)."""

    def __init__(self, space: VirtualReader, vi: VmcoreInfo, max_mapnr: int,
                 layout: PageLayout | None = None, *, chunk_pages: int = CHUNK_PAGES) -> None:
        self.space = space
        self.vi = vi
        self.layout = layout or PageLayout.from_vmcoreinfo(vi, pointer_size=space.pointer_size,
                                                           byteorder=space.byteorder)
        self.model = find_memory_model(space, vi, max_mapnr)
        self.max_mapnr = self.model.max_mapnr
        self.chunk_pages = max(PGMM_CACHED, chunk_pages - chunk_pages % PGMM_CACHED)
        self.warnings: list[str] = list(self.model.warnings)
        self.unreadable_pages = 0
        self.bad_buddy_orders = 0

    def _pieces(self) -> Iterator[tuple[MemMapChunk, int, int]]:
        for c in self.model.chunks:
            start = c.pfn_start
            while start < min(c.pfn_end, self.max_mapnr):
                stop = min(c.pfn_end, self.max_mapnr, (start // self.chunk_pages + 1) * self.chunk_pages)
                yield c, start, stop
                start = stop

    def run(self, levels: list[int], in_dump: Callable[[int, int], np.ndarray]
            ) -> Iterator[tuple[int, list[np.ndarray]]]:
        """For each slice of pfns, (pfn_start, [classes for each level]). `in_dump(a, b)` says
        which pfns of [a, b) the dump has at all (makedumpfile skips the others)."""
        carries = [Carry() for _ in levels]
        looked_at = [struct_pages_looked_at(self.layout, level) for level in levels]
        prev: MemMapChunk | None = None
        prev_end = 0
        psize = self.layout.struct_size
        for chunk, a, b in self._pieces():
            n = b - a
            same = prev is not None and prev.map_id == chunk.map_id and prev_end == a
            for c in carries:
                c.same_map = same
            raw, valid = read_struct_pages(self.space, chunk.vaddr + (a - chunk.pfn_start) * psize, n, psize,
                                           self.layout.page_size)
            if not valid.all():
                bad = int(np.count_nonzero(~valid))
                self.unreadable_pages += bad
                if bad == n:
                    self.warnings.append(f"struct pages of pfns [{a:#x}, {b:#x}) are not in the dump: kept")
            p = page_predicates(self.layout, raw, a, n, valid)
            self.bad_buddy_orders += p.bad_buddy_order
            ev = in_dump(a, b)
            out = []
            for i, level in enumerate(levels):
                if looked_at[i]:
                    cls, carries[i] = resolve(p, level, ev, carries[i])
                else:
                    cls = np.zeros(n, dtype=np.int8)
                out.append(cls)
            yield a, out
            prev, prev_end = chunk, b
        if self.bad_buddy_orders:
            self.warnings.append(f"{self.bad_buddy_orders} free pages carry an order beyond MAX_ORDER "
                                 f"({self.layout.max_order}): kept")

    # -- free pages from the free lists (kernels without a buddy page type) ------------------
    def free_list_pfns(self) -> np.ndarray:
        """Pfns on the zones' free_area lists, for kernels whose struct page does not say
        "buddy" (makedumpfile's exclude_free_page()). Lists are checked for broken links and
        bounded by the number of pages, so a corrupt list cannot loop."""
        vi, space = self.vi, self.space
        for key in ("zone", "free_area", "list_head"):
            if key not in vi.sizes:
                raise VmcoreinfoError(f"VMCOREINFO has no SIZE({key}): cannot walk the free lists")
        need = ("pglist_data.node_zones", "pglist_data.nr_zones", "zone.free_area", "zone.spanned_pages",
                "free_area.free_list", "list_head.next", "list_head.prev", "page.lru")
        for key in need:
            vi.offset(key)
        nr_orders = vi.length("zone.free_area")
        migrate_types = vi.lengths.get("free_area.free_list", 1)
        out: list[np.ndarray] = []
        budget = self.max_mapnr + 1
        for pgdat in online_pgdats(space, vi):
            zones = pgdat + vi.offset("pglist_data.node_zones")
            nr_zones = int.from_bytes(space.read(pgdat + vi.offset("pglist_data.nr_zones"), 4), space.byteorder)
            if not 0 <= nr_zones <= 16:
                raise CorruptKernelDataError(f"pglist_data at {pgdat:#x} claims {nr_zones} zones")
            for z in range(nr_zones):
                zone = zones + z * vi.size("zone")
                if not read_pointer(space, zone + vi.offset("zone.spanned_pages")):
                    continue
                for order in range(nr_orders - 1, -1, -1):
                    for mt in range(migrate_types):
                        head = (zone + vi.offset("zone.free_area") + vi.size("free_area") * order
                                + vi.offset("free_area.free_list") + vi.size("list_head") * mt)
                        prev, cur = head, read_pointer(space, head + vi.offset("list_head.next"))
                        while cur != head:
                            budget -= 1
                            if budget < 0:
                                raise CorruptKernelDataError(f"free list at {head:#x} does not end (a cycle?)")
                            back = read_pointer(space, cur + vi.offset("list_head.prev"))
                            if back != prev:
                                raise CorruptKernelDataError(f"free list at {head:#x} is broken at {cur:#x}")
                            pfn = self.page_to_pfn(cur - vi.offset("page.lru"))
                            if pfn is None:
                                raise CorruptKernelDataError(f"free list entry {cur:#x} is not a struct page")
                            out.append(np.arange(pfn, pfn + (1 << order), dtype=np.int64))
                            prev, cur = cur, read_pointer(space, cur + vi.offset("list_head.next"))
        return np.unique(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)

    def page_to_pfn(self, page: int) -> int | None:
        size = self.layout.struct_size
        for c in self.model.chunks:
            if page >= c.vaddr:
                idx, rem = divmod(page - c.vaddr, size)
                if rem == 0 and idx < c.pfn_end - c.pfn_start:
                    return c.pfn_start + idx
        return None

