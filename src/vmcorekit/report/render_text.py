"""The triage report for a person at a terminal: headings, aligned tables, colored levels.
One layout on a terminal and in a pipe (never wrapped or cut to the terminal's width, no
trailing spaces); color only as decoration, off when piped or with NO_COLOR."""
from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..util.text import printable

# where a title came from, in words
_SOURCE_WORDS = {"log": "log", "log+dump": "log and the stuck CPU's backtrace", "stack": "backtrace"}

LEVEL_STYLE = {0: "bold red", 1: "bold red", 2: "bold red", 3: "red", 4: "yellow", 5: "cyan", 6: "", 7: "dim"}


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _fmt_secs(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(s)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d} days, " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def _taint_text(t: dict[str, Any] | None) -> str:
    if not t or t.get("mask") is None:
        return "?"
    if t["mask"] == 0:
        return "Not tainted"
    return f"{t.get('text') or ''} (mask {t['mask']:#x}) " + ", ".join(t.get("flags") or [])


def _title_text(cr: dict[str, Any]) -> str:
    """"KASAN: ... in f  (from the log, bucket 0123456789abcdef)"; "?" without a title."""
    if not cr.get("title"):
        return "?"
    sig = cr.get("signature") or {}
    return (f"{cr['title']}  (from the {_SOURCE_WORDS.get(cr.get('title_source'), 'backtrace')}, "
            f"bucket {sig.get('id')}, rules v{sig.get('rules_version')})")


