"""Builds synthetic kernel symbol data from the formats' descriptions, for symbol tests:
kallsyms tables in every address encoding (scripts/kallsyms.c), struct module + mod_kallsyms,
System.map text and a minimal vmlinux ELF with .symtab."""
from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field

from vmcorekit.errors import PageNotInDumpError
from vmcorekit.vmcoreinfo import VmcoreInfo

TEXT = 0xFFFFFFFF81000000
RODATA = 0xFFFFFFFF82000000
DATA = 0xFFFFFFFF82A00000
MODULES = 0xFFFFFFFFC0000000


# -- memory --------------------------------------------------------------------------------------
class FlatMemory:
    """Virtual memory made of byte segments; reads outside them raise like a dump hole."""

    def __init__(self) -> None:
        self.segments: list[tuple[int, bytearray]] = []

    def map(self, addr: int, data: bytes) -> None:
        """Map `data` at `addr`, zero-filled out to whole 4 KiB pages as a dump holds them."""
        start = addr & ~4095
        end = (addr + len(data) + 4095) & ~4095
        buf = bytearray(end - start)
        buf[addr - start:addr - start + len(data)] = data
        self.segments.append((start, buf))

    def write(self, addr: int, data: bytes) -> None:
        for base, buf in self.segments:
            if base <= addr and addr + len(data) <= base + len(buf):
                buf[addr - base:addr - base + len(data)] = data
                return
        raise KeyError(f"{addr:#x} not mapped")

    def read(self, addr: int, size: int) -> bytes:
        out = bytearray()
        pos = addr
        while len(out) < size:
            for base, buf in self.segments:
                if base <= pos < base + len(buf):
                    n = min(size - len(out), base + len(buf) - pos)
                    out += buf[pos - base:pos - base + n]
                    pos += n
                    break
            else:
                raise PageNotInDumpError(pos, "not in the synthetic image")
        return bytes(out)


class _Space:
    def __init__(self, pointer_size: int) -> None:
        self.pointer_size = pointer_size


@dataclass
class FakeProgram:
    """What kernel_symbols() needs of a Program: read, vmcoreinfo, space.pointer_size, types."""

    mem: FlatMemory
    vmcoreinfo: VmcoreInfo
    pointer_size: int = 8
    types_obj: object | None = None
    types_error: Exception | None = None
    space: _Space = field(init=False)

    def __post_init__(self) -> None:
        self.space = _Space(self.pointer_size)

    def read(self, addr: int, size: int) -> bytes:
        return self.mem.read(addr, size)

    @property
    def types(self) -> object:
        if self.types_obj is None:
            raise self.types_error or ImportError("no types in this fake program")
        return self.types_obj


# -- token compression (the idea of scripts/kallsyms.c) -------------------------------------------
def compress(entries: list[bytes], rounds: int = 256) -> tuple[list[bytes], list[bytes]]:
    """Greedy pair compression: unused byte codes become the most frequent adjacent pair of
    codes. Returns (256 token expansions, each entry's code bytes)."""
    seqs = [list(e) for e in entries]
    table: list[bytes] = [b""] * 256
    used = set()
    for s in seqs:
        used.update(s)
    for c in used:
        table[c] = bytes([c])
    free = [c for c in range(256) if c not in used and c != 0]
    for _ in range(min(rounds, len(free))):
        pairs: Counter[tuple[int, int]] = Counter()
        for s in seqs:
            pairs.update(zip(s, s[1:]))
        if not pairs:
            break
        (a, b), n = pairs.most_common(1)[0]
        if n < 2:
            break
        code = free.pop(0)
        table[code] = table[a] + table[b]
        for k, s in enumerate(seqs):
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(code)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[k] = out
    return table, [bytes(s) for s in seqs]


def encode_len(n: int) -> bytes:
    """One byte, or (6.1+) two-byte ULEB128 for lengths of 0x80..0x3fff."""
    if n < 0x80:
        return bytes([n])
    return bytes([(n & 0x7F) | 0x80, n >> 7])


