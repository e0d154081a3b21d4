"""Typed objects: kernel memory seen through C types, shaped like drgn's Object.

    task = prog["init_task"]                 # struct task_struct at &init_task
    task.comm.string_()                      # b'swapper/0'
    task.mm                                  # struct mm_struct * (value object)
    task.real_parent.pid                     # members auto-dereference pointers, like '->'
    prog.object("struct list_head", addr).next.deref()
    (per-CPU instances: kernel/percpu.py's per_cpu(prog["runqueues"], 1).nr_running)

An Object is a *reference* (a type at an address, read when its value is needed) or a *value*
(bytes or a number already read, e.g. a pointer loaded from a member). Attribute access reads
struct members; Python-level attributes all end in '_' (address_, type_, value_(), string_())
so they never collide with C member names.

str(obj) prints like crash's `struct` command (gdb's pretty printer as crash configures it:
every array element, strings with all their NULs, `<symbol+off>` after pointers when the
symbol table can name them); repr(obj) is a one-line drgn-style description.
"""
from __future__ import annotations

import math
import struct as _struct
import unicodedata
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import (MemberNotFoundError, MemoryReadError, ObjectError, ObjectNotFoundError,
                      TypeLookupError, VmcorekitError)
from . import symbol_order
from .types.model import Member, Qualifiers, Type, TypeKind

if TYPE_CHECKING:
    from .core import Program

# gdb's `print elements` default, which crash keeps: at most this many characters of a
# string (runs of one character are finished first) and elements of an array are printed.
PRINT_MAX = 200
# Characters print as UTF-8 when they decode (gdb in a UTF-8 locale) or all bytes >= 0x80 as
# octal escapes ("ascii", gdb in the C locale).
CHARSET = "utf-8"
# string_() on a char pointer stops here unless told otherwise.
STRING_MAX = 1 << 20
# An object larger than this is not read whole (a corrupted size or an absurd array).
MAX_OBJECT_READ = 64 << 20
_MAX_FORMAT_DEPTH = 48
# Values visited by one value_() or format_(): real structs need a few thousand; a damaged
# type graph (a struct containing itself, overlapping members) must not explode.
VALUE_BUDGET = 100_000
# gdb's `print max-depth` default: structs and unions nested deeper print as {...}.
PRINT_MAX_DEPTH = 20


def _strip(t: Type) -> Type:
    return t.strip_typedefs()


def _is_charlike(t: Type) -> bool:
    """1-byte integer types: gdb prints them as characters and their arrays as strings."""
    s = _strip(t)
    return s.kind == TypeKind.INT and s.size == 1


def _int_from(buf: bytes | memoryview, signed: bool) -> int:
    return int.from_bytes(buf, "little", signed=signed)


