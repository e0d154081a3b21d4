"""The little x86_64 instruction knowledge the unwinders need: is the instruction before a return
address a call (and to where), and pt_regs as laid out by the entry code (an ABI, fixed since
2.6.25).
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ...errors import MemoryReadError, VmcorekitError

# The lowest address of x86_64's kernel half: a stack word below it points at no kernel text.
KERNEL_MIN = 0xFFFF800000000000
# struct pt_regs, in memory order; ORC's REGS frames and the entry code use this layout.
PT_REGS_FIELDS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax",
                  "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss")
PT_REGS_SIZE = 8 * len(PT_REGS_FIELDS)  # 168
IRET_FRAME_OFFSET = 8 * PT_REGS_FIELDS.index("rip")  # 128: ip, cs, flags, sp, ss
IRET_FIELDS = ("rip", "cs", "eflags", "rsp", "ss")
# struct inactive_task_frame (switch_to's saved context) without BTF: r15 r14 r13 r12 bx bp ret_addr
INACTIVE_FRAME_FIELDS = ("r15", "r14", "r13", "r12", "bx", "bp", "ret_addr")


def parse_pt_regs(raw: bytes) -> dict[str, int]:
    return dict(zip(PT_REGS_FIELDS, struct.unpack("<21Q", raw[:PT_REGS_SIZE])))


def parse_iret(raw: bytes) -> dict[str, int]:
    return dict(zip(IRET_FIELDS, struct.unpack("<5Q", raw[:40])))


def kernel_words(blk: bytes, base: int, start: int = 0,
                 end: int | None = None) -> Iterator[tuple[int, int]]:
    """(address, value) of each 8-byte word of `blk` (the memory at `base`), from offset `start`
    up to `end`, whose value is a kernel-half address: what a stack scan considers."""
    stop = len(blk) if end is None else min(end, len(blk))
    for off in range(start, stop - 7, 8):
        w = struct.unpack_from("<Q", blk, off)[0]
        if w >= KERNEL_MIN:
            yield base + off, w


def readable_stacks(read: Callable[[int, int], bytes],
                    stacks: Iterable[Any]) -> Iterator[tuple[Any, bytes]]:
    """(stack, its bytes) for each stack range that can be read; an unreadable one (a page
    missing from the dump) is skipped, as the stack searches want."""
    for s in stacks:
        try:
            yield s, read(s.lo, s.hi - s.lo)
        except (MemoryReadError, VmcorekitError):
            continue


def _modrm_length(code: bytes, pos: int) -> int | None:
    """Length of ModRM + SIB + displacement starting at code[pos], or None if out of range."""
    if pos >= len(code):
        return None
    modrm = code[pos]
    mod, rm = modrm >> 6, modrm & 7
    n = 1
    if mod != 3 and rm == 4:  # SIB
        if pos + 1 >= len(code):
            return None
        sib = code[pos + 1]
        n += 1
        if mod == 0 and sib & 7 == 5:
            n += 4
    if mod == 0 and rm == 5:
        n += 4  # rip-relative disp32
    elif mod == 1:
        n += 1
    elif mod == 2:
        n += 4
    return n


def call_before(code: bytes, ret: int) -> tuple[str, int | None] | None:
    """If the bytes `code` (ending exactly at return address `ret`) end with a call
    instruction: ("direct", target) or ("indirect", None); else None.

    Direct: E8 rel32. Indirect: [REX] FF /2 with any ModRM form (call *%reg, *disp(%reg),
    *rip-relative, ...)."""
    n = len(code)
    if n >= 5 and code[n - 5] == 0xE8:
        rel = struct.unpack_from("<i", code, n - 4)[0]
        return "direct", (ret + rel) & 0xFFFFFFFFFFFFFFFF
    for length in range(2, 9):
        start = n - length
        if start < 0:
            break
        p = start
        if 0x40 <= code[p] <= 0x4F:
            p += 1
        if p >= n or code[p] != 0xFF:
            continue
        if p + 1 >= n:
            continue
        reg = (code[p + 1] >> 3) & 7
        if reg != 2:
            continue
        ml = _modrm_length(code, p + 1)
        if ml is not None and p + 1 + ml == n:
            return "indirect", None
    return None


# -- instruction lengths -------------------------------------------------------------------------
# Enough of the x86_64 encoding to walk a function's instructions linearly, as a disassembler
# does (crash counts pushes and pops that way when it has no usable unwind entry). Unknown bytes
# are skipped one at a time, as gdb prints "(bad)".

_PREFIXES = frozenset((0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67))
_MODRM_1 = frozenset(
    [b for base in range(0x00, 0x40, 8) for b in (base, base + 1, base + 2, base + 3)]
    + [0x62, 0x63, 0x69, 0x6B] + list(range(0x80, 0x90)) + [0xC0, 0xC1, 0xC4, 0xC5, 0xC6, 0xC7]
    + list(range(0xD0, 0xD4)) + list(range(0xD8, 0xE0)) + [0xF6, 0xF7, 0xFE, 0xFF])
_IMM8_1 = frozenset([0x04, 0x0C, 0x14, 0x1C, 0x24, 0x2C, 0x34, 0x3C, 0x6A, 0x6B, 0x80, 0x82, 0x83,
                     0xA8, 0xC0, 0xC1, 0xC6, 0xCD, 0xD4, 0xD5, 0xE4, 0xE5, 0xE6, 0xE7]
                    + list(range(0x70, 0x80)) + list(range(0xB0, 0xB8)) + [0xE0, 0xE1, 0xE2, 0xE3, 0xEB])
_IMMZ_1 = frozenset([0x05, 0x0D, 0x15, 0x1D, 0x25, 0x2D, 0x35, 0x3D, 0x68, 0x69, 0x81, 0xA9, 0xC7,
                     0xE8, 0xE9])
_NO_MODRM_0F = frozenset([0x05, 0x06, 0x07, 0x08, 0x09, 0x0B, 0x0E, 0x30, 0x31, 0x32, 0x33, 0x34,
                          0x35, 0x37, 0x77, 0xA0, 0xA1, 0xA2, 0xA8, 0xA9, 0xAA]
                         + list(range(0x80, 0x90)) + list(range(0xC8, 0xD0)))
_IMM8_0F = frozenset([0x70, 0x71, 0x72, 0x73, 0xA4, 0xAC, 0xBA, 0xC2, 0xC4, 0xC5, 0xC6, 0x0F])


def insn_length(code: bytes, pos: int) -> int:
    """Length of the instruction at code[pos] (1 for bytes that do not decode)."""
    n = len(code)
    p = pos
    opsize16 = False
    addr32 = False
    while p < n and code[p] in _PREFIXES:
        opsize16 |= code[p] == 0x66
        addr32 |= code[p] == 0x67
        p += 1
    rex_w = False
    if p < n and 0x40 <= code[p] <= 0x4F:
        rex_w = bool(code[p] & 8)
        p += 1
    if p >= n:
        return 1
    op = code[p]
    p += 1
    imm = 0
    modrm = False
    if op in (0xC4, 0xC5, 0x62):  # VEX / EVEX
        if op == 0xC5:
            vmap, p = 1, p + 1
        elif op == 0xC4:
            if p >= n:
                return 1
            vmap, p = code[p] & 0x1F, p + 2
        else:
            if p >= n:
                return 1
            vmap, p = code[p] & 0x03, p + 3
        if p >= n:
            return 1
        vop = code[p]
        p += 1
        if vmap == 1 and vop == 0x77:  # vzeroupper / vzeroall
            return p - pos
        ml = _modrm_length(code, p)
        if ml is None:
            return 1
        p += ml
        if vmap == 3 or (vmap == 1 and vop in _IMM8_0F):
            p += 1
        return min(p, n) - pos
    if op == 0x0F:
        if p >= n:
            return 1
        op2 = code[p]
        p += 1
        if op2 == 0x38:
            p += 1
            modrm = True
        elif op2 == 0x3A:
            p += 1
            modrm, imm = True, 1
        else:
            modrm = op2 not in _NO_MODRM_0F
            if op2 in _IMM8_0F:
                imm = 1
            if 0x80 <= op2 <= 0x8F:
                imm = 4
    else:
        modrm = op in _MODRM_1
        if op in _IMM8_1:
            imm = 1
        elif op in _IMMZ_1:
            imm = 2 if (opsize16 and op not in (0xE8, 0xE9)) else 4
        elif 0xB8 <= op <= 0xBF:
            imm = 8 if rex_w else (2 if opsize16 else 4)
        elif 0xA0 <= op <= 0xA3:
            imm = 4 if addr32 else 8
        elif op in (0xC2, 0xCA):
            imm = 2
        elif op == 0xC8:
            imm = 3
        elif op in (0xF6, 0xF7):
            if p < n and (code[p] >> 3) & 7 in (0, 1):
                imm = 1 if op == 0xF6 else (2 if opsize16 else 4)
    if modrm:
        ml = _modrm_length(code, p)
        if ml is None:
            return 1
        p += ml
    p += imm
    return max(1, min(p, n) - pos)


def stack_effect(code: bytes, pos: int, length: int) -> tuple[str, int] | None:
    """What gdb's mnemonic for this instruction would tell crash's frame-size counter:
    ("push", 8), ("pop", 8) (pop, popf, popcnt, leave: crash matches mnemonic prefixes),
    ("add", imm) / ("sub", imm) for an immediate added to / subtracted from %rsp,
    ("and_rsp", 0) for stack realignment; None otherwise."""
    p = pos
    end = pos + length
    f3 = False
    while p < end and code[p] in _PREFIXES:
        f3 |= code[p] == 0xF3
        p += 1
    rex = 0
    if p < end and 0x40 <= code[p] <= 0x4F:
        rex = code[p]
        p += 1
    if p >= end:
        return None
    op = code[p]
    if 0x50 <= op <= 0x57 or op in (0x68, 0x6A, 0x9C):
        return "push", 8
    if 0x58 <= op <= 0x5F or op in (0x9D, 0xC9):
        return "pop", 8
    if op == 0x8F and p + 1 < end and (code[p + 1] >> 3) & 7 == 0:
        return "pop", 8
    if op == 0xFF and p + 1 < end and (code[p + 1] >> 3) & 7 == 6:
        return "push", 8
    if op == 0x0F and p + 1 < end:
        op2 = code[p + 1]
        if op2 in (0xA0, 0xA8):
            return "push", 8
        if op2 in (0xA1, 0xA9) or (op2 == 0xB8 and f3):
            return "pop", 8
        return None
    if op in (0x81, 0x83) and rex & 8 and p + 1 < end:
        modrm = code[p + 1]
        if modrm >> 6 == 3 and modrm & 7 == 4 and not rex & 1:  # register %rsp
            reg = (modrm >> 3) & 7
            if op == 0x83:
                imm = struct.unpack_from("<b", code, p + 2)[0]
            else:
                imm = struct.unpack_from("<i", code, p + 2)[0]
            value = imm & 0xFFFFFFFFFFFFFFFF  # gdb prints the sign-extended 64-bit immediate
            if reg == 0:
                return "add", value
            if reg == 5:
                return "sub", value
            if reg == 4:
                return "and_rsp", 0
    return None
