"""Virtual memory: the per-architecture translation map over physical memory.

Following libkdumpfile's idea, an address space is a map of virtual ranges to methods: linear
ranges (direct map, kernel image) translate by an offset without touching page tables; the rest
is a page-table walk. `explain()` returns every step so `vtop` can show its work.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from functools import cached_property
from dataclasses import dataclass, field

import struct

from ..dump.base import NT_PRSTATUS, PhysicalMemory
from ..errors import MemoryReadError, TranslationError
from ..vmcoreinfo import VmcoreInfo
from .platform import Platform, platform


@dataclass(frozen=True)
class Region:
    """A named virtual range and how it translates (`offset` set for linear ranges)."""

    name: str
    start: int
    end: int
    method: str  # "linear" or "pagetable"
    offset: int | None = None  # paddr = vaddr - offset (mod 2**64)

    def contains(self, vaddr: int) -> bool:
        return self.start <= vaddr < self.end


@dataclass(frozen=True)
class WalkStep:
    """One page-table level: which table, the entry's physical address and its value."""

    level: str
    table_paddr: int
    entry_paddr: int
    entry: int
    leaf: bool = False
    page_size: int | None = None


@dataclass
class Translation:
    vaddr: int
    paddr: int | None
    page_size: int
    method: str  # "linear:<region>" or "pagetable"
    region: str | None
    root: int | None = None  # physical address of the top-level table walked
    steps: list[WalkStep] = field(default_factory=list)
    error: str | None = None


@dataclass
class CpuRegisters:
    """Registers of one CPU at the crash, as its register note gave them."""

    cpu: int
    pid: int | None
    regs: dict[str, int]
    source: str  # "prstatus" or "qemu"


