"""CPUs of the crashed kernel: which exist, which were online, what ran on each.

    possible_cpus(prog), present_cpus(prog), online_cpus(prog), offline_cpus(prog)
    runqueue(prog, 1)                # CPU 1's struct rq (typed; runqueue_address: raw)
    cpu_curr(prog, 1)                # struct task_struct * the scheduler ran on CPU 1
    current_task(prog, 1)            # what `current` was on CPU 1
    idle_task(prog, 1)               # swapper/1
    active_tasks(prog)               # {cpu: task_struct *} at the crash

Every fact is read once, by address (the `*_address` functions, which need no types beyond
a few offsets); the typed forms wrap those addresses as `struct task_struct *`.

Two views of "the task on a CPU": the scheduler's (`runqueues.curr`, what crash marks with
'>'), and the CPU's own `current` — a per-CPU variable where the platform keeps it there
(x86's `current_task`, a member of `pcpu_hot` since 6.2; the symbol names which layout the
kernel has, and it needs no types at all), else the scheduler's. They differ only inside a
context switch. A panic takes the other CPUs offline (`smp_send_stop` clears their online
bits) but leaves them present, so "present but not online" is how a dump shows CPUs stopped
by the crash. Who panicked is kernel/panic.py's.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import MemoryReadError, TypeLookupError, VmcorekitError
from ..program.objects import Object
from .percpu import MAX_CPUS, nr_cpu_ids, per_cpu

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["nr_cpu_ids", "possible_cpus", "present_cpus", "online_cpus", "offline_cpus",
           "runqueue", "runqueue_address", "cpu_curr", "cpu_curr_address", "current_task",
           "current_task_address", "idle_task", "idle_task_address", "active_tasks",
           "task_pointer", "MAX_CPUS"]


def task_pointer(prog: "Program", addr: int) -> Object:
    """`addr` as a struct task_struct * (a void * when the dump has no type for it: the
    address is still right, only member access needs BTF)."""
    try:
        t = prog.types.lookup("struct task_struct")
    except TypeLookupError:
        return Object(prog, prog.types.lookup("void *"), addr)
    return Object(prog, prog.types.pointer(t), addr)


# -- CPU masks --------------------------------------------------------------------------------
def _cpumask(prog: "Program", which: str) -> list[int] | None:
    """CPUs set in the kernel's `which` mask (possible, present, online, active); None when
    the dump does not have it. `__cpu_<which>_mask` is the bitmap itself (4.5+); older kernels
    have `cpu_<which>_mask`, a pointer to `cpu_<which>_bits`. Read once per dump."""
    cpus = prog.memo((_cpumask, which), lambda: _read_cpumask(prog, which))
    return None if cpus is None else list(cpus)


def _read_cpumask(prog: "Program", which: str) -> tuple[int, ...] | None:
    n = nr_cpu_ids(prog)
    ps = prog.platform.pointer_size
    words = -(-n // (8 * ps))
    addr = prog.try_symbol_address(f"__cpu_{which}_mask")
    if addr is None:
        p = prog.try_symbol_address(f"cpu_{which}_mask")
        if p is None:
            return None
        try:
            addr = prog.read_pointer(p)
        except MemoryReadError:
            return None
    try:
        raw = prog.read(addr, words * ps)
    except MemoryReadError:
        return None
    bits = int.from_bytes(raw, prog.platform.byteorder)
    return tuple(c for c in range(n) if bits >> c & 1)


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


# -- runqueues --------------------------------------------------------------------------------
def runqueue_address(prog: "Program", cpu: int) -> int | None:
    """Address of `cpu`'s struct rq (per-CPU `runqueues`); None when it cannot be found."""
    if prog.try_symbol_address("runqueues") is None:
        return None
    try:
        return per_cpu(prog, "runqueues", cpu)
    except (VmcorekitError, LookupError):
        return None


def runqueue(prog: "Program", cpu: int) -> Object | None:
    """`cpu`'s struct rq as a typed object (needs BTF); None when unknown."""
    if not prog.has_btf:
        return None
    addr = runqueue_address(prog, cpu)
    if addr is None:
        return None
    try:
        return prog.object("struct rq", addr)
    except (VmcorekitError, LookupError):
        return None


def _rq_task_address(prog: "Program", cpu: int, member: str) -> int | None:
    """runqueues.`member` (a task pointer) of `cpu`, when readable and not NULL."""
    try:
        off = prog.offsetof("struct rq", member)
    except (VmcorekitError, ImportError, LookupError):
        return None
    rq = runqueue_address(prog, cpu)
    if rq is None:
        return None
    try:
        return prog.read_pointer(rq + off) or None
    except (VmcorekitError, LookupError):
        return None


def _percpu_current_address(prog: "Program", cpu: int) -> int | None:
    """The per-CPU `current` pointer, on platforms that keep one: `pcpu_hot.current_task`
    (6.2+) or the variable `current_task`, chosen by which symbol the kernel has."""
    if not prog.platform.percpu_current:
        return None
    off = 0
    if prog.try_symbol_address("pcpu_hot") is not None:
        name = "pcpu_hot"
        try:
            off = prog.offsetof("struct pcpu_hot", "current_task")
        except (VmcorekitError, ImportError, LookupError):
            off = 0  # without BTF: current_task is pcpu_hot's first member
    elif prog.try_symbol_address("current_task") is not None:
        name = "current_task"
    else:
        return None
    try:
        return prog.read_pointer(per_cpu(prog, name, cpu) + off) or None
    except (VmcorekitError, LookupError):
        return None


# -- what ran where ---------------------------------------------------------------------------
def cpu_curr_address(prog: "Program", cpu: int) -> int | None:
    """The task the scheduler had running on `cpu` (runqueues.curr; the per-CPU current
    pointer without BTF for struct rq)."""
    t = _rq_task_address(prog, cpu, "curr")
    return t if t is not None else _percpu_current_address(prog, cpu)


def current_task_address(prog: "Program", cpu: int) -> int | None:
    """What `current` was on `cpu`: the per-CPU pointer where the platform keeps one (x86),
    else runqueues.curr (arm64 keeps `current` in a register the dump does not give)."""
    t = _percpu_current_address(prog, cpu)
    return t if t is not None else _rq_task_address(prog, cpu, "curr")


def idle_task_address(prog: "Program", cpu: int) -> int | None:
    """The idle task (swapper/N) of `cpu`: runqueues.idle; init_task is CPU 0's."""
    t = _rq_task_address(prog, cpu, "idle")
    if t is None and cpu == 0:
        t = prog.try_symbol_address("init_task")
    return t


def _typed(prog: "Program", addr: int | None) -> Object | None:
    return task_pointer(prog, addr) if addr is not None else None


def cpu_curr(prog: "Program", cpu: int) -> Object | None:
    """cpu_curr_address() as a struct task_struct *."""
    return _typed(prog, cpu_curr_address(prog, cpu))


def current_task(prog: "Program", cpu: int) -> Object | None:
    """current_task_address() as a struct task_struct *."""
    return _typed(prog, current_task_address(prog, cpu))


def idle_task(prog: "Program", cpu: int) -> Object | None:
    """idle_task_address() as a struct task_struct *."""
    return _typed(prog, idle_task_address(prog, cpu))


def active_tasks(prog: "Program") -> dict[int, Object]:
    """{cpu: task the scheduler ran there at the crash}, over the present CPUs (stopped ones
    too)."""
    out: dict[int, Object] = {}
    for cpu in present_cpus(prog):
        t = cpu_curr(prog, cpu)
        if t is not None:
            out[cpu] = t
    return out
