"""Tables: one plain aligned layout on a terminal and in a pipe (so output diffs cleanly and
nothing is cut to fit a window); colour only as decoration."""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from ..util.text import printable


def human_size(n: float) -> str:
    """Bytes for a person: "512 B", "1.5 MiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def color_enabled() -> bool:
    """Colour is decoration only: on a terminal, and not when NO_COLOR is set (any value,
    no-color.org) or TERM is dumb. Output is the same text either way."""
    return (sys.stdout.isatty() and "NO_COLOR" not in os.environ
            and os.environ.get("TERM", "") != "dumb")


def bold(text: str) -> str:
    return click.style(text, bold=True) if color_enabled() else text


def print_table(title: str | None, headers: Sequence[str], rows: Sequence[Sequence[object]],
                right: Sequence[int] = ()) -> None:
    """Aligned columns, the same on a terminal and in a pipe: never truncated (an address is
    what users paste into the next command), no trailing spaces; the header bold on a colour
    terminal."""
    cells = [[str(h) for h in headers]] + [[printable(str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, r in enumerate(cells):
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        line = "  ".join(parts).rstrip()
        click.echo(bold(line) if n == 0 else line)


def kv_table(title: str | None, rows: Sequence[tuple[str, str]]) -> None:
    """KEY  value lines (crash's `sys` layout), the same on a terminal and in a pipe."""
    if not rows:
        return
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        click.echo(bold(printable(k.upper().ljust(w))) + printable(f"  {v}".rstrip()))
