"""Frame-pointer unwinding, stack scanning, and the x86 instruction knowledge they rely on."""
from __future__ import annotations

import struct

import pytest

from orcgen import SynthKernel
from vmcorekit.kernel.stacks.unwind import State
from vmcorekit.kernel.stacks.x86 import call_before, insn_length, stack_effect

STACK = 0xFFFFC90000020000


def _fp_kernel():
    """Three frames linked by saved rbp, the outermost entered from user space via pt_regs
    encoded as rbp|1 (CONFIG_FRAME_POINTER entry code)."""
    k = SynthKernel()
    leaf = k.func("leaf", 0x40)
    mid = k.func("mid", 0x40)
    top = k.func("top", 0x40)
    r_mid = k.call(mid, 0x10, leaf)
    r_top = k.call(top, 0x10, mid)
    k.stack("task", STACK, 0x4000)
    sp = STACK + 0x3000
    bp_leaf = sp + 0x10
    bp_mid = sp + 0x40
    regs_at = STACK + 0x4000 - 168
    k.put(bp_leaf, bp_mid)
    k.put(bp_leaf + 8, r_mid)
    k.put(bp_mid, regs_at | 1)
    k.put(bp_mid + 8, r_top)
    k.put_regs(regs_at, rip=0x400123, rsp=0x7FFFF000, cs=0x33, ss=0x2B, eflags=0x202)
    return k, (leaf, mid, top), sp, bp_leaf, (r_mid, r_top), regs_at


def test_frame_pointer_chain():
    k, (leaf, mid, top), sp, bp, rets, regs_at = _fp_kernel()
    uw = k.unwinder(orc=False)
    assert uw.use_fp
    tr = uw.run(State(ip=leaf + 0x20, sp=sp, bp=bp, signal=True, method="regs"))
    assert [f.function for f in tr.frames] == ["leaf", "mid", "top"]
    assert [f.method for f in tr.frames[1:]] == ["fp", "fp"]
    assert tr.complete and tr.user_regs is not None and tr.user_regs.address == regs_at
    assert tr.user_regs.regs["rip"] == 0x400123


def test_frame_pointer_below_sp_is_rejected_then_scanned():
    k, (leaf, mid, top), sp, bp, rets, regs_at = _fp_kernel()
    uw = k.unwinder(orc=False)
    tr = uw.run(State(ip=leaf + 0x20, sp=sp, bp=sp - 0x100, signal=True, method="regs"))
    # The bad frame pointer is refused; the scan finds mid's return address instead.
    assert tr.frames[1].function == "mid" and tr.frames[1].method == "scan"
    assert any("below the stack pointer" in n for n in tr.notes)


def test_scan_only_unwinder_marks_every_guess():
    k, (leaf, mid, top), sp, bp, rets, regs_at = _fp_kernel()
    uw = k.unwinder(orc=False, use_fp=False)
    tr = uw.run(State(ip=leaf + 0x20, sp=sp, bp=None, signal=True, method="regs"))
    assert [f.function for f in tr.frames] == ["leaf", "mid", "top"]
    assert all(not f.reliable and f.method == "scan" for f in tr.frames[1:])


def test_scan_prefers_a_call_to_the_current_function():
    k = SynthKernel()
    cur = k.func("cur", 0x40)
    a = k.func("a", 0x40)
    b = k.func("b", 0x40)
    r_a = k.call(a, 0x10, b)      # a calls b: not a caller of cur
    r_b = k.call(b, 0x10, cur)    # b calls cur
    k.stack("task", STACK, 0x4000)
    sp = STACK + 0x1000
    k.put(sp, r_a)
    k.put(sp + 0x40, r_b)
    uw = k.unwinder(orc=False, use_fp=False)
    nxt = uw.scan_step(State(ip=cur + 4, sp=sp, bp=None, signal=True, method="regs"))
    assert nxt.ip == r_b and nxt.slot == sp + 0x40


def test_scan_accepts_indirect_calls_when_nothing_better():
    k = SynthKernel()
    cur = k.func("cur", 0x40)
    a = k.func("a", 0x40)
    r = k.indirect_call(a, 0x10)
    k.stack("task", STACK, 0x4000)
    sp = STACK + 0x1000
    k.put(sp + 0x18, cur + 3)      # text, but not after a call: skipped
    k.put(sp + 0x20, r)
    uw = k.unwinder(orc=False, use_fp=False)
    nxt = uw.scan_step(State(ip=cur + 4, sp=sp, bp=None, signal=True, method="regs"))
    assert nxt.ip == r


# -- instruction decoding ---------------------------------------------------------------------
@pytest.mark.parametrize("hexcode,length", [
    ("55", 1), ("4155", 2), ("4889e5", 3), ("4883ec28", 4), ("4881ec00010000", 7),
    ("65488b042528000000", 9), ("e800000000", 5), ("0f1f440000", 5), ("66906690", 2),
    ("0f1f8000000000", 7), ("c3", 1), ("cc", 1), ("48b8efcdab8967452301", 10), ("f30f1efa", 4),
    ("0f8412345678", 6), ("7405", 2), ("c5f877", 3), ("c4e27d18c0", 5), ("f6c101", 3), ("f7c100010000", 6),
])
def test_insn_length(hexcode, length):
    code = bytes.fromhex(hexcode) + b"\x90" * 8
    assert insn_length(code, 0) == length


@pytest.mark.parametrize("hexcode,effect", [
    ("55", ("push", 8)), ("4157", ("push", 8)), ("5b", ("pop", 8)), ("415f", ("pop", 8)),
    ("c9", ("pop", 8)), ("9c", ("push", 8)), ("4883ec28", ("sub", 0x28)), ("4883c418", ("add", 0x18)),
    ("4881ec00010000", ("sub", 0x100)), ("4883e4f0", ("and_rsp", 0)), ("4889e5", None),
    ("4883c018", None),  # add to %rax
    ("f3480fb8c0", ("pop", 8)),  # popcnt: crash's mnemonic-prefix test counts it as a pop
])
def test_stack_effect(hexcode, effect):
    code = bytes.fromhex(hexcode)
    assert stack_effect(code, 0, insn_length(code + b"\x90" * 8, 0)) == effect


def test_call_before():
    ret = 0xFFFFFFFF81000105
    code = b"\x90\x90\x90" + b"\xE8" + struct.pack("<i", -0x105)
    assert call_before(code, ret) == ("direct", 0xFFFFFFFF81000000)
    assert call_before(b"\x90" * 6 + b"\xFF\xD0", ret) == ("indirect", None)        # call *%rax
    assert call_before(b"\x90" * 5 + b"\x41\xFF\xD3", ret) == ("indirect", None)    # call *%r11
    assert call_before(b"\x90\x90" + b"\xFF\x15" + b"\x00" * 4, ret) == ("indirect", None)
    assert call_before(b"\x90" * 8, ret) is None
    assert call_before(b"\x90" * 6 + b"\xFF\xE0", ret) is None                       # jmp *%rax
