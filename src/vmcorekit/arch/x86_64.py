"""x86_64 virtual memory (Documentation/arch/x86/x86_64/mm.rst).

Linear ranges: the kernel image at __START_KERNEL_map (paddr = vaddr - map + phys_base) and the
direct map at page_offset_base (randomized by KASLR in 1 GiB steps, so it is discovered from the
dump). Everything else — vmalloc, modules, vmemmap, user space — is a 4- or 5-level walk.
PTE physical-address bits exclude the SME encryption mask.
"""
from __future__ import annotations

import struct

from ..dump.base import PhysicalMemory
from ..errors import MemoryReadError, VmcoreinfoError
from ..vmcoreinfo import VmcoreInfo
from ..vmcoreinfo.memsection import MemSection
from .base import AddressSpace, CpuRegisters, Region, Translation, WalkStep

START_KERNEL_MAP = 0xFFFFFFFF80000000
MASK64 = 0xFFFFFFFFFFFFFFFF
PHYS_MASK = 0x000FFFFFFFFFF000  # bits 12..51
PRESENT, RW, USER, PWT, PCD, ACCESSED, DIRTY, PSE, GLOBAL = (1 << i for i in range(9))
NX = 1 << 63
FLAG_NAMES = [(PRESENT, "PRESENT"), (RW, "RW"), (USER, "USER"), (PWT, "PWT"), (PCD, "PCD"),
              (ACCESSED, "ACCESSED"), (DIRTY, "DIRTY"), (PSE, "PSE"), (GLOBAL, "GLOBAL"), (NX, "NX")]
# Region starts before KASLR (mm.rst): direct map, vmalloc, vmemmap.
LAYOUT = {
    4: {"direct": 0xFFFF888000000000, "direct_end": 0xFFFFC88000000000, "vmalloc": 0xFFFFC90000000000,
        "vmemmap": 0xFFFFEA0000000000, "modules": 0xFFFFFFFFA0000000},
    5: {"direct": 0xFF11000000000000, "direct_end": 0xFF91000000000000, "vmalloc": 0xFFA0000000000000,
        "vmemmap": 0xFFD4000000000000, "modules": 0xFFFFFFFFA0000000},
}
QEMU_REGS = "rax rbx rcx rdx rsi rdi rsp rbp r8 r9 r10 r11 r12 r13 r14 r15 rip rflags".split()
QEMU_SEGS = "cs ds es fs gs ss ldt tr gdt idt".split()


def flag_names(entry: int) -> list[str]:
    return [name for bit, name in FLAG_NAMES if entry & bit]


