"""`vmcorekit log DUMP`: crash's name for the kernel log (its `log`, `log -m`, `log -T`,
`log -t`); the text is `vmcorekit dmesg`'s, byte for byte, plus crash's level prefix with -m."""
from __future__ import annotations

import sys

import click

from .common import dump_arguments, open_program


@click.command("log")
@dump_arguments
@click.option("-m", "show_level", is_flag=True, help="Prefix each message with its log level, <N> (crash's log -m).")
@click.option("-T", "human", is_flag=True,
              help="Wall-clock timestamps from CRASHTIME (crash's log -T; like dmesg --time human).")
@click.option("-t", "no_time", is_flag=True, help="No timestamps (crash's log -t).")
def command(dump: str, vmcoreinfo_file: str | None, show_level: bool, human: bool, no_time: bool) -> None:
    """The kernel log, as crash's `log` prints it (an alias of `dmesg`)."""
    from ..errors import note, partial_result
    from ..kernel import printk

    if human and no_time:
        raise click.UsageError("-T and -t exclude each other")
    with open_program(dump, vmcoreinfo_file) as prog:
        log = printk.read_log(prog, levels=show_level)
        for w in log.warnings:
            note(w)
        for g in log.gaps:
            partial_result(f"printk: {g.what} bytes {g.address:#x}-{g.address + g.size:#x} are {g.reason}")
        stamp = None if no_time else printk.seconds_stamp
        if human:
            crashtime = prog.vmcoreinfo.crashtime
            if crashtime is None:
                raise click.ClickException("-T needs CRASHTIME, and this dump's VMCOREINFO has none")
            stamp = printk.human_clock(crashtime, max((r.ts_nsec for r in log.records), default=0))
        if show_level and not log.levels_known:
            note(f"log levels are unknown for this dump: {log.levels_note}; -m shows none")
        out = sys.stdout.buffer
        for rec, line in printk.render(log, stamp=stamp):
            if show_level and rec is not None and rec.level is not None:
                # crash puts the level between the timestamp and the text
                cut = len(printk.record_prefix(rec, stamp, False))
                line = line[:cut] + b"<%d>" % rec.level + line[cut:]
            out.write(line)
        out.flush()
