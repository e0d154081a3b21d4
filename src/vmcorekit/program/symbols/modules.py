"""Loaded modules' own symbol tables (kernel/module/kallsyms.c).

Each `struct module` on the `modules` list points (`mod->kallsyms`) at a `struct mod_kallsyms`
{ Elf_Sym *symtab; unsigned int num_symtab; char *strtab; char *typetab; } — after init this is
`mod->core_kallsyms`, inside the struct module itself. `typetab` (5.x+) holds the type
characters; older kernels kept them in each Elf_Sym's st_info.

The member offsets come from `module_layout()`: from the kernel's types (BTF) when
`prog.types` can give them, else from probing memory for that pointer-to-self signature, which
needs only the struct's stable prefix (state, list, name).
"""
from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import CorruptKernelDataError, MemoryReadError, VmcorekitError
from ..modlist import (MAX_MODULES, MODULE_STATE_UNFORMED, ModuleOffsets, module_nodes,
                       read_raw_module)
from .table import SymbolTable, distance_sizes

log = logging.getLogger(__name__)

Reader = Callable[[int, int], bytes]

MAX_MODULE_SYMS = 1 << 20
MAX_STRTAB = 16 << 20  # a module with 100k symbols has a ~3 MiB strtab
SHN_UNDEF = 0
_PROBE_SPAN = 4096  # struct module is ~1 KiB on 6.x; look no further than a page


@dataclass(frozen=True)
class ModuleLayout:
    """Where the fields module symbols need live (byte offsets)."""

    list_offset: int  # struct module.list
    name_offset: int  # struct module.name
    name_size: int  # MODULE_NAME_LEN
    kallsyms_offset: int  # struct module.kallsyms (pointer to struct mod_kallsyms)
    symtab_offset: int  # struct mod_kallsyms.symtab
    num_symtab_offset: int
    strtab_offset: int
    typetab_offset: int | None  # None: the type is in st_info
    state_offset: int = 0
    pointer_size: int = 8
    source: str = ""
    endian: str = "<"  # struct module: "<" little, ">" big

    @property
    def ptr_fmt(self) -> str:
        return self.endian + ("Q" if self.pointer_size == 8 else "I")

    @property
    def sym_size(self) -> int:
        return 24 if self.pointer_size == 8 else 16


@dataclass
class ModuleSymbols:
    name: str
    address: int  # of its struct module
    names: list[str]
    addresses: np.ndarray
    sizes: np.ndarray  # st_size
    types: bytes


# -- layout ----------------------------------------------------------------------------------------
def layout_from_types(types: Any, pointer_size: int = 8, endian: str = "<") -> ModuleLayout:
    """Offsets from the kernel's own type information (prog.types: a TypeRegistry over BTF).
    TypeLookupError when it does not describe struct module (no BTF)."""
    off = types.offsetof
    name_t = types.member("struct module", "name")[0]
    typetab = (off("struct mod_kallsyms", "typetab")
               if types.has_member("struct mod_kallsyms", "typetab") else None)
    return ModuleLayout(list_offset=off("struct module", "list"),
                        name_offset=off("struct module", "name"), name_size=name_t.sizeof(),
                        kallsyms_offset=off("struct module", "kallsyms"),
                        symtab_offset=off("struct mod_kallsyms", "symtab"),
                        num_symtab_offset=off("struct mod_kallsyms", "num_symtab"),
                        strtab_offset=off("struct mod_kallsyms", "strtab"), typetab_offset=typetab,
                        state_offset=off("struct module", "state"), pointer_size=pointer_size,
                        source=f"types ({getattr(types, 'kind', '?')})", endian=endian)


def probe_layout(read: Reader, first_module: int, pointer_size: int = 8,
                 endian: str = "<") -> ModuleLayout:
    """Offsets found in memory, given the address of a loaded module's struct module.

    struct module has begun { enum module_state state; struct list_head list;
    char name[MODULE_NAME_LEN]; } since Linux 2.6; `kallsyms` is the pointer whose target is a
    plausible mod_kallsyms (symtab, num_symtab, strtab[, typetab]), which after init is the
    struct's own `core_kallsyms`."""
    ps = pointer_size
    list_off = ps
    name_off = 3 * ps
    name_size = 64 - ps
    data = _read_upto(read, first_module, _PROBE_SPAN)
    fmt = endian + ("Q" if ps == 8 else "I")
    name = data[name_off:name_off + name_size].split(b"\0", 1)[0]
    if not name or not _printable(name):
        raise CorruptKernelDataError(f"struct module at {first_module:#x}: no module name at "
                                     f"offset {name_off} (found {name[:16]!r})")
    for off in range(name_off + name_size, len(data) - ps + 1, ps):
        p = struct.unpack_from(fmt, data, off)[0]
        if p == 0 or p % ps:
            continue
        try:
            typetab = _mod_kallsyms_at(read, p, ps, endian)
        except (MemoryReadError, CorruptKernelDataError):
            continue
        return ModuleLayout(list_off, name_off, name_size, off, 0, ps, 2 * ps, typetab,
                            pointer_size=ps, source="probe", endian=endian)
    raise CorruptKernelDataError(f"struct module {name.decode('latin-1')!r} at {first_module:#x}: "
                                 "found no pointer to its kallsyms tables")


