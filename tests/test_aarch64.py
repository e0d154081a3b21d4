"""arm64 translation on page tables built from the Arm ARM's VMSAv8-64 descriptor formats
(4K/16K/64K granules, 36- to 52-bit VA, blocks, FEAT_LPA / FEAT_LPA2 address bits), register
notes, pointer authentication, and the real arm64 sample dump against drgn."""
from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SAMPLES, decompressed_elf
from fakes import DictMemory
from vmcorekit.arch import address_space
from vmcorekit.arch.aarch64 import AArch64, Geometry, flag_names
from vmcorekit.dump.base import Note
from vmcorekit.errors import TranslationError, VmcoreinfoError
from vmcorekit.vmcoreinfo import VmcoreInfo

MASK64 = (1 << 64) - 1
PHYS_OFFSET = 0x40000000
ROOT = 0x41000000  # physical address of swapper_pg_dir (64K aligned: fits every granule)

# Arm ARM D8.2 (translation table walk): per granule and input-address size, the lookup levels
# walked, the lowest VA bit each level resolves, and how many bits it indexes.
GEOMETRY = {
    (4096, 39): [(1, 30, 9), (2, 21, 9), (3, 12, 9)],
    (4096, 42): [(0, 39, 3), (1, 30, 9), (2, 21, 9), (3, 12, 9)],
    (4096, 48): [(0, 39, 9), (1, 30, 9), (2, 21, 9), (3, 12, 9)],
    (4096, 52): [(-1, 48, 4), (0, 39, 9), (1, 30, 9), (2, 21, 9), (3, 12, 9)],  # FEAT_LPA2
    (16384, 36): [(2, 25, 11), (3, 14, 11)],
    (16384, 47): [(1, 36, 11), (2, 25, 11), (3, 14, 11)],
    (16384, 48): [(0, 47, 1), (1, 36, 11), (2, 25, 11), (3, 14, 11)],
    (16384, 52): [(0, 47, 5), (1, 36, 11), (2, 25, 11), (3, 14, 11)],  # FEAT_LPA2
    (65536, 42): [(2, 29, 13), (3, 16, 13)],
    (65536, 48): [(1, 42, 6), (2, 29, 13), (3, 16, 13)],
    (65536, 52): [(1, 42, 10), (2, 29, 13), (3, 16, 13)],  # FEAT_LVA
}
# Levels where a block descriptor is permitted (D8.3.1), without / with the 52-bit features.
BLOCK_LEVELS = {4096: ({1, 2}, {0, 1, 2}), 16384: ({2}, {1, 2}), 65536: ({2}, {1, 2})}
CONFIGS = sorted(GEOMETRY)

VALID, TABLE_OR_PAGE, AF = 1, 2, 1 << 10
SH_INNER, ATTR_NORMAL, PXN, UXN = 3 << 8, 4 << 2, 1 << 53, 1 << 54


def _mask(hi: int, lo: int) -> int:
    return ((1 << (hi + 1)) - 1) & ~((1 << lo) - 1)


def oa_field(pa: int, page_size: int, big_pa: bool) -> int:
    """The output-address field of a descriptor (D8.3): bits [47:granule]; with 52-bit PA,
    64K granule: PA[51:48] in bits [15:12]; 4K/16K with TCR.DS=1: bits [49:granule] and
    PA[51:50] in bits [9:8]."""
    g = page_size.bit_length() - 1
    if big_pa and page_size != 65536:
        return (pa & _mask(49, g)) | (((pa >> 50) & 3) << 8)
    out = pa & _mask(47, g)
    if big_pa:
        out |= ((pa >> 48) & 0xF) << 12
    return out


