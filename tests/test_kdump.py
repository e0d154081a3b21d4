"""kdump-compressed reader: synthetic files for every codec and header version, split sets,
and the real makedumpfile/QEMU outputs of the corpus."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from kdumpgen import build_kdump, flatten, page_pattern
from vmcorekit.dump import kdump as kdump_mod
from vmcorekit.dump.base import PageState
from vmcorekit.dump.kdump import KdumpFile, KdumpSplitSet, bit_runs, flattened_head, is_kdump, open_kdump
from vmcorekit.errors import (
    DumpFormatError,
    PageExcludedError,
    PageMissingError,
    PageNotInDumpError,
)

PS = 4096


def write(tmp_path: Path, data: bytes, name: str = "dump.kdump") -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def standard_pages() -> tuple[dict[int, bytes], list[int]]:
    """Pfns 0..63: 2..9 and 20..39 dumped (21 and 30 all-zero), 10..19 excluded, rest holes."""
    pages = {p: page_pattern(p) for p in list(range(2, 10)) + list(range(20, 40))}
    pages[21] = bytes(PS)
    pages[30] = bytes(PS)
    return pages, list(range(10, 20))


@pytest.mark.parametrize("codec", ["zlib", "lzo", "snappy", "zstd", "none"])
def test_codec_round_trip(tmp_path: Path, codec: str) -> None:
    pages, excluded = standard_pages()
    img = build_kdump(pages, max_mapnr=64, excluded=excluded, codec=codec)
    with KdumpFile(write(tmp_path, img.data)) as k:
        for pfn, content in pages.items():
            assert k.read(pfn * PS, PS) == content
        assert k.info.codec == codec
        assert k.info.format == "kdump"
        assert "none" in k.info.extra["page_codecs"]  # the shared zero page is stored raw
        assert k.info.machine == "x86_64"
        assert k.info.dump_level == 31
        assert k.info.header_version == 6
        assert k.info.page_size == PS
        assert k.info.incomplete is False
        assert k.info.extra["utsname"]["release"] == "6.1.0-test"
        assert k.info.extra["nr_cpus"] == 2
        assert k.info.extra["max_mapnr"] == 64
        assert k.info.extra["block_size"] == PS
        assert k.info.extra["timestamp"] == 1_700_000_000


def test_mixed_codecs(tmp_path: Path) -> None:
    names = ["zlib", "lzo", "snappy", "zstd", "none"]
    pages = {p: page_pattern(p) for p in range(10)}
    img = build_kdump(pages, max_mapnr=10, codec={p: names[p % 5] for p in pages})
    with KdumpFile(write(tmp_path, img.data)) as k:
        assert [k.read(p * PS, PS) for p in range(10)] == [pages[p] for p in range(10)]
        assert k.info.codec == "lzo,snappy,zlib,zstd"
        assert k.info.extra["page_codecs"] == sorted(names)


def test_page_states_and_errors(tmp_path: Path) -> None:
    pages, excluded = standard_pages()
    img = build_kdump(pages, max_mapnr=64, excluded=excluded)
    with KdumpFile(write(tmp_path, img.data)) as k:
        assert k.page_state(2) is PageState.PRESENT
        assert k.page_state(21) is PageState.ZERO
        assert k.page_state(10) is PageState.EXCLUDED
        assert k.page_state(0) is PageState.HOLE
        assert k.page_state(45) is PageState.HOLE
        assert k.page_state(10**9) is PageState.HOLE
        assert k.read(21 * PS, PS) == bytes(PS)
        with pytest.raises(PageExcludedError) as ei:
            k.read(12 * PS + 5, 1)
        assert ei.value.address == 12 * PS + 5  # the first address that cannot be read
        with pytest.raises(PageNotInDumpError):
            k.read(50 * PS, 8)
        # A read that runs from a dumped page into an excluded one fails on the excluded one.
        with pytest.raises(PageExcludedError) as ei:
            k.read(9 * PS + 100, PS)
        assert ei.value.address == 10 * PS


def test_ranges_come_from_first_bitmap(tmp_path: Path) -> None:
    pages, excluded = standard_pages()
    img = build_kdump(pages, max_mapnr=64, excluded=excluded)
    with KdumpFile(write(tmp_path, img.data)) as k:
        assert [(r.start // PS, r.end // PS) for r in k.ranges()] == [(2, 40)]


def test_unaligned_reads_cross_pages(tmp_path: Path) -> None:
    pages = {p: page_pattern(p) for p in range(4, 12)}
    img = build_kdump(pages, max_mapnr=16)
    blob = b"".join(pages[p] for p in range(4, 12))
    with KdumpFile(write(tmp_path, img.data)) as k:
        rng = random.Random(5)
        for _ in range(200):
            a = rng.randrange(0, len(blob))
            n = rng.randrange(1, len(blob) - a + 1)
            assert k.read(4 * PS + a, n) == blob[a:a + n]


def test_rank_index_on_sparse_bitmap(tmp_path: Path) -> None:
    """Descriptors are found by rank in the 2nd bitmap: spread pages over many 64-bit words,
    with excluded pages in between, and check every page lands on its own data."""
    rng = random.Random(7)
    pfns = sorted(rng.sample(range(100_000), 300))
    pages = {p: page_pattern(p) for p in pfns[::2]}
    excluded = pfns[1::2]
    img = build_kdump(pages, max_mapnr=100_003, excluded=excluded)
    with KdumpFile(write(tmp_path, img.data)) as k:
        assert k.dumpable_pages == len(pages)
        for p, content in pages.items():
            assert k.read(p * PS, PS) == content
        for p in excluded:
            assert k.page_state(p) is PageState.EXCLUDED
        assert k.dumped_pfns().tolist() == sorted(pages)


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6])
def test_header_versions(tmp_path: Path, version: int) -> None:
    pages = {p: page_pattern(p) for p in range(1, 6)}
    img = build_kdump(pages, max_mapnr=8, header_version=version)
    with KdumpFile(write(tmp_path, img.data)) as k:
        assert k.info.header_version == version
        assert k.read(3 * PS, PS) == pages[3]
        owners = [n.owner for n in k.notes]
        # VMCOREINFO is in the sub-header from v3, the ELF notes from v4.
        assert owners == (["CORE", "CORE", "VMCOREINFO"] if version >= 4 else
                          ["VMCOREINFO"] if version == 3 else [])


def test_notes_and_vmcoreinfo(tmp_path: Path) -> None:
    pages = {1: page_pattern(1)}
    img = build_kdump(pages, max_mapnr=8, prstatus_cpus=3)
    with KdumpFile(write(tmp_path, img.data)) as k:
        assert len(k.notes_named("CORE", 1)) == 3
        assert len(k.notes_named("VMCOREINFO")) == 1  # not duplicated from the sub-header
        assert k.vmcoreinfo_raw is not None and k.vmcoreinfo_raw.startswith(b"OSRELEASE=6.1.0-test\n")
        note = k.notes_named("CORE")[0]
        assert note.offset is not None and img.data[note.offset:note.offset + 4] == b"\0\0\0\0"

    # VMCOREINFO only in the sub-header (as QEMU and old makedumpfile write it).
    img = build_kdump(pages, max_mapnr=8, vmcoreinfo=b"OSRELEASE=x\n", vmcoreinfo_in_notes=False)
    with KdumpFile(write(tmp_path, img.data, "b.kdump")) as k:
        assert [n.owner for n in k.notes] == ["CORE", "CORE", "VMCOREINFO"]
        assert k.vmcoreinfo_raw == b"OSRELEASE=x\n"


def test_larger_page_size(tmp_path: Path) -> None:
    ps = 16384
    pages = {p: page_pattern(p, ps) for p in (0, 3, 5)}
    pages[4] = bytes(ps)
    img = build_kdump(pages, max_mapnr=9, page_size=ps, codec="zstd")
    with KdumpFile(write(tmp_path, img.data)) as k:
        assert k.page_size == ps
        assert k.read(3 * ps + 10, ps) == pages[3][10:] + bytes(10)
        assert k.page_state(4) is PageState.ZERO


def test_page_cache_avoids_second_decompression(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pages = {p: page_pattern(p) for p in range(8)}
    img = build_kdump(pages, max_mapnr=8)
    calls = []
    real = kdump_mod.decompress_page

    def counting(*a, **kw):  # type: ignore[no-untyped-def]
        calls.append(a[0])
        return real(*a, **kw)

    monkeypatch.setattr(kdump_mod, "decompress_page", counting)
    with KdumpFile(write(tmp_path, img.data), cache_pages=4) as k:
        for _ in range(3):
            assert k.read(PS, 16) == pages[1][:16]
        assert len(calls) == 1
        for p in range(2, 8):  # push pfn 1 out of the 4-page LRU
            k.read(p * PS, 1)
        k.read(PS, 1)
        assert len(calls) == 8


def test_bit_runs() -> None:
    rng = np.random.default_rng(3)
    bits = (rng.random(5000) < 0.5).astype(np.uint8)
    bits[100:3000] = 1
    packed = np.packbits(bits, bitorder="little")
    want = []
    start = None
    for i, b in enumerate(bits.tolist() + [0]):
        if b and start is None:
            start = i
        elif not b and start is not None:
            want.append((start, i))
            start = None
    # Small chunks exercise the all-set / all-clear shortcuts and chunk borders.
    assert bit_runs(packed, 5000, chunk_bytes=7) == want
    assert bit_runs(packed, 5000) == want
    assert bit_runs(packed, 4001) == [r for r in
                                      [(a, min(b, 4001)) for a, b in want if a < 4001]]


def test_detection_helpers(tmp_path: Path) -> None:
    img = build_kdump({1: page_pattern(1)}, max_mapnr=4)
    assert is_kdump(img.data[:16])
    assert not is_kdump(b"\x7fELF" + bytes(12))
    flat = flatten(img.data, rewrite_header=False, chunk=1 << 20)
    assert flattened_head(flat[:8192])[:8] == b"KDUMP   "
    assert flattened_head(img.data[:8192]) is None


# -- split sets ---------------------------------------------------------------------------------
def split_parts(tmp_path: Path, bounds: list[tuple[int, int]], **kw: object) -> tuple[list[str], dict[int, bytes]]:
    pages = {p: page_pattern(p) for p in range(1, 90) if p % 7}
    pages[50] = bytes(PS)
    paths = []
    for i, b in enumerate(bounds):
        img = build_kdump(pages, max_mapnr=96, excluded=[p for p in range(1, 96) if p not in pages], split=b,
                          **kw)  # type: ignore[arg-type]
        paths.append(write(tmp_path, img.data, f"part{i}"))
    return paths, pages


def test_split_set(tmp_path: Path) -> None:
    paths, pages = split_parts(tmp_path, [(0, 30), (30, 61), (61, 96), (96, 96)])
    with open_kdump([paths[2], paths[0], paths[3], paths[1]]) as s:
        assert isinstance(s, KdumpSplitSet)
        assert s.info.format == "kdump-split"
        assert [p["start_pfn"] for p in s.info.extra["parts"]] == [0, 30, 61, 96]
        for pfn, content in pages.items():
            assert s.read(pfn * PS, PS) == content
        blob = b"".join(pages[p] for p in range(57, 63))  # crosses the 61 boundary
        assert s.read(57 * PS, 6 * PS) == blob
        assert s.page_state(50) is PageState.ZERO
        assert s.page_state(7) is PageState.EXCLUDED
        assert s.page_state(92) is PageState.EXCLUDED
        assert s.page_state(0) is PageState.HOLE
        assert s.page_state(200) is PageState.HOLE
        assert [(r.start // PS, r.end // PS) for r in s.ranges()] == [(1, 96)]
        assert len(s.notes_named("VMCOREINFO")) == 1


def test_split_set_missing_part(tmp_path: Path) -> None:
    paths, pages = split_parts(tmp_path, [(0, 30), (30, 61), (61, 96)])
    with KdumpSplitSet([paths[0], paths[2]]) as s:
        assert s.read(5 * PS, PS) == pages[5]
        assert s.page_state(40) is PageState.MISSING
        with pytest.raises(PageMissingError, match="split set"):
            s.read(40 * PS, 1)
    # One part on its own: pfns of the other parts are missing, its own read fine.
    with open_kdump([paths[1]]) as k:
        assert isinstance(k, KdumpFile) and k.split
        assert k.read(40 * PS, PS) == pages[40]
        assert k.page_state(5) is PageState.MISSING


def test_split_set_rejects_bad_sets(tmp_path: Path) -> None:
    paths, _ = split_parts(tmp_path, [(0, 40), (30, 96)])
    with pytest.raises(DumpFormatError, match="overlap"):
        KdumpSplitSet(paths)
    plain = write(tmp_path, build_kdump({1: page_pattern(1)}, max_mapnr=96).data, "plain")
    with pytest.raises(DumpFormatError, match="split=0"):
        KdumpSplitSet([paths[0], plain])
    other = write(tmp_path, build_kdump({1: page_pattern(1)}, max_mapnr=128, split=(40, 128)).data, "other")
    with pytest.raises(DumpFormatError, match="max_mapnr"):
        KdumpSplitSet([paths[0], other])


# -- the real dumps (fixtures corpus_case / corpus_elf / corpus_dir from conftest.py) --------------
@pytest.mark.corpus
def test_corpus_makedumpfile_header(corpus_case: Path) -> None:
    with KdumpFile(str(corpus_case / "vmcore.c-d31.kdump")) as k:
        assert k.info.codec == "zlib"
        assert k.info.dump_level == 31
        assert k.info.machine == "x86_64"
        assert k.info.header_version == 6
        assert k.info.extra["utsname"]["release"] == "6.1.0-56-amd64"
        assert len(k.notes_named("CORE", 1)) == 2
        want = (corpus_case / "vmcoreinfo.txt").read_bytes()
        assert k.vmcoreinfo_raw is not None and k.vmcoreinfo_raw.rstrip(b"\0") == want.rstrip(b"\0")
        states = {k.page_state(int(p)) for p in k.dumped_pfns()[::97]}
        assert states <= {PageState.PRESENT, PageState.ZERO}


@pytest.mark.corpus
def test_corpus_pages_equal_elf(corpus_case: Path, corpus_elf: Path) -> None:
    """Every page makedumpfile kept equals the source ELF's bytes at that physical address."""
    from vmcorekit.dump.elf import ElfDump

    with ElfDump(str(corpus_elf)) as elf, KdumpFile(str(corpus_case / "vmcore.c-d31.kdump")) as k:
        pfns = k.dumped_pfns()
        assert len(pfns) > 10_000
        for pfn in pfns.tolist():
            assert k.read(pfn * PS, PS) == elf.read(pfn * PS, PS), hex(pfn)


