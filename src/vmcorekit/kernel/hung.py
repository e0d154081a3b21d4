"""Hung tasks and the wait-for graph: which tasks are blocked past the hung-task timeout,
what each waits on (kernel/locks.py), who holds it, the chain of holders to its root, and
the cycles among them (deadlocks).

"Hung" is khungtaskd's own test (kernel/hung_task.c check_hung_task): a task in
TASK_UNINTERRUPTIBLE (not TASK_IDLE) whose context-switch count has not moved since
`last_switch_time` (jiffies, set when khungtaskd last saw the count change) for
`sysctl_hung_task_timeout_secs` seconds: jiffies - last_switch_time >= timeout * HZ. That is
a lower bound of the time blocked (khungtaskd samples); `blocked_seconds` is the scheduler's
view, the runqueue clock minus `sched_info.last_arrival` (the last time the task got a CPU).
A task khungtaskd has not sampled yet (last_switch_time 0) is judged by blocked_seconds.

Every walk is bounded: tasks analysed (MAX_ANALYSED), chain length (the number of tasks
in the graph + 1), each wait ring (kernel/locks.py: tasks + 2 nodes).
"""
from __future__ import annotations

import re

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import CorruptKernelDataError, MemoryReadError, VmcorekitError
from ..program.objects import Object
from .cpus import runqueue
from .lists import list_nodes
from .locks import Wait, base_function, task_wait
from .sysinfo import kernel_hz, read_jiffies
from .tasks import MAX_TASKS, task_info, task_layout, task_state_to_char

if TYPE_CHECKING:
    from ..program.core import Program
    from .stacks.model import Trace

__all__ = ["HungTask", "HungGraph", "hung_timeout", "chains_and_cycles", "hung_graph",
           "DEFAULT_TIMEOUT", "MAX_ANALYSED"]

# CONFIG_DEFAULT_HUNG_TASK_TIMEOUT's default, for a kernel whose detector is off (timeout 0).
DEFAULT_TIMEOUT = 120
# Blocked tasks whose stacks are traced and scanned; a kernel with more is summarised.
MAX_ANALYSED = 500
N = TypeVar("N", bound=Hashable)


# The boot command line as the kernel logs it, and khungtaskd's report of a hung task
# (kernel/hung_task.c: "INFO: task %s:%d blocked for more than %ld seconds.").
_CMDLINE_TIMEOUT = re.compile(r"Kernel command line:.*?(?:^|\s)sysctl\.kernel\.hung_task_timeout_secs=(\d+)")
_REPORTED = re.compile(r"INFO: task (.{1,64}):(\d+) blocked for more than (\d+) seconds")


def hung_timeout(prog: "Program", log: Iterable[str] = ()) -> tuple[int, str]:
    """(the hung-task timeout in seconds, where it came from): the sysctl's variable, else
    the boot command line in the log (a kernel without data symbols in kallsyms)."""
    addr = prog.try_symbol_address("sysctl_hung_task_timeout_secs")
    why = "sysctl_hung_task_timeout_secs not in the symbol table"
    if addr is not None:
        try:
            v = prog.read_pointer(addr)
        except MemoryReadError as e:
            v, why = -1, f"sysctl_hung_task_timeout_secs unreadable ({e})"
        if v == 0:
            return DEFAULT_TIMEOUT, f"hung-task detection is off (timeout 0): {DEFAULT_TIMEOUT} s assumed"
        if 0 < v <= 1 << 32:  # the sysctl caps it at LONG_MAX/HZ; larger never fires
            return int(v), "sysctl_hung_task_timeout_secs"
        if v > 1 << 32:
            why = f"sysctl_hung_task_timeout_secs {v} is not plausible"
    for line in log:
        m = _CMDLINE_TIMEOUT.search(line)
        if m and 0 < int(m.group(1)) <= 1 << 32:
            return int(m.group(1)), "sysctl.kernel.hung_task_timeout_secs on the kernel command line (log)"
    return DEFAULT_TIMEOUT, f"{why}: {DEFAULT_TIMEOUT} s assumed"


