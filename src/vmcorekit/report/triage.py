"""The one-shot crash report: what happened, where, in which task, after what.

Every section is computed on its own: a section that cannot be computed records why in one
line (`sections[name]`) and the rest of the report still appears. The result is a plain dict
(JSON-ready, schema in src/vmcorekit/schemas/triage.json); the renderers (text, HTML) only format it.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from ..errors import VmcorekitError
from ..program import Program
from ..kernel.printk.events import Frame, function_name
from .logscan import LogLine, crash_from_log, normalize_reason, scan
from .signature import crash_signature
from .titles import Title, stack_title, title_log, title_of

SCHEMA = "vmcorekit-triage/1"
LOG_TAIL = 50
MAX_D_TASKS = 200
TOP_RSS = 10


class Report:
    """Collects sections, each guarded so one failure never sinks the report."""

    def __init__(self, prog: Program, path: str) -> None:
        self.prog = prog
        self.data: dict[str, Any] = {"schema": SCHEMA, "dump": {"path": path}, "sections": {}}
        self._log: Any = None
        self._lines: list[LogLine] | None = None
        self._tasks: list[Any] | None = None

    def section(self, name: str, fn: Callable[[], Any]) -> None:
        t = time.perf_counter()
        try:
            value = fn()
        except (VmcorekitError, LookupError, ValueError, ArithmeticError, OSError) as e:
            self.data["sections"][name] = {"ok": False, "error": _one_line(e),
                                           "seconds": round(time.perf_counter() - t, 3)}
            return
        if value is not None:
            self.data[name] = value
        self.data["sections"][name] = {"ok": True, "seconds": round(time.perf_counter() - t, 3)}

    # -- shared inputs ---------------------------------------------------------------------
    def log(self) -> Any:
        if self._log is None:
            from ..kernel.printk import read_log
            self._log = read_log(self.prog)
        return self._log

    def log_lines(self) -> list[LogLine]:
        if self._lines is None:
            out = []
            for r in self.log().records:
                text = r.text.decode("utf-8", "backslashreplace")
                for i, part in enumerate(text.split("\n")):
                    out.append(LogLine(r.ts_nsec / 1e9, part, r.level))
            self._lines = out
        return self._lines

    def tasks(self) -> list[Any]:
        if self._tasks is None:
            from ..kernel.tasks import task_table
            self._tasks = task_table(self.prog, warnings=self.data.setdefault("task_warnings", []))
        return self._tasks


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _frames(trace: Any) -> list[dict[str, Any]]:
    out = []
    for f in trace.frames:
        out.append({"function": f.function, "offset": f.offset, "module": f.module, "pc": f"{f.pc:#x}",
                    "symbolic": f.symbolic, "reliable": f.reliable, "stack": f.stack,
                    "interrupted": f.exception is not None})
    return out


def _trace_dict(trace: Any) -> dict[str, Any]:
    first = trace.frames[0] if trace.frames else None
    rip = None
    if first is not None and first.exception is not None:
        rip = first.symbolic
    return {"pid": trace.pid, "comm": trace.comm, "cpu": trace.cpu,
            "task": None if trace.task is None else f"{trace.task:#x}", "unwinder": trace.unwinder,
            "complete": trace.complete, "end_reason": trace.end_reason, "exception_rip": rip,
            "frames": _frames(trace), "text": str(trace)}


def collect(prog: Program, path: str) -> dict[str, Any]:
    """Every section of the triage report for one open dump."""
    rep = Report(prog, path)
    d = rep.data

    def dump_section() -> dict[str, Any]:
        info = prog.phys.info
        size = sum(os.path.getsize(p) for p in path.split(",") if os.path.exists(p))
        return {"path": path, "format": info.format, "codec": info.codec, "bytes": size,
                "dump_level": info.dump_level, "incomplete": info.incomplete, "arch": prog.arch}

    rep.section("dump", dump_section)

    def kernel_section() -> dict[str, Any]:
        from ..kernel.sysinfo import system_info
        si = system_info(prog).as_dict()
        si["build_id"] = prog.vmcoreinfo.build_id
        si["kaslr_offset"] = f"{prog.vmcoreinfo.kerneloffset:#x}"
        return si

    rep.section("kernel", kernel_section)

    def crash_section() -> dict[str, Any]:
        c = crash_from_log(rep.log_lines())
        out = {"reason": c.reason, "kind": c.kind, "message": c.message, "rip": c.rip,
               "error_code": c.error_code, "log_cpu": c.cpu, "log_pid": c.pid, "log_comm": c.comm,
               "tainted": c.tainted, "log_call_trace": c.call_trace}
        from ..kernel.panic import crash_context
        ctx = crash_context(prog)
        out["cpu"], out["cpu_source"] = ctx.cpu, ctx.how
        out["pid"] = ctx.pid
        out["task"] = None if ctx.task is None else f"{int(ctx.task):#x}"
        try:
            out["comm"] = ctx.task.comm.string_().decode("utf-8", "replace") if ctx.task is not None else None
        except VmcorekitError:
            out["comm"] = None
        checks = list(ctx.notes)
        out["task_source"] = "dump" if out["pid"] is not None else None
        if out["pid"] is None and c.pid is not None and (ctx.cpu is None or c.cpu in (None, ctx.cpu)):
            # the task_struct did not read (a filter dropped its page): the log's header names it
            out["pid"], out["comm"], out["task_source"] = c.pid, c.comm, "log"
            checks.append(f"the panicking task's task_struct does not read; PID {c.pid} ({c.comm}) from the log")
        if c.cpu is not None and ctx.cpu is not None and c.cpu != ctx.cpu:
            checks.append(f"the log names CPU {c.cpu}, the dump's panic_cpu is {ctx.cpu}")
        if c.pid is not None and out["task_source"] == "dump" and c.pid != out["pid"]:
            checks.append(f"the log names PID {c.pid}, the task on the panicking CPU is PID {out['pid']}")
        out["cross_check"] = checks or ["log, panic_cpu and the CPU's current task agree"]
        first, _ = title_log(ln.text for ln in rep.log_lines())
        if first is not None and first.report is not None:
            first = _noreturn_fixed(prog, first) or first
        if first is not None and first.report is not None and first.report.guilty is None:
            first = _stall_title_from_dump(prog, first) or first
        if first is not None:
            out.update(_title_fields(first))
        return out

    rep.section("crash", crash_section)

    def backtrace_section() -> dict[str, Any]:
        from ..kernel.stacks import stack_trace
        return _trace_dict(stack_trace(prog))

    rep.section("backtrace", backtrace_section)

    def title_section() -> None:
        """No crash report in the log (or the log was overwritten): the title comes from the
        panicking task's backtrace."""
        crash = d.get("crash")
        if crash is None or crash.get("title_source") is not None:
            return None
        frames = d.get("backtrace", {}).get("frames", [])
        if not frames:
            return None     # neither a report in the log nor a backtrace: no title
        arch = prog.platform.name
        t = stack_title("kernel panic", [Frame(function_name(f["function"]), f["function"], None, None,
                                               f.get("module"), bool(f.get("reliable", True)))
                                         for f in frames if f.get("function")], arch)
        crash.update(_title_fields(t))
        return None

    rep.section("title", title_section)

    def cpus_section() -> list[dict[str, Any]]:
        from ..kernel.cpus import online_cpus
        from ..kernel.stacks import stack_trace
        panic_cpu = d.get("crash", {}).get("cpu")
        groups: dict[tuple[str, ...], dict[str, Any]] = {}
        # CPUs stopped by the panic are no longer "online", but their register notes remain.
        online = set(online_cpus(prog))
        for cpu in sorted(online | {c.cpu for c in prog.cpus}):
            if cpu == panic_cpu:
                continue
            try:
                t = stack_trace(prog, cpu=cpu)
            except (LookupError, VmcorekitError) as e:
                groups.setdefault(("error", _one_line(e)), {"cpus": [], "error": _one_line(e)})["cpus"].append(cpu)
                continue
            key = tuple(t.functions())
            g = groups.setdefault(key, {"cpus": [], "trace": _trace_dict(t)})
            g["cpus"].append(cpu)
            if cpu not in online:
                g.setdefault("offline", []).append(cpu)
        return list(groups.values())

    rep.section("other_cpus", cpus_section)

    def log_section() -> dict[str, Any]:
        from ..kernel.printk import json_record
        log = rep.log()
        recs = log.records
        out: dict[str, Any] = {"records": len(recs), "levels_known": bool(getattr(log, "levels_known", False)),
                               "gaps": [str(w) for w in log.warnings]}
        out["tail"] = [json_record(r) for r in recs[-LOG_TAIL:]]
        if out["levels_known"]:
            out["errors_warnings"] = [json_record(r) for r in recs if r.level is not None and r.level <= 4][-LOG_TAIL:]
        else:
            out["levels_note"] = getattr(log, "levels_note", None) or "levels unknown (no BTF)"
        return out

    rep.section("log", log_section)

    def events_section() -> list[dict[str, Any]]:
        return [{"kind": e.kind, "summary": e.summary, "ts": e.ts, "lines": e.lines, "facts": e.facts}
                for e in scan(rep.log_lines())]

    rep.section("events", events_section)

    def taint_section() -> dict[str, Any]:
        from ..kernel.sysinfo import tainted
        mask, text, letters = tainted(prog)
        return {"mask": mask, "text": text, "flags": letters}

    rep.section("taint", taint_section)

    def d_state_section() -> dict[str, Any]:
        from ..kernel.stacks import stack_trace
        from ..kernel.tasks import find_task
        blocked = [t for t in rep.tasks() if t.state == "D"][:MAX_D_TASKS]
        groups: dict[tuple[str, ...], dict[str, Any]] = {}
        for t in blocked:
            slept = _slept_seconds(prog, t)
            try:
                tr = stack_trace(prog, t.task)
                key, text = tuple(tr.functions()), str(tr)
            except (LookupError, VmcorekitError) as e:
                key, text = ("error",), _one_line(e)
            g = groups.setdefault(key, {"tasks": [], "stack": text})
            g["tasks"].append({"pid": t.pid, "comm": t.comm, "slept_seconds": slept})
        del find_task
        return {"count": len(blocked), "groups": list(groups.values())}

    rep.section("blocked_tasks", d_state_section)
    rep.section("hung_tasks", lambda: _hung_tasks(rep))

    def memory_section() -> dict[str, Any]:
        out: dict[str, Any] = {}
        from ..kernel.meminfo import memory_summary
        try:
            out["summary"] = memory_summary(prog).as_dict()
        except (VmcorekitError, LookupError) as e:
            out["summary_error"] = _one_line(e)
        top = sorted(rep.tasks(), key=lambda t: t.rss.total, reverse=True)[:TOP_RSS]
        ps = prog.page_size
        out["top_rss"] = [{"pid": t.pid, "comm": t.comm, "rss_bytes": t.rss.total * ps} for t in top
                          if t.rss.total]
        return out

    rep.section("memory", memory_section)

    def modules_section() -> list[dict[str, Any]]:
        from ..kernel.modules import module_table
        return [m.as_dict() for m in module_table(prog)]

    rep.section("modules", modules_section)

    def signature_section() -> dict[str, Any]:
        # One bucket id per report: the title engine's (crash.signature) when there is a title.
        crash = d.get("crash", {})
        sig = crash.get("signature")
        if sig:
            return {"id": sig["id"], "reason": normalize_reason(crash.get("reason") or crash.get("title") or "unknown"),
                    "frames": list(sig.get("frames", [])), "rules_version": sig.get("rules_version")}
        frames = [f["symbolic"] for f in d.get("backtrace", {}).get("frames", [])]
        if not frames:
            frames = crash.get("log_call_trace", [])
        return crash_signature(crash.get("reason"), frames).to_dict()

    rep.section("signature", signature_section)
    _explain_sections(rep)
    # JSON-native from here on (tuples become lists): what the library returns is what
    # --json prints and what the schema describes.
    return json.loads(json.dumps(d, default=str))


