"""Memory zones and the buddy allocator's free areas, from the dump alone (BTF for layout).

    zones(prog)        # [Zone]: node, index, name, spanned/present/managed pages, watermarks,
                       #         the zone's vm_stat counters, free blocks per order

Each online node's pglist_data holds node_zones[MAX_NR_ZONES]; a zone with no spanned pages
is kept (crash lists them too) with zero counts. free_area[order].nr_free counts free blocks
of 2^order pages; their sum in pages is the zone's NR_FREE_PAGES, a cross-check the caller
can make. Watermarks: _watermark[WMARK_MIN/LOW/HIGH] (watermark[] before 5.0), plus
watermark_boost where the kernel has it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import CorruptKernelDataError, MemoryReadError, TypeLookupError, VmcorekitError, partial_result
from ..program.objects import Object
from .memmap import node_pgdats

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["Zone", "zones"]

_MAX_ZONES = 16
_MAX_ORDER = 16  # MAX_ORDER is 11 on most kernels, up to 13 with large pages
_MAX_PAGES = 1 << 48


@dataclass
class Zone:
    node: int
    index: int
    address: int
    name: str
    start_pfn: int
    spanned: int
    present: int
    managed: int
    watermarks: dict[str, int]
    vm_stat: dict[str, int]
    free_blocks: list[int] = field(default_factory=list)  # per order: nr_free
    free_area_addresses: list[int] = field(default_factory=list)
    # per order: (migrate type name, list_head address, blocks counted on that list)
    free_lists: list[list[tuple[str, int, int]]] = field(default_factory=list)

    @property
    def free_pages_buddy(self) -> int:
        return sum(n << o for o, n in enumerate(self.free_blocks))

    def as_dict(self) -> dict[str, Any]:
        return {"node": self.node, "zone": self.index, "address": self.address, "name": self.name,
                "start_pfn": self.start_pfn, "spanned_pages": self.spanned,
                "present_pages": self.present, "managed_pages": self.managed,
                "watermarks": self.watermarks, "vm_stat": self.vm_stat,
                "free_areas": [{"order": o, "blocks": n, "pages": n << o, "address": a,
                                "by_migratetype": {m: c for m, _, c in fl}}
                               for o, (n, a, fl) in enumerate(zip(self.free_blocks, self.free_area_addresses,
                                                                  self.free_lists))]}


def _enum(prog: "Program", tag: str) -> list[tuple[str, int]]:
    try:
        return list(prog.types.lookup(f"enum {tag}").strip_typedefs().enumerators or [])
    except (TypeLookupError, VmcorekitError):
        return []


def _long_array(prog: "Program", addr: int, n: int) -> list[int]:
    ps = prog.space.pointer_size
    raw = prog.read(addr, n * ps)
    return [int.from_bytes(raw[i * ps:(i + 1) * ps], "little", signed=True) for i in range(n)]


def zones(prog: "Program") -> list[Zone]:
    """Every zone of every online node, in node then zone order."""
    if not prog.has_btf:
        raise TypeLookupError("zones need struct zone's layout, which only BTF gives")
    T = prog.types
    zsize = T.sizeof("struct zone")
    o_zones = T.offsetof("struct pglist_data", "node_zones")
    arr = T.lookup("struct pglist_data").member("node_zones").type.strip_typedefs()
    nzones = min(arr.length or 0, _MAX_ZONES)
    wm_member = "_watermark" if T.has_member("struct zone", "_watermark") else "watermark"
    wm_names = [(n[len("WMARK_"):].lower(), v) for n, v in _enum(prog, "zone_watermarks")
                if n.startswith("WMARK_") and n != "WMARK_NR"][:3] or [("min", 0), ("low", 1), ("high", 2)]
    stat_items = [(n, v) for n, v in _enum(prog, "zone_stat_item") if not n.startswith("NR_VM_")]
    out: list[Zone] = []
    for node, pgdat in enumerate(node_pgdats(prog)):
        try:
            nid = int(Object(prog, "struct pglist_data", address=pgdat).node_id)
        except (VmcorekitError, LookupError):
            nid = node
        for zi in range(nzones):
            addr = pgdat + o_zones + zi * zsize
            try:
                out.append(_zone(prog, nid, zi, addr, wm_member, wm_names, stat_items))
            except (MemoryReadError, CorruptKernelDataError) as e:
                partial_result(f"zone {zi} of node {nid} at {addr:#x}: {e}")
    return out


def _zone(prog: "Program", nid: int, zi: int, addr: int, wm_member: str,
          wm_names: list[tuple[str, int]], stat_items: list[tuple[str, int]]) -> Zone:
    z = Object(prog, "struct zone", address=addr)
    try:
        name = prog.read_cstring(int(z.name), 32).decode("utf-8", "backslashreplace")
    except MemoryReadError:
        name = "?"
    managed = z.managed_pages
    managed_v = int(managed.counter) if prog.types.has_member(managed.type_, "counter") else int(managed)
    spanned, present = int(z.spanned_pages), int(z.present_pages)
    for what, v in (("spanned", spanned), ("present", present), ("managed", managed_v)):
        if not 0 <= v <= _MAX_PAGES:
            raise CorruptKernelDataError(f"{what} pages {v}")
    wm = getattr(z, wm_member)
    watermarks = {n: int(wm[i]) for n, i in wm_names}
    if prog.types.has_member("struct zone", "watermark_boost"):
        watermarks["boost"] = int(z.watermark_boost)
    vs = z.vm_stat
    values = _long_array(prog, vs.address_, max((v for _, v in stat_items), default=-1) + 1)
    stat = {n: values[v] for n, v in stat_items}
    fa = z.free_area
    norder = min(len(fa), _MAX_ORDER)
    fa_size = prog.types.sizeof("struct free_area")
    blocks, addrs = [], []
    for o in range(norder):
        a = fa.address_ + o * fa_size
        n = int(Object(prog, "struct free_area", address=a).nr_free)
        if n > _MAX_PAGES >> o:
            raise CorruptKernelDataError(f"free_area[{o}].nr_free is {n}")
        blocks.append(n)
        addrs.append(a)
    zone = Zone(nid, zi, addr, name, int(z.zone_start_pfn), spanned, present, managed_v,
                watermarks, stat, blocks, addrs)
    if spanned:  # an unpopulated zone's lists were never initialised (NULL, not empty)
        zone.free_lists = [_free_lists(prog, a, n, f"zone {name} order {o}")
                           for o, (n, a) in enumerate(zip(blocks, addrs))]
    else:
        zone.free_lists = [[] for _ in blocks]
    return zone


def _free_lists(prog: "Program", fa: int, nr_free: int, what: str) -> list[tuple[str, int, int]]:
    """Blocks on each migrate type's free list of one free_area, walked (as crash does) and
    bounded by nr_free plus slack: a looping or broken list is reported and stops there."""
    from .lists import list_nodes
    names = [n[len("MIGRATE_"):] for n, v in sorted(_enum(prog, "migratetype"), key=lambda x: x[1])
             if n.startswith("MIGRATE_") and n not in ("MIGRATE_TYPES", "MIGRATE_PCPTYPES")]
    t = prog.types.lookup("struct free_area").member("free_list").type.strip_typedefs()
    o_fl = prog.offsetof("struct free_area", "free_list")
    lh = prog.types.sizeof("struct list_head")
    out = []
    for i in range(min(t.length or 0, 16)):
        head = fa + o_fl + i * lh
        n = 0
        try:
            for _ in list_nodes(prog, head, what=f"{what} free list {i}", limit=nr_free + 1024):
                n += 1
        except (MemoryReadError, CorruptKernelDataError) as e:
            partial_result(f"{e} (after {n} blocks)")
        out.append((names[i] if i < len(names) else str(i), head, n))
    return out
