"""`vmcorekit log DUMP`: crash's name for the kernel log (its `log`, `log -m`, `log -T`,
`log -t`); the text is `vmcorekit dmesg`'s, byte for byte, plus crash's level prefix with -m."""
from __future__ import annotations

import click

from .common import dump_arguments, open_program


@click.command("log")
@dump_arguments
@click.option("-m", "show_level", is_flag=True, help="Prefix each message with its log level, <N> (crash's log -m).")
@click.option("-T", "human", is_flag=True,
              help="Wall-clock timestamps from the crash time (CRASHTIME, else the timekeeper; "
                   "crash's log -T; like dmesg --time human).")
@click.option("-t", "no_time", is_flag=True, help="No timestamps (crash's log -t).")
def command(dump: str, vmcoreinfo_file: str | None, show_level: bool, human: bool, no_time: bool) -> None:
    """The kernel log, as crash's `log` prints it (an alias of `dmesg`)."""
    from ._dmesg import DmesgOptionError, print_crash_log

    if human and no_time:
        raise click.UsageError("-T and -t exclude each other")
    with open_program(dump, vmcoreinfo_file) as prog:
        try:
            print_crash_log(prog, show_level=show_level, human=human, no_time=no_time)
        except DmesgOptionError as e:
            raise click.ClickException(str(e)) from None
