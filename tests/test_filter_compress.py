"""The filter's batch compression (dedupe of equal pages, zero pages, raw fallback), its LZO
backends, the page reader and the batched descriptor writer."""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from elfgen import build_core, note
from vmcorekit.dump import open_dump
from vmcorekit.dump.codecs import CODEC_FLAGS
from vmcorekit.filter import FilterOptions, run_filter
from vmcorekit.filter import compress as cz
from vmcorekit.filter.bitmaps import PfnBitmap
from vmcorekit.kernel.memmap import read_mapped
from vmcorekit.filter.pages import PageSource, batch_plans, zero_rows

PS = 4096


def _decompress(codec: str, flags: int, data: bytes) -> bytes:
    if flags == 0:
        return data
    if codec == "zlib":
        return zlib.decompress(data)
    if codec == "lzo":
        import lzallright
        return lzallright.LZOCompressor.decompress(data, output_size_hint=PS)
    if codec == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=PS)
    import cramjam
    return bytes(cramjam.snappy.decompress_raw(data))


def _one_by_one(codec: str, pages: np.ndarray, rows: np.ndarray, engine: str = "zlib",
                inflate: bool = False) -> list[tuple[int, bytes]]:
    """What compressing each stored page on its own gives (inflate: decompressed again)."""
    fn = cz.compressor(codec, PS, engine)
    out = []
    for i in rows.tolist():
        c = fn(pages[i], pages[i].ctypes.data)
        out.append((CODEC_FLAGS[codec], c) if len(c) < PS else (0, pages[i].tobytes()))
    return [(f, _decompress(codec, f, d)) for f, d in out] if inflate else out


def _split(batch: cz.StoredBatch) -> list[tuple[int, bytes]]:
    ends = np.cumsum(batch.sizes.astype(np.int64)).tolist()
    starts = [0, *ends[:-1]]
    return [(int(f), batch.data[a:b]) for f, a, b in zip(batch.flags.tolist(), starts, ends)]


def _tricky_pages(rng: np.random.Generator) -> np.ndarray:
    """Zero pages, repeated pages, incompressible pages, and pairs of distinct pages whose
    multiplicative fingerprints are equal (they differ by 2**63 in two words: the sum of two
    odd multipliers is even, so the difference vanishes modulo 2**64)."""
    text = np.frombuffer((b"kernel text " * 400)[:PS], dtype=np.uint8)
    rand = rng.integers(0, 256, (3, PS), dtype=np.uint8)
    twin_a = text.copy().view(np.uint64)
    twin_b = twin_a.copy()
    twin_b[[3, 7]] ^= np.uint64(1 << 63)
    rows = [np.zeros(PS, np.uint8), text, np.full(PS, 0x5A, np.uint8), rand[0], text, twin_a.view(np.uint8),
            twin_b.view(np.uint8), np.full(PS, 0x5A, np.uint8), rand[0], twin_b.view(np.uint8),
            twin_a.view(np.uint8), rand[1], np.zeros(PS, np.uint8), text, np.full(PS, 0x6B, np.uint8)]
    return np.stack(rows * 3)


@pytest.mark.parametrize("codec,engine", [("zlib", "zlib"), ("zlib", "isal"), ("lzo", "auto"), ("snappy", "auto"),
                                          ("zstd", "auto")])
