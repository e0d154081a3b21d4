"""drgn on a dump without debuginfo: a real `drgn.Program` fed by vmcorekit.

    import vmcorekit.drgn
    prog = vmcorekit.drgn.program("vmcore")          # any format vmcorekit opens
    from drgn.helpers.linux.pid import for_each_task
    [t.comm.string_() for t in for_each_task(prog)]

drgn brings its own page-table walkers, object model and ~55 helper modules but needs DWARF
(or a vmlinux) for symbols and types. Here vmcorekit answers in its place, through drgn's public
finder interfaces:

- memory: every physical range of the dump is a drgn memory segment read through vmcorekit's own
  reader, so kdump (every codec), flattened, split, ELF and wrapped dumps all work the same;
  drgn is told it is a Linux kernel with `set_linux_kernel_custom` and the dump's VMCOREINFO,
  and translates virtual addresses itself;
- symbols: kallsyms (+ module symbols) from vmcorekit's SymbolTable;
- types: the dump's BTF (vmlinux, and modules' on a miss) converted to drgn types lazily, by
  name, cached; members and parameters are converted only when drgn first touches them, so large
  structs and cycles cost nothing up front;
- objects: globals by symbol address with the type vmcorekit knows for them (BTF VARs, its
  table of well-known globals, declare_global), enumerators as constants.

drgn unwinds stacks with DWARF CFI or ORC from the vmlinux file, which a dump alone does not
have; `stack_trace()` here builds a drgn StackTrace from vmcorekit's own unwinder instead.

This package is named `drgn` inside vmcorekit; every import of the real drgn below is absolute.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from vmcorekit.errors import (DrgnUnavailableError, MemoryReadError, TypeLookupError,
                              VmcorekitError)
from vmcorekit.program import Program as VProgram
from vmcorekit.program.types import Qualifiers, Type, TypeKind
from vmcorekit.program.types.model import MAX_TYPE_DEPTH

if TYPE_CHECKING:
    import drgn as _drgn

    from vmcorekit.program.types import TypeRegistry

__all__ = ["program", "from_program", "vmcorekit_program", "stack_trace", "crashed_thread",
           "DrgnUnavailableError"]

_CACHE_KEY = "vmcorekit"


def _import_drgn() -> Any:
    try:
        import drgn  # the real drgn (absolute import), not this package
    except ImportError as e:
        raise DrgnUnavailableError(
            f"drgn is not installed ({e}); install it with: pip install 'vmcorekit[drgn]'"
        ) from None
    if not hasattr(drgn.Program, "set_linux_kernel_custom"):
        raise DrgnUnavailableError(
            f"drgn {getattr(drgn, '__version__', '?')} is too old (0.1 or newer has "
            "Program.set_linux_kernel_custom); upgrade with: pip install -U 'vmcorekit[drgn]'")
    return drgn


# -- the Program -------------------------------------------------------------------------------
def program(paths: "str | os.PathLike[str] | Sequence[str | os.PathLike[str]]",
            vmcoreinfo: "str | os.PathLike[str] | None" = None) -> "_drgn.Program":
    """A drgn Program over the dump at `paths` (several for a split dump)."""
    vprog = VProgram.open(paths, vmcoreinfo=vmcoreinfo)
    try:
        return from_program(vprog)
    except BaseException:
        vprog.close()
        raise


def vmcorekit_program(prog: "_drgn.Program") -> VProgram:
    """The vmcorekit Program behind a drgn Program made here."""
    try:
        return prog.cache[_CACHE_KEY]  # type: ignore[no-any-return]
    except KeyError:
        raise ValueError("this drgn Program was not made by vmcorekit.drgn") from None


def from_program(vprog: VProgram) -> "_drgn.Program":
    """A drgn Program over an open vmcorekit Program (which it keeps and reads through)."""
    drgn = _import_drgn()
    plat = vprog.platform
    arch = getattr(drgn.Architecture, plat.name.upper(), None)
    if arch is None:
        arch = drgn.Architecture.UNKNOWN
    flags = drgn.PlatformFlags(0)
    if plat.pointer_size == 8:
        flags |= drgn.PlatformFlags.IS_64_BIT
    if plat.byteorder == "little":
        flags |= drgn.PlatformFlags.IS_LITTLE_ENDIAN
    # The VMCOREINFO vmcorekit uses (the dump's note, or one given with --vmcoreinfo).
    raw = vprog.vmcoreinfo.raw.encode()
    prog = drgn.Program(drgn.Platform(arch, flags), vmcoreinfo=raw)
    prog.cache[_CACHE_KEY] = vprog
    _add_memory(drgn, prog, vprog)
    prog.set_linux_kernel_custom(raw, False)
    types = _TypeConverter(drgn, prog, lambda: vprog.types)
    prog.register_type_finder("vmcorekit-btf", types.find, enable_index=0)
    prog.register_symbol_finder("vmcorekit-kallsyms", _SymbolFinder(drgn, vprog).find,
                                enable_index=0)
    prog.register_object_finder("vmcorekit", _ObjectFinder(drgn, vprog, types).find,
                                enable_index=-1)
    prog.cache[_CACHE_KEY + "-types"] = types
    return prog


def _add_memory(drgn: Any, prog: "_drgn.Program", vprog: VProgram) -> None:
    """Every physical range of the dump as a segment read through vmcorekit: one reader for
    every format. (drgn's own set_core_dump reads ELF and, with libkdumpfile, plain kdump, but
    not flattened, split or wrapped dumps.) An excluded or missing page is drgn's FaultError."""
    phys = vprog.phys

    def read(address: int, count: int, offset: int, physical: bool) -> bytes:
        try:
            return phys.read(address, count)
        except MemoryReadError as e:
            raise drgn.FaultError(str(e), address) from None

    for r in phys.ranges():
        if r.size > 0:
            prog.add_memory_segment(r.start, r.size, read, physical=True)


