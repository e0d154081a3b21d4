"""Per-architecture address spaces, chosen from what the dump says it is."""
from __future__ import annotations

from ..dump.base import PhysicalMemory
from ..errors import UnsupportedDumpError, VmcoreinfoError
from ..vmcoreinfo import VmcoreInfo
from .base import AddressSpace, CpuRegisters, Region, Translation, WalkStep
from .platform import Platform, platform

__all__ = ["AddressSpace", "CpuRegisters", "Region", "Translation", "WalkStep", "address_space",
           "Platform", "platform"]


def address_space(phys: PhysicalMemory, vmcoreinfo: VmcoreInfo) -> AddressSpace:
    """The address space for the dump's architecture: the container's word first, then
    VMCOREINFO's arch-specific keys."""
    arch = phys.machine or vmcoreinfo.guess_arch()
    if arch is None or arch.lower() == "unknown":  # QEMU's kdump header says "Unknown"
        arch = vmcoreinfo.guess_arch()
    plat = platform(arch) if arch else None
    if plat is not None:
        return plat.new_address_space(phys, vmcoreinfo)
    if arch is None:
        raise VmcoreinfoError(f"{phys.path}: cannot tell the architecture (no ELF machine, no arch keys)")
    raise UnsupportedDumpError(phys.path, None, f"architecture {arch} is not supported")
