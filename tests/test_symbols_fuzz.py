"""Random and mutated symbol data never crash the readers with anything but the typed errors."""
from __future__ import annotations

import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kallsymsgen as G
from vmcorekit.errors import CorruptKernelDataError, MemoryReadError, SymbolError
from vmcorekit.program.symbols import kernel_symbols
from vmcorekit.program.symbols.kallsyms import MAX_SYMS, read_kallsyms
from vmcorekit.program.symbols.modules import module_symbols, probe_layout
from vmcorekit.program.symbols.sysmap import parse_system_map

TYPED = (SymbolError, CorruptKernelDataError, MemoryReadError)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BASE = G.RODATA
LAYOUT = {"kallsyms_offsets": BASE, "kallsyms_relative_base": BASE + 0x4000,
          "kallsyms_num_syms": BASE + 0x4008, "kallsyms_names": BASE + 0x4010,
          "kallsyms_token_table": BASE + 0xC000, "kallsyms_token_index": BASE + 0xE000}

VALID = G.build_kallsyms(G.sample_symbols(200, percpu=6), "base-relative-percpu")
VALID_BYTES = VALID.mem.segments[0]
SMALL = G.build_kallsyms(G.sample_symbols(60, percpu=4), "base-relative-percpu")
SMALL_HEAD = next(s.address for s in SMALL.syms if s.name == "modules")


def check(fn) -> None:  # type: ignore[no-untyped-def]
    try:
        fn()
    except TYPED:
        pass


@FUZZ
@given(offsets=st.binary(max_size=0x400), base=st.integers(0, 2**64 - 1),
       count=st.integers(0, 2**32 - 1), names=st.binary(max_size=0x2000),
       tokens=st.binary(max_size=0x800), index=st.binary(min_size=0, max_size=512),
       drop=st.sampled_from([None, "kallsyms_relative_base", "kallsyms_offsets"]))
def test_random_tables(offsets: bytes, base: int, count: int, names: bytes, tokens: bytes,
                       index: bytes, drop: str | None) -> None:
    mem = G.FlatMemory()
    mem.map(BASE, offsets)
    mem.map(BASE + 0x4000, struct.pack("<QI", base, count) + b"\0" * 4 + names)
    mem.map(BASE + 0xC000, tokens)
    mem.map(BASE + 0xE000, index)
    syms = {k: v for k, v in LAYOUT.items() if k != drop}
    check(lambda: read_kallsyms(mem.read, syms))


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID_BYTES[1]) - 1), st.binary(min_size=1, max_size=8)),
                      max_size=12),
       count=st.one_of(st.none(), st.integers(0, MAX_SYMS + 10)),
       truncate=st.one_of(st.none(), st.integers(0, len(VALID_BYTES[1]))))
def test_mutated_tables(edits: list[tuple[int, bytes]], count: int | None, truncate: int | None) -> None:
    start, data = VALID_BYTES
    buf = bytearray(data)
    for pos, b in edits:
        buf[pos:pos + len(b)] = b
    if truncate is not None:
        del buf[truncate:]
    mem = G.FlatMemory()
    mem.segments.append((start, buf))
    if count is not None and truncate is None:
        mem.write(VALID.symbols["kallsyms_num_syms"], struct.pack("<I", count))

    def run() -> None:
        k = read_kallsyms(mem.read, VALID.symbols)
        assert len(k.names) == len(k.types) == len(k.addresses)
        t = kernel_symbols(G.FakeProgram(mem, VALID.vmcoreinfo()), modules=False)
        for a in (0, G.TEXT, G.TEXT + 0x123, 2**64 - 1):
            t.lookup(a)
            t.format(a)

    check(run)


@FUZZ
@given(body=st.binary(min_size=0, max_size=0x400), next_ptr=st.sampled_from(
    [None, 0, 1, G.MODULES + 8, G.MODULES + 0x800, 0xFFFF888000000000]),
    pointers=st.lists(st.integers(0, 0x3F8 // 8), max_size=6))
def test_garbage_modules(body: bytes, next_ptr: int | None, pointers: list[int]) -> None:
    """A modules list whose entries are random bytes, with some self-pointers sprinkled in."""
    mem = G.FlatMemory()
    mem.segments = [(a, bytearray(b)) for a, b in SMALL.mem.segments]
    head = SMALL_HEAD
    mem.map(head, b"\0" * 16)
    blob = bytearray(body.ljust(0x1000, b"\0"))
    for k in pointers:
        struct.pack_into("<Q", blob, k * 8, G.MODULES + 0x100 + k * 8)
    struct.pack_into("<Q", blob, 8, head if next_ptr is None else next_ptr)
    mem.map(G.MODULES, bytes(blob))
    mem.write(head, struct.pack("<QQ", G.MODULES + 8, G.MODULES + 8))
    prog = G.FakeProgram(mem, SMALL.vmcoreinfo())
    check(lambda: module_symbols(prog, head))
    check(lambda: probe_layout(prog.read, G.MODULES))
    t = kernel_symbols(prog)
    t.lookup(G.MODULES + 0x10)  # loads modules: failures become problems
    assert t.complete
    assert t.address_of("panic")


@FUZZ
@given(st.text(max_size=400))
def test_random_system_map(text: str) -> None:
    check(lambda: parse_system_map(text))


@FUZZ
@given(addrs=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=50),
       probes=st.lists(st.integers(-5, 2**64 + 5), max_size=30))
def test_table_lookups_never_raise(addrs: list[int], probes: list[int]) -> None:
    from vmcorekit.program.symbols import SymbolTable

    names = [f"s{i}" for i in range(len(addrs))]
    t = SymbolTable(names, np.array(addrs, dtype=np.uint64), b"T" * len(addrs))
    for p in probes:
        s = t.lookup(p)
        if s is not None:
            assert s.address <= p and (p - s.address < s.size or p == s.address)
        t.format(p)
        t.in_text(p)