# -- kallsyms image -------------------------------------------------------------------------------
@dataclass
class KSym:
    address: int
    type: str
    name: str
    percpu: bool = False  # an x86_64 per-CPU offset (absolute under --absolute-percpu)


@dataclass
class KallsymsImage:
    mem: FlatMemory
    symbols: dict[str, int]  # what VMCOREINFO exports (SYMBOL() entries)
    syms: list[KSym]
    offsets_addr: int | None = None
    names_addr: int = 0
    names_size: int = 0

    def vmcoreinfo_text(self, extra: dict[str, int] | None = None, kerneloffset: int = 0) -> str:
        lines = ["OSRELEASE=6.1.0-test", "PAGESIZE=4096"]
        for k, v in {**self.symbols, **(extra or {})}.items():
            lines.append(f"SYMBOL({k})={v:x}")
        lines.append(f"KERNELOFFSET={kerneloffset:x}")
        return "\n".join(lines) + "\n"

    def vmcoreinfo(self, extra: dict[str, int] | None = None, kerneloffset: int = 0) -> VmcoreInfo:
        return VmcoreInfo.parse(self.vmcoreinfo_text(extra, kerneloffset))

    def program(self, extra: dict[str, int] | None = None, **kw: object) -> FakeProgram:
        return FakeProgram(self.mem, self.vmcoreinfo(extra), **kw)  # type: ignore[arg-type]


def _align(x: int, a: int) -> int:
    return (x + a - 1) & ~(a - 1)


