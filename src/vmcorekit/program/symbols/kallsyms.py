"""Decode the kernel's in-memory kallsyms tables (kernel/kallsyms.c, scripts/kallsyms.c).

VMCOREINFO (since Linux 6.0) exports where the tables are: SYMBOL(kallsyms_names),
kallsyms_num_syms, kallsyms_token_table, kallsyms_token_index, and either kallsyms_addresses or
kallsyms_offsets (+ kallsyms_relative_base while that existed).

Names: `kallsyms_names` is a stream of records `<len><len token codes>`; `len` is one byte, or
since 6.1 a two-byte ULEB128 when its top bit is set. Each code expands to the NUL-terminated
string at `kallsyms_token_table[kallsyms_token_index[code]]`; the first expanded character is the
symbol type (t, T, d, D, ...), the rest the name.

Addresses — every encoding scripts/kallsyms.c has emitted:
  absolute              kallsyms_addresses[i] (unsigned long; before base-relative existed or
                        with CONFIG_KALLSYMS_BASE_RELATIVE=n)
  base-relative         kallsyms_relative_base + (u32)kallsyms_offsets[i]
  base-relative-percpu  (CONFIG_KALLSYMS_ABSOLUTE_PERCPU, x86_64 SMP until 6.15) offsets >= 0 are
                        absolute values (per-CPU symbols), negative ones mean
                        kallsyms_relative_base - 1 - offset
  pc-relative           no relative base: &kallsyms_offsets[i] + (s32)kallsyms_offsets[i]
  u32                   no relative base, 32-bit non-relocatable kernels: (u32)offset
Which one applies is not in VMCOREINFO beyond which symbols it exports, so each candidate is
decoded and judged: VMCOREINFO's own SYMBOL() values must be found at the decoded addresses,
addresses must be sorted (the kernel binary-searches them) and lie near the kernel image.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ...errors import CorruptKernelDataError, MemoryReadError, SymbolError

Reader = Callable[[int, int], bytes]

# No kernel comes near this (a 6.x allyesconfig has ~400k symbols); a larger count is garbage.
MAX_SYMS = 10_000_000
# scripts/kallsyms.c rejects compressed lengths above 0x3fff (two-byte ULEB128).
MAX_RECORD = 0x3FFF
MAX_TOKEN_TABLE = 1 << 16  # token_index is u16
MAX_NAMES_BYTES = 256 << 20
_CHUNK = 1 << 20
# Kernel symbols lie in the image, within +/- 2 GiB of the kallsyms tables themselves (the
# offsets are 32-bit); this is the "near the image" window of the sanity checks.
_IMAGE_WINDOW = 1 << 31

_ORDER = {"<": "little", ">": "big"}

ENCODINGS = ("absolute", "base-relative", "base-relative-percpu", "pc-relative", "u32")


@dataclass
class KallsymsTables:
    """The decoded vmlinux symbols, in kallsyms order (sorted by address)."""

    names: list[str]
    types: bytes  # one type character per symbol
    addresses: np.ndarray  # uint64
    encoding: str
    anchors_matched: list[str] = field(default_factory=list)  # VMCOREINFO symbols confirmed
    notes: list[str] = field(default_factory=list)  # what the sanity checks saw

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class KallsymsLocation:
    names: int
    num_syms: int
    token_table: int
    token_index: int
    offsets: int | None
    relative_base: int | None
    addresses: int | None

    @classmethod
    def from_symbols(cls, symbols: Mapping[str, int]) -> "KallsymsLocation":
        need = ("kallsyms_names", "kallsyms_num_syms", "kallsyms_token_table", "kallsyms_token_index")
        missing = [f"SYMBOL({n})" for n in need if n not in symbols]
        if "kallsyms_offsets" not in symbols and "kallsyms_addresses" not in symbols:
            missing.append("SYMBOL(kallsyms_offsets or kallsyms_addresses)")
        if missing:
            raise SymbolError(f"VMCOREINFO does not locate the kallsyms tables (no {', '.join(missing)}):"
                              " the kernel predates 6.0 or lacks CONFIG_KALLSYMS; give a System.map "
                              "or vmlinux")
        return cls(symbols["kallsyms_names"], symbols["kallsyms_num_syms"],
                   symbols["kallsyms_token_table"], symbols["kallsyms_token_index"],
                   symbols.get("kallsyms_offsets"), symbols.get("kallsyms_relative_base"),
                   symbols.get("kallsyms_addresses"))


# -- reading -------------------------------------------------------------------------------------
class _Stream:
    """Bytes from `base` on, read in chunks on demand; stops cleanly at the first unreadable page."""

    def __init__(self, read: Reader, base: int, limit: int, page: int = 4096) -> None:
        self.read, self.base, self.limit, self.page = read, base, limit, page
        self.buf = bytearray()
        self.exhausted: MemoryReadError | None = None

    def ensure(self, end: int) -> bool:
        """Make buf at least `end` bytes long (or as long as memory allows); True if it is."""
        while len(self.buf) < end and self.exhausted is None and len(self.buf) < self.limit:
            pos = self.base + len(self.buf)
            n = min(_CHUNK, self.limit - len(self.buf))
            try:
                self.buf += self.read(pos, n)
            except MemoryReadError:
                # Take what precedes the hole, page by page.
                got = False
                while len(self.buf) < self.limit:
                    p = self.base + len(self.buf)
                    m = min(self.page - p % self.page, self.limit - len(self.buf))
                    try:
                        self.buf += self.read(p, m)
                        got = True
                    except MemoryReadError as e:
                        self.exhausted = e
                        break
                    if len(self.buf) >= end:
                        break
                if not got and self.exhausted is None:
                    break
        return len(self.buf) >= end


def _read_exact(read: Reader, addr: int, size: int, what: str) -> bytes:
    data = read(addr, size)
    if len(data) != size:
        raise CorruptKernelDataError(f"{what} at {addr:#x}: short read ({len(data)} of {size} bytes)")
    return data


def read_tokens(read: Reader, loc: KallsymsLocation, endian: str = "<") -> list[bytes]:
    """The 256 expansion strings of the token table."""
    index = np.frombuffer(_read_exact(read, loc.token_index, 512, "kallsyms_token_index"),
                          endian + "u2")
    top = int(index.max())
    stream = _Stream(read, loc.token_table, MAX_TOKEN_TABLE + 1024)
    stream.ensure(top + 256)
    buf = bytes(stream.buf)
    tokens = []
    for code, off in enumerate(index.tolist()):
        end = buf.find(b"\0", off)
        while end < 0:
            if not stream.ensure(len(buf) + 4096) or len(stream.buf) == len(buf):
                raise CorruptKernelDataError(
                    f"kallsyms_token_table at {loc.token_table:#x}: token {code} (offset {off}) "
                    "has no terminating NUL")
            buf = bytes(stream.buf)
            end = buf.find(b"\0", off)
        tokens.append(buf[off:end])
    return tokens


def read_name_records(read: Reader, base: int, count: int,
                      limit: int = MAX_NAMES_BYTES) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Walk the `count` length-prefixed records of kallsyms_names once, reading at most
    `limit` bytes.

    Returns (blob, starts, two_byte): blob covers every record; record i starts at starts[i]
    and its codes end at starts[i+1]; two_byte lists the records with a two-byte length."""
    limit = min(limit, MAX_NAMES_BYTES, count * (MAX_RECORD + 2))
    stream = _Stream(read, base, limit)
    stream.ensure(min(limit, count * 16))
    starts: list[int] = []
    add = starts.append
    two: list[int] = []
    pos = 0
    i = 0
    while i < count:
        buf = stream.buf  # grows in place
        safe = len(buf) - (MAX_RECORD + 2)  # a record starting at or before `safe` fits in buf
        if pos > safe:
            stream.ensure(pos + MAX_RECORD + 2 + _CHUNK)
            safe = len(buf) - (MAX_RECORD + 2)
        have = len(buf)
        # The hot loop: no bounds checks while every record must fit.
        for i in range(i, count):
            if pos > safe:
                break
            add(pos)
            n = buf[pos]
            if n & 0x80:
                n = (n & 0x7F) | (buf[pos + 1] << 7)
                two.append(i)
                pos += 2 + n
            else:
                pos += 1 + n
            if n == 0:
                raise CorruptKernelDataError(
                    f"kallsyms_names at {base:#x}: symbol {i} has length zero (offset {starts[i]})")
        else:
            break
        # Near the end of what memory holds: one careful record at a time.
        if pos >= have or (buf[pos] & 0x80 and pos + 1 >= have):
            raise _names_end(base, i, count, pos, stream)
        n = buf[pos]
        hdr = 1
        if n & 0x80:
            n = (n & 0x7F) | (buf[pos + 1] << 7)
            hdr = 2
        if n == 0:
            raise CorruptKernelDataError(
                f"kallsyms_names at {base:#x}: symbol {i} has length zero (offset {pos})")
        if pos + hdr + n > have:
            raise _names_end(base, i, count, pos, stream)
        add(pos)
        if hdr == 2:
            two.append(i)
        pos += hdr + n
        i += 1
    starts.append(pos)
    return (bytes(stream.buf[:pos]), np.array(starts, dtype=np.int64),
            np.array(two, dtype=np.int64))