class X86_64(AddressSpace):
    arch = "x86_64"
    direct_map_name = "direct map"

    def __init__(self, phys: PhysicalMemory, vmcoreinfo: VmcoreInfo) -> None:
        super().__init__(phys, vmcoreinfo)
        vi = vmcoreinfo
        self.page_size = vi.page_size or 4096
        self.levels = 5 if vi.numbers.get("pgtable_l5_enabled", 0) else 4
        self.sme_mask = vi.numbers.get("sme_mask", 0) & MASK64
        self.pte_mask = PHYS_MASK & ~self.sme_mask
        self.kaslr_offset = vi.kerneloffset
        self.phys_base = self._find_phys_base()
        self.image_size = vi.numbers.get("KERNEL_IMAGE_SIZE", 1 << 30)
        root_sym = vi.symbols.get("init_top_pgt") or vi.symbols.get("swapper_pg_dir")
        if root_sym is None:
            raise VmcoreinfoError("VMCOREINFO has neither SYMBOL(init_top_pgt) nor SYMBOL(swapper_pg_dir): "
                                  "cannot find the kernel page tables")
        self.root_vaddr = root_sym
        self.kernel_root = self._image_to_phys(root_sym)
        self.regions = [Region("kernel image", START_KERNEL_MAP, START_KERNEL_MAP + self.image_size, "linear",
                               (START_KERNEL_MAP - self.phys_base) & MASK64)]
        self.page_offset = self._find_direct_map()
        if self.page_offset is not None:
            top = max((r.end for r in phys.ranges()), default=0)
            self.regions.append(Region("direct map", self.page_offset, self.page_offset + top, "linear",
                                       self.page_offset))
        self.vmemmap_base = self._find_vmemmap()

    # -- discovery ---------------------------------------------------------------------------
    def _find_phys_base(self) -> int:
        pb = self.vmcoreinfo.numbers.get("phys_base")
        if pb is not None:
            return pb & MASK64
        # kexec-tools' ELF headers carry the kernel-image mapping with its physical address.
        for seg in self.phys.virtual_segments:
            if seg.paddr is not None and seg.vaddr >= START_KERNEL_MAP:
                return (seg.paddr - (seg.vaddr - START_KERNEL_MAP)) & MASK64
        return 0

    def _image_to_phys(self, vaddr: int) -> int:
        return (vaddr - START_KERNEL_MAP + self.phys_base) & MASK64

    def _find_direct_map(self) -> int | None:
        layout = LAYOUT[self.levels]
        # mem_section (SPARSEMEM_EXTREME) is allocated from the direct map: one walk suffices.
        hint = self.vmcoreinfo.symbols.get("mem_section")
        if hint is not None and layout["direct"] <= hint < layout["direct_end"] + (1 << 44):
            t = self.walk(hint)
            if t.paddr is not None:
                base = (hint - t.paddr) & MASK64
                if base % (1 << 30) == 0:
                    return base
        # Otherwise the first mapped page at or above the default base maps physical RAM's start.
        found = self._first_mapping(layout["direct"], layout["vmalloc"])
        if found is not None:
            va, pa = found
            base = (va - pa) & MASK64
            if base % (1 << 30) == 0:
                return base
        return None

    def _first_mapping(self, start: int, end: int) -> tuple[int, int] | None:
        """First (vaddr, paddr) mapped in [start, end), scanning top-level entries in order."""
        shifts = self._shifts()
        return self._scan(self.kernel_root, 0, shifts, start, end, 0)

    def _scan(self, table: int, depth: int, shifts: list[int], start: int, end: int,
              prefix: int) -> tuple[int, int] | None:
        shift = shifts[depth]
        span = 1 << shift
        try:
            raw = self.phys.read(table, 4096)
        except MemoryReadError:
            return None
        entries = struct.unpack("<512Q", raw)
        first = (start >> shift) & 511 if (start >> (shift + 9)) == (prefix >> (shift + 9)) or depth == 0 else 0
        for i in range(first, 512):
            va = prefix | (i << shift)
            if depth == 0 and va & (1 << (shifts[0] + 8)):
                va |= ~((1 << (shifts[0] + 9)) - 1) & MASK64
            if va + span <= start:
                continue
            if va >= end:
                return None
            e = entries[i]
            if not e & PRESENT:
                continue
            leaf = depth == len(shifts) - 1 or (depth >= len(shifts) - 3 and e & PSE)
            if leaf:
                return max(va, start), (e & self.pte_mask & ~(span - 1)) + max(0, start - va)
            got = self._scan(e & self.pte_mask, depth + 1, shifts, start, end, va)
            if got is not None:
                return got
        return None

    def _find_vmemmap(self) -> int | None:
        vi = self.vmcoreinfo
        default = LAYOUT[self.levels]["vmemmap"]
        # SPARSEMEM_EXTREME: mem_section -> roots[0] -> mem_section[]; section_mem_map holds
        # mem_map minus the section's first pfn, which under VMEMMAP is vmemmap itself.
        ms = MemSection.from_vmcoreinfo(vi, extreme="mem_section" in vi.lengths
                                        and vi.lengths["mem_section"] > 0)
        if ms is None:
            return default
        try:
            smm = ms.first_present(self.read_u64, flag_mask=0xFFF)
            if smm is not None:
                base = smm & ~0xFFF
                if base % (1 << 30) == 0:
                    return base
                return default
        except MemoryReadError:
            pass
        return default

    def _shifts(self) -> list[int]:
        return [48, 39, 30, 21, 12] if self.levels == 5 else [39, 30, 21, 12]

    # -- walking -----------------------------------------------------------------------------
    def walk(self, vaddr: int, root: int | None = None) -> Translation:
        root = self.kernel_root if root is None else root
        names = ["PGD", "P4D", "PUD", "PMD", "PTE"] if self.levels == 5 else ["PGD", "PUD", "PMD", "PTE"]
        t = Translation(vaddr, None, self.page_size, "pagetable", None, root)
        table = root
        for depth, shift in enumerate(self._shifts()):
            idx = (vaddr >> shift) & 511
            entry_pa = table + idx * 8
            try:
                e = self.read_phys_u64(entry_pa)
            except MemoryReadError as err:
                t.error = f"{names[depth]} table at physical {table:#x} unreadable ({err})"
                return t
            is_leaf = depth == len(names) - 1 or (names[depth] in ("PUD", "PMD") and bool(e & PSE))
            step = WalkStep(names[depth], table, entry_pa, e, is_leaf and bool(e & PRESENT),
                            (1 << shift) if is_leaf else None)
            t.steps.append(step)
            if not e & PRESENT:
                t.error = f"{names[depth]} entry {e:#x} at physical {entry_pa:#x} is not present"
                return t
            if is_leaf:
                size = 1 << shift
                t.page_size = size
                t.paddr = (e & self.pte_mask & ~(size - 1)) | (vaddr & (size - 1))
                return t
            table = e & self.pte_mask
        return t

    # -- registers ---------------------------------------------------------------------------
    def cpu_registers(self) -> list[CpuRegisters]:
        out = self.prstatus_registers()
        qemu = [n for n in self.phys.notes_named("QEMU") if len(n.desc) >= 8 + 18 * 8]
        for i, n in enumerate(qemu):
            vals = struct.unpack_from("<18Q", n.desc, 8)
            regs = dict(zip(QEMU_REGS, vals))
            pos = 8 + 18 * 8
            for seg in QEMU_SEGS:
                if pos + 24 > len(n.desc):
                    break
                sel, _limit, _flags, _pad, base = struct.unpack_from("<IIIIQ", n.desc, pos)
                regs[seg] = sel
                regs[f"{seg}_base"] = base
                pos += 24
            if pos + 40 <= len(n.desc):
                for j, cr in enumerate(struct.unpack_from("<5Q", n.desc, pos)):
                    regs[f"cr{j}"] = cr
                pos += 40
            if pos + 8 <= len(n.desc):
                regs["kernel_gs_base"] = struct.unpack_from("<Q", n.desc, pos)[0]
            regs["eflags"] = regs.pop("rflags")
            if i < len(out):
                # QEMU's PRSTATUS and its own CPU note describe the same vCPU; keep the richer one.
                out[i].regs.update({k: v for k, v in regs.items() if k not in out[i].regs})
            else:
                out.append(CpuRegisters(i, None, regs, "qemu"))
        return out

    def describe(self) -> dict[str, object]:
        return {
            "arch": self.arch, "paging_levels": self.levels, "kaslr_offset": self.kaslr_offset,
            "phys_base": self.phys_base, "sme_mask": self.sme_mask, "page_offset_base": self.page_offset,
            "vmemmap_base": self.vmemmap_base, "kernel_pgd": self.kernel_root,
            "regions": [{"name": r.name, "start": r.start, "end": r.end, "method": r.method} for r in self.regions],
        }
