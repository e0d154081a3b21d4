"""Loaded kernel modules: name, where their code is, state and taint.

    for m in for_each_module(prog): print(m.name.string_())     # struct module *
    find_module(prog, "loop")
    module_table(prog)          # [ModuleInfo(name, address, base, size, state, taints, ...)]

Where a module's memory is comes from what BTF says struct module has: `core_layout`
(struct module_layout, up to 6.3) or `mem[]` (struct module_memory per mod_mem_type, 6.4+).
Taint letters come from the kernel's own `taint_flags` table when the dump has it, so they are
the letters the kernel itself printed in `Modules linked in: loop(OE)`. Without BTF only the
stable prefix of struct module is known (state, list, name — unchanged since 2.6): names and
states are listed, base and size are not.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..errors import CorruptKernelDataError, MemoryReadError, TypeLookupError, VmcorekitError, partial_result
from ..program.modlist import (MAX_MODULES, MODULE_STATES, module_nodes, module_offsets,
                               program_modules, read_raw_module)
from ..program.objects import Object
from .lists import guarded_walk

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["for_each_module", "find_module", "module_info", "module_table", "module_address_range",
           "ModuleInfo", "taint_flags", "TaintFlag", "decode_taint", "module_taint_letters",
           "MAX_MODULES"]

_STATE_NAMES = MODULE_STATES


@dataclass(frozen=True)
class TaintFlag:
    bit: int
    c_true: str
    c_false: str
    module: bool  # the flag can be set per module (mod->taints)


# Documentation/admin-guide/tainted-kernels.rst: bit -> (letter, letter when clear, module).
# Used only when the dump's own taint_flags table cannot be read.
_DEFAULT_TAINTS = [("P", "G", True), ("F", " ", True), ("S", " ", False), ("R", " ", False),
                   ("M", " ", False), ("B", " ", False), ("U", " ", False), ("D", " ", False),
                   ("A", " ", False), ("W", " ", False), ("C", " ", True), ("I", " ", False),
                   ("O", " ", True), ("E", " ", True), ("L", " ", False), ("K", " ", True),
                   ("X", " ", True), ("T", " ", True), ("N", " ", True)]


def taint_flags(prog: "Program") -> tuple[list[TaintFlag], str]:
    """The kernel's taint table (`taint_flags[]`, one {c_true, c_false, module} per bit) and
    where it came from ("kernel" or "built-in")."""
    addr = prog.try_symbol_address("taint_flags")
    if addr is not None:
        size = 3
        o_true, o_false, o_mod = 0, 1, 2
        try:
            T = prog.types
            size = T.sizeof("struct taint_flag")
            o_true = T.offsetof("struct taint_flag", "c_true")
            o_false = T.offsetof("struct taint_flag", "c_false")
            o_mod = T.offsetof("struct taint_flag", "module")
        except VmcorekitError:
            pass  # no BTF: { char c_true; char c_false; bool module; } has been the layout
        try:
            raw = prog.read(addr, size * 64)
        except MemoryReadError:
            raw = b""
        out: list[TaintFlag] = []
        for i in range(len(raw) // size):
            e = raw[i * size:(i + 1) * size]
            ct, cf, mod = chr(e[o_true]), chr(e[o_false]), e[o_mod]
            # The array ends where its entries stop looking like taint letters.
            if not ct.isalpha() or not (cf == " " or cf.isalpha() or cf == "-") or mod > 1:
                break
            out.append(TaintFlag(i, ct, cf, bool(mod)))
        if len(out) >= 10:
            return out, "kernel"
    return [TaintFlag(i, t, f, m) for i, (t, f, m) in enumerate(_DEFAULT_TAINTS)], "built-in"


def decode_taint(prog: "Program", mask: int) -> tuple[str, list[str]]:
    """(the kernel's "Tainted:" string for `mask`, e.g. "P           O     ", and the letters
    set). "" for an untainted kernel (the kernel prints "Not tainted")."""
    flags, _ = taint_flags(prog)
    if not mask:
        return "", []
    text = "".join(f.c_true if mask >> f.bit & 1 else f.c_false for f in flags)
    letters = [f.c_true for f in flags if mask >> f.bit & 1]
    unknown = mask & ~((1 << len(flags)) - 1)
    if unknown:
        letters.append(f"?{unknown:#x}")
    return text, letters


def module_taint_letters(prog: "Program", taints: int) -> str:
    """Letters of a module's taints as the kernel prints them after its name ("OE")."""
    flags, _ = taint_flags(prog)
    return "".join(f.c_true for f in flags if f.module and taints >> f.bit & 1)


def _letter_bit(prog: "Program", letter: str) -> int | None:
    for f in taint_flags(prog)[0]:
        if f.c_true == letter:
            return f.bit
    return None


# -- walking: the raw walk is program/modlist.py; this is the typed view on top of it -------
def _modules_head(prog: "Program") -> int:
    head = prog.try_symbol_address("modules")
    if head is None:
        raise VmcorekitError("no `modules` symbol: this kernel has no loadable modules "
                             "(CONFIG_MODULES=n) or its symbol table is incomplete")
    return head


def _btf_module(prog: "Program") -> bool:
    return prog.has_btf and prog.types.has_type("struct module")


