"""The triage report as one self-contained HTML page: summary first, then sections, the log
collapsible, a memory breakdown chart as inline SVG. No scripts, no network resources."""
from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

from ..util.text import printable
from .render_text import _taint_text

# where a title came from, in words
_SOURCE_WORDS = {"log": "log", "log+dump": "log and the stuck CPU's backtrace", "stack": "backtrace"}

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#f6f7f9}
header{background:#1f2a44;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:20px} header .reason{font-size:18px;color:#ffb4b4;font-weight:600}
main{padding:8px 28px 40px;max-width:1200px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;margin:16px 0;padding:12px 18px}
h2{font-size:16px;margin:4px 0 10px}
table{border-collapse:collapse} td,th{padding:2px 12px 2px 0;text-align:left;vertical-align:top}
th{color:#555;font-weight:600}
pre{background:#f3f4f6;padding:8px;overflow-x:auto;font:12px/1.35 ui-monospace,monospace;margin:6px 0}
.muted{color:#777} .lvl0,.lvl1,.lvl2{color:#b00020;font-weight:700} .lvl3{color:#c62828} .lvl4{color:#a86b00}
.lvl5{color:#00677d} .lvl7{color:#888} .flag{border-radius:4px;padding:0 5px;font-size:12px}
.oot{background:#ffd6d6} .unsigned{background:#fff0c2}
summary{cursor:pointer;font-weight:600}
"""


def _e(v: Any) -> str:
    # Markup escaped, and the dump's control bytes shown as \xNN (util.text), never raw.
    return escape(printable("" if v is None else str(v)))


def _kv(rows: list[tuple[str, Any]]) -> str:
    """A two-column table; rows without a value are left out (an oops-only field on a plain panic)."""
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows
                               if v is not None and v != "") + "</table>"


def _items(r: dict[str, Any], key: str, item: Callable[[Any], str], empty: str) -> str:
    """A section that lists items: why it is unavailable, the items, or `empty` in grey."""
    body = _unavailable(r, key)
    if body is None:
        body = "".join(item(x) for x in r[key]) or f'<p class="muted">{_e(empty)}</p>'
    return body


def _unavailable(r: dict[str, Any], name: str) -> str | None:
    st = r.get("sections", {}).get(name)
    if st and not st.get("ok"):
        return f'<p class="muted">unavailable: {_e(st.get("error"))}</p>'
    if name not in r:
        return '<p class="muted">not computed</p>'
    return None


def _records(recs: list[dict[str, Any]]) -> str:
    lines = []
    for rec in recs:
        ts = rec.get("ts_nsec", 0)
        lvl = rec.get("level")
        cls = f' class="lvl{lvl}"' if lvl is not None else ""
        lines.append(f"<span{cls}>[{ts // 1_000_000_000:5d}.{ts % 1_000_000_000 // 1000:06d}] {_e(rec['text'])}</span>")
    return "<pre>" + "\n".join(lines) + "</pre>"


def _memory_chart(summary: dict[str, Any]) -> str:
    """A stacked bar of total memory: free, page cache, slab, other used."""
    p = summary["pages"]
    total = p.get("total") or 0
    if not total:
        return ""
    free = p.get("free") or 0
    cached = p.get("cached") or 0
    slab = p.get("slab") or 0
    other = max(0, total - free - cached - slab)
    parts = [("free", free, "#7cc47f"), ("page cache", cached, "#6fa8dc"), ("slab", slab, "#f6b26b"),
             ("other used", other, "#e06666")]
    width, x, bars, legend = 760, 0.0, [], []
    for i, (name, val, color) in enumerate(parts):
        w = width * val / total
        bars.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="28" fill="{color}"><title>{name}: {val} pages'
                    f'</title></rect>')
        legend.append(f'<rect x="{i * 190}" y="40" width="12" height="12" fill="{color}"/>'
                      f'<text x="{i * 190 + 18}" y="51" font-size="12">{name} {100 * val / total:.0f}%</text>')
        x += w
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="60" role="img" '
            f'aria-label="memory breakdown">{"".join(bars)}{"".join(legend)}</svg>')


def _title_text(cr: dict[str, Any]) -> str | None:
    """"KASAN: ... in f  (from the log, bucket 0123456789abcdef)"."""
    if not cr.get("title"):
        return None
    sig = cr.get("signature") or {}
    return (f"{cr['title']}  (from the {_SOURCE_WORDS.get(cr.get('title_source'), 'backtrace')}, "
            f"bucket {sig.get('id')}, rules v{sig.get('rules_version')})")


def render_html(r: dict[str, Any]) -> str:
    k, cr, sig, dump = r.get("kernel", {}), r.get("crash", {}), r.get("signature", {}), r.get("dump", {})
    out = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
           "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
           f"<title>vmcorekit triage: {_e(cr.get('reason') or dump.get('path'))}</title><style>{CSS}</style></head><body>",
           f"<header><h1>{_e(k.get('release') or 'unknown kernel')} — {_e(dump.get('path'))}</h1>",
           f"<div class=\"reason\">{_e(cr.get('reason') or 'panic reason unknown')}</div>",
           f"<div>signature {_e(sig.get('id'))} · PID {_e(cr.get('pid'))} ({_e(cr.get('comm'))}) on CPU {_e(cr.get('cpu'))}"
           f" · {_e(k.get('date') or 'crash time not recorded')}</div></header><main>"]
    out.append("<section><h2>Summary</h2>" + _kv([
        ("panic", cr.get("reason")), ("title", _title_text(cr)), ("kind", cr.get("kind")),
        ("oops", cr.get("message")),
        ("RIP", cr.get("rip")), ("error code", cr.get("error_code")),
        ("task", f"PID {cr.get('pid')} ({cr.get('comm')}) task {cr.get('task')} CPU {cr.get('cpu')}"),
        ("signature", f"{sig.get('id')}  {' < '.join(sig.get('frames', []))}"),
        ("release", f"{k.get('release')} {k.get('version') or ''}"), ("build id", k.get("build_id")),
        ("machine", f"{k.get('machine')}, {k.get('cpus')} CPUs, {k.get('memory_bytes')} bytes, node {k.get('nodename')}"),
        ("uptime (s)", k.get("uptime_seconds")),
        ("load average", ", ".join(f"{x:.2f}" for x in k["load_average"]) if k.get("load_average") else None),
        ("tainted", _taint_text(r.get("taint"))),
        ("dump", f"{dump.get('format')} {dump.get('codec') or ''} level {dump.get('dump_level')} "
                 f"{'INCOMPLETE' if dump.get('incomplete') else ''}"),
    ]) + "".join(f'<p class="muted">check: {_e(n)}</p>' for n in cr.get("cross_check", [])) + "</section>")
    out.append("<section><h2>Backtrace of the panicking task</h2>" +
               (_unavailable(r, "backtrace") or f"<pre>{_e(r['backtrace']['text'])}</pre>") + "</section>")
    body = _items(r, "other_cpus", lambda g: f"<h3>CPU {_e(','.join(map(str, g['cpus'])))}</h3><pre>"
                  f"{_e(g['trace']['text'] if 'trace' in g else g.get('error'))}</pre>",
                  "no other CPU has registers in the dump")
    out.append(f"<section><h2>Other CPUs</h2>{body}</section>")
    out.append(_explain_html(r))
    body = _items(r, "events", lambda e: f"<details><summary>{_e(e['kind'])}: {_e(e['summary'])}</summary><pre>"
                  f"{_e(chr(10).join(e['lines']))}</pre></details>",
                  "no panic/oops/lockup/hung-task/OOM/RCU-stall lines recognised")
    out.append(f"<section><h2>Log signatures</h2>{body}</section>")
    body = _unavailable(r, "log")
    if body is None:
        lg = r["log"]
        body = ""
        if lg.get("errors_warnings"):
            body += f"<details open><summary>Errors and warnings ({len(lg['errors_warnings'])})</summary>" \
                    f"{_records(lg['errors_warnings'])}</details>"
        body += f"<details><summary>Last {len(lg['tail'])} log lines</summary>{_records(lg['tail'])}</details>"
        if not lg.get("levels_known"):
            body += f'<p class="muted">{_e(lg.get("levels_note"))}</p>'
    out.append(f"<section><h2>Kernel log</h2>{body}</section>")
    body = _unavailable(r, "blocked_tasks")
    if body is None:
        b = r["blocked_tasks"]
        body = f"<p>{b['count']} task(s) in D state</p>" + "".join(
            "<details><summary>" + _e(", ".join(f"{t['pid']} {t['comm']}" for t in g["tasks"][:30])) +
            f"</summary><pre>{_e(g['stack'])}</pre></details>" for g in b["groups"])
    out.append(f"<section><h2>Uninterruptible (D) tasks</h2>{body}</section>")
    out.append(_hung_html(r))
    body = _unavailable(r, "memory")
    if body is None:
        m = r["memory"]
        body = ""
        if m.get("summary"):
            ps = m["summary"]["page_size"]
            body += _memory_chart(m["summary"]) + _kv([(key.replace("_", " "), f"{v} pages ({v * ps >> 20} MiB)")
                                                      for key, v in m["summary"]["pages"].items() if v is not None])
        if m.get("top_rss"):
            body += "<h3>Top tasks by RSS</h3>" + _kv([(f"{t['pid']} {t['comm']}", f"{t['rss_bytes'] >> 10} KiB")
                                                      for t in m["top_rss"]])
    out.append(f"<section><h2>Memory</h2>{body}</section>")
    body = _unavailable(r, "modules")
    if body is None:
        rows = "".join(
            f"<tr><td>{_e(m['name'])}</td><td>{_e(m.get('base'))}</td><td>{_e(m.get('size'))}</td>"
            f"<td>{_e(m.get('taint_letters'))}</td><td>"
            + ('<span class="flag oot">out-of-tree</span> ' if m.get("out_of_tree") else "")
            + ('<span class="flag unsigned">unsigned</span>' if m.get("unsigned") else "") + "</td></tr>"
            for m in r["modules"])
        body = f"<table><tr><th>name</th><th>base</th><th>size</th><th>taint</th><th>flags</th></tr>{rows}</table>"
    out.append(f"<section><h2>Modules</h2>{body}</section>")
    bad = [(n, s.get("error")) for n, s in r.get("sections", {}).items() if not s.get("ok")]
    if bad:
        out.append("<section><h2>Sections not computed</h2>" + _kv(bad) + "</section>")
    out.append("</main></body></html>\n")
    return "".join(out)


def _hung_html(r: dict[str, Any]) -> str:
    """The hung-task section: the wait-for graph (inline SVG, drawn here: the page's CSP
    allows no script), the tasks, chains with their roots' stacks, deadlocks."""
    h = r.get("hung_tasks")
    if not h:
        st = r.get("sections", {}).get("hung_tasks")
        return "" if not st or st.get("ok") else f"<section><h2>Hung tasks</h2>{_unavailable(r, 'hung_tasks')}</section>"
    from .hung import lock_label, wait_graph_svg
    body = f"<p>{h['hung_count']} task(s) hung past {h['timeout_seconds']} s ({_e(h['timeout_source'])})</p>"
    body += wait_graph_svg(h)
    rows = []
    for t in h["tasks"]:
        w = t.get("wait") or {}
        held = f"{w.get('owner_pid')} {w.get('owner_comm')}" if w.get("owner_pid") is not None else (w.get("owner") or "")
        rows.append(f"<tr><td>{_e(t['pid'])}</td><td>{_e(t['comm'])}</td><td>{_e(t['doing'])}</td>"
                    f"<td>{_e(t.get('blocked_seconds'))}</td><td>{'yes' if t['hung'] else ''}</td>"
                    f"<td>{_e(w.get('kind'))} {_e(lock_label(w) if w.get('lock') else '')}</td><td>{_e(held)}</td></tr>")
    body += ("<table><tr><th>pid</th><th>comm</th><th>state</th><th>blocked s</th><th>hung</th>"
             "<th>waits on</th><th>held by</th></tr>" + "".join(rows) + "</table>")
    for ch in h["chains"]:
        body += f"<p><b>chain:</b> {_e(ch['text'])}</p>"
        root = ch.get("root")
        if root:
            body += (f"<details><summary>root: {_e(root['pid'])} {_e(root['task'])} holds {_e(root['holds'])}, "
                     f"{_e(root['state'])}</summary><pre>{_e(root['stack']['text'])}</pre></details>")
    for d in h["deadlocks"]:
        body += f'<p class="deadlock"><b>{_e(d["text"])}</b></p>' + "".join(
            f"<details><summary>stack of {_e(s['pid'])}</summary><pre>{_e(s['text'])}</pre></details>"
            for s in d["stacks"])
    return f"<section><h2>Hung tasks</h2>{body}</section>"


def _explain_html(r: dict[str, Any]) -> str:
    """Lockup/stall, interrupt context and OOM sections (report/explain_cpu.py, explain_oom.py)."""
    out = []
    sec = r.get("sections", {})
    if "lockup" in r or not sec.get("lockup", {}).get("ok", True):
        body = _unavailable(r, "lockup")
        if body is None:
            lk = r["lockup"]
            body = "".join(f'<p class="muted">log: {_e(x)}</p>' for x in lk.get("log_reports", [])[:5])
            rcu = lk.get("rcu")
            if rcu and rcu.get("in_progress"):
                body += (f"<p>{_e(rcu['name'])}: grace period in flight for {_e(rcu['age_seconds'])} s, "
                         f"held up by CPU(s) {_e(','.join(map(str, rcu['holding_cpus'])))}</p>")
            for s in lk["stalled"]:
                body += (f"<h3>CPU {_e(s['cpu'])} stuck for {_e(s.get('seconds'))} s: PID {_e(s.get('pid'))} "
                         f"({_e(s.get('comm'))}) in {_e(s.get('where'))}</h3><p class=\"muted\">context: "
                         f"{_e(s.get('context'))}; seconds from {_e(s.get('seconds_source'))}</p>"
                         f"<pre>{_e(s.get('text') or s.get('error'))}</pre>")
            body += "".join(f'<p class="muted">check: {_e(n)}</p>' for n in lk.get("cross_check", []))
            if lk.get("other_cpus"):
                body += "<h3>Other CPUs, grouped by equal stacks</h3>" + "".join(
                    f"<details><summary>CPU {_e(','.join(map(str, g['cpus'])))}: "
                    f"{_e(' < '.join(g.get('functions', [])[:6]))}</summary><pre>{_e(g.get('text') or g.get('error'))}"
                    "</pre></details>" for g in lk["other_cpus"])
        out.append(f"<section><h2>Lockup / stall</h2>{body}</section>")
    body = _unavailable(r, "interrupt")
    if body is None:
        it = r["interrupt"]
        body = (f"<p><b>{_e(it.get('summary'))}</b></p>" if it.get("summary") else "") + _kv([
            (f"CPU {row['cpu']}{' (panic)' if row.get('panic') else ''}",
             f"{row['summary']}  [preempt_count {row.get('preempt_count') or '?'}, pending softirqs "
             f"{','.join(row.get('pending_softirqs') or []) or 'none'}]") for row in it["cpus"]])
    out.append(f"<section><h2>Interrupt context</h2>{body}</section>")
    if "oom" in r or not sec.get("oom", {}).get("ok", True):
        body = _unavailable(r, "oom")
        if body is None:
            o = r["oom"]
            ps = o.get("page_size") or 4096

            def size(p: Any) -> str:
                return "?" if p is None else f"{p * ps >> 10} KiB"
            sl = o.get("slab", {})
            body = (f'<p class="reason"><b>{_e(o.get("verdict"))}</b></p>' + _kv([
                ("log", ", ".join(f"{k}={v}" for k, v in o.get("log", {}).items() if v is not None)),
                ("RAM", size(o.get("total_ram_pages"))),
                ("slab unreclaimable", size(sl.get("sunreclaim_pages"))),
                ("slab reclaimable", size(sl.get("sreclaimable_pages"))),
                ("page cache", size(o.get("page_cache_pages"))), ("shmem", size(o.get("shmem_pages"))),
                ("huge pages", size((o.get("hugepages") or {}).get("total_pages"))),
                ("memcg", None if not o.get("memcg") else
                 f"{o['memcg']['name']}: {o['memcg']['usage_bytes'] >> 10} KiB of "
                 f"{'unlimited' if o['memcg'].get('max_bytes') is None else str(o['memcg']['max_bytes'] >> 10) + ' KiB'}")]))
            if sl.get("top"):
                body += "<h3>Top slab caches</h3>" + _kv([(x["name"], f"{x['bytes'] >> 10} KiB, {x['objects']} objects of "
                                                                    f"{x['object_size_bytes']} B{'' if not x['reclaimable'] else ', reclaimable'}")
                                                          for x in sl["top"]])
            if o.get("top_tasks"):
                body += "<h3>Top tasks</h3>" + _kv([(f"{x.get('pid')} {x['name']}",
                                                     f"anon {size(x.get('anon_pages'))}, file {size(x.get('file_pages'))}, "
                                                     f"shmem {size(x.get('shmem_pages'))}, swap {size(x.get('swap_pages'))} "
                                                     f"({x.get('percent_of_ram')} % of RAM)") for x in o["top_tasks"]])
        out.append(f"<section><h2>Out of memory</h2>{body}</section>")
    return "".join(out)