def test_batch_equals_page_by_page(codec: str, engine: str) -> None:
    pages = _tricky_pages(np.random.default_rng(5))
    zero = zero_rows(pages)
    store = np.ones(len(pages), dtype=bool)
    store[::7] = False  # rows another descriptor covers (shared zero page, missing)
    slow = (codec == "zlib" and engine == "zlib") or (codec == "lzo" and cz.lzo_backend() == "lzallright")
    # lookups cost more than fast codecs save
    assert cz.PageCompressor(codec, PS, zlib_engine_name=engine).dedupe == slow
    pc = cz.PageCompressor(codec, PS, dedupe=True, zlib_engine_name=engine)
    got = _split(pc.compress(pages[:20], store[:20], zero[:20])) + \
        _split(pc.compress(pages[20:], store[20:], zero[20:]))
    if engine == "isal":  # its streams depend on what its match table last held (see below)
        got = [(f, _decompress(codec, f, d)) for f, d in got]
    assert got == _one_by_one(codec, pages, np.flatnonzero(store), pc.engine, inflate=engine == "isal")
    assert pc.reused > 0  # the repeats were not compressed again
    for (flags, data), i in zip(got, np.flatnonzero(store).tolist()):
        assert (data if engine == "isal" else _decompress(codec, flags, data)) == pages[i].tobytes()
    assert any(f == 0 and len(d) == PS for f, d in got)  # random pages stay raw
    plain = cz.PageCompressor(codec, PS, dedupe=False, zlib_engine_name=engine)
    again = _split(plain.compress(pages, store, zero))
    if engine == "isal":
        again = [(f, _decompress(codec, f, d)) for f, d in again]
    assert again == got and plain.reused == 0


def test_dedupe_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cz, "CACHE_PAGES", 4)
    pages = np.stack([np.full(PS, v, np.uint8) for v in range(1, 11)] * 4)
    pc = cz.PageCompressor("zlib", PS, zlib_engine_name="zlib")
    rows = np.ones(len(pages), dtype=bool)
    assert _split(pc.compress(pages, rows, ~rows)) == _one_by_one("zlib", pages, np.flatnonzero(rows))
    assert len(pc._cache) <= 4


def test_none_and_zero_pages() -> None:
    pages = np.stack([np.zeros(PS, np.uint8), np.full(PS, 1, np.uint8), np.zeros(PS, np.uint8)])
    zero = zero_rows(pages)
    assert zero.tolist() == [True, False, True]
    raw = cz.PageCompressor("none", PS).compress(pages, np.array([True, True, False]), zero)
    assert raw.flags.tolist() == [0, 0] and raw.sizes.tolist() == [PS, PS] and raw.data == pages[:2].tobytes()
    z = cz.PageCompressor("zlib", PS, zlib_engine_name="zlib").compress(pages, np.ones(3, dtype=bool), zero)
    assert _split(z)[0] == _split(z)[2] == (1, zlib.compress(bytes(PS), 1))


def test_lzo_fallback_to_lzallright(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without liblzo2 the lzallright package compresses; both give LZO1X streams."""
    pages = _tricky_pages(np.random.default_rng(1))[:8]
    rows = np.ones(len(pages), dtype=bool)
    monkeypatch.setattr(cz, "_lzo_lib", False)
    monkeypatch.setattr(cz._local, "fns", {}, raising=False)
    monkeypatch.setattr(cz._local, "many", {}, raising=False)
    assert cz.lzo_backend() == "lzallright"
    assert cz.many_compressor("lzo", PS) is None
    for flags, data in _split(cz.PageCompressor("lzo", PS).compress(pages, rows, zero_rows(pages))):
        assert flags in (0, CODEC_FLAGS["lzo"])
    got = _split(cz.PageCompressor("lzo", PS).compress(pages, rows, zero_rows(pages)))
    assert [_decompress("lzo", f, d) for f, d in got] == [p.tobytes() for p in pages]


@pytest.mark.skipif(cz.liblzo2() is None, reason="liblzo2 is not installed")
def test_liblzo2_is_lzo1x_1() -> None:
    """liblzo2's lzo1x_1 (makedumpfile's compressor), checked against a known LZO1X-1 stream
    of makedumpfile's corpus output elsewhere; here: it round-trips through lzallright."""
    assert cz.lzo_backend() == "liblzo2"
    pages = _tricky_pages(np.random.default_rng(2))
    got = _one_by_one("lzo", pages, np.arange(len(pages)))
    assert [_decompress("lzo", f, d) for f, d in got] == [p.tobytes() for p in pages]


# -- reading pages --------------------------------------------------------------------------------

def _elf(tmp_path: Path, data: bytes, truncate: int = 0) -> Path:
    notes = note(b"CORE", 1, bytes(336))
    raw = build_core([(0, 0, data[:8 * PS]), (0, 0x20000, data[8 * PS:])], notes)
    p = tmp_path / "in.elf"
    p.write_bytes(raw[:len(raw) - truncate] if truncate else raw)
    return p