# -- types ------------------------------------------------------------------------------------
_KINDS = {"VOID": TypeKind.VOID, "INT": TypeKind.INT, "BOOL": TypeKind.BOOL,
          "FLOAT": TypeKind.FLOAT, "STRUCT": TypeKind.STRUCT, "UNION": TypeKind.UNION,
          "ENUM": TypeKind.ENUM, "TYPEDEF": TypeKind.TYPEDEF, "POINTER": TypeKind.POINTER,
          "ARRAY": TypeKind.ARRAY, "FUNCTION": TypeKind.FUNCTION}
_TAGGED = (TypeKind.STRUCT, TypeKind.UNION, TypeKind.ENUM)


class _TypeConverter:
    """vmcorekit Types -> drgn Types, each converted once (keyed by its BTF origin)."""

    def __init__(self, drgn: Any, prog: "_drgn.Program",
                 registry: "Callable[[], TypeRegistry]") -> None:
        self.drgn = drgn
        self.prog = prog
        self.registry = registry  # vmcorekit's types, made on first use
        self._cache: dict[object, Any] = {}
        self._by_name: dict[tuple[frozenset[int], str], Any] = {}
        self._keep: list[Type] = []  # Types keyed by id() must outlive their key
        self._depth = 0
        q = drgn.Qualifiers
        self._quals = ((Qualifiers.CONST, q.CONST), (Qualifiers.VOLATILE, q.VOLATILE),
                       (Qualifiers.RESTRICT, q.RESTRICT))

    # The finder drgn calls: (prog, kinds, name, filename) -> Type | None.
    def find(self, prog: Any, kinds: Any, name: str, filename: str | None) -> Any:
        if filename is not None:
            return None  # BTF has no file names
        try:
            reg = self.registry()
        except (VmcorekitError, ImportError):
            return None
        if reg.kind == "vmcoreinfo":
            return None  # a handful of offsets is no type a drgn helper could use
        # drgn asks again for every container_of() and cast: answer from a cache.
        key = (frozenset(k.value for k in kinds), name)
        if key in self._by_name:
            return self._by_name[key]
        found = self._find(reg, kinds, name)
        self._by_name[key] = found
        return found

    def _find(self, reg: Any, kinds: Any, name: str) -> Any:
        for dk in kinds:
            k = _KINDS.get(dk.name)
            if k is None:
                continue
            try:
                if k in _TAGGED:
                    t = reg.tagged(k, name)
                else:
                    t = reg.named(name)
            except VmcorekitError:
                continue
            if t.kind == k:
                return self.convert(t)
        return None

    def _qualifiers(self, t: Type) -> Any:
        out = self.drgn.Qualifiers(0)
        for ours, theirs in self._quals:
            if t.qualifiers & ours:
                out |= theirs
        return out

    def convert(self, t: Type) -> Any:
        key: object = (t.origin, int(t.qualifiers)) if t.origin else id(t)
        d = self._cache.get(key)
        if d is None:
            # Pointers, arrays and typedefs convert their target at once (only members and
            # parameters wait): a damaged blob's typedef cycle must end here, not in a
            # RecursionError.
            if self._depth >= MAX_TYPE_DEPTH:
                raise TypeLookupError(f"{t.name or t.tag or t.kind.value}: type chain too deep for drgn "
                                      "(cycle?)")
            self._depth += 1
            try:
                d = self._make(t)
            finally:
                self._depth -= 1
            self._cache[key] = d
            if not t.origin:
                self._keep.append(t)
        return d

    def _complete(self, t: Type) -> Type:
        """A forward-declared struct/union/enum resolved to its definition when BTF has one
        (BTF keeps FWD records where a compile unit saw only the declaration)."""
        if t.tag and not t.is_complete():
            try:
                full = self.registry().tagged(t.kind, t.tag)
            except VmcorekitError:
                return t
            if full.is_complete():
                return full.qualified(t.qualifiers)
        return t

    def _make(self, t: Type) -> Any:
        p, conv = self.prog, self.convert
        q = self._qualifiers(t)
        k = t.kind
        if k == TypeKind.VOID:
            return p.void_type(qualifiers=q)
        if k == TypeKind.INT:
            return p.int_type(t.name or "int", t.sizeof(), t.is_signed, qualifiers=q)
        if k == TypeKind.BOOL:
            return p.bool_type(t.name or "_Bool", t.sizeof(), qualifiers=q)
        if k == TypeKind.FLOAT:
            return p.float_type(t.name or "double", t.sizeof(), qualifiers=q)
        if k == TypeKind.POINTER:
            return p.pointer_type(conv(t.type), t.sizeof(), qualifiers=q)
        if k == TypeKind.ARRAY:
            return p.array_type(conv(t.type), t.length, qualifiers=q)
        if k == TypeKind.TYPEDEF:
            return p.typedef_type(t.name, conv(t.type), qualifiers=q)
        if k in (TypeKind.STRUCT, TypeKind.UNION):
            t = self._complete(t)
            make = p.struct_type if k == TypeKind.STRUCT else p.union_type
            if t.members is None:
                return make(t.tag, qualifiers=q)
            return make(t.tag, t.sizeof(), [self._member(m) for m in t.members], qualifiers=q)
        if k == TypeKind.ENUM:
            t = self._complete(t)
            if t.enumerators is None:
                return p.enum_type(t.tag, qualifiers=q)
            try:
                compat = conv(t.type)
            except VmcorekitError:
                compat = p.int_type("int" if t.is_signed else "unsigned int", t.sizeof(),
                                    t.is_signed)
            enums = [self.drgn.TypeEnumerator(n, v) for n, v in t.enumerators]
            return p.enum_type(t.tag, compat, enums, qualifiers=q)
        if k == TypeKind.FUNCTION:
            params = [self.drgn.TypeParameter(self._lazy(par), par.name)
                      for par in t.parameters or []]
            return p.function_type(conv(t.type), params, t.is_variadic, qualifiers=q)
        raise TypeLookupError(f"cannot give drgn a {k.value} type ({t.type_name()})")

    def _lazy(self, named: Any) -> Callable[[], Any]:
        return lambda: self.convert(named.type)

    def _member(self, m: Any) -> Any:
        drgn = self.drgn
        if m.bit_field_size:
            size = m.bit_field_size
            make: Callable[[], Any] = lambda: drgn.Object(self.prog, self.convert(m.type),
                                                          bit_field_size=size)
        else:
            make = self._lazy(m)
        return drgn.TypeMember(make, m.name, m.bit_offset)


