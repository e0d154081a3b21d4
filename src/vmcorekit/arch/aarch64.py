"""arm64 (AArch64) virtual memory (Documentation/arch/arm64/memory.rst; Arm ARM D8, VMSAv8-64).

Kernel addresses (bit 55 set) translate through TTBR1 = swapper_pg_dir; user addresses need the
process's page-table root (TTBR0). Linear ranges skip the walk:

* the linear map: ``__pa(va) = va - PAGE_OFFSET + PHYS_OFFSET``. Since 5.4 it is the lower half
  of the kernel range, ``PAGE_OFFSET = -(1 << VA_BITS)``; before, the upper half,
  ``PAGE_OFFSET = -(1 << (VA_BITS - 1))``. Which layout applies is read from where the kernel
  image lies (upper half since 5.4), not from the release string.
* the kernel image: ``__pa_symbol(va) = va - kimage_voffset`` (4.6+), over the extent the page
  tables map with that offset.

Walks follow the architecture's descriptor formats for the 4K, 16K and 64K granules: bit 0
valid, bit 1 table (levels above 3) or page (level 3), blocks only at the levels the granule
permits, and the output address with the 52-bit extensions (64K FEAT_LPA: descriptor bits
[15:12] = PA[51:48]; 4K/16K FEAT_LPA2 with TCR.DS=1: bits [49:12] and [9:8] = PA[51:50]).
"""
from __future__ import annotations

import struct
from collections.abc import Iterator

from ..dump.base import PhysicalMemory
from ..errors import MemoryReadError, VmcoreinfoError
from ..vmcoreinfo import VmcoreInfo
from ..vmcoreinfo.memsection import MemSection
from .base import AddressSpace, CpuRegisters, Region, Translation, WalkStep

MASK64 = (1 << 64) - 1
GRANULE_SHIFT = {4096: 12, 16384: 14, 65536: 16}
NT_PRFPREG = 2
NT_ARM_PAC_MASK = 0x406

# Descriptor bits (Arm ARM D8.3; names as Linux's pgtable-hwdef.h and crash's vtop use them).
VALID, TABLE = 1 << 0, 1 << 1  # bit 1: table (levels 0-2) / page (level 3); 0 = block
PAGE = TABLE
AF = 1 << 10
FLAG_NAMES = [(1 << 0, "VALID"), (1 << 1, "PAGE"), (1 << 5, "NS"), (1 << 6, "USER"), (1 << 7, "RDONLY"),
              (1 << 10, "AF"), (1 << 11, "NG"), (1 << 51, "DBM"), (1 << 52, "CONT"), (1 << 53, "PXN"),
              (1 << 54, "UXN"), (1 << 55, "DIRTY"), (1 << 56, "SPECIAL")]
SH_NAMES = {1: "SH_RESERVED", 2: "OUTER", 3: "SHARED"}

# struct user_pt_regs (arch/arm64/include/uapi/asm/ptrace.h), at offset 112 of elf_prstatus.


def flag_names(entry: int) -> list[str]:
    """Names of the attribute bits set in a leaf descriptor (for `vtop`)."""
    names = [name for bit, name in FLAG_NAMES if entry & bit]
    sh = (entry >> 8) & 3
    if sh:
        names.insert(names.index("AF") if "AF" in names else len(names), SH_NAMES[sh])
    names.append(f"ATTRINDX={(entry >> 2) & 7}")
    return names


def _genmask(hi: int, lo: int) -> int:
    return ((1 << (hi + 1)) - 1) & ~((1 << lo) - 1)


