"""The fuzz harnesses (fuzz/fuzz_*.py) in the normal test run:

* every seed (cut from the real sample dump) and every input the fuzzers found
  (fuzz/regressions/<harness>/) goes through its harness once, under a time limit: only
  VmcorekitError may come out of a parser, nothing may hang;
* hypothesis mutates the seeds (byte flips, overwritten words, truncation, splices) a few
  hundred times per harness, so each parser meets damaged input on every test run, not only when
  someone runs fuzz/run.sh;
* one test per bug the fuzzers found, built from its cause, so it reads as a specification.
"""
from __future__ import annotations

import importlib
import struct
import sys
import time
from pathlib import Path

import pytest

from fakes import time_limit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
sys.path.insert(0, str(FUZZ))

import _harness  # noqa: E402

HARNESSES = sorted(p.stem.removeprefix("fuzz_") for p in FUZZ.glob("fuzz_*.py"))
PER_INPUT_SECONDS = 20


def harness(name: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f"fuzz_{name}").test_one_input




def inputs(kind: str) -> list[tuple[str, Path]]:
    root = _harness.SEEDS if kind == "seeds" else _harness.REGRESSIONS
    return [(d.name, p) for d in sorted(root.iterdir()) if d.is_dir() for p in sorted(d.iterdir())] \
        if root.is_dir() else []


def test_every_harness_has_seeds() -> None:
    assert HARNESSES and all(_harness.seeds_of(h) for h in HARNESSES), \
        [h for h in HARNESSES if not _harness.seeds_of(h)]


@pytest.mark.parametrize("name,path", inputs("seeds") + inputs("regressions"),
                         ids=lambda v: v if isinstance(v, str) else v.name)
def test_replay(name: str, path: Path) -> None:
    with time_limit(PER_INPUT_SECONDS):
        harness(name)(path.read_bytes())


# -- mutated seeds -------------------------------------------------------------------------------
def mutate(seed: bytes, edits: list[tuple[int, int, int]], cut: int | None) -> bytes:
    """edits: (kind, position, value): 0 flips a byte, 1 writes a 32-bit word, 2 writes a
    64-bit word, 3 copies 64 bytes from elsewhere in the seed; then an optional truncation."""
    b = bytearray(seed)
    n = len(b)
    for kind, pos, val in edits:
        if not n:
            break
        pos %= n
        if kind == 0:
            b[pos] ^= (val & 0xFF) or 1
        elif kind == 1 and pos + 4 <= n:
            struct.pack_into("<I", b, pos, val & 0xFFFFFFFF)
        elif kind == 2 and pos + 8 <= n:
            struct.pack_into("<Q", b, pos, val & 0xFFFFFFFFFFFFFFFF)
        elif kind == 3:
            src = val % n
            chunk = b[src:src + 64]
            b[pos:pos + len(chunk)] = chunk
    return bytes(b[:cut % (n + 1)] if cut is not None else b)


INTERESTING = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from(
    [0, 1, 2, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1, 4096, 4095, 4097]))
EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**31), INTERESTING), min_size=1, max_size=6)
# (harness, examples): each property test stays within a few seconds.
BUDGET = {"codecs": 300, "vmcoreinfo": 150, "lists": 150, "pagetable": 120, "kallsyms": 100, "printk": 100,
          "orc": 50, "btf": 30, "elf": 200, "kdump": 200, "flat": 150, "split": 150}


@pytest.mark.parametrize("name", HARNESSES)
def test_mutated_seeds(name: str) -> None:
    seeds = [p.read_bytes() for p in _harness.seeds_of(name)]
    fn = harness(name)
    slowest = [0.0]

    @settings(max_examples=BUDGET.get(name, 50), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.integers(0, len(seeds) - 1), EDITS, st.one_of(st.none(), st.integers(0, 2**31)))
    def prop(i: int, edits: list[tuple[int, int, int]], cut: int | None) -> None:
        data = mutate(seeds[i], edits, cut)
        t = time.perf_counter()
        with time_limit(PER_INPUT_SECONDS):
            fn(data)
        slowest[0] = max(slowest[0], time.perf_counter() - t)

    prop()
    assert slowest[0] < PER_INPUT_SECONDS


