"""Synthetic kernels for the unwinder tests: text with real call instructions, a symbol table,
ORC tables in either bit layout, and stacks laid out word by word.

    k = SynthKernel()
    f = k.func("leaf", 0x40); g = k.func("caller", 0x80)
    ret = k.call(g, 0x10, f)                 # E8 call in g at +0x10 to f; returns the return address
    k.orc(f, sp=8)                           # from f's start: CFA = rsp + 8, a CALL frame
    k.orc(g, sp=8); k.orc(g + 1, sp=24)
    s = k.stack("task", 0xffffc90000004000, 0x4000)
    k.put(sp + 0x10, ret)
    uw = k.unwinder([s])
    tr = k.unwind(f + 4, sp)                 # k.unwinder().run(State(...)) from a CPU's registers
    functions(tr)                            # each frame's function, innermost first
"""
from __future__ import annotations

import struct

import numpy as np

from vmcorekit.errors import PageNotInDumpError
from vmcorekit.kernel.stacks import orc as O
from vmcorekit.kernel.stacks.kinfo import StackRange
from vmcorekit.kernel.stacks.model import Trace
from vmcorekit.kernel.stacks.unwind import StackMemory, State, Unwinder
from vmcorekit.program.symbols.table import SymbolTable

TEXT = 0xFFFFFFFF81000000
_OLD_CODE = {O.CALL: 0, O.REGS: 1, O.REGS_PARTIAL: 2}
_NEW_CODE = {O.UNDEFINED: 0, O.END: 1, O.CALL: 2, O.REGS: 3, O.REGS_PARTIAL: 4}


def functions(tr: Trace) -> list[str | None]:
    """The function of each frame of a trace, innermost first."""
    return [f.function for f in tr.frames]


def encode_bits(layout: O.OrcLayout, sp_reg: int, bp_reg: int, kind: str, signal: bool = False) -> int:
    f = layout.fields

    def put(name: str, v: int) -> int:
        shift, width = f[name]
        assert v < 1 << width
        return v << shift

    bits = put("sp_reg", sp_reg) | put("bp_reg", bp_reg)
    if layout.numbering == "old":
        if kind == O.END:
            bits |= put("end", 1)
        elif kind == O.UNDEFINED:
            bits &= ~(0xF << f["sp_reg"][0])  # sp_reg UNDEFINED
        else:
            bits |= put("type", _OLD_CODE[kind])
        if "signal" in f and signal:
            bits |= put("signal", 1)
    else:
        bits |= put("type", _NEW_CODE[kind])
        if signal:
            bits |= put("signal", 1)
    return bits


class SynthKernel:
    def __init__(self, layout: dict | None = None) -> None:
        self.layout = O.OrcLayout(dict(layout or O.LAYOUT_6_1), "synthetic")
        self.text = bytearray()
        self.funcs: list[tuple[str, int, int]] = []
        self.rows: list[tuple[int, int, int, int, int, str]] = []
        self.mem: dict[int, int] = {}  # stack words
        self.stacks: list[StackRange] = []

    # -- text ---------------------------------------------------------------------------------
    def func(self, name: str, size: int) -> int:
        addr = TEXT + len(self.text)
        self.text += b"\x90" * size
        self.funcs.append((name, addr, size))
        return addr

    def call(self, func: int, offset: int, target: int) -> int:
        """Put `call target` at func+offset; the return address."""
        at = func - TEXT + offset
        ret = func + offset + 5
        self.text[at:at + 5] = b"\xE8" + struct.pack("<i", target - ret)
        return ret

    def indirect_call(self, func: int, offset: int) -> int:
        """`call *%rax` (ff d0) at func+offset; the return address."""
        at = func - TEXT + offset
        self.text[at:at + 2] = b"\xFF\xD0"
        return func + offset + 2

    def orc(self, ip: int, sp: int = 8, *, sp_reg: int = O.ORC_REG_SP, bp_reg: int = O.ORC_REG_UNDEFINED,
            bp: int = 0, kind: str = O.CALL) -> None:
        self.rows.append((ip, sp_reg, sp, bp_reg, bp, kind))

    # -- stacks -------------------------------------------------------------------------------
    def stack(self, kind: str, lo: int, size: int, cpu: int | None = None) -> StackRange:
        s = StackRange(kind, lo, lo + size, cpu)
        self.stacks.append(s)
        return s

    def put(self, addr: int, value: int) -> None:
        assert addr % 8 == 0
        self.mem[addr] = value & 0xFFFFFFFFFFFFFFFF

    def put_regs(self, addr: int, **regs: int) -> None:
        from vmcorekit.kernel.stacks.x86 import PT_REGS_FIELDS
        for i, name in enumerate(PT_REGS_FIELDS):
            self.put(addr + 8 * i, regs.get(name, 0))

    # -- products -----------------------------------------------------------------------------
    def read(self, addr: int, n: int) -> bytes:
        t0 = addr - TEXT
        if 0 <= t0 and t0 + n <= len(self.text):
            return bytes(self.text[t0:t0 + n])
        out = bytearray()
        for a in range(addr, addr + n):
            base = a & ~7
            if base not in self.mem and not any(base in s for s in self.stacks):
                raise PageNotInDumpError(a, "not in the synthetic kernel")
            out.append((self.mem.get(base, 0) >> (8 * (a - base))) & 0xFF)
        return bytes(out)

    def symbols(self) -> SymbolTable:
        names = [n for n, _, _ in self.funcs] + ["_etext"]
        addrs = np.array([a for _, a, _ in self.funcs] + [TEXT + len(self.text)], dtype=np.uint64)
        sizes = np.array([s for _, _, s in self.funcs] + [0], dtype=np.uint64)
        return SymbolTable(names, addrs, b"t" * len(self.funcs) + b"T", sizes=sizes, source="synthetic",
                           text_ranges=[(TEXT, TEXT + len(self.text))])

    def orc_index(self) -> O.OrcIndex:
        rows = sorted(self.rows) + [(TEXT + len(self.text), O.ORC_REG_UNDEFINED, 0, 0, 0, O.UNDEFINED)]
        ips = np.array([r[0] for r in rows], dtype=np.uint64)
        ent = np.zeros(len(rows), dtype=O.ENTRY_DTYPE)
        for i, (ip, sp_reg, sp, bp_reg, bp, kind) in enumerate(rows):
            ent[i] = (sp, bp, encode_bits(self.layout, sp_reg, bp_reg, kind, kind in (O.REGS, O.REGS_PARTIAL)))
        return O.OrcIndex([O.OrcTable("vmlinux", ips, ent, self.layout)], self.layout)

    def unwinder(self, stacks: list[StackRange] | None = None, *, orc: bool = True, **kw) -> Unwinder:
        mem = StackMemory(self.read, stacks if stacks is not None else self.stacks)
        return Unwinder(mem, self.symbols(), self.orc_index() if orc else None, **kw)

    def unwind(self, ip: int, sp: int, bp: int | None = None, **kw) -> Trace:
        """The trace from an interrupted CPU's registers (ip, sp, bp), by unwinder(**kw)."""
        return self.unwinder(**kw).run(State(ip=ip, sp=sp, bp=bp, signal=True, method="regs"))
