"""BTF (BPF Type Format) reader: the kernel's own compact type information.

A kernel built with CONFIG_DEBUG_INFO_BTF keeps its BTF in memory between `__start_BTF` and
`__stop_BTF` (the vmlinux `.BTF` section); modules carry split BTF that continues the vmlinux
type ids and string offsets. Layout (include/uapi/linux/btf.h):

    header  { u16 magic=0xeB9F; u8 version=1; u8 flags; u32 hdr_len;
              u32 type_off, type_len, str_off, str_len }   (offsets relative to hdr end)
    types   a stream of 12-byte `btf_type` records {name_off, info, size|type}, each followed
            by kind-specific data whose length depends on kind and vlen (info bits 0-15)
    strings NUL-terminated names; offset 0 is the empty string

A distro kernel has ~80-130k types in ~5 MB, so this reader is lazy: one tight pass records
where each type starts (the stream cannot be indexed any other way), and a type is decoded
only when asked for. Name lookups search the string table for the name and match its offset
against the `name_off` column (numpy), so no name dictionary of every type is ever built.
Every bound is checked against the blob: a damaged or hostile blob raises BtfFormatError.
"""
from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from ...errors import BtfFormatError

BTF_MAGIC = 0xEB9F
BTF_MAX_TYPE = 0xFFFFF        # kernel limit on type ids
BTF_MAX_NAME_OFFSET = 0xFFFFFF
BTF_HEADER_SIZE = 24
# A blob bigger than this is not BTF: the largest kernels have ~10 MB.
BTF_MAX_SIZE = 256 << 20


class BtfKind(IntEnum):
    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


# Words (u32) that follow the 12-byte header: >= 0 a fixed count, < 0 that many per vlen item.
_EXTRA_WORDS: list[int | None] = [None] * 32
for _k, _w in {BtfKind.INT: 1, BtfKind.PTR: 0, BtfKind.ARRAY: 3, BtfKind.STRUCT: -3,
               BtfKind.UNION: -3, BtfKind.ENUM: -2, BtfKind.FWD: 0, BtfKind.TYPEDEF: 0,
               BtfKind.VOLATILE: 0, BtfKind.CONST: 0, BtfKind.RESTRICT: 0, BtfKind.FUNC: 0,
               BtfKind.FUNC_PROTO: -2, BtfKind.VAR: 1, BtfKind.DATASEC: -3, BtfKind.FLOAT: 0,
               BtfKind.DECL_TAG: 1, BtfKind.TYPE_TAG: 0, BtfKind.ENUM64: -3}.items():
    _EXTRA_WORDS[_k] = _w

# INT encoding bits
BTF_INT_SIGNED = 1
BTF_INT_CHAR = 2
BTF_INT_BOOL = 4

# VAR / FUNC linkage
BTF_VAR_STATIC = 0
BTF_VAR_GLOBAL_ALLOCATED = 1
BTF_VAR_GLOBAL_EXTERN = 2


@dataclass(frozen=True, slots=True)
class BtfMember:
    name: str
    type: int
    bit_offset: int
    bitfield_size: int  # 0: not a bitfield (or, without kind_flag, encoded in an INT type)


@dataclass(frozen=True, slots=True)
class BtfParam:
    name: str
    type: int


@dataclass(frozen=True, slots=True)
class BtfVarSecinfo:
    type: int
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class BtfType:
    """One decoded record. Only the fields of its kind are meaningful."""

    id: int
    kind: BtfKind
    name: str
    vlen: int
    kind_flag: bool
    size: int = 0                 # INT STRUCT UNION ENUM ENUM64 DATASEC FLOAT
    type: int = 0                 # PTR TYPEDEF VOLATILE CONST RESTRICT FUNC FUNC_PROTO(ret) VAR
    #                               DECL_TAG TYPE_TAG; ARRAY element type
    int_encoding: int = 0
    int_offset: int = 0
    int_bits: int = 0
    index_type: int = 0           # ARRAY
    nelems: int = 0               # ARRAY
    members: tuple[BtfMember, ...] = ()
    enumerators: tuple[tuple[str, int], ...] = ()
    params: tuple[BtfParam, ...] = ()
    linkage: int = 0              # VAR, FUNC (FUNC keeps it in vlen)
    secinfo: tuple[BtfVarSecinfo, ...] = ()
    component_idx: int = -1       # DECL_TAG

    @property
    def is_signed_enum(self) -> bool:
        return self.kind_flag


