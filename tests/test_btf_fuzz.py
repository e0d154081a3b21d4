"""Property tests: random and mutated BTF blobs raise only the project's typed errors, and
nothing in them (counts, lengths, ids, cycles) makes the reader loop or allocate without
bound."""
from __future__ import annotations

import struct
import sys
import tracemalloc
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_btf import kernelish
from test_objects import FakeProgram

# The fuzz harness's exercise, so the fuzzer and these tests use BTF the same way.
FUZZ = str(Path(__file__).resolve().parent.parent / "fuzz")
if FUZZ not in sys.path:
    sys.path.insert(0, FUZZ)
from fuzz_btf import exercise_btf  # noqa: E402

BASE, _IDS = kernelish()
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
# Every blob tried here is < 64 KiB. Parsing holds a few copies and small indexes; printing
# objects of damaged types is capped by VALUE_BUDGET values (100k lines of text at most).
MEMORY_BOUND = 64 << 20


def exercise(data: bytes) -> None:
    """Parse and use everything in `data` (objects of each type printed too); only
    VmcorekitError may escape."""
    exercise_btf(data, max_types=400, program=FakeProgram)


def bounded(data: bytes) -> None:
    tracemalloc.start()
    try:
        exercise(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND + 64 * len(data)


@SETTINGS
@given(st.binary(max_size=4096))
def test_random_bytes(data):
    exercise(data)


@SETTINGS
@given(st.binary(max_size=2048), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
       st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 64))
def test_random_bodies_behind_a_valid_magic(body, type_off, type_len, str_off, str_len, extra):
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24 + extra, type_off % 4096, type_len % 4096,
                      str_off, str_len)
    bounded(hdr + b"\0" * extra + body)


# Values a corrupted word is likely to take: anything, a small type id, a plausible info word.
WORDS = st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 128),
                  st.builds(lambda k, v, f: (f << 31) | (k << 24) | v,
                            st.integers(0, 20), st.integers(0, 8), st.integers(0, 1)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(24, len(BASE) - 4), WORDS), min_size=1, max_size=8))
def test_mutated_words(edits):
    data = bytearray(BASE)
    for off, val in edits:
        struct.pack_into("<I", data, off & ~3, val)
    bounded(bytes(data))


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, len(BASE) - 1), st.integers(0, 255)), min_size=1,
                max_size=16))
def test_mutated_bytes(edits):
    data = bytearray(BASE)
    for off, val in edits:
        data[off] = val
    exercise(bytes(data))


@SETTINGS
@given(st.integers(0, len(BASE)))
def test_truncated(n):
    exercise(BASE[:n])


@SETTINGS
@given(st.integers(0, 31), st.integers(0, 0xFFFF), st.booleans(), st.integers(0, 2**32 - 1),
       st.lists(st.integers(0, 2**32 - 1), max_size=12))
def test_appended_record(kind, vlen, kflag, size_type, words):
    """One arbitrary record after valid ones: any kind, vlen, size and payload."""
    hdr_len = 24
    type_len, str_off, str_len = struct.unpack_from("<III", BASE, 12)
    types = BASE[hdr_len:hdr_len + type_len]
    strings = BASE[hdr_len + str_off:hdr_len + str_off + str_len]
    rec = struct.pack("<III", 1, (int(kflag) << 31) | (kind << 24) | vlen, size_type)
    rec += b"".join(struct.pack("<I", w) for w in words)
    new_types = types + rec
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(new_types), len(new_types),
                      len(strings))
    bounded(hdr + new_types + strings)