def build_kallsyms(syms: list[KSym], encoding: str, *, pointer_size: int = 8,
                   base: int = RODATA, mem: FlatMemory | None = None,
                   endian: str = "<") -> KallsymsImage:
    """Lay out the kallsyms tables as scripts/kallsyms.c emits them for `encoding`
    ("absolute", "base-relative", "base-relative-percpu", "pc-relative", "u32").
    Symbols are sorted by address first, as the kernel's are."""
    syms = sorted(syms, key=lambda s: s.address)
    entries = [(s.type + s.name).encode("latin-1") for s in syms]
    table, codes = compress(entries)
    count = len(syms)
    ps = pointer_size
    e = endian
    pfmt = e + ("Q" if ps == 8 else "I")
    relative_base = None
    vals: list[int] = []
    if encoding == "absolute":
        pass
    elif encoding == "base-relative":
        relative_base = min(s.address for s in syms)
        vals = [(s.address - relative_base) & 0xFFFFFFFF for s in syms]
    elif encoding == "base-relative-percpu":
        relative_base = min(s.address for s in syms if not s.percpu)
        for s in syms:
            v = s.address if s.percpu else relative_base - s.address - 1
            vals.append(v & 0xFFFFFFFF)
    elif encoding == "u32":
        vals = [s.address & 0xFFFFFFFF for s in syms]
    elif encoding != "pc-relative":
        raise ValueError(encoding)

    names_blob = b"".join(encode_len(len(c)) + c for c in codes)
    token_blob = bytearray()
    token_index = []
    for t in table:
        token_index.append(len(token_blob))
        token_blob += t + b"\0"
    out = bytearray()
    at: dict[str, int] = {}

    def put(label: str, data: bytes, align: int) -> None:
        out.extend(b"\0" * (_align(len(out), align) - len(out)))
        at[label] = base + len(out)
        out.extend(data)

    if encoding == "absolute":
        put("kallsyms_addresses", b"".join(struct.pack(pfmt, s.address) for s in syms), ps)
    elif encoding == "pc-relative":
        # The entry's own address is needed: place the array first, then fill it.
        put("kallsyms_offsets", b"\0" * (4 * count), 4)
        off_at = at["kallsyms_offsets"]
        rel = [(s.address - (off_at + 4 * i)) for i, s in enumerate(syms)]
        if any(not -(1 << 31) <= r < (1 << 31) for r in rel):
            raise ValueError("pc-relative offset out of range")
        start = off_at - base
        out[start:start + 4 * count] = b"".join(struct.pack(e + "i", r) for r in rel)
    else:
        put("kallsyms_offsets", b"".join(struct.pack(e + "I", v) for v in vals), 4)
    if relative_base is not None:
        put("kallsyms_relative_base", struct.pack(pfmt, relative_base), ps)
    put("kallsyms_num_syms", struct.pack(e + "I", count), ps)
    put("kallsyms_names", names_blob, ps)
    put("kallsyms_markers", b"\0" * 4 * ((count + 255) // 256), ps)
    put("kallsyms_token_table", bytes(token_blob), ps)
    put("kallsyms_token_index", b"".join(struct.pack(e + "H", i) for i in token_index), ps)
    out.extend(b"\0" * 64)
    mem = mem or FlatMemory()
    mem.map(base, bytes(out))
    exported = {k: v for k, v in at.items() if k != "kallsyms_markers"}
    return KallsymsImage(mem, exported, syms, at.get("kallsyms_offsets"), at["kallsyms_names"],
                         len(names_blob))


def sample_symbols(n: int = 400, *, percpu: int = 8, seed: int = 1) -> list[KSym]:
    """A vmlinux-like symbol list: per-CPU offsets, _text/_stext, text, rodata, data, bss, _end;
    with duplicate static names and aliases."""
    import random

    rnd = random.Random(seed)
    out: list[KSym] = []
    if percpu:
        # x86_64 before 6.15: per-CPU variables are offsets from 0, absolute in kallsyms.
        out += [KSym(0, "A", "__per_cpu_start", True), KSym(0, "A", "fixed_percpu_data", True)]
        off = 0x1000
        for i in range(percpu - 2):
            out.append(KSym(off, "A", f"pcpu_var_{i}", True))
            off += rnd.choice([8, 64, 0x1000])
    else:
        # Elsewhere (and x86_64 since 6.15) they are ordinary image addresses.
        out += [KSym(DATA + 0x10000, "D", "__per_cpu_start"), KSym(DATA + 0x10040, "D", "runqueues")]
    out += [KSym(TEXT, "T", "_text"), KSym(TEXT, "T", "_stext"), KSym(TEXT, "T", "startup_64")]
    a = TEXT + 0x70
    words = ["sched", "do", "page", "fault", "init", "vfs", "read", "write", "lock", "irq",
             "tcp", "kmalloc", "free", "task", "mm", "netif", "rx", "work"]
    for i in range(n):
        nm = "_".join(rnd.choice(words) for _ in range(rnd.randint(1, 4))) + f"_{i}"
        t = "T" if rnd.random() < 0.6 else "t"
        out.append(KSym(a, t, nm))
        a += rnd.choice([0x10, 0x20, 0x40, 0x100, 0x1f0])
    out.append(KSym(a, "t", "dup_static"))
    out.append(KSym(a + 0x10, "t", "dup_static"))
    out.append(KSym(a + 0x20, "T", "panic"))
    out.append(KSym(a + 0x320, "T", "_etext"))
    out += [KSym(RODATA - 0x1000, "R", "__start_rodata_x"), KSym(DATA, "D", "init_task"),
            KSym(DATA + 0x2640, "D", "modules"), KSym(DATA + 0x2660, "d", "dup_static"),
            KSym(DATA + 0x3000, "D", "init_uts_ns"), KSym(DATA + 0x4000, "B", "__bss_start"),
            KSym(DATA + 0x8000, "B", "_end")]
    return out


# -- modules -------------------------------------------------------------------------------------
@dataclass
class ModSym:
    name: str
    value: int
    size: int
    type: str
    shndx: int = 2


MODULE_SIZE = 0x380
KALLSYMS_PTR = 0x220  # struct module.kallsyms (as on a 6.1 x86_64 kernel)
CORE_KALLSYMS = 0x228  # struct module.core_kallsyms


def build_modules(mem: FlatMemory, head: int, modules: list[tuple[str, list[ModSym]]], *,
                  state: dict[str, int] | None = None, base: int = MODULES,
                  typetab: bool = True) -> dict[str, int]:
    """struct module for each (name, symbols) linked on the list at `head` (head must be
    mapped, 16 bytes). Returns name -> struct module address."""
    state = state or {}
    addrs: dict[str, int] = {}
    pos = base
    structs = []
    for name, syms in modules:
        mod = pos
        symtab = mod + 0x1000
        entries = [b"\0" * 24]
        strtab = bytearray(b"\0")
        types = bytearray(b"U")
        for s in syms:
            # Without a typetab (before 5.x) the kernel kept the type character in st_info.
            info = 0x12 if typetab else ord(s.type)
            entries.append(struct.pack("<IBBHQQ", len(strtab), info, 0, s.shndx, s.value, s.size))
            strtab += s.name.encode() + b"\0"
            types += s.type.encode()
        st = b"".join(entries)
        strtab_at = _align(symtab + len(st), 64)
        typetab_at = _align(strtab_at + len(strtab), 64)
        blob = bytearray(_align(typetab_at + len(types) - mod, 4096))
        blob[symtab - mod:symtab - mod + len(st)] = st
        blob[strtab_at - mod:strtab_at - mod + len(strtab)] = strtab
        blob[typetab_at - mod:typetab_at - mod + len(types)] = types
        body = bytearray(MODULE_SIZE)
        struct.pack_into("<i", body, 0, state.get(name, 0))
        nm = name.encode()[:55]
        body[24:24 + len(nm)] = nm
        struct.pack_into("<Q", body, KALLSYMS_PTR, mod + CORE_KALLSYMS)
        struct.pack_into("<QIIQQ", body, CORE_KALLSYMS, symtab, len(entries), 0, strtab_at,
                         typetab_at if typetab else 0)
        blob[:MODULE_SIZE] = body
        structs.append((mod, blob))
        addrs[name] = mod
        pos += len(blob) + 0x1000
    # Link: head -> m0.list -> m1.list ... -> head (next at +0, prev at +8).
    links = [head] + [m + 8 for m, _ in structs] + [head]
    for m, blob in structs:
        mem.map(m, bytes(blob))
    for i in range(1, len(links) - 1):
        mem.write(links[i], struct.pack("<QQ", links[i + 1], links[i - 1]))
    mem.write(head, struct.pack("<QQ", links[1], links[-2]))
    return addrs


class FakeMember:
    def __init__(self, size: int) -> None:
        self.size = size

    def sizeof(self) -> int:
        return self.size


class FakeTypes:
    """The slice of TypeRegistry module symbols use: offsetof, member, has_member."""

    kind = "fake"

    def __init__(self, with_typetab: bool = True) -> None:
        self.offsets = {
            ("struct module", "state"): (0, 4), ("struct module", "list"): (8, 16),
            ("struct module", "name"): (24, 56), ("struct module", "kallsyms"): (KALLSYMS_PTR, 8),
            ("struct mod_kallsyms", "symtab"): (0, 8), ("struct mod_kallsyms", "num_symtab"): (8, 4),
            ("struct mod_kallsyms", "strtab"): (16, 8)}
        if with_typetab:
            self.offsets[("struct mod_kallsyms", "typetab")] = (24, 8)

    def _get(self, spec: str, m: str) -> tuple[int, int]:
        from vmcorekit.errors import TypeLookupError
        try:
            return self.offsets[(spec, m)]
        except KeyError:
            raise TypeLookupError(f"{spec} has no member {m}") from None

    def offsetof(self, spec: str, m: str) -> int:
        return self._get(spec, m)[0]

    def member(self, spec: str, m: str) -> tuple[FakeMember, int, None]:
        off, size = self._get(spec, m)
        return FakeMember(size), off * 8, None

    def has_member(self, spec: str, m: str) -> bool:
        return (spec, m) in self.offsets


# -- System.map and vmlinux ELF ------------------------------------------------------------------
def system_map(syms: list[KSym], shift: int = 0) -> str:
    """`nm -n` text at link-time addresses (run-time minus `shift` for image symbols)."""
    lines = []
    for s in sorted(syms, key=lambda s: s.address):
        a = s.address if s.percpu else s.address - shift
        lines.append(f"{a:016x} {'D' if s.percpu else s.type} {s.name}")
    return "\n".join(lines) + "\n"


def build_vmlinux(syms: list[KSym], *, shift: int = 0, build_id: bytes = b"\x12" * 20) -> bytes:
    """A minimal ELF64 x86_64 vmlinux: .text/.rodata/.data/.bss/.data..percpu sections (no
    contents needed), .notes with a GNU build ID, .symtab and .strtab."""
    secs = [  # name, type, flags, addr, size
        (".text", 1, 6, TEXT - shift, RODATA - TEXT),
        (".rodata", 1, 2, RODATA - shift, DATA - RODATA),
        (".data", 1, 3, DATA - shift, 0x4000),
        (".bss", 8, 3, DATA + 0x4000 - shift, 0x10000),
        (".data..percpu", 1, 3, 0, 0x40000),
        (".notes", 7, 2, RODATA - shift + 0x100, 0),
    ]
    note = struct.pack("<III", 4, len(build_id), 3) + b"GNU\0" + build_id

    def section_of(s: KSym) -> int:
        if s.percpu:
            return 5
        a = s.address - shift
        if TEXT <= a < RODATA:
            return 1
        if RODATA - 0x1000 <= a < DATA:
            return 2
        return 4 if s.type in "Bb" else 3

    strtab = bytearray(b"\0")
    symtab = [b"\0" * 24]
    for s in syms:
        info = ((0 if s.type.islower() else 1) << 4) | (2 if s.type in "Tt" else 1)
        a = s.address if s.percpu else s.address - shift
        symtab.append(struct.pack("<IBBHQQ", len(strtab), info, 0, section_of(s), a, 0))
        strtab += s.name.encode() + b"\0"
    # A file symbol and a section symbol that must be skipped.
    symtab.append(struct.pack("<IBBHQQ", len(strtab), 4, 0, 0xFFF1, 0, 0))
    strtab += b"vmlinux.o\0"
    symtab.append(struct.pack("<IBBHQQ", 0, 3, 0, 1, TEXT - shift, 0))
    shstr = bytearray(b"\0")
    names = []
    for n in [s[0] for s in secs] + [".symtab", ".strtab", ".shstrtab"]:
        names.append(len(shstr))
        shstr += n.encode() + b"\0"
    body = bytearray()
    data_off = 64

    def add(blob: bytes) -> int:
        nonlocal body
        off = data_off + len(body)
        body += blob + b"\0" * (-len(blob) % 8)
        return off

    note_off = add(note)
    sym_blob = b"".join(symtab)
    sym_off = add(sym_blob)
    str_off = add(bytes(strtab))
    shstr_off = add(bytes(shstr))
    shoff = data_off + len(body)
    sh = [b"\0" * 64]
    for i, (n, t, fl, addr, size) in enumerate(secs):
        # Only flags, type and address matter for symbol types; only .notes has contents.
        off, sz = (note_off, len(note)) if n == ".notes" else (0, size if t == 8 else 0)
        sh.append(struct.pack("<IIQQQQIIQQ", names[i], t, fl, addr, off, sz, 0, 0, 16, 0))
    k = len(secs)
    sh.append(struct.pack("<IIQQQQIIQQ", names[k], 2, 0, 0, sym_off, len(sym_blob), k + 2,
                          1, 8, 24))
    sh.append(struct.pack("<IIQQQQIIQQ", names[k + 1], 3, 0, 0, str_off, len(strtab), 0, 0, 1, 0))
    sh.append(struct.pack("<IIQQQQIIQQ", names[k + 2], 3, 0, 0, shstr_off, len(shstr), 0, 0, 1, 0))
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", ident, 2, 62, 1, TEXT - shift, 0, shoff, 0, 64, 56, 0,
                       64, len(sh), k + 3)
    return ehdr + bytes(body) + b"".join(sh)
