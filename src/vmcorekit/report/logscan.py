"""What killed the kernel, from its log: a thin adapter over the one crash-report recogniser
(vmcorekit.kernel.printk.events) for the triage report's (timestamp, level, text) lines.

`scan` lists every recognised report as an Event (kind, summary line, its first lines, the
facts its header line states); `crash_from_log` condenses them to the crash: reason, kind, and
for an oops the RIP, error code, CPU/PID/Comm, taint and call trace.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..kernel.printk.events import CrashReport, RuleSet, default_rules, find_reports


@dataclass(frozen=True)
class LogLine:
    ts: float | None  # seconds since boot
    text: str
    level: int | None = None


@dataclass
class Event:
    """One recognised report in the log, with the lines that prove it."""

    kind: str  # panic, oops, bug, warning, hung_task, soft_lockup, hard_lockup, oom, rcu_stall
    summary: str
    ts: float | None
    lines: list[str] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    report: CrashReport | None = None


@dataclass
class Crash:
    """The crash as the log tells it: reason, and for an oops the RIP, error code, CPU, task."""

    reason: str | None = None
    kind: str | None = None
    rip: str | None = None  # "function+0x16/0x20 [module]"
    error_code: str | None = None
    cpu: int | None = None
    pid: int | None = None
    comm: str | None = None
    tainted: str | None = None
    message: str | None = None  # oops/BUG detail line (e.g. "unable to handle page fault ...")
    call_trace: list[str] = field(default_factory=list)


def reports(lines: list[LogLine], rules: RuleSet | None = None) -> list[CrashReport]:
    """Every crash report of the lines, in log order."""
    return sorted(find_reports((ln.text for ln in lines), rules or default_rules()), key=lambda r: r.start)


def _event(rep: CrashReport, lines: list[LogLine], context: int) -> Event:
    facts = dict(rep.header_fields)
    if rep.kind == "warning" and "fn" in facts:
        facts["func"] = facts.pop("fn")
    return Event(rep.kind, rep.header, lines[rep.start].ts,
                 [ln.text for ln in lines[rep.start:rep.start + context]], facts, rep)


def scan(lines: list[LogLine], context: int = 6, rules: RuleSet | None = None) -> list[Event]:
    """Every recognised report in log order, each with its header line and a few following."""
    return [_event(r, lines, context) for r in reports(lines, rules)]


_FALLBACK_KINDS = ("soft_lockup", "hard_lockup", "hung_task", "rcu_stall", "oom", "warning")


def crash_from_log(lines: list[LogLine], rules: RuleSet | None = None) -> Crash:
    """The crash reason and oops details: the last panic, else the first oops/BUG, with the
    CPU/PID/Comm, RIP and call trace printed with it."""
    reps = reports(lines, rules)
    panics = [r for r in reps if r.panic is not None]
    oopses = [r for r in reps if r.kind in ("oops", "bug")]
    c = Crash()
    if panics:
        c.reason, c.kind = panics[-1].panic, "panic"
    if oopses:
        first = oopses[0]
        c.message = first.header
        if c.reason is None:
            c.reason, c.kind = first.header, first.kind
        elif c.kind == "panic" and c.reason.startswith("Fatal exception"):
            c.kind = first.kind
    if c.reason is None:
        for kind in _FALLBACK_KINDS:
            found = [r for r in reps if r.kind == kind]
            if found:
                c.reason, c.kind = found[-1].header, kind
                break
    detail = oopses[0] if oopses else panics[-1] if panics else None
    if detail is not None:
        c.cpu, c.pid, c.comm, c.tainted = detail.cpu, detail.pid, detail.comm, detail.taint
        if detail.ip_label in ("RIP", "IP"):
            c.rip = detail.ip
        c.error_code = detail.error_code
        c.call_trace = [f.symbolic() for f in detail.stack if f.reliable and f.section != "ip"]
    return c


def normalize_reason(reason: str) -> str:
    """The reason without what differs between two crashes of one bug: addresses, numbers,
    PIDs, comm names in brackets, timings."""
    r = re.sub(r"\[[^\]]*:\d+\]", "[TASK]", reason)
    r = re.sub(r"\b0x[0-9a-fA-F]+\b|\b[0-9a-f]{8,16}\b", "ADDR", r)
    r = re.sub(r"\d+", "N", r)
    return re.sub(r"\s+", " ", r).strip()