def for_each_module(prog: "Program", *, on_error: str = "raise") -> Iterator[Object]:
    """Every module on the `modules` list (struct module *), newest first (list order)."""
    if not _btf_module(prog):
        raise TypeLookupError("struct module is not described without BTF; use module_table(), "
                              "which lists names and states from the struct's stable prefix")
    head = _modules_head(prog)
    t = prog.types.pointer(prog.types.lookup("struct module"))
    off = prog.offsetof("struct module", "list")
    nodes = module_nodes(prog.read, head, pointer_size=prog.space.pointer_size,
                         byteorder=prog.space.byteorder, limit=MAX_MODULES,
                         what=f"list struct module.list (head {head:#x})")
    for node in guarded_walk(nodes, on_error):
        yield Object(prog, t, node - off)


def find_module(prog: "Program", name: str) -> Object | None:
    for m in for_each_module(prog):
        if m.name.string_().decode("utf-8", "replace") == name:
            return m
    return None


def module_address_range(mod: Object) -> tuple[int, int]:
    """(base, size) of the module's core memory, as program/modlist.py reads it: core_layout
    (<= 6.3), the core entries of mem[] (6.4+: base of MOD_TEXT, sizes of text, data, rodata,
    ro_after_init added), module_core/core_size (before 4.5)."""
    prog = mod.prog_
    ps = prog.space.pointer_size
    offs = module_offsets(prog.types, ps)
    if not offs.ranges:
        raise TypeLookupError("struct module has none of core_layout, mem[], module_core")
    # Only the ranges: the rest of struct module is the typed view's to read.
    offs = replace(offs, kallsyms=None, btf_data=None, btf_data_size=None)
    raw = read_raw_module(prog.read, int(mod), offs, pointer_size=ps,
                          byteorder=prog.space.byteorder)
    assert raw.base is not None and raw.size is not None
    return raw.base, raw.size


@dataclass
class ModuleInfo:
    name: str
    address: int  # struct module
    state: str  # live, coming, going, unformed
    base: int | None
    size: int | None
    taints: int | None  # mod->taints bits
    taint_letters: str = ""  # as the kernel prints them after the name: "OE"
    out_of_tree: bool | None = None  # TAINT_OOT_MODULE ('O')
    unsigned: bool | None = None  # signature not verified (TAINT_UNSIGNED_MODULE 'E', !sig_ok)
    refcount: int | None = None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "module": f"{self.address:#x}", "state": self.state,
                "base": None if self.base is None else f"{self.base:#x}", "size": self.size,
                "taints": self.taints, "taint_letters": self.taint_letters,
                "out_of_tree": self.out_of_tree, "unsigned": self.unsigned,
                "refcount": self.refcount, **({"problems": self.problems} if self.problems else {})}


def module_info(mod: Object) -> ModuleInfo:
    prog = mod.prog_
    T = prog.types
    name = mod.name.string_().decode("utf-8", "replace")
    state_v = int(mod.state)
    info = ModuleInfo(name, int(mod), _STATE_NAMES.get(state_v, str(state_v)), None, None, None)
    try:
        info.base, info.size = module_address_range(mod)
    except (TypeLookupError, MemoryReadError) as e:
        info.problems.append(f"address range unknown: {e}")
    if T.has_member("struct module", "taints"):
        info.taints = int(mod.taints)
        info.taint_letters = module_taint_letters(prog, info.taints)
        oot = _letter_bit(prog, "O")
        uns = _letter_bit(prog, "E")
        info.out_of_tree = bool(info.taints >> oot & 1) if oot is not None else None
        unsigned = bool(info.taints >> uns & 1) if uns is not None else None
        if T.has_member("struct module", "sig_ok"):
            # CONFIG_MODULE_SIG: sig_ok says the signature checked out.
            unsigned = bool(unsigned) or not bool(mod.sig_ok)
        info.unsigned = unsigned
    if T.has_member("struct module", "refcnt"):
        try:
            info.refcount = int(mod.refcnt.counter)
        except (VmcorekitError, AttributeError):
            pass
    return info


def _module_table_nobtf(prog: "Program", warnings: list[str] | None) -> list[ModuleInfo]:
    """Names, states and addresses from struct module's stable prefix."""
    out = []
    try:
        for m in program_modules(prog, head=_modules_head(prog), what="modules"):
            out.append(ModuleInfo(m.name, m.address, _STATE_NAMES.get(m.state, str(m.state)),
                                  None, None, None,
                                  problems=["no BTF: base, size and taints unknown"]))
    except (CorruptKernelDataError, MemoryReadError) as e:
        if warnings is None:
            raise
        warnings.append(f"module list: {e}")
    return out


def module_table(prog: "Program", *, warnings: list[str] | None = None) -> list[ModuleInfo]:
    """Every loaded module, in list order (newest first). A corrupt list stops with a message
    in `warnings` (when given) after the modules read before it; each such gap is also a
    partial result (exit 3: modules are missing), said by the caller through `warnings`."""
    gaps: list[str] | None = [] if warnings is not None else None
    out = _module_table(prog, gaps)
    if warnings is not None and gaps:
        for g in gaps:
            partial_result(g, reported=False)
        warnings.extend(gaps)
    return out


def _module_table(prog: "Program", warnings: list[str] | None) -> list[ModuleInfo]:
    if not _btf_module(prog):
        return _module_table_nobtf(prog, warnings)
    out = []
    import warnings as _w
    with _w.catch_warnings(record=True) as caught:
        _w.simplefilter("always")
        for m in for_each_module(prog, on_error="warn" if warnings is not None else "raise"):
            try:
                out.append(module_info(m))
            except MemoryReadError as e:
                if warnings is None:
                    raise
                warnings.append(f"module at {int(m):#x} unreadable: {e}")
    if warnings is not None:
        warnings.extend(str(c.message) for c in caught)
    return out
