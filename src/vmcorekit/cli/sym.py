"""`vmcorekit sym DUMP ADDR|NAME...`: symbol <-> address, like crash's `sym`."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..errors import SymbolError
from ..util.text import printable
from .common import dump_arguments, emit_json, json_convention, open_program

if TYPE_CHECKING:  # numpy stays unimported until a command runs
    from ..program.symbols import SymbolTable


def _as_address(text: str) -> int | None:
    t = text.strip().lower()
    t = t[2:] if t.startswith("0x") else t
    try:
        return int(t, 16) if t else None
    except ValueError:
        return None


def sym_line(address: int, type_char: str, label: str, module: str | None) -> str:
    """crash's layout: `ffffffff9e21aa40 (D) init_task`, `... (t) brd_probe [brd]`."""
    return f"{address:016x} ({type_char}) {label}" + (f" [{module}]" if module else "")


def resolve(table: "SymbolTable", text: str) -> list[dict[str, object]]:
    """A name (every symbol of that name; `module:name` for one module's) or else a hex
    address (the symbol containing it). A word that is both, like `add`, is a name, as in crash."""
    named = table.find(text)
    if named:
        out = []
        for s in named:
            d = s.to_dict()
            d.update(query=text, offset=0, line=sym_line(s.address, s.type, s.name, s.module))
            out.append(d)
        return out
    addr = _as_address(text)
    if addr is None:
        raise SymbolError(f"{text}: no such symbol")
    s = table.lookup(addr)
    if s is None:
        raise SymbolError(f"{addr:#x}: no symbol contains this address")
    off = addr - s.address
    # Offset in decimal, exactly as crash prints it (the size is in --json).
    label = s.name if off == 0 else f"{s.name}+{off}"
    d = s.to_dict()
    d.update(query=text, offset=off, line=sym_line(addr, s.type, label, s.module))
    return [d]


def sym_json(d: dict[str, object]) -> dict[str, object]:
    return json_convention(d, {"address"}, {"size": "size_bytes"})  # type: ignore[no-any-return]


@click.command("sym")
@dump_arguments
@click.argument("what", nargs=-1, metavar="ADDR|NAME...")
@click.option("-l", "list_all", is_flag=True, help="Every symbol, by address (crash's sym -l).")
@click.option("-q", "search", metavar="STRING", help="Every symbol whose name contains STRING (crash's sym -q).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--system-map", type=click.Path(exists=True, dir_okay=False),
              help="Take vmlinux symbols from this System.map (shifted by KERNELOFFSET).")
@click.option("--vmlinux", type=click.Path(exists=True, dir_okay=False),
              help="Take vmlinux symbols from this ELF's .symtab (shifted by KERNELOFFSET).")
def command(dump: str, vmcoreinfo_file: str | None, what: tuple[str, ...], list_all: bool,
            search: str | None, as_json: bool, system_map: str | None, vmlinux: str | None) -> None:
    """Translate symbol names to addresses and addresses to `symbol+offset`, from the dump's
    own kallsyms and module symbol tables (no debuginfo needed)."""
    if bool(what) + list_all + (search is not None) != 1:
        raise click.UsageError("give ADDR|NAME..., or -l, or -q STRING")
    with open_program(dump, vmcoreinfo_file) as prog:
        if system_map or vmlinux:
            from ..program.symbols import kernel_symbols
            table = kernel_symbols(prog, system_map=system_map, vmlinux=vmlinux)
        else:
            table = prog.symbols
        if list_all or search is not None:
            table.load_deferred()
            found = sorted((s for s in table if search is None or search in s.name),
                           key=lambda s: (s.address, s.module or "", s.name))
            if as_json:
                emit_json([sym_json(s.to_dict()) for s in found])
            else:
                for sy in found:
                    click.echo(sym_line(sy.address, sy.type, sy.name, sy.module))
            return
        results: list[dict[str, object]] = []
        errors: list[SymbolError] = []
        for w in what:
            try:
                found = resolve(table, w)
            except SymbolError as e:
                # Like crash: go on with the rest, fail at the end (one error line says which).
                errors.append(e)
                continue
            results += found
            if not as_json:
                for r in found:
                    click.echo(printable(str(r["line"])))
    if as_json:
        emit_json([sym_json({k: v for k, v in r.items() if k != "line"}) for r in results])
    if errors:
        raise SymbolError(f"{len(errors)} of {len(what)} not resolved: {'; '.join(map(str, errors))}"
                          if len(what) > 1 else str(errors[0]))
