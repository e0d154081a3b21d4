"""Tasks of the crashed kernel, from the dump alone (kallsyms + the in-memory BTF): the one
task walker, by address, and the typed helpers on top of it.

    for a in for_each_task_address(prog):     # task_struct addresses; works without BTF
        info = task_info(prog, a)             # TaskInfo: pid, comm, stack, ... by raw offsets
    for t in for_each_task(prog):             # struct task_struct *, like drgn's for_each_task
        print(t.pid, task_state_to_char(t), t.comm.string_())
    find_task(prog, 1)                        # init's task_struct *, or None
    task_summary(t)                           # TaskSummary: pid, ppid, state, cpu, rss, ...
    task_table(prog)                          # every task (idle ones too), in crash's order

Layouts come from what BTF says exists, never from the release string: `__state` (5.14+) or
`state`; `thread_info.cpu` or `cpu`; `mm_struct.rss_stat` as an atomic counter array (<= 6.1)
or an array of percpu_counters (6.2+), plus the per-thread SPLIT_RSS caches in
`task_struct.rss_stat` when the kernel has them; threads on `signal->thread_head` or the older
`thread_group` list. Without BTF a dump has only VMCOREINFO's few task_struct offsets (tasks,
pid, comm, stack): enough for the walk and for stack traces (TaskLayout), not for the typed
helpers, which raise TypeLookupError saying so.

Task states follow drgn's task_state_to_char (letters from the kernel's own
`task_state_array`, R S D T t X Z P I) and crash's two-letter codes (RU IN UN ST TR DE ZO PA ID).
"""
from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import (CorruptKernelDataError, MemoryReadError, SymbolError, TypeLookupError,
                      VmcorekitError, partial_result)
from ..program.objects import Object
from ..program.types.model import TypeKind
from . import cpus as _cpus
from .lists import list_nodes
from .panic import crash_context
from .percpu import per_cpu_ptr

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["for_each_task", "for_each_thread", "find_task", "task_state_to_char",
           "task_state_crash", "task_cpu", "task_comm", "task_rss", "task_vsz_pages",
           "is_kernel_thread", "is_group_leader", "task_summary", "task_table", "TaskSummary",
           "RssCounters", "MAX_RSS_PAGES", "CRASH_STATE_CODES", "PF_KTHREAD", "MAX_TASKS", "TaskLayout",
           "task_layout", "TaskInfo", "task_info", "for_each_task_address", "find_task_addresses"]

# More tasks than PID_MAX_LIMIT (4M) cannot exist; a longer walk is a corrupted list.
MAX_TASKS = 1 << 22
# PF_KTHREAD: "I am a kernel thread"; the same bit since 2.6.27 (include/linux/sched.h).
PF_KTHREAD = 0x00200000
# TASK_NOLOAD (with TASK_UNINTERRUPTIBLE it makes TASK_IDLE, shown as 'I'); 0x400 since 4.2.
_TASK_NOLOAD = 0x400
# drgn's letters -> crash's two-letter state codes.
CRASH_STATE_CODES = {"R": "RU", "S": "IN", "D": "UN", "T": "ST", "t": "TR", "X": "DE",
                     "Z": "ZO", "P": "PA", "I": "ID"}
# fs/proc/array.c task_state_array, for a dump whose copy cannot be read.
_DEFAULT_STATE_CHARS = "RSDTtXZPI"
_STATE_ENTRY = re.compile(rb"^([A-Za-z]) \(")
_MASK = 0xFFFFFFFFFFFFFFFF


def _no_btf(what: str, prog: "Program | None" = None) -> TypeLookupError:
    """Why tasks cannot be listed. A kernel whose symbols locate its BTF (__start_BTF) was built
    with it: its pages are unreadable or damaged (the types' note says which), and the
    config is not to blame."""
    why = "this dump has no BTF (kernel built without CONFIG_DEBUG_INFO_BTF?)"
    if prog is not None:
        try:
            if prog.try_symbol_address("__start_BTF") is not None:
                why = "the kernel's BTF cannot be read from the dump (the note says where)"
        except (VmcorekitError, ImportError):
            why = ("the kernel's symbol table cannot be read from the dump, so its BTF cannot be "
                   "found (the note says where)")
    return TypeLookupError(f"{what} needs the task_struct layout, which only BTF gives, and {why}")


