"""Out of memory: what ate the memory, from the dump itself.

    oom_log_facts(lines)          # OomLog: invoker, gfp mask, order, constraint, memcg, victim
    memory_consumers(prog, tasks) # [Consumer]: tasks (by mm), slab caches, page cache, ...
    task_memcg(task)              # MemcgInfo of a task: cgroup name, usage, memory.max
    oom_verdict(consumers, total) # "slab kmalloc-1k holds 71 % of RAM"

The log says that an OOM happened and under which constraint (mm/oom_kill.c prints
"invoked oom-killer: gfp_mask=..., order=N" first, then "oom-kill:constraint=CONSTRAINT_...,
...,task_memcg=/path,task=comm,pid=N" when it picks a victim; with vm.panic_on_oom it panics
"Out of memory: system-wide panic_on_oom is enabled" — or "compulsory ..." for a memcg or
cpuset constraint with panic_on_oom=2 — before printing a victim). Who held the memory comes
from the dump: each mm's RSS counters (kernel/tasks.py), each slab cache (kernel/slab.py),
the VM counters for page cache and shmem, the huge page pools.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import MemoryReadError, TypeLookupError, VmcorekitError
from ..program.objects import Object

if TYPE_CHECKING:
    from ..program.core import Program
    from .slab import SlabCache
    from .tasks import TaskSummary

__all__ = ["OomLog", "oom_log_facts", "Consumer", "memory_consumers", "MemcgInfo", "task_memcg",
           "oom_verdict"]

_INVOKED = re.compile(r"(?P<comm>.{1,16}?) invoked oom-killer: gfp_mask=(?P<gfp>\S+?),? "
                      r"order=(?P<order>-?\d+)")
_TASK_ROW = re.compile(r"\[\s*(?P<pid>\d+)\]\s+(?P<rest>.*)$")
MAX_LOG_TASKS = 1 << 16  # PID_MAX_DEFAULT is 32768; the table is bounded by the log anyway
_STAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")
_CONSTRAINT = re.compile(r"oom-kill:constraint=(?P<constraint>\w+)(?P<rest>.*)")
_KILLED = re.compile(r"(?P<who>Memory cgroup out of memory|Out of memory): Killed process "
                     r"(?P<pid>\d+) \((?P<comm>[^)]*)\)")
_PANIC = re.compile(r"Kernel panic - not syncing: Out of memory(?: and no killable processes)?"
                    r"[:.]?\s*(?P<how>system-wide|compulsory)?")
_CPU_LINE = re.compile(r"CPU: \d+ (?:UID: \d+ )?PID: (?P<pid>\d+) Comm: (?P<comm>\S+)")
# Each consumer is one of these kinds; the verdict names the largest.
KINDS = ("task", "slab", "page_cache", "shmem", "hugepages")


@dataclass
class OomLog:
    """The OOM as the kernel log tells it (every field None when the log does not say)."""

    invoker: str | None = None
    invoker_pid: int | None = None
    gfp_mask: str | None = None
    order: int | None = None
    constraint: str | None = None  # CONSTRAINT_NONE, CONSTRAINT_MEMCG, CONSTRAINT_CPUSET, ...
    task_memcg: str | None = None
    oom_memcg: str | None = None
    victim_pid: int | None = None
    victim_comm: str | None = None
    panic: str | None = None  # "system-wide" / "compulsory" (panic_on_oom), "" no killable task
    # dump_tasks()'s table: {"pid", "tgid", "rss", "swapents", "name", ...} in pages
    tasks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seen(self) -> bool:
        return self.invoker is not None or self.panic is not None or self.victim_pid is not None

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("invoker", "invoker_pid", "gfp_mask", "order",
                                           "constraint", "task_memcg", "oom_memcg",
                                           "victim_pid", "victim_comm", "panic")}
        d["tasks_listed"] = len(self.tasks)
        return d


def oom_log_facts(lines: Iterable[str]) -> OomLog:
    """The last OOM in these log lines (one line each, timestamps allowed)."""
    o = OomLog()
    want_cpu = False
    columns: list[str] | None = None
    for text in lines:
        text = _STAMP.sub("", text, count=1)
        m = _INVOKED.match(text)
        if m:
            o = OomLog(invoker=m["comm"].strip(), gfp_mask=m["gfp"], order=int(m["order"]))
            want_cpu = True
            columns = None
            continue
        if text.startswith("[  pid  ]"):  # dump_tasks()'s header names its columns
            columns = text[len("[  pid  ]"):].split()
            continue
        if columns is not None:
            row = _TASK_ROW.match(text)
            if row is None:
                columns = None
            elif len(o.tasks) < MAX_LOG_TASKS:
                vals = row["rest"].split(None, len(columns) - 1)
                if len(vals) == len(columns):
                    d: dict[str, Any] = {"pid": int(row["pid"])}
                    for k, v in zip(columns, vals):
                        d[k] = v if k == "name" or not v.lstrip("-").isdigit() else int(v)
                    o.tasks.append(d)
                continue
        if want_cpu:
            c = _CPU_LINE.search(text)
            if c:
                o.invoker_pid = int(c["pid"])
                want_cpu = False
        m = _CONSTRAINT.search(text)
        if m:
            o.constraint = m["constraint"]
            fields = dict(kv.split("=", 1) for kv in m["rest"].split(",") if "=" in kv)
            o.task_memcg = fields.get("task_memcg")
            o.oom_memcg = fields.get("oom_memcg")
            continue
        m = _KILLED.search(text)
        if m:
            o.victim_pid, o.victim_comm = int(m["pid"]), m["comm"]
            if m["who"].startswith("Memory cgroup") and o.constraint is None:
                o.constraint = "CONSTRAINT_MEMCG"
            continue
        m = _PANIC.search(text)
        if m:
            o.panic = m["how"] or ""
    return o


@dataclass(frozen=True)
class Consumer:
    """One holder of memory: `kind` (KINDS), its name, pages, and details for the report."""

    kind: str
    name: str
    pages: int
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self, page_size: int, total: int | None) -> dict[str, Any]:
        d = {"kind": self.kind, "name": self.name, "pages": self.pages,
             "bytes": self.pages * page_size,
             "percent_of_ram": None if not total else round(self.pages * 100 / total, 1)}
        d.update(self.detail)
        return d


def task_consumers(tasks: "Iterable[TaskSummary]") -> list[Consumer]:
    """One consumer per mm (threads share theirs): RSS (file + anon + shmem) and swap."""
    by_mm: dict[int, Consumer] = {}
    for t in tasks:
        if t.kernel_thread or not t.mm or t.mm in by_mm:
            continue
        r = t.rss
        pages = r.total + max(r.swapents, 0)
        by_mm[t.mm] = Consumer("task", t.comm, pages, {
            "pid": t.tgid or t.pid, "anon_pages": max(r.anon, 0), "file_pages": max(r.file, 0),
            "shmem_pages": max(r.shmem, 0), "swap_pages": max(r.swapents, 0)})
    return sorted(by_mm.values(), key=lambda c: -c.pages)


def log_task_consumers(log: OomLog, tasks: "Iterable[TaskSummary]") -> list[Consumer]:
    """Thread-group leaders in the log's OOM task table that the dump's task walk did not
    find with memory (their task_struct or mm lost to the dump's filtering): counted from the
    log, and said so (`source`)."""
    seen = {t.tgid for t in tasks if t.mm and not t.kernel_thread}
    out = []
    for row in log.tasks:
        tgid = row.get("tgid", row["pid"])
        if tgid in seen or not isinstance(row.get("rss"), int):
            continue
        seen.add(tgid)
        swap = row.get("swapents") if isinstance(row.get("swapents"), int) else 0
        detail: dict[str, Any] = {"pid": tgid, "source": "log", "swap_pages": max(swap, 0)}
        for col, key in (("rss_anon", "anon_pages"), ("rss_file", "file_pages"), ("rss_shmem", "shmem_pages")):
            if isinstance(row.get(col), int):
                detail[key] = max(row[col], 0)
        out.append(Consumer("task", str(row.get("name", "?")), max(row["rss"], 0) + max(swap, 0), detail))
    return out


def slab_consumers(caches: "Iterable[SlabCache]") -> list[Consumer]:
    """Unreclaimable slab caches: what a leak in the kernel grows (reclaimable ones, dentries
    and inodes, the OOM killer's reclaim could have shrunk)."""
    return sorted((Consumer("slab", c.name, c.pages, {"objects": c.objects,
                                                      "object_size_bytes": c.object_size})
                   for c in caches if not c.reclaimable and c.pages), key=lambda c: -c.pages)


def memory_consumers(prog: "Program", tasks: "Iterable[TaskSummary]",
                     caches: "Iterable[SlabCache] | None", notes: list[str],
                     log: OomLog | None = None) -> list[Consumer]:
    """Every consumer the dump shows, largest first (with `log`, the tasks of its OOM table
    the dump lost too). A source that cannot be read is said in `notes` and left out."""
    from .meminfo import hugetlb_totals, vm_stat
    tasks = list(tasks)
    out = task_consumers(tasks)
    if log is not None:
        out += log_task_consumers(log, tasks)
    if caches is not None:
        out += slab_consumers(caches)

    def stat(name: str) -> int | None:
        try:
            return vm_stat(prog, name)
        except (VmcorekitError, LookupError) as e:
            notes.append(f"{name}: {e}")
            return None

    file_pages, shmem = stat("NR_FILE_PAGES"), stat("NR_SHMEM")
    if file_pages is not None:
        out.append(Consumer("page_cache", "page cache", max(file_pages - (shmem or 0), 0)))
    if shmem:
        out.append(Consumer("shmem", "shmem/tmpfs", shmem))
    try:
        huge, _free = hugetlb_totals(prog)
        if huge:
            out.append(Consumer("hugepages", "huge pages", huge))
    except (VmcorekitError, LookupError) as e:
        notes.append(f"huge pages: {e}")
    return sorted(out, key=lambda c: -c.pages)


def oom_verdict(consumers: list[Consumer], total: int | None,
                limit: int | None = None, scope: str = "RAM") -> str | None:
    """One line naming the largest consumer and its share of RAM (or of the memcg's limit
    when `limit` is given)."""
    if not consumers:
        return None
    top = consumers[0]
    base = limit or total
    share = f"{top.pages * 100 / base:.0f} % of {scope}" if base else f"{top.pages} pages"
    if top.kind == "task":
        src = " (from the log's OOM task table: the dump lost its task)" \
            if top.detail.get("source") == "log" else ""
        return f"task {top.name} (pid {top.detail.get('pid')}) holds {share}{src}"
    if top.kind == "slab":
        return f"slab {top.name} holds {share}"
    return f"{top.name} holds {share}"


@dataclass(frozen=True)
class MemcgInfo:
    """A task's memory cgroup: its name (the cgroup's directory), pages charged and
    memory.max in pages (None: unlimited)."""

    name: str
    usage: int
    max: int | None

    def as_dict(self, page_size: int) -> dict[str, Any]:
        return {"name": self.name, "usage_pages": self.usage, "usage_bytes": self.usage * page_size,
                "max_pages": self.max, "max_bytes": None if self.max is None else self.max * page_size}


def task_memcg(task: Object) -> MemcgInfo | None:
    """The memory cgroup `task` is charged to (task->cgroups->subsys[memory_cgrp_id]), or
    None when the kernel has no memory controller. Needs BTF."""
    prog = task.prog_
    try:
        idx = prog.types.constant("memory_cgrp_id")
    except (TypeLookupError, LookupError):
        return None
    try:
        css = task.cgroups.subsys[idx].read_()
        if not int(css):
            return None
        memcg = Object(prog, "struct mem_cgroup", address=int(css))  # css is its first member
        name = "/"
        kn = css.cgroup.kn.read_()
        if int(kn):
            name = prog.read_cstring(int(kn.name), 256).decode("utf-8", "backslashreplace") or "/"
        usage = max(int(memcg.memory.usage.counter), 0)
        mx = int(memcg.memory.max)
        # no limit: page_counter.max is PAGE_COUNTER_MAX (LONG_MAX / PAGE_SIZE)
        unlimited = ((1 << 63) - 1) // prog.page_size
        return MemcgInfo(name, usage, None if mx >= unlimited else mx)
    except (MemoryReadError, VmcorekitError, LookupError):
        return None