def _names_end(base: int, i: int, count: int, pos: int, stream: _Stream) -> Exception:
    if stream.exhausted is not None:
        return stream.exhausted
    return CorruptKernelDataError(f"kallsyms_names at {base:#x}: symbol {i} of {count} runs past "
                                  f"{stream.limit} bytes (offset {pos})")


def expand_names(blob: bytes, starts: np.ndarray, two_byte: np.ndarray,
                 tokens: list[bytes]) -> tuple[list[str], bytes]:
    """Expand every record at once: each code becomes an index into a 258-entry token list
    (256 tokens, a NUL that replaces each record's first length byte, an empty string for a
    second length byte), one numpy gather builds all names NUL-separated, one split cuts them."""
    count = len(starts) - 1
    codes = np.frombuffer(blob, dtype=np.uint8).astype(np.int16)
    codes[starts[:-1]] = 256
    codes[starts[:-1][two_byte] + 1] = 257
    table = list(tokens) + [b"\0", b""]
    tok_len = np.array([len(t) for t in table], dtype=np.int64)
    lens = tok_len[codes]
    total = int(lens.sum())
    # KSYM_NAME_LEN is 512: more output than that per name means the tables are garbage (and
    # would ask for a huge allocation).
    if total > count * 520:
        raise CorruptKernelDataError(f"kallsyms_names expand to {total} bytes for {count} names")
    it = np.int32 if total < (1 << 31) - 1024 else np.int64  # int32 halves the gather's cost
    tok_len = tok_len.astype(it)
    lens = lens.astype(it)
    tok_off = np.zeros(258, dtype=it)
    np.cumsum(tok_len[:-1], out=tok_off[1:])
    tok_bytes = np.frombuffer(b"".join(table), dtype=np.uint8)
    out_end = np.cumsum(lens, dtype=it)
    # Output position j of code k reads tok_bytes[tok_off[k] + (j - out_start[k])].
    gather = np.repeat(tok_off[codes] - (out_end - lens), lens)
    gather += np.arange(total, dtype=it)
    text = tok_bytes[gather].tobytes().decode("latin-1")
    parts = text.split("\0")
    # parts[0] is what precedes the first record (nothing); tokens cannot contain NUL.
    full = parts[1:]
    if len(full) != count:
        raise CorruptKernelDataError(f"kallsyms_names: expanded {len(full)} names, expected {count}")
    types = "".join([s[:1] or "?" for s in full]).encode("latin-1")
    names = [s[1:] for s in full]
    return names, types