class Object:
    """A typed piece of kernel memory or a typed value."""

    __slots__ = ("_o_prog", "_o_type", "_o_addr", "_o_val", "_o_bit", "_o_bits")

    def __init__(self, prog: "Program", type: "str | Type", value: Any = None, *,
                 address: int | None = None, bit_offset: int = 0,
                 bit_field_size: int | None = None) -> None:
        t = prog.types.lookup(type) if isinstance(type, str) else type
        if address is None and value is None:
            raise ObjectError("an Object needs a value or an address")
        if address is not None and value is not None:
            raise ObjectError("an Object has a value or an address, not both")
        self._o_prog = prog
        self._o_type = t
        self._o_addr = None if address is None else int(address) & 0xFFFFFFFFFFFFFFFF
        self._o_bit = bit_offset
        self._o_bits = bit_field_size
        if value is not None:
            value = _coerce_value(t, value)
        self._o_val = value

    # -- drgn-style attributes ----------------------------------------------------------------
    @property
    def prog_(self) -> "Program":
        return self._o_prog

    @property
    def type_(self) -> Type:
        return self._o_type

    @property
    def address_(self) -> int | None:
        """Where the object lives (None for values)."""
        return self._o_addr

    @property
    def bit_offset_(self) -> int | None:
        return self._o_bit if self._o_bits is not None else None

    @property
    def bit_field_size_(self) -> int | None:
        return self._o_bits

    @property
    def absent_(self) -> bool:
        return False

    def is_reference_(self) -> bool:
        return self._o_addr is not None

    # -- raw access ---------------------------------------------------------------------------
    def _size(self) -> int:
        size = self._o_type.size
        if size is None:
            raise ObjectError(f"cannot read an object of incomplete type "
                              f"{self._o_type.type_name()!r}")
        return size

    def _bytes(self) -> bytes:
        """The object's bytes (compound and array types)."""
        if self._o_val is not None:
            if isinstance(self._o_val, (bytes, bytearray)):
                return bytes(self._o_val)
            return _encode_scalar(self._o_type, self._o_val)
        size = self._size()
        if size > MAX_OBJECT_READ:
            raise ObjectError(f"{self._o_type.type_name()} is {size} bytes; refusing to read it "
                              f"whole")
        assert self._o_addr is not None
        return self._o_prog.read(self._o_addr, size)

    def _scalar(self) -> int | float:
        if self._o_val is not None and not isinstance(self._o_val, (bytes, bytearray)):
            return self._o_val
        t = _strip(self._o_type)
        if t.kind in (TypeKind.STRUCT, TypeKind.UNION, TypeKind.ARRAY, TypeKind.FUNCTION,
                      TypeKind.VOID):
            raise ObjectError(f"{self._o_type.type_name()!r} is not a scalar")
        if self._o_bits is not None:
            nbytes = (self._o_bit + self._o_bits + 7) // 8
            raw = (self._o_val[:nbytes] if self._o_val is not None
                   else self._o_prog.read(self._o_addr, nbytes))  # type: ignore[arg-type]
            return _bitfield(t, raw, self._o_bit, self._o_bits)
        raw = self._bytes() if self._o_val is not None else \
            self._o_prog.read(self._o_addr, self._size())  # type: ignore[arg-type]
        return _decode_scalar(t, raw)

    # -- values -------------------------------------------------------------------------------
    def value_(self) -> Any:
        """Python value: int (integers, enums, pointers), bool, float, dict (structs and
        unions, anonymous members merged), list (arrays)."""
        t = _strip(self._o_type)
        if t.kind in (TypeKind.STRUCT, TypeKind.UNION, TypeKind.ARRAY):
            return _to_python(self._o_type, self._bytes(), 0)
        if t.kind == TypeKind.BOOL:
            return bool(self._scalar())
        return self._scalar()

    def read_(self) -> "Object":
        """This object as a value (its memory read now)."""
        if self._o_addr is None:
            return self
        t = _strip(self._o_type)
        if t.kind in (TypeKind.STRUCT, TypeKind.UNION, TypeKind.ARRAY):
            return Object(self._o_prog, self._o_type, self._bytes())
        return Object(self._o_prog, self._o_type, self._scalar())

    def __int__(self) -> int:
        t = _strip(self._o_type)
        if t.kind not in (TypeKind.INT, TypeKind.BOOL, TypeKind.ENUM, TypeKind.POINTER,
                          TypeKind.FLOAT):
            if t.kind == TypeKind.FUNCTION and self._o_addr is not None:
                return self._o_addr
            raise TypeError(f"cannot convert {self._o_type.type_name()!r} to int")
        return int(self._scalar())

    def __index__(self) -> int:
        t = _strip(self._o_type)
        if t.kind == TypeKind.FLOAT:
            raise TypeError("a floating-point object is not an index")
        return self.__int__()

    def __float__(self) -> float:
        return float(self._scalar())

    def __bool__(self) -> bool:
        t = _strip(self._o_type)
        if t.kind in (TypeKind.STRUCT, TypeKind.UNION):
            raise TypeError(f"cannot convert {self._o_type.type_name()!r} to bool")
        if t.kind in (TypeKind.ARRAY, TypeKind.FUNCTION):
            return True  # decays to a non-NULL address
        return bool(self._scalar())

    def enum_name_(self) -> str | None:
        """The enumerator naming this enum value, if any."""
        t = _strip(self._o_type)
        if t.kind != TypeKind.ENUM:
            raise ObjectError(f"{self._o_type.type_name()!r} is not an enum")
        return t.enumerator_name(int(self._scalar()))

    def string_(self, limit: int | None = None) -> bytes:
        """The NUL-terminated string of a char array (bounded by its length) or the one a
        char pointer points to (bounded by `limit`, default 1 MiB)."""
        t = _strip(self._o_type)
        if t.kind == TypeKind.ARRAY and _is_charlike(t.type):
            if t.length is None:
                if self._o_addr is None:
                    return b""
                return self._o_prog.read_cstring(self._o_addr, limit or STRING_MAX)
            n = t.length if limit is None else min(limit, t.length)
            data = self._bytes()[:n]
            i = data.find(b"\0")
            return data if i < 0 else data[:i]
        if t.kind == TypeKind.POINTER and (_is_charlike(t.type) or
                                           _strip(t.type).kind == TypeKind.VOID):
            addr = int(self._scalar())
            if addr == 0:
                raise ObjectError("string_() of a NULL pointer")
            return self._o_prog.read_cstring(addr, limit or STRING_MAX)
        raise ObjectError(f"string_() needs a char array or pointer, not "
                          f"{self._o_type.type_name()!r}")

    # -- navigation ---------------------------------------------------------------------------
    def member_(self, name: str) -> "Object":
        """Member `name` (through anonymous members; through a pointer, like '->')."""
        t = _strip(self._o_type)
        if t.kind == TypeKind.POINTER:
            return self.deref().member_(name)
        if t.kind not in (TypeKind.STRUCT, TypeKind.UNION):
            raise MemberNotFoundError(f"{self._o_type.type_name()!r} has no members "
                                      f"(looking for {name!r})")
        try:
            m = t.member(name)
        except TypeLookupError as e:
            raise MemberNotFoundError(str(e)) from None
        return self._at_member(m)

    def _at_member(self, m: Member) -> "Object":
        byte, bit = divmod(m.bit_offset, 8)
        if self._o_addr is not None:
            return Object(self._o_prog, m.type, address=self._o_addr + byte,
                          bit_offset=bit, bit_field_size=m.bit_field_size)
        buf = self._bytes()
        if m.bit_field_size is not None:
            nbytes = (bit + m.bit_field_size + 7) // 8
            v = _bitfield(_strip(m.type), buf[byte:byte + nbytes], bit, m.bit_field_size)
            return Object(self._o_prog, m.type, v)
        size = m.type.size
        if size is None:
            raise ObjectError(f"member {m.name!r} of a value has incomplete type")
        return _value_from_bytes(self._o_prog, m.type, buf[byte:byte + size])

    def __getattr__(self, name: str) -> "Object":
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self.member_(name)

    def __dir__(self) -> list[str]:
        names = list(super().__dir__())
        t = _strip(self._o_type)
        if t.kind == TypeKind.POINTER:
            t = _strip(t.type)
        if t.kind in (TypeKind.STRUCT, TypeKind.UNION) and t.members is not None:
            names += t.member_names()
        return names

    def subobject_(self, designator: str) -> "Object":
        """A member by designator: 'tasks.next', 'pids[1].first' (no pointer hops)."""
        mt, bit, bf = self._o_prog.types.member(self._o_type, designator)
        return self._at_member(Member(None, mt, bit, bf))

    def deref(self) -> "Object":
        """*ptr (also spelled obj[0])."""
        t = _strip(self._o_type)
        if t.kind == TypeKind.POINTER:
            target = t.type
            if _strip(target).kind == TypeKind.VOID:
                raise ObjectError("cannot dereference a void pointer")
            return Object(self._o_prog, target, address=int(self._scalar()))
        if t.kind == TypeKind.ARRAY:
            return self[0]
        raise ObjectError(f"cannot dereference {self._o_type.type_name()!r}")

    deref_ = deref

    def address_of_(self) -> "Object":
        """&obj, a pointer value."""
        if self._o_addr is None:
            raise ObjectError("cannot take the address of a value")
        if self._o_bits is not None:
            raise ObjectError("cannot take the address of a bit field")
        return Object(self._o_prog, self._o_prog.types.pointer(self._o_type), self._o_addr)

    def __getitem__(self, i: int) -> "Object":
        if isinstance(i, slice):
            raise TypeError("slices of objects are not supported; index elements")
        i = int(i)
        t = _strip(self._o_type)
        if t.kind == TypeKind.POINTER:
            elem = t.type
            esize = elem.size
            if esize is None:
                raise ObjectError(f"cannot index {self._o_type.type_name()!r}: incomplete "
                                  f"element type")
            return Object(self._o_prog, elem, address=int(self._scalar()) + i * esize)
        if t.kind == TypeKind.ARRAY:
            elem = t.type
            esize = elem.sizeof()
            if self._o_addr is not None:
                return Object(self._o_prog, elem, address=self._o_addr + i * esize)
            buf = self._bytes()
            if not 0 <= i < len(buf) // max(esize, 1):
                raise IndexError(f"index {i} out of range of a {len(buf)}-byte array value")
            return _value_from_bytes(self._o_prog, elem, buf[i * esize:(i + 1) * esize])
        raise ObjectError(f"{self._o_type.type_name()!r} cannot be indexed")

    def __len__(self) -> int:
        t = _strip(self._o_type)
        if t.kind == TypeKind.ARRAY and t.length is not None:
            return t.length
        raise TypeError(f"{self._o_type.type_name()!r} has no length")

    def __iter__(self) -> Iterator["Object"]:
        t = _strip(self._o_type)
        if t.kind != TypeKind.ARRAY or t.length is None:
            raise TypeError(f"{self._o_type.type_name()!r} is not iterable")
        return (self[i] for i in range(t.length))

    # -- arithmetic and comparison ------------------------------------------------------------
    def _num(self) -> int | float:
        t = _strip(self._o_type)
        if t.kind in (TypeKind.ARRAY, TypeKind.FUNCTION) and self._o_addr is not None:
            return self._o_addr
        return self._scalar()

    def __add__(self, other: Any) -> Any:
        t = _strip(self._o_type)
        if t.kind == TypeKind.POINTER:
            scale = t.type.size or 1
            return Object(self._o_prog, self._o_type,
                          (int(self._scalar()) + int(other) * scale) & 0xFFFFFFFFFFFFFFFF)
        return self._num() + _num(other)

    __radd__ = __add__

    def __sub__(self, other: Any) -> Any:
        t = _strip(self._o_type)
        if t.kind == TypeKind.POINTER:
            scale = t.type.size or 1
            if isinstance(other, Object) and _strip(other._o_type).kind == TypeKind.POINTER:
                return (int(self._scalar()) - int(other._scalar())) // scale
            return Object(self._o_prog, self._o_type,
                          (int(self._scalar()) - int(other) * scale) & 0xFFFFFFFFFFFFFFFF)
        return self._num() - _num(other)

    def __rsub__(self, other: Any) -> Any:
        return _num(other) - self._num()

    def __mul__(self, o: Any) -> Any: return self._num() * _num(o)
    __rmul__ = __mul__
    def __floordiv__(self, o: Any) -> Any: return self._num() // _num(o)
    def __truediv__(self, o: Any) -> Any: return self._num() / _num(o)
    def __mod__(self, o: Any) -> Any: return self._num() % _num(o)
    def __and__(self, o: Any) -> Any: return int(self) & int(o)
    __rand__ = __and__
    def __or__(self, o: Any) -> Any: return int(self) | int(o)
    __ror__ = __or__
    def __xor__(self, o: Any) -> Any: return int(self) ^ int(o)
    __rxor__ = __xor__
    def __lshift__(self, o: Any) -> Any: return int(self) << int(o)
    def __rshift__(self, o: Any) -> Any: return int(self) >> int(o)
    def __invert__(self) -> Any: return ~int(self)
    def __neg__(self) -> Any: return -self._num()
    def __pos__(self) -> Any: return +self._num()
    def __abs__(self) -> Any: return abs(self._num())

    def _cmp_value(self) -> Any:
        t = _strip(self._o_type)
        if t.kind in (TypeKind.STRUCT, TypeKind.UNION):
            raise TypeError(f"cannot compare {self._o_type.type_name()!r}")
        return self._num()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Object, int, float)):
            return self._cmp_value() == _num(other)
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def __lt__(self, o: Any) -> bool: return self._cmp_value() < _num(o)
    def __le__(self, o: Any) -> bool: return self._cmp_value() <= _num(o)
    def __gt__(self, o: Any) -> bool: return self._cmp_value() > _num(o)
    def __ge__(self, o: Any) -> bool: return self._cmp_value() >= _num(o)

    __hash__ = None  # type: ignore[assignment]

    # -- printing -----------------------------------------------------------------------------
    def format_(self, *, symbolize: bool = True, hex: bool = False) -> str:
        """crash `struct`-style text: 'struct foo {' ... '}' for structs and unions,
        '(type)value' for scalars."""
        t = _strip(self._o_type)
        f = _Formatter(self._o_prog, symbolize=symbolize, hex=hex)
        if t.kind in (TypeKind.STRUCT, TypeKind.UNION):
            body = f.value(self._o_type, self._bytes(), 0, 0, None, 0, self._o_addr)
            return f"{t.type_name()} {body}" if t.tag else body
        if t.kind == TypeKind.ARRAY:
            return f.value(self._o_type, self._bytes(), 0, 0, None, 0, self._o_addr)
        if t.kind == TypeKind.FUNCTION:
            return f"({self._o_type.type_name()})" + f.pointer_text(self._o_addr or 0, True)
        v = self._scalar()
        return f"({self._o_type.type_name()})" + f.scalar(self._o_type, v)

    def format_members_(self, names: list[str], *, symbolize: bool = True,
                        hex: bool = False) -> str:
        """Lines '  name = value,' for the given members, like `struct T.a,b ADDR`."""
        f = _Formatter(self._o_prog, symbolize=symbolize, hex=hex)
        lines = []
        for n in names:
            o = self.subobject_(n) if ("." in n or "[" in n) else self.member_(n)
            lines.append(f"  {n} = {f.object_value(o, 1)},")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format_()

    def __repr__(self) -> str:
        tn = self._o_type.type_name()
        if self._o_addr is not None:
            bits = f", bit_offset={self._o_bit}, bit_field_size={self._o_bits}" \
                if self._o_bits is not None else ""
            return f"Object(prog, {tn!r}, address={self._o_addr:#x}{bits})"
        v = self._o_val
        if isinstance(v, (bytes, bytearray)):
            return f"Object(prog, {tn!r}, value=<{len(v)} bytes>)"
        if _strip(self._o_type).kind == TypeKind.POINTER:
            return f"Object(prog, {tn!r}, value={int(v):#x})"
        return f"Object(prog, {tn!r}, value={v!r})"


