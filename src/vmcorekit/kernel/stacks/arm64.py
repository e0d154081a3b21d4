"""arm64 stack traces from the dump alone: the AAPCS64 frame-record chain (x29 points at
{caller's x29, saved x30}), as the kernel's own unwinder (arch/arm64/kernel/stacktrace.c) walks
it, with pointer-authentication codes stripped from the saved return addresses.

Where a trace starts:
  * a CPU's registers at the crash (PRSTATUS: pc, sp, x29), for the task running there;
  * a sleeping task's `thread.cpu_context` (x19..x28, fp, sp, pc as cpu_switch_to() saved
    them: pc returns into __switch_to).

Stacks a chain may cross, each entered at most once and only towards the task stack: the
per-CPU IRQ stack (`irq_stack_ptr`), the overflow stack (`overflow_stack`), the SDEI stacks
(`sdei_stack_normal_ptr` / `sdei_stack_critical_ptr`), and the task stack (`task->stack`,
THREAD_SIZE bytes). Within one stack the frame pointer must grow.

Exceptions: the entry code (entry.S kernel_entry) saves a struct pt_regs and points x29 at its
`stackframe` member. Up to 6.12 an exception from EL1 stores {interrupted x29, ELR} there, a
synthetic record that continues the chain; one from EL0 stores {0, 0}, the chain's final record.
Since 6.13 both store {0, 0} and `struct frame_record_meta` adds a type (FINAL or PT_REGS). A
record is taken for a pt_regs when the registers around it agree with it (pc == the record's
return address, x29 == its frame pointer, an EL1 mode, sp == the end of the pt_regs); the
interrupted function is then a frame of its own with its exact pc and registers. The final
record of a user task lies in the pt_regs at the top of its stack: those are the user-mode
registers the trace ends with.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ...errors import MemoryReadError, VmcorekitError
from ..percpu import per_cpu
from ..tasks import TaskInfo, task_info
from .kinfo import KernelInfo, task_stack
from .model import ExceptionFrame, Frame, StackRange, Trace
from .unwind import MAX_FRAMES, StackMemory

if TYPE_CHECKING:
    from . import Stacks

MASK = 0xFFFFFFFFFFFFFFFF
UNWINDER = "frame-record"
# PSTATE.M[3:0]: EL0t = 0, EL1t = 4, EL1h = 5; bit 4 set = AArch32.
PSR_MODE_MASK = 0xF
PSR_MODE32 = 0x10
EL1_MODES = (0x4, 0x5)
# enum frame_type (6.13+ asm/stacktrace/frame.h)
FRAME_META_TYPE_FINAL = 1
FRAME_META_TYPE_PT_REGS = 2
# struct pt_regs without BTF: user_pt_regs (x0..x30, sp, pc, pstate) then orig_x0, syscallno;
# `stackframe` at 304 from 5.x to 6.12 (336 bytes in all).
USER_REGS = [f"x{i}" for i in range(31)] + ["sp", "pc", "pstate"]
DEFAULT_PT_REGS = {"size": 336, "stackframe": 304, "orig_x0": 272, "syscallno": 280}
CPU_CONTEXT = ("x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "fp", "sp", "pc")
# A task's last frames: these functions never return (their callers are not frames).
END_FUNCTIONS = ("ret_from_fork", "__primary_switched", "__secondary_switched")


@dataclass(frozen=True)
class PtRegsLayout:
    size: int
    stackframe: int  # offset of the frame record
    orig_x0: int
    syscallno: int
    meta_type: int | None  # offset of frame_record_meta.type (6.13+), else None
    source: str

    def parse(self, raw: bytes) -> dict[str, int]:
        regs = dict(zip(USER_REGS, struct.unpack_from("<34Q", raw, 0)))
        regs["orig_x0"] = struct.unpack_from("<Q", raw, self.orig_x0)[0]
        regs["syscallno"] = struct.unpack_from("<i", raw, self.syscallno)[0]
        regs["fp"], regs["lr"] = regs["x29"], regs["x30"]
        return regs


def user_mode(regs: dict[str, int]) -> bool:
    return (regs.get("pstate", 0) & PSR_MODE_MASK) == 0


@dataclass
class _State:
    pc: int
    fp: int
    sp: int | None
    exact: bool  # pc is where the CPU was (registers), not a return address
    method: str  # "regs", "switch", "fp"
    slot: int | None = None  # where pc was read from
    exception: ExceptionFrame | None = None


class Arm64Kernel:
    """arm64 facts of one dump: stack extents, pt_regs and cpu_context layouts."""

    def __init__(self, ki: KernelInfo) -> None:
        self.ki = ki
        self.prog = ki.prog

    @cached_property
    def pt_regs(self) -> PtRegsLayout:
        ki = self.ki
        size = ki.sizeof("struct pt_regs")
        sf = ki.offsetof("struct pt_regs", "stackframe")
        if size is None or sf is None:
            d = DEFAULT_PT_REGS
            return PtRegsLayout(d["size"], d["stackframe"], d["orig_x0"], d["syscallno"], None,
                                "the 5.x-6.12 layout (no BTF)")
        meta = ki.offsetof("struct frame_record_meta", "type")
        if meta is not None and ki.offsetof("struct pt_regs", "stackframe.type") is None:
            meta = None  # the type exists but pt_regs does not use it
        return PtRegsLayout(size, sf, ki.offsetof("struct pt_regs", "orig_x0") or 272,
                            ki.offsetof("struct pt_regs", "syscallno") or 280,
                            (sf + meta) if meta is not None else None, "BTF")

    @cached_property
    def strip(self) -> Any:
        s = getattr(self.prog.space, "strip_pac", None)
        return s if callable(s) else (lambda a: a & MASK)

    @cached_property
    def thread_size(self) -> int:
        """THREAD_SIZE: 16K or the page size if larger, doubled under KASAN. Confirmed by where
        init_task's final frame record lies (the top of its stack, in its pt_regs)."""
        base = max(self.prog.platform.thread_size, self.prog.page_size)
        init = self.prog.try_symbol_address("init_task")
        off = self.ki.offsetof("struct task_struct", "stack")
        if init is None or off is None:
            return base
        try:
            stack = self.prog.read_u64(init + off)
            for size in (base, 2 * base):
                rec = stack + size - self.pt_regs.size + self.pt_regs.stackframe
                if self.prog.read(rec, 16) == bytes(16):
                    return size
        except (MemoryReadError, VmcorekitError):
            pass
        return base

    def _percpu_ptr(self, name: str, cpu: int) -> int | None:
        if self.prog.try_symbol_address(name) is None:
            return None
        try:
            return self.prog.read_pointer(per_cpu(self.prog, name, cpu))
        except (MemoryReadError, VmcorekitError):
            return None

    def _var_size(self, name: str, default: int) -> int:
        try:
            return int(self.prog.types.global_info(name).type.sizeof())
        except (VmcorekitError, LookupError, AttributeError, TypeError):
            return default

    def cpu_stacks(self, cpu: int) -> list[StackRange]:
        out: list[StackRange] = []
        base = self._percpu_ptr("irq_stack_ptr", cpu)
        if base:
            out.append(StackRange("IRQ", base, base + self.thread_size, cpu))
        if self.prog.try_symbol_address("overflow_stack") is not None:
            try:
                lo = per_cpu(self.prog, "overflow_stack", cpu)
                out.append(StackRange("Overflow", lo, lo + self._var_size("overflow_stack", 4096), cpu))
            except VmcorekitError:
                pass
        for name in ("sdei_stack_normal_ptr", "sdei_stack_critical_ptr"):
            base = self._percpu_ptr(name, cpu)
            if base:
                out.append(StackRange("SDEI", base, base + self.thread_size, cpu))
        return out

    def task_stack(self, info: TaskInfo) -> StackRange | None:
        return task_stack(info, self.thread_size)

    def switch_state(self, task: int) -> _State:
        """A sleeping task's context, saved by cpu_switch_to()."""
        off = self.ki.offsetof("struct task_struct", "thread.cpu_context")
        if off is None:
            raise VmcorekitError("task_struct.thread.cpu_context offset unknown (no BTF)")
        raw = self.prog.read(task + off, 8 * len(CPU_CONTEXT))
        ctx = dict(zip(CPU_CONTEXT, struct.unpack(f"<{len(CPU_CONTEXT)}Q", raw)))
        return _State(pc=self.strip(ctx["pc"]), fp=ctx["fp"], sp=ctx["sp"], exact=False,
                      method="switch")


