"""BTF blobs (the kernel's in-memory type information): the header, the type records of every
kind and the string section, then the type registry built on them (names, sizes, members,
bit fields, lookups by name).

`exercise_btf` is also what tests/test_btf_fuzz.py runs on hypothesis' blobs."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from _harness import fuzz_main

# Names the final lookups try: structs, a global, enum constants.
LOOKUPS = ("task_struct", "list_head", "printk_info", "orc_entry", "runqueues", "NR_ITEMS")


def exercise_btf(data: bytes, *, max_types: int, max_members: int | None = None,
                 program: Callable[[Any], Any] | None = None) -> None:
    """Parse `data` and use every type in it (the first `max_types`; `max_members` members of
    each struct/union, all when None); only VmcorekitError may escape. With `program` (a
    registry -> fake Program), a zero-filled object of each sized type is printed too."""
    from vmcorekit.errors import VmcorekitError
    from vmcorekit.program.objects import Object
    from vmcorekit.program.types import Btf, BtfKind, TypeKind, registry_from_btf

    compound = (TypeKind.STRUCT, TypeKind.UNION, TypeKind.ARRAY)
    try:
        btf = Btf(data)
    except VmcorekitError:
        return
    reg = registry_from_btf(btf)
    src = reg.sources[0]
    prog = program(reg) if program is not None else None
    for tid in list(btf.ids())[:max_types]:
        try:
            bt = btf.type(tid)
            if bt.kind in (BtfKind.VAR, BtfKind.DATASEC, BtfKind.DECL_TAG):
                continue
            t = src.type(tid)
            t.type_name()
            t.size
            t.is_complete()
            s = t.strip_typedefs()
            if s.kind in (TypeKind.STRUCT, TypeKind.UNION):
                for m in (s.members or [])[:max_members]:
                    m.type.type_name()
                    m.type.size
                    reg.offsetof(t, m.name) if m.name else None
                t.member_names()
            size = t.size
            if prog is not None and size is not None and size <= 4096 and bt.kind != BtfKind.FUNC:
                str(Object(prog, t, bytes(size) if s.kind in compound else 0))
            if bt.name:
                btf.find(bt.name)
                reg.has_type(f"struct {bt.name}")
                reg.has_type(bt.name)
            t == t
        except VmcorekitError:
            pass
    for name in LOOKUPS:
        for fn in (lambda: reg.lookup(f"struct {name}"), lambda: reg.global_info(name),
                   lambda: reg.constant(name), lambda: btf.find_enumerator(name)):
            try:
                fn()
            except VmcorekitError:
                pass


def test_one_input(data: bytes) -> None:
    exercise_btf(data, max_types=120, max_members=16)


if __name__ == "__main__":
    fuzz_main(test_one_input, __file__, ("vmcorekit.program.types",))