def _read_upto(read: Reader, addr: int, size: int, page: int = 4096) -> bytes:
    """As many bytes as are readable from `addr`, up to `size` (stops at the first hole)."""
    out = bytearray()
    pos = addr
    while len(out) < size:
        n = min(size - len(out), page - pos % page)
        try:
            out += read(pos, n)
        except MemoryReadError:
            if not out:
                raise
            break
        pos += n
    return bytes(out)


def _printable(b: bytes) -> bool:
    return all(33 <= c < 127 for c in b)


def _mod_kallsyms_at(read: Reader, addr: int, ps: int, endian: str = "<") -> int | None:
    """If `addr` holds a believable struct mod_kallsyms, the offset of its typetab (None when it
    has none); CorruptKernelDataError when it does not."""
    blob = read(addr, 4 * ps)
    fmt = endian + ("Q" if ps == 8 else "I")
    symtab = struct.unpack_from(fmt, blob, 0)[0]
    num = struct.unpack_from(endian + "I", blob, ps)[0]
    strtab = struct.unpack_from(fmt, blob, 2 * ps)[0]
    typetab = struct.unpack_from(fmt, blob, 3 * ps)[0]
    if not (2 <= num <= MAX_MODULE_SYMS) or symtab % 4 or not strtab:
        raise CorruptKernelDataError("not a mod_kallsyms")
    sym_size = 24 if ps == 8 else 16
    k = min(num, 8)
    syms = read(symtab, k * sym_size)
    # Symbol 0 is the null symbol; the next ones name printable strings in strtab.
    if any(syms[:sym_size]):
        raise CorruptKernelDataError("not a mod_kallsyms")
    named = 0
    for i in range(1, k):
        st_name = struct.unpack_from(endian + "I", syms, i * sym_size)[0]
        if st_name > MAX_STRTAB:
            raise CorruptKernelDataError("not a mod_kallsyms")
        s = read(strtab + st_name, 64).split(b"\0", 1)[0]
        if s and not _printable(s):
            raise CorruptKernelDataError("not a mod_kallsyms")
        named += bool(s)
    if not named:
        raise CorruptKernelDataError("not a mod_kallsyms")
    try:
        tt = read(typetab, k) if typetab else b""
    except MemoryReadError:
        tt = b""
    if len(tt) == k and all(chr(c).isalpha() or c in b"?" for c in tt[1:]):
        return 3 * ps
    return None


def module_layout(prog: Any, first_link: int) -> ModuleLayout:
    """The swappable source of struct module offsets: types first, then the memory probe.
    `first_link` is the first `list` link on the modules list."""
    ps = _pointer_size(prog)
    endian = _endian(prog)
    try:
        types = prog.types
    except (ImportError, VmcorekitError, AttributeError) as e:
        log.debug("no types for struct module (%s); probing memory", e)
        types = None
    if types is not None:
        try:
            return layout_from_types(types, ps, endian)
        except VmcorekitError as e:
            log.debug("types lack struct module members (%s); probing memory", e)
    # In the stable prefix `list` follows the pointer-aligned `state`.
    return probe_layout(prog.read, first_link - ps, ps, endian)


def _pointer_size(prog: Any) -> int:
    space = getattr(prog, "space", None)
    return int(getattr(space, "pointer_size", 8) or 8)


def _endian(prog: Any) -> str:
    space = getattr(prog, "space", None)
    return ">" if getattr(space, "byteorder", "little") == "big" else "<"


# -- reading -----------------------------------------------------------------------------------
def module_addresses(read: Reader, head: int, layout: ModuleLayout,
                     max_modules: int = MAX_MODULES) -> list[int]:
    """struct module addresses on the list at `head` (the one walk of program/modlist.py),
    all or nothing: a broken list raises CorruptKernelDataError."""
    return [node - layout.list_offset
            for node in module_nodes(read, head, pointer_size=layout.pointer_size,
                                     byteorder=_byteorder(layout), limit=max_modules)]


def _byteorder(layout: ModuleLayout) -> str:
    return "big" if layout.endian == ">" else "little"


def _offsets(layout: ModuleLayout) -> ModuleOffsets:
    """The raw walker's view of the fields module symbols read first (the kallsyms pointer
    is read only for a module that finished forming)."""
    return ModuleOffsets(list=layout.list_offset, name=layout.name_offset,
                         name_size=layout.name_size, state=layout.state_offset,
                         source=layout.source)


