#!/usr/bin/env python3
"""Render vmcorekit's command-line help into man pages: man/vmcorekit.1 and one
man/vmcorekit-COMMAND.1 per command, from the click commands themselves (so they cannot drift
from `--help`; tests/test_cli_firstcontact.py checks they are current).

    python3 tools/make-man.py            # rewrite man/
    python3 tools/make-man.py --check    # exit 1 if man/ is out of date

The roff is built from each parameter's names, type and help text, not from click's formatted
help, whose wrapping differs between click versions."""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import click

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from vmcorekit.cli.main import cli  # noqa: E402

SECTION = "1"
MANUAL = "vmcorekit manual"


def _esc(text: str) -> str:
    """Text for roff: backslashes doubled, a leading dot or quote protected, dashes literal."""
    out = []
    for line in text.splitlines():
        line = line.replace("\\", "\\e").replace("-", "\\-")
        if line.startswith((".", "'")):
            line = "\\&" + line
        out.append(line)
    return "\n".join(out)


def _short(cmd: click.Command, limit: int = 200) -> str:
    """The command's one-line summary: its short_help, else the first sentence of its help.
    Made here, not by click, whose shortening differs between releases (the pages must not
    change with the click installed)."""
    if cmd.short_help:
        return " ".join(cmd.short_help.split())
    first = " ".join((cmd.help or "").split("\n\n")[0].split())
    m = re.search(r"\.(?:\s|$)", first)
    text = first[:m.start() + 1] if m else first
    if len(text) > limit:
        text = text[:limit - 3].rsplit(" ", 1)[0] + "..."
    return text


def _paragraphs(help_text: str) -> str:
    """click's help: paragraphs separated by blank lines; a paragraph after \\b keeps its lines."""
    out: list[str] = []
    for para in help_text.strip().split("\n\n"):
        lines = para.split("\n")
        if lines[0].strip() == "\b":
            out += [".PP", ".nf", _esc("\n".join(lines[1:])), ".fi"]
        else:
            out += [".PP", _esc(" ".join(x.strip() for x in lines))]
    return "\n".join(out)


def _metavar(p: click.Parameter) -> str:
    if p.metavar:
        return p.metavar
    if isinstance(p.type, click.Choice):
        return "[" + "|".join(map(str, p.type.choices)) + "]"
    return p.type.name.upper()


def _option(p: click.Option) -> str:
    names = ", ".join(f"\\fB{_esc(o)}\\fR" for o in [*p.opts, *p.secondary_opts])
    if not p.is_flag and not p.count:
        names += f" \\fI{_esc(_metavar(p))}\\fR"
    text = p.help or ""
    if p.show_default and p.default is not None and not p.is_flag:
        text += f" [default: {p.default}]"
    return f".TP\n{names}\n{_esc(text)}"


def _usage(name: str, cmd: click.Command) -> str:
    parts = ["[OPTIONS]"]
    for p in cmd.params:
        if isinstance(p, click.Argument):
            mv = p.metavar or p.name.upper()
            if p.nargs == -1 and not mv.endswith("..."):
                mv += "..."
            parts.append(mv if p.required else f"[{mv}]")
    return f".SH SYNOPSIS\n\\fB{_esc(name)}\\fR {_esc(' '.join(parts))}"


def page(name: str, cmd: click.Command, version: str, see_also: list[str]) -> str:
    short = _short(cmd).rstrip(".")
    out = [f'.TH "{name.upper()}" "{SECTION}" "" "vmcorekit {version}" "{MANUAL}"',
           ".SH NAME", f"{_esc(name)} \\- {_esc(short)}", _usage(name, cmd),
           ".SH DESCRIPTION", _paragraphs(cmd.help or "")]
    opts = [p for p in cmd.params if isinstance(p, click.Option) and not p.hidden]
    if opts:
        out += [".SH OPTIONS", *(_option(p) for p in opts)]
    if isinstance(cmd, click.Group):  # vmcorekit itself, and groups such as `fleet`
        out.append(".SH COMMANDS")
        for sub in cmd.list_commands(None):  # type: ignore[arg-type]
            c = cmd.get_command(None, sub)  # type: ignore[arg-type]
            out += [".TP", f"\\fB{_esc(sub)}\\fR", _esc(_short(c) if c else "")]
    if name == "vmcorekit":
        out += [".SH EXIT STATUS", ".TP", "0", "success", ".TP", "1", "error (one line on stderr)",
                ".TP", "2", "usage error: bad arguments or options, a missing file",
                ".TP", "3", "partial result: the dump is damaged or filtered and part of the answer is missing",
                ".SH ENVIRONMENT", ".TP", "VMCOREKIT_CACHE",
                "where compressed dumps (.zst, .xz, .gz) are decompressed once",
                ".TP", "_VMCOREKIT_COMPLETE",
                _esc("shell completion: eval \"$(_VMCOREKIT_COMPLETE=bash_source vmcorekit)\" "
                     "(zsh_source, fish_source for those shells)")]
    out += [".SH SEE ALSO", ", ".join(f"\\fB{_esc(s)}\\fR({SECTION})" for s in see_also
                                    if s != name) or "\\fBvmcorekit\\fR(1)"]
    return "\n".join(out) + "\n"


def pages() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    try:
        ver = version("vmcorekit")
    except PackageNotFoundError:
        ver = "unknown"
    names = cli.list_commands(None)  # type: ignore[arg-type]
    subs = [f"vmcorekit-{n}" for n in names]
    out = {f"vmcorekit.{SECTION}": page("vmcorekit", cli, ver, subs)}
    for n in names:
        cmd = cli.get_command(None, n)  # type: ignore[arg-type]
        assert cmd is not None, n
        out[f"vmcorekit-{n}.{SECTION}"] = page(f"vmcorekit-{n}", cmd, ver, ["vmcorekit"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if man/ is out of date")
    ap.add_argument("--out", default=str(REPO / "man"), help="output folder (default: man/)")
    a = ap.parse_args()
    out = Path(a.out)
    want = pages()
    have = {p.name: p.read_text() for p in out.glob("vmcorekit*.1")} if out.exists() else {}
    if a.check:
        stale = sorted(n for n in set(want) | set(have) if want.get(n) != have.get(n))
        for n in stale:
            print(f"man/{n} is out of date: run python3 tools/make-man.py", file=sys.stderr)
        return 1 if stale else 0
    out.mkdir(exist_ok=True)
    for n in set(have) - set(want):
        os.unlink(out / n)
    for n, text in want.items():
        (out / n).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
