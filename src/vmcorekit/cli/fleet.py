"""`vmcorekit fleet ...`: a fleet's kernel dumps collected, bucketed, ranked and browsed.

    fleet ingest PATH... --index INDEX     find dumps, triage the new ones, keep their facts
    fleet top / find / show SIG / stats    ask the index (--json: one JSON object per line)
    fleet rebucket                         re-title stored facts with the current rules
    fleet export --parquet DIR             every table as Parquet
    fleet serve                            the read-only dashboard

INDEX may also come from $VMCOREKIT_FLEET_INDEX.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click

from ..errors import FleetError
from ..fleet.facts import clean

INDEX_ENV = "VMCOREKIT_FLEET_INDEX"


def _index_option(f: Any) -> Any:
    return click.option("--index", "index_path", required=True, envvar=INDEX_ENV, metavar="INDEX",
                        type=click.Path(dir_okay=False), help=f"The index file (DuckDB); or ${INDEX_ENV}.")(f)


def _json_option(f: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")(f)


def _lines(objs: Any) -> None:
    for o in objs:
        sys.stdout.write(json.dumps(o, default=str) + "\n")


def _table(headers: list[str], rows: list[list[Any]], right: tuple[int, ...] = ()) -> None:
    from .render import print_table
    print_table(None, headers, [[clean(c) if c is not None else "-" for c in r] for r in rows], right=right)


def _reader(index_path: str) -> Any:
    from ..fleet import index
    return index.connect(index_path, read_only=True)


class _FleetGroup(click.Group):
    """Database errors (disk full, a damaged file found mid-query) become one-line errors."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            import duckdb
        except ImportError:
            return super().invoke(ctx)
        try:
            return super().invoke(ctx)
        except duckdb.Error as e:
            sub = ctx.invoked_subcommand or "fleet"
            where = os.environ.get(INDEX_ENV) or next((a for a in _index_arg(sys.argv)), "the index")
            raise FleetError(f"{where}: {sub}: {' '.join(str(e).split())}") from None