class ArmTables:
    """Page tables in a DictMemory, allocating granule-sized tables as needed."""

    def __init__(self, mem: DictMemory, page_size: int, va_bits: int, big_pa: bool, root: int = ROOT) -> None:
        self.mem, self.ps, self.big_pa = mem, page_size, big_pa
        self.geo = GEOMETRY[(page_size, va_bits)]
        self.root = root
        self.next_table = 0x50000000
        mem.page(root >> 12)

    def _alloc(self) -> int:
        t = self.next_table
        self.next_table += self.ps
        return t

    def _read(self, pa: int) -> int:
        return int.from_bytes(self.mem.read(pa, 8), "little") if (pa >> 12) in self.mem.pages else 0

    def entry_address(self, vaddr: int, level: int) -> int:
        """Physical address of the descriptor for `vaddr` at `level` (tables must exist)."""
        table = self.root
        for lvl, shift, bits in self.geo:
            pa = table + ((vaddr >> shift) & ((1 << bits) - 1)) * 8
            if lvl == level:
                return pa
            table = self._table_of(self._read(pa))
        raise AssertionError(level)

    def _table_of(self, desc: int) -> int:
        g = self.ps.bit_length() - 1
        if self.big_pa and self.ps != 65536:
            return (desc & _mask(49, g)) | (((desc >> 8) & 3) << 50)
        pa = desc & _mask(47, g)
        if self.big_pa:
            pa |= ((desc >> 12) & 0xF) << 48
        return pa

    def map(self, vaddr: int, paddr: int, level: int = 3, attrs: int | None = None) -> None:
        if attrs is None:
            attrs = AF | ATTR_NORMAL | PXN | UXN | (0 if self.big_pa and self.ps != 65536 else SH_INNER)
        table = self.root
        for lvl, shift, bits in self.geo:
            entry_pa = table + ((vaddr >> shift) & ((1 << bits) - 1)) * 8
            if lvl == level:
                kind = TABLE_OR_PAGE if lvl == 3 else 0  # page at level 3, block above
                self.mem.write_u64(entry_pa, oa_field(paddr, self.ps, self.big_pa) | attrs | kind | VALID)
                return
            e = self._read(entry_pa)
            if not e & VALID:
                nt = self._alloc()
                self.mem.page(nt >> 12)
                e = oa_field(nt, self.ps, self.big_pa) | TABLE_OR_PAGE | VALID
                self.mem.write_u64(entry_pa, e)
            table = self._table_of(e)


def layout(va_bits: int, flipped: bool = True) -> dict[str, int]:
    va_min = min(va_bits, 48)
    if flipped:  # 5.4+: linear map in the lower half, image above PAGE_END + modules
        page_offset = -(1 << va_bits) & MASK64
        image = (-(1 << (va_min - 1)) + 0x8000000) & MASK64
        test_base = -(1 << (va_min - 2)) & MASK64
    else:  # before 5.4: image low (after VA_START + modules), linear map in the upper half
        page_offset = -(1 << (va_bits - 1)) & MASK64
        image = (-(1 << va_bits) + 0x8000000) & MASK64
        test_base = (-(1 << va_bits) + (1 << (va_bits - 2))) & MASK64
    return {"page_offset": page_offset, "image": image, "test_base": test_base}


def make_space(page_size: int = 4096, va_bits: int = 48, *, t1sz: int | None = None, big_pa: bool = False,
               flipped: bool = True, extra: str = "", mem: DictMemory | None = None,
               pac_mask: int = 0) -> tuple[AArch64, ArmTables]:
    """A kernel address space whose swapper_pg_dir is at physical ROOT."""
    mem = mem or DictMemory(machine="aarch64", size=1 << 52)
    walk_bits = va_bits if t1sz is None or page_size == 65536 else 64 - t1sz
    tables = ArmTables(mem, page_size, walk_bits, big_pa)
    lay = layout(va_bits, flipped)
    swapper_va = lay["image"] + 0x1000000
    voff = (swapper_va - ROOT) & MASK64
    t1 = t1sz if t1sz is not None else 64 - va_bits
    text = (f"OSRELEASE=6.1.0\nPAGESIZE={page_size}\nSYMBOL(swapper_pg_dir)={swapper_va:x}\n"
            f"SYMBOL(_stext)={lay['image'] + 0x10000:x}\nNUMBER(VA_BITS)={va_bits}\n"
            f"NUMBER(kimage_voffset)={voff:#x}\nNUMBER(PHYS_OFFSET)={PHYS_OFFSET:#x}\n"
            f"NUMBER(TCR_EL1_T1SZ)={t1:#x}\nNUMBER(MAX_PHYSMEM_BITS)={52 if big_pa else 48}\n"
            f"NUMBER(KERNELPACMASK)={pac_mask:#x}\nKERNELOFFSET=0\n{extra}")
    return AArch64(mem, VmcoreInfo.parse(text)), tables