# -- addresses -----------------------------------------------------------------------------------
def _candidates(read: Reader, loc: KallsymsLocation, count: int,
                pointer_size: int, endian: str = "<") -> dict[str, np.ndarray]:
    mask = np.uint64((1 << (8 * pointer_size)) - 1)
    out: dict[str, np.ndarray] = {}
    if loc.offsets is not None:
        raw = np.frombuffer(_read_exact(read, loc.offsets, 4 * count, "kallsyms_offsets"),
                            endian + "i4")
        off = raw.astype(np.int64)
        if loc.relative_base is not None:
            base = int.from_bytes(_read_exact(read, loc.relative_base, pointer_size,
                                              "kallsyms_relative_base"), _ORDER[endian])
            b = np.uint64(base)
            b1 = np.uint64((base - 1) & int(mask))
            out["base-relative"] = (b + (off & 0xFFFFFFFF).astype(np.uint64)) & mask
            # Negative offsets: base - 1 - off, computed modulo 2**64 on uint64 arrays.
            pc = np.where(off < 0, b1 - off.astype(np.uint64), off.astype(np.uint64))
            out["base-relative-percpu"] = pc & mask
        else:
            place = np.uint64(loc.offsets) + np.arange(count, dtype=np.uint64) * np.uint64(4)
            out["pc-relative"] = (place + off.astype(np.uint64)) & mask
            if pointer_size == 4:
                out["u32"] = (off & 0xFFFFFFFF).astype(np.uint64)
    if loc.addresses is not None:
        dt = endian + ("u8" if pointer_size == 8 else "u4")
        raw = _read_exact(read, loc.addresses, pointer_size * count, "kallsyms_addresses")
        out["absolute"] = np.frombuffer(raw, dt).astype(np.uint64)
    return out