def test_page_source_reads_runs_and_marks_missing(tmp_path: Path) -> None:
    data = b"".join(bytes([i]) * PS for i in range(1, 21))
    path = _elf(tmp_path, data, truncate=PS + 100)  # the last two pages are cut
    with open_dump(str(path)) as phys:
        bm = PfnBitmap(64)
        bm.set_range(0, 8)
        bm.set_range(0x20, 0x2C)
        src = PageSource(phys, PS, 5)
        assert src._fd is not None
        got, missing = [], []
        for runs, n in batch_plans(bm, 0, 64, 5):
            assert n <= 5 and sum(k for _, k in runs) == n
            pages, miss = src.read(runs, n)
            got.append(pages.copy())
            missing.append(miss)
    pages = np.concatenate(got)
    miss = np.concatenate(missing)
    assert miss.tolist() == [False] * 18 + [True, True]
    assert pages[:18].tobytes() == data[:18 * PS]
    assert not pages[18:].any()


def test_read_mapped_matches_page_by_page() -> None:
    class Space:
        page_size = PS

        def __init__(self) -> None:
            self.phys = self
            self.mem = np.random.default_rng(3).integers(0, 256, 1 << 22, dtype=np.uint8).tobytes()

        def read(self, addr: int, n: int) -> bytes:  # phys and virtual alike: an identity map
            return self.mem[addr:addr + n]

        def explain(self, vaddr: int):  # type: ignore[no-untyped-def]
            class T:
                paddr = vaddr
                page_size = 1 << 21 if vaddr < 1 << 21 else PS
            return T()

    sp = Space()
    for a, n in [(0, 1 << 22), (100, 5000), ((1 << 21) - 7, 9000), (3 * PS + 5, 10)]:
        assert read_mapped(sp, a, n) == sp.mem[a:a + n]


def _page_of(data: bytes, pfn: int) -> bytes:
    """The page _elf() puts at `pfn`: its first 8 pages at pfn 0, the rest from pfn 32."""
    i = pfn if pfn < 8 else pfn - 32 + 8
    return data[i * PS:(i + 1) * PS]


def _workers_data() -> bytes:
    rng = np.random.default_rng(9)
    text = (b"some kernel data " * 300)[:PS]
    pages = [bytes(PS), text, rng.integers(0, 256, PS, dtype=np.uint8).tobytes(), b"\x5a" * PS]
    return b"".join(pages[i % 4] if i % 5 else text[i % 100:] + text[:i % 100] for i in range(40))


@pytest.mark.parametrize("codec", ["zlib", "lzo", "zstd", "snappy"])
def test_workers_do_not_change_bytes(tmp_path: Path, codec: str) -> None:
    """1, 2 or 3 workers write the same file: threads (libz, zstd), or forked processes
    handing their bytes back through the shared slots (LZO, snappy)."""
    data = _workers_data()
    path = _elf(tmp_path, data)
    outs, reused = [], []
    for threads in (1, 2, 3):
        out = tmp_path / f"t{threads}"
        st = run_filter(str(path), [str(out)], FilterOptions(level=1, codec=codec, zlib_engine="zlib",
                                                              threads=threads, batch_pages=3))
        outs.append(out.read_bytes())
        reused.append(st.reused_pages)
    assert outs[0] == outs[1] == outs[2]
    if codec == "zlib":
        assert reused[0] > 0 and all(r > 0 for r in reused)
    with open_dump(str(tmp_path / "t2")) as dst:
        pfns = dst.dumped_pfns().tolist()
        assert len(pfns) > 20
        for pfn in pfns:
            assert dst.read(pfn * PS, PS) == _page_of(data, pfn)


