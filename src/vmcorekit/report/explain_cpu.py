"""Triage's CPU explanations: lockups and stalls, and each CPU's interrupt context.

    lockup_report(prog, crash, events)   # dict for triage's `lockup` section, or None
    interrupt_report(prog, crash)        # dict for triage's `interrupt` section

A lockup is explained when the log reports one (soft lockup, hard lockup, RCU stall) or the
panic says so (stale watchdog stamps alone do not: a dump taken while the machine sat in
panic() shows every CPU stale). The
stalled CPUs come from the dump (kernel/watchdog.py: stale watchdog stamps, the CPUs owing
the RCU grace period its quiescent state), the log's own report cross-checks them; each
stalled CPU's task and stack are read from the dump's registers of that CPU, and the other
CPUs' stacks are grouped by equality (one stack, its CPU list), as `bt -a` would show them.
"""
from __future__ import annotations

import re
from typing import Any

from ..errors import VmcorekitError
from ..program import Program

__all__ = ["lockup_report", "interrupt_report", "group_cpu_stacks", "MAX_CPU_LIST"]

MAX_CPU_LIST = 512  # CPUs whose stacks are read and grouped (a bigger machine: the first ones)
_LOCKUP_KINDS = ("soft_lockup", "hard_lockup", "rcu_stall")
_HARD = re.compile(r"(?:Watchdog detected hard LOCKUP|hard LOCKUP) on cpu (\d+)", re.I)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _trace(prog: Program, cpu: int) -> tuple[Any, str | None]:
    from ..kernel.stacks import stack_trace
    try:
        return stack_trace(prog, cpu=cpu), None
    except (LookupError, VmcorekitError) as e:
        return None, _one_line(e)


def _current(prog: Program, cpu: int) -> dict[str, Any]:
    """pid, comm and task of what ran on `cpu`, for a CPU whose stack does not read."""
    from ..kernel.cpus import current_task_address
    from ..kernel.tasks import task_info
    try:
        a = current_task_address(prog, cpu)
        if a is None:
            return {}
        i = task_info(prog, a)
        return {"pid": i.pid, "comm": i.comm, "task": f"{a:#x}"}
    except (LookupError, VmcorekitError):
        return {}


def _frames(trace: Any) -> list[str]:
    return [f.symbolic for f in trace.frames]


def _cpus(prog: Program) -> list[int]:
    from ..kernel.cpus import online_cpus
    from ..kernel.percpu import note_cpus
    return sorted(set(online_cpus(prog)) | set(note_cpus(prog)))[:MAX_CPU_LIST]


def group_cpu_stacks(prog: Program, cpus: list[int]) -> list[dict[str, Any]]:
    """The stacks of `cpus` from their registers, CPUs with the same frames listed once."""
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    for cpu in cpus:
        t, err = _trace(prog, cpu)
        if t is None:
            key: tuple[str, ...] = ("error", err or "")
            groups.setdefault(key, {"cpus": [], "error": err, "functions": [], "text": ""})["cpus"].append(cpu)
            continue
        key = tuple(t.functions())
        g = groups.setdefault(key, {"cpus": [], "functions": list(key), "text": str(t),
                                    "pid": t.pid, "comm": t.comm})
        g["cpus"].append(cpu)
        if len(g["cpus"]) > 1:  # the shown stack stands for several CPUs: no one task's
            g["pid"] = g["comm"] = None
    return list(groups.values())


def _log_lockups(events: list[dict[str, Any]]) -> tuple[str | None, dict[int, int], list[str],
                                                        dict[int, dict[str, Any]]]:
    """(kind, {cpu: seconds stuck} the log reports, summary lines, {cpu: its pid and comm})."""
    kind, stuck, lines = None, {}, []
    who: dict[int, dict[str, Any]] = {}
    for e in events:
        if e.get("kind") not in _LOCKUP_KINDS:
            continue
        kind = kind or e["kind"]
        lines.append(e.get("summary", ""))
        f = e.get("facts") or {}
        try:
            if e["kind"] == "soft_lockup" and "cpu" in f:
                stuck[int(f["cpu"])] = int(f.get("secs") or 0)
                if f.get("pid"):
                    who[int(f["cpu"])] = {"pid": int(f["pid"]), "comm": f.get("comm")}
        except ValueError:
            pass
        m = _HARD.search(e.get("summary", ""))
        if m:
            stuck.setdefault(int(m.group(1)), 0)
    return kind, stuck, lines, who


