"""TypeRegistry: one place to ask for kernel types by C name, whatever their source.

Sources are asked in order (vmlinux BTF, then module BTF loaded on the first miss, or the
VMCOREINFO facts when there is no BTF). The registry adds what every source shares: C type-name
parsing, the arithmetic types of the ABI, derived pointer/array types, member designators
("tasks.next", "a[2].b"), and the types of global variables (globals.py).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ...errors import TypeLookupError, VmcorekitError
from .cdecl import parse_type_name
from .globals import GlobalInfo, resolve_global
from .model import Member, Parameter, Qualifiers, Type, TypeKind

# Arithmetic types of the LP64 (and ILP32) ABIs Linux runs on; `long` follows the pointer size.
_INT_SIZES = {"char": 1, "signed char": 1, "unsigned char": 1, "short": 2, "unsigned short": 2,
              "int": 4, "unsigned int": 4, "long long": 8, "unsigned long long": 8,
              "__int128": 16, "unsigned __int128": 16}
_FLOAT_SIZES = {"float": 4, "double": 8, "long double": 16}
_MAX_CACHE = 8192


class TypeSource(Protocol):
    name: str

    def tagged(self, kind: TypeKind, tag: str) -> Type | None: ...
    def named(self, name: str) -> Type | None: ...
    def constant(self, name: str) -> int | None: ...
    def variable(self, name: str) -> tuple[Type, int | None] | None: ...


_DESIGNATOR = re.compile(r"\s*(?:\.?\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)|\[\s*(?P<idx>-?(?:0[xX][0-9a-fA-F]+|\d+))\s*\])")


class TypeRegistry:
    """Kernel types by C name. `kind` says where they come from: "btf" (the dump's memory),
    "btf-file" (a vmlinux given by the user) or "vmcoreinfo" (SIZE/OFFSET facts only)."""

    def __init__(self, sources: Iterable[TypeSource], *, pointer_size: int = 8,
                 char_signed: bool = True, kind: str = "btf",
                 module_loader: Callable[["TypeRegistry"], list[TypeSource]] | None = None) -> None:
        self.sources: list[TypeSource] = list(sources)
        self.pointer_size = pointer_size
        self.char_signed = char_signed
        self.kind = kind
        self._module_loader = module_loader
        self._modules_loaded = module_loader is None
        self._module_error: str | None = None
        self._cache: dict[str, Type] = {}
        self._arith: dict[str, Type] = {}
        self._declared: dict[str, str | Type] = {}
        self.warnings: list[str] = []

    def __repr__(self) -> str:
        return f"<TypeRegistry {self.kind}: {', '.join(s.name for s in self.sources)}>"

    # -- where types come from ----------------------------------------------------------------
    @property
    def btf(self) -> Any:
        """The vmlinux Btf, or None without BTF."""
        for s in self.sources:
            b = getattr(s, "btf", None)
            if b is not None:
                return b
        return None

    def load_modules(self) -> list[str]:
        """Add module BTF sources (done automatically on the first lookup miss). Returns the
        names of the sources added; problems are kept in `warnings`."""
        if self._modules_loaded:
            return []
        self._modules_loaded = True
        assert self._module_loader is not None
        try:
            added = self._module_loader(self)
        except VmcorekitError as e:
            self._module_error = str(e)
            self.warnings.append(f"module BTF not loaded: {e}")
            return []
        self.sources.extend(added)
        return [s.name for s in added]

    def _ask(self, fn: Callable[[TypeSource], Any], modules: bool = True) -> Any:
        """First answer of the sources; on a miss, module BTF is loaded and asked too
        (unless modules=False)."""
        for s in self.sources:
            r = fn(s)
            if r is not None:
                return r
        if modules:
            return self._ask_modules(fn)
        return None

    def _ask_modules(self, fn: Callable[[TypeSource], Any]) -> Any:
        if not self._modules_loaded:
            n = len(self.sources)
            self.load_modules()
            for s in self.sources[n:]:
                r = fn(s)
                if r is not None:
                    return r
        return None

    # -- Resolver (for the C type-name parser) ------------------------------------------------
    def named(self, name: str) -> Type:
        if name in ("void",):
            return Type(TypeKind.VOID)
        t = self._ask(lambda s: s.named(name), modules=False)
        if t is not None:
            return t
        if name in ("_Bool", "bool"):
            return Type(TypeKind.BOOL, name="_Bool", size=1)
        a = self.arithmetic(name)
        if a is not None:
            return a
        t = self._ask_modules(lambda s: s.named(name))
        if t is not None:
            return t
        raise TypeLookupError(f"could not find {name!r} ({self._why()})")

    def tagged(self, kind: TypeKind, tag: str) -> Type:
        t = self._ask(lambda s: s.tagged(kind, tag))
        if t is None:
            raise TypeLookupError(f"could not find '{kind.value} {tag}' ({self._why()})")
        return t

    def constant(self, name: str) -> int:
        """Value of an enumerator (e.g. NR_VM_ZONE_STAT_ITEMS)."""
        v = self._ask(lambda s: s.constant(name))
        if v is None:
            raise TypeLookupError(f"could not find constant {name!r} ({self._why()})")
        return int(v)

    def enumerator(self, name: str) -> tuple[Type, int] | None:
        """(enum type, value) of an enumerator, e.g. PIDTYPE_PID, or None."""
        def ask(s: TypeSource) -> tuple[Type, int] | None:
            fn = getattr(s, "enum_of_constant", None)
            t = fn(name) if fn is not None else None
            return None if t is None else (t, int(s.constant(name)))  # type: ignore[arg-type]
        return self._ask(ask)

    def pointer(self, target: Type, qualifiers: Qualifiers = Qualifiers.NONE) -> Type:
        return Type(TypeKind.POINTER, size=self.pointer_size, type=target, qualifiers=qualifiers)

    def array(self, element: Type, length: int | None) -> Type:
        return Type(TypeKind.ARRAY, type=element, length=length)

    def function(self, ret: Type, params: list[Parameter], variadic: bool) -> Type:
        return Type(TypeKind.FUNCTION, type=ret, parameters=params, is_variadic=variadic)

    def arithmetic(self, name: str) -> Type | None:
        """The ABI's arithmetic type of this canonical name ('unsigned long', 'char')."""
        t = self._arith.get(name)
        if t is not None:
            return t
        if name in ("long", "unsigned long"):
            size = self.pointer_size
        else:
            size = _INT_SIZES.get(name, 0)
        if size:
            signed = not name.startswith("unsigned") and (name != "char" or self.char_signed)
            t = Type(TypeKind.INT, name=name, size=size, is_signed=signed)
        elif name in _FLOAT_SIZES:
            t = Type(TypeKind.FLOAT, name=name, size=_FLOAT_SIZES[name])
        else:
            return None
        self._arith[name] = t
        return t

    def int_type(self, size: int, signed: bool) -> Type:
        """An integer type of this size ('unsigned int' for 4 bytes unsigned, ...)."""
        for n in ("char", "short", "int", "long", "long long", "__int128"):
            if n == "char":
                cand = "signed char" if signed else "unsigned char"
            else:
                cand = n if signed else f"unsigned {n}"
            t = self.arithmetic(cand)
            if t is not None and t.size == size:
                return t
        raise TypeLookupError(f"no {size}-byte integer type")

    def _why(self) -> str:
        if self.kind == "vmcoreinfo":
            return "no BTF in this dump: only the structures VMCOREINFO describes are known"
        return "not in " + ", ".join(s.name for s in self.sources)

    # -- lookups ------------------------------------------------------------------------------
    def lookup(self, spec: "str | Type") -> Type:
        """A type by C name: 'struct task_struct', 'struct list_head *', 'unsigned long',
        'char [16]', 'atomic_long_t [NR_VM_ZONE_STAT_ITEMS]', 'void (*)(int)'."""
        if isinstance(spec, Type):
            return spec
        if not isinstance(spec, str):
            raise TypeError(f"expected a type name or Type, got {type(spec).__name__}")
        key = " ".join(spec.split())
        t = self._cache.get(key)
        if t is None:
            t = parse_type_name(key, self)
            if len(self._cache) < _MAX_CACHE:
                self._cache[key] = t
        return t

    def has_type(self, spec: str) -> bool:
        try:
            self.lookup(spec)
            return True
        except TypeLookupError:
            return False

    def sizeof(self, spec: "str | Type") -> int:
        return self.lookup(spec).sizeof()

    def member(self, spec: "str | Type", designator: str) -> tuple[Type, int, int | None]:
        """(member type, bit offset from the start, bit-field size or None) of a designator
        like 'tasks.next', 'pids[1].node' or 'se.avg' ('.' may cross anonymous members)."""
        t = self.lookup(spec)
        bit = 0
        bf: int | None = None
        pos = 0
        text = designator.strip()
        if not text:
            raise TypeLookupError("empty member designator")
        first = True
        while pos < len(text):
            m = _DESIGNATOR.match(text, pos)
            if not m or m.end() == pos or (first and text[pos] == "["):
                raise TypeLookupError(f"bad member designator {designator!r}")
            first = False
            pos = m.end()
            if bf is not None:
                raise TypeLookupError(f"{designator!r}: a bit field has no members")
            st = t.strip_typedefs()
            if m.group("name") is not None:
                mem = t.member(m.group("name"))
                bit += mem.bit_offset
                bf = mem.bit_field_size
                t = mem.type
            else:
                if st.kind != TypeKind.ARRAY:
                    raise TypeLookupError(f"{designator!r}: {t.type_name()} is not an array")
                elem = st.type
                bit += int(m.group("idx"), 0) * elem.sizeof() * 8
                t = elem
        return t, bit, bf

    def offsetof(self, spec: "str | Type", designator: str) -> int:
        """Byte offset of a member ('tasks.next' and array indexes allowed)."""
        t, bit, bf = self.member(spec, designator)
        if bf is not None or bit % 8:
            raise TypeLookupError(f"{designator!r} is a bit field; use member_bits()")
        return bit // 8

    def member_bits(self, spec: "str | Type", designator: str) -> tuple[int, int]:
        """(bit offset, bit size) of a member; bit size is the field width for bit fields,
        8 * sizeof otherwise."""
        t, bit, bf = self.member(spec, designator)
        return bit, bf if bf is not None else t.sizeof() * 8

    def has_member(self, spec: "str | Type", designator: str) -> bool:
        try:
            self.member(spec, designator)
            return True
        except TypeLookupError:
            return False

    # -- global variables ---------------------------------------------------------------------
    def declare_global(self, name: str, spec: "str | Type") -> None:
        """Say what type global `name` has (overrides BTF and the built-in table)."""
        if isinstance(spec, str):
            self.lookup(spec)  # fail now, not at first use
        self._declared[name] = spec

    def global_info(self, name: str, symbol_size: int | None = None) -> GlobalInfo:
        """What is known of a global variable's type; TypeLookupError if nothing is."""
        return resolve_global(self, name, self._declared.get(name), symbol_size)

    def global_type(self, name: str, symbol_size: int | None = None) -> Type:
        return self.global_info(name, symbol_size).type

    def variable(self, name: str, modules: bool = True) -> tuple[Type, int | None] | None:
        """A BTF VAR (vmlinux BTF has them for per-CPU variables): (type, per-CPU offset)."""
        return self._ask(lambda s: s.variable(name), modules=modules)


def members_of(t: Type) -> list[Member]:
    st = t.strip_typedefs()
    if st.kind not in (TypeKind.STRUCT, TypeKind.UNION) or st.members is None:
        raise TypeLookupError(f"{t.type_name()} has no members")
    return st.members
