"""The one raw walk of the kernel's `modules` list: each `struct module`'s address, name,
state, core memory ranges, kallsyms and BTF pointers.

It lives in the program layer because the layers that need it first — module symbols
(`symbols/modules.py`) and module BTF (`types/`) — are built before any typed object exists;
`kernel/modules.py` is the typed/report view on top of it.

    offs = module_offsets(prog.types)           # BTF offsets, else struct module's stable prefix
    for m in walk_modules(prog.read, head, offs):
        m.address, m.name, m.state, m.ranges, m.kallsyms, m.btf_data, m.btf_data_size

    for node in module_nodes(read, head):        # just the list links (struct module.list)

Offsets come from the kernel's types when they describe struct module; without BTF only the
prefix that has been stable since 2.6 is known — { enum module_state state; struct list_head
list; char name[MODULE_NAME_LEN]; } — and the other pointers are None.

The walk is bounded and cycle-checked: a broken list (NULL or misaligned link, unreadable
link, a node seen twice, more than `limit` nodes) raises CorruptKernelDataError after every
good node before it has been yielded; what to do with that is the caller's policy.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import CorruptKernelDataError, MemoryReadError, SymbolError, VmcorekitError

__all__ = ["MAX_MODULES", "MODULE_STATE_UNFORMED", "ModuleOffsets", "RawModule", "module_offsets",
           "prefix_offsets", "module_nodes", "read_raw_module", "walk_modules", "program_modules",
           "MODULE_STATES", "CORE_MEM_TYPES"]

Reader = Callable[[int, int], bytes]

MAX_MODULES = 1 << 16
MODULE_STATE_UNFORMED = 3
MODULE_STATES = {0: "live", 1: "coming", 2: "going", 3: "unformed"}
# mod_mem_type values that make up the loaded module (the init ones are freed after load).
CORE_MEM_TYPES = ("MOD_TEXT", "MOD_DATA", "MOD_RODATA", "MOD_RO_AFTER_INIT")

# What types that cannot describe struct module raise (no BTF, a partial fake, none at all).
_NOT_DESCRIBED = (VmcorekitError, LookupError, AttributeError, ImportError)


@dataclass(frozen=True)
class ModuleOffsets:
    """Byte offsets in struct module the walk reads (None: not known here)."""

    list: int
    name: int
    name_size: int  # MODULE_NAME_LEN
    state: int = 0
    kallsyms: int | None = None  # struct mod_kallsyms *
    btf_data: int | None = None
    btf_data_size: int | None = None
    # The core memory: (offset of a base pointer, offset of its unsigned int size) per range;
    # the first range's base is the module's base.
    ranges: tuple[tuple[int, int], ...] = ()
    source: str = "prefix"


@dataclass(frozen=True)
class RawModule:
    """One struct module as read from memory."""

    address: int  # of the struct module
    name_bytes: bytes  # up to the NUL
    state: int  # enum module_state (MODULE_STATES)
    ranges: tuple[tuple[int, int], ...] = ()  # core (base, size) ranges; () when unknown
    kallsyms: int | None = None
    btf_data: int | None = None
    btf_data_size: int | None = None

    @property
    def name(self) -> str:
        return self.name_bytes.decode("utf-8", "replace")

    @property
    def base(self) -> int | None:
        return self.ranges[0][0] if self.ranges else None

    @property
    def size(self) -> int | None:
        return sum(s for _, s in self.ranges) if self.ranges else None


def prefix_offsets(pointer_size: int = 8) -> ModuleOffsets:
    """struct module's stable prefix: the 4-byte state padded to a pointer, the list_head,
    then name[64 - sizeof(long)]."""
    ps = pointer_size
    return ModuleOffsets(list=ps, name=3 * ps, name_size=64 - ps, state=0)


def module_offsets(types: Any, pointer_size: int = 8) -> ModuleOffsets:
    """Offsets from the kernel's types (a TypeRegistry over BTF) when they describe struct
    module, else the stable prefix (VMCOREINFO-only registries and no types at all)."""
    if types is None or getattr(types, "kind", None) == "vmcoreinfo":
        return prefix_offsets(pointer_size)
    M = "struct module"
    try:
        off = types.offsetof
        base = ModuleOffsets(list=off(M, "list"), name=off(M, "name"),
                             name_size=types.member(M, "name")[0].sizeof(), state=off(M, "state"),
                             source=f"types ({getattr(types, 'kind', '?')})")
    except _NOT_DESCRIBED:
        return prefix_offsets(pointer_size)

    def opt(designator: str) -> int | None:
        try:
            return int(off(M, designator))
        except _NOT_DESCRIBED:
            return None

    return ModuleOffsets(base.list, base.name, base.name_size, base.state,
                         kallsyms=opt("kallsyms"), btf_data=opt("btf_data"),
                         btf_data_size=opt("btf_data_size"), ranges=_range_offsets(types),
                         source=base.source)


def _range_offsets(types: Any) -> tuple[tuple[int, int], ...]:
    """Where the core memory's base and size are: core_layout (<= 6.3), the core entries of
    mem[] (6.4+: MOD_TEXT first, then data, rodata, ro_after_init), module_core (< 4.5)."""
    M = "struct module"
    try:
        has = types.has_member
        off = types.offsetof
        if has(M, "core_layout"):
            lay = off(M, "core_layout")
            return ((lay + off("struct module_layout", "base"),
                     lay + off("struct module_layout", "size")),)
        if has(M, "mem"):
            mem = off(M, "mem")
            step = types.sizeof("struct module_memory")
            o_base = off("struct module_memory", "base")
            o_size = off("struct module_memory", "size")
            out = []
            for name in CORE_MEM_TYPES:
                try:
                    idx = types.constant(name)
                except _NOT_DESCRIBED:  # an enumerator this kernel lacks
                    continue
                out.append((mem + idx * step + o_base, mem + idx * step + o_size))
            return tuple(out)
        if has(M, "module_core"):
            return ((off(M, "module_core"), off(M, "core_size")),)
    except _NOT_DESCRIBED:
        return ()
    return ()


def module_nodes(read: Reader, head: int, *, pointer_size: int = 8, byteorder: str = "little",
                 limit: int = MAX_MODULES, validate: bool = False,
                 what: str | None = None) -> Iterator[int]:
    """Addresses of the list links (struct module.list) on the list at `head`, head excluded.
    validate=True also checks each node's back link. CorruptKernelDataError ends a broken list
    after its good nodes."""
    ps = pointer_size
    what = what or f"modules list at {head:#x}"

    def link(addr: int, where: str) -> int:
        try:
            return int.from_bytes(read(addr, ps), byteorder)  # type: ignore[arg-type]
        except MemoryReadError as e:
            raise CorruptKernelDataError(f"{what}: {where} at {addr:#x} does not read "
                                         f"(wild pointer?): {e}") from None

    seen = {head}
    count = 0
    prev = head
    node = link(head, "the head's pointer")
    while node != head:
        if node == 0 or node % ps:
            raise CorruptKernelDataError(f"{what}: bad link {node:#x} after {count} modules")
        if node in seen:
            raise CorruptKernelDataError(f"{what}: cycle at {node:#x} after {count} modules")
        if count >= limit:
            raise CorruptKernelDataError(f"{what}: more than {limit} modules (at {node:#x})")
        seen.add(node)
        nxt = link(node, f"next pointer of entry {node:#x}")
        if validate:
            back = link(node + ps, f"back pointer of entry {node:#x}")
            if back != prev:
                raise CorruptKernelDataError(f"{what}: entry {node:#x} points back to "
                                             f"{back:#x}, not to {prev:#x}")
        count += 1
        yield node
        prev, node = node, nxt


def read_raw_module(read: Reader, mod: int, offs: ModuleOffsets, *, pointer_size: int = 8,
                    byteorder: str = "little") -> RawModule:
    """The struct module at `mod`; MemoryReadError when its fields do not read."""
    ps = pointer_size

    def ptr(o: int | None) -> int | None:
        return None if o is None else int.from_bytes(read(mod + o, ps), byteorder)  # type: ignore[arg-type]

    def u32(o: int | None) -> int | None:
        return None if o is None else int.from_bytes(read(mod + o, 4), byteorder)  # type: ignore[arg-type]

    name = read(mod + offs.name, offs.name_size).split(b"\0", 1)[0]
    state = u32(offs.state)
    ranges = tuple((ptr(b), u32(s)) for b, s in offs.ranges)
    return RawModule(mod, name, state or 0, ranges,  # type: ignore[arg-type]
                     kallsyms=ptr(offs.kallsyms), btf_data=ptr(offs.btf_data),
                     btf_data_size=u32(offs.btf_data_size))


def walk_modules(read: Reader, head: int, offs: ModuleOffsets | None = None, *,
                 pointer_size: int = 8, byteorder: str = "little", limit: int = MAX_MODULES,
                 validate: bool = False, what: str | None = None) -> Iterator[RawModule]:
    """Every struct module on the list at `head` (the `modules` symbol), newest first."""
    offs = offs or prefix_offsets(pointer_size)
    for node in module_nodes(read, head, pointer_size=pointer_size, byteorder=byteorder,
                             limit=limit, validate=validate, what=what):
        yield read_raw_module(read, node - offs.list, offs, pointer_size=pointer_size,
                              byteorder=byteorder)


def program_modules(prog: Any, *, head: int | None = None, limit: int = MAX_MODULES,
                    validate: bool = False, what: str | None = None) -> Iterator[RawModule]:
    """walk_modules() over a Program: the `modules` list head from its one symbol lookup,
    offsets from its BTF (else the prefix), its pointer size and byte order. SymbolError when
    the kernel has no `modules` (CONFIG_MODULES=n or an incomplete symbol table)."""
    if head is None:
        head = prog.try_symbol_address("modules")
        if head is None:
            raise SymbolError("no `modules` symbol: this kernel has no loadable modules "
                              "(CONFIG_MODULES=n) or its symbol table is incomplete")
    ps = prog.space.pointer_size
    types = prog.types if prog.has_btf else None
    return walk_modules(prog.read, head, module_offsets(types, ps), pointer_size=ps,
                        byteorder=prog.space.byteorder, limit=limit, validate=validate, what=what)