def _noreturn_fixed(prog: Program, t: Title) -> Title | None:
    """The report re-titled when its trace printed a return address as `next_function+0x0`: the
    call before it was the last instruction of its function (a noreturn call such as panic()),
    and arm64 prints return addresses unadjusted. The dump's symbols name the byte before it.
    None when no frame needed it."""
    from dataclasses import replace as _replace
    from ..kernel.printk.events import restacked
    rep = t.report
    frames = list(rep.stack)
    changed = False
    for i, f in enumerate(frames):
        if i == 0 or f.offset != 0 or not f.reliable or f.inline:
            continue
        try:
            addr = prog.try_symbol_address(f.function if f.module is None else f"{f.module}:{f.function}")
            sym = None if addr is None else prog.symbols.lookup(addr - 1)
        except (VmcorekitError, LookupError):
            continue
        if sym is None or not sym.is_text or function_name(sym.name) == f.function:
            continue
        frames[i] = _replace(f, function=function_name(sym.name), raw=sym.name, offset=addr - sym.address,
                             size=sym.size or None, module=sym.module)
        changed = True
    if not changed:
        return None
    new = restacked(rep, frames, section=None)
    return None if new is None else title_of(new)


def _stall_title_from_dump(prog: Program, t: Title) -> Title | None:
    """A stall report whose log names no guilty frame (the stuck CPU's stack was never printed):
    its frame from the stuck CPU's backtrace in the dump, by the same family's rules."""
    from ..kernel.printk.events import restacked, stalled_cpus
    from ..kernel.stacks import stack_trace
    for cpu in stalled_cpus(t.report)[:64]:
        try:
            trace = stack_trace(prog, cpu=cpu)
        except (LookupError, VmcorekitError):
            continue
        frames = [Frame(function_name(f.function), f.function, f.offset, None, f.module, f.reliable,
                        irq=f.exception is not None)
                  for f in trace.frames if f.function]
        new = restacked(t.report, frames)
        if new is not None and new.guilty is not None:
            got = title_of(new)
            got.source = "log+dump"
            return got
    return None


