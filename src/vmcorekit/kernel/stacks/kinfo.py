"""Kernel facts the unwinders need, from the dump alone: per-CPU areas, task fields, stack
extents. Offsets come from the dump's types (BTF); the few constants that are ABI (pt_regs,
struct inactive_task_frame on kernels without BTF) are spelled out where they are used.

Task iteration here is the minimum `bt` needs (init_task.tasks, then each leader's threads),
by raw offsets so that it works without BTF, unlike kernel/tasks.py; both walk lists with
kernel/lists.py's bounded, cycle-checked list_nodes.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterator

from ...errors import (CorruptKernelDataError, MemoryReadError, SymbolError, TypeLookupError,
                       VmcorekitError, partial_result)
from ..lists import list_nodes

if TYPE_CHECKING:
    from ...program import Program

PF_KTHREAD = 0x00200000
PF_IDLE = 0x00000002
MAX_TASKS = 1 << 22  # pid_max's ceiling; more list entries than this is a cycle or garbage
MAX_CPUS = 8192  # NR_CPUS ceiling of any x86_64 config


@dataclass(frozen=True)
class StackRange:
    """A kernel stack: [lo, hi), what it is, and for per-CPU stacks which CPU owns it."""

    kind: str  # "task", "IRQ", "DF", "NMI", "DB", "MCE", "VC", "VC2", "entry"
    lo: int
    hi: int
    cpu: int | None = None

    def __contains__(self, addr: int) -> bool:
        return self.lo <= addr < self.hi


@dataclass(frozen=True)
class TaskInfo:
    address: int
    pid: int
    tgid: int
    comm: str
    state: int
    flags: int
    cpu: int | None
    on_cpu: int | None
    stack: int  # task->stack (lowest address of the task's kernel stack)
    thread_sp: int  # task->thread.sp: where switch_to() left the inactive_task_frame
    mm: int

    @property
    def is_kernel_thread(self) -> bool:
        return bool(self.flags & PF_KTHREAD) or self.mm == 0


class KernelInfo:
    """Offsets and per-CPU facts of one dump, computed once."""

    def __init__(self, prog: "Program") -> None:
        self.prog = prog
        self.notes: list[str] = []

    # -- types --------------------------------------------------------------------------------
    @cached_property
    def types(self) -> Any | None:
        try:
            t = self.prog.types
        except (VmcorekitError, ImportError) as e:
            self.notes.append(f"no types ({e})")
            return None
        if getattr(t, "kind", "btf") == "vmcoreinfo":
            # VMCOREINFO knows a handful of structures; the ones we ask for are rarely among them,
            # but any it does answer are right.
            self.notes.append("no BTF: only VMCOREINFO's structure facts are available")
        return t

    def offsetof(self, spec: str, designator: str) -> int | None:
        t = self.types
        if t is None:
            return None
        try:
            return int(t.offsetof(spec, designator))
        except (TypeLookupError, LookupError, VmcorekitError):
            return None

    def sizeof(self, spec: str) -> int | None:
        t = self.types
        if t is None:
            return None
        try:
            return int(t.sizeof(spec))
        except (TypeLookupError, LookupError, VmcorekitError):
            return None

    def has_type(self, spec: str) -> bool:
        t = self.types
        return bool(t is not None and t.has_type(spec))

    def struct(self, spec: str) -> Any | None:
        t = self.types
        if t is None:
            return None
        try:
            return t.lookup(spec)
        except (TypeLookupError, LookupError, VmcorekitError):
            return None

    # -- symbols and memory -------------------------------------------------------------------
    @cached_property
    def symbols(self) -> Any:
        return self.prog.symbols

    def address_of(self, name: str) -> int | None:
        try:
            return self.prog.symbol_address(name)
        except (SymbolError, LookupError, ImportError):
            return None

    def read(self, addr: int, n: int) -> bytes:
        return self.prog.read(addr, n)

    def u64(self, addr: int) -> int:
        return struct.unpack("<Q", self.prog.read(addr, 8))[0]

    def u32(self, addr: int) -> int:
        return struct.unpack("<I", self.prog.read(addr, 4))[0]

    def s32(self, addr: int) -> int:
        return struct.unpack("<i", self.prog.read(addr, 4))[0]

    # -- kernel release -----------------------------------------------------------------------
    @cached_property
    def version(self) -> tuple[int, ...] | None:
        try:
            return tuple(self.prog.vmcoreinfo.kernel_version())
        except (VmcorekitError, AttributeError, TypeError, ValueError):
            return None

    # -- CPUs and per-CPU data ----------------------------------------------------------------
    @cached_property
    def nr_cpu_ids(self) -> int:
        a = self.address_of("nr_cpu_ids")
        n = 0
        if a is not None:
            try:
                n = self.u32(a)
            except MemoryReadError:
                n = 0
        if not 0 < n <= MAX_CPUS:
            n = max(len(self.prog.cpus), 1)
        return n

    @cached_property
    def per_cpu_offsets(self) -> list[int]:
        a = self.address_of("__per_cpu_offset")
        if a is None:
            raise SymbolError("__per_cpu_offset not found: per-CPU data cannot be located")
        raw = self.read(a, 8 * self.nr_cpu_ids)
        return list(struct.unpack(f"<{self.nr_cpu_ids}Q", raw))

    def per_cpu(self, name_or_offset: str | int, cpu: int) -> int:
        """Address of a per-CPU variable (by symbol, or by its per-CPU offset) on `cpu`."""
        off = name_or_offset if isinstance(name_or_offset, int) else self.address_of(name_or_offset)
        if off is None:
            raise SymbolError(f"per-CPU symbol {name_or_offset!r} not found")
        if not 0 <= cpu < len(self.per_cpu_offsets):
            raise CorruptKernelDataError(f"CPU {cpu} is beyond nr_cpu_ids {self.nr_cpu_ids}")
        return (off + self.per_cpu_offsets[cpu]) & 0xFFFFFFFFFFFFFFFF

    def cpu_present(self, cpu: int) -> bool:
        """Present, not online: a panic takes the other CPUs offline before the dump."""
        for name in ("__cpu_present_mask", "cpu_present_mask"):
            a = self.address_of(name)
            if a is None:
                continue
            try:
                word = self.u64(a + 8 * (cpu // 64))
            except MemoryReadError:
                return True
            return bool(word >> (cpu % 64) & 1)
        return True

    def pcpu_hot_member(self, member: str) -> tuple[str, int] | None:
        """(symbol, extra offset) of a per-CPU field that 6.2+ keeps in `pcpu_hot` and older
        kernels as its own per-CPU variable: chosen by which symbol exists."""
        if self.address_of("pcpu_hot") is not None:
            off = self.offsetof("struct pcpu_hot", member)
            if off is not None:
                return "pcpu_hot", off
        if self.address_of(member) is not None:
            return member, 0
        return None

    def current_task(self, cpu: int) -> int | None:
        where = self.pcpu_hot_member("current_task")
        if where is None:
            return self.rq_curr(cpu)  # arm64 and others keep `current` in a register
        sym, extra = where
        try:
            return self.u64(self.per_cpu(sym, cpu) + extra)
        except (MemoryReadError, VmcorekitError):
            return None

    def rq_curr(self, cpu: int) -> int | None:
        """The scheduler's current task of `cpu` (runqueues.curr)."""
        off = self.offsetof("struct rq", "curr")
        if off is None or self.address_of("runqueues") is None:
            return None
        try:
            return self.u64(self.per_cpu("runqueues", cpu) + off) or None
        except (MemoryReadError, VmcorekitError):
            return None

    # -- stacks -------------------------------------------------------------------------------
    @cached_property
    def arm64(self) -> Any:
        """The arm64 stack facts (arm64.Arm64Kernel) of this dump."""
        from .arm64 import Arm64Kernel
        return Arm64Kernel(self)

    @cached_property
    def thread_size(self) -> int:
        if self.prog.arch == "aarch64":
            return self.arm64.thread_size
        s = self.sizeof("union thread_union")
        if s:
            return s
        sym = self.symbols.get("init_stack") if hasattr(self.symbols, "get") else None
        if sym is not None and sym.size and sym.size & (sym.size - 1) == 0:
            return int(sym.size)
        return 16384  # THREAD_SIZE on x86_64 without KASAN

    @cached_property
    def irq_stack_size(self) -> int:
        return self.sizeof("struct irq_stack") or self.thread_size

    def irq_stack(self, cpu: int) -> StackRange | None:
        """The hardirq stack: per-CPU `hardirq_stack_ptr` (6.2+: `pcpu_hot.hardirq_stack_ptr`)
        points 8 bytes below its top."""
        where = self.pcpu_hot_member("hardirq_stack_ptr")
        if where is None:
            return None
        sym, extra = where
        try:
            ptr = self.u64(self.per_cpu(sym, cpu) + extra)
        except (MemoryReadError, VmcorekitError):
            return None
        if not ptr:
            return None
        top = ptr + 8
        return StackRange("IRQ", top - self.irq_stack_size, top, cpu)

    @cached_property
    def _estack_members(self) -> list[tuple[str, int, int]]:
        """(name, offset, size) of each exception stack in struct cea_exception_stacks."""
        t = self.struct("struct cea_exception_stacks")
        out: list[tuple[str, int, int]] = []
        if t is None or not getattr(t, "members", None):
            return out
        for m in t.members:
            if m.name and m.name.endswith("_stack") and not m.name.endswith("_guard"):
                try:
                    size = m.type.sizeof()
                except (TypeLookupError, VmcorekitError, TypeError):
                    continue
                out.append((m.name[:-len("_stack")], m.bit_offset // 8, size))
        return out

    def exception_stacks(self, cpu: int) -> list[StackRange]:
        """The IST stacks (DF, NMI, DB, MCE, VC, VC2) of `cpu` from the per-CPU pointer
        `cea_exception_stacks` and the layout of struct cea_exception_stacks; without BTF, the
        stack tops in the TSS (`cpu_tss_rw.x86_tss.ist[]`) with 8 KiB stacks assumed."""
        out: list[StackRange] = []
        if self._estack_members and self.address_of("cea_exception_stacks") is not None:
            try:
                base = self.u64(self.per_cpu("cea_exception_stacks", cpu))
            except (MemoryReadError, VmcorekitError):
                base = 0
            if base:
                for name, off, size in self._estack_members:
                    out.append(StackRange(name, base + off, base + off + size, cpu))
                return out
        if self.address_of("cpu_tss_rw") is not None:
            # struct x86_hw_tss is packed and ABI: ist[7] at byte 36 (after u32 + sp0..sp2 + u64)
            ist_off = self.offsetof("struct tss_struct", "x86_tss.ist") or 36
            names = ["DF", "NMI", "DB", "MCE", "VC", "VC2"]
            try:
                tss = self.per_cpu("cpu_tss_rw", cpu)
                for i, name in enumerate(names):
                    top = self.u64(tss + ist_off + 8 * i)
                    if top:
                        out.append(StackRange(name, top - 8192, top, cpu))
            except (MemoryReadError, VmcorekitError):
                pass
        return out

    def task_stack(self, task: TaskInfo) -> StackRange | None:
        if not task.stack:
            return None
        return StackRange("task", task.stack, task.stack + self.thread_size, task.cpu)

    def cpu_stacks(self, cpu: int) -> list[StackRange]:
        if self.prog.arch == "aarch64":
            return self.arm64.cpu_stacks(cpu)
        out = self.exception_stacks(cpu)
        irq = self.irq_stack(cpu)
        if irq is not None:
            out.append(irq)
        return out

    # -- tasks --------------------------------------------------------------------------------
    @cached_property
    def _task_offsets(self) -> dict[str, int | None]:
        T = "struct task_struct"
        off = {
            "tasks": self.offsetof(T, "tasks"),
            "pid": self.offsetof(T, "pid"),
            "tgid": self.offsetof(T, "tgid"),
            "comm": self.offsetof(T, "comm"),
            "state": self.offsetof(T, "__state") if self.offsetof(T, "__state") is not None
            else self.offsetof(T, "state"),
            "flags": self.offsetof(T, "flags"),
            "stack": self.offsetof(T, "stack"),
            # x86: thread.sp; arm64: the sp cpu_switch_to() saved in thread.cpu_context
            "thread_sp": self.offsetof(T, "thread.sp") if self.offsetof(T, "thread.sp") is not None
            else self.offsetof(T, "thread.cpu_context.sp"),
            "mm": self.offsetof(T, "mm"),
            "on_cpu": self.offsetof(T, "on_cpu"),
            "cpu": self.offsetof(T, "cpu") if self.offsetof(T, "cpu") is not None
            else self.offsetof(T, "thread_info.cpu"),
            "signal": self.offsetof(T, "signal"),
            "thread_node": self.offsetof(T, "thread_node"),
            "thread_group": self.offsetof(T, "thread_group"),
            "thread_head": self.offsetof("struct signal_struct", "thread_head"),
        }
        vi = self.prog.vmcoreinfo
        # VMCOREINFO carries a few task_struct offsets even without BTF.
        for key, vname in (("tasks", "task_struct.tasks"), ("pid", "task_struct.pid"),
                           ("comm", "task_struct.comm"), ("stack", "task_struct.stack")):
            if off[key] is None and vname in vi.offsets:
                off[key] = vi.offsets[vname]
        return off

    def task(self, address: int) -> TaskInfo:
        o = self._task_offsets
        need = ("pid", "comm", "stack", "thread_sp")
        missing = [k for k in need if o[k] is None]
        if missing:
            raise TypeLookupError(f"task_struct layout unknown ({', '.join(missing)}): the dump "
                                  "has no BTF")
        end = max(v for v in o.values() if v is not None and v < 1 << 16) + 16
        raw = self.read(address, end)

        def q(k: str, fmt: str = "<Q") -> int:
            v = o[k]
            return struct.unpack_from(fmt, raw, v)[0] if v is not None else 0

        comm = raw[o["comm"]:o["comm"] + 16].split(b"\0", 1)[0].decode("utf-8", "replace")  # type: ignore[index,operator]
        return TaskInfo(
            address=address, pid=q("pid", "<i"), tgid=q("tgid", "<i") if o["tgid"] is not None else q("pid", "<i"),
            comm=comm, state=q("state", "<I"), flags=q("flags", "<I"),
            cpu=q("cpu", "<I") if o["cpu"] is not None else None,
            on_cpu=q("on_cpu", "<i") if o["on_cpu"] is not None else None,
            stack=q("stack"), thread_sp=q("thread_sp"), mm=q("mm"))

    def init_task(self) -> int:
        a = self.address_of("init_task")
        if a is None:
            raise SymbolError("init_task not found")
        return a

    def _list(self, head: int, what: str) -> Iterator[int]:
        """Entries (list_head addresses) of a circular list: the walk of kernel/lists.py (the
        one kernel/tasks.py uses), by raw address so it needs no types; bounded at MAX_TASKS
        and cycle-checked. A break (cycle, NULL, unreadable pointer) is CorruptKernelDataError."""
        return list_nodes(self.prog, head, what=what, limit=MAX_TASKS)

    def for_each_task(self) -> Iterator[int]:
        """Every task: init_task, the thread-group leaders on init_task.tasks, and each
        leader's other threads (signal->thread_head in 5.x+, thread_group before)."""
        o = self._task_offsets
        if o["tasks"] is None:
            raise TypeLookupError("task_struct.tasks offset unknown")
        init = self.init_task()
        leaders = [init]
        for node in self._list(init + o["tasks"], "init_task.tasks"):
            leaders.append(node - o["tasks"])
        seen: set[int] = set()
        for leader in leaders:
            if leader in seen:
                continue
            seen.add(leader)
            yield leader
            for t in self._threads(leader):
                if t not in seen:
                    seen.add(t)
                    yield t

    def _threads(self, leader: int) -> Iterator[int]:
        """The other threads of `leader`. One group's broken thread list costs that group's
        remaining threads (reported as a partial result), not the rest of the task walk."""
        o = self._task_offsets
        try:
            if o["signal"] is not None and o["thread_head"] is not None and o["thread_node"] is not None:
                sig = self.u64(leader + o["signal"])
                if sig:
                    for node in self._list(sig + o["thread_head"], "signal.thread_head"):
                        yield node - o["thread_node"]
            elif o["thread_group"] is not None:
                for node in self._list(leader + o["thread_group"], "thread_group"):
                    yield node - o["thread_group"]
        except MemoryReadError:
            return
        except CorruptKernelDataError as e:
            partial_result(f"threads of task {leader:#x}: {e}")

    def idle_task(self, cpu: int) -> int | None:
        """The idle task of `cpu` (runqueues.idle), init_task for CPU 0 as a fallback."""
        off = self.offsetof("struct rq", "idle")
        if off is not None and self.address_of("runqueues") is not None:
            try:
                return self.u64(self.per_cpu("runqueues", cpu) + off)
            except (MemoryReadError, VmcorekitError):
                pass
        return self.init_task() if cpu == 0 else None

    def active_tasks(self) -> dict[int, int]:
        """{cpu: task running on it} from the per-CPU current task pointer."""
        out: dict[int, int] = {}
        for cpu in range(self.nr_cpu_ids):
            if not self.cpu_present(cpu):
                continue
            t = self.current_task(cpu)
            if t:
                out[cpu] = t
        return out

    def find_task(self, pid: int) -> list[int]:
        """Tasks with this pid (pid 0: one idle task per CPU)."""
        if pid == 0:
            return [t for cpu in range(self.nr_cpu_ids)
                    if self.cpu_present(cpu) and (t := self.idle_task(cpu))]
        out = []
        for t in self.for_each_task():
            try:
                if self.task(t).pid == pid:
                    out.append(t)
            except MemoryReadError:
                continue
        return out