def leaf_cases() -> list[tuple[int, int, int]]:
    out = []
    for ps, va in CONFIGS:
        big = va == 52
        levels = {lvl for lvl, _, _ in GEOMETRY[(ps, va)]}
        for lvl in sorted((BLOCK_LEVELS[ps][1 if big else 0] | {3}) & levels):
            out.append((ps, va, lvl))
    return out


def shift_of(ps: int, va: int, level: int) -> int:
    return next(s for lvl, s, _ in GEOMETRY[(ps, va)] if lvl == level)


# -- geometry ----------------------------------------------------------------------------------
@pytest.mark.parametrize("ps,va", CONFIGS)
def test_geometry_follows_the_arm_arm(ps: int, va: int) -> None:
    geo = Geometry(ps, va, lpa2=va == 52, lpa=va == 52)
    assert list(zip(geo.levels, geo.shifts, geo.index_bits)) == GEOMETRY[(ps, va)]
    assert geo.block_levels == BLOCK_LEVELS[ps][1 if va == 52 else 0]


def test_impossible_geometry_is_a_vmcoreinfo_error() -> None:
    vi = VmcoreInfo.parse("PAGESIZE=8192\nNUMBER(VA_BITS)=48\nSYMBOL(swapper_pg_dir)=ffff800009000000\n")
    with pytest.raises(VmcoreinfoError, match="8192"):
        AArch64(DictMemory(machine="aarch64"), vi)
    with pytest.raises(VmcoreinfoError):
        Geometry(65536, 60)


# -- walks -------------------------------------------------------------------------------------
@pytest.mark.parametrize("ps,va,level", leaf_cases())
def test_walk_pages_and_blocks(ps: int, va: int, level: int) -> None:
    space, tables = make_space(ps, va, big_pa=va == 52)
    size = 1 << shift_of(ps, va, level)
    vaddr = layout(va)["test_base"] & ~(size - 1)
    # A physical address that uses the 52-bit field when the configuration has one.
    paddr = ((0xA << 48) if va == 52 else 0x0000_8000_0000_0000 >> 1) + 3 * size
    paddr &= ~(size - 1)
    tables.map(vaddr, paddr, level)
    for off in (0, 8, size - 8):
        assert space.translate(vaddr + off) == paddr + off
    t = space.explain(vaddr + 24)
    names = [s.level for s in t.steps]
    geo_levels = [lvl for lvl, _, _ in GEOMETRY[(ps, va)]]
    assert len(t.steps) == geo_levels.index(level) + 1
    assert names[0] == "PGD" and (level != 3 or names[-1] == "PTE")
    assert t.steps[-1].leaf and t.page_size == size and t.paddr == paddr + 24
    assert t.root == ROOT and t.error is None


@pytest.mark.parametrize("ps,va,level", [(4096, 48, 0), (16384, 48, 1), (65536, 48, 1), (4096, 52, -1)])
def test_block_where_not_permitted_does_not_translate(ps: int, va: int, level: int) -> None:
    space, tables = make_space(ps, va, big_pa=va == 52)
    size = 1 << shift_of(ps, va, level)
    vaddr = layout(va)["test_base"] & ~(size - 1)
    tables.map(vaddr, 0, level)  # a block descriptor (bit 1 clear) at this level
    # root= forces the walk even where a linear range covers the address.
    with pytest.raises(TranslationError, match=f"{vaddr:#x}.*does not permit"):
        space.translate(vaddr, root=ROOT)