def reported_hung(log: Iterable[str]) -> dict[int, int]:
    """{pid: seconds} of the tasks khungtaskd reported in the log."""
    out: dict[int, int] = {}
    for line in log:
        m = _REPORTED.search(line)
        if m:
            out[int(m.group(2))] = int(m.group(3))
    return out


def chains_and_cycles(edges: Mapping[N, N], *, key: Callable[[N], Any] = lambda n: n,
                      limit: int | None = None) -> tuple[list[tuple[list[N], bool]], list[list[N]]]:
    """The wait-for graph `edges` (waiter -> the task holding what it waits on; each task
    waits on at most one thing) as chains and cycles.

    Chains start at each waiter nobody waits on and follow holders until a task that waits
    on nothing (the root, last in the list) or one already on the path (the chain runs into a
    cycle: the bool is True and the cycle is reported once among the cycles). Cycles are
    rotated to start at their smallest `key`. No walk is longer than `limit` steps
    (default: the number of tasks in the graph + 1)."""
    nodes = set(edges) | set(edges.values())
    bound = len(nodes) + 1 if limit is None else limit
    waited_on = set(edges.values())
    cycles: dict[tuple[N, ...], list[N]] = {}

    def walk(start: N) -> tuple[list[N], N | None]:
        path, seen = [start], {start}
        n = start
        for _ in range(bound):
            if n not in edges:
                return path, None
            n = edges[n]
            if n in seen:
                return path, n
            path.append(n)
            seen.add(n)
        return path, None  # the bound: a longer chain cannot exist among `nodes`

    def add_cycle(path: list[N], at: N) -> None:
        cyc = path[path.index(at):]
        i = min(range(len(cyc)), key=lambda j: key(cyc[j]))
        cyc = cyc[i:] + cyc[:i]
        cycles.setdefault(tuple(cyc), cyc)

    chains: list[tuple[list[N], bool]] = []
    for s in sorted((n for n in edges if n not in waited_on), key=key):
        path, loop_at = walk(s)
        if loop_at is not None:
            add_cycle(path, loop_at)
        chains.append((path, loop_at is not None))
    # Cycles nobody outside waits on are reached from no start: try every node left.
    for s in sorted(edges, key=key):
        path, loop_at = walk(s)
        if loop_at is not None:
            add_cycle(path, loop_at)
    return chains, sorted(cycles.values(), key=lambda c: key(c[0]))


@dataclass
class HungTask:
    """One task of the graph: blocked (D), or the holder of a lock a blocked task waits on."""

    task: int
    pid: int
    comm: str
    state: str
    cpu: int | None
    blocked_seconds: float | None = None
    hung_seconds: float | None = None  # khungtaskd's view (jiffies), a lower bound
    hung: bool = False
    wait: Wait | None = None
    trace: "Trace | None" = None
    trace_error: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def doing(self) -> str:
        """`D (msleep)`: the state and what the task is in (its wait's frame)."""
        frame = self.wait.frame if self.wait is not None else None
        if frame is None and self.trace is not None:
            from .locks import wait_kind
            frame = wait_kind(self.trace.functions())[1]
        return f"{self.state} ({base_function(frame)})" if frame else self.state


@dataclass
class HungGraph:
    timeout: int
    timeout_source: str
    tasks: dict[int, HungTask]  # by task_struct address
    edges: dict[int, int]  # waiter -> holder (tasks' addresses)
    chains: list[tuple[list[int], bool]]
    cycles: list[list[int]]
    blocked: int  # D tasks seen
    notes: list[str] = field(default_factory=list)

    @property
    def hung(self) -> list[HungTask]:
        return [t for t in self.tasks.values() if t.hung]


