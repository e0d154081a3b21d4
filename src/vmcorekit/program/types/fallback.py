"""Types from VMCOREINFO alone, for kernels without BTF.

VMCOREINFO's SIZE(x), OFFSET(x.m) and LENGTH(x.m) facts give a partial picture: struct sizes
and some member offsets. Member types are not exported; they come from a small table for the
members VMCOREINFO itself exports (their kernel declarations), else they are inferred as raw
unsigned integers: the widest of 8/4/2/1 bytes that fits before the next known member (or the
end of the struct) and that the offset is aligned to. A member whose extent cannot be bounded
at all becomes `unsigned char []` (its address is known, its value is not).

A few types whose layout is ABI (list_head, rb_node, new_utsname, the fixed-width integer
typedefs) are defined here too, so common walks work without BTF.
"""
from __future__ import annotations

from ...vmcoreinfo import VmcoreInfo
from .model import Member, Type, TypeKind

# Kernel declarations of the members VMCOREINFO exports offsets for.
MEMBER_TYPES: dict[str, str] = {
    "list_head.next": "struct list_head *",
    "list_head.prev": "struct list_head *",
    "page.flags": "unsigned long",
    "page._refcount": "atomic_t",
    "page._mapcount": "atomic_t",
    "page.mapping": "struct address_space *",
    "page.lru": "struct list_head",
    "page.private": "unsigned long",
    "page.compound_dtor": "unsigned char",
    "page.compound_order": "unsigned char",
    "page.compound_head": "unsigned long",
    "page.index": "unsigned long",
    "pglist_data.node_zones": "struct zone",
    "pglist_data.nr_zones": "int",
    "pglist_data.node_mem_map": "struct page *",
    "pglist_data.bdata": "void *",
    "pglist_data.node_start_pfn": "unsigned long",
    "pglist_data.node_present_pages": "unsigned long",
    "pglist_data.node_spanned_pages": "unsigned long",
    "pglist_data.node_id": "int",
    "zone.free_area": "struct free_area",
    "zone.vm_stat": "atomic_long_t",
    "zone.spanned_pages": "unsigned long",
    "free_area.free_list": "struct list_head",
    "mem_section.section_mem_map": "unsigned long",
    "vmap_area.va_start": "unsigned long",
    "vmap_area.list": "struct list_head",
    "vm_struct.addr": "void *",
    "uts_namespace.name": "struct new_utsname",
    "printk_ringbuffer.desc_ring": "struct prb_desc_ring",
    "printk_ringbuffer.text_data_ring": "struct prb_data_ring",
    "printk_ringbuffer.fail": "atomic_long_t",
    "prb_desc_ring.count_bits": "unsigned int",
    "prb_desc_ring.descs": "struct prb_desc *",
    "prb_desc_ring.infos": "struct printk_info *",
    "prb_desc_ring.head_id": "atomic_long_t",
    "prb_desc_ring.tail_id": "atomic_long_t",
    "prb_desc.state_var": "atomic_long_t",
    "prb_desc.text_blk_lpos": "struct prb_data_blk_lpos",
    "prb_data_blk_lpos.begin": "unsigned long",
    "prb_data_blk_lpos.next": "unsigned long",
    "printk_info.seq": "u64",
    "printk_info.ts_nsec": "u64",
    "printk_info.text_len": "u16",
    "printk_info.caller_id": "u32",
    "printk_info.dev_info": "struct dev_printk_info",
    "dev_printk_info.subsystem": "char",
    "dev_printk_info.device": "char",
    "prb_data_ring.size_bits": "unsigned int",
    "prb_data_ring.data": "char *",
    "prb_data_ring.head_lpos": "atomic_long_t",
    "prb_data_ring.tail_lpos": "atomic_long_t",
    "atomic_long_t.counter": "long",
    "latched_seq.val": "u64 [2]",
    "printk_log.ts_nsec": "u64",
    "printk_log.len": "u16",
    "printk_log.text_len": "u16",
    "printk_log.dict_len": "u16",
    "elf_prstatus.pr_reg": "unsigned long",
}

# LENGTH() keys that give a member's array length under another name.
LENGTH_ALIASES: dict[str, str] = {
    "dev_printk_info.subsystem": "printk_info_subsystem",
    "dev_printk_info.device": "printk_info_device",
}

# (name, kind, size, [(member, spec, bit offset)]) of ABI-fixed types.
_ABI_STRUCTS: list[tuple[str, TypeKind, int | None, list[tuple[str, str, int]]]] = [
    ("list_head", TypeKind.STRUCT, 16, [("next", "struct list_head *", 0),
                                        ("prev", "struct list_head *", 64)]),
    ("hlist_head", TypeKind.STRUCT, 8, [("first", "struct hlist_node *", 0)]),
    ("hlist_node", TypeKind.STRUCT, 16, [("next", "struct hlist_node *", 0),
                                         ("pprev", "struct hlist_node **", 64)]),
    ("rb_node", TypeKind.STRUCT, 24, [("__rb_parent_color", "unsigned long", 0),
                                      ("rb_right", "struct rb_node *", 64),
                                      ("rb_left", "struct rb_node *", 128)]),
    ("rb_root", TypeKind.STRUCT, 8, [("rb_node", "struct rb_node *", 0)]),
    ("rb_root_cached", TypeKind.STRUCT, 16, [("rb_root", "struct rb_root", 0),
                                             ("rb_leftmost", "struct rb_node *", 64)]),
    ("new_utsname", TypeKind.STRUCT, 390, [(n, "char [65]", 65 * 8 * i) for i, n in enumerate(
        ("sysname", "nodename", "release", "version", "machine", "domainname"))]),
]
_ABI_TYPEDEFS: dict[str, str] = {
    "u8": "unsigned char", "u16": "unsigned short", "u32": "unsigned int",
    "u64": "unsigned long long", "s8": "signed char", "s16": "short", "s32": "int",
    "s64": "long long", "__u8": "unsigned char", "__u16": "unsigned short",
    "__u32": "unsigned int", "__u64": "unsigned long long", "__s8": "signed char",
    "__s16": "short", "__s32": "int", "__s64": "long long", "size_t": "unsigned long",
    "ssize_t": "long", "uintptr_t": "unsigned long", "phys_addr_t": "u64", "pid_t": "int",
    "bool": "_Bool",
}
# atomic_t is not in VMCOREINFO but its layout is fixed: { int counter; }.
_ABI_WRAPPERS: dict[str, tuple[str, int]] = {"atomic_t": ("int", 4), "atomic64_t": ("s64", 8)}


