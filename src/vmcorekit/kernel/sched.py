"""The scheduler's run queues, per CPU: what ran, and what waited to run (crash's `runq`).

    runqueues(prog)            # [RunQueue] for every present CPU
    runqueue_of(prog, 1)       # CPU 1's: current task, DL tree, RT priority arrays, CFS tree

Each CPU's `struct rq` (kernel/cpus.py finds it) holds three queues: the deadline class's
rbtree of `sched_dl_entity.rb_node` ordered by deadline (`rq->dl.root`), the RT class's
priority array (`rq->rt.active.queue[prio]`, one list of `sched_rt_entity.run_list` per
priority), and CFS's rbtree of `sched_entity.run_node` in vruntime order
(`rq->cfs.tasks_timeline`). With group scheduling an entity of a CFS tree is a task group
(its `my_q` is the group's own cfs_rq, walked in turn); the running entity is not in any
tree, it is `rq->curr`. Every walk is kernel/lists.py's, bounded; a broken tree or list is
recorded in `problems` and the queues before it are kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import CorruptKernelDataError, MemoryReadError, TypeLookupError, VmcorekitError
from .cpus import cpu_curr_address, present_cpus, runqueue
from .lists import list_nodes, rbtree_nodes

if TYPE_CHECKING:
    from ..program.core import Program
    from ..program.objects import Object

__all__ = ["QueuedEntity", "RunQueue", "runqueue_of", "runqueues", "MAX_QUEUED", "MAX_GROUP_DEPTH"]

# A run queue holds at most the tasks of the machine; more than this is a corrupt tree.
MAX_QUEUED = 1 << 16
# Task groups nest as cgroups do; the kernel's own limit is far below this.
MAX_GROUP_DEPTH = 32


@dataclass
class QueuedEntity:
    """One entity waiting on a queue: a task, or (CFS, RT with group scheduling) a task group
    whose own queue is `children` (its `root` is the group's rb_root or priority array)."""

    kind: str  # "task", "group" or "server" (a deadline server; comm is its rq member's name)
    address: int  # task_struct, the group's sched_entity, the server's sched_dl_entity
    prio: int | None = None
    pid: int | None = None
    comm: str | None = None
    root: int | None = None
    children: list["QueuedEntity"] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "address": self.address, "prio": self.prio}
        if self.kind == "task":
            d.update(pid=self.pid, comm=self.comm)
        else:
            d.update(root=self.root, children=[c.as_dict() for c in self.children])
        return d


@dataclass
class RunQueue:
    cpu: int
    address: int
    current: int | None = None
    current_pid: int | None = None
    current_comm: str | None = None
    clock: int | None = None  # rq->clock, ns
    current_arrival: int | None = None  # curr->sched_info.last_arrival, ns
    nr_running: int | None = None
    dl_root: int | None = None
    dl: list[QueuedEntity] = field(default_factory=list)
    rt_array: int | None = None
    rt: list[QueuedEntity] = field(default_factory=list)
    cfs_root: int | None = None
    cfs: list[QueuedEntity] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def tasks(self) -> list[QueuedEntity]:
        """Every queued task, groups flattened (bounded by the walks that made them)."""
        out: list[QueuedEntity] = []
        todo = [*self.dl, *self.rt, *self.cfs]
        while todo:
            e = todo.pop(0)
            if e.kind == "task":
                out.append(e)
            elif e.kind == "group":
                todo[:0] = e.children
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "address": self.address, "current": self.current,
                "current_pid": self.current_pid, "current_comm": self.current_comm,
                "clock": self.clock, "current_arrival": self.current_arrival,
                "nr_running": self.nr_running,
                "dl": {"root": self.dl_root, "entities": [e.as_dict() for e in self.dl]},
                "rt": {"array": self.rt_array, "entities": [e.as_dict() for e in self.rt]},
                "cfs": {"root": self.cfs_root, "entities": [e.as_dict() for e in self.cfs]},
                "problems": list(self.problems)}