@pytest.mark.parametrize("ps", [4096, 16384, 65536])
def test_reserved_level3_descriptor(ps: int) -> None:
    space, tables = make_space(ps, 48)
    vaddr = layout(48)["test_base"]
    tables.map(vaddr, 0x80000000, 3)
    pa = tables.entry_address(vaddr, 3)
    tables.mem.write_u64(pa, int.from_bytes(tables.mem.read(pa, 8), "little") & ~TABLE_OR_PAGE)
    with pytest.raises(TranslationError, match="reserved"):
        space.translate(vaddr)


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_invalid_descriptor_names_address_and_level(level: int) -> None:
    space, tables = make_space(4096, 48)
    vaddr = layout(48)["test_base"] + 0x123000
    tables.map(vaddr, 0x80000000, 3)
    pa = tables.entry_address(vaddr, level)
    tables.mem.write_u64(pa, int.from_bytes(tables.mem.read(pa, 8), "little") & ~VALID)
    with pytest.raises(TranslationError, match=f"virtual address {vaddr + 5:#x}: "
                                               f"{['PGD', 'PUD', 'PMD', 'PTE'][level]} entry"):
        space.translate(vaddr + 5)
    t = space.explain(vaddr)
    assert t.paddr is None and len(t.steps) == level + 1 and "not valid" in t.error


def test_access_flag_clear_still_maps() -> None:
    # AF=0 is a valid descriptor (access raises an Access flag fault, not a translation fault).
    space, tables = make_space(4096, 48)
    vaddr = layout(48)["test_base"]
    tables.map(vaddr, 0x80001000, 3, attrs=ATTR_NORMAL)
    assert space.translate(vaddr + 1) == 0x80001001
    e = space.explain(vaddr).steps[-1].entry
    assert "AF" not in flag_names(e) and "VALID" in flag_names(e)


def test_flag_names_of_a_kernel_pte() -> None:
    e = 0x00E8000047F8F707  # from the real sample: PXN|UXN|DBM(write)|AF|SH inner|attr 1
    names = flag_names(e)
    for want in ("VALID", "PAGE", "SHARED", "AF", "DBM", "PXN", "UXN"):
        assert want in names
    assert "USER" not in names and "RDONLY" not in names


def test_shareability_bits_are_not_address_without_lpa2() -> None:
    space, tables = make_space(4096, 48)
    vaddr = layout(48)["test_base"]
    tables.map(vaddr, 0x80002000, 3, attrs=AF | SH_INNER)  # bits [9:8] = 0b11
    assert space.translate(vaddr) == 0x80002000


@pytest.mark.parametrize("ps", [4096, 16384])
def test_lpa2_bits_9_8_are_pa_51_50(ps: int) -> None:
    space, tables = make_space(ps, 52, big_pa=True)
    assert space.lpa2
    vaddr = layout(52)["test_base"]
    paddr = (3 << 50) | (1 << 49) | 0x4000
    tables.map(vaddr, paddr, 3)
    assert space.translate(vaddr + 0x10) == paddr + 0x10
    # The tables themselves may live above 2**48 too.
    assert space.explain(vaddr).steps[-1].entry & (3 << 8) == 3 << 8


def test_64k_lpa_bits_15_12_are_pa_51_48() -> None:
    space, tables = make_space(65536, 52, big_pa=True)
    vaddr = layout(52)["test_base"]
    paddr = (0xF << 48) | 0x0000_1234_5678_0000
    tables.map(vaddr, paddr, 3)
    assert space.translate(vaddr + 0xABC) == paddr + 0xABC
    # Without 52-bit PA those bits are RES0 and not part of the address.
    space48, tables48 = make_space(65536, 48)
    tables48.map(vaddr | (0xFFF << 52), 0x80010000, 3, attrs=AF | (0xF << 12))
    assert space48.translate(vaddr | (0xFFF << 52)) == 0x80010000


def test_52bit_kernel_on_48bit_hardware_64k() -> None:
    # VA_BITS=52 (64K, LVA) on hardware without LVA: T1SZ=16, swapper_pg_dir keeps 1024 entries
    # and the kernel's walk indexes it with 52 bits.
    space, tables = make_space(65536, 52, t1sz=16)
    assert space.vabits_actual == 48 and space.page_offset == -(1 << 52) & MASK64
    vaddr = 0xFFFF_C000_0000_0000
    tables.map(vaddr, 0x80000000, 3)
    entry = space.explain(vaddr).steps[0].entry_paddr
    assert (entry - ROOT) // 8 >= 1024 - 64  # the top 64 entries cover the 48-bit range
    assert space.translate(vaddr + 4) == 0x80000004