def _index_arg(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--index"] + \
        [a.split("=", 1)[1] for a in argv if a.startswith("--index=")]


@click.group("fleet", cls=_FleetGroup)
def command() -> None:
    """Fleet triage: collect, bucket, rank and browse many machines' kernel dumps."""


# -- ingest ----------------------------------------------------------------------------------
@command.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@_index_option
@click.option("--workers", "-j", type=click.IntRange(1, 1024), default=None,
              help="Local worker processes (default: the number of CPUs).")
@click.option("--scheduler", metavar="tcp://HOST:PORT", help="Run on an existing Dask distributed cluster "
              "(its workers read the dumps by path: shared storage).")
@click.option("--local-cluster", type=click.IntRange(1, 1024), default=None, metavar="N",
              help="Start a Dask LocalCluster of N worker processes.")
@click.option("--timeout", type=click.FloatRange(0.01), default=120.0, show_default=True,
              help="Seconds one dump may take; a reader that hangs is stopped (status timeout).")
@click.option("--wait", type=click.FloatRange(0), default=10.0, show_default=True,
              help="Seconds to wait for another ingest on the same index to finish.")
@click.option("--keep-minidump", "keep_minidump", type=click.Path(file_okay=False), metavar="DIR",
              help="Also keep a minidump of each new dump in DIR (filter --level triage; CONTENT_ID.kdump, "
                   "shown by `fleet show`): later questions need not reopen the original.")
@_json_option
def ingest_cmd(paths: tuple[str, ...], index_path: str, workers: int | None, scheduler: str | None,
               local_cluster: int | None, timeout: float, wait: float, keep_minidump: str | None,
               as_json: bool) -> None:
    """Find the dumps under PATH... (recursively), triage the new ones and index their facts.
    A second run over the same files adds nothing."""
    from ..fleet.ingest import ingest

    if scheduler and local_cluster:
        raise click.UsageError("give --scheduler or --local-cluster, not both")
    for p in paths:
        if not os.path.lexists(p):
            raise FleetError(f"{p}: no such file or folder")
    ex = _executor(workers, scheduler, local_cluster)
    try:
        with _progress(enabled=not as_json and sys.stderr.isatty()) as progress:
            summary = ingest(list(paths), index_path, ex, timeout=timeout, wait=wait, progress=progress,
                             keep_minidump=keep_minidump)
    finally:
        ex.close()
    if as_json:
        _lines([summary])
    else:
        click.echo(f"{summary['new']} new, {summary['failed']} failed, {summary['duplicates']} copies of known dumps, "
                   f"{summary['unchanged']} unchanged ({summary['seen']} seen) in {summary['seconds']:.1f} s "
                   f"[{summary['executor']}] → {index_path}")


def _executor(workers: int | None, scheduler: str | None, local_cluster: int | None) -> Any:
    from ..fleet.executor import DaskExecutor, LocalExecutor
    if scheduler:
        return DaskExecutor(address=scheduler)
    if local_cluster:
        return DaskExecutor(local=local_cluster)
    return LocalExecutor(workers or os.cpu_count() or 1)


class _progress:
    """A rich progress bar on stderr with dumps/s; a no-op when not on a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.tasks: dict[str, Any] = {}
        self.started: dict[str, float] = {}

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        self.bar = Progress(TextColumn("{task.description:7}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                            console=Console(stderr=True), transient=False)
        self.bar.__enter__()
        return self.update

    def update(self, phase: str, done: int, total: int) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.bar.add_task(phase, total=total, rate="")
            self.started[phase] = time.monotonic()
        dt = max(time.monotonic() - self.started[phase], 1e-6)
        self.bar.update(self.tasks[phase], completed=done, total=total, rate=f"{done / dt:6.2f} dumps/s")

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


# -- questions -------------------------------------------------------------------------------
def _since(text: str | None) -> float | None:
    from ..fleet.queries import parse_time
    return parse_time(text)


@command.command("top")
@_index_option
@click.option("--since", metavar="WHEN", help="Only dumps from then on: 7d, 24h, 90m, 2w, or an ISO date.")
@click.option("--limit", "-n", type=click.IntRange(1), default=20, show_default=True)
@_json_option
def top_cmd(index_path: str, since: str | None, limit: int, as_json: bool) -> None:
    """Crash signatures ranked by how many dumps they have."""
    from ..fleet.queries import top
    with _reader(index_path) as con:
        rows = top(con, _since(since), limit)
    if as_json:
        _lines(rows)
        return
    _table(["SIGNATURE", "COUNT", "MACHINES", "FIRST", "LAST", "KERNELS", "TITLE"],
           [[r["signature"], r["count"], r["machines"], r["first_seen"], r["last_seen"], ",".join(r["kernels"]),
             r["title"]] for r in rows], right=(1, 2))


@command.command("find")
@_index_option
@click.option("--signature", "-s", help="A signature or its prefix.")
@click.option("--text", "-t", help="Text in the title (or reason, guilty function, explanation, error).")
@click.option("--class", "cls", help="Class of crash (panic, oops, BUG, WARNING, hung_task, ...).")
@click.option("--kernel", "-k", help="Kernel release, build string or build id.")
@click.option("--module", "-m", help="A module loaded at the crash (or the guilty frame's).")
@click.option("--since", metavar="WHEN", help="7d, 24h, 90m, 2w, or an ISO date.")
@click.option("--until", metavar="WHEN", help="7d, 24h, 90m, 2w, or an ISO date.")
@click.option("--status", type=click.Choice(["ok", "partial", "error", "timeout"]))
@click.option("--limit", "-n", type=click.IntRange(1), default=1000, show_default=True)
@_json_option
def find_cmd(index_path: str, signature: str | None, text: str | None, cls: str | None, kernel: str | None,
             module: str | None, since: str | None, until: str | None, status: str | None, limit: int,
             as_json: bool) -> None:
    """Dumps matching every filter given, newest first."""
    from ..fleet.queries import find, parse_time
    with _reader(index_path) as con:
        rows = find(con, signature=signature, text=text, cls=cls, kernel=kernel, module=module,
                    since=parse_time(since), until=parse_time(until), status=status, limit=limit)
    if as_json:
        _lines(rows)
        return
    _table(["PATH", "SIGNATURE", "STATUS", "CRASH TIME", "KERNEL", "TITLE / ERROR"],
           [[r["path"], r["signature"], r["status"], r["crash_time"], r["release"],
             r["title"] if r["status"] in ("ok", "partial") else r["error"]] for r in rows])


@command.command("show")
@click.argument("signature")
@_index_option
@_json_option
def show_cmd(signature: str, index_path: str, as_json: bool) -> None:
    """One signature: its members, a timeline, kernels and modules, and the typical report."""
    from ..fleet.queries import show
    with _reader(index_path) as con:
        s = show(con, signature)
    if s is None:
        raise FleetError(f"{index_path}: no signature {signature!r} in the index")
    if as_json:
        _lines([s])
        return
    t = s["typical"] or {}
    click.echo(f"{clean(s['signature'])}  {clean(s['title'])}")
    click.echo(f"  class {clean(s['class'])}, {s['count']} dumps on {s['machines']} machines, "
               f"first {s['first_seen']}, last {s['last_seen']}, rules {clean(s['rules_version'])}")
    click.echo("  kernels: " + ", ".join(f"{clean(k['release'])} ({k['count']})" for k in s["kernels"]))
    if s["guilty_modules"]:
        click.echo("  guilty modules: " + ", ".join(clean(m) for m in s["guilty_modules"]))
    click.echo("\nTimeline (dumps per day)")
    peak = max((d["count"] for d in s["timeline"]), default=1)
    for d in s["timeline"]:
        click.echo(f"  {d['day']}  {'#' * max(1, round(d['count'] / peak * 40))} {d['count']}")
    click.echo("\nMembers")
    kept = any(m.get("minidump") for m in s["members"])
    _table(["PATH", "STATUS", "CRASH TIME", "KERNEL", "HOST"] + (["MINIDUMP"] if kept else []),
           [[m["path"], m["status"], m["crash_time"], m["release"], m["hostname"]]
            + ([m.get("minidump") or "-"] if kept else []) for m in s["members"]])
    click.echo(f"\nTypical report: {clean(t.get('path'))}")
    if t.get("minidump"):
        click.echo(f"  minidump: {clean(t['minidump'])}")
    if t.get("explanation"):
        click.echo(f"  {clean(t['explanation'])}")
    for f in t.get("stack_frames") or []:
        click.echo(f"  {clean(f)}")
    lines = t.get("title_lines") or []
    if lines:
        click.echo("  log:")
        for ln in lines[-15:]:
            click.echo(f"    {clean(ln)}")


@command.command("stats")
@_index_option
@_json_option
def stats_cmd(index_path: str, as_json: bool) -> None:
    """Totals: dumps, signatures, machines, by status, class, kernel, format; recent runs."""
    from ..fleet.queries import stats
    with _reader(index_path) as con:
        s = stats(con)
    if as_json:
        _lines([s])
        return
    click.echo(f"{s['dumps']} dumps, {s['signatures']} signatures, {s['machines']} machines, {s['paths']} paths, "
               f"{s['bytes'] / 2**30:.2f} GiB; from {s['first']} to {s['last']}")
    for key in ("status", "class", "kernels", "arch", "format"):
        click.echo(f"  {key}: " + ", ".join(f"{clean(k)} {v}" for k, v in s[key].items()))
    click.echo(f"  mean triage {s['triage_seconds_mean']} s, peak worker RSS {s['worker_rss_kb_max']} KiB")
    for r in s["runs"]:
        click.echo(f"  run {r['run']} {r['started']} {clean(r['executor'])}: seen {r['seen']}, new {r['new']}, "
                   f"failed {r['failed']}, {r['seconds'] or 0:.1f} s")


@command.command("rebucket")
@_index_option
@click.option("--dry-run", is_flag=True, help="Say what would change; write nothing.")
@click.option("--wait", type=click.FloatRange(0), default=10.0, show_default=True)
@_json_option
def rebucket_cmd(index_path: str, dry_run: bool, wait: float, as_json: bool) -> None:
    """Re-title every stored dump with the current title rules (no dump is opened); old → new
    signatures are recorded for every row; says what merged and what split."""
    from ..fleet.rebucket import rebucket
    r = rebucket(index_path, dry_run=dry_run, wait=wait)
    if as_json:
        _lines([r])
        return
    click.echo(f"{r['rows']} dumps re-titled, {r['changed']} changed{' (dry run)' if dry_run else ''} "
               f"[history run {r['run']}]")
    for m in r["merged"]:
        click.echo(f"  merged: {', '.join(m['from'])} → {m['into']}")
    for s in r["split"]:
        click.echo(f"  split:  {s['from']} → {', '.join(s['into'])}")
    for s in r["renamed"]:
        click.echo(f"  renamed: {s['from']} → {s['into']}")


@command.command("export")
@_index_option
@click.option("--parquet", "out_dir", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder for dumps.parquet, files.parquet, runs.parquet, rebucket_history.parquet.")
def export_cmd(index_path: str, out_dir: str) -> None:
    """Every table of the index as a Parquet file."""
    from ..fleet.index import export_parquet
    for p in export_parquet(index_path, out_dir):
        click.echo(p)


@command.command("serve")
@_index_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0: any free port.")
def serve_cmd(index_path: str, host: str, port: int) -> None:
    """The dashboard (read-only on the index): top crashers, a page per signature, search,
    each dump's report, and a JSON API behind every page."""
    from ..fleet.web import serve
    with _reader(index_path):
        pass  # a bad index is an error now, not on the first request
    serve(index_path, host, port, announce=lambda url: click.echo(f"serving {url}  (Ctrl-C to stop)", err=True))