# -- symbols ----------------------------------------------------------------------------------
class _SymbolFinder:
    """kallsyms (+ modules) as drgn Symbols; nm's type letter gives binding and kind."""

    def __init__(self, drgn: Any, vprog: VProgram) -> None:
        self.drgn = drgn
        self.vprog = vprog

    def _symbol(self, s: Any) -> Any:
        d = self.drgn
        c = s.type
        if c in "wWvV":
            binding = d.SymbolBinding.WEAK
        elif c.isupper():
            binding = d.SymbolBinding.GLOBAL
        else:
            binding = d.SymbolBinding.LOCAL
        lc = c.lower()
        kind = (d.SymbolKind.FUNC if lc in "tw" else
                d.SymbolKind.OBJECT if lc in "dbrgsv" else d.SymbolKind.UNKNOWN)
        return d.Symbol(s.name, s.address, s.size, binding, kind)

    def find(self, prog: Any, name: str | None, address: int | None, one: bool) -> list[Any]:
        try:
            table = self.vprog.symbols
        except (VmcorekitError, ImportError):
            return []
        if address is not None:
            s = table.lookup(address)
            if s is None or (name is not None and s.name != name):
                return []
            return [self._symbol(s)]
        if name is not None:
            if one:
                s = table.get(name)
                return [] if s is None else [self._symbol(s)]
            return [self._symbol(s) for s in table.find(name)]
        syms = iter(table)
        if one:
            first = next(syms, None)
            return [] if first is None else [self._symbol(first)]
        return [self._symbol(s) for s in syms]


# -- objects ----------------------------------------------------------------------------------
def _task_states(vprog: VProgram) -> int:
    from vmcorekit.kernel.tasks import task_layout
    return len(task_layout(vprog).require_btf(vprog).state_chars)


def _panic_cpu(vprog: VProgram) -> tuple[str, object]:
    from vmcorekit.kernel.panic import panic_cpu
    cpu, _ = panic_cpu(vprog)
    return "atomic_t", {"counter": -1 if cpu is None else cpu}