def test_4k_52bit_kernel_without_lpa2_folds_to_four_levels() -> None:
    space, tables = make_space(4096, 52, t1sz=16)
    assert not space.lpa2 and space.levels == 4
    vaddr = 0xFFFF_C000_0020_0000
    tables.map(vaddr, 0x80000000, 2)
    assert space.translate(vaddr + 0x1234) == 0x80001234


# -- linear ranges -----------------------------------------------------------------------------
@pytest.mark.parametrize("flipped", [True, False])
@pytest.mark.parametrize("ps,va", [(4096, 39), (4096, 48), (16384, 47), (65536, 42), (65536, 48)])
def test_linear_map_agrees_with_walk(ps: int, va: int, flipped: bool) -> None:
    space, tables = make_space(ps, va, flipped=flipped)
    lay = layout(va, flipped)
    assert space.page_offset == lay["page_offset"] and space.flipped == flipped
    for pa in (PHYS_OFFSET, PHYS_OFFSET + 5 * ps, PHYS_OFFSET + (1 << 30)):
        lin = lay["page_offset"] + (pa - PHYS_OFFSET)
        tables.map(lin, pa, 3)
        assert space.region_of(lin).name == "linear map"
        t = space.explain(lin + 8)
        assert t.method == "linear:linear map"
        walked = space.walk(lin + 8)
        assert walked.paddr == space.translate(lin + 8) == pa + 8 == t.paddr


def test_phys_offset_checked_against_page_tables() -> None:
    # SYMBOL(mem_section) is a linear-map pointer: if PHYS_OFFSET disagrees with the tables, the
    # tables win (and `info` says so).
    true_offset = 0x0000_0000_8000_0000
    lay = layout(48)
    ms = lay["page_offset"] + 0x3000000
    mem = DictMemory(machine="aarch64", size=1 << 40)
    tables = ArmTables(mem, 4096, 48, False)
    tables.map(ms & ~0xFFF, true_offset + 0x3000000, 3)
    space, _ = make_space(4096, 48, mem=mem, extra=f"SYMBOL(mem_section)={ms:x}\n")
    assert space.phys_offset == true_offset
    assert space.translate(ms + 8) == true_offset + 0x3000008
    assert any("PHYS_OFFSET" in w for w in space.describe()["warnings"])


def test_kernel_image_extent_from_page_tables() -> None:
    space0, tables = make_space(4096, 48)
    img = layout(48)["image"]
    voff = space0.kimage_voffset
    # text+rodata mapped from _stext, a hole (freed __init), then data — and a vmalloc page after.
    text = img + 0x10000
    for off in range(0, 0x1200000, 0x1000):
        tables.map(text + off, (text + off - voff) & MASK64, 3)
    data = (text + 0x1400000 + 0x1FFFFF) & ~0x1FFFFF  # 2 MiB aligned: one block
    for off in range(0, 0x200000, 0x200000):
        tables.map(data + off, (data + off - voff) & MASK64, 2)
    tables.map(data + 0x400000, 0x90000000, 3)  # a vmalloc mapping after the image
    space = AArch64(tables.mem, space0.vmcoreinfo)
    regions = [(r.start, r.end) for r in space.regions if r.name == "kernel image"]
    assert regions == [(text, text + 0x1200000), (data, data + 0x200000)]
    assert space.translate(text + 0x123) == (text + 0x123 - voff) & MASK64
    with pytest.raises(TranslationError):  # the hole stays unmapped
        space.translate(text + 0x1300000)
    assert space.translate(data + 0x400010) == 0x90000010  # not the image offset


def test_kernel_root_from_kimage_voffset() -> None:
    space, _ = make_space(4096, 48)
    assert space.kernel_root == ROOT


# -- address checks ----------------------------------------------------------------------------
def test_user_address_needs_a_root() -> None:
    space, tables = make_space(4096, 48)
    user = ArmTables(tables.mem, 4096, 48, False, root=0x60000000)
    user.next_table = 0x61000000
    user.map(0x0000_ffff_1234_5000, 0x80003000, 3)
    with pytest.raises(TranslationError, match="user address"):
        space.translate(0x0000_ffff_1234_5678)
    assert space.translate(0x0000_ffff_1234_5678, root=0x60000000) == 0x80003678