# -- helpers over bytes -----------------------------------------------------------------------
def _num(o: Any) -> Any:
    if isinstance(o, Object):
        return o._num()
    if isinstance(o, (int, float)):
        return o
    raise TypeError(f"cannot combine an Object with {type(o).__name__}")


def _coerce_value(t: Type, value: Any) -> Any:
    s = _strip(t)
    if isinstance(value, Object):
        if s.kind in (TypeKind.STRUCT, TypeKind.UNION, TypeKind.ARRAY):
            return value._bytes()
        value = value._num()
    if s.kind in (TypeKind.STRUCT, TypeKind.UNION, TypeKind.ARRAY):
        if not isinstance(value, (bytes, bytearray)):
            raise ObjectError(f"a {t.type_name()!r} value must be bytes")
        size = t.size
        if size is not None and len(value) < size:
            raise ObjectError(f"{len(value)} bytes is too short for {t.type_name()!r} "
                              f"({size} bytes)")
        return bytes(value)
    if s.kind == TypeKind.FLOAT:
        return float(value)
    if s.kind in (TypeKind.VOID, TypeKind.FUNCTION):
        raise ObjectError(f"{t.type_name()!r} cannot have a value")
    if isinstance(value, (bytes, bytearray)):
        return _decode_scalar(s, bytes(value))
    v = int(value)
    size = s.size or 8
    v &= (1 << (8 * size)) - 1
    if s.is_signed and v >= 1 << (8 * size - 1):
        v -= 1 << (8 * size)
    if s.kind == TypeKind.BOOL:
        v = int(bool(v))
    return v