class Arm64Unwinder:
    """Walks frame records over the given stacks; every step is checked and bounded."""

    def __init__(self, ak: Arm64Kernel, mem: StackMemory, symbols: Any, *,
                 max_frames: int = MAX_FRAMES) -> None:
        self.ak, self.mem, self.symbols, self.max_frames = ak, mem, symbols, max_frames
        self.lay = ak.pt_regs

    def frame_of(self, index: int, st: _State) -> Frame:
        s = self.mem.stack_of(st.fp) or (self.mem.stack_of(st.sp) if st.sp else None)
        # crash shows each frame at its own frame record (x29); sp for a leaf without one.
        where = st.fp if s is not None and st.fp else (st.sp or st.fp)
        f = Frame(index=index, pc=st.pc, sp=where, method=st.method, slot=st.slot,
                  stack=s.kind if s else None, exception=st.exception)
        # A return address may follow a call to a noreturn function that ends its caller.
        sym = self.symbols.lookup(st.pc if st.exact else st.pc - 1)
        if sym is not None:
            f.function, f.offset, f.size, f.module = sym.name, st.pc - sym.address, sym.size, sym.module
        return f

    def _pt_regs(self, record: int) -> tuple[int, dict[str, int]] | None:
        """The pt_regs whose `stackframe` is the record at `record`, if it lies on the stack."""
        at = record - self.lay.stackframe
        s = self.mem.stack_of(record)
        if s is None or at < s.lo or at + self.lay.size > s.hi:
            return None
        try:
            return at, self.lay.parse(self.mem.read(at, self.lay.size))
        except (MemoryReadError, struct.error):
            return None

    def _el1_exception(self, record: int, fp: int, lr: int) -> tuple[int, dict[str, int]] | None:
        got = self._pt_regs(record)
        if got is None:
            return None
        at, regs = got
        if (regs["pstate"] & PSR_MODE_MASK) not in EL1_MODES or regs["pstate"] & PSR_MODE32:
            return None
        if regs["sp"] != at + self.lay.size:
            return None
        if fp or lr:  # pre-6.13 synthetic record: {x29, ELR}
            if self.ak.strip(regs["pc"]) != lr or regs["x29"] != fp:
                return None
        return at, regs

    def run(self, start: _State, trace: Trace) -> Trace:
        trace.unwinder = UNWINDER
        st = start
        visited: list[StackRange] = []
        last: tuple[StackRange, int] | None = None
        for index in range(self.max_frames):
            f = self.frame_of(index, st)
            trace.frames.append(f)
            if not self.symbols.in_text(st.pc if st.exact else st.pc - 1):
                f.reliable = False
                trace.end_reason = f"unknown {'pc' if st.exact else 'return address'} {st.pc:#x}"
                return trace
            fp = st.fp
            if fp == 0:
                trace.end_reason = "no frame pointer"
                return trace
            s = self.mem.stack_of(fp)
            if s is None:
                trace.end_reason = f"frame pointer {fp:#x} is on no stack of this task"
                return trace
            if fp & 7:
                trace.end_reason = f"frame pointer {fp:#x} is misaligned"
                return trace
            if last is not None:
                ls, lfp = last
                if s == ls and fp <= lfp:
                    trace.end_reason = f"frame pointer does not grow ({lfp:#x} -> {fp:#x}): loop"
                    return trace
                if s != ls:
                    if s in visited:
                        trace.end_reason = f"stack recursion: back on the {s.kind} stack at {fp:#x}"
                        return trace
                    if ls.kind == "task":  # the task stack is where chains end, never leave
                        trace.end_reason = f"frame pointer left the task stack for the {s.kind} stack"
                        return trace
            if s not in visited:
                visited.append(s)
            last = (s, fp)
            try:
                nfp, raw_lr = struct.unpack("<QQ", self.mem.read(fp, 16))
            except (MemoryReadError, struct.error) as e:
                trace.end_reason = f"frame record at {fp:#x} unreadable: {e}"
                return trace
            lr = self.ak.strip(raw_lr) if raw_lr else 0
            if nfp == 0 and lr == 0:
                kind = self._meta_type(fp)
                if kind == FRAME_META_TYPE_PT_REGS:
                    exc = self._el1_exception(fp, 0, 0)
                    if exc is not None:
                        st = self._exception_state(*exc)
                        continue
                self._final(fp, trace)
                return trace
            exc = self._el1_exception(fp, nfp, lr)
            if exc is not None:
                st = self._exception_state(*exc)
                continue
            st = _State(pc=lr, fp=nfp, sp=None, exact=False, method="fp", slot=fp + 8)
        trace.end_reason = f"stopped after {self.max_frames} frames"
        return trace

    def _meta_type(self, record: int) -> int | None:
        if self.lay.meta_type is None:
            return None
        try:
            return struct.unpack("<Q", self.mem.read(record - self.lay.stackframe + self.lay.meta_type, 8))[0]
        except (MemoryReadError, struct.error):
            return None

    def _label(self, addr: int) -> str | None:
        sym = self.symbols.lookup(addr)
        if sym is None:
            return None
        off = addr - sym.address
        return (f"{sym.name}+{off}" if off else sym.name) + (f" [{sym.module}]" if sym.module else "")

    def _exception_state(self, at: int, regs: dict[str, int]) -> _State:
        exc = ExceptionFrame(dict(regs), at, "pt_regs")
        for key, reg in (("pc", "pc"), ("lr", "x30")):
            name = self._label(self.ak.strip(regs[reg]))
            if name is not None:
                exc.labels[key] = name
        return _State(pc=self.ak.strip(regs["pc"]), fp=regs["x29"], sp=regs["sp"], exact=True,
                      method="regs", slot=None, exception=exc)

    def _final(self, record: int, trace: Trace) -> None:
        """A zero frame record. The chain ends there normally only in the pt_regs at the top of
        the task stack (user registers for a user task; zeros for a kernel thread), as the
        kernel's unwinder requires; anywhere else the chain was cut."""
        got = self._pt_regs(record)
        s = self.mem.stack_of(record)
        if got is None or s is None or s.kind != "task" or got[0] + self.lay.size != s.hi:
            trace.end_reason = f"zero frame record at {record:#x}, not the task's final one"
            return
        trace.complete = True
        trace.end_reason = "end of stack (final frame record)"
        at, regs = got
        if user_mode(regs) and (regs["pc"] or regs["sp"]):
            trace.user_regs = ExceptionFrame(dict(regs), at, "pt_regs")
            trace.end_reason = "user mode"