class Geometry:
    """Levels, index shifts and descriptor decoding for one granule and VA size."""

    def __init__(self, page_size: int, va_bits: int, *, lpa2: bool = False, lpa: bool = True) -> None:
        if page_size not in GRANULE_SHIFT:
            raise VmcoreinfoError(f"arm64 page size {page_size} is not a translation granule (4K, 16K, 64K)")
        g = GRANULE_SHIFT[page_size]
        if not g + (g - 3) <= va_bits <= 52:
            raise VmcoreinfoError(f"arm64 VA size {va_bits} bits is impossible with {page_size >> 10}K pages")
        self.page_size, self.granule_shift, self.va_bits = page_size, g, va_bits
        stride = g - 3
        nlevels = -(-(va_bits - g) // stride)
        self.first_level = 4 - nlevels  # -1 for 4K with 52-bit VA (FEAT_LPA2)
        self.levels = list(range(self.first_level, 4))
        self.shifts = [g + stride * (3 - lvl) for lvl in self.levels]
        self.index_bits = [va_bits - self.shifts[0]] + [stride] * (nlevels - 1)
        # TCR.DS=1 (FEAT_LPA2) for 4K/16K; FEAT_LPA's bits [15:12] for 64K.
        self.lpa2 = lpa2 and g != 16
        self.lpa = lpa and g == 16
        # Levels where a block descriptor is permitted (D8.3.1): 4K L1/L2 (+L0 with DS=1),
        # 16K L2 (+L1 with DS=1), 64K L2 (+L1 with 52-bit PA).
        blocks = {12: {1, 2}, 14: {2}, 16: {2}}[g]
        if self.lpa2:
            blocks.add(0 if g == 12 else 1)
        if self.lpa:
            blocks.add(1)
        self.block_levels = blocks
        self.names = {lvl: ("PGD" if lvl == self.first_level else {0: "P4D", 1: "PUD", 2: "PMD", 3: "PTE"}[lvl])
                      for lvl in self.levels}

    def output_address(self, desc: int, align_shift: int) -> int:
        """The physical address a descriptor holds (next table or block/page base)."""
        if self.lpa2:
            pa = desc & _genmask(49, align_shift)
            pa |= ((desc >> 8) & 3) << 50
        else:
            pa = desc & _genmask(47, align_shift)
            if self.lpa:
                pa |= ((desc >> 12) & 0xF) << 48
        return pa


# How far past VMCOREINFO's last image symbol the image is assumed to run when its page tables
# are missing: .bss of a distribution kernel (the log buffer, page tables) fits in a few MiB.
IMAGE_TAIL = 4 << 20


class AArch64(AddressSpace):
    arch = "aarch64"
    direct_map_name = "linear map"

    def __init__(self, phys: PhysicalMemory, vmcoreinfo: VmcoreInfo) -> None:
        super().__init__(phys, vmcoreinfo)
        vi = vmcoreinfo
        nums = vi.numbers
        self.warnings: list[str] = []
        self.page_size = vi.page_size or phys.page_size or 4096
        if self.page_size not in GRANULE_SHIFT:
            raise VmcoreinfoError(f"PAGESIZE={self.page_size} is not an arm64 granule (4096, 16384, 65536)")
        self.page_shift = GRANULE_SHIFT[self.page_size]
        t1sz = nums.get("TCR_EL1_T1SZ")
        va_bits = nums.get("VA_BITS")
        if va_bits is None and t1sz is None:
            raise VmcoreinfoError("VMCOREINFO has neither NUMBER(VA_BITS) nor NUMBER(TCR_EL1_T1SZ): "
                                  "cannot lay out arm64 kernel memory")
        self.va_bits = va_bits if va_bits is not None else 64 - t1sz  # type: ignore[operator]
        # A 52-bit kernel on hardware without LVA/LPA2 runs with 48 bits (TCR_EL1.T1SZ says).
        self.vabits_actual = 64 - t1sz if t1sz else self.va_bits
        for what, bits in (("VA_BITS", self.va_bits), ("TCR_EL1_T1SZ", self.vabits_actual)):
            # Checked before any 1 << bits: a hostile note must not size a huge integer.
            if not 32 <= bits <= 52:
                raise VmcoreinfoError(f"VMCOREINFO {what} gives a {bits}-bit arm64 VA space; expected 32 to 52")
        pa_bits = nums.get("MAX_PHYSMEM_BITS")
        self.lpa2 = self.page_size != 65536 and self.vabits_actual == 52
        # 64K tables: Linux keeps swapper_pg_dir sized for VA_BITS and offsets TTBR1 when the
        # hardware has fewer bits, so its own walk (and ours) indexes with VA_BITS. 4K/16K kernels
        # without LPA2 fold the extra level at run time: the walk follows the actual size.
        walk_bits = self.va_bits if self.page_size == 65536 else min(self.va_bits, self.vabits_actual)
        self.geometry = Geometry(self.page_size, walk_bits, lpa2=self.lpa2,
                                 lpa=pa_bits is None or pa_bits >= 52)
        self.levels = len(self.geometry.levels)
        self.pac_mask = nums.get("KERNELPACMASK", 0) & MASK64
        self.kaslr_offset = vi.kerneloffset
        kv = nums.get("kimage_voffset")
        self.kimage_voffset = kv & MASK64 if kv is not None else None

        root_sym = vi.symbols.get("swapper_pg_dir")
        if root_sym is None:
            raise VmcoreinfoError("VMCOREINFO has no SYMBOL(swapper_pg_dir): cannot find the kernel page tables")
        self.root_vaddr = root_sym
        va_min = min(self.va_bits, 48)
        # 5.4 flipped the kernel VA space: the image moved to the upper half (>= PAGE_END).
        self.flipped = self.kimage_voffset is not None and root_sym >= (-(1 << (va_min - 1))) & MASK64
        if self.flipped:
            self.page_offset = (-(1 << self.va_bits)) & MASK64
            self.linear_end = (-(1 << (va_min - 1))) & MASK64
        else:
            self.page_offset = (-(1 << (self.va_bits - 1))) & MASK64
            self.linear_end = 1 << 64
        self.phys_offset = self._find_phys_offset()
        if self.kimage_voffset is not None:
            self.kernel_root = (root_sym - self.kimage_voffset) & MASK64
        else:  # before 4.6 the image lived in the linear map
            self.kernel_root = self._linear_pa(root_sym)
        self._check_linear()
        self.regions = []
        lin = self._linear_region()
        if lin is not None:
            self.regions.append(lin)
        if self.kimage_voffset is not None:
            self.regions[:0] = self._image_regions()
        self.vmemmap_base = self._find_vmemmap()

    # -- layout discovery --------------------------------------------------------------------
    def _linear_pa(self, vaddr: int) -> int:
        return (vaddr - self.page_offset + self.phys_offset) & MASK64

    def _find_phys_offset(self) -> int:
        po = self.vmcoreinfo.numbers.get("PHYS_OFFSET")
        if po is not None:
            return po & MASK64
        # kexec-tools' ELF headers give each RAM segment its linear-map address.
        for seg in self.phys.virtual_segments:
            if seg.paddr is not None and self.page_offset <= seg.vaddr < self.linear_end:
                return (seg.paddr - (seg.vaddr - self.page_offset)) & MASK64
        self.warnings.append("no NUMBER(PHYS_OFFSET): assuming the start of RAM")
        return min((r.start for r in self.phys.ranges()), default=0)

    def _check_linear(self) -> None:
        """Confirm PHYS_OFFSET with one walk of a linear address (SYMBOL(mem_section) points
        into the linear map under SPARSEMEM_EXTREME); trust the page tables if they disagree."""
        hint = self.vmcoreinfo.symbols.get("mem_section")
        if hint is None or not self.page_offset <= hint < self.linear_end:
            return
        t = self.walk(hint)
        if t.paddr is None:
            return
        if t.paddr != self._linear_pa(hint):
            walked = (t.paddr - (hint - self.page_offset)) & MASK64
            self.warnings.append(f"PHYS_OFFSET {self.phys_offset:#x} disagrees with the page tables "
                                 f"({walked:#x}); using the page tables")
            self.phys_offset = walked

    def _linear_region(self) -> Region | None:
        ranges = self.phys.ranges()
        if not ranges:
            return None
        # memstart_addr is signed: KASLR may move it below zero (printed in two's complement).
        po = self.phys_offset - (1 << 64) if self.phys_offset >> 63 else self.phys_offset
        start = max(ranges[0].start - po + self.page_offset, self.page_offset)
        end = min(ranges[-1].end - po + self.page_offset, self.linear_end)
        if start >= end:
            return None
        return Region("linear map", start, end, "linear", (self.page_offset - po) & MASK64)

    def _image_symbols(self) -> list[int]:
        assert self.kimage_voffset is not None
        out = []
        for v in self.vmcoreinfo.symbols.values():
            if self.page_offset <= v < self.linear_end:
                continue  # linear-map pointers (mem_section)
            pa = (v - self.kimage_voffset) & MASK64
            if any(r.start <= pa < r.end for r in self.phys.ranges()):
                out.append(v)
        return out

    def _image_regions(self) -> list[Region]:
        """The kernel image: the mappings with va - pa == kimage_voffset from _stext on, up to
        the first mapping with another offset. Holes stay holes (6.1 unmaps __init after boot)."""
        voff = self.kimage_voffset
        assert voff is not None
        syms = self._image_symbols()
        if not syms:
            return []
        anchor = self.vmcoreinfo.symbols.get("_stext") or min(syms)
        runs: list[list[int]] = []
        try:
            # Tables are read whole and lazily: the scan stops at the first foreign mapping.
            # Tables of a truncated dump may be missing (memblock allocates them top-down, at
            # the end of RAM): passed over, the image's own tables still give its extent.
            for va, pa, size in self._mappings(max(anchor - (64 << 20), self.page_offset), 1 << 64,
                                               limit=4096, skip_unreadable=True):
                if (va - pa) & MASK64 != voff:
                    if va > anchor:
                        break
                    runs = []
                    continue
                if runs and runs[-1][1] == va:
                    runs[-1][1] = va + size
                else:
                    runs.append([va, va + size])
        except MemoryReadError:
            runs = []
        if runs and all(any(a <= v < b for a, b in runs) for v in syms):
            return [Region("kernel image", a, b, "linear", voff) for a, b in runs]
        lo, hi = min(syms) & ~(self.page_size - 1), (max(syms) | (self.page_size - 1)) + 1
        # VMCOREINFO's last symbol (clear_seq, in .data) is not the image's end: .bss (with
        # __log_buf) follows it. The image is one physically contiguous block, so the guess
        # runs IMAGE_TAIL further, within the RAM range that holds the image.
        pa_hi = (hi - voff) & MASK64
        ram_end = next((r.end for r in self.phys.ranges() if r.start <= pa_hi - 1 < r.end), pa_hi)
        tail = min(IMAGE_TAIL, max(0, ram_end - pa_hi))
        self.warnings.append("kernel image extent not found in the page tables (their pages are not in "
                             f"the dump); using VMCOREINFO's symbols and {tail >> 20} MiB past the last")
        return [Region("kernel image", lo, hi + tail, "linear", voff)]

    def _find_vmemmap(self) -> int | None:
        vi = self.vmcoreinfo
        ms = vi.symbols.get("mem_section")
        if ms is not None:
            # SPARSEMEM_VMEMMAP: section_mem_map encodes vmemmap itself (mem_map minus the
            # section's first pfn); its low bits are SECTION_* flags.
            sec = MemSection.from_vmcoreinfo(vi, extreme=vi.lengths.get("mem_section", 0) > 0
                                             and self.page_offset <= ms < self.linear_end)
            assert sec is not None
            try:
                smm = sec.first_present(self.read_u64, flag_mask=0x3F)
                if smm is not None:
                    return smm & ~0x1F
            except MemoryReadError:
                pass
        start = vi.numbers.get("VMEMMAP_START")
        size = vi.sizes.get("page")
        if start is not None and size is not None and self.flipped:
            return (start - (self.phys_offset >> self.page_shift) * size) & MASK64
        return None

    # -- walking -----------------------------------------------------------------------------
    def _entry_kind(self, level: int, e: int) -> str:
        """'invalid', 'table', 'block', 'page' or 'reserved' for a descriptor at `level`."""
        if not e & VALID:
            return "invalid"
        if level == 3:
            return "page" if e & PAGE else "reserved"
        if e & TABLE:
            return "table"
        return "block" if level in self.geometry.block_levels else "reserved"

    def _select_root(self, vaddr: int, root: int | None) -> tuple[int | None, str | None]:
        geo = self.geometry
        upper = bool(vaddr >> 55 & 1)
        # Bits [55:VA] must all copy bit 55; the top byte may carry a tag (TBI, KASAN sw tags).
        high = (vaddr >> geo.va_bits) & ((1 << (56 - geo.va_bits)) - 1)
        if high != (((1 << (56 - geo.va_bits)) - 1) if upper else 0):
            return None, f"not a canonical {geo.va_bits}-bit address"
        if upper:
            return (self.kernel_root if root is None else root), None
        if root is None:
            return None, "user address (TTBR0): the kernel page tables do not map it; give the process's page tables"
        return root, None

    def walk(self, vaddr: int, root: int | None = None) -> Translation:
        """Walk from `root` (physical): a process's table for user addresses (TTBR0, required);
        for kernel addresses swapper_pg_dir unless another root is given."""
        geo = self.geometry
        table, err = self._select_root(vaddr, root)
        t = Translation(vaddr, None, self.page_size, "pagetable", None, table)
        if table is None:
            t.error = err
            return t
        for level, shift, bits in zip(geo.levels, geo.shifts, geo.index_bits):
            name = geo.names[level]
            entry_pa = table + ((vaddr >> shift) & ((1 << bits) - 1)) * 8
            try:
                e = self.read_phys_u64(entry_pa)
            except MemoryReadError as exc:
                t.error = f"{name} table at physical {table:#x} unreadable ({exc})"
                return t
            kind = self._entry_kind(level, e)
            leaf = kind in ("block", "page")
            t.steps.append(WalkStep(name, table, entry_pa, e, leaf, (1 << shift) if leaf else None))
            if kind == "invalid":
                t.error = f"{name} entry {e:#x} at physical {entry_pa:#x} is not valid"
                return t
            if kind == "reserved":
                what = "reserved (bit 1 clear at level 3)" if level == 3 else \
                    f"a block, which level {level} does not permit with {self.page_size >> 10}K pages"
                t.error = f"{name} entry {e:#x} at physical {entry_pa:#x} is {what}"
                return t
            if leaf:
                size = 1 << shift
                t.page_size = size
                t.paddr = geo.output_address(e, shift) | (vaddr & (size - 1))
                return t
            table = geo.output_address(e, self.page_shift)
        return t

    def _mappings(self, start: int, end: int, root: int | None = None,
                  limit: int = 1 << 20, skip_unreadable: bool = False) -> Iterator[tuple[int, int, int]]:
        """Leaf mappings (va, pa, size) in [start, end) in address order, reading each table
        whole. At most `limit` tables are read. With `skip_unreadable` a table missing from the
        dump is passed over as unmapped; else its MemoryReadError ends the walk."""
        geo = self.geometry
        base_root, err = self._select_root(start, root)
        if base_root is None:
            return
        budget = [limit]
        sign = ((MASK64 >> geo.va_bits) << geo.va_bits) if start >> 55 & 1 else 0

        def visit(table: int, depth: int, prefix: int) -> Iterator[tuple[int, int, int]]:
            if budget[0] <= 0:
                return
            budget[0] -= 1
            level, shift, bits = geo.levels[depth], geo.shifts[depth], geo.index_bits[depth]
            n = 1 << bits
            try:
                raw = self.phys.read(table, n * 8)
            except MemoryReadError:
                if skip_unreadable:
                    return
                raise
            entries = struct.unpack(f"<{n}Q", raw)
            span = 1 << shift
            first = max(0, (start - prefix) >> shift) if start > prefix else 0
            for i in range(first, n):
                va = prefix + (i << shift)
                if va >= end:
                    return
                if va + span <= start:
                    continue
                e = entries[i]
                kind = self._entry_kind(level, e)
                if kind in ("block", "page"):
                    yield va, geo.output_address(e, shift), span
                elif kind == "table":
                    yield from visit(geo.output_address(e, self.page_shift), depth + 1, va)

        yield from visit(base_root, 0, sign)

    # -- code --------------------------------------------------------------------------------
    def data_references(self, code: bytes, pc: int) -> list[tuple[str, int, int]] | None:
        """ADRP Xd, page followed by ADD Xd, Xd, #lo12 (an address) or LDR/LDRSW Xt, [Xd, #imm]
        (a load): how A64 code names a global. `code` is one function: every path is read."""
        out: list[tuple[str, int, int]] = []
        base: dict[int, int] = {}  # register -> address it holds (from ADRP / ADD)
        for i in range(len(code) // 4):
            at = pc + 4 * i
            insn = struct.unpack_from("<I", code, 4 * i)[0]
            if insn == 0xD65F03C0:  # ret: another path follows, which may use a page the
                continue            # compiler formed before the branch (kept)
            rd, rn = insn & 31, (insn >> 5) & 31
            if insn & 0x9F000000 == 0x90000000:  # ADRP
                imm = ((insn >> 5) & 0x7FFFF) << 2 | (insn >> 29) & 3
                imm -= (imm & 1 << 20) << 1
                base[rd] = ((at & ~0xFFF) + (imm << 12)) & MASK64
            elif insn & 0xFF800000 == 0x91000000 and rn in base:  # ADD (immediate), 64-bit
                imm = (insn >> 10) & 0xFFF
                target = (base[rn] + (imm << 12 if insn >> 22 & 1 else imm)) & MASK64
                out.append(("addr", 0, target))
                base[rd] = target
            elif insn & 0xBFC00000 == 0xB9400000 and rn in base:  # LDR (unsigned offset) W/X
                size = 8 if insn >> 30 & 1 else 4
                out.append(("load", size, (base[rn] + ((insn >> 10) & 0xFFF) * size) & MASK64))
                base.pop(rd, None)
            elif insn & 0xFFC00000 == 0xB9800000 and rn in base:  # LDRSW (unsigned offset)
                out.append(("load", 4, (base[rn] + ((insn >> 10) & 0xFFF) * 4) & MASK64))
                base.pop(rd, None)
            else:
                base.pop(rd, None)  # any other write of rd ends what it held (conservatively)
        return out

    # -- pointers ----------------------------------------------------------------------------
    def strip_pac(self, addr: int) -> int:
        """Remove a pointer-authentication code from a code pointer (e.g. a saved LR): kernel
        pointers (bit 55 set) get the PAC bits set to ones, user pointers cleared."""
        mask = self.pac_mask
        if not mask:
            return addr & MASK64
        return (addr | mask) & MASK64 if addr >> 55 & 1 else addr & ~mask & MASK64

    # -- registers ---------------------------------------------------------------------------
    def cpu_registers(self) -> list[CpuRegisters]:
        out = self.prstatus_registers()
        for c in out:
            c.regs["fp"], c.regs["lr"] = c.regs["x29"], c.regs["x30"]
        # QEMU follows each CPU's PRSTATUS with its NT_PRFPREG (struct user_fpsimd_state).
        for i, n in enumerate(self.phys.notes_named("CORE", NT_PRFPREG)):
            if i >= len(out) or len(n.desc) < 32 * 16 + 8:
                continue
            regs = out[i].regs
            for j in range(32):
                lo, hi = struct.unpack_from("<QQ", n.desc, j * 16)
                regs[f"v{j}"] = lo | hi << 64
            regs["fpsr"], regs["fpcr"] = struct.unpack_from("<II", n.desc, 512)
        for i, n in enumerate(self.phys.notes_named("LINUX", NT_ARM_PAC_MASK)):
            if i < len(out) and len(n.desc) >= 16:
                out[i].regs["pac_data_mask"], out[i].regs["pac_insn_mask"] = struct.unpack_from("<QQ", n.desc)
        return out

    def describe(self) -> dict[str, object]:
        nums = self.vmcoreinfo.numbers
        return {
            "arch": self.arch, "page_size": self.page_size, "va_bits": self.va_bits,
            "vabits_actual": self.vabits_actual, "paging_levels": self.levels, "lpa2": self.lpa2,
            "kaslr_offset": self.kaslr_offset, "kimage_voffset": self.kimage_voffset,
            "phys_offset": self.phys_offset, "page_offset_base": self.page_offset,
            "linear_map_layout": "lower half (5.4+)" if self.flipped else "upper half (before 5.4)",
            "vmemmap_base": self.vmemmap_base, "kernel_pgd": self.kernel_root, "pac_mask": self.pac_mask,
            **{k.lower(): nums[k] & MASK64 for k in ("MODULES_VADDR", "MODULES_END", "VMALLOC_START",
                                                     "VMALLOC_END", "VMEMMAP_START", "VMEMMAP_END") if k in nums},
            "warnings": list(self.warnings),
            "regions": [{"name": r.name, "start": r.start, "end": r.end, "method": r.method} for r in self.regions],
        }