def _recover_tasks(prog: "Program", known: set[int], notes: list[str]) -> list[int]:
    """Tasks the forward walk of init_task.tasks missed. When a page of that list is not in
    the dump (a filtered dump whose filter did not know this kernel's slab pages) the walk
    stops there; the newest tasks (where a hang's tasks usually are) may still be reached
    backwards from the head, and through the process tree: each known task's parent's
    children list, walked both ways until it breaks. Bounded by MAX_TASKS nodes in all."""
    lay = task_layout(prog)
    off = lay.offsets["tasks"]
    init = prog.try_symbol_address("init_task")
    if off is None or init is None:
        return []
    found: list[int] = []
    seen = set(known)
    budget = [MAX_TASKS]

    def walk(head: int, member: int, what: str, reverse: bool, stop_at_known: bool) -> bool:
        """True when the walk went round without a break."""
        try:
            for node in list_nodes(prog, head, what=what, limit=budget[0], reverse=reverse):
                budget[0] -= 1
                t = node - member
                if t in seen:
                    if stop_at_known:
                        return True
                    continue
                seen.add(t)
                found.append(t)
        except CorruptKernelDataError:
            return False
        return True

    if walk(init + off, off, "init_task.tasks (backwards)", True, True):
        return found  # the list is whole: nothing to recover
    o_parent = prog.try_offsetof("struct task_struct", "real_parent")
    o_children = prog.try_offsetof("struct task_struct", "children")
    o_sibling = prog.try_offsetof("struct task_struct", "sibling")
    if None in (o_parent, o_children, o_sibling):
        return found
    assert o_parent is not None and o_children is not None and o_sibling is not None
    parents: set[int] = set()
    queue = list(known)
    while queue and budget[0] > 0:
        t = queue.pop()
        try:
            p = prog.read_pointer(t + o_parent)
        except MemoryReadError:
            continue
        if not p or p in parents:
            continue
        parents.add(p)
        before = len(found)
        for rev in (False, True):
            walk(p + o_children, o_sibling, f"children of task {p:#x}", rev, False)
        queue.extend(found[before:])
    if found:
        notes.append(f"the task list is broken (pages not in the dump): {len(found)} more "
                     f"task(s) found walking it backwards and through parents' children lists")
    return found


def _sched_blocked(prog: "Program", t: Object, cpu: int | None) -> float | None:
    try:
        last = int(t.sched_info.last_arrival)
        rq = runqueue(prog, cpu if cpu is not None else 0)
        if rq is None or not last:
            return None
        return max(0.0, (int(rq.clock) - last) / 1e9)
    except (VmcorekitError, LookupError, AttributeError):
        return None