def test_non_canonical_address() -> None:
    space, _ = make_space(4096, 39)
    with pytest.raises(TranslationError, match="canonical"):
        space.translate(0xFFFF_0000_0000_0000)  # bits [55:39] not all ones


def test_tagged_kernel_pointer_translates_like_untagged() -> None:
    space, tables = make_space(4096, 48)
    vaddr = layout(48)["test_base"]
    tables.map(vaddr, 0x80004000, 3)
    assert space.translate((vaddr & ~(0xFF << 56)) | (0xF2 << 56)) == 0x80004000


# -- property ----------------------------------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(st.sampled_from(leaf_cases()), st.integers(0, (1 << 20) - 1), st.integers(0, (1 << 24) - 1),
       st.integers(0, 1 << 16))
def test_property_translate_roundtrip(case: tuple[int, int, int], slot: int, pslot: int, off: int) -> None:
    ps, va, level = case
    big = va == 52
    space, tables = make_space(ps, va, big_pa=big)
    size = 1 << shift_of(ps, va, level)
    base = layout(va)["test_base"]
    room = 1 << (min(va, 48) - 3)
    vaddr = base + (slot * size) % room
    pa_bits = 52 if big else 48
    paddr = (pslot * size * 0x9E37) % (1 << pa_bits) & ~(size - 1)
    tables.map(vaddr, paddr, level)
    off %= size
    assert space.translate(vaddr + off) == paddr + off
    assert space.walk(vaddr + off).paddr == paddr + off


# -- pointer authentication, registers, dispatch -----------------------------------------------
def test_strip_pac() -> None:
    space, _ = make_space(4096, 48, pac_mask=0xFFFF_0000_0000_0000)
    signed = 0x3B9F_CDC9_9F09_8E00  # kernel LR with a PAC in bits 63:48 (bit 55 set)
    assert space.strip_pac(signed) == 0xFFFF_CDC9_9F09_8E00
    assert space.strip_pac(0x0042_FFFF_8000_1234) == 0x0000_FFFF_8000_1234  # user pointer
    unsigned, _ = make_space(4096, 48, pac_mask=0)
    assert unsigned.strip_pac(signed) == signed


def _prstatus(pid: int, regs: list[int]) -> bytes:
    desc = bytearray(392)
    struct.pack_into("<I", desc, 32, pid)
    struct.pack_into("<34Q", desc, 112, *regs)
    return bytes(desc)


def test_cpu_registers_from_prstatus_and_fpsimd() -> None:
    regs0 = list(range(100, 134))
    regs1 = [0x1000 + i for i in range(34)]
    fp = bytearray(528)
    struct.pack_into("<QQ", fp, 16 * 3, 0x1111, 0x2222)
    struct.pack_into("<II", fp, 512, 0x10, 0x3000000)
    notes = [Note("CORE", 1, _prstatus(7, regs0)), Note("CORE", 2, bytes(fp)),
             Note("CORE", 1, _prstatus(0, regs1)), Note("CORE", 1, b"short")]
    mem = DictMemory(machine="aarch64", size=1 << 52, notes=notes)
    space, _ = make_space(mem=mem)
    cpus = space.cpu_registers()
    assert [(c.cpu, c.pid) for c in cpus] == [(0, 7), (1, 0)]
    r = cpus[0].regs
    assert r["x0"] == 100 and r["x30"] == 130 and r["sp"] == 131 and r["pc"] == 132 and r["pstate"] == 133
    assert r["fp"] == r["x29"] and r["lr"] == r["x30"]
    assert r["v3"] == 0x1111 | 0x2222 << 64 and r["fpsr"] == 0x10 and r["fpcr"] == 0x3000000
    assert cpus[1].regs["pc"] == 0x1000 + 32 and "v0" not in cpus[1].regs


