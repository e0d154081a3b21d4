"""The kernel's memory map: where each pfn's struct page is, what struct page holds, and what
its flag bits and page types mean. The one home of these facts; the filter's classification
(filter/classify.py), the memory summary (kernel/meminfo.py) and tools build on it.

    model = find_memory_model(space, vi, max_mapnr)   # MemoryModel: mem_map chunks per pfn range
    raw, valid = read_struct_pages(space, chunk.vaddr, n, layout.struct_size)
    layout = PageLayout.from_vmcoreinfo(vi)            # struct page fields, PG_* bits, page types
    rec = np.frombuffer(raw, dtype=layout.dtype(), count=n)
    flag_set(rec["flags"], layout.pg_slab)             # numpy over whole arrays, never per page
    page_flag_bit(prog, "PG_reserved")                 # VMCOREINFO NUMBER(), else BTF's enum
    online_pgdats(space, vi) / node_pgdats(prog)       # each online node's pglist_data

Memory models, as makedumpfile's get_mem_map() finds them from VMCOREINFO alone:
SPARSEMEM[_EXTREME|_VMEMMAP] from SYMBOL(mem_section) (sections decoded by
vmcoreinfo/memsection.py, which arch/ shares to find the vmemmap base), FLATMEM from
SYMBOL(mem_map) (offset by contig_page_data's first pfn), else each node's node_mem_map.

Reading goes through a `VirtualReader` (read, pointer_size, byteorder: an AddressSpace, or a
test double), so the filter can run with no Program; `read_pointer()` is that reader's one
pointer read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CorruptKernelDataError, MemoryReadError, TypeLookupError, VmcoreinfoError, VmcorekitError
from ..vmcoreinfo import VmcoreInfo
from ..vmcoreinfo.memsection import MemSection, section_mem_map

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["TypeMatch", "PageLayout", "DEFAULT_PAGE_TYPE_BASE", "flag_set", "page_flag_bit",
           "pg_reserved_bit", "MemMapChunk", "MemoryModel", "VirtualReader", "read_pointer",
           "is_kvaddr", "find_memory_model", "online_pgdats", "node_pgdats", "read_mapped",
           "read_struct_pages"]

DEFAULT_PAGE_TYPE_BASE = 0xF0000000
MAX_NUMNODES = 1 << 10  # NODES_SHIFT is at most 10


# -- page flags and page types ----------------------------------------------------------------
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


def flag_set(flags: np.ndarray, nr: int | None) -> np.ndarray:
    """Flag bit `nr` of each word (all False when the kernel has no such flag)."""
    if nr is None or not 0 <= nr < flags.dtype.itemsize * 8:
        return np.zeros(flags.shape, dtype=bool)
    return (flags >> np.array(nr, dtype=flags.dtype)) & 1 == 1



def page_flag_bit(prog: "Program", name: str) -> int | None:
    """Bit number of page flag `name` ("PG_slab"): VMCOREINFO's NUMBER() when exported, else the
    enum pageflags constant from BTF; None when neither knows it."""
    v = prog.vmcoreinfo.numbers.get(name)
    if v is not None:
        return v
    try:
        return prog.types.constant(name)
    except (TypeLookupError, VmcorekitError):
        return None


def pg_reserved_bit(prog: "Program", flags_off: int, page_size_struct: int) -> tuple[int, str]:
    """PG_reserved's bit number and where it came from: the enum (BTF), else read off the
    struct page of a kernel text page (crash's way)."""
    bit = page_flag_bit(prog, "PG_reserved")
    if bit is not None:
        return bit, "enum pageflags"
    # crash's fallback: a kernel text page is reserved; its lowest flag bit is PG_reserved.
    stext = prog.try_symbol_address("_stext")
    if stext is None:
        raise TypeLookupError("PG_reserved unknown: no BTF and no _stext to read it from")
    pfn = prog.space.translate(stext) // prog.page_size
    model = find_memory_model(prog.space, prog.vmcoreinfo, pfn + 1)
    for c in model.chunks:
        if c.pfn_start <= pfn < c.pfn_end:
            raw = prog.read(c.vaddr + (pfn - c.pfn_start) * page_size_struct + flags_off, 8)
            flags = int.from_bytes(raw, "little")
            if flags:
                return (flags & -flags).bit_length() - 1, "flags of the _stext page"
    raise TypeLookupError("PG_reserved unknown: the _stext page's struct page is unreadable")


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


def is_kvaddr(addr: int, pointer_size: int) -> bool:
    return addr >= (1 << (pointer_size * 8 - 1)) if pointer_size == 8 else addr >= 0xC0000000


def read_pointer(space: VirtualReader, vaddr: int) -> int:
    """One pointer through the reader (its size and byte order): the filter's one pointer read."""
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
    # SIZE and OFFSET are required here (find_memory_model checked); LENGTH says EXTREME: the
    # number of roots, or absent when VMCOREINFO predates it.
    sec_size = vi.size("mem_section")
    psize = vi.size("page")
    ptr = space.pointer_size
    num_section = -(-max_mapnr // pps)
    nr_mem_sections = 1 << (physmem_bits - section_bits)
    per_root_extreme = (vi.page_size or 4096) // sec_size
    length = vi.lengths.get("mem_section")
    extreme = length is None or length == -(-nr_mem_sections // per_root_extreme)
    per_root = per_root_extreme if extreme else 1
    nr_roots = -(-num_section // per_root)
    ms = MemSection(vi.symbol("mem_section"), extreme, sec_size,
                    vi.offset("mem_section.section_mem_map"))
    symbol = ms.symbol
    warn: list[str] = []

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
                if not is_kvaddr(root, ptr):
                    return None
                warn.append(f"mem_section root {r} at {root:#x} is unreadable: its sections are kept whole")
                continue
            for i, smm in enumerate(ms.section_words(blob, count, ptr, space.byteorder)):
                nr = r * per_root + i
                mem_map = section_mem_map(smm, nr, pps, psize, ptr)
                if mem_map is None:
                    continue
                if not is_kvaddr(mem_map, ptr):
                    return None
                maps[nr] = mem_map
                ok = True
        return maps if ok else None

    maps = None
    if extreme:
        # VMCOREINFO gives the root array itself; a symbol table would give the pointer to it.
        for candidate in (symbol, None):
            try:
                base = symbol if candidate is not None else read_pointer(space, symbol)
                raw = space.read(base, nr_roots * ptr)
            except MemoryReadError:
                continue
            roots = [int.from_bytes(raw[i * ptr:(i + 1) * ptr], space.byteorder) for i in range(nr_roots)]
            if any(r and not is_kvaddr(r, ptr) for r in roots):
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
    mem_map = read_pointer(space, vi.symbol("mem_map"))
    if not mem_map:
        raise CorruptKernelDataError("mem_map is NULL")
    start, end = 0, max_mapnr
    # The kernel's mem_map starts at the node's first pfn (ARCH_PFN_OFFSET), which
    # contig_page_data records; makedumpfile assumes 0, which is what x86 has.
    offs = vi.offsets
    if "contig_page_data" in vi.symbols and "pglist_data.node_start_pfn" in offs:
        pgdat = vi.symbol("contig_page_data")
        try:
            start = read_pointer(space, pgdat + offs["pglist_data.node_start_pfn"])
            if "pglist_data.node_spanned_pages" in offs:
                end = min(max_mapnr, start + read_pointer(space, pgdat + offs["pglist_data.node_spanned_pages"]))
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
            if p and is_kvaddr(p, space.pointer_size):
                out.append(p)
        if out:
            return out
    if "contig_page_data" in syms:
        return [syms["contig_page_data"]]
    if "pgdat_list" in syms:
        p = read_pointer(space, syms["pgdat_list"])
        return [p] if p else []
    raise VmcoreinfoError("VMCOREINFO has neither SYMBOL(node_data) nor SYMBOL(contig_page_data)")


def node_pgdats(prog: "Program") -> list[int]:
    """Addresses of the struct pglist_data of every online NUMA node as crash finds them:
    node_data[] (from the symbol table, or VMCOREINFO where the architecture exports it)
    filtered by the online node mask, or contig_page_data on a kernel without NUMA.
    (online_pgdats() is makedumpfile's view, from VMCOREINFO alone.)"""
    vi = prog.vmcoreinfo
    ps = prog.space.pointer_size
    nd = prog.try_symbol_address("node_data")
    if nd is not None:
        nr = prog.try_symbol_address("nr_node_ids")
        n = (int.from_bytes(prog.read(nr, 4), "little", signed=True) if nr is not None else None) \
            or vi.lengths.get("node_data") or 1
        if not 0 < n <= MAX_NUMNODES:
            raise CorruptKernelDataError(f"nr_node_ids is {n}")
        online: int | None = None
        mask = vi.symbols.get("node_online_map")
        if mask is None:
            states = prog.try_symbol_address("node_states")
            try:
                if states is not None:
                    mask = states + prog.types.constant("N_ONLINE") * prog.types.sizeof("nodemask_t")
            except (TypeLookupError, VmcorekitError):
                mask = None
        if mask is not None:
            words = -(-n // (8 * ps))
            online = int.from_bytes(prog.read(mask, words * ps), "little")
        raw = prog.read(nd, n * ps)
        out = []
        for i in range(n):
            p = int.from_bytes(raw[i * ps:(i + 1) * ps], "little")
            if p and (online is None or online >> i & 1):
                out.append(p)
        if out:
            return out
    contig = prog.try_symbol_address("contig_page_data")
    if contig is not None:
        return [contig]
    raise VmcorekitError("neither node_data nor contig_page_data is known: NUMA nodes "
                         "cannot be found")


def _pgdat_maps(space: VirtualReader, vi: VmcoreInfo, max_mapnr: int) -> MemoryModel:
    offs = vi.offsets
    chunks = []
    for i, pgdat in enumerate(online_pgdats(space, vi)):
        start = read_pointer(space, pgdat + vi.offset("pglist_data.node_start_pfn"))
        spanned = read_pointer(space, pgdat + vi.offset("pglist_data.node_spanned_pages"))
        mem_map = read_pointer(space, pgdat + offs["pglist_data.node_mem_map"])
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




# -- struct page <-> direct-map address (SPARSEMEM_VMEMMAP) ---------------------------------------
def _direct_map(prog: "Program") -> tuple[int, int, int]:
    """(vmemmap base, sizeof(struct page), paddr -> vaddr offset of the direct map)."""
    def make() -> tuple[int, int, int]:
        sp = prog.space
        base = getattr(sp, "vmemmap_base", None)
        po = getattr(sp, "page_offset", None)
        if base is None or po is None:
            raise VmcorekitError("the vmemmap or the direct map was not found: struct pages "
                                 "cannot be matched to addresses")
        linear = [r for r in getattr(sp, "regions", []) if r.method == "linear" and r.start == po]
        if not linear or linear[0].offset is None:
            raise VmcorekitError("the direct map's physical offset is unknown")
        size = prog.vmcoreinfo.size("page")
        return base, size, linear[0].offset
    return prog.memo(_direct_map, make)


def page_to_virt(prog: "Program", page: int) -> int:
    """The direct-map address of the memory a `struct page *` describes."""
    base, size, off = _direct_map(prog)
    pfn = (page - base) // size
    return (pfn * prog.page_size + off) & 0xFFFF_FFFF_FFFF_FFFF


def page_to_pfn(prog: "Program", page: int) -> int:
    base, size, _ = _direct_map(prog)
    return (page - base) // size


def pfn_to_page(prog: "Program", pfn: int) -> int:
    base, size, _ = _direct_map(prog)
    return base + pfn * size


def virt_to_page(prog: "Program", vaddr: int) -> int | None:
    """The `struct page *` of a kernel address (direct map by arithmetic, anything else through
    the page tables); None when the address maps nothing the dump knows."""
    base, size, off = _direct_map(prog)
    try:
        paddr = prog.space.translate(vaddr)
    except VmcorekitError:
        return None
    return base + (paddr // prog.page_size) * size
