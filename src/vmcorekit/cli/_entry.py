"""The `vmcorekit` entry point: `dmesg` and `log` read the short way, the rest by the click CLI.

`vmcorekit dmesg DUMP` is the command a capture script or a first look runs, and most of its
time used to be start-up: click (~26 ms), numpy (~64 ms) and rich imported before any work,
for a log that takes a few ms to read. Here the forms of `dmesg` whose arguments are plain
(the dump, --format, --tail N, --since-clear, --show-caller, --dev-info, --time, --color
never/auto, --no-pager; `log`'s -m, -T, -t) with stdout not a terminal (no pager, no colour)
are parsed without click and printed by the very code the click commands run (cli/_dmesg.py);
anything else —
another command, --help, --json or --level (they read BTF), a missing file, an option
spelled another way — goes to cli/main.py, which gives the same answer, error and exit
status it always did (tests/test_startup.py runs both ways and compares).
"""
from __future__ import annotations

import errno
import os
import sys
from typing import Any

FORMATS = ("vmcore-dmesg", "makedumpfile", "raw")
TIMES = ("seconds", "human", "none")
FLAGS = {"dmesg": {"--since-clear": "since_clear", "--show-caller": "show_caller", "--dev-info": "dev_info"},
         "log": {"-m": "show_level", "-T": "human", "-t": "no_time"}}
VALUED = {"--format": "style", "--tail": "tail", "--time": "time_fmt", "--color": "color"}


def parse_dmesg(args: list[str]) -> tuple[str, list[str], dict[str, Any]] | None:
    """(command, dump files, its options) when `args` is a `dmesg` or `log` command line that
    the fast path answers exactly as the click CLI would; None otherwise."""
    if args[:1] == ["--no-pager"]:
        args = args[1:]
    if args[:1] not in (["dmesg"], ["log"]):
        return None
    command = args[0]
    flags = FLAGS[command]
    opts: dict[str, Any] = {}
    dump: str | None = None
    rest = args[1:]
    i = 0
    while i < len(rest):
        a = rest[i]
        i += 1
        if a in flags:
            opts[flags[a]] = True
            continue
        name, eq, value = a.partition("=")
        if command == "dmesg" and name in VALUED:
            if not eq:
                if i >= len(rest):
                    return None
                value = rest[i]
                i += 1
            key = VALUED[name]
            if key == "style" and value in FORMATS or key == "time_fmt" and value in TIMES \
                    or key == "color" and value in ("auto", "never"):
                opts[key] = value
            elif key == "tail" and value.isascii() and value.isdigit():
                opts[key] = int(value)
            else:
                return None  # click's own message for a bad value
            continue
        if a.startswith("-") or dump is not None:
            return None  # another option, or a second argument: click says what is wrong
        dump = a
    if dump is None or opts.get("human") and opts.get("no_time"):
        return None
    files = [p for p in dump.split(",") if p]
    if not files or any(not os.path.isfile(p) for p in files):
        return None  # click's DUMP checks word the error
    return command, files, opts


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _drop_stdout() -> None:
    """As cli/main.py: a closed pipe (`| head`) is not an error at the final flush either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run_dmesg(command: str, files: list[str], opts: dict[str, Any]) -> int:
    """Print the log, with cli/main.py's handling of notes, partial results and errors."""
    from ..util.text import printable
    from ._report import run_reporting
    return run_reporting(lambda: _guarded(command, files, opts), lambda line: _err(printable(line)))


def _guarded(command: str, files: list[str], opts: dict[str, Any]) -> int:
    from ..errors import VmcorekitError
    from ..program import Program
    from ..util.text import printable
    from ._dmesg import DmesgOptionError, print_crash_log, print_log

    try:
        with Program.open(files, vmcoreinfo=None) as prog:
            (print_log if command == "dmesg" else print_crash_log)(prog, **opts)
        return 0
    except DmesgOptionError as e:  # click.ClickException's line and status
        _err(f"vmcorekit: error: {' '.join(str(e).split())}")
        return 1
    except VmcorekitError as e:
        _err(printable(f"vmcorekit: error: {e}"))
        return 1
    except OSError as e:
        if e.errno == errno.EPIPE:  # BrokenPipeError included
            _drop_stdout()
            return 0
        where = f"{e.filename}: " if e.filename else ""
        _err(printable(f"vmcorekit: error: {where}{e.strerror or e}"))
        return 1
    except KeyboardInterrupt:
        _err("vmcorekit: interrupted")
        return 130


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as cli/main.py, should numpy load
    args = sys.argv[1:] if argv is None else argv
    if os.environ.get("VMCOREKIT_FAST", "1") != "0" and "_VMCOREKIT_COMPLETE" not in os.environ:
        try:
            tty = sys.stdout.isatty()
        except (AttributeError, ValueError):
            tty = True
        parsed = None if tty else parse_dmesg(args)
        if parsed is not None:
            return run_dmesg(*parsed)
    from .main import main as cli_main
    return cli_main(argv)