# -- tracing -------------------------------------------------------------------------------------
def trace(stacks: "Stacks", task: int, *, unwinder: str = "auto",
          max_frames: int = MAX_FRAMES) -> Trace:
    """The trace of `task`: from its CPU's registers if it was running, else from its saved
    context. `unwinder` may be auto or fp (both: frame records)."""
    if unwinder not in ("auto", "fp", "crash"):
        raise VmcorekitError(f"arm64 traces follow the frame records: unwinder {unwinder!r} does "
                             "not apply (use auto or fp)")
    ki = stacks.ki
    ak = stacks.arch
    assert isinstance(ak, Arm64Kernel)  # platforms.py pairs this tracer with these facts
    cpu = stacks.cpu_of_active(task)
    ranges: list[StackRange] = []
    try:
        info = task_info(stacks.prog, task)
    except MemoryReadError as e:
        # The task_struct is not in the dump (filtered out, cut off): a running task is still
        # traced from its CPU's registers, on the THREAD_SIZE-aligned block around its sp.
        ctx = stacks.contexts.get(cpu) if cpu is not None else None
        sp = (ctx.regs or {}).get("sp", 0) if ctx is not None else 0
        if cpu is None or not sp:
            raise
        tr = Trace(task=task, cpu=cpu)
        tr.notes.append(f"task_struct at {task:#x} unreadable ({e}); tracing CPU {cpu} from its "
                        f"registers, the task stack taken as the {ak.thread_size}-byte block around "
                        "its stack pointer")
        ranges += ak.cpu_stacks(cpu)
        if not any(sp in r for r in ranges):
            lo = sp & ~(ak.thread_size - 1)
            ranges.insert(0, StackRange("task", lo, lo + ak.thread_size, cpu))
    else:
        tr = Trace(task=task, pid=info.pid, comm=info.comm, cpu=cpu if cpu is not None else info.cpu)
        ts = ak.task_stack(info)
        if ts is not None:
            ranges.append(ts)
        if cpu is not None:
            ranges += ak.cpu_stacks(cpu)
    mem = StackMemory(stacks.prog.read, ranges)
    uw = Arm64Unwinder(ak, mem, ki.symbols, max_frames=max_frames)
    tr.notes.append(f"pt_regs layout from {ak.pt_regs.source}; THREAD_SIZE {ak.thread_size:#x}")
    start = _start_state(stacks, ak, tr, task, cpu, mem)
    if start is None:
        tr.unwinder = UNWINDER
        return tr
    return uw.run(start, tr)