def read_module(read: Reader, mod: int, layout: ModuleLayout) -> ModuleSymbols | None:
    """One module's symbols; None for a module still being loaded (MODULE_STATE_UNFORMED)."""
    ps = layout.pointer_size
    fmt = layout.ptr_fmt
    e = layout.endian
    raw = read_raw_module(read, mod, _offsets(layout), pointer_size=ps,
                          byteorder=_byteorder(layout))
    name = raw.name_bytes.decode("latin-1")
    if raw.state == MODULE_STATE_UNFORMED:
        return None
    ks = struct.unpack(fmt, read(mod + layout.kallsyms_offset, ps))[0]
    symtab = struct.unpack(fmt, read(ks + layout.symtab_offset, ps))[0]
    num = struct.unpack(e + "I", read(ks + layout.num_symtab_offset, 4))[0]
    strtab = struct.unpack(fmt, read(ks + layout.strtab_offset, ps))[0]
    if num > MAX_MODULE_SYMS:
        raise CorruptKernelDataError(f"module {name!r} at {mod:#x}: num_symtab {num} is absurd")
    if num == 0:
        return ModuleSymbols(name, mod, [], np.zeros(0, np.uint64), np.zeros(0, np.uint64), b"")
    if ps == 8:
        dt = np.dtype([("name", e + "u4"), ("info", "u1"), ("other", "u1"), ("shndx", e + "u2"),
                       ("value", e + "u8"), ("size", e + "u8")])
    else:
        dt = np.dtype([("name", e + "u4"), ("value", e + "u4"), ("size", e + "u4"),
                       ("info", "u1"), ("other", "u1"), ("shndx", e + "u2")])
    syms = np.frombuffer(read(symtab, num * dt.itemsize), dtype=dt)
    if layout.typetab_offset is not None:
        typetab = struct.unpack(fmt, read(ks + layout.typetab_offset, ps))[0]
        types = read(typetab, num)
    else:
        types = syms["info"].tobytes()
    # The string table ends at the last name's NUL; read just that much.
    top = int(syms["name"].max())
    if top > MAX_STRTAB:
        raise CorruptKernelDataError(f"module {name!r}: symbol name offset {top} is absurd")
    strs = read(strtab, top + 1)
    tail = strs[top:].find(b"\0")
    extra = 0
    while tail < 0 and extra < 4096:
        more = read(strtab + len(strs), 256)
        strs += more
        extra += 256
        tail = strs[top:].find(b"\0")
    keep = (syms["shndx"] != SHN_UNDEF) & (syms["value"] != 0)
    names: list[str] = []
    idx: list[int] = []
    for i in np.flatnonzero(keep).tolist():
        off = int(syms["name"][i])
        end = strs.find(b"\0", off)
        nm = strs[off:end if end >= 0 else len(strs)]
        # Unnamed and "mapping" symbols ($x/$d on arm, local labels .L*/L0*) name nothing;
        # the kernel's address lookup skips them too (is_mapping_symbol).
        if not nm or nm[:1] == b"$" or nm[:2] in (b".L", b"L0"):
            continue
        names.append(nm.decode("latin-1"))
        idx.append(i)
    ix = np.array(idx, dtype=np.int64)
    return ModuleSymbols(name, mod, names, syms["value"][ix].astype(np.uint64),
                         syms["size"][ix].astype(np.uint64),
                         bytes(types[i] if 32 < types[i] < 127 else ord("?") for i in idx))


def module_symbols(prog: Any, head: int, layout: ModuleLayout | None = None) -> SymbolTable:
    """Every loaded module's symbols as one table (module names attached). A module whose
    tables cannot be read is listed in the table's `problems`, not fatal."""
    read = prog.read
    ps = _pointer_size(prog)
    fmt = _endian(prog) + ("Q" if ps == 8 else "I")
    first = struct.unpack(fmt, read(head, ps))[0]
    if first == head:
        return SymbolTable([], np.zeros(0, np.uint64), b"", source="modules (none loaded)")
    if layout is None:
        layout = module_layout(prog, first)
    problems: list[str] = []
    mods: list[ModuleSymbols] = []
    for addr in module_addresses(read, head, layout):
        try:
            m = read_module(read, addr, layout)
        except (MemoryReadError, CorruptKernelDataError) as e:
            problems.append(f"module at {addr:#x}: {e}")
            continue
        if m is not None:
            mods.append(m)
    names: list[str] = []
    addrs, sizes, mod_idx = [], [], []
    types = []
    for k, m in enumerate(mods):
        names += m.names
        addrs.append(m.addresses)
        sizes.append(m.sizes)
        types.append(m.types)
        mod_idx.append(np.full(len(m.names), k, dtype=np.int32))
    a = np.concatenate(addrs) if addrs else np.zeros(0, np.uint64)
    st = np.concatenate(sizes) if sizes else np.zeros(0, np.uint64)
    t = b"".join(types)
    mi = np.concatenate(mod_idx) if mod_idx else np.zeros(0, np.int32)
    tarr = np.frombuffer(t, dtype=np.uint8)
    is_text = np.isin(tarr, np.frombuffer(b"tTwW", dtype=np.uint8))
    # kallsyms-style sizes (to the next symbol) within one module's code or one module's data,
    # so a function's size does not run into the module's data; the last of each keeps st_size.
    dist = distance_sizes(a, mi.astype(np.int64) * 2 + is_text)
    size = np.where(dist > 0, dist, st)
    return SymbolTable(names, a, t, mi, [m.name for m in mods], size,
                       source=f"modules ({len(mods)}, layout from {layout.source})",
                       problems=problems)
