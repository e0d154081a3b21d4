"""Kernel machine code as text (crash's `dis`), by capstone, with kernel symbols shown.

    disassemble(prog, addr, count=5)        # [Instruction], from addr
    function_range(prog, addr)              # (start, end) of the function around addr

The platform record names capstone's architecture, mode and syntax (AT&T on x86_64, as gdb
and so crash print it). Branch and call targets that are immediates get `<symbol+offset>`.
On x86_64 the operand-size suffix capstone's AT&T printer always adds is dropped where gdb
drops it (a register operand gives the size; branches, push and pop have one size), so the
text reads as crash's. Code is read from the dump; an unreadable page ends the listing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import DisassemblerUnavailableError, MemoryReadError, SymbolError

if TYPE_CHECKING:
    from .core import Program

# One listing at most this many instructions / bytes (a function is far smaller).
MAX_INSTRUCTIONS = 1 << 16
MAX_BYTES = 1 << 20
# The longest instruction of any supported architecture (x86: 15 bytes).
MAX_INSN = 16
_DECIMAL_IMM = re.compile(r"\$(-?\d+)(?![\dx])")
_ZERO_DISP = re.compile(r"(^|[ ,:*])\((?=%)")
_NO_SCALE = re.compile(r"\((%\w*),(%\w+)\)")
_DECIMAL_DISP = re.compile(r"(^|[ ,:*])(-?)(\d+)\(")
_NEGATIVE_IMM = re.compile(r"\$-0x([0-9a-f]+)")
_NO_SUFFIX = frozenset({"call", "ret", "jmp", "push", "pop", "leave", "iret", "sysret"})


@dataclass(frozen=True)
class Instruction:
    address: int
    size: int
    raw: bytes
    mnemonic: str
    operands: str
    symbol: str | None  # the function containing the instruction
    offset: int | None  # from that function's start
    target: int | None = None  # an immediate branch or call target
    target_symbol: str | None = None  # `name+off` of the target
    reference: int | None = None  # the address a PC-relative operand names
    reference_symbol: str | None = None
    mark: str | None = None  # crash's remark after the instruction: "FTRACE NOP"

    def text(self) -> str:
        """The instruction as gdb prints it: mnemonic padded to 6, operands, `<target>`,
        and `# 0x... <symbol>` for a PC-relative operand."""
        ops = self.operands
        if self.target_symbol:
            ops = f"{ops} <{self.target_symbol}>"
        out = f"{self.mnemonic:<6} {ops}"  # gdb pads the mnemonic even with no operands
        if self.reference is not None:
            sym = f" <{self.reference_symbol}>" if self.reference_symbol else ""
            out = f"{out}        # {self.reference:#x}{sym}"
        return f"{out} [{self.mark}]" if self.mark else out


def _engine(prog: "Program") -> Any:
    spec = prog.platform.disassembler
    if not spec:
        raise DisassemblerUnavailableError(f"no disassembler is known for {prog.platform.name}")
    try:
        import capstone
    except ImportError:
        raise DisassemblerUnavailableError("dis needs capstone: pip install capstone") from None
    archs, modes, syntax = spec
    arch = next((getattr(capstone, a) for a in archs if hasattr(capstone, a)), None)
    mode = 0
    for m in modes:
        mode |= getattr(capstone, m, 0)
    if arch is None:
        raise DisassemblerUnavailableError(f"this capstone has none of {', '.join(archs)}")
    if prog.platform.byteorder == "big":
        mode |= capstone.CS_MODE_BIG_ENDIAN
    md = capstone.Cs(arch, mode)
    md.detail = True
    if syntax == "att":
        md.syntax = capstone.CS_OPT_SYNTAX_ATT
    return md


def engine(prog: "Program") -> Any:
    """capstone's Cs for the dump's architecture (made once per Program)."""
    return prog.memo((engine,), lambda: _engine(prog))


def _symbol_offset(prog: "Program", addr: int) -> tuple[str | None, int | None]:
    s = prog.symbols.lookup(addr)
    return (None, None) if s is None else (s.name, addr - s.address)


def _target_name(prog: "Program", addr: int) -> str | None:
    s = prog.symbols.lookup(addr)
    if s is None:
        return None
    off = addr - s.address
    return f"{s.name}+{off}" if off else s.name


def function_range(prog: "Program", addr: int) -> tuple[int, int]:
    """[start, end) of the text symbol containing `addr`; SymbolError when none does."""
    s = prog.symbols.lookup(addr)
    if s is None or not s.is_text:
        raise SymbolError(f"{addr:#x} is in no kernel or module function")
    return s.address, s.address + max(1, min(s.size, MAX_BYTES))


def _read_code(prog: "Program", start: int, size: int) -> tuple[bytes, str | None]:
    """The bytes at [start, start+size), or those up to the first unreadable page and why."""
    try:
        return prog.read(start, size), None
    except MemoryReadError:
        pass
    out = bytearray()
    page = prog.page_size
    addr = start
    while addr < start + size:
        n = min(page - addr % page, start + size - addr)
        try:
            out += prog.read(addr, n)
        except MemoryReadError as e:
            return bytes(out), f"code at {addr:#x} is not in the dump: {e}"
        addr += n
    return bytes(out), None


def _normalise(md: Any, insn: Any, prog: "Program") -> tuple[str, str, int | None]:
    """(mnemonic, operands, immediate target) as gdb writes them."""
    import capstone
    mn, ops = insn.mnemonic, insn.op_str
    is_branch = insn.group(capstone.CS_GRP_JUMP) or insn.group(capstone.CS_GRP_CALL)
    target = None
    if is_branch and insn.operands and insn.operands[-1].type == capstone.CS_OP_IMM:
        target = insn.operands[-1].imm & 0xFFFF_FFFF_FFFF_FFFF
    if md.syntax == capstone.CS_OPT_SYNTAX_ATT:
        base = insn.insn_name()
        has_reg = any(o.type == capstone.CS_OP_REG for o in insn.operands)
        prefix, _, core = mn.rpartition(" ")  # "lock cmpxchgl": the prefix stays
        if len(core) == len(base) + 1 and core.startswith(base) and core[-1] in "bwlq" and \
                (has_reg or base in _NO_SUFFIX):
            mn = f"{prefix} {base}" if prefix else base
        ops = ops.replace(", ", ",")
        ops = _DECIMAL_DISP.sub(lambda m: f"{m[1]}{m[2]}0x{int(m[3]):x}(", ops)  # gdb: hex displacements
        mem = next((o.mem for o in insn.operands if o.type == capstone.CS_OP_MEM), None)
        if mem is not None:
            # gdb shows an encoded zero displacement (ModRM mod 01/10) and a scale of 1.
            if mem.disp == 0 and (getattr(insn, "modrm", 0) >> 6) in (1, 2):
                ops = _ZERO_DISP.sub(r"\g<1>0x0(", ops, count=1)
            if mem.index != 0 and mem.scale == 1:
                ops = _NO_SCALE.sub(r"(\1,\2,1)", ops, count=1)
        # gdb writes every immediate in hex, a negative one as the operand-sized word.
        width = max((o.size for o in insn.operands), default=8) or 8
        mask = (1 << 8 * width) - 1
        ops = _DECIMAL_IMM.sub(lambda m: f"$0x{int(m[1]) & mask:x}", ops)
        ops = _NEGATIVE_IMM.sub(lambda m: f"$0x{-int(m[1], 16) & mask:x}", ops)
    elif target is not None:
        ops = ops.replace("#0x", "0x")  # gdb writes branch targets as plain addresses
    return mn, ops, target


def _pc_relative(insn: Any) -> int | None:
    """The address a PC-relative memory operand names (x86's `disp(%rip)`), for gdb's
    `# 0x... <symbol>` comment."""
    import capstone
    for o in insn.operands:
        if o.type == capstone.CS_OP_MEM and o.mem.base != 0 and insn.reg_name(o.mem.base) == "rip":
            return (insn.address + insn.size + o.mem.disp) & 0xFFFF_FFFF_FFFF_FFFF
    return None


def disassemble(prog: "Program", start: int, *, count: int | None = None, end: int | None = None,
                problems: list[str] | None = None) -> list[Instruction]:
    """Instructions from `start`: `count` of them, or those before `end`. Bytes that do not
    decode or cannot be read end the listing, said in `problems`."""
    md = engine(prog)
    if count is None and end is None:
        count = 1
    count = min(count if count is not None else MAX_INSTRUCTIONS, MAX_INSTRUCTIONS)
    size = min((end - start) if end is not None else count * MAX_INSN, MAX_BYTES)
    if size <= 0:
        return []
    code, why = _read_code(prog, start, size)
    out: list[Instruction] = []
    nop = prog.platform.ftrace_nop
    pos = 0
    while len(out) < count and pos < len(code):
        insn = next(md.disasm(code[pos:pos + MAX_INSN], start + pos, 1), None)
        if insn is None:
            if len(code) - pos >= MAX_INSN or why is None:
                if problems is not None:
                    problems.append(f"bytes at {start + pos:#x} do not decode as an instruction")
            break
        mn, ops, target = _normalise(md, insn, prog)
        sym, off = _symbol_offset(prog, insn.address)
        ref = _pc_relative(insn)
        out.append(Instruction(insn.address, insn.size, bytes(insn.bytes), mn, ops, sym, off, target,
                               None if target is None else _target_name(prog, target),
                               ref, None if ref is None else _target_name(prog, ref),
                               "FTRACE NOP" if off == 0 and nop and bytes(insn.bytes) == nop else None))
        pos += insn.size
    if why is not None and len(out) < count and (end is None or start + pos < end) and problems is not None:
        problems.append(why)
    return out
