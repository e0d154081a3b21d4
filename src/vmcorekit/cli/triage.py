"""`vmcorekit triage DUMP...`: the one-shot crash report.

One dump: a report for a person (terminal), `--json` for a machine, `--html FILE` for a page.
Several dumps or a folder: one JSON line per dump on stdout, and a table grouping the dumps by
crash signature on stderr; dumps are processed in parallel and one failing dump never stops
the others.

`--log FILE...` (FILE may be `-`, stdin): kernel logs instead of dumps — console captures,
dmesg, journal or syslog output. One line per log: its crash title, bucket signature and name
(`--json`: one JSON object per log with class, guilty frame, every report, CPU/PID/Comm,
taint). A file that is not a log gets one error line on stderr, the others still answer, and
the exit status is 3.
"""
from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import click

from ..errors import DumpFormatError, VmcorekitError
from ..report.triage import triage
from .common import emit_json, json_convention, meminfo_json, split_dump_arg

EXIT_PARTIAL = 3  # the report was built but some sections could not be computed


def _dumps_in(paths: tuple[str, ...]) -> list[str]:
    """The dumps named, with every folder searched recursively as kdump and the distributions
    leave them (/var/crash/127.0.0.1-DATE/vmcore, /var/crash/YYYYMMDDhhmm/dump.YYYYMMDDhhmm,
    the parts of a --split set side by side). A file is a dump when the dump layer's format
    probe says so, whatever its name; the parts of a --split set in one folder become one entry
    (FILE1,FILE2,...)."""
    out: list[str] = []
    for p in paths:
        if not os.path.isdir(p):
            out.append(p)
            continue
        for root, dirs, files in os.walk(p, onerror=_walk_error):
            dirs.sort()
            found = [f for f in (os.path.join(root, n) for n in sorted(files)) if _is_dump(f)]
            parts = [f for f in found if _is_split_part(f)]
            out += [f for f in found if f not in parts]
            if parts:
                out.append(",".join(parts))
    return out


def _walk_error(e: OSError) -> None:
    from ..errors import note
    note(f"{e.filename}: {e.strerror or e}: not searched")


def _is_dump(path: str) -> bool:
    from ..dump.registry import probe
    if os.path.islink(path) or not os.path.isfile(path):
        return False  # a link would be a second entry for the same dump (or a loop)
    try:
        probe(path)
    except (DumpFormatError, OSError):
        return False
    return True


def _is_split_part(path: str) -> bool:
    """A kdump file whose sub-header says it is one part of a --split set."""
    from ..dump.registry import probe
    fmt = probe(path)
    if fmt.split_family is None:
        return False
    from ..dump import open_dump
    try:
        with open_dump(path) as phys:
            return bool(getattr(phys, "split", False))
    except (VmcorekitError, OSError):
        return False


def triage_json(r: dict[str, Any]) -> dict[str, Any]:
    """The report in the JSON convention of every command (the renderers read the report as
    built): module sizes as size_bytes, the memory summary in bytes."""
    r = dict(r)
    if isinstance(r.get("kernel"), dict) and "warnings" in r["kernel"]:
        k = dict(r["kernel"])  # `notes` is the one list of non-fatal problems
        r["notes"] = list(dict.fromkeys([*r.get("notes", []), *k.pop("warnings")]))
        r["kernel"] = k
    if isinstance(r.get("modules"), list):
        r["modules"] = [json_convention(m, renames={"size": "size_bytes"}) for m in r["modules"]]
    mem = r.get("memory")
    if isinstance(mem, dict):
        mem = dict(mem)
        if isinstance(mem.get("summary"), dict):
            mem["summary"] = meminfo_json(mem["summary"])
        # file + anon + shmem: not crash's RSS column, which `ps --json` calls rss_bytes
        mem["top_rss"] = [json_convention(t, renames={"rss_bytes": "rss_total_bytes"}) for t in mem.get("top_rss", [])]
        r["memory"] = mem
    return r