# -- the layout -------------------------------------------------------------------------------
class TaskLayout:
    """Where this kernel keeps what we read of a task, found once per Program (task_layout()).

    `offsets` are byte offsets in struct task_struct (None: unknown), from BTF, else from the
    few task_struct offsets VMCOREINFO carries: enough to walk the task list and trace stacks
    without BTF. The typed helpers need BTF and ask require_btf(), which also says which
    members this kernel's task/mm structs have. (It keeps no reference to the Program: it is
    cached in a weak-keyed table by it.)"""

    def __init__(self, offsets: dict[str, int | None]) -> None:
        self.offsets = offsets
        o = offsets
        self.threads = ("thread_head" if None not in (o["signal"], o["thread_head"], o["thread_node"])
                        else "thread_group" if o["thread_group"] is not None else None)
        self._typed = False

    @classmethod
    def of(cls, prog: "Program") -> "TaskLayout":
        """The layout the dump's types (else VMCOREINFO) give."""
        T = "struct task_struct"

        def off(spec: str, *members: str) -> int | None:
            for m in members:  # the first member this kernel has
                try:
                    return int(prog.offsetof(spec, m))
                except (VmcorekitError, ImportError, LookupError):
                    continue
            return None

        o: dict[str, int | None] = {
            "tasks": off(T, "tasks"), "pid": off(T, "pid"), "tgid": off(T, "tgid"),
            "comm": off(T, "comm"), "state": off(T, "__state", "state"), "flags": off(T, "flags"),
            "stack": off(T, "stack"),
            # x86: thread.sp; arm64: the sp cpu_switch_to() saved in thread.cpu_context
            "thread_sp": off(T, "thread.sp", "thread.cpu_context.sp"),
            "mm": off(T, "mm"), "on_cpu": off(T, "on_cpu"), "cpu": off(T, "cpu", "thread_info.cpu"),
            "signal": off(T, "signal"), "thread_node": off(T, "thread_node"),
            "thread_group": off(T, "thread_group"),
            "thread_head": off("struct signal_struct", "thread_head"),
        }
        vi = prog.vmcoreinfo.offsets
        for key, vname in (("tasks", "task_struct.tasks"), ("pid", "task_struct.pid"),
                           ("comm", "task_struct.comm"), ("stack", "task_struct.stack")):
            if o[key] is None and vname in vi:
                o[key] = vi[vname]
        return cls(o)

    def require_btf(self, prog: "Program", what: str = "listing tasks") -> "TaskLayout":
        """This layout, with the typed facts filled in; TypeLookupError without BTF."""
        if self._typed:
            return self
        if not prog.has_btf:
            raise _no_btf(what, prog)
        T = prog.types
        ts = "struct task_struct"
        try:
            T.lookup(ts)
        except TypeLookupError as e:
            raise _no_btf(f"{what} ({e})", prog) from None
        self.state = "__state" if T.has_member(ts, "__state") else "state"
        if T.has_member(ts, "thread_info.cpu"):
            self.cpu: str | None = "thread_info.cpu"
        elif T.has_member(ts, "cpu"):
            self.cpu = "cpu"
        else:
            self.cpu = None  # a kernel without SMP has no CPU member
        # RSS counters: enum MM_FILEPAGES.. (names the kernel gives them).
        self.mm_counters: dict[str, int] = {}
        for name in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SWAPENTS", "MM_SHMEMPAGES"):
            try:
                self.mm_counters[name] = T.constant(name)
            except TypeLookupError:
                pass
        self.rss_kind = None
        if T.has_member("struct mm_struct", "rss_stat"):
            rt = T.lookup("struct mm_struct").member("rss_stat").type.strip_typedefs()
            if rt.kind == TypeKind.ARRAY:
                self.rss_kind = "percpu_counter"  # 6.2+: struct percpu_counter rss_stat[]
            elif T.has_member(rt, "count"):
                self.rss_kind = "atomic"  # struct mm_rss_stat { atomic_long_t count[]; }
        self.split_rss = T.has_member(ts, "rss_stat.count")
        self.state_chars, self.task_report = _state_table(prog)
        self._typed = True
        return self


