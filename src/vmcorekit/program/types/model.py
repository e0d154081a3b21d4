"""The C type model every type source (BTF, VMCOREINFO facts) produces, shaped like drgn's.

Types are immutable once made; the parts that could pull in a large graph (members, a pointer's
target) are resolved on first use through a thunk, so decoding `struct task_struct` touches only
its own record, not the hundreds of types its members refer to.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from enum import Enum, IntFlag
from typing import Any, Union

from ...errors import TypeLookupError

# A type reference that may still be unresolved: the Type, or a thunk producing it.
TypeRef = Union["Type", Callable[[], "Type"]]

# Bound on how deep a chain of typedefs/qualifiers or nested anonymous members may go: real
# kernels need < 10; a corrupted blob could loop forever.
MAX_TYPE_DEPTH = 64


class TypeKind(Enum):
    VOID = "void"
    INT = "int"
    BOOL = "bool"
    FLOAT = "float"
    POINTER = "pointer"
    ARRAY = "array"
    STRUCT = "struct"
    UNION = "union"
    ENUM = "enum"
    TYPEDEF = "typedef"
    FUNCTION = "function"


class Qualifiers(IntFlag):
    NONE = 0
    CONST = 1
    VOLATILE = 2
    RESTRICT = 4


_COMPOUND = (TypeKind.STRUCT, TypeKind.UNION)
_TAGGED = (TypeKind.STRUCT, TypeKind.UNION, TypeKind.ENUM)


class _NamedType:
    """A name (None when anonymous) and a type resolved from its thunk on first use."""

    __slots__ = ("name", "_type")

    def __init__(self, name: str | None, type: TypeRef) -> None:
        self.name = name or None
        self._type = type

    @property
    def type(self) -> "Type":
        t = self._type
        if not isinstance(t, Type):
            t = t()
            self._type = t
        return t


class Member(_NamedType):
    """A struct/union member: `bit_offset` from the start of the containing type;
    `bit_field_size` is None unless it is a bit field."""

    __slots__ = ("bit_offset", "bit_field_size")

    def __init__(self, name: str | None, type: TypeRef, bit_offset: int,
                 bit_field_size: int | None = None) -> None:
        # _NamedType's fields set here, not by super().__init__: BTF decoding makes members by
        # the hundred thousand, and the extra call costs a third more per member.
        self.name = name or None
        self._type = type
        self.bit_offset = bit_offset
        self.bit_field_size = bit_field_size or None

    @property
    def offset(self) -> int:
        """Byte offset (bit fields: of the byte holding their first bit)."""
        return self.bit_offset // 8

    def __repr__(self) -> str:
        bf = f", bit_field_size={self.bit_field_size}" if self.bit_field_size else ""
        return f"Member({self.name!r}, {self.type.type_name()!r}, bit_offset={self.bit_offset}{bf})"


class Parameter(_NamedType):
    """A function parameter."""

    __slots__ = ()


class Type:
    """One C type. Which attributes mean something depends on `kind`:

    - INT/BOOL/FLOAT: name, size, is_signed
    - POINTER: size, type (the target)
    - ARRAY: type (element), length (None for an incomplete `[]`)
    - STRUCT/UNION: tag, size, members (None when only forward-declared)
    - ENUM: tag, type (compatible integer), enumerators
    - TYPEDEF: name, type
    - FUNCTION: type (return), parameters, is_variadic
    """

    __slots__ = ("kind", "name", "tag", "_size", "is_signed", "_type", "length", "_members",
                 "_enumerators", "_parameters", "is_variadic", "qualifiers", "origin",
                 "_member_index", "__weakref__")

    def __init__(self, kind: TypeKind, *, name: str | None = None, tag: str | None = None,
                 size: int | None = None, is_signed: bool = False, type: TypeRef | None = None,
                 length: int | None = None,
                 members: list[Member] | Callable[[], list[Member]] | None = None,
                 enumerators: list[tuple[str, int]] | None = None,
                 parameters: list[Parameter] | Callable[[], list[Parameter]] | None = None,
                 is_variadic: bool = False, qualifiers: Qualifiers = Qualifiers.NONE,
                 origin: str | None = None) -> None:
        self.kind = kind
        self.name = name
        self.tag = tag or None
        self._size = size
        self.is_signed = is_signed
        self._type = type
        self.length = length
        self._members = members
        self._enumerators = enumerators
        self._parameters = parameters
        self.is_variadic = is_variadic
        self.qualifiers = qualifiers
        self.origin = origin  # where the type came from, e.g. "btf:vmlinux#193"
        self._member_index: dict[str, Member] | None = None

    # -- attributes ---------------------------------------------------------------------------
    @property
    def type(self) -> "Type":
        """Pointer target, array element, typedef target, enum compatible type, return type."""
        t = self._type
        if t is None:
            raise TypeLookupError(f"{self.type_name()} has no referenced type")
        if not isinstance(t, Type):
            t = t()
            self._type = t
        return t

    def _forced_list(self, slot: str) -> list[Any] | None:
        """The list in `slot`, made by its thunk on first use and kept."""
        v = getattr(self, slot)
        if v is not None and not isinstance(v, list):
            v = v()
            setattr(self, slot, v)
        return v

    @property
    def members(self) -> list[Member] | None:
        return self._forced_list("_members")

    @property
    def enumerators(self) -> list[tuple[str, int]] | None:
        return self._enumerators

    @property
    def parameters(self) -> list[Parameter] | None:
        return self._forced_list("_parameters")

    @property
    def size(self) -> int | None:
        """sizeof, or None when it has none (void, functions, incomplete types)."""
        if self._size is not None:
            return self._size
        t: Type = self
        mult = 1
        for _ in range(MAX_TYPE_DEPTH):
            if t._size is not None:
                return t._size * mult
            k = t.kind
            if k == TypeKind.TYPEDEF or k == TypeKind.ENUM:
                if t._type is None:
                    return None
                t = t.type
            elif k == TypeKind.ARRAY:
                if t.length is None:
                    return None
                mult *= t.length
                t = t.type
            else:
                return None
        raise TypeLookupError(f"{self.type_name()}: type chain too deep to size (cycle?)")

    def sizeof(self) -> int:
        s = self.size
        if s is None:
            raise TypeLookupError(f"{self.type_name()} has no size (incomplete type)")
        return s

    def is_complete(self) -> bool:
        k = self.kind
        if k in _COMPOUND:
            return self._members is not None
        if k == TypeKind.ENUM:
            return self._enumerators is not None
        if k == TypeKind.ARRAY:
            return self.length is not None
        if k == TypeKind.TYPEDEF:
            return self.strip_typedefs().is_complete()
        return k != TypeKind.VOID

    # -- derived types ------------------------------------------------------------------------
    def strip_typedefs(self) -> "Type":
        """The type behind any typedefs (qualifiers of the final type are kept)."""
        t: Type = self
        for _ in range(MAX_TYPE_DEPTH):
            if t.kind != TypeKind.TYPEDEF:
                return t
            t = t.type
        raise TypeLookupError(f"typedef chain of {self.type_name()} is too deep (cycle?)")

    def qualified(self, qualifiers: Qualifiers) -> "Type":
        if qualifiers == self.qualifiers:
            return self
        t = Type.__new__(Type)
        for s in Type.__slots__:
            if s != "__weakref__":
                object.__setattr__(t, s, getattr(self, s))
        t.qualifiers = qualifiers
        return t

    def unqualified(self) -> "Type":
        return self.qualified(Qualifiers.NONE)

    # -- members ------------------------------------------------------------------------------
    def _compound(self) -> "Type":
        t = self.strip_typedefs()
        if t.kind not in _COMPOUND:
            raise TypeLookupError(f"{self.type_name()} is not a structure or union")
        if t.members is None:
            raise TypeLookupError(f"{self.type_name()} is incomplete (only forward-declared)")
        return t

    def _members_by_name(self) -> dict[str, Member]:
        """{name: member} of a compound type, anonymous members' members included (offsets
        from the start of this type), in declaration order; built once."""
        if self._member_index is None:
            index: dict[str, Member] = {}
            _index_members(self, 0, index, 0)
            self._member_index = index
        return self._member_index

    def member(self, name: str) -> Member:
        """The member `name`, looking through anonymous structs/unions (the returned Member's
        bit_offset is from the start of this type)."""
        m = self._compound()._members_by_name().get(name)
        if m is None:
            raise TypeLookupError(f"{self.type_name()} has no member {name!r}")
        return m

    def has_member(self, name: str) -> bool:
        try:
            self.member(name)
            return True
        except TypeLookupError:
            return False

    def member_names(self) -> list[str]:
        """Names usable with member(): anonymous members' members included."""
        return list(self._compound()._members_by_name())

    # -- names --------------------------------------------------------------------------------
    def type_name(self) -> str:
        """C spelling: 'struct task_struct *', 'char [16]', 'void (*)(int)'."""
        return format_declaration(self, "")

    def __str__(self) -> str:
        return self.type_name()

    def __repr__(self) -> str:
        return f"Type({self.type_name()!r})"

    def enumerator_name(self, value: int) -> str | None:
        t = self.strip_typedefs()
        for n, v in t.enumerators or ():
            if v == value:
                return n
        return None

    # Types compare by what they are, not by identity: a pointer type made by the spec parser
    # equals the BTF one. Compound types compare by tag and size only (members are lazy and
    # may be self-referential).
    def _key(self, depth: int = 0) -> tuple[object, ...]:
        if depth > MAX_TYPE_DEPTH:
            return ("deep",)
        k = self.kind
        if k in (TypeKind.POINTER, TypeKind.TYPEDEF, TypeKind.ARRAY):
            return (k, self.name, self.size if k != TypeKind.ARRAY else self.length,
                    int(self.qualifiers), self.type._key(depth + 1))
        if k == TypeKind.FUNCTION:
            return (k, int(self.qualifiers), self.is_variadic, self.type._key(depth + 1),
                    tuple(p.type._key(depth + 1) for p in self.parameters or []))
        return (k, self.name, self.tag, self._size, self.is_signed, int(self.qualifiers),
                self.is_complete() if k in _TAGGED else None)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Type):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def _index_members(t: Type, base: int, index: dict[str, Member], depth: int) -> None:
    if depth > MAX_TYPE_DEPTH:
        raise TypeLookupError(f"{t.type_name()}: anonymous members nest too deep (cycle?)")
    for m in t.members or []:
        if m.name is None:
            mt = m.type.strip_typedefs()
            if mt.kind in _COMPOUND and mt.members is not None:
                _index_members(mt, base + m.bit_offset, index, depth + 1)
            continue
        if m.name in index:
            continue  # first declaration wins, as in C lookup order
        index[m.name] = m if base == 0 else Member(m.name, m._type, base + m.bit_offset,
                                                   m.bit_field_size)


