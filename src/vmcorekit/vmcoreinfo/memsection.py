"""SPARSEMEM's `mem_section` as VMCOREINFO describes it — the one decoder of section words.

    ms = MemSection.from_vmcoreinfo(vi, extreme=...)   # None without SYMBOL(mem_section)
    ms.first_present(read_ptr, flag_mask=0x3F)           # root 0's first present section word
    words = ms.section_words(blob, count, ptr, order)     # section_mem_map of a run of sections
    section_mem_map(word, nr, pages_per_section, sizeof_page, ptr)   # that section's mem_map

`SYMBOL(mem_section)` is the array of sections itself (SPARSEMEM) or, with SPARSEMEM_EXTREME,
the *value* of the `mem_section` pointer: the array of roots, each root a page of sections.
Each section's `section_mem_map` holds its mem_map minus the section's first pfn (so under
SPARSEMEM_VMEMMAP the vmemmap base itself), with SECTION_* flags in the low bits.

Consumers sit on either side of the address space: arch/ finds the vmemmap base from the
first present section while it is still building the space (reading through a callable), and
kernel/memmap.py maps every section to its struct pages. Each keeps its own rule for whether
the array is EXTREME and which low bits are flags; the reading and decoding are here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import VmcoreInfo

__all__ = ["MemSection", "SECTION_MARKED_PRESENT", "SECTION_MAP_FLAGS", "section_mem_map",
           "VMCOREINFO_VALUE_SYMBOLS"]

# SYMBOL() entries that are a pointer's value, not an address: VMCOREINFO_SYMBOL_ARRAY(x)
# exports `x` itself, and mem_section is the one such entry (SPARSEMEM_EXTREME's root array).
VMCOREINFO_VALUE_SYMBOLS = frozenset({"mem_section"})

SECTION_MARKED_PRESENT = 1
# Section flags take the low bits of section_mem_map; the kernel keeps at least 6 free.
SECTION_MAP_FLAGS = 0x3F
# Sections the arch probes look at for a present one (root 0 holds far more).
PROBE_SECTIONS = 64


@dataclass(frozen=True)
class MemSection:
    """Where the section words are: SYMBOL(mem_section), SIZE(mem_section) and
    OFFSET(mem_section.section_mem_map), and whether SYMBOL() names the root array."""

    symbol: int
    extreme: bool
    sec_size: int
    map_off: int

    @classmethod
    def from_vmcoreinfo(cls, vi: VmcoreInfo, *, extreme: bool, sec_size: int | None = None,
                        map_off: int | None = None) -> "MemSection | None":
        """None when VMCOREINFO has no SYMBOL(mem_section). A missing SIZE / OFFSET falls back
        to the 16-byte struct with section_mem_map first unless the caller gives them."""
        symbol = vi.symbols.get("mem_section")
        if symbol is None:
            return None
        return cls(symbol, extreme,
                   vi.sizes.get("mem_section", 16) if sec_size is None else sec_size,
                   vi.offsets.get("mem_section.section_mem_map", 0) if map_off is None else map_off)

    def first_root(self, read_ptr: Callable[[int], int]) -> int:
        """Address of root 0's sections: *SYMBOL() under EXTREME, else SYMBOL() itself."""
        return read_ptr(self.symbol) if self.extreme else self.symbol

    def first_present(self, read_ptr: Callable[[int], int], *, flag_mask: int,
                      count: int = PROBE_SECTIONS) -> int | None:
        """The section_mem_map word of the first of root 0's first `count` sections that is
        SECTION_MARKED_PRESENT with a map beyond the `flag_mask` bits; None when none is. Read
        one word at a time, so a hole after the first present section does not matter.
        MemoryReadError from `read_ptr` is the caller's."""
        roots = self.first_root(read_ptr)
        for i in range(count):
            smm = read_ptr(roots + i * self.sec_size + self.map_off)
            if smm & SECTION_MARKED_PRESENT and smm & ~flag_mask:
                return smm
        return None

    def section_words(self, blob: bytes, count: int, pointer_size: int,
                      byteorder: str) -> list[int]:
        """section_mem_map of each of `count` consecutive sections read as one `blob`."""
        o, s, p = self.map_off, self.sec_size, pointer_size
        return [int.from_bytes(blob[i * s + o:i * s + o + p], byteorder)  # type: ignore[arg-type]
                for i in range(count)]


def section_mem_map(word: int, nr: int, pages_per_section: int, sizeof_page: int,
                    pointer_size: int) -> int | None:
    """The struct pages of section `nr` from its section_mem_map `word`: None when the section
    is not present."""
    if not word & SECTION_MARKED_PRESENT:
        return None
    bits = (1 << (pointer_size * 8)) - 1
    return ((word & ~SECTION_MAP_FLAGS & bits) + nr * pages_per_section * sizeof_page) & bits
