"""A small BTF blob builder for synthetic tests (include/uapi/linux/btf.h layout).

    b = BtfBuilder()
    u32 = b.int("unsigned int", 4)
    s = b.struct("foo", 8, [("a", u32, 0), ("b", u32, 32)])
    blob = b.build()

Type ids are handed out in call order starting at 1 (or at the base's next id for split BTF);
`forward()` reserves an id for self-referential types and `fill()` supplies it later.
"""
from __future__ import annotations

import struct

KIND = {"int": 1, "ptr": 2, "array": 3, "struct": 4, "union": 5, "enum": 6, "fwd": 7,
        "typedef": 8, "volatile": 9, "const": 10, "restrict": 11, "func": 12, "func_proto": 13,
        "var": 14, "datasec": 15, "float": 16, "decl_tag": 17, "type_tag": 18, "enum64": 19}
INT_SIGNED, INT_CHAR, INT_BOOL = 1, 2, 4


def info(kind: str | int, vlen: int = 0, kflag: bool = False) -> int:
    k = KIND[kind] if isinstance(kind, str) else kind
    return (int(kflag) << 31) | (k << 24) | (vlen & 0xFFFF)


class BtfBuilder:
    def __init__(self, *, start_id: int = 1, base_str_len: int = 0, endian: str = "<") -> None:
        self.endian = endian
        self.start_id = start_id
        self.base_str_len = base_str_len
        # A split blob's strings continue the base's; its own table needs no leading NUL but
        # gets one anyway so offset base_str_len is the empty string.
        self.strings = bytearray(b"\0")
        self._str_index: dict[str, int] = {"": 0}
        self.records: list[bytes | None] = []

    # -- plumbing -----------------------------------------------------------------------------
    def s(self, text: str) -> int:
        if text not in self._str_index:
            self._str_index[text] = len(self.strings)
            self.strings += text.encode() + b"\0"
        return self.base_str_len + self._str_index[text]

    def u32(self, *vals: int) -> bytes:
        return struct.pack(f"{self.endian}{len(vals)}I", *[v & 0xFFFFFFFF for v in vals])

    def add(self, record: bytes) -> int:
        self.records.append(record)
        return self.start_id + len(self.records) - 1

    def forward(self) -> int:
        """Reserve an id to be filled later (for self-referencing types)."""
        self.records.append(None)
        return self.start_id + len(self.records) - 1

    def fill(self, tid: int, record: bytes) -> int:
        self.records[tid - self.start_id] = record
        return tid

    def head(self, name: str, kind: str | int, vlen: int = 0, kflag: bool = False,
             size_type: int = 0) -> bytes:
        return self.u32(self.s(name), info(kind, vlen, kflag), size_type)

    # -- kinds (each returns the new type id; `*_rec` variants return the raw record) ---------
    def int(self, name: str, size: int, signed: bool = False, *, char: bool = False,
            bool_: bool = False, bits: int | None = None, offset: int = 0) -> int:
        enc = (INT_SIGNED if signed else 0) | (INT_CHAR if char else 0) | (INT_BOOL if bool_ else 0)
        return self.add(self.head(name, "int", size_type=size)
                        + self.u32((enc << 24) | (offset << 16) | (bits if bits is not None else size * 8)))

    def ptr(self, target: int) -> int:
        return self.add(self.head("", "ptr", size_type=target))

    def array(self, elem: int, nelems: int, index_type: int = 0) -> int:
        return self.add(self.head("", "array") + self.u32(elem, index_type, nelems))

    def compound_rec(self, kind: str, name: str, size: int,
                     members: list[tuple[str, int, int] | tuple[str, int, int, int]],
                     kflag: bool | None = None) -> bytes:
        has_bf = any(len(m) == 4 and m[3] for m in members)
        kf = has_bf if kflag is None else kflag
        body = b""
        for m in members:
            name_, t, bit_off = m[0], m[1], m[2]
            bf = m[3] if len(m) == 4 else 0
            off = (bf << 24) | bit_off if kf else bit_off
            body += self.u32(self.s(name_), t, off)
        return self.head(name, kind, len(members), kf, size) + body

    def struct(self, name: str, size: int, members: list, kflag: bool | None = None) -> int:
        return self.add(self.compound_rec("struct", name, size, members, kflag))

    def union(self, name: str, size: int, members: list, kflag: bool | None = None) -> int:
        return self.add(self.compound_rec("union", name, size, members, kflag))

    def enum(self, name: str, size: int, values: list[tuple[str, int]],
             signed: bool = False) -> int:
        body = b"".join(self.u32(self.s(n), v) for n, v in values)
        return self.add(self.head(name, "enum", len(values), signed, size) + body)

    def enum64(self, name: str, size: int, values: list[tuple[str, int]],
               signed: bool = False) -> int:
        body = b"".join(self.u32(self.s(n), v & 0xFFFFFFFF, (v >> 32) & 0xFFFFFFFF)
                        for n, v in values)
        return self.add(self.head(name, "enum64", len(values), signed, size) + body)

    def fwd(self, name: str, union: bool = False) -> int:
        return self.add(self.head(name, "fwd", kflag=union))

    def typedef(self, name: str, target: int) -> int:
        return self.add(self.head(name, "typedef", size_type=target))

    def qual(self, kind: str, target: int) -> int:
        return self.add(self.head("", kind, size_type=target))

    def type_tag(self, name: str, target: int) -> int:
        return self.add(self.head(name, "type_tag", size_type=target))

    def func_proto(self, ret: int, params: list[tuple[str, int]]) -> int:
        body = b"".join(self.u32(self.s(n), t) for n, t in params)
        return self.add(self.head("", "func_proto", len(params), size_type=ret) + body)

    def func(self, name: str, proto: int, linkage: int = 1) -> int:
        return self.add(self.head(name, "func", linkage, size_type=proto))

    def var(self, name: str, t: int, linkage: int = 1) -> int:
        return self.add(self.head(name, "var", size_type=t) + self.u32(linkage))

    def datasec(self, name: str, size: int, entries: list[tuple[int, int, int]]) -> int:
        body = b"".join(self.u32(t, off, sz) for t, off, sz in entries)
        return self.add(self.head(name, "datasec", len(entries), size_type=size) + body)

    def float(self, name: str, size: int) -> int:
        return self.add(self.head(name, "float", size_type=size))

    def decl_tag(self, name: str, target: int, component_idx: int = -1) -> int:
        return self.add(self.head(name, "decl_tag", size_type=target) + self.u32(component_idx))

    # -- output -------------------------------------------------------------------------------
    def build(self, *, hdr_extra: bytes = b"") -> bytes:
        if any(r is None for r in self.records):
            raise ValueError("a forward() id was never fill()ed")
        types = b"".join(r for r in self.records if r is not None)
        hdr_len = 24 + len(hdr_extra)
        magic = struct.pack(f"{self.endian}HBB", 0xEB9F, 1, 0)
        hdr = magic + struct.pack(f"{self.endian}IIIII", hdr_len, 0, len(types), len(types),
                                  len(self.strings)) + hdr_extra
        return hdr + types + bytes(self.strings)

    @property
    def next_id(self) -> int:
        return self.start_id + len(self.records)
