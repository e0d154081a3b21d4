"""`vmcorekit dmesg DUMP`: the kernel log, byte for byte as vmcore-dmesg prints it (or as
makedumpfile --dump-dmesg does with --format makedumpfile)."""
from __future__ import annotations

import click

from .common import dump_arguments, open_program


@click.command("dmesg")
@dump_arguments
@click.option("--format", "style", type=click.Choice(["vmcore-dmesg", "makedumpfile", "raw"]),
              default="vmcore-dmesg", show_default=True,
              help="Whose output to reproduce: vmcore-dmesg; makedumpfile --dump-dmesg (continuation lines "
                   "indented, records without text skipped); raw: the text's bytes unescaped (drgn's get_dmesg).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line and record: seq, ts_nsec, caller, text, dev info, and level/"
                   "facility when the dump's BTF describes them.")
@click.option("--since-clear", is_flag=True,
              help="Only records after the last `dmesg -c` (clear_seq), like makedumpfile --partial-dmesg.")
@click.option("--tail", "tail", type=click.IntRange(min=0), metavar="N", help="Only the last N records.")
@click.option("--level", "level_spec", metavar="LIST",
              help="Only these levels: comma-separated names or numbers (emerg,alert,crit,err,warn,notice,"
                   "info,debug); NAME+ means NAME and more severe. Needs BTF in the dump.")
@click.option("--show-caller", is_flag=True, help="Add the caller ([  T123] thread or [    C1] CPU) like "
                                                   "CONFIG_PRINTK_CALLER consoles.")
@click.option("--dev-info", is_flag=True, help="Add SUBSYSTEM=/DEVICE= lines under records that carry them.")
@click.option("--time", "time_fmt", type=click.Choice(["seconds", "human", "none"]), default="seconds",
              show_default=True, help="Timestamps: seconds since boot; wall-clock time estimated from "
                                      "the crash time (VMCOREINFO's CRASHTIME, else the timekeeper's clock; taken as the "
                                      "time of the last record; local time, TZ honoured); "
                                      "or none.")
@click.option("--color", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
              help="Color records by level (on a terminal by default; needs BTF).")
def command(dump: str, vmcoreinfo_file: str | None, style: str, as_json: bool, since_clear: bool,
            tail: int | None, level_spec: str | None, show_caller: bool, dev_info: bool, time_fmt: str,
            color: str) -> None:
    """Print the kernel log of DUMP."""
    from ..kernel import printk
    from ._dmesg import DmesgOptionError, print_log

    levels: set[int] | None = None
    if level_spec is not None:
        try:
            levels = printk.parse_levels(level_spec)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--level") from None
    with open_program(dump, vmcoreinfo_file) as prog:
        try:
            print_log(prog, style=style, as_json=as_json, since_clear=since_clear, tail=tail, levels=levels,
                      show_caller=show_caller, dev_info=dev_info, time_fmt=time_fmt, color=color)
        except DmesgOptionError as e:
            raise click.ClickException(str(e)) from None
