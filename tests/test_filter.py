"""vmcorekit.filter on synthetic inputs: classification against a page-by-page transliteration
of makedumpfile's __exclude_unnecessary_pages(), memory models, the writers, the sinks."""
from __future__ import annotations

import errno
import io
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elfgen import build_core, note
from vmcorekit.dump import open_dump
from vmcorekit.errors import CorruptKernelDataError, PageNotInDumpError, VmcorekitError
from vmcorekit.filter import FilterError, FilterOptions, OutputError, run_filter
from vmcorekit.filter.bitmaps import PfnBitmap
from vmcorekit.filter.classify import (CACHE, CACHE_PRIVATE, FREE, HWPOISON, KEEP, OFFLINE, USER, Carry,
                                       PageClassifier, page_predicates, resolve)
from vmcorekit.filter.elf_writer import InputSegment, plan_loads
from vmcorekit.filter.flat_writer import FlatSink, reassemble
from vmcorekit.filter.job import reassemble_stream
from vmcorekit.filter.sink import FileSink, NullSink
from vmcorekit.kernel.memmap import PageLayout, TypeMatch, find_memory_model
from vmcorekit.vmcoreinfo import VmcoreInfo

# Linux 6.1 x86_64 (the corpus kernel's VMCOREINFO)
VMCI_61 = """OSRELEASE=6.1.0-test
PAGESIZE=4096
SYMBOL(mem_section)=ffff888000100000
LENGTH(mem_section)=4096
SIZE(mem_section)=32
OFFSET(mem_section.section_mem_map)=0
NUMBER(SECTION_SIZE_BITS)=27
NUMBER(MAX_PHYSMEM_BITS)=46
SIZE(page)=64
OFFSET(page.flags)=0
OFFSET(page._refcount)=52
OFFSET(page.mapping)=24
OFFSET(page.lru)=8
OFFSET(page._mapcount)=48
OFFSET(page.private)=40
OFFSET(page.compound_dtor)=16
OFFSET(page.compound_order)=17
OFFSET(page.compound_head)=8
LENGTH(zone.free_area)=11
NUMBER(PG_lru)=4
NUMBER(PG_private)=13
NUMBER(PG_swapcache)=10
NUMBER(PG_swapbacked)=19
NUMBER(PG_slab)=9
NUMBER(PG_hwpoison)=23
NUMBER(PG_head_mask)=65536
NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129
NUMBER(HUGETLB_PAGE_DTOR)=2
NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-257
"""
PG = {"lru": 4, "private": 13, "swapcache": 10, "swapbacked": 19, "slab": 9, "hwpoison": 23}
HEAD = 1 << 16
BUDDY, OFFLINE_MC = (-129) & 0xFFFFFFFF, (-257) & 0xFFFFFFFF


def vi61(extra: str = "") -> VmcoreInfo:
    return VmcoreInfo.parse(VMCI_61 + extra)


def struct_pages(pages: list[dict]) -> bytes:
    out = bytearray(64 * len(pages))
    for i, p in enumerate(pages):
        struct.pack_into("<Q", out, i * 64, p.get("flags", 0))
        struct.pack_into("<Q", out, i * 64 + 8, p.get("chead", 0))
        out[i * 64 + 16] = p.get("dtor", 0)
        out[i * 64 + 17] = p.get("order", 0)
        struct.pack_into("<Q", out, i * 64 + 24, p.get("mapping", 0))
        struct.pack_into("<Q", out, i * 64 + 40, p.get("private", 0))
        struct.pack_into("<I", out, i * 64 + 48, p.get("mapcount", 0xFFFFFFFF))
    return bytes(out)


