"""`vmcorekit dmesg DUMP`: the kernel log, byte for byte as vmcore-dmesg prints it (or as
makedumpfile --dump-dmesg does with --format makedumpfile)."""
from __future__ import annotations

import sys

import click

from ..util.text import printable
from .common import dump_arguments, open_program

LEVEL_STYLES = {0: "bold white on red", 1: "bold red", 2: "bold red", 3: "red", 4: "yellow", 5: "bold",
                6: "", 7: "dim"}


def _safe(line: bytes) -> bytes:
    """A rendered line (or the raw text of a plain log, several lines) with the dump's control
    bytes escaped; its own line ends kept."""
    return printable(line)


def _note(message: str, kind: str = "note") -> None:
    click.echo(printable(f"vmcorekit: {kind}: {message}"), err=True)


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

    levels: set[int] | None = None
    if level_spec is not None:
        try:
            levels = printk.parse_levels(level_spec)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--level") from None
    use_color = color == "always" or (color == "auto" and sys.stdout.isatty() and not as_json)

    with open_program(dump, vmcoreinfo_file) as prog:
        need_levels = levels is not None or as_json or use_color
        log = printk.read_log(prog, levels=need_levels)
        for w in log.warnings:
            _note(w, "warning")
        if log.gaps:  # unreadable log-buffer bytes: exit status 3 (partial), each gap said once
            from ..errors import partial_result
            said = "\n".join(log.warnings)
            for g in log.gaps:
                partial_result(f"printk: {g.what} bytes {g.address:#x}-{g.address + g.size:#x} are {g.reason}",
                               reported=f"{g.address:#x}" not in said)
        stamp = printk.seconds_stamp
        if time_fmt == "none":
            stamp = None
        elif time_fmt == "human":
            from ..kernel.sysinfo import crash_time
            crashtime, how = crash_time(prog)  # the one crash time sys, info and triage show
            if crashtime is None:
                raise click.ClickException(f"--time human needs the crash time, which is unknown: {how}; "
                                           "use --time seconds")
            anchor = max((r.ts_nsec for r in log.records), default=0)
            stamp = printk.human_clock(crashtime, anchor)

        records = None  # the whole log, rendered exactly as the peer tools do
        if since_clear:
            if log.clear_seq is None and log.clear_index is None and log.layout != "plain":
                _note("the dump does not say where the last clear was; printing every record")
            records = printk.since_clear(log)
        if levels is not None:
            if log.levels_known:
                records = [r for r in (log.records if records is None else records)
                           if r.level is not None and r.level in levels]
            else:
                _note(f"log levels are unknown for this dump: {log.levels_note}; --level is not applied")
        if tail is not None:
            base = log.records if records is None else records
            records = list(base[len(base) - tail:]) if tail else []
        if log.layout == "plain" and (show_caller or time_fmt != "seconds" or style != "vmcore-dmesg"):
            _note("this kernel keeps a plain text log: its lines are printed as stored (timestamps, if any, "
                  "are part of the text; there are no callers)")
        elif show_caller and not any(r.caller_id is not None for r in log.records):
            _note("this kernel did not record callers (no printk caller_id): shown as '?'")

        out = sys.stdout.buffer
        if as_json:
            for line in printk.json_lines(log.records if records is None else records):
                out.write(line)
            out.flush()
            return
        lines = printk.render(log, records, style=style, stamp=stamp, show_caller=show_caller, dev_info=dev_info)
        if use_color and log.levels_known:
            _print_colored(lines, force=color == "always")
            return
        if color == "always" and not log.levels_known:
            _note(f"log levels are unknown for this dump: {log.levels_note}; no colors")
        # Every style: controls from the dump never reach the terminal raw. vmcore-dmesg
        # escapes ESC and the rest itself but passes CR, VT and FF (isspace); those are
        # escaped here too (a normal log holds none, so its output stays vmcore-dmesg's).
        for _, line in lines:
            out.write(_safe(line))
        out.flush()


def _print_colored(lines, force: bool) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False, markup=False, emoji=False, soft_wrap=True,
                      force_terminal=True if force else None)
    for rec, line in lines:
        style = LEVEL_STYLES.get(rec.level, "") if rec is not None and rec.level is not None else ""
        console.print(Text(_safe(line).decode("utf-8", "replace").rstrip("\n"), style=style))
