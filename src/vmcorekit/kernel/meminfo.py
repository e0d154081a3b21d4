"""Memory summary, as crash's `kmem -i` computes it (and /proc/meminfo, where they agree).

    mi = memory_summary(prog)      # MemorySummary, every count in pages (None = unknown)
    print(format_kmem_i(mi))       # crash's table, line for line

Where each number comes from (crash 8.0.2's dump_kmeminfo):
  TOTAL MEM    _totalram_pages (totalram_pages before 5.0)
  FREE         zone->vm_stat[NR_FREE_PAGES] summed over every zone of every online node
  SHARED       struct pages that are not PG_reserved and have a _refcount above 1 (one walk
               of every struct page: numpy over the mem_map, not a Python loop per page)
  BUFFERS      nr_blockdev_pages(): nrpages of every block device inode's mapping
  CACHED       NR_FILE_PAGES - swap cache pages - BUFFERS
  SLAB         NR_SLAB (or NR_SLAB_RECLAIMABLE + NR_SLAB_UNRECLAIMABLE); on 5.9+ kernels,
               whose counters are NR_SLAB_*_B, crash counts PG_slab struct pages instead, and
               so does SLAB here (the counters' sum is kept as `slab_vmstat`)
  HUGE         hstates[]: nr_huge_pages / free_huge_pages, in base pages
  SWAP         swap_info[]: pages / inuse_pages of each area in use
  COMMIT LIMIT sysctl_overcommit_kbytes, else (TOTAL - HUGE) * sysctl_overcommit_ratio / 100,
               plus swap; COMMITTED vm_committed_as.count (never negative)
Counter indexes are the kernel's own enumerators (from BTF), never a table per version.
Without BTF, what VMCOREINFO has is used: NUMBER(NR_FREE_PAGES) and the zone/pglist_data
offsets give FREE, struct page's offsets give SHARED (PG_reserved is then read off a kernel
text page, as crash does); the rest is reported as unknown.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CorruptKernelDataError, MemoryReadError, TypeLookupError, VmcorekitError, partial_result
from ..program.objects import Object
from .lists import list_for_each_entry
from .memmap import find_memory_model, node_pgdats, page_flag_bit, pg_reserved_bit, read_struct_pages
from .sysinfo import format_size

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["memory_summary", "MemorySummary", "format_kmem_i", "vm_stat", "shared_pages",
           "page_counts", "PageCounts", "totalram_pages", "node_pgdats",
           "nr_blockdev_pages", "swap_totals", "hugetlb_totals", "MAX_SWAPFILES_SCAN"]

MAX_SWAPFILES_SCAN = 64  # MAX_SWAPFILES is 32 minus a few; a larger nr_swapfiles is corrupt
_MAX_BDEV_INODES = 1 << 20


@dataclass
class MemorySummary:
    page_size: int
    total: int | None = None
    free: int | None = None
    shared: int | None = None
    buffers: int | None = None
    cached: int | None = None
    slab: int | None = None
    slab_vmstat: int | None = None  # NR_SLAB_RECLAIMABLE(_B) + NR_SLAB_UNRECLAIMABLE(_B)
    huge_total: int | None = None
    huge_free: int | None = None
    swap_total: int | None = None
    swap_used: int | None = None
    commit_limit: int | None = None
    committed: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def used(self) -> int | None:
        return None if self.total is None or self.free is None else self.total - self.free

    @property
    def swap_free(self) -> int | None:
        return None if self.swap_total is None or self.swap_used is None else \
            self.swap_total - self.swap_used

    def as_dict(self) -> dict[str, Any]:
        keys = ("total", "free", "used", "shared", "buffers", "cached", "slab", "slab_vmstat",
                "huge_total",
                "huge_free", "swap_total", "swap_used", "swap_free", "commit_limit",
                "committed")
        return {"page_size": self.page_size, "pages": {k: getattr(self, k) for k in keys},
                "notes": self.notes}


# -- vm_stat counters -------------------------------------------------------------------------
def _enum_items(prog: "Program", tag: str) -> dict[str, int]:
    try:
        t = prog.types.lookup(f"enum {tag}").strip_typedefs()
    except (TypeLookupError, VmcorekitError):
        return {}
    return dict(t.enumerators or [])


def vm_stat(prog: "Program", item: str) -> int | None:
    """A global VM counter by its enumerator name (NR_FILE_PAGES, NR_SLAB_RECLAIMABLE_B, ...):
    vm_zone_stat[] for zone items, vm_node_stat[] for node items (vm_stat[] before 4.8).
    None when the kernel has no such counter."""
    ps = prog.space.pointer_size
    for tag, arrays in (("zone_stat_item", ("vm_zone_stat", "vm_stat")),
                        ("node_stat_item", ("vm_node_stat",))):
        items = _enum_items(prog, tag)
        if item not in items:
            continue
        for name in arrays:
            addr = prog.try_symbol_address(name)
            if addr is None:
                continue
            # atomic_long_t: one signed long per item
            v = int.from_bytes(prog.read(addr + items[item] * ps, ps), "little", signed=True)
            return max(v, 0)
    return None


def _long(prog: "Program", name: str, signed: bool = False) -> int | None:
    addr = prog.try_symbol_address(name)
    if addr is None:
        return None
    ps = prog.space.pointer_size
    return int.from_bytes(prog.read(addr, ps), "little", signed=signed)


def totalram_pages(prog: "Program") -> int | None:
    """RAM pages the page allocator manages (/proc/meminfo MemTotal): `_totalram_pages`
    (an atomic_long_t since 5.0), `totalram_pages` before; None when neither is found."""
    for name in ("_totalram_pages", "totalram_pages"):
        v = _long(prog, name)
        if v is not None:
            return v
    return None


def _int(prog: "Program", name: str) -> int | None:
    addr = prog.try_symbol_address(name)
    if addr is None:
        return None
    return int.from_bytes(prog.read(addr, 4), "little", signed=True)


# -- nodes and zones --------------------------------------------------------------------------
def _zone_free_pages(prog: "Program") -> int:
    """Sum of zone->vm_stat[NR_FREE_PAGES] over all zones of the online nodes. Offsets from
    BTF, else from VMCOREINFO (which exports exactly these for makedumpfile)."""
    vi = prog.vmcoreinfo
    ps = prog.space.pointer_size
    btf = prog.has_btf
    if btf:
        T = prog.types
        zone_size = T.sizeof("struct zone")
        o_zones = T.offsetof("struct pglist_data", "node_zones")
        o_vmstat = T.offsetof("struct zone", "vm_stat")
        nr_free = T.constant("NR_FREE_PAGES")
        arr = T.lookup("struct pglist_data").member("node_zones").type.strip_typedefs()
        max_zones = arr.length or 0
        o_nr_zones = None
    else:
        zone_size = vi.size("zone")
        o_zones = vi.offset("pglist_data.node_zones")
        o_vmstat = vi.offset("zone.vm_stat")
        nr_free = vi.number("NR_FREE_PAGES")
        o_nr_zones = vi.offset("pglist_data.nr_zones")
        max_zones = 0
    total = 0
    for pgdat in node_pgdats(prog):
        n = max_zones
        if o_nr_zones is not None:
            # nr_zones: one past the highest populated zone; zones above hold no pages.
            n = int.from_bytes(prog.read(pgdat + o_nr_zones, 4), "little", signed=True)
        if not 0 < n <= 16:
            raise CorruptKernelDataError(f"node at {pgdat:#x}: {n} zones is not plausible")
        for z in range(n):
            a = pgdat + o_zones + z * zone_size + o_vmstat + nr_free * ps
            total += max(int.from_bytes(prog.read(a, ps), "little", signed=True), 0)
    return total


# -- SHARED: the struct page walk ------------------------------------------------------------
@dataclass
class PageCounts:
    """What one pass over every struct page counts (crash's dump_mem_map GET_ALL)."""

    shared: int  # not PG_reserved, _refcount > 1
    slab: int | None  # PG_slab set (None: the kernel has no PG_slab flag)
    unreadable: int  # struct pages the dump does not hold


def page_counts(prog: "Program", notes: list[str] | None = None) -> PageCounts:
    """One numpy pass over the mem_map: crash's SHARED, and the PG_slab pages it falls back
    to for SLAB when the kernel's slab counters are not in pages."""
    vi = prog.vmcoreinfo
    psize_struct = vi.size("page")
    o_flags = vi.offset("page.flags")
    o_ref = vi.offsets.get("page._refcount", vi.offsets.get("page._count"))
    if o_ref is None:
        o_ref = prog.try_offsetof("struct page", "_refcount")
    if o_ref is None:
        raise TypeLookupError("struct page reference count offset unknown (neither "
                              "VMCOREINFO nor BTF has it)")
    bit, how = pg_reserved_bit(prog, o_flags, psize_struct)
    if notes is not None and how != "enum pageflags":
        notes.append(f"PG_reserved = bit {bit}, from the {how}")
    pg_slab = page_flag_bit(prog, "PG_slab")
    end = max((r.end for r in prog.phys.ranges()), default=0)
    try:
        sect_pages = 1 << (vi.number("SECTION_SIZE_BITS") - (prog.page_size.bit_length() - 1))
    except VmcorekitError:
        sect_pages = 1
    # Whole sections, as crash walks them (pages past the end of RAM are reserved anyway).
    max_pfn = -(-(end // prog.page_size) // sect_pages) * sect_pages
    model = find_memory_model(prog.space, vi, max_pfn)
    if notes is not None:
        notes.extend(model.warnings)
    dt = np.dtype({"names": ["flags", "ref"], "formats": ["<u8", "<i4"],
                   "offsets": [o_flags, o_ref], "itemsize": psize_struct})
    reserved = np.uint64(1 << bit)
    slab_bit = np.uint64(1 << pg_slab) if pg_slab is not None else np.uint64(0)
    shared = slab = unreadable = 0
    step = 1 << 15
    for c in model.chunks:
        for start in range(c.pfn_start, c.pfn_end, step):
            n = min(step, c.pfn_end - start)
            raw, valid = read_struct_pages(prog.space, c.vaddr + (start - c.pfn_start) *
                                           psize_struct, n, psize_struct, prog.page_size)
            pages = np.frombuffer(raw, dtype=dt, count=n)
            flags = pages["flags"]
            shared += int(np.count_nonzero(valid & ((flags & reserved) == 0) & (pages["ref"] > 1)))
            if pg_slab is not None:
                slab += int(np.count_nonzero(valid & ((flags & slab_bit) != 0)))
            unreadable += int(n - np.count_nonzero(valid))
    if unreadable and notes is not None:
        notes.append(f"{unreadable} struct pages are not in the dump (not counted)")
    return PageCounts(shared, slab if pg_slab is not None else None, unreadable)


def shared_pages(prog: "Program", notes: list[str] | None = None) -> int:
    """Pages that are not PG_reserved and have a reference count above 1 (crash's SHARED)."""
    return page_counts(prog, notes).shared


# -- buffers, swap, huge pages ---------------------------------------------------------------
def nr_blockdev_pages(prog: "Program") -> int:
    """Pages cached for block devices (the kernel's nr_blockdev_pages()): the block device
    pseudo-filesystem's inodes, each mapping's nrpages; `all_bdevs` on kernels before 5.9."""
    T = prog.types
    total = 0
    sb_ptr = prog.try_symbol_address("blockdev_superblock")
    if sb_ptr is not None and T.has_member("struct super_block", "s_inodes"):
        sb = Object(prog, "struct super_block *", address=sb_ptr).read_()
        if not int(sb):
            return 0
        for inode in list_for_each_entry("struct inode", sb.s_inodes.address_of_(), "i_sb_list",
                                         limit=_MAX_BDEV_INODES):
            mapping = inode.i_mapping.read_()
            if int(mapping):
                total += int(mapping.nrpages)
        return total
    head = prog.try_symbol_address("all_bdevs")
    if head is not None:
        for bdev in list_for_each_entry("struct block_device", head, "bd_list", prog=prog,
                                        limit=_MAX_BDEV_INODES):
            total += int(bdev.bd_inode.i_mapping.nrpages)
        return total
    raise TypeLookupError("neither blockdev_superblock nor all_bdevs: block device pages unknown")


def _swap_areas(prog: "Program") -> list[Object]:
    n = _int(prog, "nr_swapfiles")
    addr = prog.try_symbol_address("swap_info")
    if n is None or addr is None:
        raise TypeLookupError("nr_swapfiles / swap_info not found")
    if not 0 <= n <= MAX_SWAPFILES_SCAN:
        raise CorruptKernelDataError(f"nr_swapfiles is {n}")
    out = []
    ps = prog.space.pointer_size
    for i in range(n):
        p = prog.read_pointer(addr + i * ps)
        if p:
            out.append(Object(prog, "struct swap_info_struct *", p))
    return out


def swap_totals(prog: "Program") -> tuple[int, int]:
    """(pages, pages in use) over every swap area in use (SWP_USED); without the swap area
    table's symbols, as si_swapinfo() (/proc/meminfo) counts: total_swap_pages, less the free
    nr_swap_pages."""
    if prog.try_symbol_address("swap_info") is None or prog.try_symbol_address("nr_swapfiles") is None:
        total_at = prog.try_symbol_address("total_swap_pages")
        free_at = prog.try_symbol_address("nr_swap_pages")
        if total_at is not None and free_at is not None:
            total = prog.read_s64(total_at)
            free = prog.read_s64(free_at)
            if not 0 <= free <= total < 1 << 40:
                raise CorruptKernelDataError(f"total_swap_pages {total}, nr_swap_pages {free}")
            return total, total - free
    try:
        swp_used = prog.types.constant("SWP_USED")
    except TypeLookupError:
        swp_used = 1
    total = used = 0
    for si in _swap_areas(prog):
        if not int(si.flags) & swp_used:
            continue
        total += int(si.pages)
        used += int(si.inuse_pages)
    return total, used


def _swap_cache_pages(prog: "Program") -> int:
    """total_swapcache_pages(): nrpages of each swap area's address spaces (swapper_spaces[i]
    is an array of nr_swapper_spaces[i] struct address_space since 4.11)."""
    base = prog.try_symbol_address("swapper_spaces")
    counts = prog.try_symbol_address("nr_swapper_spaces")
    if base is None:
        return 0
    T = prog.types
    ps = prog.space.pointer_size
    total = 0
    n = _int(prog, "nr_swapfiles") or 0
    as_size = T.sizeof("struct address_space")
    o_nrpages = T.offsetof("struct address_space", "nrpages")
    for i in range(min(n, MAX_SWAPFILES_SCAN)):
        spaces = prog.read_pointer(base + i * ps)
        if not spaces or counts is None:
            continue
        cnt = int.from_bytes(prog.read(counts + 4 * i, 4), "little")
        for j in range(min(cnt, 1 << 20)):
            total += prog.read_pointer(spaces + j * as_size + o_nrpages)
    return total


def hugetlb_totals(prog: "Program") -> tuple[int, int]:
    """(huge pages, free huge pages) over all hstates, counted in base pages."""
    base = prog.try_symbol_address("hstates")
    n = _int(prog, "hugetlb_max_hstate")
    if base is None or n is None:
        return 0, 0
    if not 0 <= n <= 16:
        raise CorruptKernelDataError(f"hugetlb_max_hstate is {n}")
    T = prog.types
    size = T.sizeof("struct hstate")
    total = free = 0
    for i in range(n):
        h = Object(prog, "struct hstate", address=base + i * size)
        pages = 1 << int(h.order)
        total += int(h.nr_huge_pages) * pages
        free += int(h.free_huge_pages) * pages
    return total, free


# -- everything -------------------------------------------------------------------------------
def memory_summary(prog: "Program", *, shared: bool = True) -> MemorySummary:
    """Every `kmem -i` number. A number that cannot be found stays None and says why in
    `notes`; shared=False skips the struct page walk."""
    mi = MemorySummary(prog.page_size)
    notes = mi.notes
    btf = prog.has_btf

    def attempt(what: str, fn: Any) -> Any:
        try:
            return fn()
        except (VmcorekitError, LookupError, ValueError) as e:
            notes.append(f"{what}: {e}")
            if isinstance(e, (MemoryReadError, CorruptKernelDataError)):
                # the dump lost what the figure needs: a partial answer (exit 3), said as a note
                partial_result(f"{what}: {e}", reported=False)
            return None

    mi.total = attempt("TOTAL MEM", lambda: totalram_pages(prog))
    if mi.total is None:
        notes.append("TOTAL MEM: neither _totalram_pages nor totalram_pages found")
    mi.free = attempt("FREE", lambda: _zone_free_pages(prog))
    counts = attempt("struct page walk", lambda: page_counts(prog, notes)) if shared else None
    if counts is not None:
        mi.shared = counts.shared
    if not btf:
        notes.append("no BTF: BUFFERS, CACHED, SLAB, huge pages, swap and commit figures need "
                     "kernel types and are not shown")
        return mi
    mi.buffers = attempt("BUFFERS", lambda: nr_blockdev_pages(prog))
    file_pages = attempt("CACHED", lambda: vm_stat(prog, "NR_FILE_PAGES"))
    if file_pages is not None:
        swapcache = attempt("swap cache", lambda: _swap_cache_pages(prog)) or 0
        mi.cached = file_pages - swapcache - (mi.buffers or 0)
    # crash reads NR_SLAB, or NR_SLAB_RECLAIMABLE + NR_SLAB_UNRECLAIMABLE; since 5.9 these are
    # NR_SLAB_*_B, which crash 8.0.2 does not look for: it then counts the struct pages with
    # PG_slab set (slab head pages, not slab memory). SLAB follows crash; /proc/meminfo's Slab
    # (the _B counters, kept in pages) is `slab_vmstat`.
    for names in (("NR_SLAB",), ("NR_SLAB_RECLAIMABLE", "NR_SLAB_UNRECLAIMABLE")):
        vals = [attempt("SLAB", lambda n=n: vm_stat(prog, n)) for n in names]
        if vals[0] is not None:
            mi.slab = mi.slab_vmstat = sum(v or 0 for v in vals)
            break
    else:
        vals = [attempt("SLAB", lambda n=n: vm_stat(prog, n))
                for n in ("NR_SLAB_RECLAIMABLE_B", "NR_SLAB_UNRECLAIMABLE_B")]
        if vals[0] is not None:
            mi.slab_vmstat = sum(v or 0 for v in vals)
        if counts is not None and counts.slab is not None:
            mi.slab = counts.slab
            if mi.slab_vmstat is not None:
                notes.append(f"SLAB is the {counts.slab} PG_slab pages crash counts; the "
                             f"kernel's slab counters (/proc/meminfo Slab) say "
                             f"{mi.slab_vmstat} pages")
        else:
            mi.slab = mi.slab_vmstat
    if mi.slab is None:
        notes.append("SLAB: no NR_SLAB* counter and no PG_slab flag in this kernel")
    huge = attempt("huge pages", lambda: hugetlb_totals(prog))
    if huge is not None:
        mi.huge_total, mi.huge_free = huge
    sw = attempt("swap", lambda: swap_totals(prog))
    if sw is not None:
        mi.swap_total, mi.swap_used = sw
    kbytes = attempt("overcommit", lambda: _long(prog, "sysctl_overcommit_kbytes"))
    ratio = attempt("overcommit", lambda: _int(prog, "sysctl_overcommit_ratio"))
    if kbytes:
        limit: int | None = kbytes >> (prog.page_size.bit_length() - 1 - 10)
    elif ratio is not None and mi.total is not None:
        limit = (mi.total - (mi.huge_total or 0)) * ratio // 100
    else:
        limit = None
    if limit is not None:
        mi.commit_limit = limit + (mi.swap_total or 0)
    addr = prog.try_symbol_address("vm_committed_as")
    if addr is not None:
        c = attempt("COMMITTED", lambda: int(Object(prog, "struct percpu_counter",
                                                    address=addr).count))
        mi.committed = None if c is None else max(c, 0)
    return mi


def _pct_line(label: str, pages: int | None, total: int | None, of: str, page_size: int) -> str:
    if pages is None:
        return f"{label:>13}  {'-':>7}  {'(unknown)':>11}"
    size = format_size(pages * page_size)
    if of == "":
        return f"{label:>13}  {pages:7d}  {size:>11}         ----"
    pct = pages * 100 // total if total else 0
    return f"{label:>13}  {pages:7d}  {size:>11}  {pct:3d}% of {of}"


def format_kmem_i(mi: MemorySummary) -> str:
    """crash's `kmem -i` table (unknown numbers are shown as '-' / '(unknown)')."""
    ps = mi.page_size
    tot = mi.total
    out = ["                 PAGES        TOTAL      PERCENTAGE",
           _pct_line("TOTAL MEM", tot, None, "", ps)]
    for label, v in (("FREE", mi.free), ("USED", mi.used), ("SHARED", mi.shared),
                     ("BUFFERS", mi.buffers), ("CACHED", mi.cached), ("SLAB", mi.slab)):
        out.append(_pct_line(label, v, tot, "TOTAL MEM", ps))
    out += ["", _pct_line("TOTAL HUGE", mi.huge_total, None, "", ps),
            _pct_line("HUGE FREE", mi.huge_free, mi.huge_total, "TOTAL HUGE", ps),
            "", _pct_line("TOTAL SWAP", mi.swap_total, None, "", ps),
            _pct_line("SWAP USED", mi.swap_used, mi.swap_total, "TOTAL SWAP", ps),
            _pct_line("SWAP FREE", mi.swap_free, mi.swap_total, "TOTAL SWAP", ps),
            "", _pct_line("COMMIT LIMIT", mi.commit_limit, None, "", ps),
            _pct_line("COMMITTED", mi.committed, mi.commit_limit, "TOTAL LIMIT", ps)]
    return "\n".join(out) + "\n"