def reference(pages: list[dict], pfn0: int, level: int, chunks: list[tuple[int, int]],
              in_dump: list[bool]) -> list[int]:
    """makedumpfile 1.7.2's loop, page by page, one call per mem_map chunk [a, b) (indices);
    returns the class that first cleared each page (KEEP if none)."""
    out = [KEEP] * len(pages)

    def bit(p: dict, name: str) -> bool:
        return bool(p.get("flags", 0) >> PG[name] & 1)

    for a, b in chunks:
        i = a
        while i < b:
            p, pfn = pages[i], pfn0 + i
            if not in_dump[i]:  # is_in_segs(): a pfn the dump lacks is not looked at
                i += 1
                continue
            order, dtor = 0, 0
            if pfn % 512 != 511 and p.get("flags", 0) & HEAD:
                nxt = pages[i + 1] if i + 1 < len(pages) else {}
                order, dtor = nxt.get("order", 0), nxt.get("dtor", 0)
                if order >= 64 or pfn & ((1 << order) - 1):
                    order = 0
            nr = 1 << order
            slab = bit(p, "slab")
            anon = bool(p.get("mapping", 0) & 1) and not slab
            cache = bit(p, "lru") or (bit(p, "swapbacked") and bit(p, "swapcache"))
            mapcount = p.get("mapcount", 0xFFFFFFFF)
            if p.get("chead", 0) & 1:
                i += 1
                continue
            if level & 16 and not slab and mapcount == BUDDY:
                if p.get("private", 0) >= 11:
                    i += 1
                    continue
                nr, cls = 1 << p.get("private", 0), FREE
            elif level & 2 and cache and not bit(p, "private") and not anon:
                cls = CACHE
            elif level & 4 and cache and not anon:
                cls = CACHE_PRIVATE if bit(p, "private") else CACHE
            elif level & 8 and (anon or dtor == 2):
                cls = USER
            elif bit(p, "hwpoison"):
                cls = HWPOISON
            elif not slab and mapcount == OFFLINE_MC:
                cls = OFFLINE
            else:
                i += 1
                continue
            for j in range(i, min(i + nr, len(pages))):
                if out[j] == KEEP:
                    out[j] = cls
            i += nr
    return out


flag_bits = st.sampled_from([0, 1 << PG["lru"], (1 << PG["lru"]) | (1 << PG["private"]),
                             (1 << PG["swapcache"]) | (1 << PG["swapbacked"]), 1 << PG["swapcache"],
                             1 << PG["slab"], 1 << PG["hwpoison"], HEAD, HEAD | (1 << PG["lru"])])
page_st = st.fixed_dictionaries({
    "flags": flag_bits,
    "mapping": st.sampled_from([0, 0xFFFF888001234560, 0xFFFF888001234561, 0xFFFF888001234562]),
    "mapcount": st.sampled_from([0xFFFFFFFF, 0, 1, BUDDY, OFFLINE_MC]),
    "private": st.sampled_from([0, 1, 2, 3, 9, 12]),
    "chead": st.sampled_from([0, 0, 0, 0xFFFFEA0000001001]),
    "order": st.sampled_from([0, 1, 2, 3, 9, 70]),
    "dtor": st.sampled_from([0, 1, 2]),
})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pages=st.lists(page_st, min_size=1, max_size=1100), level=st.integers(0, 31),
       pfn0=st.sampled_from([0, 0x200, 0x1F0, 0x8000]), cut=st.floats(0, 1), same=st.booleans(),
       in_dump=st.floats(0, 1))
def test_classification_matches_makedumpfile_loop(pages: list[dict], level: int, pfn0: int, cut: float,
                                                  same: bool, in_dump: float) -> None:
    layout = PageLayout.from_vmcoreinfo(vi61())
    n = len(pages)
    k = int(n * cut)
    raw = struct_pages(pages)
    ev = np.ones(n, dtype=bool)
    drop = int(n * in_dump) // 3
    ev[drop:drop * 2] = False  # pages outside the dump are not looked at
    # reference: either one mem_map cut in two (same map) or two mem_maps
    want = reference(pages, pfn0, level, [(0, n)] if same else [(0, k), (k, n)], ev.tolist())
    got = np.zeros(n, dtype=np.int8)
    carry = Carry()
    for a, b in ((0, k), (k, n)):
        if a == b:
            continue
        p = page_predicates(layout, raw[a * 64:(b + 1) * 64], pfn0 + a, b - a)
        carry.same_map = same or a == 0
        cls, carry = resolve(p, level, ev[a:b], carry)
        got[a:b] = cls
    # pages outside the dump never start an exclusion, but a block may cover them
    diff = [i for i in range(n) if got[i] != want[i]]
    assert not diff, (level, pfn0, k, same, n, diff[:5], [(i, pages[i], bool(ev[i]), int(got[i]), want[i])
                                                          for i in range(max(0, diff[0] - 3), min(n, diff[0] + 3))])