def _task(prog: "Program", addr: int, prio: int | None = None) -> QueuedEntity:
    t = prog.object("struct task_struct", addr)
    comm = t.comm.string_().decode("utf-8", "backslashreplace")
    return QueuedEntity("task", addr, int(t.prio) if prio is None else prio, int(t.pid), comm)


def _rb_root(obj: "Object") -> int:
    """The rb_root inside an rb_root_cached (or an rb_root itself)."""
    t = obj.type_.strip_typedefs()
    if t.tag == "rb_root_cached":
        return obj.rb_root.address_  # type: ignore[no-any-return]
    return obj.address_  # type: ignore[no-any-return]


def _has_member(prog: "Program", type_name: str, member: str) -> bool:
    """Whether BTF gives `type_name` a member `member` (bit fields too, which have no byte
    offset for offsetof)."""
    try:
        t = prog.types.lookup(type_name).strip_typedefs()
    except (VmcorekitError, LookupError):
        return False
    return any(m.name == member for m in (getattr(t, "members", None) or ()))


class _Budget:
    """One count for every entity of one CPU's queues, groups included."""

    def __init__(self) -> None:
        self.left = MAX_QUEUED


def _cfs(prog: "Program", cfs_rq: "Object", depth: int, rq: RunQueue, budget: _Budget) -> list[QueuedEntity]:
    root = _rb_root(cfs_rq.tasks_timeline)
    off = prog.offsetof("struct sched_entity", "run_node")
    task_off = prog.offsetof("struct task_struct", "se")
    has_groups = prog.try_offsetof("struct sched_entity", "my_q") is not None
    out: list[QueuedEntity] = []
    what = f"CPU {rq.cpu} CFS rbtree (root {root:#x})"
    try:
        for node in rbtree_nodes(prog, root, what=what, limit=budget.left):
            budget.left -= 1
            se_addr = node - off
            se = prog.object("struct sched_entity", se_addr)
            my_q = int(se.my_q) if has_groups else 0
            if my_q:
                if depth >= MAX_GROUP_DEPTH:
                    raise CorruptKernelDataError(f"{what}: task groups nested deeper than {MAX_GROUP_DEPTH}")
                q = prog.object("struct cfs_rq", my_q)
                g = QueuedEntity("group", se_addr, None, root=_rb_root(q.tasks_timeline))
                out.append(g)
                g.children = _cfs(prog, q, depth + 1, rq, budget)
            else:
                out.append(_task(prog, se_addr - task_off))
    except (CorruptKernelDataError, MemoryReadError) as e:
        rq.problems.append(str(e))
    return out


def _rt(prog: "Program", array: "Object", depth: int, rq: RunQueue, budget: _Budget) -> list[QueuedEntity]:
    queue = array.queue
    n = queue.type_.strip_typedefs().length or 0
    step = prog.types.sizeof("struct list_head")
    off = prog.offsetof("struct sched_rt_entity", "run_list")
    task_off = prog.offsetof("struct task_struct", "rt")
    has_groups = prog.try_offsetof("struct sched_rt_entity", "my_q") is not None
    out: list[QueuedEntity] = []
    for prio in range(n):
        head = queue.address_ + prio * step
        what = f"CPU {rq.cpu} RT queue [{prio}] (head {head:#x})"
        try:
            for node in list_nodes(prog, head, what=what, limit=budget.left):
                budget.left -= 1
                ent = node - off
                my_q = int(prog.object("struct sched_rt_entity", ent).my_q) if has_groups else 0
                if my_q:
                    if depth >= MAX_GROUP_DEPTH:
                        raise CorruptKernelDataError(f"{what}: task groups nested deeper than {MAX_GROUP_DEPTH}")
                    q = prog.object("struct rt_rq", my_q)
                    g = QueuedEntity("group", ent, prio, root=q.active.address_)
                    out.append(g)
                    g.children = _rt(prog, q.active, depth + 1, rq, budget)
                else:
                    out.append(_task(prog, ent - task_off, prio))
        except (CorruptKernelDataError, MemoryReadError) as e:
            rq.problems.append(str(e))
    return out


