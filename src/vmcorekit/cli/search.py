"""`vmcorekit search DUMP VALUE|-c STRING`: find a value or a string in memory, as crash's search."""
from __future__ import annotations

import click

from .common import dump_arguments, emit_json, json_convention, open_program, parse_address, resolve_address


@click.command("search")
@dump_arguments
@click.argument("value", required=False)
@click.option("-k", "kernel", is_flag=True, help="Kernel memory, through the direct map (the default).")
@click.option("-p", "physical", is_flag=True, help="Physical memory: addresses are physical.")
@click.option("-s", "start", metavar="ADDR", help="Start here (an address or a symbol).")
@click.option("-e", "end", metavar="ADDR", help="End before this address.")
@click.option("-l", "length", metavar="BYTES", help="Search this many bytes (hex) from -s.")
@click.option("-m", "mask", metavar="MASK", help="Ignore these bits of each word (hex).")
@click.option("-c", "string", metavar="STRING", help="Search for this string instead of a value.")
@click.option("-w", "width", flag_value=4, type=int, help="Match 32-bit words.")
@click.option("--half", "width", flag_value=2, type=int, help="Match 16-bit words (crash's -h; -h is help here).")
@click.option("--max-hits", type=click.IntRange(1), default=1000, show_default=True,
              help="Stop after this many matches (then exit 3).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, value: str | None, kernel: bool, physical: bool,
            start: str | None, end: str | None, length: str | None, mask: str | None, string: str | None,
            width: int | None, max_hits: int, as_json: bool) -> None:
    """Search memory the dump holds for VALUE (hex, or a symbol: its address) or, with -c, a
    string; each match as ADDRESS: VALUE, as crash's search (-k kernel memory, -p physical)."""
    from ..errors import note, partial_result
    from ..kernel.search import search_string, search_value
    from ..util.text import printable
    if (value is None) == (string is None) or (kernel and physical) or \
            (string is not None and (mask is not None or width is not None)):
        raise click.UsageError("usage: vmcorekit search [-k|-p] [-s ADDR] [-e ADDR|-l LEN] "
                               "[-m MASK] DUMP VALUE | -c STRING")
    with open_program(dump, vmcoreinfo_file) as prog:
        lo = None if start is None else resolve_address(prog, start)
        hi = None if end is None else resolve_address(prog, end)
        if length is not None:
            if lo is None:
                raise click.UsageError("-l needs -s")
            hi = lo + parse_address(length)
        if string is not None:
            hits, stats = search_string(prog, string.encode(), start=lo, end=hi, physical=physical,
                                        limit=max_hits)
        else:
            v = resolve_address(prog, value)  # type: ignore[arg-type]
            hits, stats = search_value(prog, v, mask=0 if mask is None else parse_address(mask),
                                       start=lo, end=hi, physical=physical, limit=max_hits, width=width)
        w = (width or prog.space.pointer_size) * 2
    if stats.truncated:
        partial_result(f"search: stopped after {max_hits} matches (--max-hits)")
    if stats.pages_missing:
        note(f"search: {stats.pages_missing} pages of the range are not in the dump (filtered out or "
             f"missing): not searched")
    def text(h: "object") -> str:
        # the match and the printable ASCII after it, as crash shows a string match
        ctx: bytes = h.context  # type: ignore[attr-defined]
        n = len(string or "")
        while n < len(ctx) and 0x20 <= ctx[n] < 0x7F:
            n += 1
        return ctx[:n].decode("utf-8", "backslashreplace")

    if as_json:
        emit_json(json_convention({"matches": [{"address": h.address, "physical": h.physical, "value": h.value,
                                                **({"text": text(h)} if string is not None else {})} for h in hits],
                                   "bytes_searched": stats.bytes_read, "pages_missing": stats.pages_missing},
                                  {"address", "physical", "value"}))
        return
    for h in hits:
        if string is not None:
            click.echo(printable(f"{h.address:x}: {text(h)}"))
        else:
            click.echo(f"{h.address:x}: {h.value:0{w}x}")