def test_type_match_encodings() -> None:
    old = TypeMatch(-129)
    words = np.array([0xFFFFFF7F, 0xFFFFFFFF, 0xFFFFFE7F, 0], dtype=np.uint32)
    assert old.equal(words).tolist() == [True, False, False, False]
    slab610 = TypeMatch(~0x02000000, base=0x80000000)  # 6.10: PG_slab = 0x02000000
    assert slab610.bit_clear(np.array([~0x02000000 & 0xFFFFFFFF, 0xFFFFFFFF], np.uint32)).tolist() == [True, False]
    new = TypeMatch(0xF0 << 24)  # 6.12: PGTY_buddy << 24, low 24 bits may hold data
    assert new.equal(np.array([0xF0000000, 0xF0000123, 0xF1000000], np.uint32)).tolist() == [True, True, False]


def test_layout_follows_vmcoreinfo_not_versions() -> None:
    lay = PageLayout.from_vmcoreinfo(vi61())
    assert (lay.order_kind, lay.order_off, lay.dtor_kind, lay.dtor_off) == ("u8", 17, "u8", 16)
    assert lay.buddy_method == "mapcount"
    # 6.3+: folio fields, given relative to the folio (page[0]); order/dtor live in page[1]
    lay = PageLayout.from_vmcoreinfo(VmcoreInfo.parse(VMCI_61.replace("OFFSET(page.compound_dtor)=16\n", "")
                                                      .replace("OFFSET(page.compound_order)=17\n", "")
                                                      + "OFFSET(folio._folio_dtor)=80\nOFFSET(folio._folio_order)=81\n"))
    assert (lay.order_kind, lay.order_off, lay.dtor_off) == ("u8", 17, 16)
    # 6.9+: hugetlb is a page type; order in page[1].flags
    lay = PageLayout.from_vmcoreinfo(vi61("NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)=-2049\n"))
    assert lay.order_kind == "flags1" and lay.hugetlb_type is not None and lay.dtor_kind == "none"
    # no buddy type: free pages come from the free lists
    lay = PageLayout.from_vmcoreinfo(VmcoreInfo.parse(VMCI_61.replace("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\n", "")))
    assert lay.buddy_method == "freelist"
    with pytest.raises(VmcorekitError):
        PageLayout.from_vmcoreinfo(VmcoreInfo.parse("PAGESIZE=4096\n"))


def test_newer_hugetlb_and_flags1_order() -> None:
    lay = PageLayout.from_vmcoreinfo(vi61("NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)=-2049\n"))
    # head of an order-2 hugetlb folio at pfn 4: page_type says hugetlb, page[1].flags low byte = order
    pages = [{} for _ in range(8)]
    pages[4] = {"flags": HEAD, "mapcount": (-2049) & 0xFFFFFFFF}
    pages[5] = {"flags": 2, "chead": 0x1001}
    pages[6] = {"chead": 0x1001}
    pages[7] = {"chead": 0x1001}
    p = page_predicates(lay, struct_pages(pages) + bytes(64), 0, 8)
    cls, _ = resolve(p, 8, np.ones(8, bool), Carry())
    assert cls.tolist() == [0, 0, 0, 0, USER, USER, USER, USER]