def _dl(prog: "Program", rq_obj: "Object", rq: RunQueue, budget: _Budget) -> list[QueuedEntity]:
    root = _rb_root(rq_obj.dl.root)
    off = prog.offsetof("struct sched_dl_entity", "rb_node")
    task_off = prog.offsetof("struct task_struct", "dl")
    has_server = _has_member(prog, "struct sched_dl_entity", "dl_server")  # a bit field
    servers = {n: rq_obj.member_(n).address_ for n in ("fair_server", "ext_server")
               if prog.try_offsetof("struct rq", n) is not None}
    out: list[QueuedEntity] = []
    try:
        for node in rbtree_nodes(prog, root, what=f"CPU {rq.cpu} DL rbtree (root {root:#x})", limit=budget.left):
            budget.left -= 1
            ent = node - off
            if has_server and int(prog.object("struct sched_dl_entity", ent).dl_server):
                # 6.8+: a deadline server (rq->fair_server) runs CFS tasks under DL rules;
                # it is no task's entity.
                name = next((n for n, a in servers.items() if a == ent), "dl_server")
                out.append(QueuedEntity("server", ent, None, comm=name))
                continue
            out.append(_task(prog, ent - task_off))
    except (CorruptKernelDataError, MemoryReadError) as e:
        rq.problems.append(str(e))
    return out


def runqueue_of(prog: "Program", cpu: int) -> RunQueue:
    """CPU `cpu`'s run queue; TypeLookupError when the dump has no BTF for struct rq."""
    rq_obj = runqueue(prog, cpu)
    if rq_obj is None:
        raise TypeLookupError(f"CPU {cpu}: struct rq (runqueues) is not known: the dump needs BTF "
                              f"for struct rq and the per-CPU symbol runqueues")
    rq = RunQueue(cpu, rq_obj.address_)  # type: ignore[arg-type]
    budget = _Budget()
    try:
        rq.clock = int(rq_obj.clock)
        rq.nr_running = int(rq_obj.nr_running)
    except (VmcorekitError, LookupError) as e:
        rq.problems.append(f"CPU {cpu}: rq clock/nr_running: {e}")
    cur = cpu_curr_address(prog, cpu)
    if cur:
        rq.current = cur
        try:
            t = prog.object("struct task_struct", cur)
            rq.current_pid = int(t.pid)
            rq.current_comm = t.comm.string_().decode("utf-8", "backslashreplace")
            rq.current_arrival = int(t.sched_info.last_arrival)
        except (VmcorekitError, LookupError) as e:
            rq.problems.append(f"CPU {cpu}: current task {cur:#x}: {e}")
    def dl() -> None:
        rq.dl_root = _rb_root(rq_obj.dl.root)
        rq.dl = _dl(prog, rq_obj, rq, budget)

    def rt() -> None:
        rq.rt_array = rq_obj.rt.active.address_
        rq.rt = _rt(prog, rq_obj.rt.active, 0, rq, budget)

    def cfs() -> None:
        rq.cfs_root = _rb_root(rq_obj.cfs.tasks_timeline)
        rq.cfs = _cfs(prog, rq_obj.cfs, 0, rq, budget)

    for name, run in (("DL", dl), ("RT", rt), ("CFS", cfs)):
        try:
            run()
        except (VmcorekitError, LookupError) as e:  # a member this kernel's BTF lacks
            rq.problems.append(f"CPU {cpu}: {name} queue: {e}")
    return rq


def runqueues(prog: "Program", cpus: list[int] | None = None) -> list[RunQueue]:
    """The run queues of `cpus` (default: every present CPU), in CPU order."""
    return [runqueue_of(prog, c) for c in (present_cpus(prog) if cpus is None else cpus)]
