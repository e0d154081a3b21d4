"""CPUs of the crashed kernel: which exist, which were online, what ran on each, who panicked.

    nr_cpu_ids(prog)                 # 2
    possible_cpus(prog), present_cpus(prog), online_cpus(prog)
    cpu_curr(prog, 1)                # struct task_struct * running on CPU 1 (runqueues.curr)
    active_tasks(prog)               # {cpu: task_struct *} at the crash
    panic_cpu(prog), panic_task(prog)
    crash_context(prog)              # CrashContext: cpu, task, how it was found, cross-checks

The per-CPU "current" task is `runqueues.curr` (the scheduler's view, what crash marks with
'>') when BTF describes struct rq; on x86 the per-CPU `current_task` pointer (a plain per-CPU
variable before 6.2, a member of `pcpu_hot` since) is the fallback and needs no types at all
(the symbol names which layout the kernel has). A panic takes the other CPUs offline
(`smp_send_stop` clears their online bits) but leaves them present, so "present but not online"
is how a dump shows CPUs stopped by the crash.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import CorruptKernelDataError, MemoryReadError, TypeLookupError, VmcorekitError
from ..program.objects import Object, per_cpu

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["nr_cpu_ids", "possible_cpus", "present_cpus", "online_cpus", "offline_cpus",
           "cpu_curr", "current_task", "idle_task", "active_tasks", "panic_cpu", "panic_task",
           "crash_context", "CrashContext", "MAX_CPUS"]

# Linux's NR_CPUS tops out at 8192 (x86 MAXSMP); anything beyond is a corrupt nr_cpu_ids.
MAX_CPUS = 8192


# -- small shared readers (used by the other task/system helpers too) -------------------------
def _sym(prog: "Program", name: str) -> int | None:
    """Address of a kernel symbol, None when the dump's symbol table lacks it."""
    try:
        return prog.symbols.address_of(name)
    except (VmcorekitError, ImportError, LookupError):
        addr = prog.vmcoreinfo.symbols.get(name)
        return addr


def _ptr(prog: "Program", addr: int) -> int:
    ps = prog.space.pointer_size
    return int.from_bytes(prog.read(addr, ps), "little")


def _has_btf(prog: "Program") -> bool:
    try:
        return prog.types.kind != "vmcoreinfo"
    except (VmcorekitError, ImportError):
        return False


def _offsetof(prog: "Program", spec: str, member: str) -> int | None:
    try:
        return prog.types.offsetof(spec, member)
    except (VmcorekitError, ImportError):
        return None


def _task_ptr(prog: "Program", addr: int) -> Object:
    """A struct task_struct * (a void * when the dump has no type for it: the address is
    still right, only member access needs BTF)."""
    try:
        t = prog.types.lookup("struct task_struct")
    except TypeLookupError:
        return Object(prog, prog.types.lookup("void *"), addr)
    return Object(prog, prog.types.pointer(t), addr)


# -- CPU masks --------------------------------------------------------------------------------
def nr_cpu_ids(prog: "Program") -> int:
    """How many CPU numbers the kernel uses (`nr_cpu_ids`); 1 for a kernel without SMP."""
    addr = _sym(prog, "nr_cpu_ids")
    if addr is None:
        return max(1, len(_note_cpus(prog)))
    try:
        n = prog.read_u32(addr)
    except MemoryReadError as e:
        raise CorruptKernelDataError(f"nr_cpu_ids at {addr:#x} does not read: {e}") from None
    if not 0 < n <= MAX_CPUS:
        raise CorruptKernelDataError(f"nr_cpu_ids is {n}, not a CPU count (1..{MAX_CPUS})")
    return n


def _note_cpus(prog: "Program") -> list[int]:
    try:
        return sorted({c.cpu for c in prog.cpus})
    except (VmcorekitError, ValueError, struct.error):
        return []


