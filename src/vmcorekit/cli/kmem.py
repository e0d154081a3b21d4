"""`vmcorekit kmem -i DUMP`: memory usage summary, line for line crash's `kmem -i`."""
from __future__ import annotations

import click

from ..errors import note

from .common import dump_arguments, emit_json, is_tty, open_program


@click.command("kmem")
@dump_arguments
@click.option("-i", "--info", "info", is_flag=True,
              help="Memory usage summary (total, free, used, shared, buffers, cached, slab, huge "
                   "pages, swap, commit limit / committed), as crash's kmem -i.")
@click.option("--no-shared", is_flag=True,
              help="Skip SHARED (it reads every struct page of the machine).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, info: bool, no_shared: bool,
            as_json: bool) -> None:
    """Kernel memory information. Only -i (the summary) is implemented."""
    from ..kernel.meminfo import format_kmem_i, memory_summary

    if not info:
        raise click.UsageError("only `kmem -i` (the memory summary) is implemented; add -i")
    with open_program(dump, vmcoreinfo_file) as prog:
        mi = memory_summary(prog, shared=not no_shared)
    for n in mi.notes:
        note(n)
    if as_json:
        emit_json(mi.as_dict())
        return
    text = format_kmem_i(mi)
    if is_tty():
        from rich.console import Console
        from rich.table import Table

        t = Table(title="Memory", header_style="bold")
        for h in ("", "PAGES", "TOTAL", "PERCENTAGE"):
            t.add_column(h, justify="right")
        for line in text.splitlines()[1:]:
            if not line.strip():
                t.add_section()
                continue
            label = line[:13].strip()
            rest = line[13:].split(None, 1)
            pages = rest[0] if rest else ""
            tail = rest[1] if len(rest) > 1 else ""
            size, _, pct = tail.partition("  ")
            t.add_row(label, pages, size.strip(), pct.strip())
        Console().print(t)
        return
    click.echo(text, nl=False)