def _title_fields(t: Title) -> dict[str, Any]:
    """The crash's title fields (src/vmcorekit/schemas/triage.json: crash.title, ...)."""
    return {"title": t.title, "alt_titles": list(t.alt_titles), "class": t.cls, "guilty_frame": t.guilty_frame,
            "title_corrupted": t.corrupted, "signature": t.signature, "title_source": t.source}


def _slept_seconds(prog: Program, t: Any) -> float | None:
    """How long a blocked task has been off the CPU: its runqueue's clock at the crash minus
    the time it last ran (sched_info.last_arrival), both in rq-clock nanoseconds."""
    try:
        from ..kernel.cpus import runqueue as _runqueue
        task = prog.object("struct task_struct", t.task)
        last = int(task.sched_info.last_arrival)
        rq = _runqueue(prog, t.cpu if t.cpu is not None else 0)
        if rq is None or not last:
            return None
        return max(0.0, (int(rq.clock) - last) / 1e9)
    except (VmcorekitError, LookupError, AttributeError):
        return None


def _hung_tasks(rep: Report) -> dict[str, Any] | None:
    """Hung tasks, what they wait on, holder chains and deadlocks (report/hung.py); absent
    when nothing is hung and no blocked task waits on a held lock."""
    from .hung import hung_section
    return hung_section(rep.prog, rep.tasks(), (ln.text for ln in rep.log_lines()))


def triage(path: str, vmcoreinfo: str | None = None) -> dict[str, Any]:
    """Open one dump (a path, or split parts joined by commas) and build its report."""
    t = time.perf_counter()
    with Program.open(path.split(","), vmcoreinfo=vmcoreinfo) as prog:
        data = collect(prog, path)
    data["seconds"] = round(time.perf_counter() - t, 3)
    return data


def _explain_sections(rep: Report) -> None:
    """Lockups and stalls, interrupt context, OOM (report/explain_cpu.py, explain_oom.py)."""
    d = rep.data

    def lockup_section() -> dict[str, Any] | None:
        from .explain_cpu import lockup_report
        return lockup_report(rep.prog, d.get("crash", {}), d.get("events", []))

    rep.section("lockup", lockup_section)

    def interrupt_section() -> dict[str, Any]:
        from .explain_cpu import interrupt_report
        return interrupt_report(rep.prog, d.get("crash", {}))

    rep.section("interrupt", interrupt_section)

    def oom_section() -> dict[str, Any] | None:
        from .explain_oom import oom_report
        return oom_report(rep.prog, d.get("crash", {}), [ln.text for ln in rep.log_lines()], rep.tasks())

    rep.section("oom", oom_section)
