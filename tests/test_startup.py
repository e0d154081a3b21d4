"""Start-up: what `vmcorekit dmesg` imports, and the numpy-free paths it takes, which must
answer as the numpy paths do (the kdump rank index and memory ranges, the flattened
stream's segments)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmcorekit.dump import flat as flat_mod
from vmcorekit.dump import kdump as kdump_mod
from vmcorekit.dump import open_dump

REPO = Path(__file__).resolve().parent.parent


def _pieces(raw: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    """The bitmap as (offset, bytes) pieces split at `cuts`, all-zero pieces left out (the
    holes a sparse file's scan skips)."""
    edges = sorted({0, len(raw), *(c % (len(raw) + 1) for c in cuts)})
    out = [(a, raw[a:b]) for a, b in zip(edges, edges[1:])]
    return [(a, p) for a, p in out if any(p)]


bitmaps = st.lists(st.sampled_from([0, 0, 0xFF, 0xFF, 0x0F, 0xF0, 0x81, 0x7E, 1, 0x80]), max_size=600).map(bytes)


@given(bitmaps, st.lists(st.integers(0, 700), max_size=6), st.integers(0, 8))
def test_runs_pure_equal_numpy(raw: bytes, cuts: list[int], short: int) -> None:
    nbits = max(0, len(raw) * 8 - short)
    pieces = _pieces(raw, cuts)
    assert kdump_mod.runs_of_chunks_pure(pieces, nbits) == kdump_mod.runs_of_chunks(pieces, nbits)


@given(bitmaps, st.lists(st.integers(0, 700), max_size=6), st.sampled_from([1, 8, 64, 128]))
def test_rank_counts_pure_equal_numpy(raw: bytes, cuts: list[int], blk: int) -> None:
    a = np.frombuffer(raw, dtype=np.uint8)
    nblk = len(raw) // blk
    counts = np.zeros(nblk + 1, dtype=np.int64)
    for k in range(nblk + 1):
        counts[k] = int(np.bitwise_count(a[k * blk:(k + 1) * blk]).sum())
    prefix = np.concatenate([[0], np.cumsum(counts)]).tolist()
    assert kdump_mod.rank_counts_pure(_pieces(raw, cuts), len(raw), blk) == prefix


def test_fragmented_bitmap_is_left_to_numpy() -> None:
    raw = bytes([0x55]) * (kdump_mod.PURE_PARTIAL_BYTES + 1)
    assert kdump_mod.runs_of_chunks_pure([(0, raw)], len(raw) * 8) is None


def _kdump_index(path: Path) -> tuple[list[int], list[tuple[int, int]]]:
    with open_dump(str(path)) as d:
        k = d if hasattr(d, "_prefix") else d.parts[0]  # type: ignore[attr-defined]
        return list(k._prefix), [(r.start, r.end) for r in d.ranges()]


def test_kdump_open_pure_equals_numpy(sample_dump: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pure = _kdump_index(sample_dump)
    monkeypatch.setattr(kdump_mod, "PURE_BITMAP_BYTES", -1)
    assert _kdump_index(sample_dump) == pure


@pytest.mark.corpus
def test_flattened_segments_pure_equal_numpy(corpus_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = corpus_dir / "qmp-kaslr" / "vmcore.qemu-kdump-zlib"
    if not path.exists():
        pytest.skip(f"{path} is absent")

    def segs() -> tuple[list[int], list[int], list[int], int]:
        src = flat_mod.open_source(str(path))
        try:
            return list(src._starts), list(src._ends), list(src._fpos), src.size  # type: ignore[attr-defined]
        finally:
            src.close()

    pure = segs()
    monkeypatch.setattr(flat_mod, "PURE_RECORDS", -1)
    assert segs() == pure


@given(st.lists(st.tuples(st.integers(0, 64), st.integers(1, 16)), min_size=1, max_size=40))
def test_flat_segments_pure_equal_numpy_overlapping(records: list[tuple[int, int]]) -> None:
    """Overlapping records (a later one wins) resolve the same way on both paths."""
    offs = [o * 8 for o, _ in records]
    sizes = [s * 8 for _, s in records]
    fpos = [1000 + 100 * i for i in range(len(records))]
    a, b = object.__new__(flat_mod.FlatFile), object.__new__(flat_mod.FlatFile)
    a._build_segments_pure(offs, sizes, fpos)
    b._build_segments(np.array(offs, dtype=np.int64), np.array(sizes, dtype=np.int64), np.array(fpos, dtype=np.int64))
    assert (list(a._starts), list(a._ends), list(a._fpos), a.size) == \
        (list(b._starts), list(b._ends), list(b._fpos), b.size)


# -- the entry point's fast path for `dmesg` against the click CLI -----------------------------

def _vmcorekit(args: list[str], fast: bool) -> tuple[int, bytes, bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env["VMCOREKIT_FAST"] = "1" if fast else "0"
    env.pop("VMCOREKIT_NO_PAGER", None)
    r = subprocess.run([sys.executable, "-m", "vmcorekit", *args], capture_output=True, env=env, timeout=300)
    return r.returncode, r.stdout, r.stderr


def _forms(d: str) -> list[list[str]]:
    return [
        ["dmesg", d],
        ["--no-pager", "dmesg", d],
        ["dmesg", d, "--format", "makedumpfile"],
        ["dmesg", "--format=raw", d],
        ["dmesg", d, "--tail", "5"],
        ["dmesg", d, "--tail=0", "--tail", "3"],
        ["dmesg", d, "--since-clear", "--show-caller", "--dev-info"],
        ["dmesg", d, "--time", "none", "--color", "never"],
        ["dmesg", d, "--time=human"],
        ["dmesg", f"{d},"],
        ["log", d],
        ["log", "-t", d],
        ["log", d, "-T"],
        ["log", "-m", d],
    ]


def _bad_forms(d: str, tmp: Path) -> list[list[str]]:
    return [
        ["dmesg"],
        ["dmesg", str(tmp / "absent")],
        ["dmesg", str(tmp)],
        ["dmesg", d, "--format", "bogus"],
        ["dmesg", d, "--tail", "-1"],
        ["dmesg", d, "--tail", "x"],
        ["dmesg", d, "--tail"],
        ["dmesg", d, d],
        ["dmesg", d, "--bogus"],
        ["dmesg", str(REPO / "README.md")],
        ["log", d, "-t", "-T"],
        ["log", d, "--format", "raw"],
        ["log", str(tmp / "absent")],
    ]


def _same_both_ways(args: list[str]) -> int:
    fast, slow = _vmcorekit(args, True), _vmcorekit(args, False)
    assert fast == slow, f"vmcorekit {' '.join(args)}: the fast path and the click CLI differ"
    return fast[0]


def test_dmesg_fast_path_equals_click(sample_dump: Path, tmp_path: Path) -> None:
    d = str(sample_dump)
    codes = [_same_both_ways(a) for a in _forms(d)]
    assert codes[0] == 0 and 0 in codes[1:]
    bad = [_same_both_ways(a) for a in _bad_forms(d, tmp_path)]
    assert all(c in (1, 2) for c in bad), bad


def test_dmesg_fast_path_on_a_damaged_dump(sample_dump: Path, tmp_path: Path) -> None:
    """Errors, notes and partial results (exit 3) come out the same way."""
    data = sample_dump.read_bytes()
    for frac in (0.55, 0.9):
        cut = tmp_path / f"cut{frac}.kdump"
        cut.write_bytes(data[:int(len(data) * frac)])
        _same_both_ways(["dmesg", str(cut)])


@pytest.mark.corpus
def test_dmesg_fast_path_equals_click_corpus(corpus_case: Path, corpus_elf: Path) -> None:
    for dump in (corpus_elf, *sorted(corpus_case.glob("vmcore.*kdump*"))):
        for args in _forms(str(dump))[:3]:
            assert _same_both_ways(args) in (0, 3)


def test_dmesg_fast_path_imports_no_click_rich_numpy(sample_dump: Path, tmp_path: Path) -> None:
    code = ("import sys\nfrom vmcorekit.cli._entry import main\n"
            f"rc = main(['dmesg', {str(sample_dump)!r}])\n"
            "sys.stdout.flush()\n"
            "heavy = sorted({'click', 'rich', 'numpy'} & {m.split('.')[0] for m in sys.modules})\n"
            "print('HEAVY', rc, ','.join(heavy), file=sys.stderr)\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env.pop("VMCOREKIT_FAST", None)
    with open(tmp_path / "out", "wb") as out:
        r = subprocess.run([sys.executable, "-c", code], stdout=out, stderr=subprocess.PIPE, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr.decode().splitlines()[-1] == "HEAVY 0 ", r.stderr
    assert (tmp_path / "out").read_bytes() == _vmcorekit(["dmesg", str(sample_dump)], False)[1]
