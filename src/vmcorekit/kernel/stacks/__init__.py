"""Kernel stack traces without debuginfo (x86_64): ORC tables from kernel memory, frame pointers
where a kernel has no ORC, a validated stack scan as the last resort, and a crash-compatible
tracer (`crashbt`) that reproduces crash's `bt` word for word.

    from vmcorekit.kernel.stacks import stack_trace, crashed_task
    t = stack_trace(prog, task=crashed_task(prog).task)     # -> Trace (frames, user_regs, ...)
    t = stack_trace(prog, pid=1)
    t = stack_trace(prog, cpu=1)                             # the task running on CPU 1
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ...errors import CorruptKernelDataError, MemoryReadError, SymbolError, TypeLookupError
from . import orc as O
from .kinfo import KernelInfo, StackRange, TaskInfo
from .model import ExceptionFrame, Frame, Trace
from .regs import (CpuContext, cpu_contexts, find_stop_frame, note_state, panic_cpu,
                   switch_state)
from .unwind import MAX_FRAMES, StackMemory, State, Unwinder

if TYPE_CHECKING:
    from ...program import Program

__all__ = ["Frame", "Trace", "ExceptionFrame", "StackRange", "TaskInfo", "Stacks", "stacks",
           "stack_trace", "crashed_task", "CrashedTask"]

UNWINDERS = ("auto", "orc", "fp", "scan")
_CACHE: "weakref.WeakKeyDictionary[Any, Stacks]" = weakref.WeakKeyDictionary()
MODULES_MAX = 65536


@dataclass(frozen=True)
class CrashedTask:
    task: int | None
    cpu: int | None
    how: str  # which symbol identified the CPU


class Stacks:
    """Everything stack traces of one dump share: kernel facts, ORC tables, CPU registers."""

    def __init__(self, prog: "Program") -> None:
        self.prog = prog
        self.ki = KernelInfo(prog)
        self.notes: list[str] = []

    # -- ORC ----------------------------------------------------------------------------------
    @cached_property
    def orc_layout(self) -> O.OrcLayout:
        lay = O.layout_from_btf(self.ki.struct("struct orc_entry"))
        return lay if lay is not None else O.layout_from_version(self.ki.version)

    @cached_property
    def orc(self) -> O.OrcIndex | None:
        """vmlinux's and the modules' ORC tables; None for a kernel built without ORC."""
        ki = self.ki
        if ki.address_of("__start_orc_unwind_ip") is None:
            self.notes.append("no ORC tables in this kernel (__start_orc_unwind_ip not found)")
            return None

        def addr(name: str) -> int:
            a = ki.address_of(name)
            if a is None:
                raise SymbolError(name)
            return a

        try:
            vm = O.load_vmlinux_table(ki.read, addr, self.orc_layout)
        except (MemoryReadError, CorruptKernelDataError, SymbolError) as e:
            self.notes.append(f"vmlinux ORC tables unreadable: {e}")
            return None
        tables, notes = [vm], []
        tables += self._module_tables(notes)
        return O.OrcIndex(tables, self.orc_layout, notes)

    def _module_tables(self, notes: list[str]) -> list[O.OrcTable]:
        ki = self.ki
        M = "struct module"
        offs = {k: ki.offsetof(M, d) for k, d in (("list", "list"), ("name", "name"),
                                                    ("ip", "arch.orc_unwind_ip"),
                                                    ("orc", "arch.orc_unwind"),
                                                    ("num", "arch.num_orcs"))}
        head = ki.address_of("modules")
        if head is None or None in offs.values():
            if head is not None:
                notes.append("module ORC tables skipped: struct module layout unknown (no BTF)")
            return []
        out: list[O.OrcTable] = []
        try:
            for node in ki._list(head, "modules"):
                mod = node - offs["list"]  # type: ignore[operator]
                raw_name = ki.read(mod + offs["name"], 56)  # type: ignore[operator]
                name = raw_name.split(b"\0", 1)[0].decode("utf-8", "replace") or f"module@{mod:#x}"
                ip = ki.u64(mod + offs["ip"])  # type: ignore[operator]
                oe = ki.u64(mod + offs["orc"])  # type: ignore[operator]
                num = ki.u32(mod + offs["num"])  # type: ignore[operator]
                t, why = O.safe_module_table(ki.read, name, ip, oe, num, self.orc_layout)
                if t is not None:
                    out.append(t)
                if why:
                    notes.append(why)
                if len(out) > MODULES_MAX:
                    break
        except (MemoryReadError, CorruptKernelDataError) as e:
            notes.append(f"module list: {e}")
        return out

    # -- CPUs and tasks -----------------------------------------------------------------------
    @cached_property
    def contexts(self) -> dict[int, CpuContext]:
        return cpu_contexts(self.ki)

    @cached_property
    def crashed(self) -> CrashedTask:
        cpu, how = panic_cpu(self.ki)
        if cpu is None and self.ki.address_of("panic_cpu") is None:
            # No panic_cpu symbol (a kallsyms without data symbols): the CPU whose stack
            # holds panic()'s frame.
            from .arm64 import panic_cpu_from_stacks
            cpu, why = panic_cpu_from_stacks(self.prog, self._task_stack_of_cpu)
            how = why if cpu is not None else f"{how}; {why}"
        if cpu is None:
            return CrashedTask(None, None, how)
        ctx = self.contexts.get(cpu)
        return CrashedTask(ctx.task if ctx else self.ki.current_task(cpu), cpu, how)

    def _task_stack_of_cpu(self, cpu: int) -> int | None:
        ctx = self.contexts.get(cpu)
        task = ctx.task if ctx else None
        if not task:
            return None
        try:
            return self.ki.task(task).stack or None
        except (TypeLookupError, MemoryReadError):
            return None

    def cpu_of_active(self, task: int) -> int | None:
        for cpu, ctx in self.contexts.items():
            if ctx.task == task:
                return cpu
        return None

    def stacks_for(self, info: TaskInfo, cpu: int | None) -> list[StackRange]:
        out: list[StackRange] = []
        ts = self.ki.task_stack(info)
        if ts is not None:
            out.append(ts)
        if cpu is not None:
            out += self.ki.cpu_stacks(cpu)
        return out

    # -- traces -------------------------------------------------------------------------------
    def trace(self, task: int, *, unwinder: str = "auto", max_frames: int = MAX_FRAMES) -> Trace:
        if self.prog.arch == "aarch64":
            from . import arm64
            return arm64.trace(self, task, unwinder=unwinder, max_frames=max_frames)
        if unwinder not in UNWINDERS:
            raise ValueError(f"unwinder must be one of {UNWINDERS}")
        ki = self.ki
        cpu = self.cpu_of_active(task)
        try:
            info: TaskInfo | None = ki.task(task)
        except TypeLookupError as e:
            if cpu is None:
                raise
            info = None
            why = str(e)
        if info is not None:
            tr = Trace(task=task, pid=info.pid, comm=info.comm,
                       cpu=cpu if cpu is not None else info.cpu)
            stacks = self.stacks_for(info, cpu)
        else:
            # No task_struct layout (no BTF): the CPU's registers still give a trace. The task
            # stack is the THREAD_SIZE-aligned block around the stack pointer (vmap'ed and
            # direct-mapped stacks are both aligned so).
            assert cpu is not None
            ctx = self.contexts.get(cpu)
            qemu = ctx is not None and ctx.regs is not None and "cr3" in ctx.regs
            tr = Trace(task=task, pid=ctx.note_pid if ctx and ctx.source == "prstatus" and not qemu else None,
                       cpu=cpu)
            tr.notes.append(f"{why}; tracing CPU {cpu} from its registers, the task stack taken "
                            f"as the {ki.thread_size}-byte block around its stack pointer")
            stacks = ki.cpu_stacks(cpu)
            rsp = (ctx.regs or {}).get("rsp", 0) if ctx else 0
            if rsp and not any(rsp in x for x in stacks):
                lo = rsp & ~(ki.thread_size - 1)
                stacks.insert(0, StackRange("task", lo, lo + ki.thread_size, cpu))
        mem = StackMemory(ki.read, stacks)
        orc = self.orc if unwinder in ("auto", "orc") else None
        if unwinder in ("auto", "orc"):
            tr.notes.append(self.orc_layout.describe())
            if orc is not None:
                tr.notes += orc.notes
        if orc is None and unwinder in ("auto", "orc"):
            tr.notes += [n for n in self.notes if n not in tr.notes]
        uw = Unwinder(mem, ki.symbols, orc, max_frames=max_frames,
                      use_fp=True if unwinder == "fp" else None,
                      use_scan=unwinder in ("auto", "scan", "fp") or orc is None)
        if unwinder == "scan":
            uw.use_fp = False
        start = self._start_state(tr, info, cpu, mem)
        if start is None:
            tr.unwinder = "orc" if uw.orc is not None else ("fp" if uw.use_fp else "scan")
            return tr
        return uw.run(start, tr)

    def _start_state(self, tr: Trace, info: TaskInfo | None, cpu: int | None,
                     mem: StackMemory) -> State | None:
        if cpu is None:
            assert info is not None
            tr.start = "saved-context"
            return switch_state(self.ki, info)
        ctx = self.contexts.get(cpu)
        if ctx is None or ctx.regs is None:
            if info is None:
                tr.end_reason = f"no register note for CPU {cpu} and no task_struct layout"
                return None
            tr.start = "saved-context"
            tr.notes.append(f"no register note for CPU {cpu}: starting from the task's last "
                            "saved context, which predates the crash")
            return switch_state(self.ki, info)
        st, exc = note_state(ctx.regs, ctx.source or "note")
        if st is not None and mem.stack_of(st.sp) is not None:
            tr.start = "cpu-note"
            return st
        # The note holds the registers the CPU was interrupted at (user mode, or a stack we do
        # not know): a CPU stopped by the crash NMI/IPI. Its kernel stack starts in the stop
        # function.
        stop = find_stop_frame(self.ki, mem.stacks, self.ki.symbols)
        if stop is not None:
            tr.start = "stop-function"
            tr.notes.append(f"CPU {cpu}'s note holds interrupted {'user' if exc.user_mode else 'kernel'} "
                            f"registers (rip {exc.regs.get('rip', 0):#x}); the kernel stack was found "
                            "from the stop function on it")
            return stop
        if exc.user_mode:
            tr.start = "cpu-note"
            tr.user_regs = exc
            tr.complete = True
            tr.end_reason = "user mode"
            return None
        tr.start = "cpu-note"
        tr.notes.append(f"CPU {cpu}'s stack pointer {exc.regs.get('rsp', 0):#x} is on no known stack")
        return st


def stacks(prog: "Program") -> Stacks:
    """The per-Program stack context (cached)."""
    s = _CACHE.get(prog)
    if s is None:
        s = Stacks(prog)
        _CACHE[prog] = s
    return s


def crashed_task(prog: "Program") -> CrashedTask:
    return stacks(prog).crashed


def stack_trace(prog: "Program", task: int | None = None, *, pid: int | None = None,
                cpu: int | None = None, unwinder: str = "auto", max_frames: int = MAX_FRAMES) -> Trace:
    """The stack trace of a task (by address or pid), or of the task running on a CPU; with
    none of them, of the panicking task."""
    s = stacks(prog)
    if task is None and pid is not None:
        found = s.ki.find_task(pid)
        if not found:
            raise LookupError(f"no task with pid {pid}")
        task = found[0]
    if task is None and cpu is not None:
        ctx = s.contexts.get(cpu)
        task = ctx.task if ctx else s.ki.current_task(cpu)
        if not task:
            raise LookupError(f"no task is known to run on CPU {cpu}")
    if task is None:
        task = s.crashed.task
        if task is None:
            raise LookupError(f"no panicking task: {s.crashed.how}")
    return s.trace(task, unwinder=unwinder, max_frames=max_frames)
