"""x86_64 ORC unwind tables (arch/x86/include/asm/orc_types.h, arch/x86/kernel/unwind_orc.c).

objtool emits two parallel arrays: `.orc_unwind_ip` (s32, each relative to its own address: the
first instruction an entry covers) and `.orc_unwind` (6-byte `struct orc_entry`: s16 sp_offset,
s16 bp_offset, then bit fields). vmlinux's pair lies between `__start_orc_unwind_ip` /
`__stop_orc_unwind_ip` and at `__start_orc_unwind` (kallsyms); each module's is in
`struct module.arch` (`orc_unwind_ip`, `orc_unwind`, `num_orcs`).

The bit fields changed: up to 6.2 `sp_reg:4 bp_reg:4 type:2 end:1` with types CALL=0, REGS=1,
REGS_PARTIAL=2 ("undefined" = sp_reg UNDEFINED without `end`); 6.3 added `signal:1` before
`end`; 6.4 dropped `end` and widened `type` to 3 bits with UNDEFINED=0, END_OF_STACK=1, CALL=2,
REGS=3, REGS_PARTIAL=4. The layout is read from BTF's `struct orc_entry` when the dump has it, and
only otherwise guessed from the release.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import CorruptKernelDataError, MemoryReadError

Reader = Callable[[int, int], bytes]

# Register numbers (unchanged since ORC appeared in 4.14).
ORC_REG_UNDEFINED = 0
ORC_REG_PREV_SP = 1
ORC_REG_DX = 2
ORC_REG_DI = 3
ORC_REG_BP = 4
ORC_REG_SP = 5
ORC_REG_R10 = 6
ORC_REG_R13 = 7
ORC_REG_BP_INDIRECT = 8
ORC_REG_SP_INDIRECT = 9
REG_NAMES = {0: "undef", 1: "prev_sp", 2: "dx", 3: "di", 4: "bp", 5: "sp", 6: "r10", 7: "r13",
             8: "bp_indirect", 9: "sp_indirect"}

# Normalised entry types.
CALL, REGS, REGS_PARTIAL, UNDEFINED, END = "call", "regs", "regs_partial", "undefined", "end"
_OLD_TYPES = {0: CALL, 1: REGS, 2: REGS_PARTIAL}
_NEW_TYPES = {0: UNDEFINED, 1: END, 2: CALL, 3: REGS, 4: REGS_PARTIAL}

ENTRY_DTYPE = np.dtype([("sp_offset", "<i2"), ("bp_offset", "<i2"), ("bits", "<u2")])
# No kernel has more than a few million entries (6.x defconfig: ~400k); above this is garbage.
MAX_ORCS = 8_000_000
MAX_MODULE_ORCS = 1_000_000


@dataclass(frozen=True)
class OrcLayout:
    """Where the bit fields of `struct orc_entry` sit in its third 16-bit word."""

    fields: dict[str, tuple[int, int]]  # name -> (shift, width) within the u16
    source: str  # how it was decided, for the trace notes

    @property
    def numbering(self) -> str:
        return "old" if "end" in self.fields else "new"

    def describe(self) -> str:
        parts = " ".join(f"{n}:{w}@{s}" for n, (s, w) in sorted(self.fields.items(), key=lambda x: x[1]))
        return f"ORC entry layout {parts} ({self.source})"


LAYOUT_6_1 = {"sp_reg": (0, 4), "bp_reg": (4, 4), "type": (8, 2), "end": (10, 1)}
LAYOUT_6_3 = {"sp_reg": (0, 4), "bp_reg": (4, 4), "type": (8, 2), "signal": (10, 1), "end": (11, 1)}
LAYOUT_6_4 = {"sp_reg": (0, 4), "bp_reg": (4, 4), "type": (8, 3), "signal": (11, 1)}


def layout_from_btf(orc_entry_type: object | None) -> OrcLayout | None:
    """The layout from BTF's `struct orc_entry` (a types.model.Type), None if it is not usable."""
    members = getattr(orc_entry_type, "members", None)
    if not members:
        return None
    fields: dict[str, tuple[int, int]] = {}
    for m in members:
        bits = getattr(m, "bit_field_size", None)
        if m.name in ("sp_reg", "bp_reg", "type", "end", "signal") and bits:
            shift = m.bit_offset - 32
            if not 0 <= shift < 16 or shift + bits > 16:
                return None
            fields[m.name] = (shift, bits)
    if not {"sp_reg", "bp_reg", "type"} <= fields.keys():
        return None
    return OrcLayout(fields, "from BTF struct orc_entry")