class Btf:
    """One BTF blob: the vmlinux's, or a module's split BTF on top of a base.

    Type ids of a split blob continue the base's (`start_id = base.type_count`); ids below
    `start_id` and string offsets below `base.str_len` belong to the base. `type(id)` answers
    for either.
    """

    def __init__(self, data: bytes, base: "Btf | None" = None, name: str = "vmlinux") -> None:
        self.name = name
        self.base = base
        if len(data) > BTF_MAX_SIZE:
            raise BtfFormatError(f"BTF {name}: {len(data)} bytes is larger than any real BTF")
        if len(data) < BTF_HEADER_SIZE:
            raise BtfFormatError(f"BTF {name}: {len(data)} bytes is too short for a header")
        if data[:2] == b"\x9f\xeb":
            self.byteorder = "<"
        elif data[:2] == b"\xeb\x9f":
            self.byteorder = ">"
        else:
            raise BtfFormatError(f"BTF {name}: bad magic {data[:2].hex()} (expected 0xeb9f)")
        bo = self.byteorder
        _magic, version, flags, hdr_len = struct.unpack_from(bo + "HBBI", data, 0)
        if version != 1:
            raise BtfFormatError(f"BTF {name}: unsupported version {version}")
        if hdr_len < BTF_HEADER_SIZE or hdr_len > len(data):
            raise BtfFormatError(f"BTF {name}: header length {hdr_len} out of range")
        type_off, type_len, str_off, str_len = struct.unpack_from(bo + "IIII", data, 8)
        body = len(data) - hdr_len
        if type_off % 4 or type_len % 4:
            raise BtfFormatError(f"BTF {name}: type section not 4-byte aligned")
        if type_off + type_len > body or str_off + str_len > body:
            raise BtfFormatError(f"BTF {name}: sections exceed the blob "
                                 f"(types {type_off}+{type_len}, strings {str_off}+{str_len}, "
                                 f"body {body})")
        if type_off < str_off < type_off + type_len or str_off < type_off < str_off + str_len:
            raise BtfFormatError(f"BTF {name}: type and string sections overlap")
        if str_len > BTF_MAX_NAME_OFFSET + 1:
            raise BtfFormatError(f"BTF {name}: string section of {str_len} bytes is too large")
        self.flags = flags
        self._strings = bytes(data[hdr_len + str_off:hdr_len + str_off + str_len])
        if base is None:
            if not self._strings or self._strings[0] != 0:
                raise BtfFormatError(f"BTF {name}: string section must start with NUL")
        if self._strings and self._strings[-1] != 0:
            raise BtfFormatError(f"BTF {name}: string section is not NUL-terminated")
        tsec = bytes(data[hdr_len + type_off:hdr_len + type_off + type_len])
        if bo != ("<" if sys.byteorder == "little" else ">"):
            tsec = np.frombuffer(tsec, dtype=bo + "u4").astype("=u4").tobytes()
        self._words = memoryview(tsec).cast("I")
        self._str_base = base.str_len if base is not None else 0
        self.start_id = base.type_count if base is not None else 1
        self._offsets = self._index()
        arr = np.frombuffer(tsec, dtype=np.uint32)
        self._name_offs = arr[self._offsets] if len(self._offsets) else np.zeros(0, np.uint32)
        infos = arr[self._offsets + 1] if len(self._offsets) else np.zeros(0, np.uint32)
        self._kinds = ((infos >> 24) & 0x1F).astype(np.uint8)
        self._cache: dict[int, BtfType] = {}
        self._name_cache: dict[str, np.ndarray] = {}
        self._enum_table: tuple[np.ndarray, np.ndarray] | None = None

    # -- index --------------------------------------------------------------------------------
    def _index(self) -> np.ndarray:
        """Word offset of every type record: one pass, bounds-checked as it goes."""
        u = self._words
        n = len(u)
        extra = _EXTRA_WORDS
        offs: list[int] = []
        ap = offs.append
        pos = 0
        limit = BTF_MAX_TYPE - self.start_id + 1
        while pos < n:
            if pos + 3 > n:
                raise BtfFormatError(f"BTF {self.name}: truncated type record at byte {pos * 4}")
            info = u[pos + 1]
            e = extra[(info >> 24) & 0x1F]
            if e is None:
                raise BtfFormatError(f"BTF {self.name}: unknown kind {(info >> 24) & 0x1F} "
                                     f"at byte {pos * 4} (type id {self.start_id + len(offs)})")
            ap(pos)
            pos += 3 + (e if e >= 0 else -e * (info & 0xFFFF))
            if len(offs) > limit:
                raise BtfFormatError(f"BTF {self.name}: more than {BTF_MAX_TYPE} types")
        if pos != n:
            raise BtfFormatError(f"BTF {self.name}: last type record runs past the type section")
        return np.array(offs, dtype=np.int64)

    # -- facts --------------------------------------------------------------------------------
    @property
    def type_count(self) -> int:
        """Ids in use including the base's and void (id 0): the next blob's start_id."""
        return self.start_id + len(self._offsets)

    @property
    def str_len(self) -> int:
        return self._str_base + len(self._strings)

    def __len__(self) -> int:
        return len(self._offsets)

    def ids(self) -> range:
        """Type ids defined by this blob (not its base)."""
        return range(self.start_id, self.type_count)

    def string(self, off: int) -> str:
        if off < self._str_base:
            assert self.base is not None
            return self.base.string(off)
        rel = off - self._str_base
        s = self._strings
        if rel >= len(s):
            raise BtfFormatError(f"BTF {self.name}: string offset {off} out of range")
        end = s.find(b"\0", rel)
        return s[rel:end].decode("utf-8", "replace")

    def kind_of(self, tid: int) -> BtfKind:
        if tid < self.start_id:
            if self.base is None:
                if tid == 0:
                    return BtfKind.UNKN
                raise BtfFormatError(f"BTF {self.name}: type id {tid} out of range")
            return self.base.kind_of(tid)
        i = tid - self.start_id
        if i >= len(self._offsets):
            raise BtfFormatError(f"BTF {self.name}: type id {tid} out of range "
                                 f"(last is {self.type_count - 1})")
        return BtfKind(int(self._kinds[i]))

    # -- decoding -----------------------------------------------------------------------------
    def type(self, tid: int) -> BtfType:
        """The decoded record of type `tid` (0 is void, decoded as UNKN)."""
        if tid < self.start_id:
            if self.base is not None:
                return self.base.type(tid)
            if tid == 0:
                return _VOID
            raise BtfFormatError(f"BTF {self.name}: type id {tid} out of range")
        t = self._cache.get(tid)
        if t is None:
            t = self._decode(tid)
            self._cache[tid] = t
        return t

    def _check_id(self, tid: int, where: int) -> int:
        if tid >= self.type_count:
            raise BtfFormatError(f"BTF {self.name}: type {where} refers to type id {tid}, "
                                 f"beyond the last ({self.type_count - 1})")
        return tid

    def _decode(self, tid: int) -> BtfType:
        i = tid - self.start_id
        if i < 0 or i >= len(self._offsets):
            raise BtfFormatError(f"BTF {self.name}: type id {tid} out of range")
        u = self._words
        p = int(self._offsets[i])
        name_off, info, size_type = u[p], u[p + 1], u[p + 2]
        kind = BtfKind((info >> 24) & 0x1F)
        vlen = info & 0xFFFF
        kflag = bool(info >> 31)
        name = self.string(name_off)
        d = p + 3
        K = BtfKind
        if kind == K.INT:
            v = u[d]
            return BtfType(tid, kind, name, vlen, kflag, size=size_type,
                           int_encoding=(v >> 24) & 0x0F, int_offset=(v >> 16) & 0xFF,
                           int_bits=v & 0xFF)
        if kind in (K.PTR, K.TYPEDEF, K.VOLATILE, K.CONST, K.RESTRICT, K.TYPE_TAG, K.FUNC):
            return BtfType(tid, kind, name, vlen, kflag, type=self._check_id(size_type, tid),
                           linkage=vlen if kind == K.FUNC else 0)
        if kind == K.ARRAY:
            return BtfType(tid, kind, name, vlen, kflag, type=self._check_id(u[d], tid),
                           index_type=self._check_id(u[d + 1], tid), nelems=u[d + 2])
        if kind in (K.STRUCT, K.UNION):
            members = []
            for j in range(vlen):
                q = d + 3 * j
                off = u[q + 2]
                if kflag:
                    members.append(BtfMember(self.string(u[q]), self._check_id(u[q + 1], tid),
                                             off & 0xFFFFFF, off >> 24))
                else:
                    members.append(BtfMember(self.string(u[q]), self._check_id(u[q + 1], tid),
                                             off, 0))
            return BtfType(tid, kind, name, vlen, kflag, size=size_type, members=tuple(members))
        if kind == K.ENUM:
            enums = []
            for j in range(vlen):
                q = d + 2 * j
                v = u[q + 1]
                if kflag and v >= 1 << 31:
                    v -= 1 << 32
                enums.append((self.string(u[q]), v))
            return BtfType(tid, kind, name, vlen, kflag, size=size_type, enumerators=tuple(enums))
        if kind == K.ENUM64:
            enums = []
            for j in range(vlen):
                q = d + 3 * j
                v = u[q + 1] | (u[q + 2] << 32)
                if kflag and v >= 1 << 63:
                    v -= 1 << 64
                enums.append((self.string(u[q]), v))
            return BtfType(tid, kind, name, vlen, kflag, size=size_type, enumerators=tuple(enums))
        if kind == K.FUNC_PROTO:
            params = tuple(BtfParam(self.string(u[d + 2 * j]), self._check_id(u[d + 2 * j + 1], tid))
                           for j in range(vlen))
            return BtfType(tid, kind, name, vlen, kflag, type=self._check_id(size_type, tid),
                           params=params)
        if kind == K.VAR:
            return BtfType(tid, kind, name, vlen, kflag, type=self._check_id(size_type, tid),
                           linkage=u[d])
        if kind == K.DATASEC:
            sec = tuple(BtfVarSecinfo(self._check_id(u[d + 3 * j], tid), u[d + 3 * j + 1],
                                      u[d + 3 * j + 2]) for j in range(vlen))
            return BtfType(tid, kind, name, vlen, kflag, size=size_type, secinfo=sec)
        if kind == K.FLOAT:
            return BtfType(tid, kind, name, vlen, kflag, size=size_type)
        if kind == K.DECL_TAG:
            ci = u[d]
            return BtfType(tid, kind, name, vlen, kflag, type=self._check_id(size_type, tid),
                           component_idx=ci - (1 << 32) if ci >= 1 << 31 else ci)
        if kind == K.FWD:
            return BtfType(tid, kind, name, vlen, kflag)
        raise BtfFormatError(f"BTF {self.name}: type {tid} has unsupported kind {kind}")

    # -- lookup by name -----------------------------------------------------------------------
    def _string_offsets(self, name: str) -> list[int]:
        """Every offset (in this blob's numbering) where `name` is a whole string."""
        s = self._strings
        pat = name.encode("utf-8")
        out = []
        if not pat:
            return out
        needle = b"\0" + pat + b"\0"
        # A split blob's first string need not follow a NUL.
        if s.startswith(pat + b"\0"):
            out.append(self._str_base)
        i = s.find(needle)
        while i >= 0:
            out.append(self._str_base + i + 1)
            i = s.find(needle, i + 1)
        return out

    def find(self, name: str, kinds: tuple[BtfKind, ...] | None = None,
             include_base: bool = True) -> list[int]:
        """Type ids named `name` (optionally of the given kinds), base blob's first."""
        ids = self._name_cache.get(name)
        if ids is None:
            offs = self._string_offsets(name)
            if self.base is not None:
                offs += self.base._string_offsets(name)
            if offs:
                ids = np.flatnonzero(np.isin(self._name_offs, np.array(offs, dtype=np.uint32)))
            else:
                ids = np.zeros(0, dtype=np.int64)
            self._name_cache[name] = ids
        if kinds is not None and len(ids):
            kk = np.array([int(k) for k in kinds], dtype=np.uint8)
            ids = ids[np.isin(self._kinds[ids], kk)]
        own = [self.start_id + int(i) for i in ids]
        if include_base and self.base is not None:
            return self.base.find(name, kinds) + own
        return own

    def ids_of_kind(self, kind: BtfKind) -> list[int]:
        """Ids of this blob's types of one kind (e.g. every DATASEC)."""
        return [self.start_id + int(i) for i in np.flatnonzero(self._kinds == int(kind))]

    def names_of_kinds(self, kinds: tuple[BtfKind, ...]) -> list[str]:
        """The distinct names of this blob's types of these kinds (e.g. every struct's tag,
        for completion), sorted; anonymous types have none."""
        kk = np.array([int(k) for k in kinds], dtype=np.uint8)
        offs = np.unique(self._name_offs[np.flatnonzero(np.isin(self._kinds, kk))])
        return sorted({self.string(int(o)) for o in offs if o} - {""})

    def _enumerator_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(name_off, type id) of every enumerator of this blob's ENUM/ENUM64 types, built
        once with numpy: the word positions follow from each record's offset and vlen."""
        if self._enum_table is None:
            arr = np.frombuffer(self._words, dtype=np.uint32)
            names: list[np.ndarray] = []
            tids: list[np.ndarray] = []
            for kind, stride in ((BtfKind.ENUM, 2), (BtfKind.ENUM64, 3)):
                idx = np.flatnonzero(self._kinds == int(kind))
                if not len(idx):
                    continue
                starts = self._offsets[idx] + 3
                vlens = (arr[self._offsets[idx] + 1] & 0xFFFF).astype(np.int64)
                total = int(vlens.sum())
                first = np.repeat(np.cumsum(vlens) - vlens, vlens)
                within = np.arange(total, dtype=np.int64) - first
                pos = np.repeat(starts, vlens) + stride * within
                names.append(arr[pos])
                tids.append(np.repeat(idx + self.start_id, vlens))
            if names:
                self._enum_table = (np.concatenate(names), np.concatenate(tids))
            else:
                self._enum_table = (np.zeros(0, np.uint32), np.zeros(0, np.int64))
        return self._enum_table

    def find_enumerator(self, name: str) -> list[tuple[int, int]]:
        """(enum type id, value) of every enumerator called `name`, base blob's first."""
        out = self.base.find_enumerator(name) if self.base is not None else []
        offs = self._string_offsets(name)
        if self.base is not None:
            offs += self.base._string_offsets(name)
        if not offs:
            return out
        names, tids = self._enumerator_table()
        for tid in sorted(set(int(t) for t in tids[np.isin(names, np.array(offs, np.uint32))])):
            for n, v in self.type(tid).enumerators:
                if n == name:
                    out.append((tid, v))
                    break
        return out

    def memory_bytes(self) -> int:
        """Approximate bytes this reader holds (blob copies and index arrays)."""
        return (len(self._strings) + self._words.nbytes + self._offsets.nbytes
                + self._name_offs.nbytes + self._kinds.nbytes)