def _shown(v: Any) -> Any:
    """The report with every string made printable (util.text): comms, log lines, module
    and symbol names come from the dump and may carry terminal controls."""
    if isinstance(v, str):
        return printable(v)
    if isinstance(v, dict):
        return {k: _shown(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_shown(x) for x in v]
    return v


# Wide enough that rich never wraps or cuts a line: the layout does not depend on the terminal.
_WIDTH = 4096
# a line's tail of spaces and colour codes (rich styles the padding of a bold header cell too)
_TRAILING = re.compile(r"(?:[ \t]|\x1b\[[0-9;]*m)+$", re.M)
_CODE = re.compile(r"\x1b\[[0-9;]*m")


def _rstrip(m: re.Match[str]) -> str:
    return "".join(_CODE.findall(m.group(0)))  # the codes stay (a reset ends the style), spaces go


class _Plain:
    """rich's console, printed plainly: a heading is its title under a blank line, with a fixed
    rule (not one as wide as the terminal); every line loses its trailing spaces (rich pads
    table cells and grids to their column's width)."""

    def __init__(self, console: Console) -> None:
        self._c = console
        self._started = False

    def rule(self, title: "str | Text") -> None:
        if self._started:
            self.print("")
        self.print(title, style="bold")
        self.print("-" * 72, style="dim")

    def print(self, *objects: Any, **kw: Any) -> None:
        with self._c.capture() as cap:
            self._c.print(*objects, **kw)
        self._c.file.write(_TRAILING.sub(_rstrip, cap.get()))
        self._started = True


def render_text(r: dict[str, Any], console: Console | None = None) -> None:
    r = _shown(r)
    c = _Plain(console or Console(highlight=False, soft_wrap=True, width=_WIDTH))
    sec = r.get("sections", {})

    def failed(name: str, title: str) -> bool:
        st = sec.get(name)
        if st and not st.get("ok"):
            c.rule(f"{title}")
            c.print(f"[dim]unavailable: {st.get('error')}[/dim]")
            return True
        return name not in r

    k, cr, sig = r.get("kernel", {}), r.get("crash", {}), r.get("signature", {})
    c.rule("Crash summary")
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    rows = [
        ("dump", f"{r['dump'].get('path')} ({r['dump'].get('format')}"
                 f"{', ' + str(r['dump'].get('codec')) if r['dump'].get('codec') else ''}"
                 f"{', level ' + str(r['dump'].get('dump_level')) if r['dump'].get('dump_level') else ''}"
                 f"{', INCOMPLETE' if r['dump'].get('incomplete') else ''})"),
        ("panic", Text(str(cr.get("reason") or "unknown"), style="bold red")),
        ("kind", str(cr.get("kind") or "?")),
        ("title", Text(_title_text(cr))),
        ("task", f"PID {cr.get('pid')} ({cr.get('comm')}) on CPU {cr.get('cpu')}"
                 + ("  (from the log: its task_struct does not read)" if cr.get("task_source") == "log" else "")
         if cr else "?"),
        ("signature", f"{sig.get('id', '?')}  {' < '.join(sig.get('frames', []))}"),
        ("release", f"{k.get('release') or '?'}  {k.get('version') or ''}"),
        ("build id", str(k.get("build_id") or "?")),
        ("machine", f"{k.get('machine') or r['dump'].get('arch')}, {k.get('cpus')} CPUs, "
                    f"{_fmt_bytes(k.get('memory_bytes'))}, node {k.get('nodename') or '?'}"),
        ("crash time", f"{k.get('date') or 'not recorded'}"),
        ("uptime", _fmt_secs(k.get("uptime_seconds"))),
        ("load average", ", ".join(f"{x:.2f}" for x in k["load_average"]) if k.get("load_average") else "?"),
        ("tainted", _taint_text(r.get("taint"))),
    ]
    if cr.get("message"):
        rows.insert(2, ("oops", cr["message"]))
    if cr.get("rip"):
        rows.insert(3, ("RIP", f"{cr['rip']}" + (f"  error code {cr['error_code']}" if cr.get("error_code") else "")))
    for a, b in rows:
        summary.add_row(a, b)
    c.print(summary)
    for note in cr.get("cross_check", []):
        c.print(f"[dim]check: {note}[/dim]")

    if not failed("backtrace", "Backtrace of the panicking task"):
        c.rule("Backtrace of the panicking task")
        c.print(Text(r["backtrace"]["text"]))
    if not failed("other_cpus", "Other CPUs"):
        c.rule("Other CPUs")
        if not r["other_cpus"]:
            c.print("[dim]no other CPU has registers in the dump[/dim]")
        for g in r["other_cpus"]:
            cpus = ",".join(map(str, g["cpus"]))
            off = " (stopped by the panic)" if g.get("offline") else ""
            c.print(f"[bold]CPU {cpus}{off}[/bold]")
            c.print(Text(g["trace"]["text"] if "trace" in g else f"unavailable: {g.get('error')}"))
    _render_explain(c, r, failed)
    if not failed("events", "Log signatures"):
        c.rule("Log signatures")
        interesting = [e for e in r["events"]]
        if not interesting:
            c.print("[dim]no panic/oops/lockup/hung-task/OOM/RCU-stall lines recognised[/dim]")
        for e in interesting[-20:]:
            ts = f"[{e['ts']:12.6f}] " if e.get("ts") is not None else ""
            c.print(f"[bold]{e['kind']}[/bold] {ts}{e['summary']}")
    if not failed("log", "Kernel log"):
        lg = r["log"]
        if lg.get("errors_warnings"):
            c.rule("Errors and warnings in the log")
            _print_records(c, lg["errors_warnings"])
        c.rule(f"Last {len(lg['tail'])} log lines")
        if not lg.get("levels_known"):
            c.print(f"[dim]{lg.get('levels_note')}[/dim]")
        _print_records(c, lg["tail"])
        for gap in lg.get("gaps", []):
            c.print(f"[yellow]gap: {gap}[/yellow]")
    if not failed("blocked_tasks", "Tasks in uninterruptible sleep (D)"):
        b = r["blocked_tasks"]
        c.rule(f"Tasks in uninterruptible sleep (D): {b['count']}")
        for g in b["groups"]:
            names = ", ".join(f"{t['pid']} {t['comm']}" + (f" ({_fmt_secs(t['slept_seconds'])})"
                                                          if t.get("slept_seconds") is not None else "")
                              for t in g["tasks"][:20])
            c.print(f"[bold]{len(g['tasks'])} task(s):[/bold] {names}")
            c.print(Text(g["stack"]))
    _render_hung(c, r, failed)
    if not failed("memory", "Memory"):
        m = r["memory"]
        c.rule("Memory")
        s = m.get("summary")
        if s:
            ps = s["page_size"]
            t = Table("", "pages", "size", box=None)
            for key in ("total", "free", "used", "shared", "buffers", "cached", "slab", "swap_total", "swap_used",
                        "commit_limit", "committed"):
                v = s["pages"].get(key)
                t.add_row(key.replace("_", " "), "?" if v is None else str(v),
                          "?" if v is None else _fmt_bytes(v * ps))
            c.print(t)
        elif m.get("summary_error"):
            c.print(f"[dim]summary unavailable: {m['summary_error']}[/dim]")
        if m.get("top_rss"):
            t = Table("PID", "COMM", "RSS", title="Top tasks by RSS", box=None)
            for row in m["top_rss"]:
                t.add_row(str(row["pid"]), row["comm"], _fmt_bytes(row["rss_bytes"]))
            c.print(t)
    if not failed("modules", "Modules"):
        c.rule(f"Modules: {len(r['modules'])}")
        t = Table("NAME", "BASE", "SIZE", "TAINT", "FLAGS", box=None)
        for m in r["modules"]:
            flags = []
            if m.get("out_of_tree"):
                flags.append("[red]out-of-tree[/red]")
            if m.get("unsigned"):
                flags.append("[yellow]unsigned[/yellow]")
            t.add_row(m["name"], str(m.get("base")), str(m.get("size")), m.get("taint_letters") or "",
                      " ".join(flags))
        c.print(t)
    bad = [f"{n}: {s['error']}" for n, s in sec.items() if not s.get("ok")]
    if bad:
        c.rule("Sections not computed")
        for b in bad:
            c.print(f"[dim]{b}[/dim]")


def _print_records(c: _Plain, recs: list[dict[str, Any]]) -> None:
    for rec in recs:
        ts = rec.get("ts_nsec", 0)
        stamp = f"[{ts // 1_000_000_000:5d}.{ts % 1_000_000_000 // 1000:06d}] "
        style = LEVEL_STYLE.get(rec.get("level", 6), "") if rec.get("level") is not None else ""
        c.print(Text(stamp + rec["text"], style=style))


def _render_hung(c: Console, r: dict[str, Any], failed: Any) -> None:
    """Hung tasks: each with how long, what it waits on and who holds it; the chains of
    holders with their root's state and stack; deadlocks. Nothing hung: one line per held
    lock a blocked task waits on, no section."""
    if "hung_tasks" not in r and not r.get("sections", {}).get("hung_tasks", {"ok": True}).get("ok"):
        failed("hung_tasks", "Hung tasks")
        return
    h = r.get("hung_tasks")
    if not h:
        return

    def waits(t: dict[str, Any]) -> str:
        w = t.get("wait")
        if not w:
            return ""
        if w["kind"] == "sleep":
            return f"  sleeping in {w.get('frame')}"
        out = f"  waits on {w['kind']} {_lock(w)}"
        if w.get("owner_pid") is not None:
            out += f" held by {w['owner_pid']} {w.get('owner_comm')} [{w.get('owner_state')}]"
        elif w.get("owner") and w.get("reader_owned"):
            out += f" (reader-owned; last reader {w['owner']})"
        elif w.get("owner"):
            out += f" owner {w['owner']} (not a known task)"
        if w.get("owner_flags"):
            out += f" ({', '.join(w['owner_flags'])})"
        return out

    if not h["hung_count"]:
        for t in h["tasks"]:
            if t.get("wait") and t["wait"].get("owner_pid") is not None:
                c.print(Text(f"blocked, not hung past the {h['timeout_seconds']} s timeout: "
                             f"{t['pid']} {t['comm']}{waits(t)}", style="dim"))
        return
    c.rule(Text(f"Hung tasks: {h['hung_count']} (timeout {h['timeout_seconds']} s: {h['timeout_source']})",
                style="bold"))
    for t in h["tasks"]:
        dur = []
        if t.get("blocked_seconds") is not None:
            dur.append(f"blocked {_fmt_secs(t['blocked_seconds'])}")
        if t.get("hung_seconds") is not None:
            dur.append(f"no switch for {t['hung_seconds']:.1f} s (khungtaskd's jiffies)")
        # Text, not markup: names from the dump may look like markup ("[zoo]+0x4170").
        c.print(Text.assemble(("hung " if t["hung"] else "", "bold red"),
                              (f"{t['pid']} {t['comm']}", "bold"),
                              f" {t['doing']}  {', '.join(dur)}{waits(t)}"))
        for p in t.get("problems", []):
            c.print(Text(f"  {p}", style="dim"))
    for ch in h["chains"]:
        c.print(Text(f"chain: {ch['text']}" + ("  (into a deadlock)" if ch["into_deadlock"] else ""),
                     style="bold"))
        root = ch.get("root")
        if root:
            c.print(Text(f"root: {root['pid']} {root['task']} holds {root['holds']}, {root['state']}",
                         style="bold"))
            c.print(Text(root["stack"]["text"]))
    for d in h["deadlocks"]:
        c.print(Text(d["text"], style="bold red"))
        for st in d["stacks"]:
            c.print(Text(st["text"]))
    for n in h.get("notes", []):
        c.print(Text(f"note: {n}", style="dim"))


def _lock(w: dict[str, Any]) -> str:
    if w.get("name"):
        return str(w["name"])
    return f"{w.get('lock_type') or ''} {w.get('lock') or '?'}".strip()


def _cpu_list(cpus: list[int]) -> str:
    return ",".join(map(str, cpus))


def _render_explain(c: Console, r: dict[str, Any], failed: Any) -> None:
    """Lockup/stall, interrupt context and OOM sections (report/explain_cpu.py, explain_oom.py)."""
    if "lockup" in r or not r.get("sections", {}).get("lockup", {}).get("ok", True):
        if not failed("lockup", "Lockup / stall"):
            lk = r["lockup"]
            c.rule(Text(f"Lockup / stall: {lk['kind'].replace('_', ' ')}", style="bold"))
            for line in lk.get("log_reports", [])[:5]:
                c.print(Text(f"log: {line}", style="dim"))
            rcu = lk.get("rcu")
            if rcu and rcu.get("in_progress"):
                c.print(Text(f"{rcu['name']}: grace period {rcu['gp_seq']} in flight for "
                             f"{rcu['age_seconds']} s, held up by CPU(s) {_cpu_list(rcu['holding_cpus']) or 'none'}"))
            for s in lk["stalled"]:
                secs = "?" if s.get("seconds") is None else f"{s['seconds']} s"
                c.print(Text(f"CPU {s['cpu']} stuck for {secs} (from {s.get('seconds_source')}"
                             + (f"; the log said {s['log_seconds']} s" if s.get("log_seconds") else "")
                             + f"): PID {s.get('pid')} ({s.get('comm')}) in {s.get('where')}; "
                             f"context: {s.get('context')}", style="bold"))
                c.print(Text(s.get("text") or f"stack unavailable: {s.get('error')}"))
            for note in lk.get("cross_check", []):
                c.print(Text(f"check: {note}", style="dim"))
            if lk.get("other_cpus"):
                c.print(Text("Other CPUs, grouped by equal stacks:", style="bold"))
                for g in lk["other_cpus"]:
                    who = f" PID {g['pid']} ({g['comm']})" if g.get("pid") is not None else ""
                    frames = " < ".join(g.get("functions", [])[:8]) or f"unavailable: {g.get('error')}"
                    c.print(Text(f"  CPU {_cpu_list(g['cpus'])}{who}: {frames}"))
    if not failed("interrupt", "Interrupt context"):
        it = r["interrupt"]
        c.rule(Text("Interrupt context", style="bold"))
        if it.get("summary"):
            c.print(Text(it["summary"], style="bold"))
        for row in it["cpus"]:
            pend = ",".join(row.get("pending_softirqs") or []) or "none"
            c.print(Text(f"  CPU {row['cpu']}{' (panic)' if row.get('panic') else ''}: {row['summary']}  "
                         f"[preempt_count {row.get('preempt_count') or '?'}, pending softirqs {pend}]"))
    if "oom" in r or not r.get("sections", {}).get("oom", {}).get("ok", True):
        if not failed("oom", "Out of memory"):
            _render_oom(c, r["oom"])


def _render_oom(c: Console, o: dict[str, Any]) -> None:
    ps = o.get("page_size") or 4096

    def size(pages: int | None) -> str:
        return "?" if pages is None else _fmt_bytes(pages * ps)

    c.rule(Text("Out of memory", style="bold"))
    if o.get("verdict"):
        c.print(Text(f"verdict: {o['verdict']}", style="bold red"))
    lg = o.get("log", {})
    facts = [f"{k}={lg[k]}" for k in ("invoker", "invoker_pid", "gfp_mask", "order", "constraint",
                                      "task_memcg", "victim_pid", "victim_comm") if lg.get(k) is not None]
    if lg.get("panic") is not None:
        facts.append(f"panic_on_oom ({lg['panic'] or 'no killable task'})")
    if facts:
        c.print(Text("log: " + ", ".join(facts), style="dim"))
    sl = o.get("slab", {})
    c.print(Text(f"RAM {size(o.get('total_ram_pages'))}; slab unreclaimable {size(sl.get('sunreclaim_pages'))} "
                 f"(caches {size(sl.get('caches_unreclaimable_pages'))}), reclaimable "
                 f"{size(sl.get('sreclaimable_pages'))}; page cache {size(o.get('page_cache_pages'))}; "
                 f"shmem {size(o.get('shmem_pages'))}; anon {size(o.get('anon_pages'))}; huge pages "
                 f"{size((o.get('hugepages') or {}).get('total_pages'))}"))
    mc = o.get("memcg")
    if mc:
        c.print(Text(f"memcg {mc['name']}: charged {_fmt_bytes(mc['usage_bytes'])}, memory.max "
                     f"{'unlimited' if mc.get('max_bytes') is None else _fmt_bytes(mc['max_bytes'])}"))
    if sl.get("top"):
        t = Table("CACHE", "OBJSIZE", "OBJECTS", "SLABS", "SIZE", "RECLAIMABLE", title="Top slab caches", box=None)
        for x in sl["top"]:
            t.add_row(Text(x["name"]), str(x["object_size_bytes"]), str(x["objects"]), str(x["slabs"]),
                      _fmt_bytes(x["bytes"]), "yes" if x["reclaimable"] else "no")
        c.print(t)
    if o.get("top_tasks"):
        t = Table("PID", "COMM", "ANON", "FILE", "SHMEM", "SWAP", "%RAM", title="Top tasks (per mm)", box=None)
        for x in o["top_tasks"]:
            t.add_row(str(x.get("pid")), Text(x["name"]), size(x.get("anon_pages")), size(x.get("file_pages")),
                      size(x.get("shmem_pages")), size(x.get("swap_pages")), str(x.get("percent_of_ram")))
        c.print(t)
    for n in o.get("notes", []):
        c.print(Text(f"note: {n}", style="dim"))