def _start_state(stacks: "Stacks", ak: Arm64Kernel, tr: Trace, task: int, cpu: int | None,
                 mem: StackMemory) -> _State | None:
    if cpu is None:
        tr.start = "saved-context"
        return ak.switch_state(task)
    ctx = stacks.contexts.get(cpu)
    if ctx is None or not ctx.regs:
        tr.start = "saved-context"
        tr.notes.append(f"no register note for CPU {cpu}: starting from the task's last saved "
                        "context, which predates the crash")
        return ak.switch_state(task)
    regs = ctx.regs
    tr.start = "cpu-note"
    if user_mode(regs):
        # The note holds the user registers an IPI interrupted (kdump saves those for the
        # CPUs it stops): the kernel side, if any, starts in the stop function's frame.
        stop = _stop_frame(ak, mem, stacks.ki.symbols)
        if stop is not None:
            tr.start = "stop-function"
            tr.notes.append(f"CPU {cpu}'s note holds user registers (pc {regs.get('pc', 0):#x}); "
                            "the kernel stack was found from the stop function's frame record")
            return stop
        tr.user_regs = ExceptionFrame(dict(regs), None, "note")
        tr.complete = True
        tr.end_reason = "user mode"
        return None
    st = _State(pc=ak.strip(regs.get("pc", 0)), fp=regs.get("x29", 0), sp=regs.get("sp"),
                exact=True, method="regs")
    if mem.stack_of(regs.get("sp", 0)) is None and mem.stack_of(st.fp) is None:
        tr.notes.append(f"CPU {cpu}'s sp {regs.get('sp', 0):#x} and x29 {st.fp:#x} are on no "
                        "known stack of the task")
    return st


# Where a CPU stopped by a crash or panic parks (arch/arm64/kernel/smp.c, kexec).
STOP_FUNCTIONS = ("ipi_cpu_crash_stop", "local_cpu_stop", "crash_save_cpu", "machine_kexec",
                  "__crash_kexec")


def _stop_frame(ak: Arm64Kernel, mem: StackMemory, symbols: Any) -> _State | None:
    """The deepest frame record, on any of the CPU's stacks, whose return address lies in a
    stop function and whose frame pointer leads further up the same stack."""
    for s in mem.stacks:
        got = mem.words(s)
        if got is None:
            continue
        lo, blk = got
        n = len(blk) // 8
        words = struct.unpack(f"<{n}Q", blk[: 8 * n])
        for i in range(n - 1):
            ret = words[i + 1]
            if not ret >> 55 & 1:
                continue
            ret = ak.strip(ret)
            sym = symbols.lookup(ret - 1)
            fp = words[i]
            if (sym is not None and sym.name in STOP_FUNCTIONS and ret != sym.address
                    and lo + 8 * i < fp < s.hi and not fp & 7):
                return _State(pc=ret, fp=fp, sp=lo + 8 * i, exact=False, method="fp",
                              slot=lo + 8 * i + 8)
    return None