def task_layout(prog: "Program") -> TaskLayout:
    """The TaskLayout of `prog` (found once)."""
    return prog.memo(TaskLayout, lambda: TaskLayout.of(prog))


def _layout(prog: "Program") -> TaskLayout:
    """The layout with its typed facts (the typed helpers' entry: no BTF raises)."""
    return task_layout(prog).require_btf(prog)


def _state_table(prog: "Program") -> tuple[str, int]:
    """(letters by state bit, TASK_REPORT mask) from the kernel's task_state_array, the way
    drgn builds them: the array is what /proc prints, so it follows the running kernel."""
    chars = ""
    addr = prog.try_symbol_address("task_state_array")
    if addr is not None:
        ps = prog.platform.pointer_size
        for i in range(16):  # the kernel has 9 entries; a longer run is not this array
            try:
                p = prog.read_pointer(addr + i * ps)
                s = prog.read_cstring(p, 32) if p else b""
            except MemoryReadError:
                break
            m = _STATE_ENTRY.match(s)
            if not m:
                break
            chars += m.group(1).decode()
    if len(chars) < 3:
        chars = _DEFAULT_STATE_CHARS
    report = 0
    for i in range(len(chars) - 1, -1, -1):
        if chars[i] in "RSDTtXZP":
            report = (1 << i) - 1
            break
    return chars, report


# -- one task by address ----------------------------------------------------------------------
@dataclass(frozen=True)
class TaskInfo:
    """What the stack tracers read of a task, by raw offsets (works without BTF)."""

    address: int
    pid: int
    tgid: int
    comm: str
    state: int
    flags: int
    cpu: int | None
    on_cpu: int | None
    stack: int  # task->stack (lowest address of the task's kernel stack)
    thread_sp: int  # the stack pointer the last context switch saved in task->thread
    mm: int

    @property
    def is_kernel_thread(self) -> bool:
        return bool(self.flags & PF_KTHREAD) or self.mm == 0


def task_info(prog: "Program", address: int) -> TaskInfo:
    """The task at `address`, read in one go; TypeLookupError when even VMCOREINFO does not
    say where its pid, comm and stack are."""
    o = task_layout(prog).offsets
    missing = [k for k in ("pid", "comm", "stack", "thread_sp") if o[k] is None]
    if missing:
        raise TypeLookupError(f"task_struct layout unknown ({', '.join(missing)}): the dump "
                              "has no BTF")
    end = max(v for v in o.values() if v is not None and v < 1 << 16) + 16
    raw = prog.read(address, end)
    unpack = prog.platform.unpack

    def q(k: str, fmt: str = "Q") -> int:
        v = o[k]
        return struct.unpack_from(unpack(fmt), raw, v)[0] if v is not None else 0

    c = o["comm"]
    assert c is not None
    comm = raw[c:c + 16].split(b"\0", 1)[0].decode("utf-8", "replace")
    return TaskInfo(
        address=address, pid=q("pid", "i"), tgid=q("tgid", "i") if o["tgid"] is not None else q("pid", "i"),
        comm=comm, state=q("state", "I"), flags=q("flags", "I"),
        cpu=q("cpu", "I") if o["cpu"] is not None else None,
        on_cpu=q("on_cpu", "i") if o["on_cpu"] is not None else None,
        stack=q("stack"), thread_sp=q("thread_sp"), mm=q("mm"))