def test_dispatch_chooses_aarch64() -> None:
    space, tables = make_space()
    assert isinstance(address_space(tables.mem, space.vmcoreinfo), AArch64)
    unknown = DictMemory(machine=None, size=1 << 40)  # type: ignore[arg-type]
    assert isinstance(address_space(unknown, space.vmcoreinfo), AArch64)


def test_missing_keys_are_vmcoreinfo_errors() -> None:
    mem = DictMemory(machine="aarch64")
    with pytest.raises(VmcoreinfoError, match="VA_BITS"):
        AArch64(mem, VmcoreInfo.parse("PAGESIZE=4096\nSYMBOL(swapper_pg_dir)=ffff800008000000\n"))
    with pytest.raises(VmcoreinfoError, match="swapper_pg_dir"):
        AArch64(mem, VmcoreInfo.parse("PAGESIZE=4096\nNUMBER(VA_BITS)=48\n"))


def test_describe_facts() -> None:
    space, _ = make_space(16384, 47)
    d = space.describe()
    assert d["arch"] == "aarch64" and d["page_size"] == 16384 and d["va_bits"] == 47
    assert d["paging_levels"] == 3 and d["phys_offset"] == PHYS_OFFSET and d["kernel_pgd"] == ROOT
    assert d["page_offset_base"] == layout(47)["page_offset"]


# -- the real arm64 samples -------------------------------------------------------------------
# samples/arm64: Debian 6.1, 4K pages, 48-bit VA. samples/arm64/16k-lpa2: Debian 6.12 16K pages,
# 52-bit VA with FEAT_LPA2 (TCR.DS=1) on QEMU's -cpu max. Both with KASLR and pointer auth.
SAMPLE_DIRS = {"4k-48bit": SAMPLES / "arm64", "16k-lpa2": SAMPLES / "arm64" / "16k-lpa2"}


def _tsv(sample: Path, name: str) -> list[dict[str, str]]:
    lines = (sample / "expected" / name).read_text().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, line.split("\t"))) for line in lines[1:]]


@pytest.fixture(scope="module", params=sorted(SAMPLE_DIRS))
def sample(request: pytest.FixtureRequest) -> Path:
    d = SAMPLE_DIRS[request.param]
    if not (d / "vmcore.elf.zst").exists():
        pytest.skip(f"{d}/vmcore.elf.zst absent")
    return d


@pytest.fixture(scope="module")
def sample_elf(sample: Path) -> Path:
    return decompressed_elf(sample)


@pytest.fixture(scope="module")
def sample_prog(sample_elf: Path):
    from vmcorekit.program import Program
    with Program.open(sample_elf) as prog:
        yield prog


def test_sample_translations_match_drgn(sample: Path, sample_prog) -> None:
    space = sample_prog.space
    assert space.arch == "aarch64"
    assert space.page_size == sample_prog.vmcoreinfo.page_size
    rows = _tsv(sample, "vtop.tsv")
    assert len(rows) >= 20
    for row in rows:
        va, root = int(row["VADDR"], 16), int(row["ROOT"], 16)
        want = int(row["PADDR"], 16)
        if row["KIND"].startswith("user:"):
            got = space.translate(va, root=root)
        else:
            assert root == space.kernel_root
            got = space.translate(va)
            walked = space.walk(va)
            assert walked.paddr == want, row  # the page-table walk, not only the shortcut
            kind = row["KIND"].split(":")[0]
            region = space.region_of(va)
            assert (region.name if region else None) == {"image": "kernel image", "linear": "linear map"}.get(kind)
        assert got == want, row


def test_sample_layout_matches_drgn(sample: Path, sample_prog) -> None:
    misc = dict(line.split("=", 1) for line in (sample / "expected" / "misc.txt").read_text().split())
    space = sample_prog.space
    vi = sample_prog.vmcoreinfo
    assert space.phys_offset == int(misc["memstart_addr"], 16)
    assert space.kimage_voffset == int(misc["kimage_voffset"], 16)
    assert space.kernel_root == (int(misc["swapper_pg_dir"], 16) - space.kimage_voffset)
    assert space.lpa2 == (vi.number("VA_BITS") == 52 and space.page_size != 65536)
    assert not space.warnings
    release = sample_prog.read_cstring(vi.symbol("init_uts_ns") + vi.offsets.get("uts_namespace.name", 0) + 2 * 65)
    assert release.decode() == misc["uts_release"] == vi.osrelease


