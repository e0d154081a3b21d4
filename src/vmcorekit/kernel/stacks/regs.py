"""Where a trace starts: the registers of each CPU at the crash (PRSTATUS notes written by kdump,
QEMU's CPU notes), or, for a task that was not running, the context switch_to() saved on its
stack (`task->thread.sp` points at a `struct inactive_task_frame`: r15..rbp, ret_addr).

Also the task running on each CPU at the crash, next to its registers (who panicked is
kernel/panic.py's).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import MemoryReadError, VmcorekitError
from ..cpus import current_task_address, present_cpus
from ..tasks import TaskInfo
from .kinfo import KernelInfo
from .model import ExceptionFrame
from .unwind import State
from .x86 import INACTIVE_FRAME_FIELDS, kernel_words, readable_stacks

if TYPE_CHECKING:
    from ...program import Program

# Functions a CPU is parked in when a crash stops it, newest first; used to find where the
# kernel-side stack of a stopped CPU starts when its note holds the interrupted user registers.
STOP_FUNCTIONS = ("crash_nmi_callback", "stop_this_cpu", "machine_kexec", "__crash_kexec",
                  "nmi_panic_self_stop", "panic_smp_self_stop")


@dataclass
class CpuContext:
    cpu: int
    task: int | None  # the task running on the CPU (its `current`)
    regs: dict[str, int] | None  # from the CPU note
    source: str | None  # "prstatus", "qemu"
    note_pid: int | None  # PRSTATUS pid (kdump: the task's pid; QEMU: the vCPU thread id)


def cpu_contexts(prog: "Program") -> dict[int, CpuContext]:
    """Every CPU that has a register note or a current task."""
    out: dict[int, CpuContext] = {}
    sp, pc = prog.platform.sp, prog.platform.pc
    try:
        notes = prog.cpus
    except (VmcorekitError, ValueError, struct.error):
        notes = []
    for n in notes:
        regs = dict(n.regs) if n.regs and (n.regs.get(sp) or n.regs.get(pc)) else None
        out[n.cpu] = CpuContext(n.cpu, None, regs, n.source, n.pid)
    active: dict[int, int] = {}
    try:
        for cpu in present_cpus(prog):
            t = current_task_address(prog, cpu)
            if t:
                active[cpu] = t
    except (VmcorekitError, MemoryReadError):
        active = {}
    for cpu, task in active.items():
        ctx = out.setdefault(cpu, CpuContext(cpu, None, None, None, None))
        ctx.task = task
    return out


def note_state(regs: dict[str, int], source: str) -> tuple[State | None, ExceptionFrame]:
    """The start state from a CPU note; None when the CPU was in user mode."""
    exc = ExceptionFrame(dict(regs), None, "note", origin=source)
    if exc.user_mode or not regs.get("rsp"):
        return None, exc
    st = State(ip=regs["rip"], sp=regs["rsp"], bp=regs.get("rbp"), signal=True, method="regs",
               regs=dict(regs), full_regs=True, exception=exc)
    return st, exc


def switch_state(ki: KernelInfo, task: TaskInfo) -> State:
    """The start state of a task that is not running: its inactive_task_frame."""
    T = "struct inactive_task_frame"
    size = ki.sizeof(T)
    ret_off = ki.offsetof(T, "ret_addr")
    bp_off = ki.offsetof(T, "bp")
    if size is None or ret_off is None or bp_off is None:
        # No BTF: the frame as __switch_to_asm has pushed it since 4.9 (rbp, rbx, r12-r15).
        size = 8 * len(INACTIVE_FRAME_FIELDS)
        ret_off = 8 * INACTIVE_FRAME_FIELDS.index("ret_addr")
        bp_off = 8 * INACTIVE_FRAME_FIELDS.index("bp")
    raw = ki.prog.read(task.thread_sp, size)
    ret = struct.unpack_from("<Q", raw, ret_off)[0]
    bp = struct.unpack_from("<Q", raw, bp_off)[0]
    # The frame's stack address is the task's saved stack pointer (where crash shows it);
    # the return address itself sits at +ret_off.
    return State(ip=ret, sp=task.thread_sp + size, bp=bp, signal=False, method="switch",
                 slot=task.thread_sp)


def find_stop_frame(ki: KernelInfo, stacks: list[Any], symbols: Any) -> State | None:
    """For a CPU stopped by the crash whose note holds the interrupted (user) registers: the
    lowest stack word that is a return address into one of STOP_FUNCTIONS."""
    names = set(STOP_FUNCTIONS)
    best: tuple[int, int] | None = None
    for s, blk in readable_stacks(ki.prog.read, stacks):
        for addr, w in kernel_words(blk, s.lo):
            sym = symbols.lookup(w)
            if sym is None or sym.name not in names or w == sym.address:
                continue
            best = (addr, w)
            break
        if best is not None:
            break
    if best is None:
        return None
    slot, w = best
    return State(ip=w, sp=slot + 8, bp=None, signal=False, method="scan", slot=slot, reliable=False)