# -- walking ----------------------------------------------------------------------------------
def _thread_addresses(prog: "Program", lay: TaskLayout, leader: int) -> Iterator[int]:
    """The threads of `leader`'s group (the leader among them on 5.x+'s signal->thread_head;
    not on the older thread_group list). One group's broken thread list costs that group's
    remaining threads, reported as a partial result, not the rest of the task walk."""
    o = lay.offsets
    try:
        if lay.threads == "thread_head":
            sig = prog.read_pointer(leader + o["signal"])  # type: ignore[operator]
            if sig:
                for node in list_nodes(prog, sig + o["thread_head"], what="signal.thread_head",  # type: ignore[operator]
                                       limit=MAX_TASKS):
                    yield (node - o["thread_node"]) & _MASK  # type: ignore[operator]
        elif lay.threads == "thread_group":
            for node in list_nodes(prog, leader + o["thread_group"], what="thread_group",  # type: ignore[operator]
                                   limit=MAX_TASKS):
                yield (node - o["thread_group"]) & _MASK  # type: ignore[operator]
    except MemoryReadError:
        return
    except CorruptKernelDataError as e:
        partial_result(f"threads of task {leader:#x}: {e}")


def for_each_task_address(prog: "Program", *, idle: bool = False, on_error: str = "raise",
                          layout: TaskLayout | None = None) -> Iterator[int]:
    """Every task's address: the thread-group leaders on init_task.tasks, each followed by its
    other threads; with idle=True the per-CPU idle tasks (pid 0, swapper/N, on no list; CPU
    0's is init_task) first, one per present CPU. Needs no BTF (see TaskLayout). Walks are
    bounded and cycle-checked; a break in init_task.tasks raises CorruptKernelDataError, or
    with on_error="warn" ends the walk with a PartialResultWarning. `layout` overrides the
    dump's TaskLayout."""
    if on_error not in ("raise", "warn"):
        raise ValueError("on_error must be 'raise' or 'warn'")
    lay = layout if layout is not None else task_layout(prog)
    o_tasks = lay.offsets["tasks"]
    if o_tasks is None:
        raise TypeLookupError("task_struct.tasks offset unknown")
    init = prog.try_symbol_address("init_task")
    if init is None:
        raise SymbolError("init_task is not in the symbol table: tasks cannot be found")
    seen: set[int] = set()
    if idle:
        for cpu in _cpus.present_cpus(prog):
            t = _cpus.idle_task_address(prog, cpu)
            if t is not None and t not in seen:
                seen.add(t)
                yield t
    try:
        for node in list_nodes(prog, init + o_tasks, what="init_task.tasks", limit=MAX_TASKS):
            leader = (node - o_tasks) & _MASK
            if leader in seen:
                continue
            seen.add(leader)
            yield leader
            for t in _thread_addresses(prog, lay, leader):
                if t not in seen:
                    seen.add(t)
                    yield t
            if len(seen) > MAX_TASKS:
                raise CorruptKernelDataError(f"more than {MAX_TASKS} tasks: the task lists are "
                                             f"corrupt")
    except CorruptKernelDataError as e:
        if on_error == "raise":
            raise
        partial_result(str(e))


def _with_pid(prog: "Program", pid: int) -> Iterator[int]:
    """Addresses of the tasks with this pid (pid > 0), in walk order."""
    o = task_layout(prog).offsets["pid"]
    if o is None:
        raise TypeLookupError("task_struct.pid offset unknown: the dump has no BTF")
    fmt = prog.platform.unpack("i")
    for t in for_each_task_address(prog):
        try:
            if struct.unpack(fmt, prog.read(t + o, 4))[0] == pid:
                yield t
        except MemoryReadError:
            continue


def find_task_addresses(prog: "Program", pid: int) -> list[int]:
    """Every task with this pid: one for a pid or thread id, one idle task per present CPU
    for pid 0. Needs no BTF."""
    if pid == 0:
        return [t for cpu in _cpus.present_cpus(prog)
                if (t := _cpus.idle_task_address(prog, cpu)) is not None]
    return list(_with_pid(prog, pid))