def _one(path: str, vmcoreinfo: str | None, full: bool = False) -> dict[str, Any]:
    """Worker: a compact line for the many-dumps mode (with the whole report under "report"
    when `full`, for --html); errors become data, never exceptions."""
    try:
        r = triage(path, vmcoreinfo)
    except (VmcorekitError, OSError, ValueError, LookupError) as e:
        return {"path": path, "ok": False, "error": " ".join(str(e).split())}
    k, cr, sig = r.get("kernel", {}), r.get("crash", {}), r.get("signature", {})
    return {**({"report": r} if full else {}), "path": path, "ok": True, "signature": sig.get("id"), "reason": cr.get("reason"),
            "title": cr.get("title"), "title_signature": (cr.get("signature") or {}).get("id"),
            "frames": sig.get("frames"), "release": k.get("release"), "crash_time": k.get("crash_time"),
            "pid": cr.get("pid"), "comm": cr.get("comm"), "cpu": cr.get("cpu"),
            "failed_sections": [n for n, s in r["sections"].items() if not s.get("ok")], "seconds": r.get("seconds")}


def _group_table(rows: list[dict[str, Any]]) -> list[str]:
    groups: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = r.get("signature") or "(failed)"
        g = groups.setdefault(key, {"count": 0, "reason": r.get("reason") or r.get("error"), "times": []})
        g["count"] += 1
        if r.get("crash_time"):
            g["times"].append(r["crash_time"])
    import time as _t
    fmt = lambda t: _t.strftime("%Y-%m-%d %H:%M:%S", _t.gmtime(t)) if t else "-"  # noqa: E731
    lines = [f"{'SIGNATURE':16}  {'COUNT':>5}  {'FIRST':19}  {'LAST':19}  REASON"]
    for sig, g in sorted(groups.items(), key=lambda kv: -kv[1]["count"]):
        first = min(g["times"]) if g["times"] else None
        last = max(g["times"]) if g["times"] else None
        lines.append(f"{sig:16}  {g['count']:>5}  {fmt(first):19}  {fmt(last):19}  {g['reason']}")
    return lines


def _html_many(rows: list[dict[str, Any]], reports: list[dict[str, Any] | None]) -> str:
    """One page for many dumps: a table of them (by crash signature, linking down), then each
    dump's own triage page, in the order found."""
    import html
    import re

    from ..report.render_html import render_html
    e = html.escape
    style, bodies = "", []
    for i, (row, r) in enumerate(zip(rows, reports)):
        if r is None:
            bodies.append(f'<section id="dump-{i}"><h2>{e(row["path"])}</h2>'
                          f'<p>could not be read: {e(row.get("error") or "?")}</p></section>')
            continue
        page = render_html(r)
        m = re.search(r"<style>(.*?)</style>", page, re.S)
        style = style or (m.group(1) if m else "")
        body = page.split("<body>", 1)[-1].rsplit("</body>", 1)[0]
        bodies.append(f'<section id="dump-{i}">{body}</section>')
    order = sorted(range(len(rows)), key=lambda i: (rows[i].get("signature") or "~", rows[i]["path"]))
    table = ["<table><tr><th>signature</th><th>dump</th><th>release</th><th>reason</th></tr>"]
    for i in order:
        row = rows[i]
        table.append(f'<tr><td>{e(row.get("signature") or "(failed)")}</td>'
                     f'<td><a href="#dump-{i}">{e(row["path"])}</a></td><td>{e(row.get("release") or "-")}</td>'
                     f'<td>{e(row.get("reason") or row.get("error") or "-")}</td></tr>')
    table.append("</table>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>vmcorekit triage: {len(rows)} dumps</title><style>{style}</style></head><body>"
            f"<header><h1>vmcorekit triage: {len(rows)} dumps</h1></header>"
            + "".join(table) + "".join(bodies) + "</body></html>\n")


