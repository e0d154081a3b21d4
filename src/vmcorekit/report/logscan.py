"""Recognising what killed the kernel from its log: panic, oops, BUG, WARNING, hung tasks,
soft/hard lockups, OOM, RCU stalls. Pure text work over (timestamp, level, text) lines, so it
is testable without a dump and reusable on any log.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LogLine:
    ts: float | None  # seconds since boot
    text: str
    level: int | None = None


@dataclass
class Event:
    """One recognised signature in the log, with the lines that prove it."""

    kind: str  # panic, oops, bug, warning, hung_task, soft_lockup, hard_lockup, oom, rcu_stall
    summary: str
    ts: float | None
    lines: list[str] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)


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


_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("panic", re.compile(r"^Kernel panic - not syncing: (?P<msg>.*)")),
    ("bug", re.compile(r"kernel BUG at (?P<msg>\S+)!")),
    ("oops", re.compile(r"BUG: (?P<msg>unable to handle .*|kernel NULL pointer dereference.*|"
                        r"scheduling while atomic.*|sleeping function called from invalid context.*|"
                        r"KASAN: .*|KFENCE: .*|Bad page .*|spinlock .*|workqueue lockup.*|"
                        r"Bad rss-counter.*|unable to handle kernel .*)")),
    ("oops", re.compile(r"(?:general protection fault|invalid opcode|stack segment|double fault)"
                        r"(?P<msg>.*?)(?: \[#\d+\].*)?$")),
    ("oops", re.compile(r"^Oops: (?P<msg>.*)")),
    ("soft_lockup", re.compile(r"BUG: soft lockup - CPU#(?P<cpu>\d+) stuck for (?P<secs>\d+)s! \[(?P<comm>.*):(?P<pid>\d+)\]")),
    ("hard_lockup", re.compile(r"Watchdog detected hard LOCKUP on cpu (?P<cpu>\d+)")),
    ("hung_task", re.compile(r"INFO: task (?P<comm>.+):(?P<pid>\d+) blocked for more than (?P<secs>\d+) seconds")),
    ("oom", re.compile(r"(?P<comm>.+) invoked oom-killer: (?P<msg>.*)")),
    ("oom", re.compile(r"Out of memory(?: \(oom_kill_allocating_task\))?: (?P<msg>Kill(?:ed)? process (?P<pid>\d+) \((?P<comm>[^)]*)\).*)")),
    ("rcu_stall", re.compile(r"rcu: INFO: (?P<flavor>\w+) (?P<msg>(?:self-)?detected stalls? on CPUs?.*)")),
    ("warning", re.compile(r"WARNING: CPU: (?P<cpu>\d+) PID: (?P<pid>\d+) at (?P<where>\S+) (?P<func>\S+)(?: \[(?P<mod>[^\]]+)\])?")),
]
_CPU_LINE = re.compile(r"^CPU: (?P<cpu>\d+) PID: (?P<pid>\d+) Comm: (?P<comm>.+?) (?:Kdump: \w+ )?(?P<taint>Not tainted|Tainted: [A-Z ]+?)\s")
_RIP = re.compile(r"^RIP: (?P<seg>[0-9a-f]{4}):(?P<where>\S+(?: \[[^\]]+\])?)")
_ERR = re.compile(r"(?:Oops|general protection fault|invalid opcode)[^:]*: (?P<code>[0-9a-f]{4}) \[#\d+\]")
_TRACE_FRAME = re.compile(r"^\s*(?P<q>\? )?(?P<func>[A-Za-z_.$][\w.$]*\+0x[0-9a-f]+/0x[0-9a-f]+)(?: \[(?P<mod>[^\]]+)\])?")


def scan(lines: list[LogLine], context: int = 6) -> list[Event]:
    """Every recognised event in log order, each with its key line and a few following."""
    events: list[Event] = []
    for i, ln in enumerate(lines):
        text = ln.text.strip()
        for kind, pat in _PATTERNS:
            m = pat.search(text)
            if not m:
                continue
            facts = {k: v for k, v in m.groupdict().items() if v is not None}
            events.append(Event(kind, text, ln.ts, [l.text for l in lines[i:i + context]], facts))
            break
    return events


def crash_from_log(lines: list[LogLine]) -> Crash:
    """The crash reason and oops details: the last panic, else the last oops/BUG, with the
    CPU/PID/Comm, RIP and call trace printed around it."""
    events = scan(lines)
    fatal = [e for e in events if e.kind == "panic"]
    oopses = [e for e in events if e.kind in ("oops", "bug")]
    c = Crash()
    if fatal:
        c.reason, c.kind = fatal[-1].facts.get("msg", fatal[-1].summary), "panic"
    if oopses:
        first = oopses[0]
        c.message = first.summary
        if c.reason is None:
            c.reason, c.kind = first.summary, first.kind
        elif c.kind == "panic" and c.reason.startswith("Fatal exception"):
            c.kind = first.kind
    if c.reason is None:
        for kind in ("soft_lockup", "hard_lockup", "hung_task", "rcu_stall", "oom", "warning"):
            found = [e for e in events if e.kind == kind]
            if found:
                c.reason, c.kind = found[-1].summary, kind
                break
    # Details printed after the first oops (or the panic): CPU line, RIP, call trace.
    anchor_ts = (oopses[0].ts if oopses else fatal[-1].ts if fatal else None)
    start = 0
    if anchor_ts is not None:
        start = next((i for i, l in enumerate(lines) if l.ts == anchor_ts), 0)
    in_trace = False
    for ln in lines[start:start + 400]:
        t = ln.text.strip()
        if c.cpu is None and (m := _CPU_LINE.match(t)):
            c.cpu, c.pid, c.comm = int(m["cpu"]), int(m["pid"]), m["comm"]
            c.tainted = m["taint"]
        elif c.rip is None and (m := _RIP.match(t)) and m["seg"] == "0010":
            c.rip = m["where"]
        elif c.error_code is None and (m := _ERR.search(t)):
            c.error_code = m["code"]
        if t == "Call Trace:":
            in_trace = True
            continue
        if in_trace:
            if t in ("<TASK>", "<IRQ>", "</IRQ>", "<NMI>", "</NMI>"):
                continue
            m = _TRACE_FRAME.match(t)
            if m:
                if not m["q"]:
                    c.call_trace.append(m["func"] + (f" [{m['mod']}]" if m["mod"] else ""))
                continue
            in_trace = False
    return c


def normalize_reason(reason: str) -> str:
    """The reason without what differs between two crashes of one bug: addresses, numbers,
    PIDs, comm names in brackets, timings."""
    r = re.sub(r"\[[^\]]*:\d+\]", "[TASK]", reason)
    r = re.sub(r"\b0x[0-9a-fA-F]+\b|\b[0-9a-f]{8,16}\b", "ADDR", r)
    r = re.sub(r"\d+", "N", r)
    return re.sub(r"\s+", " ", r).strip()