def test_isal_workers_keep_every_page(tmp_path: Path) -> None:
    """ISA-L's streams may differ from run to run (it does not clear all of its match table for
    small inputs, so a stale entry can offer another valid match), never the pages: forked
    workers (ISA-L holds the GIL, so threads would not help) write what one worker writes,
    page for page."""
    data = _workers_data()
    path = _elf(tmp_path, data)
    for threads in (1, 2):
        out = tmp_path / f"i{threads}"
        st = run_filter(str(path), [str(out)], FilterOptions(level=1, codec="zlib", zlib_engine="isal",
                                                              threads=threads, batch_pages=3))
        assert st.engine == "isal"
        with open_dump(str(out)) as dst:
            pfns = dst.dumped_pfns().tolist()
            assert len(pfns) > 20
            assert [dst.read(p * PS, PS) for p in pfns] == [_page_of(data, p) for p in pfns]


def test_forked_worker_failure_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception in a forked worker becomes a FilterError naming it, and no output file."""
    from vmcorekit.filter import FilterError

    def broken(self, pages, store, zero):  # type: ignore[no-untyped-def]
        raise RuntimeError("codec exploded")

    monkeypatch.setattr(cz.PageCompressor, "compress", broken)
    path = _elf(tmp_path, _workers_data())
    out = tmp_path / "o"
    with pytest.raises(FilterError, match="RuntimeError: codec exploded"):
        run_filter(str(path), [str(out)], FilterOptions(level=1, codec="zlib", zlib_engine="isal", threads=2,
                                                        batch_pages=3))
    assert not out.exists() and not list(tmp_path.glob(".o.*"))


def test_zlib_engine_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto is libz (reproducible bytes); isal only when asked for, and without the isal
    package asking for it is a clear error before any output; an unknown name is refused."""
    assert cz.zlib_engine("zlib") == cz.zlib_engine("auto") == "zlib"
    assert cz.zlib_engine("isal") == "isal"
    import builtins
    real_import = builtins.__import__

    def no_isal(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.startswith("isal"):
            raise ImportError("No module named 'isal'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_isal)
    assert cz.zlib_engine("auto") == "zlib"
    with pytest.raises(cz.CodecUnavailableError, match="isal"):
        cz.zlib_engine("isal")
    with pytest.raises(ValueError, match="zlib engine"):
        cz.zlib_engine("fast")


def test_isal_pages_inflate_with_zlib() -> None:
    pages = _tricky_pages(np.random.default_rng(3))
    got = _split(cz.PageCompressor("zlib", PS, zlib_engine_name="isal").compress(
        pages, np.ones(len(pages), dtype=bool), zero_rows(pages)))
    assert [_decompress("zlib", f, d) for f, d in got] == [p.tobytes() for p in pages]
    assert any(f == CODEC_FLAGS["zlib"] for f, _ in got) and any(f == 0 for f, _ in got)


def test_forked_slots_are_reused_safely(tmp_path: Path) -> None:
    """Many more batches than result slots: every slot is written again and again by forked
    workers while the parent copies earlier batches out; the file equals one worker's."""
    rng = np.random.default_rng(11)
    text = (b"slab object 0123456789 " * 200)[:PS]
    data = b"".join(text[i % 97:] + text[:i % 97] if i % 3 else rng.integers(0, 256, PS, dtype=np.uint8).tobytes()
                    for i in range(300))
    path = _elf(tmp_path, data)
    outs = []
    for threads in (1, 2):
        out = tmp_path / f"s{threads}"
        run_filter(str(path), [str(out)], FilterOptions(level=0, codec="lzo", threads=threads, batch_pages=1))
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    with open_dump(str(tmp_path / "s2")) as dst:
        assert [dst.read(p * PS, PS) for p in dst.dumped_pfns().tolist()] == \
            [_page_of(data, p) for p in dst.dumped_pfns().tolist()]


def test_default_output_is_reproducible(tmp_path: Path) -> None:
    """Same input and options give the same bytes: two runs, and 1 vs 2 workers (forked or
    threaded), with the default zlib engine and the other codecs."""
    path = _elf(tmp_path, _workers_data())
    for codec in ("zlib", "lzo", "zstd"):
        outs = []
        for i, threads in enumerate((1, 2, 2)):
            out = tmp_path / f"{codec}{i}"
            run_filter(str(path), [str(out)], FilterOptions(level=1, codec=codec, threads=threads, batch_pages=3))
            outs.append(out.read_bytes())
        assert outs[0] == outs[1] == outs[2], codec
