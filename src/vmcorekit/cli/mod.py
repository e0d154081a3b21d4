"""`vmcorekit mod DUMP [NAME...]`: loaded kernel modules, like crash's `mod`.

Piped: crash's columns (MODULE, NAME, BASE, SIZE), then STATE and TAINT where crash shows the
object file it loaded (vmcorekit loads none: module symbols come from the dump itself);
rows in crash's order (by base address). Out-of-tree (O) and unsigned (E) modules are
flagged in TAINT. crash's layout on a terminal and in a pipe; --json for scripts.
"""
from __future__ import annotations

import click

from ..errors import note, partial_result
from ..util.text import printable
from .common import dump_arguments, emit_json, json_convention, open_program


def mod_lines(mods: list) -> list[str]:  # type: ignore[type-arg]
    """crash's layout: MODULE and BASE centred in 16 columns, NAME as wide as the longest."""
    namew = max([len(m.name) for m in mods] + [4])
    sizes = ["-" if m.size is None else str(m.size) for m in mods]
    sizew = max([len(s) for s in sizes] + [4])
    out = [f"{'MODULE':^16}  {'NAME':<{namew}}  {'BASE':^16}  {'SIZE':>{sizew}}  STATE     TAINT"]
    for m, size in zip(mods, sizes):
        base = "-".center(16) if m.base is None else f"{m.base:016x}"
        taint = m.taint_letters or ("-" if m.taints is not None else "?")
        flags = []
        if m.out_of_tree:
            flags.append("out-of-tree")
        if m.unsigned:
            flags.append("unsigned")
        if flags:
            taint += f" ({', '.join(flags)})"
        out.append(printable(f"{m.address:016x}  {m.name:<{namew}}  {base}  {size:>{sizew}}  "
                             f"{m.state:<8}  {taint}".rstrip()))
    return out


@click.command("mod")
@dump_arguments
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, names: tuple[str, ...], as_json: bool) -> None:
    """Every loaded module: struct module address, name, base, size, state and taint
    (out-of-tree and unsigned modules flagged). Base and size need BTF in the dump."""
    from ..kernel.modules import module_table

    with open_program(dump, vmcoreinfo_file) as prog:
        warns: list[str] = []
        mods = module_table(prog, warnings=warns)
        damaged = prog.damaged
    if damaged:
        # A damaged dump: a base, size or taint shown as "-"/"?" may be one the intact dump
        # gives (exit 3).
        for m in mods:
            for what, v in (("base", m.base), ("size", m.size), ("taint", m.taints)):
                if v is None:
                    partial_result(f"mod: {m.name}: {what} unknown in a damaged dump", reported=False)
    missing: list[str] = []
    if names:
        missing = sorted(set(names) - {m.name for m in mods})
        mods = [m for m in mods if m.name in names]
    mods.sort(key=lambda m: (m.base if m.base is not None else m.address, m.address))
    notes = sorted({p for m in mods for p in m.problems})
    for w in warns + notes:
        note(printable(w))
    if as_json:
        # the warnings are in `notes` already (note() above): one list of problems per answer
        emit_json(json_convention({"modules": [m.as_dict() for m in mods]}, {"module", "base"},
                                  {"size": "size_bytes"}))
    else:
        for line in mod_lines(mods):
            click.echo(line)
    if missing:  # like a failed lookup in crash: the others printed, then an error (exit 1)
        raise click.ClickException(f"module not loaded: {', '.join(missing)}")
