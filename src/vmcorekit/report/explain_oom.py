"""Triage's OOM explanation: what ate the memory, from the dump itself.

    oom_report(prog, crash, log_lines, tasks)   # dict for triage's `oom` section, or None

Shown when the log tells of an OOM (kernel/oom.py reads mm/oom_kill.c's lines) or the panic
says "Out of memory". The figures come from the dump: per-mm RSS (anon, file, shmem, swap),
slab by cache (SUnreclaim/SReclaimable from the VM counters beside the caches' own sum and
the top caches), page cache, shmem, huge pages, and the memory cgroup's charge and
memory.max when the OOM was cgroup-constrained; the verdict names the largest consumer and
its share of RAM (of the cgroup's limit, for a memcg OOM).
"""
from __future__ import annotations

from typing import Any

from ..errors import VmcorekitError
from ..program import Program

__all__ = ["oom_report", "TOP_TASKS", "TOP_CACHES"]

TOP_TASKS = 5
TOP_CACHES = 8


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def oom_report(prog: Program, crash: dict[str, Any], log_lines: list[str],
               tasks: list[Any]) -> dict[str, Any] | None:
    from ..kernel.meminfo import hugetlb_totals, totalram_pages, vm_stat
    from ..kernel.oom import (log_task_consumers, memory_consumers, oom_log_facts, oom_verdict,
                              task_consumers)
    from ..kernel.slab import slab_caches, slab_totals
    log = oom_log_facts(log_lines)
    if not log.seen and "out of memory" not in (crash.get("reason") or "").lower():
        return None
    ps = prog.page_size
    notes: list[str] = []
    total = totalram_pages(prog)
    out: dict[str, Any] = {"log": log.as_dict(), "page_size": ps, "total_ram_pages": total}
    try:
        caches = slab_caches(prog)
    except (VmcorekitError, LookupError) as e:
        caches = None
        notes.append(f"slab caches: {_one_line(e)}")

    def stat(name: str) -> int | None:
        try:
            return vm_stat(prog, name)
        except (VmcorekitError, LookupError) as e:
            notes.append(f"{name}: {_one_line(e)}")
            return None

    slab: dict[str, Any] = {"sunreclaim_pages": stat("NR_SLAB_UNRECLAIMABLE_B"),
                            "sreclaimable_pages": stat("NR_SLAB_RECLAIMABLE_B")}
    if slab["sunreclaim_pages"] is None:  # before 5.9 the counters were in pages by name
        slab["sunreclaim_pages"] = stat("NR_SLAB_UNRECLAIMABLE")
        slab["sreclaimable_pages"] = stat("NR_SLAB_RECLAIMABLE")
    if caches is not None:
        rec, unrec = slab_totals(caches)
        slab.update({"caches": len(caches), "caches_unreclaimable_pages": unrec,
                     "caches_reclaimable_pages": rec,
                     "top": [c.as_dict(ps) for c in sorted(caches, key=lambda c: -c.pages)[:TOP_CACHES]]})
    out["slab"] = slab
    file_pages, shmem = stat("NR_FILE_PAGES"), stat("NR_SHMEM")
    out["page_cache_pages"] = None if file_pages is None else max(file_pages - (shmem or 0), 0)
    out["shmem_pages"] = shmem
    out["anon_pages"] = stat("NR_ANON_MAPPED")
    try:
        huge, free = hugetlb_totals(prog)
        out["hugepages"] = {"total_pages": huge, "free_pages": free}
    except (VmcorekitError, LookupError) as e:
        notes.append(f"huge pages: {_one_line(e)}")
        out["hugepages"] = None
    tasks = list(tasks) + _running_not_listed(prog, tasks, notes)
    top = sorted(task_consumers(tasks) + log_task_consumers(log, tasks), key=lambda c: -c.pages)
    out["top_tasks"] = [c.as_dict(ps, total) for c in top[:TOP_TASKS]]
    consumers = memory_consumers(prog, tasks, caches, notes, log)
    # a memcg OOM: the share is of the cgroup's limit, and only its tasks count
    limit = None
    scope = "RAM"
    if log.constraint == "CONSTRAINT_MEMCG":
        out["memcg"] = _memcg(prog, log, tasks, notes)
        mc = out["memcg"]
        if mc and mc.get("max_pages"):
            limit, scope = mc["max_pages"], f"memcg {mc['name']}'s memory.max"
    out["consumers"] = [c.as_dict(ps, total) for c in consumers[:10]]
    out["verdict"] = oom_verdict(consumers, total, limit, scope)
    out["notes"] = notes
    return out


def _running_not_listed(prog: Program, tasks: list[Any], notes: list[str]) -> list[Any]:
    """The tasks running on a CPU that the task walk missed (a list broken by the dump's
    filtering): the OOM's invoker is one of them, often the eater itself."""
    from ..kernel.cpus import active_tasks
    from ..kernel.tasks import task_summary
    listed = {t.task for t in tasks}
    extra = []
    try:
        running = active_tasks(prog)
    except (VmcorekitError, LookupError) as e:
        notes.append(f"running tasks: {_one_line(e)}")
        return []
    for cpu, t in sorted(running.items()):
        if int(t) in listed:
            continue
        try:
            extra.append(task_summary(t))
            notes.append(f"CPU {cpu}'s running task (pid {extra[-1].pid}) is not on the task list "
                         f"the dump kept: counted from the CPU")
        except (VmcorekitError, LookupError) as e:
            notes.append(f"CPU {cpu}'s running task: {_one_line(e)}")
    return extra


def _memcg(prog: Program, log: Any, tasks: list[Any], notes: list[str]) -> dict[str, Any] | None:
    """The cgroup the OOM'ing task is charged to: its name, charge and memory.max."""
    from ..kernel.oom import task_memcg
    from ..kernel.tasks import find_task
    pid = log.invoker_pid or log.victim_pid
    if pid is None:
        notes.append("memcg: the log names no task of the cgroup")
        return None
    try:
        t = find_task(prog, pid)
        info = task_memcg(t) if t is not None else None
    except (VmcorekitError, LookupError) as e:
        notes.append(f"memcg: {_one_line(e)}")
        return None
    if info is None:
        notes.append(f"memcg: pid {pid}'s memory cgroup not found in the dump")
        return None
    d = info.as_dict(prog.page_size)
    d["task_memcg_log"] = log.task_memcg
    return d