class FakeSpace:
    """Kernel virtual memory made of byte blobs at given addresses."""

    pointer_size = 8
    byteorder = "little"

    def __init__(self) -> None:
        self.blobs: list[tuple[int, bytearray]] = []

    def put(self, addr: int, data: bytes) -> None:
        self.blobs.append((addr, bytearray(data)))

    def read(self, vaddr: int, size: int) -> bytes:
        for base, blob in reversed(self.blobs):  # the latest write wins
            if base <= vaddr and vaddr + size <= base + len(blob):
                return bytes(blob[vaddr - base:vaddr - base + size])
        raise PageNotInDumpError(vaddr, "not in the fake memory")


def _sparse_space(pages_per_section: dict[int, list[dict]], vmemmap: int = 0xFFFFEA0000000000) -> FakeSpace:
    sp = FakeSpace()
    roots = 0xFFFF888000100000
    root0 = 0xFFFF888000200000
    sp.put(roots, struct.pack("<Q", root0) + bytes(8 * 4095))
    secs = bytearray(4096)
    for nr, pages in pages_per_section.items():
        struct.pack_into("<Q", secs, nr * 32, vmemmap | 0x7)  # present | has_mem_map | online
        sp.put(vmemmap + nr * 32768 * 64, struct_pages(pages) + bytes(64))
    sp.put(root0, bytes(secs))
    return sp


def test_sparsemem_extreme_model_and_classifier() -> None:
    sec0 = [{} for _ in range(32768)]
    sec0[100] = {"mapcount": BUDDY, "private": 2}  # free block 100..103 (aligned? no: 100 % 4 == 0)
    sec0[200] = {"flags": 1 << PG["lru"]}
    sec2 = [{"flags": 1 << PG["lru"], "mapping": 1} for _ in range(32768)]
    sp = _sparse_space({0: sec0, 2: sec2})
    vi = vi61()
    model = find_memory_model(sp, vi, 3 * 32768 + 10)
    assert model.kind == "sparsemem_extreme"
    assert [(c.pfn_start, c.pfn_end) for c in model.chunks] == [(0, 32768), (65536, 98304)]
    assert model.max_mapnr == 98304  # clipped to the last mem_map, as makedumpfile does
    pc = PageClassifier(sp, vi, 3 * 32768 + 10)
    res = {a: cls for a, (cls,) in pc.run([31], lambda a, b: np.ones(b - a, bool))}
    assert res[0][100:104].tolist() == [FREE] * 4 and res[0][104] == KEEP
    assert res[0][200] == CACHE
    assert set(res[65536].tolist()) == {USER}  # anonymous LRU pages are user data, not cache


def test_sparsemem_section_unreadable_is_kept() -> None:
    sp = _sparse_space({0: [{"mapcount": BUDDY} for _ in range(32768)]})
    sp.blobs = [b for b in sp.blobs if b[0] != 0xFFFFEA0000000000]  # struct pages missing
    pc = PageClassifier(sp, vi61(), 32768)
    out = list(pc.run([31], lambda a, b: np.ones(b - a, bool)))
    assert all((cls == KEEP).all() for _, (cls,) in out)
    assert pc.unreadable_pages == 32768 and pc.warnings


def test_flatmem_model() -> None:
    sp = FakeSpace()
    mem_map = 0xFFFF888000400000
    sp.put(0xFFFFFFFF81000000, struct.pack("<Q", mem_map))
    sp.put(0xFFFFFFFF81001000, bytes(4096))  # contig_page_data
    struct_start = {"pglist_data.node_start_pfn": 64, "pglist_data.node_spanned_pages": 72}
    blob = bytearray(4096)
    struct.pack_into("<QQ", blob, 64, 16, 100)
    sp.blobs[-1] = (0xFFFFFFFF81001000, blob)
    pages = [{"flags": 1 << PG["lru"]} for _ in range(100)]
    sp.put(mem_map, struct_pages(pages) + bytes(64))
    vi = VmcoreInfo.parse("\n".join(line for line in VMCI_61.splitlines() if "mem_section" not in line) + "\n"
                          "SYMBOL(mem_map)=ffffffff81000000\nSYMBOL(contig_page_data)=ffffffff81001000\n"
                          + "".join(f"OFFSET({k})={v}\n" for k, v in struct_start.items()))
    model = find_memory_model(sp, vi, 4096)
    assert model.kind == "flatmem" and (model.chunks[0].pfn_start, model.chunks[0].pfn_end) == (16, 116)
    pc = PageClassifier(sp, vi, 4096)
    (a, (cls,)), = list(pc.run([2], lambda a, b: np.ones(b - a, bool)))
    assert a == 16 and (cls == CACHE).all()


