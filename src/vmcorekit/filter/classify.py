"""Page classification from the kernel's struct page array, the way makedumpfile 1.7 does it.

Everything comes from VMCOREINFO: the memory model (SYMBOL(mem_section) for SPARSEMEM[_EXTREME|
_VMEMMAP], SYMBOL(mem_map)/contig_page_data or node_data for FLATMEM), SIZE(page) and the
OFFSET(page.*) of the fields read, the PG_* bit numbers and the page-type values of buddy,
offline, slab and hugetlb pages. struct page arrays are read one mem_map chunk (a SPARSEMEM
section, or a slice of a FLATMEM map) at a time and decoded with one structured numpy dtype;
no Python code runs per page.

The decision for one page follows makedumpfile's __exclude_unnecessary_pages() (1.7.2) in the
same order: compound tail pages are skipped (their head decides); then free (buddy) pages,
non-private cache, all cache, user data (anonymous or hugetlb), hwpoison and offline pages.
An excluded head page excludes its whole compound page (or buddy block), and the pages it
covers are not looked at again, as in makedumpfile's loop. Zero pages are content, not
struct page state: the writers decide those while copying.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..errors import CorruptKernelDataError, MemoryReadError, VmcoreinfoError
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
DEFAULT_PAGE_TYPE_BASE = 0xF0000000
CHUNK_PAGES = 1 << 15  # struct pages decoded at once (2 MiB of 64-byte struct pages)


class TypeMatch:
    """How a page-type value (PAGE_BUDDY_MAPCOUNT_VALUE & co.) is recognised in _mapcount /
    page_type. Before 6.12 a type is a cleared bit in a word that is otherwise all ones
    (0xffffff7f for buddy): makedumpfile compares buddy and offline pages for equality and
    slab / hugetlb pages with (word & (BASE | bit)) == BASE. From 6.12 the type is the top
    byte (PGTY_buddy << 24) and the low 24 bits may carry data: only the top byte counts."""

    def __init__(self, value: int, base: int = DEFAULT_PAGE_TYPE_BASE) -> None:
        self.value = value & 0xFFFFFFFF
        self.top_byte = self.value & 0xFFFFFF == 0
        self.bit = ~self.value & 0xFFFFFFFF
        self.base = base & 0xFFFFFFFF

    def equal(self, word: np.ndarray) -> np.ndarray:
        if self.top_byte:
            return (word >> 24) == (self.value >> 24)
        return word == self.value

    def bit_clear(self, word: np.ndarray) -> np.ndarray:
        if self.top_byte:
            return (word >> 24) == (self.value >> 24)
        return (word & (self.base | self.bit)) == self.base


@dataclass(frozen=True)
class PageLayout:
    """Where the fields makedumpfile reads sit in struct page, and what the flag bits mean."""

    page_size: int
    struct_size: int
    byteorder: str  # "<" or ">"
    ulong: str  # numpy code of unsigned long: "u8" or "u4"
    off_flags: int
    off_mapping: int
    off_mapcount: int | None
    off_private: int | None
    off_compound_head: int | None
    # compound order / destructor of a head page live in the next struct page (page[1])
    order_kind: str  # "none", "u8", "u16", "ulong", "flags1"
    order_off: int
    dtor_kind: str  # "none", "u8", "u16", "ulong"
    dtor_off: int
    hugetlb_dtors: tuple[int, ...]  # HUGETLB_PAGE_DTOR and/or the address of free_huge_page
    pg_hugetlb: int | None  # 6.6-6.8: flag bit in page[1].flags
    hugetlb_type: TypeMatch | None  # 6.9+: page type of the head
    pg_lru: int | None
    pg_private: int | None
    pg_swapcache: int | None
    pg_swapbacked: int | None
    pg_slab: int | None
    pg_hwpoison: int | None
    pg_buddy: int | None
    head_mask: int | None
    buddy_type: TypeMatch | None
    offline_type: TypeMatch | None
    slab_type: TypeMatch | None
    max_order: int | None  # LENGTH(zone.free_area)

    @property
    def page_shift(self) -> int:
        return self.page_size.bit_length() - 1

    @property
    def buddy_method(self) -> str:
        """How free pages are found: "mapcount" (page type), "flag" (PG_buddy, 2.6.17-2.6.37)
        or "freelist" (walking the zones' free_area lists)."""
        if self.off_private is None:
            return "freelist"
        if self.buddy_type is not None and self.off_mapcount is not None:
            return "mapcount"
        if self.pg_buddy is not None:
            return "flag"
        return "freelist"

    @classmethod
    def from_vmcoreinfo(cls, vi: VmcoreInfo, *, pointer_size: int = 8, byteorder: str = "little") -> "PageLayout":
        sizes, offs, nums, syms = vi.sizes, vi.offsets, vi.numbers, vi.symbols
        missing = ([] if "page" in sizes else ["SIZE(page)"]) + \
            [f"OFFSET({k})" for k in ("page.flags", "page.mapping") if k not in offs]
        if missing:
            raise VmcoreinfoError(f"VMCOREINFO lacks {', '.join(missing)}: cannot classify pages")
        page_size = vi.page_size or 4096
        psize = sizes["page"]
        if not 16 <= psize <= 1024:
            raise VmcoreinfoError(f"VMCOREINFO SIZE(page)={psize} is not a plausible struct page size")
        version = vi.kernel_version()
        ulong = "u8" if pointer_size == 8 else "u4"
        old = bool(version) and version < (4, 16)
        # Compound order/destructor: where makedumpfile's init_compound_offset() looks.
        order_kind, order_off, dtor_kind, dtor_off = "none", 0, "none", 0
        if "PAGE_HUGETLB_MAPCOUNT_VALUE" in nums or "PG_hugetlb" in nums:
            order_kind, order_off = "flags1", offs["page.flags"]  # folio._flags_1 & 0xff (6.6+)
        elif "folio._folio_order" in offs:
            order_kind, order_off = "u8", offs["folio._folio_order"] - psize
        elif "page.compound_order" in offs:
            order_kind, order_off = ("u16" if old else "u8"), offs["page.compound_order"]
        elif version and version < (4, 4) and "page.lru" in offs:
            order_kind, order_off = "ulong", offs["page.lru"] + offs.get("list_head.prev", pointer_size)
        if "PAGE_HUGETLB_MAPCOUNT_VALUE" in nums or "PG_hugetlb" in nums:
            pass  # hugetlb is a page type or a page[1] flag, not a destructor id
        elif "folio._folio_dtor" in offs:
            dtor_kind, dtor_off = "u8", offs["folio._folio_dtor"] - psize
        elif "page.compound_dtor" in offs:
            if not version or version >= (4, 16):
                dtor_kind = "u8"
            elif version >= (4, 4):
                dtor_kind = "u16"
            else:
                dtor_kind = "ulong"
            dtor_off = offs["page.compound_dtor"]
        elif version and version < (4, 4) and "page.lru" in offs:
            dtor_kind, dtor_off = "ulong", offs["page.lru"] + offs.get("list_head.next", 0)
        dtors = tuple(v for v in (nums.get("HUGETLB_PAGE_DTOR"), syms.get("free_huge_page")) if v is not None)
        base = nums.get("PAGE_TYPE_BASE", DEFAULT_PAGE_TYPE_BASE)

        def tmatch(key: str) -> TypeMatch | None:
            v = nums.get(key)
            return TypeMatch(v, base) if v is not None else None

        return cls(
            page_size=page_size, struct_size=psize, byteorder="<" if byteorder == "little" else ">", ulong=ulong,
            off_flags=offs["page.flags"], off_mapping=offs["page.mapping"],
            off_mapcount=offs.get("page._mapcount"), off_private=offs.get("page.private"),
            off_compound_head=offs.get("page.compound_head"),
            order_kind=order_kind, order_off=order_off, dtor_kind=dtor_kind, dtor_off=dtor_off,
            hugetlb_dtors=dtors, pg_hugetlb=nums.get("PG_hugetlb") if "PAGE_HUGETLB_MAPCOUNT_VALUE" not in nums else None,
            hugetlb_type=tmatch("PAGE_HUGETLB_MAPCOUNT_VALUE"),
            pg_lru=nums.get("PG_lru"), pg_private=nums.get("PG_private"), pg_swapcache=nums.get("PG_swapcache"),
            pg_swapbacked=nums.get("PG_swapbacked"), pg_slab=nums.get("PG_slab"), pg_hwpoison=nums.get("PG_hwpoison"),
            pg_buddy=nums.get("PG_buddy"), head_mask=nums.get("PG_head_mask"),
            buddy_type=tmatch("PAGE_BUDDY_MAPCOUNT_VALUE"), offline_type=tmatch("PAGE_OFFLINE_MAPCOUNT_VALUE"),
            slab_type=tmatch("PAGE_SLAB_MAPCOUNT_VALUE"), max_order=vi.lengths.get("zone.free_area"),
        )

    def dtype(self) -> np.dtype:
        """One struct page as a numpy record (only the fields classification reads)."""
        e, ul = self.byteorder, self.byteorder + self.ulong
        names, formats, offsets = ["flags", "mapping"], [ul, ul], [self.off_flags, self.off_mapping]
        for name, fmt, off in (("mapcount", e + "u4", self.off_mapcount), ("private", ul, self.off_private),
                               ("chead", ul, self.off_compound_head)):
            if off is not None:
                names.append(name)
                formats.append(fmt)
                offsets.append(off)
        kinds = {"u8": "u1", "u16": e + "u2", "ulong": ul, "flags1": ul}
        if self.order_kind != "none":
            names.append("order")
            formats.append(kinds[self.order_kind])
            offsets.append(self.order_off)
        if self.dtor_kind != "none":
            names.append("dtor")
            formats.append(kinds[self.dtor_kind])
            offsets.append(self.dtor_off)
        for off, fmt in zip(offsets, formats):
            if off < 0 or off + np.dtype(fmt).itemsize > self.struct_size:
                raise VmcoreinfoError(f"VMCOREINFO struct page field at offset {off} lies outside SIZE(page)="
                                      f"{self.struct_size}")
        return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": self.struct_size})


def _bit(flags: np.ndarray, nr: int | None) -> np.ndarray:
    if nr is None or not 0 <= nr < flags.dtype.itemsize * 8:
        return np.zeros(flags.shape, dtype=bool)
    return (flags >> np.array(nr, dtype=flags.dtype)) & 1 == 1


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

    slab = _bit(flags, layout.pg_slab)
    if layout.slab_type is not None:
        slab |= layout.slab_type.bit_clear(mapcount)

    hugetlb = np.zeros(n, dtype=bool)
    if layout.hugetlb_type is not None:
        hugetlb = head & layout.hugetlb_type.bit_clear(mapcount)
    elif layout.pg_hugetlb is not None:
        hugetlb = head & _bit(nxt["order"].astype(np.uint64), layout.pg_hugetlb)
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
        buddy = _bit(flags, layout.pg_buddy)
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

    lru = _bit(flags, layout.pg_lru)
    swapcache = _bit(flags, layout.pg_swapcache)
    swapbacked = _bit(flags, layout.pg_swapbacked) if layout.pg_swapbacked is not None else np.ones(n, bool)
    cache = lru | (swapbacked & swapcache)
    offline = np.zeros(n, dtype=bool)
    if layout.offline_type is not None:
        offline = ~slab & layout.offline_type.equal(mapcount)
    return Predicates(
        pfn_start=pfn_start, n=n, valid=valid,
        tail=(chead & np.uint64(1)) == 1,
        order=order, buddy=buddy, buddy_order=buddy_order, cache=cache,
        private=_bit(flags, layout.pg_private),
        anon=((mapping & np.uint64(PAGE_MAPPING_ANON)) != 0) & ~slab,
        hugetlb=hugetlb, hwpoison=_bit(flags, layout.pg_hwpoison), offline=offline,
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


# -- memory model -------------------------------------------------------------------------------

@dataclass(frozen=True)
class MemMapChunk:
    """struct pages of pfns [pfn_start, pfn_end) start at virtual address `vaddr`."""

    pfn_start: int
    pfn_end: int
    vaddr: int
    map_id: int  # chunks with the same id are one contiguous mem_map


@dataclass
class MemoryModel:
    kind: str  # "sparsemem", "sparsemem_extreme", "flatmem", "pgdat"
    chunks: list[MemMapChunk]
    max_mapnr: int  # pfns covered by a mem_map (makedumpfile clips its max_mapnr to this)
    warnings: list[str] = field(default_factory=list)


class VirtualReader:
    """What classification needs from the kernel's address space."""

    pointer_size: int = 8
    byteorder: str = "little"

    def read(self, vaddr: int, size: int) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError


def _is_kvaddr(addr: int, pointer_size: int) -> bool:
    return addr >= (1 << (pointer_size * 8 - 1)) if pointer_size == 8 else addr >= 0xC0000000


def _read_ptr(space: VirtualReader, vaddr: int) -> int:
    return int.from_bytes(space.read(vaddr, space.pointer_size), space.byteorder)


def find_memory_model(space: VirtualReader, vi: VmcoreInfo, max_mapnr: int) -> MemoryModel:
    """The mem_map chunks covering pfns [0, max_mapnr), as makedumpfile's get_mem_map() finds
    them: SPARSEMEM when VMCOREINFO has SYMBOL(mem_section), else FLATMEM's mem_map or the
    node_mem_map of each pgdat."""
    syms, sizes, offs = vi.symbols, vi.sizes, vi.offsets
    if "mem_section" in syms and "mem_section" in sizes and "mem_section.section_mem_map" in offs:
        model = _sparsemem(space, vi, max_mapnr)
    elif "mem_map" in syms:
        model = _flatmem(space, vi, max_mapnr)
    elif ("node_data" in syms or "contig_page_data" in syms or "pgdat_list" in syms) \
            and "pglist_data.node_mem_map" in offs:
        model = _pgdat_maps(space, vi, max_mapnr)
    else:
        raise VmcoreinfoError("VMCOREINFO describes no memory model (no SYMBOL(mem_section), SYMBOL(mem_map) "
                              "or pglist_data.node_mem_map): cannot find struct pages")
    valid_end = max((c.pfn_end for c in model.chunks), default=0)
    if model.chunks:
        model.max_mapnr = min(max_mapnr, valid_end)
    return model


def _sparsemem(space: VirtualReader, vi: VmcoreInfo, max_mapnr: int) -> MemoryModel:
    page_shift = (vi.page_size or 4096).bit_length() - 1
    try:
        section_bits = vi.number("SECTION_SIZE_BITS")
        physmem_bits = vi.number("MAX_PHYSMEM_BITS")
    except VmcoreinfoError as e:
        raise VmcoreinfoError(f"{e}: needed to walk SPARSEMEM sections") from None
    if not page_shift < section_bits < physmem_bits <= 64:
        raise CorruptKernelDataError(f"SECTION_SIZE_BITS={section_bits} / MAX_PHYSMEM_BITS={physmem_bits} "
                                     "are not consistent")
    pps = 1 << (section_bits - page_shift)
    sec_size = vi.size("mem_section")
    map_off = vi.offset("mem_section.section_mem_map")
    psize = vi.size("page")
    ptr = space.pointer_size
    num_section = -(-max_mapnr // pps)
    nr_mem_sections = 1 << (physmem_bits - section_bits)
    per_root_extreme = (vi.page_size or 4096) // sec_size
    length = vi.lengths.get("mem_section")
    extreme = length is None or length == -(-nr_mem_sections // per_root_extreme)
    per_root = per_root_extreme if extreme else 1
    nr_roots = -(-num_section // per_root)
    symbol = vi.symbol("mem_section")
    warn: list[str] = []
    # Section flags take the low bits of section_mem_map; the kernel keeps at least 6 free.
    mask = ~0x3F & ((1 << (ptr * 8)) - 1)

    def decode(roots: list[int]) -> list[int] | None:
        maps = [0] * num_section
        ok = False
        for r in range(nr_roots):
            root = roots[r] if extreme else symbol + r * sec_size
            if extreme and not root:
                continue
            count = min(per_root, num_section - r * per_root)
            try:
                blob = space.read(root, count * sec_size)
            except MemoryReadError:
                if not _is_kvaddr(root, ptr):
                    return None
                warn.append(f"mem_section root {r} at {root:#x} is unreadable: its sections are kept whole")
                continue
            for i in range(count):
                nr = r * per_root + i
                smm = int.from_bytes(blob[i * sec_size + map_off: i * sec_size + map_off + ptr], space.byteorder)
                if not smm & 1:  # SECTION_MARKED_PRESENT
                    continue
                mem_map = ((smm & mask) + nr * pps * psize) & ((1 << (ptr * 8)) - 1)
                if not _is_kvaddr(mem_map, ptr):
                    return None
                maps[nr] = mem_map
                ok = True
        return maps if ok else None

    maps = None
    if extreme:
        # VMCOREINFO gives the root array itself; a symbol table would give the pointer to it.
        for candidate in (symbol, None):
            try:
                base = symbol if candidate is not None else _read_ptr(space, symbol)
                raw = space.read(base, nr_roots * ptr)
            except MemoryReadError:
                continue
            roots = [int.from_bytes(raw[i * ptr:(i + 1) * ptr], space.byteorder) for i in range(nr_roots)]
            if any(r and not _is_kvaddr(r, ptr) for r in roots):
                continue
            maps = decode(roots)
            if maps is not None:
                break
    else:
        maps = decode([])
    if maps is None:
        raise CorruptKernelDataError(f"mem_section at {symbol:#x} does not describe any present section")
    chunks = []
    for nr, m in enumerate(maps):
        if m:
            chunks.append(MemMapChunk(nr * pps, min((nr + 1) * pps, max_mapnr), m, nr))
    return MemoryModel("sparsemem_extreme" if extreme else "sparsemem", chunks, max_mapnr, warn)


def _flatmem(space: VirtualReader, vi: VmcoreInfo, max_mapnr: int) -> MemoryModel:
    mem_map = _read_ptr(space, vi.symbol("mem_map"))
    if not mem_map:
        raise CorruptKernelDataError("mem_map is NULL")
    start, end = 0, max_mapnr
    # The kernel's mem_map starts at the node's first pfn (ARCH_PFN_OFFSET), which
    # contig_page_data records; makedumpfile assumes 0, which is what x86 has.
    offs = vi.offsets
    if "contig_page_data" in vi.symbols and "pglist_data.node_start_pfn" in offs:
        pgdat = vi.symbol("contig_page_data")
        try:
            start = _read_ptr(space, pgdat + offs["pglist_data.node_start_pfn"])
            if "pglist_data.node_spanned_pages" in offs:
                end = min(max_mapnr, start + _read_ptr(space, pgdat + offs["pglist_data.node_spanned_pages"]))
        except MemoryReadError:
            start, end = 0, max_mapnr
    if start >= end:
        start, end = 0, max_mapnr
    return MemoryModel("flatmem", [MemMapChunk(start, end, mem_map, 0)], max_mapnr)


def online_pgdats(space: VirtualReader, vi: VmcoreInfo) -> list[int]:
    """Addresses of the pglist_data of every online node (node_online_map, node_data[]), or
    contig_page_data on a single-node kernel."""
    syms = vi.symbols
    if "node_data" in syms:
        n = vi.lengths.get("node_data", 1)
        nodes = list(range(n))
        if "node_online_map" in syms:
            words = max(1, -(-n // (space.pointer_size * 8)))
            try:
                raw = space.read(syms["node_online_map"], words * space.pointer_size)
                bits = int.from_bytes(raw, space.byteorder)
                nodes = [i for i in range(min(n, words * space.pointer_size * 8)) if bits >> i & 1]
            except MemoryReadError:
                nodes = [0]
        raw = space.read(syms["node_data"], n * space.pointer_size)
        out = []
        for i in nodes:
            p = int.from_bytes(raw[i * space.pointer_size:(i + 1) * space.pointer_size], space.byteorder)
            if p and _is_kvaddr(p, space.pointer_size):
                out.append(p)
        if out:
            return out
    if "contig_page_data" in syms:
        return [syms["contig_page_data"]]
    if "pgdat_list" in syms:
        p = _read_ptr(space, syms["pgdat_list"])
        return [p] if p else []
    raise VmcoreinfoError("VMCOREINFO has neither SYMBOL(node_data) nor SYMBOL(contig_page_data)")


def _pgdat_maps(space: VirtualReader, vi: VmcoreInfo, max_mapnr: int) -> MemoryModel:
    offs = vi.offsets
    chunks = []
    for i, pgdat in enumerate(online_pgdats(space, vi)):
        start = _read_ptr(space, pgdat + vi.offset("pglist_data.node_start_pfn"))
        spanned = _read_ptr(space, pgdat + vi.offset("pglist_data.node_spanned_pages"))
        mem_map = _read_ptr(space, pgdat + offs["pglist_data.node_mem_map"])
        end = min(start + spanned, max_mapnr)
        if mem_map and start < end:
            chunks.append(MemMapChunk(start, end, mem_map, i))
    chunks.sort(key=lambda c: c.pfn_start)
    for a, b in zip(chunks, chunks[1:]):
        if a.pfn_end > b.pfn_start:
            raise CorruptKernelDataError(f"node mem_maps overlap at pfn {b.pfn_start:#x}")
    return MemoryModel("pgdat", chunks, max_mapnr)


def read_mapped(space: VirtualReader, vaddr: int, size: int) -> bytes:
    """space.read(vaddr, size) with one translation per page-table mapping rather than per
    4 KiB page: vmemmap is mapped with 2 MiB pages, so a chunk of struct pages costs a few
    page-table walks instead of hundreds. Spaces that cannot explain their mappings (test
    doubles) are read as they are."""
    explain = getattr(space, "explain", None)
    phys = getattr(space, "phys", None)
    base = getattr(space, "page_size", 4096)
    if explain is None or phys is None:
        return space.read(vaddr, size)
    parts: list[bytes] = []
    pos, end = vaddr, vaddr + size
    while pos < end:
        t = explain(pos)
        if t.paddr is None or t.page_size <= base:
            n = min(end, (pos | (base - 1)) + 1) - pos
            parts.append(space.read(pos, n))  # the space's own errors and caching
        else:
            n = min(end - pos, t.page_size - (pos & (t.page_size - 1)))
            parts.append(phys.read(t.paddr, n))
        pos += n
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_struct_pages(space: VirtualReader, vaddr: int, count: int, size: int,
                      page_size: int = 4096) -> tuple[bytes, np.ndarray]:
    """`count`+1 struct pages at `vaddr` (the extra one shows the last head page's order) and
    which of the first `count` could be read. Unreadable pages read as zeros."""
    total = (count + 1) * size
    try:
        body = read_mapped(space, vaddr, count * size)
        try:
            nxt = space.read(vaddr + count * size, size)
        except MemoryReadError:  # the next section's struct pages may not exist
            nxt = bytes(size)
        return body + nxt, np.ones(count, dtype=bool)
    except MemoryReadError:
        pass
    buf = bytearray(total)
    good = np.zeros((total + page_size - 1) // page_size + 1, dtype=bool)
    pos = vaddr
    end = vaddr + total
    while pos < end:
        n = min(end, (pos | (page_size - 1)) + 1) - pos
        try:
            buf[pos - vaddr:pos - vaddr + n] = space.read(pos, n)
            good[(pos - vaddr) // page_size] = True
        except MemoryReadError:
            pass
        pos += n
    # A struct page is valid when every byte of it was read.
    first = (np.arange(count, dtype=np.int64) * size) // page_size
    last = (np.arange(count, dtype=np.int64) * size + size - 1) // page_size
    valid = good[first] & good[last]
    return bytes(buf), valid


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
                if not _read_ptr(space, zone + vi.offset("zone.spanned_pages")):
                    continue
                for order in range(nr_orders - 1, -1, -1):
                    for mt in range(migrate_types):
                        head = (zone + vi.offset("zone.free_area") + vi.size("free_area") * order
                                + vi.offset("free_area.free_list") + vi.size("list_head") * mt)
                        prev, cur = head, _read_ptr(space, head + vi.offset("list_head.next"))
                        while cur != head:
                            budget -= 1
                            if budget < 0:
                                raise CorruptKernelDataError(f"free list at {head:#x} does not end (a cycle?)")
                            back = _read_ptr(space, cur + vi.offset("list_head.prev"))
                            if back != prev:
                                raise CorruptKernelDataError(f"free list at {head:#x} is broken at {cur:#x}")
                            pfn = self.page_to_pfn(cur - vi.offset("page.lru"))
                            if pfn is None:
                                raise CorruptKernelDataError(f"free list entry {cur:#x} is not a struct page")
                            out.append(np.arange(pfn, pfn + (1 << order), dtype=np.int64))
                            prev, cur = cur, _read_ptr(space, cur + vi.offset("list_head.next"))
        return np.unique(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)

    def page_to_pfn(self, page: int) -> int | None:
        size = self.layout.struct_size
        for c in self.model.chunks:
            if page >= c.vaddr:
                idx, rem = divmod(page - c.vaddr, size)
                if rem == 0 and idx < c.pfn_end - c.pfn_start:
                    return c.pfn_start + idx
        return None

