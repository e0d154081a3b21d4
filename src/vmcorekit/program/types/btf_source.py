"""BTF records -> model Types, decoded one id at a time and cached."""
from __future__ import annotations

from collections.abc import Callable

from ...errors import BtfFormatError
from .btf import BTF_INT_BOOL, BTF_INT_SIGNED, Btf, BtfKind, BtfType
from .cdecl import canonical_int_name
from .model import Member, Parameter, Qualifiers, Type, TypeKind

_QUAL = {BtfKind.CONST: Qualifiers.CONST, BtfKind.VOLATILE: Qualifiers.VOLATILE,
         BtfKind.RESTRICT: Qualifiers.RESTRICT}
_MODIFIERS = (BtfKind.CONST, BtfKind.VOLATILE, BtfKind.RESTRICT, BtfKind.TYPE_TAG)
_MAX_MODIFIER_CHAIN = 64


class BtfTypeSource:
    """Answers the registry's questions from one BTF blob (vmlinux or a module's split BTF)."""

    def __init__(self, btf: Btf, pointer_size: int, *, percpu_section: str = ".data..percpu",
                 int_type: Callable[[int, bool], Type] | None = None,
                 base_source: "BtfTypeSource | None" = None) -> None:
        self.btf = btf
        self.base_source = base_source
        self.name = f"btf:{btf.name}"
        self.pointer_size = pointer_size
        self._types: dict[int, Type] = {}
        self._canonical: dict[str, Type] | None = None
        self._percpu_section = percpu_section
        self._percpu: dict[int, int] | None = None  # VAR id -> offset in the per-CPU section
        self._int_type = int_type

    # -- decoding -----------------------------------------------------------------------------
    def type(self, tid: int) -> Type:
        if self.base_source is not None and tid < self.btf.start_id:
            return self.base_source.type(tid)
        t = self._types.get(tid)
        if t is None:
            t = self._convert(tid, 0)
            self._types[tid] = t
        return t

    def _thunk(self, tid: int) -> Callable[[], Type]:
        return lambda: self.type(tid)

    def _convert(self, tid: int, depth: int) -> Type:
        if depth > _MAX_MODIFIER_CHAIN:
            raise BtfFormatError(f"BTF {self.btf.name}: qualifier chain at type {tid} loops")
        if tid == 0:
            return Type(TypeKind.VOID, origin=f"{self.name}#0")
        if self.base_source is not None and tid < self.btf.start_id:
            return self.base_source.type(tid)
        bt = self.btf.type(tid)
        K = BtfKind
        k = bt.kind
        origin = f"{self.name}#{tid}"
        if k in _MODIFIERS:
            # Qualifiers become attributes of the type they qualify; type tags (__user,
            # __rcu) are annotations with no effect on layout.
            inner = self._types.get(bt.type) or self._convert(bt.type, depth + 1)
            if k == K.TYPE_TAG:
                return inner
            return inner.qualified(inner.qualifiers | _QUAL[k])
        if k == K.INT:
            if bt.int_encoding & BTF_INT_BOOL:
                return Type(TypeKind.BOOL, name="_Bool", size=bt.size, origin=origin)
            try:
                name = canonical_int_name(bt.name.split())
            except Exception:
                name = bt.name
            return Type(TypeKind.INT, name=name, size=bt.size,
                        is_signed=bool(bt.int_encoding & BTF_INT_SIGNED), origin=origin)
        if k == K.FLOAT:
            return Type(TypeKind.FLOAT, name=bt.name, size=bt.size, origin=origin)
        if k == K.PTR:
            return Type(TypeKind.POINTER, size=self.pointer_size, type=self._thunk(bt.type),
                        origin=origin)
        if k == K.ARRAY:
            return Type(TypeKind.ARRAY, type=self._thunk(bt.type), length=bt.nelems, origin=origin)
        if k in (K.STRUCT, K.UNION):
            return Type(TypeKind.STRUCT if k == K.STRUCT else TypeKind.UNION, tag=bt.name or None,
                        size=bt.size, members=self._members_thunk(bt), origin=origin)
        if k == K.FWD:
            return Type(TypeKind.UNION if bt.kind_flag else TypeKind.STRUCT, tag=bt.name or None,
                        origin=origin)
        if k in (K.ENUM, K.ENUM64):
            signed = bt.kind_flag or any(v < 0 for _, v in bt.enumerators)
            compat = self._compatible_int(bt.size, signed)
            return Type(TypeKind.ENUM, tag=bt.name or None, size=bt.size, type=compat,
                        is_signed=signed, enumerators=list(bt.enumerators), origin=origin)
        if k == K.TYPEDEF:
            return Type(TypeKind.TYPEDEF, name=bt.name, type=self._thunk(bt.type), origin=origin)
        if k == K.FUNC_PROTO:
            params = list(bt.params)
            variadic = bool(params) and params[-1].type == 0 and not params[-1].name
            if variadic:
                params = params[:-1]
            return Type(TypeKind.FUNCTION, type=self._thunk(bt.type),
                        parameters=[Parameter(p.name, self._thunk(p.type)) for p in params],
                        is_variadic=variadic, origin=origin)
        if k == K.FUNC:
            return self._types.get(bt.type) or self._convert(bt.type, depth + 1)
        raise BtfFormatError(f"BTF {self.btf.name}: type id {tid} is a {k.name}, not a type")

    def _compatible_int(self, size: int, signed: bool) -> Type:
        if self._int_type is not None:
            return self._int_type(size, signed)
        names = {1: "char", 2: "short", 4: "int", 8: "long", 16: "__int128"}
        n = names.get(size, "long")
        return Type(TypeKind.INT, name=n if signed else f"unsigned {n}", size=size,
                    is_signed=signed)

    def _members_thunk(self, bt: BtfType) -> Callable[[], list[Member]]:
        def members() -> list[Member]:
            out = []
            for m in bt.members:
                bit_off, bf = m.bit_offset, m.bitfield_size or None
                if not bt.kind_flag and bf is None:
                    # Old encoding: a bit field's width lives in its INT type.
                    inner = self._strip_to_int(m.type)
                    if inner is not None and (inner.int_bits != inner.size * 8
                                              or inner.int_offset):
                        bit_off += inner.int_offset
                        bf = inner.int_bits
                out.append(Member(m.name or None, self._thunk(m.type), bit_off, bf))
            return out
        return members

    def _strip_to_int(self, tid: int) -> BtfType | None:
        for _ in range(_MAX_MODIFIER_CHAIN):
            if tid == 0:
                return None
            bt = self.btf.type(tid)
            if bt.kind == BtfKind.INT:
                return bt
            if bt.kind not in _MODIFIERS and bt.kind != BtfKind.TYPEDEF:
                return None
            tid = bt.type
        return None

    # -- registry questions -------------------------------------------------------------------
    def tagged(self, kind: TypeKind, tag: str) -> Type | None:
        K = BtfKind
        kinds = {TypeKind.STRUCT: (K.STRUCT,), TypeKind.UNION: (K.UNION,),
                 TypeKind.ENUM: (K.ENUM, K.ENUM64)}[kind]
        own = self.base_source is None
        ids = self.btf.find(tag, kinds, include_base=own)
        if ids:
            # Prefer a complete definition with members over an empty one.
            for tid in ids:
                bt = self.btf.type(tid)
                if bt.vlen:
                    return self.type(tid)
            return self.type(ids[0])
        if kind in (TypeKind.STRUCT, TypeKind.UNION):
            for tid in self.btf.find(tag, (K.FWD,), include_base=own):
                if self.btf.type(tid).kind_flag == (kind == TypeKind.UNION):
                    return self.type(tid)
        return None

    def named(self, name: str) -> Type | None:
        ids = self.btf.find(name, (BtfKind.TYPEDEF,), include_base=self.base_source is None)
        if ids:
            return self.type(ids[0])
        return self.canonical().get(name)

    def canonical(self) -> dict[str, Type]:
        """This blob's INT and FLOAT types under their canonical C names."""
        if self._canonical is None:
            out: dict[str, Type] = {}
            for kind in (BtfKind.INT, BtfKind.FLOAT):
                for tid in self.btf.ids_of_kind(kind):
                    t = self.type(tid)
                    if t.name and t.name not in out:
                        out[t.name] = t
            self._canonical = out
        return self._canonical

    def constant(self, name: str) -> int | None:
        found = self.btf.find_enumerator(name)
        return found[0][1] if found else None

    def enum_of_constant(self, name: str) -> Type | None:
        found = self.btf.find_enumerator(name)
        return self.type(found[0][0]) if found else None

    def variable(self, name: str) -> tuple[Type, int | None] | None:
        """(type, offset in the per-CPU section or None) of a BTF VAR."""
        ids = self.btf.find(name, (BtfKind.VAR,), include_base=False)
        if not ids:
            return None
        vid = ids[0]
        # A module's per-CPU section lives wherever the module's per-CPU area is; only
        # vmlinux's offsets are relative to __per_cpu_start.
        pcpu = self._percpu_offsets().get(vid) if self.base_source is None else None
        return self.type(self.btf.type(vid).type), pcpu

    def _percpu_offsets(self) -> dict[int, int]:
        if self._percpu is None:
            out: dict[int, int] = {}
            for sid in self.btf.ids_of_kind(BtfKind.DATASEC):
                sec = self.btf.type(sid)
                if sec.name == self._percpu_section:
                    for si in sec.secinfo:
                        out[si.type] = si.offset
            self._percpu = out
        return self._percpu

    def variables(self) -> list[str]:
        return [self.btf.type(v).name for v in self.btf.ids_of_kind(BtfKind.VAR)]

    def function(self, name: str) -> Type | None:
        ids = self.btf.find(name, (BtfKind.FUNC,), include_base=False)
        return self.type(ids[0]) if ids else None