def test_free_lists_walk_and_cycles() -> None:
    sp = _sparse_space({0: [{} for _ in range(32768)]})
    vmemmap = 0xFFFFEA0000000000
    pgdat, zone_off, free_area_off = 0xFFFF888000300000, 0, 256
    extra = ("SYMBOL(contig_page_data)=ffff888000300000\nSIZE(zone)=1536\nSIZE(free_area)=88\nSIZE(list_head)=16\n"
             "OFFSET(pglist_data.node_zones)=0\nOFFSET(pglist_data.nr_zones)=1400\nOFFSET(zone.free_area)=256\n"
             "OFFSET(zone.spanned_pages)=144\nOFFSET(free_area.free_list)=0\nOFFSET(list_head.next)=0\n"
             "OFFSET(list_head.prev)=8\nLENGTH(free_area.free_list)=1\n")
    vi = VmcoreInfo.parse(VMCI_61.replace("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\n", "") + extra)
    blob = bytearray(2048)
    struct.pack_into("<I", blob, 1400, 1)  # one zone
    struct.pack_into("<Q", blob, zone_off + 144, 1000)  # spanned
    head = pgdat + zone_off + free_area_off + 88 * 3  # order 3 list
    e1, e2 = vmemmap + 64 * 40 + 8, vmemmap + 64 * 800 + 8  # &page->lru of pfns 40 and 800
    struct.pack_into("<QQ", blob, head - pgdat, e1, e2)
    for o in range(11):
        if o != 3:
            h = pgdat + free_area_off + 88 * o
            struct.pack_into("<QQ", blob, h - pgdat, h, h)
    sp.put(pgdat, bytes(blob))
    sp.put(e1, struct.pack("<QQ", e2, head))
    sp.put(e2, struct.pack("<QQ", head, e1))
    pc = PageClassifier(sp, vi, 32768)
    assert pc.layout.buddy_method == "freelist"
    assert pc.free_list_pfns().tolist() == list(range(40, 48)) + list(range(800, 808))
    sp.blobs[-1] = (e2, bytearray(struct.pack("<QQ", e1, e1)))  # a cycle with a broken back link
    with pytest.raises(CorruptKernelDataError):
        pc.free_list_pfns()


# -- bitmaps -----------------------------------------------------------------------------------

def test_pfn_bitmap_runs_and_ranges() -> None:
    bm = PfnBitmap(100)
    bm.set_range(3, 20)
    bm.set_range(64, 99)
    assert bm.runs() == [(3, 20), (64, 99)] and bm.count() == 17 + 35
    assert bm.clear_where(10, np.ones(5, bool)) == 5
    assert bm.runs(0, 70) == [(3, 10), (15, 20), (64, 70)]
    assert bm.nth_set(np.array([0, 7, 12])).tolist() == [3, 15, 64]
    assert len(bm.tobytes(4096)) == 4096


# -- ELF planning ------------------------------------------------------------------------------