def layout_from_version(version: tuple[int, ...] | None) -> OrcLayout:
    """Last resort when BTF is missing: the layout by kernel release."""
    if version is None:
        return OrcLayout(dict(LAYOUT_6_1), "guessed: kernel release unknown, assumed < 6.3")
    v = tuple(version[:2])
    if v >= (6, 4):
        return OrcLayout(dict(LAYOUT_6_4), f"guessed from release {v[0]}.{v[1]} (>= 6.4)")
    if v >= (6, 3):
        return OrcLayout(dict(LAYOUT_6_3), f"guessed from release {v[0]}.{v[1]} (6.3)")
    return OrcLayout(dict(LAYOUT_6_1), f"guessed from release {v[0]}.{v[1]} (< 6.3)")


@dataclass(frozen=True, slots=True)
class OrcEntry:
    ip: int  # first address the entry covers
    sp_offset: int
    bp_offset: int
    sp_reg: int
    bp_reg: int
    type: str  # CALL, REGS, REGS_PARTIAL, UNDEFINED, END
    signal: bool
    table: str  # "vmlinux" or the module name

    def describe(self) -> str:
        return (f"sp={REG_NAMES.get(self.sp_reg, self.sp_reg)}{self.sp_offset:+d} "
                f"bp={REG_NAMES.get(self.bp_reg, self.bp_reg)}{self.bp_offset:+d} type={self.type}")


def decode_entry(layout: OrcLayout, ip: int, sp_offset: int, bp_offset: int, bits: int,
                 table: str = "vmlinux") -> OrcEntry:
    f = layout.fields

    def get(name: str) -> int:
        if name not in f:
            return 0
        shift, width = f[name]
        return (bits >> shift) & ((1 << width) - 1)

    sp_reg, bp_reg, t = get("sp_reg"), get("bp_reg"), get("type")
    if layout.numbering == "old":
        if get("end"):
            kind = END
        elif sp_reg == ORC_REG_UNDEFINED:
            kind = UNDEFINED
        else:
            kind = _OLD_TYPES.get(t, UNDEFINED)
        signal = bool(get("signal")) if "signal" in f else kind in (REGS, REGS_PARTIAL)
    else:
        kind = _NEW_TYPES.get(t, UNDEFINED)
        signal = bool(get("signal"))
    return OrcEntry(ip, sp_offset, bp_offset, sp_reg, bp_reg, kind, signal, table)


class OrcTable:
    """One sorted ORC table (vmlinux or a module)."""

    def __init__(self, name: str, ips: np.ndarray, entries: np.ndarray, layout: OrcLayout) -> None:
        if len(ips) != len(entries):
            raise ValueError("ip and entry tables differ in length")
        ips = np.asarray(ips, dtype=np.uint64)
        if len(ips) > 1 and not bool(np.all(ips[1:] >= ips[:-1])):
            # The kernel sorts both at build (vmlinux) or load (modules) time; a dump taken
            # mid-load could show them unsorted: sort rather than mis-search.
            order = np.argsort(ips, kind="stable")
            ips, entries = ips[order], entries[order]
        self.name = name
        self.ips = ips
        self.entries = entries
        self.layout = layout

    def __len__(self) -> int:
        return len(self.ips)

    @property
    def start(self) -> int:
        return int(self.ips[0]) if len(self.ips) else 0

    @property
    def end(self) -> int:
        return int(self.ips[-1]) if len(self.ips) else 0

    def find(self, ip: int) -> OrcEntry | None:
        """The entry covering `ip`: the last one starting at or below it (orc_find)."""
        if not len(self.ips) or ip < self.start:
            return None
        k = int(np.searchsorted(self.ips, np.uint64(ip), side="right")) - 1
        if k < 0:
            return None
        e = self.entries[k]
        return decode_entry(self.layout, int(self.ips[k]), int(e["sp_offset"]), int(e["bp_offset"]),
                            int(e["bits"]), self.name)