def for_each_thread(task: Object, *, on_error: str = "raise") -> Iterator[Object]:
    """Every thread of `task`'s thread group (task_struct *), the leader's list order. A
    broken thread list ends the group with a partial result, whatever `on_error` (kept for
    callers of the old signature) says: the same rule as the task walk's."""
    prog = task.prog_
    lay = _layout(prog)
    pt = _task_pointer_type(prog)
    if lay.threads == "thread_head":
        sig = task.signal.read_()
        if not int(sig):
            yield task.read_()
            return
    else:
        leader = task.group_leader.read_() if lay.threads == "thread_group" else task.read_()
        yield leader
        if lay.threads is None:
            return
        task = leader
    # a task_struct * (the usual) or a struct task_struct object such as prog["init_task"]
    ptr = task.type_.strip_typedefs().kind == TypeKind.POINTER
    for t in _thread_addresses(prog, lay, int(task) if ptr else task.address_):
        yield Object(prog, pt, t)


def _task_pointer_type(prog: "Program") -> Any:
    return prog.types.pointer(prog.types.lookup("struct task_struct"))


def for_each_task(prog: "Program", *, idle: bool = False,
                  on_error: str = "raise") -> Iterator[Object]:
    """Every task (struct task_struct *), as for_each_task_address() finds them (needs BTF)."""
    _layout(prog)
    pt = _task_pointer_type(prog)
    for t in for_each_task_address(prog, idle=idle, on_error=on_error):
        yield Object(prog, pt, t)


def find_task(prog: "Program", pid: int) -> Object | None:
    """The task with this pid (the thread, for a thread id); pid 0 is CPU 0's idle task."""
    if pid == 0:
        return _cpus.idle_task(prog, 0)
    _layout(prog)
    t = next(_with_pid(prog, pid), None)
    return Object(prog, _task_pointer_type(prog), t) if t is not None else None


# -- per-task facts ---------------------------------------------------------------------------
def _state_values(task: Object) -> tuple[int, int]:
    lay = _layout(task.prog_)
    return int(task.member_(lay.state)) & 0xFFFFFFFF, int(task.exit_state) & 0xFFFFFFFF


def task_state_to_char(task: Object) -> str:
    """The state letter ps(1) and /proc show (R S D T t X Z P I), as drgn computes it."""
    lay = _layout(task.prog_)
    state, exit_state = _state_values(task)
    return _state_char(lay, state, exit_state)


def _state_char(lay: TaskLayout, state: int, exit_state: int) -> str:
    rep = (state | exit_state) & lay.task_report
    idx = rep.bit_length()
    char = lay.state_chars[idx] if idx < len(lay.state_chars) else "?"
    # TASK_IDLE (TASK_UNINTERRUPTIBLE | TASK_NOLOAD) lies beyond TASK_REPORT: shown as 'I'.
    if char == "D" and (state & ~rep) == _TASK_NOLOAD:
        return "I"
    return char


def task_state_crash(task: Object) -> str:
    """crash's two-letter state (RU IN UN ST TR DE ZO PA ID)."""
    return CRASH_STATE_CODES.get(task_state_to_char(task), "??")


def task_cpu(task: Object) -> int | None:
    """The CPU the task last ran on (None on a kernel without SMP)."""
    lay = _layout(task.prog_)
    if lay.cpu is None:
        return None
    o = task
    for part in lay.cpu.split("."):
        o = o.member_(part)
    return int(o)


def task_comm(task: Object) -> str:
    return task.comm.string_().decode("utf-8", "backslashreplace")


def is_kernel_thread(task: Object) -> bool:
    """A kernel thread: PF_KTHREAD (idle tasks, pid 0, count as kernel threads too)."""
    return bool(int(task.flags) & PF_KTHREAD) or int(task.pid) == 0


def is_group_leader(task: Object) -> bool:
    return int(task.pid) == int(task.tgid)


