"""x86_64 translation on page tables built from the architecture's documented entry format,
and on the real corpus against crash's `vtop`."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import DictMemory
from vmcorekit.arch.x86_64 import NX, PRESENT, PSE, RW, START_KERNEL_MAP, X86_64
from vmcorekit.errors import TranslationError
from vmcorekit.program import Program
from vmcorekit.vmcoreinfo import VmcoreInfo

ROOT = 0x100000  # physical address of the top-level table


class PageTables:
    """Builds 4- or 5-level tables in a DictMemory, allocating table pages as needed."""

    def __init__(self, mem: DictMemory, levels: int, sme_mask: int = 0) -> None:
        self.mem, self.levels, self.sme = mem, levels, sme_mask
        self.next_table = ROOT + 0x1000
        mem.page(ROOT >> 12)

    def _alloc(self) -> int:
        t = self.next_table
        self.next_table += 0x1000
        self.mem.page(t >> 12)
        return t

    def map(self, vaddr: int, paddr: int, size: int = 4096, flags: int = PRESENT | RW) -> None:
        shifts = [48, 39, 30, 21, 12][5 - self.levels:]
        leaf_shift = {4096: 12, 2 << 20: 21, 1 << 30: 30}[size]
        table = ROOT
        for shift in shifts:
            entry_pa = table + ((vaddr >> shift) & 511) * 8
            if shift == leaf_shift:
                self.mem.write_u64(entry_pa, paddr | flags | self.sme | (PSE if shift > 12 else 0))
                return
            e = int.from_bytes(self.mem.read(entry_pa, 8), "little")
            if not e & PRESENT:
                nt = self._alloc()
                e = nt | PRESENT | RW | self.sme
                self.mem.write_u64(entry_pa, e)
            table = e & 0x000FFFFFFFFFF000 & ~self.sme


def make_space(levels: int, sme_mask: int = 0, phys_base: int = 0, extra: str = "") -> tuple[X86_64, PageTables]:
    mem = DictMemory()
    pt = PageTables(mem, levels, sme_mask)
    root_v = START_KERNEL_MAP + ROOT - phys_base
    text = (f"OSRELEASE=6.1.0\nPAGESIZE=4096\nSYMBOL(init_top_pgt)={root_v:x}\n"
            f"NUMBER(pgtable_l5_enabled)={1 if levels == 5 else 0}\nNUMBER(phys_base)={phys_base}\n"
            f"NUMBER(sme_mask)={sme_mask}\n{extra}")
    return X86_64(mem, VmcoreInfo.parse(text)), pt


@pytest.mark.parametrize("levels", [4, 5])
@pytest.mark.parametrize("size", [4096, 2 << 20, 1 << 30])
def test_walk_each_page_size(levels: int, size: int) -> None:
    space, pt = make_space(levels)
    va = 0xFFFFC90000000000 if levels == 4 else 0xFFA0000000000000
    pa = 0x40000000
    pt.map(va, pa, size)
    space._tlb.clear()
    for off in (0, 8, size - 8):
        assert space.translate(va + off) == pa + off
    t = space.explain(va + 16)
    assert t.page_size == size and t.paddr == pa + 16
    assert len(t.steps) == levels - {4096: 0, 2 << 20: 1, 1 << 30: 2}[size]


def test_sme_mask_is_removed_from_entries() -> None:
    sme = 1 << 47
    space, pt = make_space(4, sme_mask=sme)
    pt.map(0xFFFFC90000001000, 0x5000)
    assert space.translate(0xFFFFC90000001234) == 0x5234


def test_not_present_raises_with_address() -> None:
    space, _ = make_space(4)
    with pytest.raises(TranslationError, match="0xffffc90000000000"):
        space.translate(0xFFFFC90000000000)


def test_kernel_image_is_linear_with_phys_base() -> None:
    space, _ = make_space(4, phys_base=0x1000000)
    assert space.translate(START_KERNEL_MAP + 0x2345) == 0x1002345


def test_direct_map_discovered_from_page_tables() -> None:
    # A randomized direct map: first mapping above the default base maps physical 0.
    base = 0xFFFF9A4000000000
    mem_section = base + 0x3000000
    space, pt = make_space(4, extra=f"SYMBOL(mem_section)={mem_section:x}\n")
    pt.map(base, 0, 1 << 30)
    again = X86_64(space.phys, space.vmcoreinfo)
    assert again.page_offset == base
    assert again.translate(base + 0x1234) == 0x1234


@settings(max_examples=60, deadline=None)
@given(st.integers(0, (1 << 27) - 1), st.sampled_from([4096, 2 << 20, 1 << 30]), st.integers(0, 4095))
def test_property_translate_roundtrip(slot: int, size: int, off: int) -> None:
    space, pt = make_space(5)
    va = (0xFF80000000000000 + slot * size) & ~(size - 1)
    pa = (slot * size) & ((1 << 46) - 1) & ~(size - 1)
    pt.map(va, pa, size, PRESENT | RW | NX)
    assert space.translate(va + off) == pa + off


# -- real dumps --------------------------------------------------------------------------------
def _crash_vtop(path) -> tuple[int, int]:
    lines = path.read_text().splitlines()
    va, pa = lines[1].split()[:2]
    return int(va, 16), int(pa, 16)


@pytest.mark.corpus
@pytest.mark.parametrize("which", ["init_task", "mem_section"])
def test_vtop_matches_crash(corpus_case, corpus_elf, which: str) -> None:
    va, pa = _crash_vtop(corpus_case / "expected" / "crash" / f"vtop-{which}.txt")
    with Program.open(corpus_elf) as prog:
        assert prog.space.translate(va) == pa
        t = prog.space.explain(va)
        # The walk and the linear shortcut agree.
        assert t.steps and t.steps[-1].leaf
        walked = (t.steps[-1].entry & 0x000FFFFFFFFFF000 & ~(t.page_size - 1)) | (va & (t.page_size - 1))
        assert walked == pa


@pytest.mark.corpus
def test_module_addresses_translate(corpus_case, corpus_elf) -> None:
    # crash's `mod` lists each module's struct module address (module space, page-table walk);
    # the struct holds the module's name near its start.
    rows = [l.split() for l in (corpus_case / "expected" / "crash" / "mod.txt").read_text().splitlines()[1:]]
    with Program.open(corpus_elf) as prog:
        for row in rows:
            addr, name = int(row[0], 16), row[1].encode()
            assert prog.space.region_of(addr) is None  # not linear: walked
            assert name + b"\0" in prog.read(addr, 128)


@pytest.mark.corpus
def test_vmalloc_areas_translate(corpus_elf) -> None:
    # vmap_area_list (from VMCOREINFO) threads through direct-map structs describing vmalloc
    # ranges; most of those ranges map (guard pages aside).
    with Program.open(corpus_elf) as prog:
        vi = prog.vmcoreinfo
        head = vi.symbol("vmap_area_list")
        off_list, off_start = vi.offset("vmap_area.list"), vi.offset("vmap_area.va_start")
        pos, starts = prog.read_u64(head), []
        while pos != head and len(starts) < 50:
            starts.append(prog.read_u64(pos - off_list + off_start))
            pos = prog.read_u64(pos)
        assert len(starts) >= 10
        mapped = 0
        for va in starts:
            try:
                prog.space.translate(va)
                mapped += 1
            except TranslationError:
                pass
        assert mapped >= len(starts) * 3 // 4


@pytest.mark.corpus
def test_layout_facts(corpus_case, corpus_elf) -> None:
    vi = VmcoreInfo.parse((corpus_case / "vmcoreinfo.txt").read_bytes())
    with Program.open(corpus_elf) as prog:
        s = prog.space
        assert s.levels == (5 if vi.number("pgtable_l5_enabled") else 4)
        assert s.kaslr_offset == vi.kerneloffset
        # vmemmap as crash prints it: the page struct of the vtop'd page.
        crash = (corpus_case / "expected" / "crash" / "vtop-init_task.txt").read_text()
        m = re.search(r"^([0-9a-f]{16})\s+([0-9a-f]+)\s", crash.split("PAGE       PHYSICAL")[1].strip(), re.M)
        page_va, pa = int(m.group(1), 16), int(m.group(2), 16)
        assert s.vmemmap_base + (pa >> 12) * vi.size("page") == page_va
