"""The arm64 frame-record unwinder on stacks built here: PAC-signed return addresses, the final
record in the user pt_regs, exceptions taken at EL1 (the synthetic record up to 6.12 and the
frame_record_meta of 6.13+), IRQ -> task stack switches, and bounded ends on corrupt chains.
The real samples are checked against drgn in test_arm64_commands.py."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from vmcorekit.arch.platform import AARCH64
from vmcorekit.errors import MemoryReadError
from vmcorekit.kernel.panic import panic_cpu_from_stacks
from vmcorekit.kernel.stacks.arm64 import (FRAME_META_TYPE_FINAL, FRAME_META_TYPE_PT_REGS,
                                           Arm64Unwinder, PtRegsLayout, UNWINDER, _State,
                                           _stop_frame)
from vmcorekit.kernel.stacks.kinfo import StackRange
from vmcorekit.kernel.stacks.model import Trace
from vmcorekit.kernel.stacks.render import render_trace
from vmcorekit.kernel.stacks.unwind import StackMemory
from vmcorekit.program.symbols.table import SymbolTable

PAC = 0xFFF0000000000000  # KERNELPACMASK of a 52-bit kernel
TEXT = 0xFFFF800008000000
TASK = 0xFFFF80000A000000  # task stack [TASK, TASK + 16K)
IRQ = 0xFFFF800009000000  # IRQ stack
SIZE = 0x4000
LAY = PtRegsLayout(size=336, stackframe=304, orig_x0=272, syscallno=280, meta_type=None, source="test")
LAY_META = PtRegsLayout(size=344, stackframe=304, orig_x0=272, syscallno=280, meta_type=320,
                        source="test 6.13")

FUNCS = ["el0t_64_sync", "el0_svc", "invoke_syscall", "ksys_write", "panic", "__delay",
         "el1h_64_irq", "el1_interrupt", "gic_handle_irq", "call_on_irq_stack", "cpu_do_idle",
         "do_idle", "ret_from_fork", "kthread", "local_cpu_stop", "ipi_handler"]


def fn(name: str, off: int = 0x20) -> int:
    return TEXT + 0x1000 * FUNCS.index(name) + off


def sign(addr: int, pac: int = 0x5A5) -> int:
    """A PAC-signed kernel return address: the PAC replaces the upper bits but bit 55, which
    keeps telling kernel from user pointers."""
    return (addr & ~PAC) | ((pac << 52) & PAC & ~(1 << 55)) | (1 << 55)


@pytest.fixture(scope="module")
def symbols() -> SymbolTable:
    names = FUNCS + ["_etext_marker"]
    addrs = np.array([TEXT + 0x1000 * i for i in range(len(FUNCS))] + [TEXT + 0x1000 * len(FUNCS)],
                     dtype=np.uint64)
    return SymbolTable(names, addrs, b"T" * len(FUNCS) + b"D",
                       text_ranges=[(TEXT, TEXT + 0x1000 * len(FUNCS))])


class Mem:
    def __init__(self) -> None:
        self.blocks = {TASK: bytearray(SIZE), IRQ: bytearray(SIZE)}

    def put(self, addr: int, *words: int) -> None:
        for base, blk in self.blocks.items():
            if base <= addr < base + len(blk):
                struct.pack_into(f"<{len(words)}Q", blk, addr - base, *[w & (2**64 - 1) for w in words])
                return
        raise AssertionError(f"{addr:#x} not in test memory")

    def read(self, addr: int, n: int) -> bytes:
        for base, blk in self.blocks.items():
            if base <= addr and addr + n <= base + len(blk):
                return bytes(blk[addr - base:addr - base + n])
        raise MemoryReadError(addr, "not in test memory")

    def pt_regs(self, at: int, lay: PtRegsLayout = LAY, *, pc: int = 0, sp: int = 0,
                pstate: int = 0, x29: int = 0, x30: int = 0, record: tuple[int, int] = (0, 0),
                meta: int | None = None) -> None:
        regs = [0] * 31
        regs[29], regs[30] = x29, x30
        for i in range(31):
            regs[i] = regs[i] or (0x1000 + i if pstate and pstate & 0xF == 0 else 0)
        self.put(at, *regs, sp, pc, pstate)
        self.put(at + lay.orig_x0, 0x1234)
        self.put(at + lay.stackframe, *record)
        if meta is not None:
            assert lay.meta_type is not None
            self.put(at + lay.meta_type, meta)


class Kernel:
    """What Arm64Unwinder needs of Arm64Kernel."""

    def __init__(self, lay: PtRegsLayout = LAY) -> None:
        self.pt_regs = lay

    @staticmethod
    def strip(a: int) -> int:
        return (a | PAC) if a >> 55 & 1 else a & ~PAC


def unwind(mem: Mem, symbols: SymbolTable, start: _State, *, lay: PtRegsLayout = LAY,
           stacks: list[StackRange] | None = None, max_frames: int = 64) -> Trace:
    ranges = stacks if stacks is not None else [StackRange("task", TASK, TASK + SIZE)]
    uw = Arm64Unwinder(Kernel(lay), StackMemory(mem.read, ranges), symbols,  # type: ignore[arg-type]
                       max_frames=max_frames)
    return uw.run(start, Trace(task=1, pid=1, comm="t", cpu=0))


def user_task(mem: Mem, lay: PtRegsLayout = LAY) -> tuple[_State, int]:
    """A syscall in progress: ksys_write <- invoke_syscall <- el0_svc <- el0t_64_sync, whose
    frame record is the final one, inside the user pt_regs at the top of the stack."""
    regs_at = TASK + SIZE - lay.size
    final = regs_at + lay.stackframe
    mem.pt_regs(regs_at, lay, pc=0x400123, sp=0xFFFFF000, pstate=0x80001000,
                meta=FRAME_META_TYPE_FINAL if lay.meta_type else None)
    f3 = TASK + 0x3E00  # el0t_64_sync_handler-less chain: el0_svc's record
    f2, f1, f0 = TASK + 0x3D00, TASK + 0x3C00, TASK + 0x3B00
    mem.put(f0, f1, sign(fn("invoke_syscall", 0x68)))
    mem.put(f1, f2, sign(fn("el0_svc", 0x34)))
    mem.put(f2, f3, sign(fn("el0t_64_sync", 0x18C)))
    mem.put(f3, final, sign(fn("el0t_64_sync", 0x190)))
    return _State(pc=fn("ksys_write", 0x40), fp=f0, sp=f0, exact=True, method="regs"), final


def test_chain_to_user_mode_strips_pac(symbols):
    mem = Mem()
    start, final = user_task(mem)
    tr = unwind(mem, symbols, start)
    assert tr.functions() == ["ksys_write", "invoke_syscall", "el0_svc", "el0t_64_sync", "el0t_64_sync"]
    assert tr.frames[1].pc == fn("invoke_syscall", 0x68)  # PAC gone, kernel bits restored
    assert tr.frames[1].slot == TASK + 0x3B08 and tr.frames[1].sp == TASK + 0x3C00
    assert [f.method for f in tr.frames] == ["regs", "fp", "fp", "fp", "fp"]
    assert tr.complete and tr.end_reason == "user mode" and tr.unwinder == UNWINDER
    assert tr.user_regs is not None and tr.user_regs.user_mode
    assert tr.user_regs.address == TASK + SIZE - LAY.size and tr.user_regs.regs["pc"] == 0x400123


def test_render_is_crash_like(symbols):
    mem = Mem()
    start, _ = user_task(mem)
    lines = render_trace(unwind(mem, symbols, start))
    assert lines[1] == f" #0 [{TASK + 0x3B00:x}] ksys_write at {fn('ksys_write', 0x40):x}"
    # return addresses are shown at their branch (bl), one instruction back
    assert lines[2] == f" #1 [{TASK + 0x3C00:x}] invoke_syscall at {fn('invoke_syscall', 0x64):x}"
    assert lines[6] == "     PC: 0000000000400123   LR: 000000000000101e   SP: 00000000fffff000"
    assert lines[7] == "    X29: 000000000000101d  X28: 000000000000101c  X27: 000000000000101b"
    assert lines[-2] == "     X2: 0000000000001002   X1: 0000000000001001   X0: 0000000000001000"
    assert lines[-1] == "    ORIG_X0: 0000000000001234  SYSCALLNO: 0  PSTATE: 80001000"


def test_render_full_shows_the_words_between_frame_records(symbols):
    mem = Mem()
    start, _ = user_task(mem)
    lines = render_trace(unwind(mem, symbols, start), full=True, read=mem.read)
    i = lines.index(f" #1 [{TASK + 0x3C00:x}] invoke_syscall at {fn('invoke_syscall', 0x64):x}")
    assert lines[i - 16].startswith(f"    {TASK + 0x3B00:x}: {TASK + 0x3C00:016x} ")
    assert lines[i - 1].startswith(f"    {TASK + 0x3BF0:x}: ")


def test_stop_frame_for_a_cpu_caught_in_user_mode(symbols):
    """kdump's note for a CPU it stopped in user mode: the kernel side is on the IRQ stack,
    found from the record whose return address is in the stop function."""
    mem = Mem()
    mem.put(IRQ + 0x3000, sign(fn("local_cpu_stop", 0x10)), IRQ + 0x3100)  # stale, not a record
    mem.put(IRQ + 0x3E00, IRQ + 0x3E40, sign(fn("local_cpu_stop", 0x44)))
    mem.put(IRQ + 0x3E40, IRQ + 0x3E80, sign(fn("ipi_handler", 0x1C)))
    mem.put(IRQ + 0x3E80, 0, 0)
    stacks = [StackRange("task", TASK, TASK + SIZE), StackRange("IRQ", IRQ, IRQ + SIZE, 0)]
    st = _stop_frame(Kernel(), StackMemory(mem.read, stacks), symbols)  # type: ignore[arg-type]
    assert st is not None and (st.pc, st.fp) == (fn("local_cpu_stop", 0x44), IRQ + 0x3E40)
    tr = unwind(mem, symbols, st, stacks=stacks)
    assert tr.functions() == ["local_cpu_stop", "ipi_handler"]


def test_kernel_thread_ends_at_zeroed_pt_regs(symbols):
    mem = Mem()
    final = TASK + SIZE - LAY.size + LAY.stackframe
    f0 = TASK + 0x3E00
    mem.put(f0, final, sign(fn("ret_from_fork", 0x10)))
    tr = unwind(mem, symbols, _State(pc=fn("kthread", 0x80), fp=f0, sp=None, exact=False, method="switch"))
    assert tr.functions() == ["kthread", "ret_from_fork"]
    assert tr.complete and tr.user_regs is None and "final frame record" in tr.end_reason


def _el1_exception(mem: Mem, lay: PtRegsLayout, meta: bool) -> _State:
    """cpu_do_idle interrupted; the IRQ taken on the task stack: el1_interrupt <- el1h_64_irq
    <- [pt_regs] <- cpu_do_idle <- do_idle <- final."""
    final = TASK + SIZE - lay.size + lay.stackframe
    mem.pt_regs(TASK + SIZE - lay.size, lay, meta=FRAME_META_TYPE_FINAL if meta else None)
    f_idle = TASK + 0x3D00  # do_idle's record, holding its caller's
    mem.put(f_idle, final, sign(fn("ret_from_fork", 0x10)))
    regs_at = TASK + 0x3A00
    rec = regs_at + lay.stackframe
    interrupted_pc = fn("cpu_do_idle", 0x18)
    mem.pt_regs(regs_at, lay, pc=interrupted_pc, sp=regs_at + lay.size, pstate=0x60400005,
                x29=TASK + 0x3C00, x30=sign(fn("cpu_do_idle", 0x14)),
                record=(0, 0) if meta else (TASK + 0x3C00, interrupted_pc),
                meta=FRAME_META_TYPE_PT_REGS if meta else None)
    mem.put(TASK + 0x3C00, f_idle, sign(fn("do_idle", 0x100)))  # cpu_do_idle's record
    f1 = TASK + 0x3900
    mem.put(f1, rec, sign(fn("el1h_64_irq", 0x6C)))
    return _State(pc=fn("el1_interrupt", 0x28), fp=f1, sp=f1, exact=True, method="regs")


@pytest.mark.parametrize("lay,meta", [(LAY, False), (LAY_META, True)],
                         ids=["synthetic-record", "frame_record_meta"])
def test_el1_exception_frames(symbols, lay, meta):
    mem = Mem()
    tr = unwind(mem, symbols, _el1_exception(mem, lay, meta), lay=lay)
    assert tr.functions() == ["el1_interrupt", "el1h_64_irq", "cpu_do_idle", "do_idle", "ret_from_fork"]
    exc = tr.frames[2].exception
    assert exc is not None and not exc.user_mode and exc.address == TASK + 0x3A00
    assert tr.frames[2].method == "regs" and tr.frames[2].pc == fn("cpu_do_idle", 0x18)
    assert exc.labels == {"pc": "cpu_do_idle+24", "lr": "cpu_do_idle+20"}
    assert tr.complete and tr.user_regs is None
    text = render_trace(tr)
    i = text.index(f"     PC: {fn('cpu_do_idle', 0x18):016x}  [cpu_do_idle+24]")
    assert text[i + 2] == f"     SP: {TASK + 0x3A00 + lay.size:016x}  PSTATE: 60400005"
    assert text[i + 13] == f" #2 [{TASK + 0x3C00:x}] cpu_do_idle at {fn('cpu_do_idle', 0x18):x}"


def test_record_that_only_resembles_pt_regs_is_a_plain_frame(symbols):
    mem = Mem()
    start = _el1_exception(mem, LAY, False)
    mem.put(TASK + 0x3A00 + 256, fn("cpu_do_idle", 0x1C))  # pt_regs.pc no longer matches
    tr = unwind(mem, symbols, start)
    assert tr.frames[2].exception is None and tr.frames[2].method == "fp"


def test_irq_stack_to_task_stack(symbols):
    mem = Mem()
    start, _ = user_task(mem)
    # gic_handle_irq on the IRQ stack, called through call_on_irq_stack's record on the task stack
    switch = TASK + 0x3A00
    mem.put(switch, start.fp, sign(fn("ksys_write", 0x44)))
    irq0 = IRQ + 0x3F00
    mem.put(irq0, switch, sign(fn("call_on_irq_stack", 0x2C)))
    stacks = [StackRange("task", TASK, TASK + SIZE), StackRange("IRQ", IRQ, IRQ + SIZE, 0)]
    tr = unwind(mem, symbols, _State(pc=fn("gic_handle_irq", 8), fp=irq0, sp=irq0, exact=True,
                                     method="regs"), stacks=stacks)
    assert tr.functions()[:3] == ["gic_handle_irq", "call_on_irq_stack", "ksys_write"]
    assert [f.stack for f in tr.frames[:3]] == ["IRQ", "task", "task"]
    assert tr.complete
    assert "--- <IRQ stack> ---" in render_trace(tr)


def test_task_stack_never_leads_back_to_an_irq_stack(symbols):
    mem = Mem()
    f0 = TASK + 0x3000
    mem.put(f0, IRQ + 0x3F00, sign(fn("do_idle", 4)))
    mem.put(IRQ + 0x3F00, 0, 0)
    stacks = [StackRange("task", TASK, TASK + SIZE), StackRange("IRQ", IRQ, IRQ + SIZE, 0)]
    tr = unwind(mem, symbols, _State(pc=fn("cpu_do_idle"), fp=f0, sp=f0, exact=True, method="regs"),
                stacks=stacks)
    assert not tr.complete and "left the task stack" in tr.end_reason
    assert "[trace stopped: " in render_trace(tr)[-1]


def test_zero_record_inside_the_stack_is_not_an_end(symbols):
    mem = Mem()
    f0 = TASK + 0x1000
    mem.put(f0, TASK + 0x2000, sign(fn("do_idle", 8)))
    mem.put(TASK + 0x2000, 0, 0)
    tr = unwind(mem, symbols, _State(pc=fn("cpu_do_idle"), fp=f0, sp=f0, exact=True, method="regs"))
    assert tr.functions() == ["cpu_do_idle", "do_idle"]
    assert not tr.complete and "not the task's final one" in tr.end_reason


@pytest.mark.parametrize("case", ["loop", "backwards", "wild", "misaligned", "unknown-pc", "unreadable"])
def test_corrupt_chains_end_with_a_reason(symbols, case):
    mem = Mem()
    f0, f1 = TASK + 0x1000, TASK + 0x1100
    mem.put(f0, f1, sign(fn("panic", 8)))
    nxt = {"loop": f1, "backwards": f0, "wild": 0xFFFF0000DEAD0000, "misaligned": TASK + 0x2004,
           "unknown-pc": TASK + 0x2000, "unreadable": TASK + SIZE - 8}[case]
    lr = 0xFFFF000012345678 if case == "unknown-pc" else sign(fn("__delay", 8))
    mem.put(f1, nxt, lr)
    mem.put(TASK + 0x2000, TASK + 0x2100, sign(fn("do_idle", 8)))
    tr = unwind(mem, symbols, _State(pc=fn("ksys_write"), fp=f0, sp=f0, exact=True, method="regs"))
    assert not tr.complete and tr.end_reason
    assert len(tr.frames) <= 4
    want = {"loop": "does not grow", "backwards": "does not grow", "wild": "on no stack",
            "misaligned": "misaligned", "unknown-pc": "unknown return address",
            "unreadable": "unreadable"}[case]
    assert want in tr.end_reason
    if case == "unknown-pc":
        assert not tr.frames[-1].reliable


def test_long_chain_is_bounded(symbols):
    mem = Mem()
    for i in range(200):
        mem.put(TASK + 0x10 * i, TASK + 0x10 * (i + 1), sign(fn("do_idle", 8)))
    tr = unwind(mem, symbols, _State(pc=fn("cpu_do_idle"), fp=TASK, sp=TASK, exact=True,
                                     method="regs"), max_frames=50)
    assert len(tr.frames) == 50 and "stopped after 50 frames" in tr.end_reason


class _Prog:
    """What panic_cpu_from_stacks reads: CPU notes, symbols, memory."""

    def __init__(self, mem: Mem, symbols: SymbolTable, notes: list) -> None:
        self.mem, self.symbols, self.cpus = mem, symbols, notes
        self.page_size = 4096
        self.platform = AARCH64
        self.space = type("S", (), {"strip_pac": staticmethod(Kernel.strip)})()

    def read(self, addr: int, n: int) -> bytes:
        return self.mem.read(addr, n)


def test_panic_cpu_from_stacks(symbols):
    from vmcorekit.arch.base import CpuRegisters

    mem = Mem()
    mem.put(TASK + 0x3800, sign(fn("panic", 0x34C)))  # a return into panic() above sp
    mem.put(IRQ + 0x3800, sign(fn("panic", 0)))  # the first byte of panic: not a return into it
    notes = [CpuRegisters(0, 1, {"sp": IRQ + 0x3000, "pc": fn("cpu_do_idle"), "pstate": 5}, "prstatus"),
             CpuRegisters(1, 2, {"sp": TASK + 0x3000, "pc": fn("__delay"), "pstate": 5}, "prstatus")]
    assert panic_cpu_from_stacks(_Prog(mem, symbols, notes))[0] == 1
    # caught on the IRQ stack: the task stack of the CPU's current task still shows panic()
    notes[1] = CpuRegisters(1, 2, {"sp": IRQ + 0x3F00, "pc": fn("gic_handle_irq"), "pstate": 5}, "prstatus")
    prog = _Prog(mem, symbols, notes)
    assert panic_cpu_from_stacks(prog)[0] is None
    assert panic_cpu_from_stacks(prog, lambda cpu: TASK if cpu == 1 else None)[0] == 1
