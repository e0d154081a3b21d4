"""The body of `vmcorekit dmesg`, free of click and rich, so that the entry point's fast path
(cli/_entry.py) and the click command (cli/dmesg.py) print the same bytes from one code."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ..util.text import printable

if TYPE_CHECKING:
    from ..program import Program

LEVEL_STYLES = {0: "bold white on red", 1: "bold red", 2: "bold red", 3: "red", 4: "yellow", 5: "bold",
                6: "", 7: "dim"}


class DmesgOptionError(Exception):
    """An option this dump cannot honour (the click command reports it as click does)."""


def _safe(line: bytes) -> bytes:
    """A rendered line (or the raw text of a plain log, several lines) with the dump's control
    bytes escaped; its own line ends kept."""
    return printable(line)


def say(message: str, kind: str = "note") -> None:
    """`vmcorekit: KIND: message` on stderr (what click.echo(..., err=True) writes)."""
    sys.stderr.write(printable(f"vmcorekit: {kind}: {message}") + "\n")
    sys.stderr.flush()


def print_log(prog: "Program", *, style: str = "vmcore-dmesg", as_json: bool = False, since_clear: bool = False,
              tail: int | None = None, levels: set[int] | None = None, show_caller: bool = False,
              dev_info: bool = False, time_fmt: str = "seconds", color: str = "auto") -> None:
    """Print the kernel log of `prog` on stdout as `vmcorekit dmesg` does with these options."""
    from ..kernel import printk

    use_color = color == "always" or (color == "auto" and sys.stdout.isatty() and not as_json)
    need_levels = levels is not None or as_json or use_color
    log = printk.read_log(prog, levels=need_levels)
    for w in log.warnings:
        say(w, "warning")
    if log.gaps:  # unreadable log-buffer bytes: exit status 3 (partial), each gap said once
        from ..errors import partial_result
        said = "\n".join(log.warnings)
        for g in log.gaps:
            partial_result(f"printk: {g.what} bytes {g.address:#x}-{g.address + g.size:#x} are {g.reason}",
                           reported=f"{g.address:#x}" not in said)
    stamp: Any = printk.seconds_stamp
    if time_fmt == "none":
        stamp = None
    elif time_fmt == "human":
        from ..kernel.sysinfo import crash_time
        crashtime, how = crash_time(prog)  # the one crash time sys, info and triage show
        if crashtime is None:
            raise DmesgOptionError(f"--time human needs the crash time, which is unknown: {how}; "
                                   "use --time seconds")
        anchor = max((r.ts_nsec for r in log.records), default=0)
        stamp = printk.human_clock(crashtime, anchor)

    records = None  # the whole log, rendered exactly as the peer tools do
    if since_clear:
        if log.clear_seq is None and log.clear_index is None and log.layout != "plain":
            say("the dump does not say where the last clear was; printing every record")
        records = printk.since_clear(log)
    if levels is not None:
        if log.levels_known:
            records = [r for r in (log.records if records is None else records)
                       if r.level is not None and r.level in levels]
        else:
            say(f"log levels are unknown for this dump: {log.levels_note}; --level is not applied")
    if tail is not None:
        base = log.records if records is None else records
        records = list(base[len(base) - tail:]) if tail else []
    if log.layout == "plain" and (show_caller or time_fmt != "seconds" or style != "vmcore-dmesg"):
        say("this kernel keeps a plain text log: its lines are printed as stored (timestamps, if any, "
            "are part of the text; there are no callers)")
    elif show_caller and not any(r.caller_id is not None for r in log.records):
        say("this kernel did not record callers (no printk caller_id): shown as '?'")

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
        say(f"log levels are unknown for this dump: {log.levels_note}; no colors")
    # Every style: controls from the dump never reach the terminal raw. vmcore-dmesg
    # escapes ESC and the rest itself but passes CR, VT and FF (isspace); those are
    # escaped here too (a normal log holds none, so its output stays vmcore-dmesg's).
    for _, line in lines:
        out.write(_safe(line))
    out.flush()


def print_crash_log(prog: "Program", *, show_level: bool = False, human: bool = False, no_time: bool = False) -> None:
    """Print the kernel log of `prog` as `vmcorekit log` (crash's `log`, -m, -T, -t) does."""
    from ..errors import note, partial_result
    from ..kernel import printk

    log = printk.read_log(prog, levels=show_level)
    for w in log.warnings:
        note(w)
    for g in log.gaps:
        partial_result(f"printk: {g.what} bytes {g.address:#x}-{g.address + g.size:#x} are {g.reason}")
    stamp: Any = None if no_time else printk.seconds_stamp
    if human:
        from ..kernel.sysinfo import crash_time
        crashtime, how = crash_time(prog)
        if crashtime is None:
            raise DmesgOptionError(f"-T needs the crash time, which is unknown: {how}")
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


def _print_colored(lines: Any, force: bool) -> None:
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False, markup=False, emoji=False, soft_wrap=True,
                      force_terminal=True if force else None)
    for rec, line in lines:
        style = LEVEL_STYLES.get(rec.level, "") if rec is not None and rec.level is not None else ""
        console.print(Text(_safe(line).decode("utf-8", "replace").rstrip("\n"), style=style))
