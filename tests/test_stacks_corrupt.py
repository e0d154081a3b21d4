"""Corrupt stacks end a trace with a reason; they never hang or raise."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import PagedBytes
from orcgen import SynthKernel
from vmcorekit.arch.platform import X86_64
from vmcorekit.errors import CorruptKernelDataError, PartialResultWarning, SymbolError, TypeLookupError
from vmcorekit.kernel.stacks import orc as O
from vmcorekit.kernel.tasks import TaskLayout, for_each_task_address
from vmcorekit.kernel.stacks.unwind import State
from vmcorekit.program.core import Program

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


# -- the task walk `bt` uses (raw offsets, no BTF) ----------------------------------------------
INIT = 0xFFFF888000010000
SIG1, SIG2 = INIT + 0x1000, INIT + 0x2000
L1, T1, L2 = INIT + 0x3000, INIT + 0x4000, INIT + 0x5000
WILD = 0xFFFF888077770000  # in no page of the test memory
# TaskLayout offsets as BTF would give them: tasks at 0, signal at 16, thread_node at 24,
# signal_struct.thread_head at 0; the fields the walk does not read unknown.
TASK_OFFSETS: dict[str, int | None] = {
    **dict.fromkeys(["pid", "tgid", "comm", "state", "flags", "stack", "thread_sp", "mm",
                     "on_cpu", "cpu", "thread_group"]),
    "tasks": 0, "signal": 16, "thread_node": 24, "thread_head": 0}


class _TaskProg(PagedBytes):
    """What the task walk reads of a Program: a symbol, memory, the pointer size."""

    space = type("Space", (), {"pointer_size": 8})()
    platform = X86_64
    types = None  # no types: list_head has its ABI layout
    cpus: list = []  # no CPU notes, no nr_cpu_ids: one CPU, whose idle task is init_task

    def __init__(self) -> None:
        self.pages = {}

    def symbol_address(self, name: str) -> int:
        if name != "init_task":
            raise SymbolError(name)
        return INIT

    def read(self, addr: int, n: int, physical: bool = False) -> bytes:
        return self.read_pages(addr, n)

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    read_pointer = read_u64

    memo = Program.memo  # the real per-Program memo: it only needs an instance __dict__

    def try_symbol_address(self, name: str) -> int | None:
        return INIT if name == "init_task" else None

    def offsetof(self, spec: str, member: str) -> int:
        raise TypeLookupError(f"{spec} unknown")


class _Walk:
    """kernel/tasks.py's walk over a _TaskProg with the layout given, idle tasks first (as
    `bt --all-tasks` walks)."""

    def __init__(self, p: _TaskProg) -> None:
        self.layout = TaskLayout(dict(TASK_OFFSETS))
        self.p = p

    def for_each_task(self):  # type: ignore[no-untyped-def]
        return for_each_task_address(self.p, idle=True, layout=self.layout)  # type: ignore[arg-type]


def _task_walk() -> tuple[_Walk, _TaskProg]:
    """init_task -> L1 -> L2 on .tasks; L1's threads L1, T1 and L2's thread L2 on their
    signal->thread_head lists."""
    p = _TaskProg()
    for task, nxt, sig in ((INIT, L1, 0), (L1, L2, SIG1), (L2, INIT, SIG2), (T1, 0, SIG1)):
        p.write_u64(task, nxt)       # tasks.next
        p.write_u64(task + 16, sig)  # signal
    for head, nodes in ((SIG1, [L1 + 24, T1 + 24]), (SIG2, [L2 + 24])):
        for a, b in zip([head, *nodes], [*nodes, head]):
            p.write_u64(a, b)
    return _Walk(p), p


def test_task_walk_by_raw_offsets():
    ki, _ = _task_walk()
    assert list(ki.for_each_task()) == [INIT, L1, T1, L2]


@pytest.mark.parametrize("broken", ["cycle", "unreadable"])
def test_a_broken_thread_list_costs_only_its_group(broken):
    """L1's thread list loops, or points nowhere, after T1: L1's group ends there (said as a
    partial result) and the walk goes on to L2."""
    ki, p = _task_walk()
    p.write_u64(T1 + 24, T1 + 24 if broken == "cycle" else WILD)
    with pytest.warns(PartialResultWarning, match=f"threads of task {L1:#x}: signal.thread_head"):
        got = list(ki.for_each_task())
    assert got == [INIT, L1, T1, L2]


def test_a_broken_task_list_raises():
    ki, p = _task_walk()
    p.write_u64(L2, L1)  # L2's tasks.next back to L1: a cycle that misses init_task
    with pytest.raises(CorruptKernelDataError, match="init_task.tasks: cycle"):
        list(ki.for_each_task())
