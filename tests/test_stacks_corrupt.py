"""Corrupt stacks end a trace with a reason; they never hang or raise."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orcgen import SynthKernel
from vmcorekit.kernel.stacks import orc as O
from vmcorekit.kernel.stacks.unwind import State

STACK = 0xFFFFC90000030000


def _kernel():
    k = SynthKernel()
    f = k.func("f", 0x40)
    g = k.func("g", 0x40)
    r_g = k.call(g, 0x10, f)
    r_f = k.call(f, 0x10, g)   # f also calls g: lets a corrupt stack loop between them
    k.orc(f, 8)
    k.orc(g, 8)
    k.stack("task", STACK, 0x4000)
    return k, f, g, r_g, r_f


def test_loop_in_return_chain_is_detected():
    """A stack whose frames point back down (sp would not grow) ends with 'loop'."""
    k, f, g, r_g, r_f = _kernel()
    k.rows.clear()
    k.orc(f, 8)
    k.orc(g, -8)  # corrupt entry: the CFA lies below the current sp
    sp = STACK + 0x2000
    k.put(sp, r_g)
    k.put(sp - 8 - 8, r_f)
    tr = k.unwinder(use_scan=False).run(State(ip=f + 4, sp=sp, bp=None, signal=True, method="regs"))
    assert "loop" in tr.end_reason and not tr.complete
    assert len(tr.frames) == 2


def test_endless_chain_is_capped():
    """A return chain that goes on and on (a corrupt stack full of return addresses) stops at
    the stack's end or max_frames, whichever comes first."""
    k, f, g, r_g, r_f = _kernel()
    for i in range(0, 0x4000, 16):
        k.put(STACK + i, r_g)
        k.put(STACK + i + 8, r_f)
    tr = k.unwinder(max_frames=50).run(State(ip=f + 4, sp=STACK, bp=None, signal=True, method="regs"))
    assert len(tr.frames) == 50 and "50 frames" in tr.end_reason
    tr = k.unwinder(max_frames=100000).run(State(ip=f + 4, sp=STACK, bp=None, signal=True, method="regs"))
    assert len(tr.frames) <= 0x4000 // 8 + 1 and tr.end_reason


def test_wild_stack_pointer():
    k, f, g, r_g, r_f = _kernel()
    tr = k.unwinder().run(State(ip=f + 4, sp=0xDEAD000000000000, bp=None, signal=True, method="regs"))
    assert len(tr.frames) == 1 and "not on any stack" in tr.end_reason


def test_cfa_leaving_the_stack():
    k, f, g, r_g, r_f = _kernel()
    k.rows.clear()
    k.orc(f, 0x7000)   # absurd frame size: beyond the stack
    k.orc(g, 8)
    tr = k.unwinder(use_scan=False).run(State(ip=f + 4, sp=STACK + 0x100, bp=None, signal=True, method="regs"))
    assert "not on any stack" in tr.end_reason or "unreadable" in tr.end_reason


def test_unknown_return_address():
    k, f, g, r_g, r_f = _kernel()
    sp = STACK + 0x100
    k.put(sp, 0xFFFFFFFFA0001234)   # not text of this kernel
    tr = k.unwinder().run(State(ip=f + 4, sp=sp, bp=None, signal=True, method="regs"))
    assert tr.frames[-1].pc == 0xFFFFFFFFA0001234
    assert "unknown return address" in tr.end_reason and not tr.frames[-1].reliable


def test_unreadable_stack_page():
    k, f, g, r_g, r_f = _kernel()
    uw = k.unwinder()
    uw.mem._read = lambda a, n: (_ for _ in ()).throw(__import__("vmcorekit.errors").errors.PageExcludedError(a, "excluded"))  # noqa: E501
    tr = uw.run(State(ip=f + 4, sp=STACK + 0x100, bp=None, signal=True, method="regs"))
    assert len(tr.frames) == 1 and tr.end_reason and not tr.complete


def test_stack_recursion_between_stacks_is_refused():
    """An IRQ-stack frame whose saved stack pointer leads back onto the IRQ stack after the task
    stack (a cycle between stacks) ends the trace."""
    k = SynthKernel()
    a = k.func("a", 0x40)
    b = k.func("b", 0x40)
    r_b = k.call(b, 0x10, a)
    r_a = k.call(a, 0x20, b)
    k.orc(a, 8, sp_reg=O.ORC_REG_SP_INDIRECT)
    k.orc(b, 8, sp_reg=O.ORC_REG_SP_INDIRECT)
    irq = k.stack("IRQ", 0xFFFFC90000100000, 0x4000, cpu=0)
    task = k.stack("task", STACK, 0x4000)
    isp = irq.lo + 0x100
    tsp = task.lo + 0x100
    isp2 = irq.lo + 0x300
    k.put(isp, tsp)          # a's saved stack pointer: over to the task stack
    k.put(tsp, r_b)
    k.put(tsp + 8, isp2)     # b's: back onto the IRQ stack
    k.put(isp2, r_a)
    tr = k.unwinder(use_scan=False).run(State(ip=a + 4, sp=isp, bp=None, signal=True, method="regs"))
    assert "recursion" in tr.end_reason


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(words=st.lists(st.integers(0, 2**64 - 1), min_size=16, max_size=64),
       choices=st.lists(st.integers(0, 3), min_size=16, max_size=64),
       start=st.integers(0, 15))
def test_random_stacks_terminate(words, choices, start):
    """Whatever the stack holds (random words, return addresses, stack pointers), a trace ends
    with a reason, within the frame cap, without raising."""
    k, f, g, r_g, r_f = _kernel()
    k.orc(f + 0x20, 8, sp_reg=O.ORC_REG_SP_INDIRECT)
    k.orc(g + 0x20, 16, sp_reg=O.ORC_REG_BP, bp_reg=O.ORC_REG_PREV_SP, bp=-16)
    k.orc(g + 0x30, 0, kind=O.REGS)
    base = STACK + 0x3000
    for i, (w, c) in enumerate(zip(words, choices)):
        val = [w, r_g, r_f, base + (w % 0x400) * 8][c]
        k.put(base + 8 * i, val)
    tr = k.unwinder(max_frames=64).run(State(ip=f + 0x24, sp=base + 8 * start, bp=base + 0x40,
                                             signal=True, method="regs"))
    assert 1 <= len(tr.frames) <= 64
    assert tr.end_reason