# -- the bugs the fuzzers found ------------------------------------------------------------------
def test_structured_log_resync_skips_unreadable_runs() -> None:
    """printk (structured layout): a corrupt log_buf_len (16 MiB) over a buffer whose pages are
    almost all missing, with a malformed first header. The resync after the damage tried every
    4-byte offset of the missing 16 MiB, one Python call each (tens of seconds; hours at the
    2 GiB cap); it now jumps over unreadable runs and has a bounded budget of probes."""
    from printkgen import SYMS, StructuredLog

    from vmcorekit.kernel.printk import read_log

    log = StructuredLog(buf_len=4096)
    for i in range(20):
        log.add(f"record {i}".encode(), i * 1000)
    img = log.image()
    vi = img.vmcoreinfo()
    segs = {a: bytes(b) for a, b in img.segments.items()}
    syms = bytearray(segs[SYMS])
    buf = struct.unpack_from("<Q", syms, vi.symbols["log_buf"] - SYMS)[0]
    nxt = (16 << 20) - 64
    struct.pack_into("<I", syms, vi.symbols["log_buf_len"] - SYMS, 16 << 20)  # only 4 KiB are in the dump
    struct.pack_into("<I", syms, vi.symbols["log_first_idx"] - SYMS, 0)
    struct.pack_into("<I", syms, vi.symbols["log_next_idx"] - SYMS, nxt)
    segs[SYMS] = bytes(syms)
    first = bytearray(segs[buf])
    struct.pack_into("<H", first, vi.offsets["printk_log.len"], 3)  # malformed: odd length
    segs[buf] = bytes(first)
    t = time.perf_counter()
    with time_limit(PER_INPUT_SECONDS):
        out = read_log(_harness.ImageMemory(segs, vi), levels=False)
    assert time.perf_counter() - t < 2
    # The resync lands on log_next_idx itself, inside the missing run, as an offset-by-offset
    # search would have (just sooner): every record in between is reported lost, once.
    assert out.records == []
    assert out.warnings == [f"printk: malformed record header at log_buf+0x0 (corrupt buffer): records in "
                            f"log_buf+0x0..+{nxt:#x} are lost"]
    assert out.gaps and out.gaps[0].size > 16 << 19


@pytest.mark.parametrize("layout", ["lockless", "structured"])
def test_huge_log_buffer_outside_the_dump_is_refused_without_allocating(layout: str) -> None:
    """printk: a corrupt ring size (lockless size_bits=30) or log_buf_len (1.5 GiB) naming memory
    the dump does not hold made read_region allocate the whole size (twice: a bytearray and its
    bytes copy) before finding every page missing: MemoryError under the fuzzer's bound. Above
    64 MiB it now samples the pages first and refuses an implausible buffer."""
    import tracemalloc

    from printkgen import PROFILE_61, SYMS, LocklessLog, StructuredLog

    from vmcorekit.errors import CorruptKernelDataError
    from vmcorekit.kernel.printk import read_log

    if layout == "lockless":
        ring = LocklessLog(count_bits=4, size_bits=10)
        for i in range(8):
            ring.add(f"record {i}".encode(), i)
        img = ring.image()
    else:
        slog = StructuredLog(buf_len=1024)
        for i in range(8):
            slog.add(f"record {i}".encode(), i)
        img = slog.image()
    vi = img.vmcoreinfo()
    segs = {a: bytes(b) for a, b in img.segments.items()}
    syms = bytearray(segs[SYMS])
    if layout == "lockless":
        rb = struct.unpack_from("<Q", syms, vi.symbols["prb"] - SYMS)[0]
        struct.pack_into("<I", syms, rb - SYMS + PROFILE_61["text_ring"] + PROFILE_61["size_bits"], 30)
    else:
        struct.pack_into("<I", syms, vi.symbols["log_buf_len"] - SYMS, 3 << 29)
    segs[SYMS] = bytes(syms)
    tracemalloc.start()
    try:
        with time_limit(PER_INPUT_SECONDS), pytest.raises(CorruptKernelDataError, match="not in the dump"):
            read_log(_harness.ImageMemory(segs, vi), levels=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20