def _cpumask(prog: "Program", which: str) -> list[int] | None:
    """CPUs set in the kernel's `which` mask (possible, present, online, active); None when
    the dump does not have it. `__cpu_<which>_mask` is the bitmap itself (4.5+); older kernels
    have `cpu_<which>_mask`, a pointer to `cpu_<which>_bits`."""
    n = nr_cpu_ids(prog)
    ps = prog.space.pointer_size
    words = -(-n // (8 * ps))
    addr = _sym(prog, f"__cpu_{which}_mask")
    if addr is None:
        p = _sym(prog, f"cpu_{which}_mask")
        if p is None:
            return None
        try:
            addr = _ptr(prog, p)
        except MemoryReadError:
            return None
    try:
        raw = prog.read(addr, words * ps)
    except MemoryReadError:
        return None
    bits = int.from_bytes(raw, "little")
    return [c for c in range(n) if bits >> c & 1]


def possible_cpus(prog: "Program") -> list[int]:
    m = _cpumask(prog, "possible")
    return m if m is not None else list(range(nr_cpu_ids(prog)))


def present_cpus(prog: "Program") -> list[int]:
    m = _cpumask(prog, "present")
    return m if m is not None else possible_cpus(prog)


def online_cpus(prog: "Program") -> list[int]:
    """CPUs online at the crash (a panic stops the others and clears their online bit)."""
    m = _cpumask(prog, "online")
    return m if m is not None else present_cpus(prog)


def offline_cpus(prog: "Program") -> list[int]:
    """Present CPUs that were not online when the dump was taken."""
    online = set(online_cpus(prog))
    return [c for c in present_cpus(prog) if c not in online]


# -- what ran where ---------------------------------------------------------------------------
def _runqueue(prog: "Program", cpu: int) -> Object | None:
    if not _has_btf(prog) or _sym(prog, "runqueues") is None:
        return None
    try:
        return per_cpu(prog["runqueues"], cpu)
    except (VmcorekitError, LookupError):
        return None


def current_task(prog: "Program", cpu: int) -> Object | None:
    """The per-CPU `current_task` pointer of x86 (`pcpu_hot.current_task` in 6.2+), chosen
    by which symbol the kernel has; None on other architectures or when unreadable."""
    off = 0
    if _sym(prog, "pcpu_hot") is not None:
        name = "pcpu_hot"
        o = _offsetof(prog, "struct pcpu_hot", "current_task")
        # Without BTF: current_task is pcpu_hot's first member (the union's first struct).
        off = o if o is not None else 0
    elif _sym(prog, "current_task") is not None:
        name = "current_task"
    else:
        return None
    base = _sym(prog, name)
    pco = _sym(prog, "__per_cpu_offset")
    if base is None or pco is None:
        return None
    try:
        ps = prog.space.pointer_size
        cpu_off = _ptr(prog, pco + cpu * ps)
        t = _ptr(prog, (base + cpu_off + off) & 0xFFFFFFFFFFFFFFFF)
    except MemoryReadError:
        return None
    if not t:
        return None
    return _task_ptr(prog, t)


def _rq_task(prog: "Program", cpu: int, field: str) -> Object | None:
    """runqueues.`field` (a task pointer) of `cpu`, when it is readable and not NULL."""
    rq = _runqueue(prog, cpu)
    if rq is None:
        return None
    try:
        t = getattr(rq, field).read_()
    except (VmcorekitError, LookupError):
        return None
    return t if int(t) else None


def cpu_curr(prog: "Program", cpu: int) -> Object | None:
    """The task the scheduler had running on `cpu` (runqueues.curr; x86's per-CPU current
    task without BTF for struct rq)."""
    t = _rq_task(prog, cpu, "curr")
    return t if t is not None else current_task(prog, cpu)


def idle_task(prog: "Program", cpu: int) -> Object | None:
    """The idle task (swapper/N) of `cpu`: runqueues.idle; init_task is CPU 0's."""
    t = _rq_task(prog, cpu, "idle")
    if t is not None:
        return t
    if cpu == 0:
        addr = _sym(prog, "init_task")
        if addr is not None:
            return _task_ptr(prog, addr)
    return None


def active_tasks(prog: "Program") -> dict[int, Object]:
    """{cpu: task running there at the crash}, over the present CPUs (stopped ones too)."""
    out: dict[int, Object] = {}
    for cpu in present_cpus(prog):
        t = cpu_curr(prog, cpu)
        if t is not None:
            out[cpu] = t
    return out


# -- the panic --------------------------------------------------------------------------------
def panic_cpu(prog: "Program") -> tuple[int | None, str]:
    """(CPU that panicked, how it was found). `panic_cpu` is set by panic() (and by the oops
    path before crash_kexec); x86's `crashing_cpu` by the kdump shutdown path."""
    n = nr_cpu_ids(prog)
    found = False
    for name in ("panic_cpu", "crashing_cpu"):
        addr = _sym(prog, name)
        if addr is None:
            continue
        found = True
        try:
            v = struct.unpack("<i", prog.read(addr, 4))[0]
        except MemoryReadError:
            continue
        if 0 <= v < n:
            return v, name
    if not found:
        # A symbol table without data symbols (no CONFIG_KALLSYMS_ALL): the CPU whose stack
        # holds panic()'s frame.
        from .stacks.arm64 import panic_cpu_from_stacks

        def task_stack(cpu: int) -> int | None:
            t = cpu_curr(prog, cpu)
            return int(t.stack) if t is not None else None

        cpu, how = panic_cpu_from_stacks(prog, task_stack)
        if cpu is not None:
            return cpu, how
        return None, f"no panic_cpu or crashing_cpu symbol; {how}"
    return None, "panic_cpu and crashing_cpu are unset (-1): no CPU went through panic()"


@dataclass
class CrashContext:
    """Where the crash happened, and how sure we are."""

    cpu: int | None
    task: Object | None
    how: str
    notes: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        if self.task is None:
            return None
        try:
            return int(self.task.pid)
        except (VmcorekitError, LookupError):
            return None


def crash_context(prog: "Program") -> CrashContext:
    """The panicking CPU and the task running there, cross-checked with the CPU register
    notes: a kdump PRSTATUS note carries the pid of the task that was current."""
    cpu, how = panic_cpu(prog)
    ctx = CrashContext(cpu, None, how)
    if cpu is None:
        return ctx
    ctx.task = cpu_curr(prog, cpu)
    if ctx.task is None:
        ctx.notes.append(f"no current task known for CPU {cpu}")
        return ctx
    try:
        notes = {c.cpu: c for c in prog.cpus}
    except (VmcorekitError, ValueError, struct.error):
        notes = {}
    note = notes.get(cpu)
    # QEMU's dump-guest-memory writes PRSTATUS notes too, with the vCPU number as the pid (it
    # knows no guest tasks). Only the crashing kernel's own notes name a task; that kernel
    # also stamps CRASHTIME into VMCOREINFO at the same moment (crash_save_vmcoreinfo).
    own_notes = bool(prog.vmcoreinfo.crashtime)
    if note is not None and note.source == "prstatus" and note.pid and own_notes:
        pid = ctx.pid
        if pid is not None and pid != note.pid:
            ctx.notes.append(f"CPU {cpu}'s PRSTATUS note names pid {note.pid}, but the "
                             f"scheduler's current task there has pid {pid}")
    return ctx


def panic_task(prog: "Program") -> Object | None:
    """The task that was running on the panicking CPU (struct task_struct *), or None."""
    return crash_context(prog).task