def _logs(paths: tuple[str, ...], as_json: bool) -> None:
    """`--log`: one answer per log, in order; unreadable inputs reported and counted."""
    from ..errors import LogInputError
    from ..report.titles_log import triage_log
    from ..util.text import printable
    failed = 0
    for p in paths:
        try:
            r = triage_log(p)
        except LogInputError as e:
            failed += 1
            click.echo(f"vmcorekit: error: {printable(' '.join(str(e).split()))}", err=True)
            continue
        if as_json:
            sys.stdout.write(json.dumps(r) + "\n")
        else:
            sig = (r.get("signature") or {}).get("id") or "-"
            title = r["title"] if r["title"] is not None else "(no crash)"
            sys.stdout.write(printable(f"{title}\t{sig}\t{r['source']}") + "\n")
        sys.stdout.flush()
    if failed:
        sys.exit(EXIT_PARTIAL)


@click.command("triage")
@click.argument("dumps", nargs=-1, required=True)
@click.option("--vmcoreinfo", "vmcoreinfo_file", type=click.Path(exists=True, dir_okay=False),
              help="Use this VMCOREINFO text instead of the dump's note.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON (its schema: `vmcorekit schema triage`, vmcorekit/schemas/triage.json in the package).")
@click.option("--html", "html_file", type=click.Path(dir_okay=False), help="Also write a self-contained HTML page.")
@click.option("-j", "--jobs", type=int, default=0, help="Parallel workers for many dumps (default: all cores).")
@click.option("--log", "as_logs", is_flag=True,
              help="The arguments are kernel logs (console, dmesg, journal; - for stdin), not dumps: "
                   "one title line (or JSON object) per log.")
def command(dumps: tuple[str, ...], vmcoreinfo_file: str | None, as_json: bool, html_file: str | None,
            jobs: int, as_logs: bool) -> None:
    """Why the kernel died, in which task and CPU, after what — from the dump alone.
    DUMP may be a folder (every dump in it) or split parts joined by commas.
    With --log, the arguments are kernel logs (FILE... or - for stdin)."""
    if as_logs:
        if html_file:
            raise click.UsageError("--html is for dumps, not --log")
        _logs(dumps, as_json)
        return
    paths = _dumps_in(dumps)
    if not paths:
        raise click.UsageError("no dump files found")
    if len(paths) == 1 and not os.path.isdir(dumps[0]):
        path = ",".join(split_dump_arg(paths[0]))
        r = triage(path, vmcoreinfo_file)
        from ..errors import partial_result
        for name, sec in r["sections"].items():  # a section not computed: a gap (exit 3, JSON partial)
            if not sec.get("ok"):
                partial_result(f"triage: {name}: {sec.get('error') or 'not computed'}", reported=False)
        if html_file:
            from ..report.render_html import render_html
            from ..util.fileout import atomic_output
            with atomic_output(html_file) as f:
                f.write(render_html(r).encode())
        if as_json:
            emit_json(triage_json(r))
        else:
            from ..report.render_text import render_text
            render_text(r)
        if any(not s.get("ok") for s in r["sections"].values()):
            sys.exit(EXIT_PARTIAL)
        return
    workers = jobs or os.cpu_count() or 1
    rows: list[dict[str, Any]] = []
    reports: list[dict[str, Any] | None] = []
    full = html_file is not None
    with ProcessPoolExecutor(max_workers=min(workers, len(paths))) as pool:
        for row in pool.map(_one, paths, [vmcoreinfo_file] * len(paths), [full] * len(paths)):
            reports.append(row.pop("report", None))
            rows.append(row)
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()
    for line in _group_table(rows):
        click.echo(line, err=True)
    if html_file:
        from ..util.fileout import atomic_output
        with atomic_output(html_file) as f:
            f.write(_html_many(rows, reports).encode())
    if any(not r["ok"] for r in rows):
        sys.exit(1)