# Globals a kernel's kallsyms may lack (arm64's Debian kernels keep functions only) whose value
# vmcorekit finds another way; drgn gets them as values, not as variables in memory. Without
# panic_cpu, drgn's crashed_thread() would take CPU 0's task.
_DERIVED: dict[str, Callable[[VProgram], tuple[str, object]]] = {
    "panic_cpu": _panic_cpu,  # from the CPU whose stack went through panic()
}


# Arrays declared `[]` whose length drgn's helpers take with len(): BTF has no variables, and
# the kallsyms size (the distance to the next symbol) includes padding, so the length is read
# from the array itself the way vmcorekit reads it.
_LENGTH_BY_CONTENT: dict[str, Callable[[VProgram], int]] = {
    "task_state_array": _task_states,  # "R (running)", ... as /proc prints them
}


class _ObjectFinder:
    """Globals (an address from the symbols, a type from BTF VARs or vmcorekit's table of
    well-known globals) and enumerators."""

    def __init__(self, drgn: Any, vprog: VProgram, types: _TypeConverter) -> None:
        self.drgn = drgn
        self.vprog = vprog
        self.types = types

    def find(self, prog: Any, name: str, flags: Any, filename: str | None) -> Any:
        if filename is not None:
            return None
        F = self.drgn.FindObjectFlags
        vp = self.vprog
        # Enumerators first: a miss in the symbols would load every module's symbols.
        if flags & F.CONSTANT:
            try:
                found = vp.types.enumerator(name)
            except (VmcorekitError, ImportError):
                found = None
            if found is not None:
                return self.drgn.Object(prog, self.types.convert(found[0]), found[1])
        if not flags & (F.VARIABLE | F.FUNCTION):
            return None
        try:
            obj = vp[name]
        except (VmcorekitError, ImportError, LookupError):
            derive = _DERIVED.get(name)
            if derive is None or not flags & F.VARIABLE:
                return None
            try:
                spec, value = derive(vp)
                return self.drgn.Object(prog, self.types.convert(vp.types.lookup(spec)), value)
            except (VmcorekitError, LookupError):
                return None
        t = obj.type_
        if obj.address_ is None:  # a VMCOREINFO value entry (mem_section's pointer)
            if flags & F.VARIABLE:
                return self.drgn.Object(prog, self.types.convert(t), obj.value_())
            return None
        st = t.strip_typedefs()
        if st.kind == TypeKind.ARRAY and st.length is None and name in _LENGTH_BY_CONTENT:
            try:
                t = vp.types.array(st.type, _LENGTH_BY_CONTENT[name](vp))
            except (VmcorekitError, LookupError):
                pass  # left incomplete: indexing works, len() does not
        is_fn = st.kind == TypeKind.FUNCTION
        if flags & (F.FUNCTION if is_fn else F.VARIABLE):
            return self.drgn.Object(prog, self.types.convert(t), address=obj.address_)
        return None


# -- threads and stacks -----------------------------------------------------------------------
def crashed_thread(prog: "_drgn.Program") -> Any:
    """The panicking task as a drgn `struct task_struct *` Object (drgn's own crashed_thread()
    needs the CPU notes of a core dump it opened itself)."""
    from vmcorekit.kernel.stacks import crashed_task
    vprog = vmcorekit_program(prog)
    ct = crashed_task(vprog)
    if ct.task is None:
        raise LookupError(f"no panicking task: {ct.how}")
    return _task_object(prog, ct.task)


def _task_object(prog: "_drgn.Program", address: int) -> Any:
    drgn = _import_drgn()
    return drgn.Object(prog, prog.type("struct task_struct *"), address)


def stack_trace(prog: "_drgn.Program", thread: Any = None) -> "_drgn.StackTrace":
    """A drgn StackTrace of `thread` (a `struct task_struct *` Object, a task address, a drgn
    Thread, or None for the panicking task) unwound by vmcorekit (ORC / frame records read
    from the dump) and symbolized by drgn through the kallsyms finder."""
    from vmcorekit.kernel.stacks import stack_trace as vstack
    vprog = vmcorekit_program(prog)
    task: int | None
    if thread is None:
        task = None
    elif isinstance(thread, int):
        task = thread
    else:
        obj = getattr(thread, "object", thread)  # a drgn Thread carries its task
        task = obj.value_()
    trace = vstack(vprog, task)
    pcs = [f.pc for f in trace.frames]
    # drgn ends a kernel trace with the user-mode pc the task entered the kernel from.
    user = trace.user_regs
    if user is not None and user.regs.get(vprog.platform.pc):
        pcs.append(user.regs[vprog.platform.pc])
    return prog.stack_trace_from_pcs(pcs)