def _encode_scalar(t: Type, v: Any) -> bytes:
    s = _strip(t)
    size = s.size or 8
    if s.kind == TypeKind.FLOAT:
        return _struct.pack("<f" if size == 4 else "<d", v)
    return (int(v) & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def _decode_scalar(t: Type, raw: bytes) -> int | float:
    k = t.kind
    if k == TypeKind.FLOAT:
        if len(raw) == 4:
            return _struct.unpack("<f", raw)[0]
        if len(raw) == 8:
            return _struct.unpack("<d", raw)[0]
        return _x87_extended(raw)
    if k == TypeKind.ENUM:
        return _int_from(raw, t.is_signed)
    if k == TypeKind.POINTER:
        return _int_from(raw, False)
    return _int_from(raw, t.is_signed)


def _x87_extended(raw: bytes) -> float:
    """An 80-bit x87 long double (stored in 16 bytes) as the nearest Python float."""
    mant = int.from_bytes(raw[:8], "little")
    se = int.from_bytes(raw[8:10], "little")
    sign = -1.0 if se & 0x8000 else 1.0
    exp = se & 0x7FFF
    if exp == 0 and mant == 0:
        return 0.0 * sign
    if exp == 0x7FFF:
        return sign * math.inf if (mant << 1) & ((1 << 64) - 1) == 0 else math.nan
    try:
        return sign * math.ldexp(mant, exp - 16383 - 63)
    except OverflowError:
        return sign * math.inf


def _bitfield(t: Type, raw: bytes, bit: int, nbits: int) -> int:
    v = (int.from_bytes(raw, "little") >> bit) & ((1 << nbits) - 1)
    if t.kind != TypeKind.BOOL and t.is_signed and v >= 1 << (nbits - 1):
        v -= 1 << nbits
    return v


def _value_from_bytes(prog: "Program", t: Type, raw: bytes) -> Object:
    s = _strip(t)
    if s.kind in (TypeKind.STRUCT, TypeKind.UNION, TypeKind.ARRAY):
        return Object(prog, t, raw)
    return Object(prog, t, _decode_scalar(s, raw))


def _to_python(t: Type, buf: bytes, depth: int, budget: list[int] | None = None) -> Any:
    if budget is None:
        budget = [VALUE_BUDGET]
    budget[0] -= 1
    if budget[0] < 0:
        raise ObjectError(f"{t.type_name()}: too many values (damaged type information?)")
    if depth > _MAX_FORMAT_DEPTH:
        raise ObjectError(f"{t.type_name()} nests too deep")
    s = _strip(t)
    k = s.kind
    if k in (TypeKind.STRUCT, TypeKind.UNION):
        out: dict[str, Any] = {}
        for m in s.members or []:
            mt = m.type
            byte, bit = divmod(m.bit_offset, 8)
            if m.bit_field_size is not None:
                nb = (bit + m.bit_field_size + 7) // 8
                v: Any = _bitfield(_strip(mt), buf[byte:byte + nb], bit, m.bit_field_size)
                if _strip(mt).kind == TypeKind.BOOL:
                    v = bool(v)
            else:
                size = mt.size
                if size is None:
                    v = []  # flexible array member: no elements in the object itself
                else:
                    v = _to_python(mt, buf[byte:byte + size], depth + 1, budget)
            if m.name is None and isinstance(v, dict):
                out.update(v)
            elif m.name is not None:
                out[m.name] = v
        return out
    if k == TypeKind.ARRAY:
        if s.length is None:
            return []
        esize = s.type.sizeof()
        if esize == 0:
            return []
        n = min(s.length, len(buf) // esize)
        return [_to_python(s.type, buf[i * esize:(i + 1) * esize], depth + 1, budget)
                for i in range(n)]
    if k == TypeKind.BOOL:
        return bool(_int_from(buf, False))
    return _decode_scalar(s, buf)


# -- printing ---------------------------------------------------------------------------------
_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
            "\t": "\\t", "\v": "\\v"}


def _decode_chars(data: bytes, utf8: bool) -> list[tuple[str | None, bytes]]:
    """gdb's view of target bytes: (character or None when not decodable, its bytes)."""
    out: list[tuple[str | None, bytes]] = []
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b < 0x80:
            out.append((chr(b), data[i:i + 1]))
            i += 1
            continue
        if utf8:
            size = 2 if 0xC2 <= b <= 0xDF else 3 if 0xE0 <= b <= 0xEF else \
                4 if 0xF0 <= b <= 0xF4 else 0
            if size and i + size <= n:
                try:
                    ch = data[i:i + size].decode("utf-8")
                except UnicodeDecodeError:
                    ch = None
                if ch is not None:
                    out.append((ch, data[i:i + size]))
                    i += size
                    continue
        out.append((None, data[i:i + 1]))
        i += 1
    return out


def _printable(ch: str) -> bool:
    return ch.isprintable() or unicodedata.category(ch) == "Zs"


def _gdb_char(ch: str | None, raw: bytes, quote: str, need_escape: bool) -> tuple[str, bool]:
    """One character as gdb's print_wchar spells it; returns (text, need_escape): after an
    octal escape a digit must be escaped too, or it would extend the escape."""
    if ch is not None and ch in _ESCAPES:
        return _ESCAPES[ch], False
    if ch is not None and _printable(ch) and not (need_escape and ch in "0123456789"):
        if ch == quote or ch == "\\":
            return "\\" + ch, False
        return ch, False
    return "".join(f"\\{x:03o}" for x in raw), True


def _char_escape(b: int, quote: str) -> str:
    """A single char value: 'A', '\\000', '\\n'."""
    b &= 0xFF
    return _gdb_char(chr(b) if b < 0x80 else None, bytes([b]), quote, False)[0]


def gdb_string(data: bytes, *, force_ellipses: bool = False, charset: str | None = None,
               print_max: int = PRINT_MAX) -> str:
    """A string literal as gdb prints it (generic_printstr): characters up to `print_max`,
    a run of one character always printed whole, '...' when the data was not all shown."""
    elems = _decode_chars(data, (charset or CHARSET).lower().replace("_", "-") == "utf-8")
    shown, pos, n = 0, 0, len(elems)
    while shown < print_max and pos < n:
        j = pos + 1
        while j < n and elems[j][1] == elems[pos][1]:
            j += 1
        shown += j - pos
        pos = j
    parts = ['"']
    need = False
    for ch, raw in elems[:pos]:
        text, need = _gdb_char(ch, raw, '"', need)
        parts.append(text)
    parts.append('"')
    if force_ellipses or pos < n:
        parts.append("...")
    return "".join(parts)


def c_string_literal(data: bytes) -> str:
    """gdb's spelling of a char array's bytes (a trailing NUL is not shown)."""
    if data.endswith(b"\0"):
        data = data[:-1]
    return gdb_string(data)


def _flag_enum(enumerators: list[tuple[str, int]]) -> bool:
    mask = 0
    seen: set[int] = set()
    for _, v in enumerators:
        if v < 0:
            return False
        if v in seen:
            continue
        if mask & v:
            return False
        mask |= v
        seen.add(v)
    return True


def format_enum(t: Type, v: int) -> str:
    """gdb's enum printing: the enumerator, a flag decomposition, or the number."""
    enums = _strip(t).enumerators or []
    for n, ev in enums:
        if ev == v:
            return n
    if _flag_enum(enums) and v >= 0:
        parts = []
        rest = v
        for n, ev in enums:
            if ev and (rest & ev) == ev:
                parts.append(n)
                rest &= ~ev
        if rest:
            parts.append(f"unknown: {rest:#x}")
        if not parts:
            return "0"
        return "(" + " | ".join(parts) + ")"
    return str(v)


class _Formatter:
    def __init__(self, prog: "Program", *, symbolize: bool, hex: bool) -> None:
        self.prog = prog
        self.hex = hex
        self.symbolizer = _symbolizer(prog) if symbolize else None
        self.budget = VALUE_BUDGET
        self.nesting = 0

    def object_value(self, o: Object, depth: int) -> str:
        t = _strip(o.type_)
        if t.kind in (TypeKind.STRUCT, TypeKind.UNION, TypeKind.ARRAY):
            return self.value(o.type_, o._bytes(), 0, 0, None, depth, o.address_)
        return self.scalar(o.type_, o._scalar())

    def value(self, t: Type, buf: bytes, byte: int, bit: int, nbits: int | None,
              depth: int, base: int | None = None) -> str:
        """Text of the value of type `t` at buf[byte:] (bit field: bits bit..bit+nbits);
        `base` is the address of buf[0] when known (for arrays of no length)."""
        if depth > _MAX_FORMAT_DEPTH:
            return "<nested too deep>"
        self.budget -= 1
        if self.budget < 0:
            raise ObjectError(f"{t.type_name()}: too much to print (damaged type information?)")
        s = _strip(t)
        k = s.kind
        if nbits is not None:
            nb = (bit + nbits + 7) // 8
            return self.scalar(t, _bitfield(s, buf[byte:byte + nb], bit, nbits))
        if k in (TypeKind.STRUCT, TypeKind.UNION):
            return self.compound(s, buf, byte, depth, base)
        if k == TypeKind.ARRAY:
            return self.array(s, buf, byte, depth, base)
        if k == TypeKind.FUNCTION:
            return "{<text variable, no debug info>}"
        size = s.size or 0
        raw = buf[byte:byte + size]
        if len(raw) < size:
            return "<unavailable>"
        return self.scalar(t, _decode_scalar(s, raw))

    def compound(self, s: Type, buf: bytes, byte: int, depth: int,
                 base: int | None = None) -> str:
        members = s.members
        if not members:
            return "{<No data fields>}" if members is not None else "<incomplete type>"
        if self.nesting >= PRINT_MAX_DEPTH:
            return "{...}"
        ind = "  " * (depth + 1)
        lines = []
        self.nesting += 1
        try:
            for m in members:
                b, bit = divmod(m.bit_offset, 8)
                text = self.value(m.type, buf, byte + b, bit, m.bit_field_size, depth + 1, base)
                lines.append(f"{ind}{m.name} = {text}" if m.name else f"{ind}{text}")
        finally:
            self.nesting -= 1
        return "{\n" + ",\n".join(lines) + "\n" + "  " * depth + "}"

    def array(self, s: Type, buf: bytes, byte: int, depth: int, base: int | None = None) -> str:
        et = s.type
        es = _strip(et)
        esize = et.size or 0
        n = s.length or 0
        if n == 0 or esize == 0:
            # gdb prints an array of no length like a pointer to its first element.
            if base is None:
                return "{}"
            ptr = Type(TypeKind.POINTER, size=self.prog.space.pointer_size, type=et)
            return self.pointer(ptr, base + byte)
        if es.kind == TypeKind.INT and esize == 1:
            # A char array is text in any radix (gdb's and crash's output radix 16 too).
            return c_string_literal(buf[byte:byte + n])
        shown = min(n, PRINT_MAX)
        parts = [self.value(et, buf, byte + i * esize, 0, None, depth + 1, base)
                 for i in range(shown)]
        return "{" + ", ".join(parts) + ("..." if shown < n else "") + "}"

    def scalar(self, t: Type, v: Any) -> str:
        s = _strip(t)
        k = s.kind
        if k == TypeKind.POINTER:
            return self.pointer(s, int(v))
        if k == TypeKind.BOOL:
            if self.hex:
                return f"{int(v):#x}"
            return "true" if v == 1 else "false" if v == 0 else str(int(v))
        if k == TypeKind.ENUM:
            return f"{int(v) & ((1 << 8 * (s.size or 4)) - 1):#x}" if self.hex else \
                format_enum(s, int(v))
        if k == TypeKind.FLOAT:
            return repr(float(v))
        v = int(v)
        if self.hex:
            return f"{v & ((1 << 8 * (s.size or 8)) - 1):#x}"
        if s.size == 1:
            return f"{v} '{_char_escape(v, chr(39))}'"
        return str(v)

    def pointer_text(self, addr: int, is_func: bool) -> str:
        text = f"{addr:#x}"
        if addr and self.symbolizer is not None:
            sym = self.symbolizer(addr)
            if sym:
                text += f" <{sym}>"
        return text

    def pointer(self, s: Type, addr: int) -> str:
        target = _strip(s.type)
        text = self.pointer_text(addr, target.kind == TypeKind.FUNCTION)
        if addr and _is_charlike(s.type) and not self.hex:
            return f"{text} {self.pointed_string(addr)}"
        return text

    def pointed_string(self, addr: int) -> str:
        """gdb's val_print_string: up to PRINT_MAX bytes until a NUL; '...' when the string
        goes on; what was read, then the error, when memory ends."""
        data = bytearray()
        pos = addr
        err: int | None = None
        page = 4096
        while len(data) < PRINT_MAX:
            n = min(PRINT_MAX - len(data), page - pos % page)
            try:
                chunk = self.prog.read(pos, n)
            except MemoryReadError:
                err = pos
                break
            k = chunk.find(b"\0")
            if k >= 0:
                data += chunk[:k + 1]
                break
            data += chunk
            pos += n
        found_nul = data.endswith(b"\0")
        force = False
        if not found_nul and err is None:
            try:
                force = self.prog.read(addr + len(data), 1) != b"\0"
            except MemoryReadError:
                force = False
        out = ""
        if data:
            body = bytes(data[:-1]) if found_nul else bytes(data)
            out = gdb_string(body, force_ellipses=force)
        if err is not None:
            msg = f"<error: Cannot access memory at address {addr + len(data):#x}>"
            out = f"{out}{msg}" if out else msg
        return out


def _symbolizer(prog: "Program") -> Callable[[int], str | None] | None:
    """addr -> 'name' or 'name+off' (decimal offset, as gdb prints it) from the program's
    symbol table; None when there is no symbol table."""
    try:
        syms = prog.symbols
    except (ImportError, VmcorekitError, AttributeError):
        return None
    lookup = getattr(syms, "lookup", None)
    if not callable(lookup):
        return None

    def symbolize(addr: int) -> str | None:
        try:
            s = lookup(addr)
        except (VmcorekitError, LookupError):
            return None
        if s is None:
            return None
        off = addr - s.address
        return s.name if off == 0 else f"{s.name}+{off}"
    return symbolize


# -- globals, casts, per-CPU ------------------------------------------------------------------
def _symbol_address(prog: "Program", name: str) -> int | None:
    """The one symbol precedence (program/symbol_order.py, as Program.try_symbol_address),
    with a symbol table that cannot be built read as "not known"."""
    try:
        return symbol_order.address_of(prog, name)
    except (ImportError, VmcorekitError, AttributeError, LookupError):
        return None


def _symbol_size(prog: "Program", name: str) -> int | None:
    """The symbol's size as the symbol table knows it (kallsyms: distance to the next)."""
    try:
        get = getattr(prog.symbols, "get", None)
        sym = get(name) if callable(get) else None
    except (ImportError, VmcorekitError, AttributeError, LookupError):
        return None
    size = getattr(sym, "size", None)
    return int(size) if size else None


def global_object(prog: "Program", name: str) -> Object:
    """The global variable (or function) `name` as a typed object: `prog[name]`."""
    addr = _symbol_address(prog, name)
    value = symbol_order.vmcoreinfo_value(prog, name)  # set only for value entries
    info = None
    try:
        info = prog.types.global_info(name, _symbol_size(prog, name))
    except TypeLookupError:
        if addr is None and value is None:
            enum = prog.types.enumerator(name)
            if enum is not None:  # an enum constant, as drgn's prog["PIDTYPE_PID"]
                return Object(prog, enum[0], enum[1])
            raise ObjectNotFoundError(f"could not find {name!r}") from None
        raise
    t = info.type
    if value is not None:
        # VMCOREINFO_SYMBOL_ARRAY: SYMBOL() is the pointer's value. If it equals the
        # variable's own address, the kernel has a static array, not a pointer.
        if addr is not None and addr == value and _strip(t).kind == TypeKind.POINTER:
            n = prog.vmcoreinfo.lengths.get(name)
            t = prog.types.array(prog.types.array(_strip(_strip(t).type).type, 1), n)
            return Object(prog, t, address=addr)
        if addr is None:
            return Object(prog, t, value)
    if addr is None and info.percpu_offset is not None:
        start = _symbol_address(prog, "__per_cpu_start")
        if start is None and prog.platform.percpu_zero_based:
            start = 0  # the per-CPU section is linked at address 0 (x86_64 SMP)
        if start is not None:
            addr = start + info.percpu_offset
    if addr is None:
        raise ObjectNotFoundError(f"could not find the address of {name!r} (no symbol table "
                                  f"entry and not in VMCOREINFO)")
    return Object(prog, t, address=addr)


def cast(type: "str | Type", obj: Object) -> Object:
    """(type)obj for scalars: the value converted."""
    t = obj.prog_.types.lookup(type)
    s = _strip(t)
    if s.kind in (TypeKind.STRUCT, TypeKind.UNION, TypeKind.ARRAY):
        raise ObjectError(f"cannot cast to {t.type_name()!r}; use reinterpret()")
    return Object(obj.prog_, t, obj._num())


def reinterpret(type: "str | Type", obj: Object) -> Object:
    """The same memory seen as another type."""
    t = obj.prog_.types.lookup(type)
    if obj.address_ is not None:
        return Object(obj.prog_, t, address=obj.address_)
    return _value_from_bytes(obj.prog_, t, obj._bytes())


def NULL(prog: "Program", type: "str | Type") -> Object:
    return Object(prog, type, 0)


def sizeof(obj: "Object | Type") -> int:
    return obj.type_.sizeof() if isinstance(obj, Object) else obj.sizeof()


__all__ = ["Object", "ObjectError", "MemberNotFoundError", "ObjectNotFoundError", "cast",
           "reinterpret", "NULL", "sizeof", "global_object",
           "format_enum", "c_string_literal", "gdb_string", "Qualifiers"]