def read_table(read: Reader, name: str, ip_table: int, orc_table: int, count: int,
               layout: OrcLayout, limit: int = MAX_ORCS) -> OrcTable:
    """Read `count` entries of an ORC table pair from memory."""
    if count <= 0 or count > limit:
        raise CorruptKernelDataError(f"{name}: ORC table size {count} is not in 1..{limit}")
    raw_ip = np.frombuffer(read(ip_table, 4 * count), dtype="<i4")
    base = np.uint64(ip_table) + np.arange(count, dtype=np.uint64) * np.uint64(4)
    ips = base + raw_ip.astype(np.int64).astype(np.uint64)  # wraps modulo 2**64 like the kernel
    entries = np.frombuffer(read(orc_table, 6 * count), dtype=ENTRY_DTYPE).copy()
    return OrcTable(name, ips, entries, layout)


class OrcIndex:
    """vmlinux's ORC table plus the modules'. A module's table is chosen by the module that
    holds the address (as the kernel's __module_address does): module tables also cover their
    freed init text, whose addresses later modules reuse, so their extents overlap."""

    def __init__(self, tables: Sequence[OrcTable], layout: OrcLayout, notes: Sequence[str] = ()) -> None:
        self.tables = list(tables)
        self.layout = layout
        self.notes = list(notes)
        self.by_name = {t.name: t for t in self.tables}
        self._ranges = sorted((t.start, t.end, i) for i, t in enumerate(self.tables) if len(t))

    def find(self, ip: int, module: str | None = None) -> OrcEntry | None:
        """The entry for `ip`; `module` is the module holding it (None for vmlinux or unknown)."""
        if module is not None:
            t = self.by_name.get(module)
            return t.find(ip) if t is not None else None
        vm = self.by_name.get("vmlinux")
        if vm is not None and vm.start <= ip <= vm.end:
            return vm.find(ip)
        hits = [i for lo, hi, i in self._ranges if lo <= ip <= hi and self.tables[i] is not vm]
        if len(hits) == 1:
            return self.tables[hits[0]].find(ip)
        return None  # no table, or an address several modules' extents cover: unknown owner

    def __len__(self) -> int:
        return sum(len(t) for t in self.tables)


def load_vmlinux_table(read: Reader, address_of: Callable[[str], int], layout: OrcLayout) -> OrcTable:
    """vmlinux's table from the kallsyms-located section bounds."""
    start_ip = address_of("__start_orc_unwind_ip")
    stop_ip = address_of("__stop_orc_unwind_ip")
    start_orc = address_of("__start_orc_unwind")
    if stop_ip <= start_ip or (stop_ip - start_ip) % 4:
        raise CorruptKernelDataError(f"ORC ip table bounds {start_ip:#x}..{stop_ip:#x} are not a "
                                     "whole number of entries")
    count = (stop_ip - start_ip) // 4
    try:
        stop_orc = address_of("__stop_orc_unwind")
        if stop_orc - start_orc != 6 * count:
            raise CorruptKernelDataError(f"ORC tables disagree: {count} ips but "
                                         f"{(stop_orc - start_orc) / 6:g} entries")
    except LookupError:
        pass
    return read_table(read, "vmlinux", start_ip, start_orc, count, layout)


def safe_module_table(read: Reader, name: str, ip_ptr: int, orc_ptr: int, num: int,
                      layout: OrcLayout) -> tuple[OrcTable | None, str | None]:
    """A module's table, or None and why not (bad pointers, pages missing)."""
    if not num:
        return None, None
    try:
        return read_table(read, name, ip_ptr, orc_ptr, num, layout, MAX_MODULE_ORCS), None
    except (MemoryReadError, CorruptKernelDataError, ValueError) as e:
        return None, f"module {name}: ORC table unreadable ({e})"