def _infer_raw(offset: int, end: int | None) -> tuple[int | None, int]:
    """(size or None, alignment) of a raw integer member at `offset` extending to `end`."""
    if end is None:
        return None, 1
    gap = end - offset
    for p in (8, 4, 2, 1):
        if p <= gap and offset % p == 0:
            return p, p
    return None, 1


class VmcoreinfoTypeSource:
    """The registry source of a kernel with no BTF."""

    name = "vmcoreinfo"

    def __init__(self, vi: VmcoreInfo, registry: "object") -> None:
        self.vi = vi
        self.reg = registry  # a TypeRegistry, for specs of member types
        self._structs: dict[str, Type] = {}
        self._typedefs: dict[str, Type] = {}
        self._facts: dict[str, dict[str, int]] = {}
        for key, off in vi.offsets.items():
            owner, _, member = key.partition(".")
            if member:
                self._facts.setdefault(owner, {})[member] = off
        for owner in vi.sizes:
            self._facts.setdefault(owner, {})

    def _struct_for(self, owner: str) -> Type:
        t = self._structs.get(owner)
        if t is not None:
            return t
        size = self.vi.sizes.get(owner)
        facts = self._facts.get(owner, {})
        t = Type(TypeKind.STRUCT, tag=None if owner.endswith("_t") else owner, size=size,
                 members=lambda: self._members(owner, facts, size), origin=f"vmcoreinfo:{owner}")
        self._structs[owner] = t
        return t

    def _members(self, owner: str, facts: dict[str, int], size: int | None) -> list[Member]:
        reg = self.reg
        starts = sorted(set(facts.values()))
        out = []
        for name, off in sorted(facts.items(), key=lambda kv: (kv[1], kv[0])):
            later = [s for s in starts if s > off]
            end = later[0] if later else size
            spec = MEMBER_TYPES.get(f"{owner}.{name}")
            length = self.vi.lengths.get(f"{owner}.{name}")
            if length is None and f"{owner}.{name}" in LENGTH_ALIASES:
                length = self.vi.lengths.get(LENGTH_ALIASES[f"{owner}.{name}"])
            mt: Type | None = None
            if spec is not None:
                try:
                    mt = reg.lookup(spec)  # type: ignore[attr-defined]
                except Exception:
                    mt = None
            if mt is None:
                raw, _ = _infer_raw(off, end)
                if raw is None:
                    mt = reg.array(reg.arithmetic("unsigned char"), None)  # type: ignore[attr-defined]
                    length = None
                else:
                    if length is not None and end is not None and length * raw > end - off:
                        raw = 1
                    mt = reg.int_type(raw, False)  # type: ignore[attr-defined]
            if length is not None:
                mt = reg.array(mt, length)  # type: ignore[attr-defined]
            out.append(Member(name, mt, off * 8))
        return out

    # -- source protocol ----------------------------------------------------------------------
    def tagged(self, kind: TypeKind, tag: str) -> Type | None:
        if kind != TypeKind.STRUCT:
            return None
        if tag in self._facts and not tag.endswith("_t"):
            return self._struct_for(tag)
        for name, k, size, members in _ABI_STRUCTS:
            if name == tag and k == kind:
                t = self._structs.get(f"abi:{name}")
                if t is None:
                    mems = members
                    t = Type(k, tag=name, size=size, origin="abi",
                             members=lambda mems=mems: [Member(n, self.reg.lookup(s), b)  # type: ignore[attr-defined]
                                                        for n, s, b in mems])
                    self._structs[f"abi:{name}"] = t
                return t
        return None

    def named(self, name: str) -> Type | None:
        t = self._typedefs.get(name)
        if t is not None:
            return t
        if name in self._facts and name.endswith("_t"):
            t = Type(TypeKind.TYPEDEF, name=name, type=self._struct_for(name))
        elif name in _ABI_WRAPPERS:
            inner, size = _ABI_WRAPPERS[name]
            reg = self.reg
            t = Type(TypeKind.TYPEDEF, name=name, type=Type(
                TypeKind.STRUCT, size=size, origin="abi",
                members=lambda inner=inner: [Member("counter", reg.lookup(inner), 0)]))  # type: ignore[attr-defined]
        elif name in _ABI_TYPEDEFS:
            target = _ABI_TYPEDEFS[name]
            t = Type(TypeKind.TYPEDEF, name=name,
                     type=lambda target=target: self.reg.lookup(target))  # type: ignore[attr-defined]
        else:
            return None
        self._typedefs[name] = t
        return t

    def constant(self, name: str) -> int | None:
        return self.vi.numbers.get(name)

    def variable(self, name: str) -> tuple[Type, int | None] | None:
        return None
