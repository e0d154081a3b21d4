"""The filter's native page loop (the optional C extension `_pagepack`) against the pure-Python
path (VMCOREKIT_NATIVE=0): the same stored bytes for every codec, batch by batch and file by file.

Where the extension must exist (CI sets VMCOREKIT_REQUIRE_NATIVE=1, having a compiler), its
absence fails; elsewhere the native half skips and the Python path is what runs."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from vmcorekit.filter import FilterOptions, run_filter
from vmcorekit.filter import compress as cz
from vmcorekit.filter.pages import zero_rows

PS = 4096
CODECS = ("none", "zlib", "lzo", "snappy", "zstd")
needs_native = pytest.mark.skipif(cz.native_module() is None, reason="the _pagepack extension was not built (or VMCOREKIT_NATIVE=0)")


def test_native_built_where_required() -> None:
    if os.environ.get("VMCOREKIT_REQUIRE_NATIVE") != "1":
        pytest.skip("VMCOREKIT_REQUIRE_NATIVE is not set")
    import importlib
    try:
        importlib.import_module("vmcorekit.filter._pagepack")
    except ImportError as e:
        pytest.fail(f"pip install . did not build vmcorekit.filter._pagepack ({e})")
    if cz.liblzo2() is not None and os.environ.get("VMCOREKIT_NATIVE", "1") != "0":
        assert cz.native_codec("lzo") is not None


def _pages(rng: np.random.Generator) -> np.ndarray:
    """Zero, sparse, text-like, fill and incompressible pages, in a shuffled order."""
    pages = np.zeros((96, PS), dtype=np.uint8)
    pages[1:30] = rng.integers(0, 3, (29, PS), dtype=np.uint8) * rng.integers(0, 2, (29, PS), dtype=np.uint8)
    pages[30:50] = np.frombuffer((b"kernel text " * 400)[:PS], dtype=np.uint8)
    pages[50:60] = 0xcc
    pages[60:75] = rng.integers(0, 256, (15, PS), dtype=np.uint8)
    pages[75:80, ::97] = 1
    return pages[rng.permutation(len(pages))].copy()


@needs_native
@pytest.mark.parametrize("codec", ["lzo", "zlib"])
@pytest.mark.parametrize("dedupe", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_equals_python_path(codec: str, dedupe: bool, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """dedupe=True: the reuse candidates are looked up in Python, the rest packed in C."""
    if cz.native_codec(codec) is None:
        pytest.skip(f"no native {codec} here (library absent or not Python's)")
    rng = np.random.default_rng(seed)
    pages = _pages(rng)
    zero = zero_rows(pages)
    store = rng.random(len(pages)) < 0.8
    native = cz.PageCompressor(codec, PS, dedupe=dedupe)
    assert native.native is not None
    monkeypatch.setenv("VMCOREKIT_NATIVE", "0")
    python = cz.PageCompressor(codec, PS, dedupe=dedupe)
    assert python.native is None
    a, b = native.compress(pages, store, zero), python.compress(pages, store, zero)
    # a second batch meets pages of the first again: reused from the cache on both sides
    a2, b2 = native.compress(pages[::-1].copy(), store, zero[::-1].copy()), \
        python.compress(pages[::-1].copy(), store, zero[::-1].copy())
    assert a2.data == b2.data and a2.sizes.tolist() == b2.sizes.tolist() and a2.flags.tolist() == b2.flags.tolist()
    assert native.reused == python.reused
    assert a.data == b.data
    assert a.flags.tolist() == b.flags.tolist() and a.sizes.tolist() == b.sizes.tolist()
    assert a.flags.dtype == b.flags.dtype == np.uint32 and a.sizes.dtype == np.uint32
    # raw pages are stored as themselves, compressed ones shrank
    assert set(a.flags[a.sizes == PS].tolist()) <= {0}


@needs_native
def test_pack_refuses_inconsistent_batches() -> None:
    pp = cz.native_module()
    if cz.native_codec("zlib") is None:
        pytest.skip("no native zlib here")
    pages = np.zeros((4, PS), dtype=np.uint8)
    with pytest.raises(IndexError):
        pp.pack(pp.ZLIB, pages, np.array([0, 4], dtype=np.int64), np.zeros(2, bool), b"", PS)
    with pytest.raises(ValueError):
        pp.pack(pp.ZLIB, pages, np.array([0], dtype=np.int64), np.zeros(2, bool), b"", PS)
    with pytest.raises(ValueError):
        pp.pack(pp.ZLIB, pages[:, :100], np.array([0], dtype=np.int64), np.zeros(1, bool), b"", PS)
    with pytest.raises(ValueError):
        pp.pack(99, pages, np.array([0], dtype=np.int64), np.zeros(1, bool), b"", PS)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _both_ways(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **opts: object) -> None:
    name = "-".join(f"{k}{v}" for k, v in opts.items())
    native, python = tmp_path / f"{name}.native", tmp_path / f"{name}.python"
    run_filter(str(src), [str(native)], FilterOptions(**opts))  # type: ignore[arg-type]
    with monkeypatch.context() as m:
        m.setenv("VMCOREKIT_NATIVE", "0")
        run_filter(str(src), [str(python)], FilterOptions(**opts))  # type: ignore[arg-type]
    assert _sha(native) == _sha(python), f"native and Python outputs differ for {opts}"


@pytest.mark.parametrize("codec", CODECS)
def test_sample_same_file_both_ways(sample_dump: Path, tmp_path: Path, codec: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for level in (31, 0):
        _both_ways(sample_dump, tmp_path, monkeypatch, level=level, codec=codec, zlib_engine="zlib", threads=2)


@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.parametrize("codec", ["lzo", "zlib"])
def test_corpus_same_file_both_ways(corpus_elf: Path, tmp_path: Path, codec: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _both_ways(corpus_elf, tmp_path, monkeypatch, level=31, codec=codec, zlib_engine="zlib", threads=2)
    if codec == "lzo":  # the native loop's threads against the Python path's forked workers
        _both_ways(corpus_elf, tmp_path, monkeypatch, level=0, codec=codec, threads=2)


@needs_native
def test_zero_rows_native_equals_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C zero test stops at a page's first nonzero word; numpy reads all of it: the same
    answer for zero pages, pages with one set bit anywhere (first, last and middle bytes), and
    page sizes that are not a multiple of 64."""
    for ps in (4096, 64 * 3 + 8, 8):
        rng = np.random.default_rng(ps)
        pages = np.zeros((40, ps), dtype=np.uint8)
        for i, at in enumerate([0, ps - 1, ps // 2, 7, ps - 8, 63 % ps, 64 % ps]):
            pages[i + 1, at] = 1 << (i % 8)
        pages[20:30] = rng.integers(0, 2, (10, ps), dtype=np.uint8)
        native = zero_rows(pages)
        with monkeypatch.context() as m:
            m.setenv("VMCOREKIT_NATIVE", "0")
            python = zero_rows(pages)
        assert native.dtype == python.dtype == bool
        assert native.tolist() == python.tolist()
        assert native[0] and not native[1:8].any()
