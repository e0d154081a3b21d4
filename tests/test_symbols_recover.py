"""Recovering data symbols when kallsyms has functions only (CONFIG_KALLSYMS_ALL=n): the BTF
header scan and the __ksymtab decoder on rodata built here. The real 6.1 arm64 sample is
checked in test_arm64_commands.py."""
from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from vmcorekit.program.symbols.recover import find_btf, lacks_data_symbols, read_ksymtab

BASE = 0xFFFF800009000000
TEXT = 0xFFFF800008000000


def btf_header(type_len: int = 64, str_len: int = 32, version: int = 1) -> bytes:
    hdr = struct.pack("<HBBIIIII", 0xEB9F, version, 0, 24, 0, type_len, type_len, str_len)
    return hdr + bytes(type_len) + b"\0" + b"x" * (str_len - 1)


def test_find_btf():
    rnd = random.Random(1)
    noise = bytes(rnd.randrange(256) for _ in range(4000))
    # a lone magic with an inconsistent header, then the real one (4-aligned)
    fake = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 64, 8, 32)  # strings overlap types
    buf = noise[:1000] + fake + noise[:996] + btf_header() + noise
    got = find_btf(buf, BASE)
    assert got == (BASE + 1000 + len(fake) + 996, 24 + 64 + 32)
    assert find_btf(noise[:1000] + btf_header(version=2) + noise, BASE) is None
    assert find_btf(noise[:1001] + btf_header() + noise, BASE) is None  # misaligned


def _rodata(layout: str, funcs: dict[str, int], data: dict[str, int]) -> tuple[bytes, int, list[str]]:
    """Strings, then the table (sorted by name, like ___ksymtab+NAME sections), then CRCs.
    Returns (buffer, table offset, names in table order)."""
    names = sorted(set(funcs) | set(data))
    strings = bytearray(b"\0garbage\0")
    where: dict[str, int] = {}
    for n in names:
        if n == "PageMovable":  # the linker merges a name that is another's tail
            continue
        where[n] = len(strings)
        strings += n.encode() + b"\0"
    if "PageMovable" in names:
        where["PageMovable"] = where["__ClearPageMovable"] + len("__Clear")
    strings += b"\0" * (-len(strings) % 16)
    table_off = len(strings) + 64
    buf = bytearray(strings) + bytearray(64)
    value = {**funcs, **data}
    rnd = random.Random(2)
    for i, n in enumerate(names):
        if layout == "prel32+namespace":
            at = BASE + table_off + 12 * i
            buf += struct.pack("<iii", value[n] - at, BASE + where[n] - (at + 4), BASE - (at + 8))
        else:
            buf += struct.pack("<QQQ", value[n], BASE + where[n], 0)
    buf += bytes(rnd.randrange(256) for _ in range(256))  # __kcrctab: random words
    return bytes(buf), table_off, names


@pytest.mark.parametrize("layout", ["prel32+namespace", "absolute+namespace"])
def test_read_ksymtab(layout):
    funcs = {f"func_{i:03d}": TEXT + 0x100 * i for i in range(40)}
    funcs["__ClearPageMovable"] = TEXT + 0x8000
    data = {"init_task": BASE + 0x100000, "jiffies": BASE + 0x100800, "PageMovable": TEXT + 0x9000,
            "nr_cpu_ids": BASE + 0x100900}
    buf, _, names = _rodata(layout, funcs, data)
    kn = list(funcs) + ["unexported_func"]
    ka = np.array([funcs[n] for n in funcs] + [TEXT + 0x7000], dtype=np.uint64)
    entries, note = read_ksymtab(buf, BASE, kn, ka)
    assert layout in note
    assert entries == [(n, {**funcs, **data}[n]) for n in names]


def test_read_ksymtab_needs_anchors():
    buf, _, _ = _rodata("prel32+namespace", {"a": TEXT, "b": TEXT + 8}, {"d": BASE})
    entries, note = read_ksymtab(buf, BASE, ["a", "b"], np.array([TEXT, TEXT + 8], dtype=np.uint64))
    assert entries == [] and "fewer than 8" in note
    assert read_ksymtab(b"\0" * 4096, BASE, [], np.zeros(0, dtype=np.uint64))[0] == []


def test_lacks_data_symbols():
    assert lacks_data_symbols(b"t" * 50000 + b"D")  # functions and a section marker
    assert not lacks_data_symbols(b"tT" * 1000 + b"dDbBrR" * 300)
    assert not lacks_data_symbols(b"t" * 300 + b"d" * 10)  # a small table with some data
    assert not lacks_data_symbols(b"")
