"""`vmcorekit list DUMP START`: walk a linked list like crash's `list`, cycle-safe and bounded.

    vmcorekit list DUMP -h init_task -o task_struct.tasks -s task_struct.pid,comm
    vmcorekit list DUMP -H modules -o module.list -s module.name
    vmcorekit list DUMP -o 8 0xffff...             a chain of `next` pointers at offset 8

START is a hex address or a symbol. Without -h/-H the pointer at START+offset holds the next
entry's address (NULL or START again ends the list). With -h START is a structure holding a
list_head at the offset (itself printed first); with -H START is a bare list_head (not printed).
"""
from __future__ import annotations

from typing import Any

import click

from ..util.text import printable
from .common import dump_arguments, emit_json, open_program, resolve_address

@click.command("list")
@dump_arguments
@click.argument("start", metavar="START")
@click.option("-o", "--offset", "offset_text", metavar="N|STRUCT.MEMBER",
              help="Where the next pointer (or the list_head, with -h/-H) is in each entry.")
@click.option("-s", "--struct", "struct_spec", metavar="STRUCT[.MEMBER,...]",
              help="Print each entry as this struct (only the members named).")
@click.option("-h", "--head-in-struct", "head_in_struct", is_flag=True,
              help="START is a structure holding the list_head at the offset (printed first).")
@click.option("-H", "--list-head", "list_head", is_flag=True,
              help="START is a list_head that heads the list (not printed).")
@click.option("-r", "--reverse", is_flag=True, help="With -h/-H: follow prev pointers.")
@click.option("-x", "--hex", "hex_", is_flag=True, help="Integers in hexadecimal.")
@click.option("--max", "limit", type=click.IntRange(1, 1 << 22), default=1 << 20, show_default=True,
              help="Stop with an error after this many entries.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(dump: str, vmcoreinfo_file: str | None, start: str, offset_text: str | None,
            struct_spec: str | None, head_in_struct: bool, list_head: bool, reverse: bool, hex_: bool,
            limit: int, as_json: bool) -> None:
    """Walk a linked list from START and print each entry's address (and, with -s, its
    members). A list that loops without coming back, or a pointer that does not read, ends
    the walk with one line saying where (exit status 3)."""
    from ..kernel.lists import guarded_walk, linked_nodes, list_nodes
    from ..program.objects import Object
    from .struct import json_value, offset_arg, resolve_struct_type
    if head_in_struct and list_head:
        raise click.UsageError("-h and -H exclude each other")
    if reverse and not (head_in_struct or list_head):
        raise click.UsageError("-r needs -h or -H (a doubly linked list_head list)")
    with open_program(dump, vmcoreinfo_file) as prog:
        off = offset_arg(prog, offset_text, "-o")
        st = None
        members: list[str] = []
        if struct_spec:
            sname, _, mtext = struct_spec.partition(".")
            st = resolve_struct_type(prog, sname)
            members = [m.strip() for m in mtext.split(",") if m.strip()]
        base = resolve_address(prog, start)
        what = f"list from {start}"
        if head_in_struct or list_head:
            head = (base + off) & 0xFFFFFFFFFFFFFFFF if head_in_struct else base
            nodes = ((n - off) & 0xFFFFFFFFFFFFFFFF
                     for n in list_nodes(prog, head, what=what, limit=limit, reverse=reverse))
            entries: Any = ([base] if head_in_struct else []), nodes
        else:
            entries = [], linked_nodes(prog, base, off, what=what, limit=limit)
        first, rest = entries
        out: list[dict[str, Any]] = []

        def emit(addr: int) -> None:
            obj = Object(prog, st, address=addr) if st is not None else None
            if as_json:
                rec: dict[str, Any] = {"address": f"{addr:#x}"}
                if obj is not None:
                    rec["value"] = ({m: json_value(obj.subobject_(m) if ("." in m or "[" in m) else obj.member_(m))
                                     for m in members} if members else json_value(obj))
                out.append(rec)
                return
            text = f"{addr:x}"
            if obj is not None:
                text += "\n" + (obj.format_members_(members, hex=hex_) if members else obj.format_(hex=hex_))
            click.echo(printable(text))

        for a in first:
            emit(a)
        for a in guarded_walk(rest, "warn"):
            emit(a)
        if as_json:
            emit_json({"start": f"{base:#x}", "offset": off, "entries": out})
