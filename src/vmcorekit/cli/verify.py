"""`vmcorekit verify DUMP`: check a dump end to end before anyone relies on it.

Exit status: 0 the dump is intact; 3 (EXIT_PARTIAL) it opens but pages are missing or corrupt,
or its structures disagree (what survives is still readable); 1 it cannot be opened at all.
"""
from __future__ import annotations

import sys

import click

from ..errors import EXIT_PARTIAL, note
from ..util.text import printable
from .common import emit_json, json_convention, split_dump_arg
from .render import human_size, kv_table, print_table


@click.command("verify")
@click.argument("dump", metavar="DUMP")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.option("--quick", is_flag=True,
              help="Headers, notes, bitmaps and descriptors only: do not read or decompress page data.")
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help="Decompression threads (default: one per CPU).")
@click.option("--progress/--no-progress", "show_progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
def command(dump: str, as_json: bool, quick: bool, threads: int | None, show_progress: bool | None) -> None:
    """Check DUMP end to end: headers consistent, every page descriptor inside the file, every
    compressed page decompresses to exactly one page, bitmaps agree with descriptors, notes
    parse, VMCOREINFO validates. Prints pages good / zero / excluded / missing / corrupt and the
    bad ones by physical range. Exit status 0: intact; 3: damaged but readable; 1: unreadable."""
    from ..dump import open_dump
    from ..report.verify import verify

    paths = split_dump_arg(dump)
    if show_progress is None:
        show_progress = sys.stderr.isatty() and not as_json
    with open_dump(paths) as phys:
        if show_progress:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

            with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                          TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                          transient=True) as bar:
                task = bar.add_task("verifying", total=None)
                rep = verify(phys, read_data=not quick, threads=threads,
                             progress=lambda done, total: bar.update(task, completed=done, total=total))
        else:
            rep = verify(phys, read_data=not quick, threads=threads)

    if as_json:
        emit_json(json_convention(rep.to_json(), {"start", "end"}))
    else:
        p = rep.pages
        kv_table("Verify", [
            ("dump", rep.path),
            ("format", rep.format),
            ("result", "OK" if rep.ok else "DAMAGED"),
            ("pages", f"good {p['good']}, zero {p['zero']}, excluded {p['excluded']}, "
                      f"missing {p['missing']}, corrupt {p['corrupt']}"),
            ("time", f"{rep.seconds:.2f} s, {human_size(rep.bytes_read)} read"
                     + (f" ({human_size(rep.bytes_read / rep.seconds)}/s)" if rep.seconds > 0 else "")),
        ])
        print_table("Checks", ["check", "status", "detail"],
                    [[c.name, "skip" if c.ok is None else "ok" if c.ok else "FAIL", printable(c.detail)]
                     for c in rep.checks])
        if rep.bad_ranges:
            print_table("Unreadable pages", ["state", "start", "end", "pages", "reason"],
                        [[r.state, f"{r.start:#014x}", f"{r.end:#014x}", r.pages, r.reason] for r in rep.bad_ranges],
                        right=(3,))
        for msg in rep.problems:
            click.echo(printable(f"problem: {msg}"))
        for msg in rep.notes:
            note(printable(msg))
    if not rep.ok:
        raise click.exceptions.Exit(EXIT_PARTIAL)