@dataclass(frozen=True)
class RssCounters:
    """Resident pages of an mm by kind (MM_FILEPAGES, MM_ANONPAGES, MM_SHMEMPAGES, swap
    entries), with the per-thread SPLIT_RSS caches added where the kernel has them."""

    file: int = 0
    anon: int = 0
    shmem: int = 0
    swapents: int = 0

    @property
    def crash_rss(self) -> int:
        """What crash's `ps` shows as RSS since 8.0.4 (its "Fix ps/vm commands to display
        correct memory usage"): file + anon + shmem, each counter taken as 0 when negative
        (a per-CPU or per-thread delta not yet folded in can make one dip below 0). crash
        8.0.2 left shmem out: its RSS is `file + anon`."""
        return max(self.file, 0) + max(self.anon, 0) + max(self.shmem, 0)

    @property
    def total(self) -> int:
        """What /proc/PID/status VmRSS counts: file + anon + shmem (get_mm_counter() reads
        a negative counter as 0)."""
        return self.crash_rss


_RSS_FIELDS = {"MM_FILEPAGES": "file", "MM_ANONPAGES": "anon", "MM_SHMEMPAGES": "shmem",
               "MM_SWAPENTS": "swapents"}


# No mm maps more pages than 2^40 (4 PiB of 4 KiB pages): a counter beyond is corrupt data.
MAX_RSS_PAGES = 1 << 40


def _percpu_counter_sum(pc: Object) -> int:
    """count plus every possible CPU's pending delta (percpu_counter_sum): since 6.2 each
    mm counter is a percpu_counter whose `count` lags by up to the batch per CPU, so `count`
    alone can be far off (even 0 for a task whose pages were all counted per CPU)."""
    total = int(pc.count)
    prog = pc.prog_
    counters = pc.counters.read_()
    if int(counters):
        for cpu in _cpus.possible_cpus(prog):
            try:
                total += int(per_cpu_ptr(counters, cpu).deref())
            except MemoryReadError:
                continue
    return total


def _bounded(value: int, what: str) -> int:
    if abs(value) > MAX_RSS_PAGES:
        raise CorruptKernelDataError(f"{what} is {value} pages: not a page count (corrupt mm?)")
    return value


def task_rss(task: Object) -> RssCounters:
    """The task's mm counters (zero for kernel threads and exited tasks)."""
    prog = task.prog_
    lay = _layout(prog)
    mm = task.mm.read_()
    if not int(mm):
        return RssCounters()
    if lay.rss_kind is None:
        raise TypeLookupError("mm_struct has no rss_stat this tool knows (a kernel before "
                              "2.6.34?): RSS unknown")
    vals = dict.fromkeys(_RSS_FIELDS.values(), 0)
    for name, idx in lay.mm_counters.items():
        key = _RSS_FIELDS[name]
        if lay.rss_kind == "atomic":
            vals[key] += _bounded(int(mm.rss_stat.count[idx].counter), f"mm {int(mm):#x} {name}")
        else:
            vals[key] += _bounded(_percpu_counter_sum(mm.rss_stat[idx]), f"mm {int(mm):#x} {name}")
    if lay.split_rss:
        # SPLIT_RSS_COUNTING: each thread caches up to 64 events before folding them into the
        # mm; crash adds every thread's cache, so a running task's count is not stale.
        for t in for_each_thread(task, on_error="warn"):
            if int(t.mm) != int(mm):
                continue
            for name, idx in lay.mm_counters.items():
                vals[_RSS_FIELDS[name]] += _bounded(int(t.rss_stat.count[idx]),
                                                    f"task {int(t):#x} cached {name}")
    return RssCounters(**vals)


def task_vsz_pages(task: Object) -> int:
    mm = task.mm.read_()
    return int(mm.total_vm) if int(mm) else 0


# -- everything at once -----------------------------------------------------------------------
@dataclass
class TaskSummary:
    """One task as `ps` shows it. `rss`/`vsz` are in pages; `active` means it was running on
    `cpu` at the crash (crash's '>'), `panic` that it is the task that panicked."""

    task: int
    pid: int
    tgid: int
    ppid: int
    state: str  # drgn's letter
    crash_state: str  # crash's two letters
    state_value: int
    exit_state: int
    cpu: int | None
    comm: str
    flags: int
    mm: int
    kernel_thread: bool
    rss: RssCounters
    vsz: int
    active: bool = False
    panic: bool = False
    idle: bool = False
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("pid", "tgid", "ppid", "state", "crash_state",
                                           "cpu", "comm", "flags", "kernel_thread", "vsz",
                                           "active", "panic", "idle")}
        d["task"] = f"{self.task:#x}"
        d["mm"] = f"{self.mm:#x}"
        d["state_value"] = self.state_value
        d["exit_state"] = self.exit_state
        d["rss"] = {"file": self.rss.file, "anon": self.rss.anon, "shmem": self.rss.shmem,
                    "swapents": self.rss.swapents, "crash": self.rss.crash_rss,
                    "total": self.rss.total}
        if self.problems:
            d["problems"] = self.problems
        return d