def test_sample_tasks_and_modules_readable(sample: Path, sample_prog) -> None:
    space = sample_prog.space
    for row in _tsv(sample, "tasks.tsv"):
        task = int(row["TASK"], 16)
        if row["PID"] == "0":
            continue  # init_task is in the image
        assert space.region_of(task).name == "linear map"
        assert space.walk(task).paddr == space.translate(task)
    for row in _tsv(sample, "modules.tsv"):
        addr = int(row["STRUCT_MODULE"], 16)
        assert space.region_of(addr) is None  # module space: walked
        assert row["NAME"].encode() + b"\0" in sample_prog.read(addr, 128)


def test_sample_registers_match_drgn(sample: Path, sample_prog) -> None:
    text = (sample / "expected" / "crashed-thread.txt").read_text()
    m = re.search(r"crashed cpu (\d+) pid (\d+) pc=(0x[0-9a-f]+) sp=(0x[0-9a-f]+)", text)
    cpu = int(m.group(1))
    want = dict(kv.split("=") for kv in text.splitlines()[1].split())
    regs = sample_prog.cpus[cpu].regs
    assert len(sample_prog.cpus) == 2
    assert regs["pc"] == int(m.group(3), 16) and regs["sp"] == int(m.group(4), 16)
    for name, value in want.items():
        assert regs[name] == int(value, 16), name
    assert {f"x{i}" for i in range(31)} | {"sp", "pc", "pstate", "fp", "lr"} <= set(regs)


def test_sample_frame_records_carry_pac(sample_prog) -> None:
    # The kernel was built with pointer authentication and QEMU's -cpu max implements it: the
    # return addresses saved in frame records are signed; stripping gives kernel text addresses.
    space = sample_prog.space
    assert space.pac_mask == sample_prog.vmcoreinfo.number("KERNELPACMASK") != 0
    image = [r for r in space.regions if r.name == "kernel image"]
    signed = 0
    for c in sample_prog.cpus:
        fp = c.regs["fp"]
        for _ in range(8):
            if not fp:
                break
            nxt, lr = struct.unpack("<QQ", sample_prog.read(fp, 16))
            plain = space.strip_pac(lr)
            if lr:
                assert any(r.start <= plain < r.end for r in image), hex(lr)
                signed += plain != lr
            fp = nxt
    assert signed >= 2


def test_sample_cli_info_vtop_rd(sample: Path, sample_elf: Path, capsys) -> None:
    from vmcorekit.cli.main import main
    vi = VmcoreInfo.parse((sample / "vmcoreinfo.txt").read_bytes())
    assert main(["info", str(sample_elf)]) == 0
    out = capsys.readouterr().out
    assert "aarch64" in out and vi.osrelease in out
    assert re.search(rf"PHYS_OFFSET\s+{vi.number('PHYS_OFFSET'):#x}", out, re.I), out
    for kind in ("image:init_task", "vmalloc:stack 2"):
        row = next(r for r in _tsv(sample, "vtop.tsv") if r["KIND"] == kind)
        assert main(["vtop", str(sample_elf), row["VADDR"]]) == 0
        out = capsys.readouterr().out
        assert re.search(rf"^{row['VADDR'][2:]}\s+{row['PADDR'][2:]}$", out, re.M), out
        assert "PGD" in out and "PUD" in out and "VALID" in out
    rel = vi.symbol("init_uts_ns") + vi.offsets.get("uts_namespace.name", 0) + 2 * 65
    assert main(["rd", "-a", str(sample_elf), f"{rel:x}"]) == 0
    assert capsys.readouterr().out.strip() == vi.osrelease
    assert main(["rd", str(sample_elf), "swapper_pg_dir", "2"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0].split()
    assert first[0] == f"{vi.symbol('swapper_pg_dir'):x}:"
    # the first PGD entry of swapper_pg_dir is a valid table descriptor (bits [1:0] = 0b11)
    assert int(first[1], 16) & 3 == 3
