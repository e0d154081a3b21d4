"""`vmcorekit swap DUMP`: swap areas in use, as crash's swap."""
from __future__ import annotations

import click

from .common import dump_arguments, emit_json, json_convention, open_program


@click.command("swap")
@dump_arguments
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, as_json: bool) -> None:
    """Swap areas: SWAP_INFO_STRUCT TYPE SIZE USED PCT PRI FILENAME, as crash's swap."""
    from ..errors import TypeLookupError, partial_result
    from ..kernel.swap import free_swap_pages, swap_areas
    from ..util.text import printable
    with open_program(dump, vmcoreinfo_file) as prog:
        ps = prog.page_size
        try:
            areas = swap_areas(prog)
        except TypeLookupError as e:
            # what is left: the free swap count, a global the symbol table still names
            free = free_swap_pages(prog)
            partial_result(f"swap areas unknown: {e}" + ("" if free is None else
                           f"; nr_swap_pages (free swap) is {free} pages"))
            if as_json:
                emit_json({"page_size": ps, "areas": None,
                           "free_bytes": None if free is None else free * ps})
            return
    if as_json:
        emit_json({"page_size": ps, "areas": [json_convention(a.as_dict(ps), {"swap_info"}) for a in areas]})
        return
    click.echo("SWAP_INFO_STRUCT    TYPE       SIZE       USED     PCT  PRI  FILENAME")
    for a in areas:
        pct = f"{a.used * 100 // a.pages}%" if a.pages else "-"
        click.echo(printable(f"{a.address:016x}  {a.kind:<9} {a.pages * ps // 1024:>9}k {a.used * ps // 1024:>9}k "
                             f"{pct:>6} {a.priority:>4}  {a.path}"))