# -- C declarator formatting ------------------------------------------------------------------
def _quals(q: Qualifiers) -> str:
    out = []
    if q & Qualifiers.CONST:
        out.append("const")
    if q & Qualifiers.VOLATILE:
        out.append("volatile")
    if q & Qualifiers.RESTRICT:
        out.append("restrict")
    return " ".join(out)


def base_name(t: Type) -> str:
    k = t.kind
    if k in _TAGGED:
        s = f"{k.value} {t.tag}" if t.tag else f"{k.value} <anonymous>"
    elif k == TypeKind.VOID:
        s = "void"
    else:
        s = t.name or "<anonymous>"
    q = _quals(t.qualifiers)
    return f"{q} {s}" if q else s


def format_declaration(t: Type, declarator: str, _depth: int = 0) -> str:
    """`t` declaring `declarator` (a name or ''), C's inside-out syntax."""
    if _depth > MAX_TYPE_DEPTH:
        raise TypeLookupError("type nests too deep to name (cycle?)")
    for _ in range(MAX_TYPE_DEPTH):
        k = t.kind
        if k == TypeKind.POINTER:
            q = _quals(t.qualifiers)
            if q:
                declarator = f"* {q} {declarator}".rstrip() if declarator else f"* {q}"
            else:
                declarator = "*" + declarator
            t = t.type
            if t.kind in (TypeKind.ARRAY, TypeKind.FUNCTION):
                declarator = f"({declarator})"
            continue
        if k == TypeKind.ARRAY:
            n = "" if t.length is None else str(t.length)
            declarator = f"{declarator}[{n}]" if declarator else f"[{n}]"
            t = t.type
            continue
        if k == TypeKind.FUNCTION:
            params = []
            for p in t.parameters or []:
                params.append(format_declaration(p.type, p.name or "", _depth + 1))
            if t.is_variadic:
                params.append("...")
            declarator = f"{declarator}({', '.join(params) or 'void'})"
            t = t.type
            continue
        base = base_name(t)
        if not declarator:
            return base
        return f"{base} {declarator}"
    raise TypeLookupError("type nests too deep to name (cycle?)")


def walk_members(t: Type) -> Iterator[tuple[str, Member]]:
    """(dotted path, member) for every named leaf member, anonymous members flattened."""
    for name in t.member_names():
        yield name, t.member(name)
