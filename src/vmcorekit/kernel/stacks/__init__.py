"""Kernel stack traces without debuginfo: on x86_64 ORC tables from kernel memory, frame
pointers where a kernel has no ORC, a validated stack scan as the last resort; on arm64 the
frame-record chain; and a crash-compatible tracer (`crashbt`) that reproduces crash's `bt` word
for word. Which code serves a dump is chosen by its platform (platforms.py).

    from vmcorekit.kernel.stacks import stack_trace, crashed_task
    t = stack_trace(prog, task=crashed_task(prog).task)     # -> Trace (frames, user_regs, ...)
    t = stack_trace(prog, pid=1)
    t = stack_trace(prog, cpu=1)                             # the task running on CPU 1
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from ...errors import CorruptKernelDataError, MemoryReadError, SymbolError, TypeLookupError
from ...program.modlist import program_modules
from ..cpus import current_task_address
from ..panic import panic_cpu
from ..tasks import TaskInfo, find_task_addresses, task_info
from . import orc as O
from .kinfo import KernelInfo, StackFacts
from .model import ExceptionFrame, Frame, StackRange, Trace
from .platforms import PlatformStacks, platform_stacks
from .regs import CpuContext, cpu_contexts
from .unwind import MAX_FRAMES

if TYPE_CHECKING:
    from ...program import Program

__all__ = ["Frame", "Trace", "ExceptionFrame", "StackRange", "TaskInfo", "Stacks", "stacks",
           "stack_trace", "crashed_task", "CrashedTask"]

MODULES_MAX = 65536
# include/linux/sched.h: task->exit_state values.
EXIT_DEAD, EXIT_ZOMBIE = 0x10, 0x20


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
        self.platform_stacks: PlatformStacks = platform_stacks(prog.platform)

    @cached_property
    def arch(self) -> StackFacts:
        """The architecture's stack facts: thread_size, cpu_stacks(cpu), task_stack(info)."""
        return self.platform_stacks.facts(self.ki)

    # -- ORC ----------------------------------------------------------------------------------
    @cached_property
    def orc_layout(self) -> O.OrcLayout:
        lay = O.layout_from_btf(self.ki.struct("struct orc_entry"))
        return lay if lay is not None else O.layout_from_version(self.ki.version)

    @cached_property
    def orc(self) -> O.OrcIndex | None:
        """vmlinux's and the modules' ORC tables; None for a kernel built without ORC."""
        if self.prog.try_symbol_address("__start_orc_unwind_ip") is None:
            self.notes.append("no ORC tables in this kernel (__start_orc_unwind_ip not found)")
            return None

        def addr(name: str) -> int:
            a = self.prog.try_symbol_address(name)
            if a is None:
                raise SymbolError(name)
            return a

        try:
            vm = O.load_vmlinux_table(self.prog.read, addr, self.orc_layout)
        except (MemoryReadError, CorruptKernelDataError, SymbolError) as e:
            self.notes.append(f"vmlinux ORC tables unreadable: {e}")
            return None
        tables, notes = [vm], []
        tables += self._module_tables(notes)
        return O.OrcIndex(tables, self.orc_layout, notes)

    def _module_tables(self, notes: list[str]) -> list[O.OrcTable]:
        prog = self.prog
        if prog.try_symbol_address("modules") is None:
            return []
        M = "struct module"
        offs = {k: prog.try_offsetof(M, d) for k, d in (("ip", "arch.orc_unwind_ip"),
                                                         ("orc", "arch.orc_unwind"),
                                                         ("num", "arch.num_orcs"))}
        if None in offs.values():
            notes.append("module ORC tables skipped: struct module layout unknown (no BTF)")
            return []
        u32 = prog.platform.unpack("I")
        out: list[O.OrcTable] = []
        try:
            for m in program_modules(prog, what="modules"):
                name = m.name or f"module@{m.address:#x}"
                ip = prog.read_pointer(m.address + offs["ip"])  # type: ignore[operator]
                oe = prog.read_pointer(m.address + offs["orc"])  # type: ignore[operator]
                num = struct.unpack(u32, prog.read(m.address + offs["num"], 4))[0]  # type: ignore[operator]
                t, why = O.safe_module_table(prog.read, name, ip, oe, num, self.orc_layout)
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
        return cpu_contexts(self.prog)

    @cached_property
    def crashed(self) -> CrashedTask:
        cpu, how = panic_cpu(self.prog, strict=False, task_stack=self._task_stack_of_cpu)
        if cpu is None:
            return CrashedTask(None, None, how)
        ctx = self.contexts.get(cpu)
        return CrashedTask(ctx.task if ctx else current_task_address(self.prog, cpu), cpu, how)

    def _task_stack_of_cpu(self, cpu: int) -> int | None:
        ctx = self.contexts.get(cpu)
        task = ctx.task if ctx else None
        if not task:
            return None
        try:
            return task_info(self.prog, task).stack or None
        except (TypeLookupError, MemoryReadError):
            return None

    def cpu_of_active(self, task: int) -> int | None:
        for cpu, ctx in self.contexts.items():
            if ctx.task == task:
                return cpu
        return None

    def stacks_for(self, info: TaskInfo, cpu: int | None) -> list[StackRange]:
        """The task's own stack, and the per-CPU stacks of the CPU it was running on."""
        out: list[StackRange] = []
        ts = self.arch.task_stack(info)
        if ts is not None:
            out.append(ts)
        if cpu is not None:
            out += self.arch.cpu_stacks(cpu)
        return out

    def _stackless(self, task: int) -> Trace | None:
        """A task not running anywhere whose task->stack is NULL has no frames: its stack was
        freed when it exited (release_task_stack, kernels with THREAD_INFO_IN_TASK). Its saved
        stack pointer still points into the freed stack, whose stale words would make up a
        trace."""
        if self.cpu_of_active(task) is not None:
            return None
        try:
            info = task_info(self.prog, task)
        except (TypeLookupError, MemoryReadError):
            return None
        if info.stack:
            return None
        exit_state = None
        off = self.prog.try_offsetof("struct task_struct", "exit_state")
        if off is not None:
            try:
                exit_state = struct.unpack(self.prog.platform.unpack("i"), self.prog.read(task + off, 4))[0]
            except MemoryReadError:
                exit_state = None
        what = {EXIT_ZOMBIE: "a zombie", EXIT_DEAD: "dead"}.get(exit_state or 0, "exiting")
        tr = Trace(task=task, pid=info.pid, comm=info.comm, cpu=info.cpu, start="none",
                   complete=True, unwinder="none")
        tr.end_reason = f"no stack: the task is {what} and its kernel stack was freed (task->stack is NULL)"
        return tr

    # -- traces -------------------------------------------------------------------------------
    def trace(self, task: int, *, unwinder: str = "auto", max_frames: int = MAX_FRAMES) -> Trace:
        """The trace of `task` by the platform's unwinders (`unwinder` picks one of them)."""
        gone = self._stackless(task)
        if gone is not None:
            return gone
        return self.platform_stacks.trace(self, task, unwinder=unwinder, max_frames=max_frames)


def stacks(prog: "Program") -> Stacks:
    """The per-Program stack context (cached)."""
    return prog.memo(Stacks, lambda: Stacks(prog))


def crashed_task(prog: "Program") -> CrashedTask:
    return stacks(prog).crashed


def stack_trace(prog: "Program", task: int | None = None, *, pid: int | None = None,
                cpu: int | None = None, unwinder: str = "auto", max_frames: int = MAX_FRAMES) -> Trace:
    """The stack trace of a task (by address or pid), or of the task running on a CPU; with
    none of them, of the panicking task."""
    s = stacks(prog)
    if task is None and pid is not None:
        found = find_task_addresses(prog, pid)
        if not found:
            raise LookupError(f"no task with pid {pid}")
        task = found[0]
    if task is None and cpu is not None:
        ctx = s.contexts.get(cpu)
        task = ctx.task if ctx else current_task_address(prog, cpu)
        if not task:
            raise LookupError(f"no task is known to run on CPU {cpu}")
    if task is None:
        task = s.crashed.task
        if task is None:
            raise LookupError(f"no panicking task: {s.crashed.how}")
    return s.trace(task, unwinder=unwinder, max_frames=max_frames)
