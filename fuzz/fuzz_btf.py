"""BTF blobs (the kernel's in-memory type information): the header, the type records of every
kind and the string section, then the type registry built on them (names, sizes, members,
bit fields, lookups by name)."""
from __future__ import annotations

from _harness import fuzz_main


def test_one_input(data: bytes) -> None:
    from vmcorekit.errors import VmcorekitError
    from vmcorekit.program.types import Btf, BtfKind, TypeKind, registry_from_btf

    try:
        btf = Btf(data)
    except VmcorekitError:
        return
    reg = registry_from_btf(btf)
    src = reg.sources[0]
    for tid in list(btf.ids())[:120]:
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
                for m in (s.members or [])[:16]:
                    m.type.type_name()
                    m.type.size
                    reg.offsetof(t, m.name) if m.name else None
            if bt.name:
                btf.find(bt.name)
                reg.has_type(f"struct {bt.name}")
                reg.has_type(bt.name)
        except VmcorekitError:
            pass
    for name in ("task_struct", "list_head", "printk_info", "orc_entry", "NR_ITEMS"):
        for fn in (lambda: reg.lookup(f"struct {name}"), lambda: reg.global_info(name),
                   lambda: reg.constant(name), lambda: btf.find_enumerator(name)):
            try:
                fn()
            except VmcorekitError:
                pass


if __name__ == "__main__":
    fuzz_main(test_one_input, __file__, ("vmcorekit.program.types",))