def test_elf_plan_splits_only_at_long_excluded_runs() -> None:
    ps = 4096
    bm = PfnBitmap(2000)
    bm.set_range(0, 2000)
    bm.set_range(100, 355, False)  # 255 pages: stays in the file
    bm.set_range(500, 756, False)  # 256 pages: a new PT_LOAD
    bm.set_range(1990, 2000, False)  # trailing: left out of p_filesz
    loads = plan_loads([InputSegment(0, 2000 * ps, 0xFFFF888000000000)], bm, ps)
    assert [(ld.paddr // ps, ld.memsz // ps, ld.filesz // ps) for ld in loads] == [(0, 756, 500), (756, 1244, 1234)]
    assert loads[1].vaddr == 0xFFFF888000000000 + 756 * ps
    # a segment ending mid-page: its last page counts its own bytes
    bm2 = PfnBitmap(10)
    bm2.set_range(0, 10)
    (ld,) = plan_loads([InputSegment(ps, 3 * ps + 100, 0)], bm2, ps)
    assert (ld.memsz, ld.filesz) == (3 * ps + 100, 3 * ps + 100)


# -- jobs on small synthetic dumps (no VMCOREINFO: levels 0 and 1) ------------------------------

def _pages(n: int) -> bytes:
    out = bytearray()
    for i in range(n):
        out += bytes(4096) if i % 3 == 0 else (f"page {i:05d} ".encode() * 400)[:4096]
    return bytes(out)


@pytest.fixture()
def small_elf(tmp_path: Path) -> Path:
    notes = note(b"CORE", 1, bytes(336)) + note(b"CORE", 1, bytes(336))
    data = _pages(300)
    p = tmp_path / "small.elf"
    p.write_bytes(build_core([(0xFFFF888000000000, 0, data[:100 * 4096]), (0, 0x100000, data[100 * 4096:])], notes))
    return p


@pytest.mark.parametrize("codec", ["zlib", "lzo", "snappy", "zstd", "none"])
def test_kdump_round_trip(small_elf: Path, tmp_path: Path, codec: str) -> None:
    out = tmp_path / "out.kdump"
    st = run_filter(str(small_elf), [str(out)], FilterOptions(level=1, codec=codec, threads=2, batch_pages=16))
    assert st.excluded["zero"] == 100
    with open_dump(str(small_elf)) as src, open_dump(str(out)) as dst:
        assert dst.info.dump_level == 1 and dst.info.extra["nr_cpus"] == 2
        assert len(dst.dumped_pfns()) == 300  # zero pages stay in the 2nd bitmap ...
        for pfn in list(range(0, 100)) + list(range(256, 456)):
            assert dst.read(pfn * 4096, 4096) == src.read(pfn * 4096, 4096)
        assert dst.page_state(0).value == "zero"  # ... pointing at the shared zero page
        if codec != "none":
            assert codec in (dst.info.codec or "")
    assert out.stat().st_mode & 0o777 == 0o600


def test_elf_output_and_zero_pages(small_elf: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.elf"
    run_filter(str(small_elf), [str(out)], FilterOptions(level=1, elf=True))
    with open_dump(str(small_elf)) as src, open_dump(str(out)) as dst:
        # zero pages form no run of 256: they stay in the file, with their (zero) bytes ...
        for pfn in (0, 1, 98, 256, 455):
            assert dst.read(pfn * 4096, 4096) == src.read(pfn * 4096, 4096)
        # ... except at the end of a segment, which p_filesz stops short of
        assert dst.page_state(99).value == "excluded"
        assert [s.vaddr for s in dst.virtual_segments][0] == 0xFFFF888000000000


def test_split_and_flattened(small_elf: Path, tmp_path: Path) -> None:
    names = [str(tmp_path / f"p{i}") for i in range(3)]
    run_filter(str(small_elf), names, FilterOptions(level=0, codec="zstd", split=3))
    buf = io.BytesIO()
    run_filter(str(small_elf), None, FilterOptions(level=0, codec="zstd"), stream=buf)
    flat = tmp_path / "flat"
    flat.write_bytes(buf.getvalue())
    rebuilt = tmp_path / "rebuilt"
    reassemble_stream(io.BytesIO(buf.getvalue()), str(rebuilt))
    with open_dump(names) as parts, open_dump(str(flat)) as f, open_dump(str(rebuilt)) as r, \
            open_dump(str(small_elf)) as src:
        assert [p.dumpable_pages for p in parts.parts] == [100, 100, 100]
        for pfn in (5, 99, 300, 455):
            want = src.read(pfn * 4096, 4096)
            assert parts.read(pfn * 4096, 4096) == want == f.read(pfn * 4096, 4096) == r.read(pfn * 4096, 4096)


def test_refuses_levels_needing_vmcoreinfo(small_elf: Path, tmp_path: Path) -> None:
    with pytest.raises(VmcorekitError, match="VMCOREINFO"):
        run_filter(str(small_elf), [str(tmp_path / "x")], FilterOptions(level=31))
    assert not (tmp_path / "x").exists()


def test_max_size_fails_cleanly(small_elf: Path, tmp_path: Path) -> None:
    out = tmp_path / "big"
    with pytest.raises(OutputError, match="--max-size"):
        run_filter(str(small_elf), [str(out)], FilterOptions(level=0, codec="none", max_size=100_000))
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".big")]


def test_disk_full_leaves_no_file(small_elf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = FileSink._emit

    def full(self: FileSink, offset: int, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, offset, data)

    monkeypatch.setattr(FileSink, "_emit", full)
    out = tmp_path / "full"
    with pytest.raises(OutputError, match="no space left"):
        run_filter(str(small_elf), [str(out)], FilterOptions(level=0, codec="none"))
    assert list(tmp_path.iterdir()) == [small_elf]


def test_dry_run_counts_bytes(small_elf: Path, tmp_path: Path) -> None:
    st = run_filter(str(small_elf), None, FilterOptions(level=1, codec="zlib", dry_run=True))
    out = tmp_path / "real"
    run_filter(str(small_elf), [str(out)], FilterOptions(level=1, codec="zlib"))
    assert st.written == out.stat().st_size


def test_reassemble_rejects_cut_streams(tmp_path: Path) -> None:
    buf = io.BytesIO()
    sink = FlatSink(buf)
    sink.write_at(0, b"hello")
    sink.write_at(4096, b"world")
    sink.finish()
    data = buf.getvalue()
    out = NullSink()
    assert reassemble(io.BytesIO(data), out) == 2 and out.size == 4101
    with pytest.raises(FilterError, match="cut off"):
        reassemble(io.BytesIO(data[:-16]), NullSink())
    with pytest.raises(FilterError, match="signature"):
        reassemble(io.BytesIO(b"x" * 5000), NullSink())


def test_options_are_checked() -> None:
    with pytest.raises(FilterError):
        FilterOptions(level=32).check()
    with pytest.raises(FilterError):
        FilterOptions(elf=True, split=2).check()
    with pytest.raises(FilterError):
        FilterOptions(codec="gzip").check()


def test_cli_errors_are_one_line(small_elf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vmcorekit.cli.main import main
    assert main(["filter", "-d", "31", str(small_elf), str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "VMCOREINFO" in err
    assert main(["filter", "-E", "-c", str(small_elf), str(tmp_path / "o")]) == 2
    assert main(["filter", "-d", "0", "--no-progress", "--json", str(small_elf), str(tmp_path / "o")]) == 0
    assert '"dumped_pages": 300' in capsys.readouterr().out


def test_offline_pages_need_the_struct_page_walk() -> None:
    """makedumpfile walks struct pages at level 0 only because the kernel exports PG_hwpoison;
    without it, offline pages stay at levels that exclude nothing else."""
    sp = _sparse_space({0: [{"mapcount": OFFLINE_MC} for _ in range(32768)]})
    out = list(PageClassifier(sp, vi61(), 32768).run([0], lambda a, b: np.ones(b - a, bool)))
    assert (out[0][1][0] == OFFLINE).all()
    vi = VmcoreInfo.parse(VMCI_61.replace("NUMBER(PG_hwpoison)=23\n", ""))
    out = list(PageClassifier(sp, vi, 32768).run([0, 2], lambda a, b: np.ones(b - a, bool)))
    assert (out[0][1][0] == KEEP).all() and (out[0][1][1] == OFFLINE).all()
