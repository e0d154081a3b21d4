"""`vmcorekit rd DUMP ADDR [COUNT]`: memory as words, like crash's rd."""
from __future__ import annotations

from collections.abc import Callable

import click

from ..errors import MemoryReadError
from .common import dump_arguments, open_program, parse_address, resolve_address

_FMT = {8: "<B", 16: "<H", 32: "<I", 64: "<Q"}


def hexdump_lines(addr: int, data: bytes, width: int, show_ascii: bool = True, *, decimal: bool = False,
                  symbol: Callable[[int], str | None] | None = None) -> list[str]:
    """crash-style: address, words, then the bytes as ASCII ('.' for non-printables);
    `decimal` (rd -d) signed decimal words, `symbol` (rd -s) a word's symbol where it has one."""
    unit = width // 8
    per_line = 16
    lines = []
    for off in range(0, len(data), per_line):
        chunk = data[off:off + per_line]
        words = [int.from_bytes(chunk[i:i + unit], "little", signed=decimal)
                 for i in range(0, len(chunk) - unit + 1, unit)]
        if decimal:
            text = " ".join(f"{w:>{len(str(-(1 << (width - 1))))}}" for w in words)
        elif symbol is not None:
            text = " ".join(f"{symbol(w) or f'{w:0{unit * 2}x}':<{unit * 2}}" for w in words).rstrip()
        else:
            text = " ".join(f"{w:0{unit * 2}x}" for w in words)
        line = f"{addr + off:x}:  {text}"
        if show_ascii:
            pad = (per_line // unit) * (unit * 2 + 1) - 1
            asc = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
            line = f"{line:<{len(f'{addr + off:x}:  ') + pad}}   {asc}"
        lines.append(line)
    return lines


@click.command("rd")
@dump_arguments
@click.argument("address")
@click.argument("count", required=False, default="1")
@click.option("-p", "--physical", is_flag=True, help="ADDRESS is physical.")
@click.option("-8", "width", flag_value=8, help="Bytes.")
@click.option("-16", "width", flag_value=16, help="16-bit words.")
@click.option("-32", "width", flag_value=32, help="32-bit words.")
@click.option("-64", "width", flag_value=64, default=True, help="64-bit words (default).")
@click.option("-a", "--ascii", "as_string", is_flag=True, help="Print as a NUL-terminated string.")
@click.option("-x", "no_ascii", is_flag=True, help="Omit the ASCII column (crash's rd -x).")
@click.option("-d", "decimal", is_flag=True, help="Signed decimal words, no ASCII (crash's rd -d).")
@click.option("-s", "symbols", is_flag=True,
              help="Words that are kernel symbol addresses shown as symbol+offset, no ASCII (crash's rd -s; "
                   "64-bit words).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the raw bytes to a file.")
def command(dump: str, vmcoreinfo_file: str | None, address: str, count: str, physical: bool,
            width: int, as_string: bool, no_ascii: bool, decimal: bool, symbols: bool,
            output: str | None) -> None:
    """Read COUNT units (default 1) at ADDRESS (hex or a VMCOREINFO symbol)."""
    if decimal and symbols:
        raise click.UsageError("-d and -s exclude each other")
    if symbols:
        width = 64
    with open_program(dump, vmcoreinfo_file) as prog:
        addr = parse_address(address) if physical else resolve_address(prog, address)
        if as_string:
            text = prog.read_cstring(addr, 1 << 16).decode("utf-8", "backslashreplace")
            if text:  # an empty string (a NUL first) prints nothing, not an empty line
                click.echo(text)
            else:
                from ..errors import note
                note(f"{addr:#x}: empty string (the first byte is NUL)")
            return
        try:
            n = int(count, 0)
        except ValueError:
            raise click.BadParameter(f"expected a count, got {count!r}") from None
        if n <= 0 or n > 1 << 28:
            raise click.BadParameter(f"count must be between 1 and {1 << 28}")
        size = n * (width // 8)
        if output:
            from ..util.fileout import atomic_output
            with atomic_output(output) as f:
                f.write(prog.read(addr, size, physical=physical))
            return
        def symbol(w: int) -> str | None:
            sym = prog.symbols.lookup(w) if w >> 63 else None  # kernel addresses only
            if sym is None:
                return None
            return sym.name if w == sym.address else f"{sym.name}+{w - sym.address}"

        def dump_lines(data: bytes) -> list[str]:
            return hexdump_lines(addr, data, width, not (no_ascii or decimal or symbols), decimal=decimal,
                                 symbol=symbol if symbols else None)

        # Read page by page so a hole in the middle prints what came before it.
        data = bytearray()
        pos = addr
        try:
            while len(data) < size:
                n_read = min(size - len(data), prog.page_size - pos % prog.page_size)
                data += prog.read(pos, n_read, physical=physical)
                pos += n_read
        except MemoryReadError:
            if not data:
                raise
            click.echo("\n".join(dump_lines(bytes(data))))
            raise
        click.echo("\n".join(dump_lines(bytes(data))))