class AddressSpace(ABC):
    """Kernel virtual memory of one dump."""

    arch: str = "?"
    page_size: int = 4096
    direct_map_name: str = ""  # the name of the Region that maps all physical memory linearly
    _TLB_MAX = 1 << 16

    @cached_property
    def platform(self) -> Platform:
        p = platform(self.arch)
        assert p is not None, f"no platform record for {self.arch}"
        return p

    @property
    def pointer_size(self) -> int:  # the platform's: one home for the fact
        return self.platform.pointer_size

    @property
    def byteorder(self) -> str:
        return self.platform.byteorder

    def __init__(self, phys: PhysicalMemory, vmcoreinfo: VmcoreInfo) -> None:
        self.phys = phys
        self.vmcoreinfo = vmcoreinfo
        self.regions: list[Region] = []
        self._tlb: OrderedDict[tuple[int, int | None], int] = OrderedDict()

    # -- per architecture --------------------------------------------------------------------
    @abstractmethod
    def walk(self, vaddr: int, root: int | None = None) -> Translation:
        """Translate by walking page tables from `root` (physical; default: the kernel's)."""

    @abstractmethod
    def cpu_registers(self) -> list[CpuRegisters]:
        """Registers of each CPU from the dump's notes."""

    def prstatus_registers(self) -> list[CpuRegisters]:
        """Each CORE/NT_PRSTATUS note's pid and general registers, in the platform's layout."""
        plat = self.platform
        lay = plat.prstatus
        fmt = plat.unpack(f"{len(lay.names)}Q")
        out: list[CpuRegisters] = []
        for n in self.phys.notes_named("CORE", NT_PRSTATUS):
            if len(n.desc) < lay.size:
                continue
            pid = struct.unpack_from(plat.unpack("I"), n.desc, 32)[0]  # elf_prstatus.pr_pid
            regs = dict(zip(lay.names, struct.unpack_from(fmt, n.desc, lay.offset)))
            out.append(CpuRegisters(len(out), pid, regs, "prstatus"))
        return out

    def data_references(self, code: bytes, pc: int) -> list[tuple[str, int, int]] | None:
        """The kernel data a function's machine code (`code`, loaded at `pc`) addresses
        directly, in order: ("addr", 0, target) for an address formed, ("load", size, target)
        for a load from a fixed address. None where the architecture's code is not decoded."""
        return None

    def describe(self) -> dict[str, object]:
        """Architecture facts for `info`."""
        return {"arch": self.arch, "regions": [(r.name, r.start, r.end, r.method) for r in self.regions]}

    # -- shared ------------------------------------------------------------------------------
    def region_of(self, vaddr: int) -> Region | None:
        for r in self.regions:
            if r.contains(vaddr):
                return r
        return None

    def direct_map(self) -> Region | None:
        """The linear map of physical memory (x86's direct map, arm64's linear map), when
        this dump let it be found."""
        return next((r for r in self.regions if r.name == self.direct_map_name and r.offset is not None), None)

    def phys_to_virt(self, paddr: int) -> int | None:
        """The direct-map virtual address of physical `paddr` (the kernel's __va), or None
        when the direct map is unknown or does not reach that far."""
        r = self.direct_map()
        if r is None or r.offset is None:
            return None
        v = (paddr + r.offset) & 0xFFFF_FFFF_FFFF_FFFF
        return v if r.contains(v) else None

    def explain(self, vaddr: int, root: int | None = None) -> Translation:
        """The translation with every step, linear shortcut or not (for `vtop`)."""
        r = self.region_of(vaddr) if root is None else None
        t = self.walk(vaddr, root)
        if r is not None and r.method == "linear" and r.offset is not None:
            lin = (vaddr - r.offset) & 0xFFFFFFFFFFFFFFFF
            t.method = f"linear:{r.name}"
            t.region = r.name
            if t.paddr is None:
                # Page tables unreadable (filtered dump): the linear answer still stands.
                t.paddr, t.error = lin, t.error
        elif r is not None:
            t.region = r.name
        return t

    def translate(self, vaddr: int, root: int | None = None) -> int:
        """Physical address of `vaddr`; TranslationError when it does not map."""
        if root is None:
            for r in self.regions:
                if r.start <= vaddr < r.end:
                    if r.offset is not None:
                        return (vaddr - r.offset) & 0xFFFFFFFFFFFFFFFF
                    break
        page = vaddr & ~(self.page_size - 1)
        key = (page, root)
        hit = self._tlb.get(key)
        if hit is not None:
            return hit + (vaddr - page)
        t = self.walk(vaddr, root)
        if t.paddr is None:
            raise TranslationError(vaddr, t.error or "does not map")
        base = t.paddr - (vaddr - page)
        self._tlb[key] = base
        if len(self._tlb) > self._TLB_MAX:
            self._tlb.popitem(last=False)
        return t.paddr

    def read(self, vaddr: int, size: int, root: int | None = None) -> bytes:
        """Bytes at virtual [vaddr, vaddr+size). Linear stretches are read in one call."""
        if size <= 0:
            return b""
        ps = self.page_size
        first_end = (vaddr | (ps - 1)) + 1
        if vaddr + size <= first_end:
            return self._read_phys(vaddr, self.translate(vaddr, root), size)
        parts = []
        pos, end = vaddr, vaddr + size
        while pos < end:
            n = min(end, (pos | (ps - 1)) + 1) - pos
            parts.append(self._read_phys(pos, self.translate(pos, root), n))
            pos += n
        return b"".join(parts)

    def _read_phys(self, vaddr: int, paddr: int, size: int) -> bytes:
        try:
            return self.phys.read(paddr, size)
        except MemoryReadError as e:
            # Name the virtual address too: that is what the user asked for.
            e.args = (f"virtual address {vaddr:#x} (physical {paddr:#x}): {str(e).split(': ', 1)[-1]}",)
            e.vaddr = vaddr  # type: ignore[attr-defined]
            raise

    def read_u64(self, vaddr: int, root: int | None = None) -> int:
        return int.from_bytes(self.read(vaddr, 8, root), "little")

    def read_phys_u64(self, paddr: int) -> int:
        return int.from_bytes(self.phys.read(paddr, 8), "little")
