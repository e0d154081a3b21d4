"""`vmcorekit whatis DUMP NAME`: the C declaration of a symbol or a type, like crash's whatis.

    vmcorekit whatis DUMP jiffies            volatile unsigned long jiffies;
    vmcorekit whatis DUMP schedule           void schedule(void);
    vmcorekit whatis DUMP list_head          struct list_head { ... } SIZE: 16
    vmcorekit whatis DUMP pgd_t              typedef struct {...} pgd_t; SIZE: 8
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..util.text import printable
from .common import dump_arguments, emit_json, open_program

if TYPE_CHECKING:
    from ..program import Program
    from ..program.types import Type


def _type_text(t: "Type") -> str:
    from ..program.types import TypeKind
    from ..program.types.model import format_declaration
    from .struct import format_layout
    s = t.strip_typedefs()
    size = s.size
    if t.kind == TypeKind.TYPEDEF:
        target = t.type
        ts = target.strip_typedefs()
        if ts.kind in (TypeKind.STRUCT, TypeKind.UNION) and ts.tag is None and ts.members is not None:
            lines = format_layout(ts, offsets=False).split("\n")[:-1]  # without its SIZE line
            lines[0] = f"{ts.kind.value} {{"  # gdb's `typedef struct {`, no tag to name
            body = "\n".join(lines)
            head = f"typedef {body} {t.name};"
        else:
            head = f"typedef {format_declaration(target, t.name or '')};"
        return f"{head}\nSIZE: {size}" if size is not None else head
    if s.kind in (TypeKind.STRUCT, TypeKind.UNION) and s.members is not None:
        return format_layout(t, offsets=False)
    if s.kind == TypeKind.ENUM and s.enumerators is not None:
        lines = [f"{s.type_name()} {{"] + [f"  {n} = {v}," for n, v in s.enumerators] + ["};"]
        return "\n".join(lines) + (f"\nSIZE: {size}" if size is not None else "")
    name = t.type_name()
    return f"{name}\nSIZE: {size}" if size is not None else name


def whatis(prog: "Program", name: str) -> dict[str, Any]:
    """{"kind": "symbol"|"type", "name", "type", "text", "size_bytes"} for NAME: a symbol
    (variable or function, typed from BTF) first, then a type name."""
    from ..errors import SymbolError, TypeLookupError, VmcorekitError
    from ..program.types.model import format_declaration
    from .struct import resolve_struct_type
    n = " ".join(name.split())
    if n and not n.startswith(("struct ", "union ", "enum ")) and " " not in n and "*" not in n:
        try:
            obj = prog[n]
        except TypeLookupError:
            obj = None
            addr = prog.try_symbol_address(n)
            if addr is not None:
                # A symbol BTF has no type for (BTF types per-CPU variables and functions
                # only): gdb's words for a symbol without debug info.
                sym = prog.symbols.get(n)
                kind = "text" if sym is not None and sym.is_text else "data"
                t = f"<{kind} variable, no debug info>"
                return {"kind": "symbol", "name": n, "type": t, "address": f"{addr:#x}",
                        "size_bytes": None, "text": f"{t} {n};"}
        except (SymbolError, LookupError, VmcorekitError):
            obj = None
        if obj is not None:
            t = obj.type_
            return {"kind": "symbol", "name": n, "type": t.type_name(),
                    "address": f"{obj.address_:#x}" if obj.address_ is not None else None,
                    "size_bytes": t.size, "text": f"{format_declaration(t, n)};"}
    try:
        t = resolve_struct_type(prog, n)
    except TypeLookupError:
        raise TypeLookupError(f"no symbol or type named {name!r} in this dump's symbols and BTF") from None
    return {"kind": "type", "name": n, "type": t.type_name(), "address": None,
            "size_bytes": t.strip_typedefs().size, "text": _type_text(t)}


@click.command("whatis")
@dump_arguments
@click.argument("name", nargs=-1, required=True, metavar="SYMBOL|TYPE")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, name: tuple[str, ...], as_json: bool) -> None:
    """The declaration of a symbol (its BTF type) or the definition of a type."""
    with open_program(dump, vmcoreinfo_file) as prog:
        d = whatis(prog, " ".join(name))
        if as_json:
            emit_json(d)
        else:
            click.echo(printable(d["text"]))