_VOID = BtfType(0, BtfKind.UNKN, "", 0, False)


def parse_btf(data: bytes, base: Btf | None = None, name: str = "vmlinux") -> Btf:
    return Btf(data, base=base, name=name)


def btf_from_elf(path: str) -> bytes:
    """The `.BTF` section of a vmlinux (or module .ko) file."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            sec = elf.get_section_by_name(".BTF")
            if sec is None:
                raise BtfFormatError(f"{path}: no .BTF section")
            if sec["sh_type"] == "SHT_NOBITS":
                raise BtfFormatError(f"{path}: .BTF section has no data")
            return sec.data()
    except ELFError as e:
        raise BtfFormatError(f"{path}: not a readable ELF file: {e}") from None


def elf_build_id(path: str) -> str | None:
    """The GNU build ID of an ELF file (hex), or None when it has none."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            for sec in elf.iter_sections():
                if sec["sh_type"] != "SHT_NOTE":
                    continue
                for note in sec.iter_notes():
                    if note["n_name"] == "GNU" and note["n_type"] == "NT_GNU_BUILD_ID":
                        desc = note["n_desc"]
                        return (desc.hex() if isinstance(desc, bytes) else str(desc)).lower()
    except ELFError as e:
        raise BtfFormatError(f"{path}: not a readable ELF file: {e}") from None
    return None
