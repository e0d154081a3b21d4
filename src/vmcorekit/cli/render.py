"""Tables: rich on a terminal, plain aligned text when piped (so output diffs cleanly)."""
from __future__ import annotations

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


def print_table(title: str | None, headers: Sequence[str], rows: Sequence[Sequence[object]],
                right: Sequence[int] = ()) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text
        t = Table(title=title, header_style="bold")
        for i, h in enumerate(headers):
            t.add_column(h, justify="right" if i in right else "left")
        for r in rows:
            # Text, not str: cells are data ("[swapper/0]"), never rich markup.
            t.add_row(*[Text(printable(str(c))) for c in r])
        Console().print(t)
        return
    cells = [[str(h) for h in headers]] + [[printable(str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        click.echo("  ".join(parts).rstrip())


def kv_table(title: str | None, rows: Sequence[tuple[str, str]]) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text
        t = Table(title=title, show_header=False)
        t.add_column(style="bold")
        t.add_column()
        for k, v in rows:
            t.add_row(Text(printable(k)), Text(printable(v)))
        Console().print(t)
        return
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        click.echo(printable(f"{k.upper().ljust(w)}  {v}"))