def hung_graph(prog: "Program", tasks: Iterable[Any], log: Iterable[str] = ()) -> HungGraph:
    """The hung tasks and wait-for graph of a dump. `tasks` are the task table's rows
    (kernel/tasks.py TaskSummary: .task, .pid, .comm, .state, .cpu); `log` the kernel log's
    lines, for the timeout when the dump lacks the variable and for the tasks khungtaskd
    already reported hung (hung by the kernel's own account, whatever the clocks say)."""
    from .stacks import stack_trace, stacks

    notes: list[str] = []
    log = list(log)
    timeout, tsrc = hung_timeout(prog, log)
    reported = reported_hung(log)
    hz, _ = kernel_hz(prog)
    try:
        jiffies: int | None = read_jiffies(prog)
    except (VmcorekitError, MemoryReadError):
        jiffies = None
    thread_size = stacks(prog).arch.thread_size
    rows = {r.task: r for r in tasks}
    for a in _recover_tasks(prog, set(rows), notes):
        try:
            i = task_info(prog, a)
            obj = prog.object("struct task_struct", a)
            rows[a] = _Row(a, i.pid, i.comm, task_state_to_char(obj), i.cpu)
        except (VmcorekitError, LookupError):
            continue
    stack_base = _StackBases(prog, rows)
    blocked = [a for a, r in rows.items() if r.state == "D"]
    if len(blocked) > MAX_ANALYSED:
        notes.append(f"{len(blocked)} tasks in D state: the first {MAX_ANALYSED} analysed")
    out: dict[int, HungTask] = {}

    def analyse(a: int) -> HungTask | None:
        r = rows.get(a)
        if r is None:
            return None
        h = HungTask(a, r.pid, r.comm, r.state, r.cpu)
        try:
            obj = prog.object("struct task_struct", a)
        except (VmcorekitError, LookupError) as e:
            h.problems.append(str(e))
            obj = None
        if obj is not None and r.state == "D":
            h.blocked_seconds = _sched_blocked(prog, obj, r.cpu)
            try:
                lst = int(obj.last_switch_time)
            except (VmcorekitError, LookupError, AttributeError):
                lst = 0
            if lst and hz and jiffies is not None:
                h.hung_seconds = ((jiffies - lst) & ((1 << prog.platform.pointer_size * 8) - 1)) / hz
                h.hung = h.hung_seconds >= timeout
            elif h.blocked_seconds is not None:
                h.hung = h.blocked_seconds >= timeout
            if r.pid in reported and not h.hung:
                h.hung = True
                h.problems.append(f"reported hung by khungtaskd in the log ({reported[r.pid]} s)")
        try:
            h.trace = stack_trace(prog, a)
        except (VmcorekitError, LookupError) as e:
            h.trace_error = " ".join(str(e).split())
            return h
        if r.state in ("D", "S"):
            try:
                info = task_info(prog, a)
                b = info.stack
                stack_base.add(a, b)
                h.wait = task_wait(prog, a, h.trace.functions(), (b, b + thread_size),
                                   info.thread_sp, stack_base, thread_size)
            except (VmcorekitError, LookupError) as e:
                h.problems.append(" ".join(str(e).split()))
        return h

    for a in blocked[:MAX_ANALYSED]:
        h = analyse(a)
        if h is not None:
            out[a] = h
    edges: dict[int, int] = {}
    # Follow holders: each step adds a task, so at most len(rows) steps.
    frontier = list(out)
    steps = 0
    while frontier and steps <= len(rows):
        steps += 1
        nxt = []
        for a in frontier:
            w = out[a].wait
            if w is None or not w.owner or not w.owner_known or w.reader_owned:
                continue
            edges[a] = w.owner
            if w.owner not in out:
                h = analyse(w.owner)
                if h is not None:
                    out[w.owner] = h
                    nxt.append(w.owner)
        frontier = nxt
    chains, cycles = chains_and_cycles(edges, key=lambda a: (rows[a].pid, a) if a in rows else (1 << 31, a))
    return HungGraph(timeout, tsrc, out, edges, chains, cycles, len(blocked), notes)


@dataclass
class _Row:
    task: int
    pid: int
    comm: str
    state: str
    cpu: int | None



class _StackBases(Mapping[int, int]):
    """{task address: its stack base} over the known tasks, read when first asked (a
    wait ring's nodes name few tasks; a kernel may have thousands)."""

    def __init__(self, prog: "Program", rows: Mapping[int, Any]) -> None:
        self.prog, self.rows = prog, rows
        self.cache: dict[int, int | None] = {}

    def add(self, a: int, base: int) -> None:
        self.cache[a] = base

    def __getitem__(self, a: int) -> int:
        if a not in self.rows:
            raise KeyError(a)
        if a not in self.cache:
            try:
                self.cache[a] = task_info(self.prog, a).stack
            except (VmcorekitError, LookupError):
                self.cache[a] = None
        b = self.cache[a]
        if b is None:
            raise KeyError(a)
        return b

    def __contains__(self, a: object) -> bool:
        return a in self.rows

    def __iter__(self) -> Iterator[int]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)
