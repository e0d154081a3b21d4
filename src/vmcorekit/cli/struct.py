"""`vmcorekit struct DUMP TYPE [ADDR]`: a structure in memory, printed like crash's `struct`.

    vmcorekit struct DUMP task_struct init_task          whole struct, crash/gdb layout
    vmcorekit struct DUMP task_struct.pid,comm ADDR      chosen members only
    vmcorekit struct DUMP rq.cpu,nr_running runqueues:a  a per-CPU variable on every CPU
    vmcorekit struct DUMP list_head                      layout with offsets (crash struct -o)
    vmcorekit struct DUMP page -o ADDR                   layout with member addresses
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..util.text import printable
from .common import dump_arguments, emit_json, open_program, parse_address

if TYPE_CHECKING:
    from ..program import Program
    from ..program.types import Type

# Bound on -c: crash has none, but a typo should not print a million structs.
MAX_COUNT = 1 << 20


def resolve_struct_type(prog: "Program", name: str) -> "Type":
    """'task_struct', 'struct task_struct', 'union rcu_special' or a typedef name."""
    from ..errors import TypeLookupError
    from ..program.types import TypeKind
    n = " ".join(name.split())
    if n.startswith(("struct ", "union ", "enum ")) or n.endswith("*") or "[" in n:
        return prog.types.lookup(n)
    errors = []
    for spec in (f"struct {n}", f"union {n}", n):
        try:
            t = prog.types.lookup(spec)
        except TypeLookupError as e:
            errors.append(str(e))
            continue
        if t.strip_typedefs().kind in (TypeKind.STRUCT, TypeKind.UNION) or spec == n:
            return t
    raise TypeLookupError(f"no struct, union or type named {name!r} ({errors[0]})")


def offset_arg(prog: "Program", text: str | None, hint: str) -> int:
    """An offset option: a number (decimal or 0x hex) or STRUCT.MEMBER (its offset)."""
    if text is None:
        return 0
    t = text.strip()
    try:
        return int(t, 0)
    except ValueError:
        pass
    name, dot, member = t.partition(".")
    if not dot or not member:
        raise click.BadParameter(f"expected a number or struct.member, got {text!r}", param_hint=hint)
    return prog.types.offsetof(resolve_struct_type(prog, name), member)


def _decl(t: "Type", name: str) -> str:
    from ..program.types.model import format_declaration
    return format_declaration(t, name)


def format_layout(t: "Type", address: int | None = None, *, offsets: bool = True) -> str:
    """The type's members with their offsets (or addresses), like crash's `struct -o`:
    anonymous structs and unions are expanded in place, named ones are not. Without
    offsets: the declaration alone, indented four spaces (crash's `whatis`)."""
    from ..program.types import TypeKind
    s = t.strip_typedefs()
    if s.kind not in (TypeKind.STRUCT, TypeKind.UNION) or s.members is None:
        from ..errors import TypeLookupError
        raise TypeLookupError(f"{t.type_name()} is not a complete struct or union")
    size = s.size or 0
    width = len(f"[{size}]") + 2
    lines = [f"{s.type_name()} {{"]

    if not offsets:
        width = 3

    def where(bit: int) -> str:
        if not offsets:
            return "   "
        if address is not None:
            return f"  [{address + bit // 8:x}]"
        return f"[{bit // 8}]".rjust(width)

    blank = " " * (len(where(0)) if address is not None and offsets else width)

    def walk(c: "Type", base: int, level: int, depth: int) -> None:
        pad = "    " * level
        for m in c.members or []:
            mt = m.type
            ms = mt.strip_typedefs() if mt.kind != TypeKind.TYPEDEF else mt
            anon_compound = (ms.kind in (TypeKind.STRUCT, TypeKind.UNION) and ms.tag is None
                             and mt.kind != TypeKind.TYPEDEF and ms.members is not None
                             and depth < 32)
            bit = base + m.bit_offset
            if anon_compound:
                lines.append(f"{blank} {pad}{ms.kind.value} {{")
                walk(ms, bit, level + 1, depth + 1)
                close = f"}} {m.name};" if m.name else "};"
                lines.append(f"{blank} {pad}{close}")
                continue
            decl = _decl(mt, m.name or "")
            if m.bit_field_size is not None:
                decl += f" : {m.bit_field_size}"
            lines.append(f"{where(bit)} {pad}{decl};")

    walk(s, 0, 0, 0)
    lines.append("}")
    lines.append(f"SIZE: {size}")
    return "\n".join(lines)


def _addresses(prog: "Program", text: str) -> list[tuple[int | None, int]]:
    """ADDR, SYMBOL, or either with ':CPU' / ':a' for per-CPU data -> [(cpu, address)]."""
    from ..errors import SymbolError
    from ..kernel.percpu import per_cpu_offset as _per_cpu_offset
    base_text, sep, cpu_text = text.partition(":")
    try:
        base = parse_address(base_text)
    except click.BadParameter:
        try:
            base = prog.symbol_address(base_text)
        except SymbolError:
            base = prog[base_text].address_ or 0
    if not sep:
        return [(None, base)]
    if cpu_text in ("a", "all"):
        cpus = range(len(prog.cpus) or 1)
        try:
            cpus = range(int(prog["nr_cpu_ids"]))
        except Exception:
            pass
    else:
        try:
            cpus = [int(c) for c in cpu_text.split(",")]
        except ValueError:
            raise click.BadParameter(f"bad CPU list {cpu_text!r}") from None
    return [(c, (base + _per_cpu_offset(prog, c)) & 0xFFFFFFFFFFFFFFFF) for c in cpus]


@click.command("struct")
@dump_arguments
@click.argument("type_spec", metavar="TYPE")
@click.argument("address", required=False)
@click.option("-c", "--count", default=1, show_default=True,
              help="Print COUNT consecutive structs starting at ADDR.")
@click.option("-o", "--offsets", is_flag=True, help="Show the layout with member offsets.")
@click.option("-x", "--hex", "hex_", is_flag=True, help="Integers in hexadecimal.")
@click.option("-l", "--member-address", "member_offset", metavar="N|STRUCT.MEMBER",
              help="ADDR is that of the member at this offset (a list_head in a list): "
                   "print the struct holding it (crash's struct -l).")
@click.option("--json", "as_json", is_flag=True, help="Values as JSON.")
def command(dump: str, vmcoreinfo_file: str | None, type_spec: str, address: str | None,
            count: int, offsets: bool, hex_: bool, member_offset: str | None, as_json: bool) -> None:
    """Print a struct or union at ADDR (hex, a symbol, or SYMBOL:CPU / SYMBOL:a for per-CPU
    variables). TYPE may name members: task_struct.pid,comm. Without ADDR, print the layout."""
    from ..program.objects import Object
    if not 1 <= count <= MAX_COUNT:
        raise click.BadParameter(f"count must be 1..{MAX_COUNT}", param_hint="-c")
    name, _, members_text = type_spec.partition(".")
    members = [m.strip() for m in members_text.split(",") if m.strip()] if members_text else []
    with open_program(dump, vmcoreinfo_file) as prog:
        t = resolve_struct_type(prog, name)
        if address is None:
            if as_json:
                emit_json(layout_json(t))
            else:
                click.echo(printable(format_layout(t)))
            return
        targets = _addresses(prog, address)
        if member_offset is not None:
            back = offset_arg(prog, member_offset, "-l")
            targets = [(c, (a - back) & 0xFFFFFFFFFFFFFFFF) for c, a in targets]
        size = t.sizeof()
        out_json: list[dict[str, Any]] = []
        chunks: list[str] = []
        for cpu, base in targets:
            for i in range(count):
                addr = base + i * size
                if offsets:
                    chunks.append(format_layout(t, addr))
                    continue
                obj = Object(prog, t, address=addr)
                if as_json:
                    val = ({m: json_value(obj.subobject_(m) if ("." in m or "[" in m)
                                          else obj.member_(m)) for m in members}
                           if members else json_value(obj))
                    rec: dict[str, Any] = {"type": t.type_name(), "address": f"{addr:#x}",
                                           "value": val}
                    if cpu is not None:
                        rec["cpu"] = cpu
                    out_json.append(rec)
                    continue
                head = f"[{cpu}]: {addr:x}\n" if cpu is not None else ""
                chunks.append(head + (obj.format_members_(members, hex=hex_) if members
                                      else obj.format_(hex=hex_)))
        if as_json:
            emit_json(out_json[0] if len(out_json) == 1 else out_json)
        else:
            sep = "\n" if not members and count > 1 else ""
            # Strings from the dump (a comm, a name) may hold terminal controls.
            click.echo(printable(("\n" + sep).join(chunks)))


def layout_json(t: "Type") -> dict[str, Any]:
    from ..program.types import TypeKind
    s = t.strip_typedefs()
    out = []
    for name in s.member_names():
        m = s.member(name)
        out.append({"name": name, "type": m.type.type_name(), "offset": m.bit_offset // 8,
                    "bit_offset": m.bit_offset, "bit_size": m.bit_field_size,
                    "size_bytes": m.type.size})
    return {"type": s.type_name(), "size_bytes": s.size,
            "kind": s.kind.value if s.kind in (TypeKind.STRUCT, TypeKind.UNION) else None,
            "members": out}


def _jsonable(t: "Type", v: Any, depth: int = 0) -> Any:
    """value_() made friendlier for JSON: char arrays become strings (up to the first NUL),
    pointers hex strings, enums {"value", "name"}."""
    from ..program.types import TypeKind
    s = t.strip_typedefs()
    k = s.kind
    if depth > 64:
        return None
    if k == TypeKind.ARRAY:
        et = s.type.strip_typedefs()
        if et.kind == TypeKind.INT and et.size == 1 and isinstance(v, list):
            raw = bytes(x & 0xFF for x in v)
            return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
        return [_jsonable(s.type, x, depth + 1) for x in v]
    if k in (TypeKind.STRUCT, TypeKind.UNION) and isinstance(v, dict):
        out = {}
        for name, x in v.items():
            try:
                mt = s.member(name).type
            except Exception:
                out[name] = x
                continue
            out[name] = _jsonable(mt, x, depth + 1)
        return out
    if k == TypeKind.POINTER:
        return f"{v:#x}"
    if k == TypeKind.ENUM:
        return {"value": v, "name": s.enumerator_name(v)}
    return v


def json_value(obj: Any) -> Any:
    return _jsonable(obj.type_, obj.value_())