def lockup_report(prog: Program, crash: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Which CPUs were stuck, how long, the task and stack there, the other CPUs grouped."""
    from ..kernel.irqctx import interrupt_context
    from ..kernel.watchdog import rcu_gp_state, softlockup_state
    kind, log_stuck, lines, log_who = _log_lockups(events)
    reason = (crash.get("reason") or "").lower()
    if kind is None:
        if "soft lockup" in reason or "softlockup" in reason:
            kind = "soft_lockup"
        elif "hard lockup" in reason or "hardlockup" in reason:
            kind = "hard_lockup"
        elif "rcu stall" in reason:
            kind = "rcu_stall"
    # the symbol giving the threshold may be missing: the log's report then sets it
    sl = softlockup_state(prog)
    if sl is not None and sl.threshold_source.startswith("2 * the default") and log_stuck:
        least = min(s for s in log_stuck.values() if s) if any(log_stuck.values()) else None
        if least:
            sl = softlockup_state(prog, threshold=least)
            if sl is not None:
                sl.threshold_source = "the log's soft lockup report (watchdog_thresh not in this dump)"
    if kind is None:
        # stale stamps alone prove nothing: a dump taken while the machine sat in panic()
        # (panic=0, a hypervisor dump seconds later) shows every CPU "stuck"
        return None
    rcu = rcu_gp_state(prog)
    stalled: dict[int, dict[str, Any]] = {}
    if kind == "soft_lockup" and sl is not None:
        for c in sl.stuck:
            stalled[c.cpu] = {"seconds": c.lag, "seconds_source": "watchdog_touch_ts"}
    if kind == "rcu_stall" and rcu is not None and rcu.in_progress:
        for cpu in rcu.holding:
            stalled[cpu] = {"seconds": rcu.age_seconds, "seconds_source": "rcu_state.gp_start"}
    for cpu, secs in log_stuck.items():  # a CPU the log names that the dump did not show
        stalled.setdefault(cpu, {"seconds": secs or None, "seconds_source": "log"})
    checks = []
    if log_stuck and set(log_stuck) != set(stalled):
        checks.append(f"the log reports CPU(s) {sorted(log_stuck)}, the dump shows {sorted(stalled)}")
    out_stalled = []
    for cpu in sorted(stalled)[:MAX_CPU_LIST]:
        t, err = _trace(prog, cpu)
        entry: dict[str, Any] = {"cpu": cpu, **stalled[cpu]}
        if cpu in log_stuck and log_stuck[cpu]:
            entry["log_seconds"] = log_stuck[cpu]
        if t is not None:
            entry.update({"pid": t.pid, "comm": t.comm,
                          "task": None if t.task is None else f"{t.task:#x}",
                          "frames": _frames(t), "text": str(t)})
            # where it spun: the code the interrupt that caught it (the watchdog's timer, the
            # crash's stop NMI) interrupted; the top frame when nothing interrupted it
            hit = [f for i, f in enumerate(t.frames) if i and f.exception is not None
                   and f.exception.source == "pt_regs" and not f.exception.user_mode]
            entry["where"] = hit[0].symbolic if hit else (t.frames[0].symbolic if t.frames else None)
        else:
            entry["error"] = err
            entry.update(_current(prog, cpu))
            if "pid" not in entry and cpu in log_who:  # the task's page is not in the dump
                entry.update(log_who[cpu], task_source="log")
        entry["context"] = interrupt_context(prog, cpu, t).summary()
        out_stalled.append(entry)
    others = [c for c in _cpus(prog) if c not in stalled]
    return {"kind": kind, "log_reports": lines, "stalled": out_stalled,
            "other_cpus": group_cpu_stacks(prog, others),
            "softlockup": None if sl is None else sl.as_dict(),
            "rcu": None if rcu is None else rcu.as_dict(),
            "cross_check": checks or ["the log and the dump name the same CPUs"] if log_stuck else checks}


def interrupt_report(prog: Program, crash: dict[str, Any]) -> dict[str, Any]:
    """Each CPU's interrupt context, the panicking CPU's first and in a one-line `summary`."""
    from ..kernel.irqctx import interrupt_context
    panic_cpu = crash.get("cpu")
    cpus = _cpus(prog)
    if panic_cpu in cpus:
        cpus.remove(panic_cpu)
        cpus.insert(0, panic_cpu)
    rows = []
    for cpu in cpus:
        t, _err = _trace(prog, cpu)
        d = interrupt_context(prog, cpu, t).as_dict()
        d["panic"] = cpu == panic_cpu
        rows.append(d)
    first = rows[0] if rows else None
    summary = None
    if first is not None:
        who = "the panicking CPU" if first["panic"] else "CPU"
        summary = f"{who} {first['cpu']}: {first['summary']}"
        if first["softirq"]:
            summary += f" — softirq {first['softirq']} was running"
        elif first["in_interrupt"] and first["irq_handler"]:
            summary += f" — in {first['levels'][-1]} {first['irq_handler']}"
    return {"summary": summary, "cpus": rows}