@pytest.mark.corpus
def test_corpus_qemu_kdump_zlib_flattened(corpus_dir: Path) -> None:
    from conftest import decompressed_elf
    from vmcorekit.dump.elf import ElfDump

    case = corpus_dir / "qmp-kaslr"
    if not (case / "vmcore.qemu-kdump-zlib").exists():
        pytest.skip("qmp-kaslr/vmcore.qemu-kdump-zlib absent")
    with KdumpFile(str(case / "vmcore.qemu-kdump-zlib")) as k, ElfDump(str(decompressed_elf(case))) as elf:
        assert k.info.extra["flattened"] is True
        assert k.info.codec == "zlib"
        assert k.info.dump_level == 1  # QEMU drops nothing but dedupes zero pages
        assert k.vmcoreinfo_raw is not None and b"OSRELEASE=6.1.0-56-amd64" in k.vmcoreinfo_raw
        assert 0xFD000000 in [r.start for r in k.ranges()]  # QEMU also dumps device RAM
        pfns = k.dumped_pfns().tolist()
        assert len(pfns) > 60_000
        differ = sum(k.read(p * PS, PS) != elf.read(p * PS, PS) for p in pfns)
        # The ELF and this file are two QMP dumps taken one after the other from the same
        # spinning guest: a few pages (timers) changed in between.
        assert differ <= 8