@dataclass
class _Score:
    encoding: str
    matched: list[str]
    sorted_frac: float
    near_frac: float

    def key(self) -> tuple[int, bool, float, float]:
        return (len(self.matched), self.sorted_frac >= 0.999, self.near_frac, self.sorted_frac)


def _score(enc: str, addrs: np.ndarray, names: list[str], anchors: Mapping[str, int],
           image_ref: int) -> _Score:
    n = len(addrs)
    if n > 1:
        sorted_frac = float(np.count_nonzero(addrs[1:] >= addrs[:-1])) / (n - 1)
    else:
        sorted_frac = 1.0
    lo = np.uint64(max(0, image_ref - _IMAGE_WINDOW))
    hi = np.uint64(min((1 << 64) - 1, image_ref + _IMAGE_WINDOW))
    near = float(np.count_nonzero((addrs >= lo) & (addrs < hi))) / max(n, 1)
    matched = []
    if anchors:
        want = {k: v for k, v in anchors.items() if not k.startswith("kallsyms_")}
        idx = [(i, want[nm]) for i, nm in enumerate(names) if nm in want]
        for i, v in idx:
            if int(addrs[i]) == v and names[i] not in matched:
                matched.append(names[i])
    return _Score(enc, matched, sorted_frac, near)


def read_kallsyms(read: Reader, symbols: Mapping[str, int], *, pointer_size: int = 8,
                  byteorder: str = "little", max_syms: int = MAX_SYMS) -> KallsymsTables:
    """Decode vmlinux's kallsyms from memory. `symbols` is VMCOREINFO's SYMBOL() table: it
    locates the tables and its other entries serve as anchors to confirm the address encoding.

    Raises SymbolError when the tables are not located, CorruptKernelDataError when they do not
    decode to a consistent table, MemoryReadError when they are not in the dump."""
    loc = KallsymsLocation.from_symbols(symbols)
    endian = "<" if byteorder == "little" else ">"
    count = int.from_bytes(_read_exact(read, loc.num_syms, 4, "kallsyms_num_syms"), byteorder)
    if count == 0 or count > max_syms:
        raise CorruptKernelDataError(f"kallsyms_num_syms at {loc.num_syms:#x} is {count}: "
                                     f"expected 1..{max_syms}")
    # Every layout scripts/kallsyms.c has emitted puts kallsyms_names before the token table,
    # so their distance bounds the names (and each record takes at least 2 bytes).
    span = loc.token_table - loc.names
    limit = MAX_NAMES_BYTES
    if 0 < span <= MAX_NAMES_BYTES:
        if 2 * count > span:
            raise CorruptKernelDataError(
                f"kallsyms_num_syms is {count}, more than the {span} bytes of kallsyms_names "
                "before kallsyms_token_table can hold")
        limit = span
    tokens = read_tokens(read, loc, endian)
    blob, starts, two_byte = read_name_records(read, loc.names, count, limit)
    names, types = expand_names(blob, starts, two_byte, tokens)
    cands = _candidates(read, loc, count, pointer_size, endian)
    if not cands:
        raise SymbolError("no kallsyms address table (kallsyms_offsets/kallsyms_addresses)")
    scores = [_score(enc, a, names, symbols, loc.names) for enc, a in cands.items()]
    best = max(scores, key=_Score.key)
    notes = [f"{s.encoding}: {len(s.matched)} VMCOREINFO symbols matched, "
             f"{s.sorted_frac:.4f} sorted, {s.near_frac:.4f} near the image" for s in scores]
    if not best.matched and (best.sorted_frac < 0.99 or best.near_frac < 0.5):
        raise CorruptKernelDataError("kallsyms addresses do not decode consistently under any "
                                     "encoding (" + "; ".join(notes) + ")")
    return KallsymsTables(names, types, cands[best.encoding], best.encoding, best.matched, notes)