def task_summary(task: Object) -> TaskSummary:
    """Every ps column of one task. A field that cannot be read is reported in `problems`
    (e.g. an mm on a page the dump filtered out) rather than failing the whole task."""
    prog = task.prog_
    lay = _layout(prog)
    problems: list[str] = []
    state, exit_state = _state_values(task)
    try:
        ppid = int(task.real_parent.pid)
    except MemoryReadError as e:
        ppid = -1
        problems.append(f"real_parent unreadable: {e}")
    try:
        rss = task_rss(task)
        vsz = task_vsz_pages(task)
    except (MemoryReadError, CorruptKernelDataError, TypeLookupError) as e:
        rss, vsz = RssCounters(), 0
        problems.append(f"mm unreadable: {e}")
    char = _state_char(lay, state, exit_state)
    return TaskSummary(task=int(task), pid=int(task.pid), tgid=int(task.tgid), ppid=ppid,
                    state=char, crash_state=CRASH_STATE_CODES.get(char, "??"),
                    state_value=state, exit_state=exit_state, cpu=task_cpu(task),
                    comm=task_comm(task), flags=int(task.flags) & 0xFFFFFFFF,
                    mm=int(task.mm), kernel_thread=is_kernel_thread(task), rss=rss, vsz=vsz,
                    problems=problems)


def task_table(prog: "Program", *, idle: bool = True,
               warnings: list[str] | None = None) -> list[TaskSummary]:
    """Every task as TaskSummary, in crash's order (idle tasks by CPU, then by pid), with the
    task running on each CPU marked active and the panicking one marked panic. Corruption in
    a task list stops that walk with a message in `warnings` (when given) instead of failing."""
    import warnings as _w

    def note(msg: str) -> None:
        if warnings is not None:
            warnings.append(msg)

    _layout(prog)  # no BTF: say so before anything else
    try:
        active = {int(t): cpu for cpu, t in _cpus.active_tasks(prog).items()}
    except VmcorekitError as e:  # the tasks can still be listed, just not marked
        active = {}
        note(f"running tasks unknown: {e}")
    try:
        crashed = crash_context(prog)
        panic_addr = int(crashed.task) if crashed.task is not None else None
        for n in crashed.notes:
            note(n)
    except VmcorekitError as e:
        panic_addr = None
        note(f"panicking task unknown: {e}")
    rows: list[TaskSummary] = []
    idle_addrs: dict[int, int] = {}
    if idle:
        for cpu in _cpus.present_cpus(prog):
            a = _cpus.idle_task_address(prog, cpu)
            if a is not None:
                idle_addrs[a] = cpu
    with _w.catch_warnings(record=True) as caught:
        _w.simplefilter("always")
        tasks = list(for_each_task(prog, idle=idle, on_error="warn"))
    for c in caught:  # into `warnings`, or back out as warnings when no list was given
        if warnings is not None:
            warnings.append(str(c.message))
        else:
            _w.warn(c.message, stacklevel=2)  # the instance: its category (PartialResultWarning) kept
    for t in tasks:
        try:
            info = task_summary(t)
        except MemoryReadError as e:
            note(f"task {int(t):#x} unreadable: {e}")
            continue
        info.idle = info.task in idle_addrs
        if info.task in active:
            info.active = True
            info.cpu = active[info.task]
        info.panic = info.task == panic_addr
        rows.append(info)
    rows.sort(key=lambda r: (r.pid, idle_addrs.get(r.task, 0), r.task))
    return rows
