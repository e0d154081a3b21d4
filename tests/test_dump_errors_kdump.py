"""Damaged and hostile kdump files: every header problem is a DumpFormatError that says what
was expected, absurd sizes never allocate, and a damaged page fails alone."""
from __future__ import annotations

import struct
import sys
import tracemalloc
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdumpgen import PAGE_DESC, build_kdump, page_pattern
from vmcorekit.dump import codecs
from vmcorekit.dump.base import PageState
from vmcorekit.dump.codecs import (
    CodecUnavailableError,
    compress_page,
    decompress_page,
)
from vmcorekit.dump.kdump import KdumpFile
from vmcorekit.errors import (
    CorruptPageError,
    DumpFormatError,
    MemoryReadError,
    PageMissingError,
    UnsupportedDumpError,
    VmcorekitError,
)

PS = 4096
# Offsets in disk_dump_header (64-bit layout).
VERSION_OFF = 8
STATUS_OFF = 424
BLOCK_SIZE_OFF = 428
SUB_HDR_SIZE_OFF = 432
BITMAP_BLOCKS_OFF = 436
MAX_MAPNR_OFF = 440
# Offsets in kdump_sub_header.
SUB_SPLIT = 12
SUB_OFF_NOTE = 48
SUB_MAX_MAPNR_64 = 96


def pages_10() -> dict[int, bytes]:
    pages = {p: page_pattern(p) for p in range(1, 11)}
    pages[6] = bytes(PS)
    return pages


def write(tmp_path: Path, data: bytes | bytearray, name: str = "dump") -> str:
    p = tmp_path / name
    p.write_bytes(bytes(data))
    return str(p)


def patch(data: bytes, off: int, fmt: str, *values: int) -> bytearray:
    b = bytearray(data)
    struct.pack_into(fmt, b, off, *values)
    return b


@pytest.fixture
def img():  # type: ignore[no-untyped-def]
    return build_kdump(pages_10(), max_mapnr=12, excluded=[11])


def open_err(tmp_path: Path, data: bytes | bytearray) -> DumpFormatError:
    with pytest.raises(DumpFormatError) as ei:
        KdumpFile(write(tmp_path, data))
    return ei.value


# -- headers -----------------------------------------------------------------------------------
def test_empty_file(tmp_path: Path) -> None:
    e = open_err(tmp_path, b"")
    assert "empty" in e.message and e.offset is None


def test_wrong_magic(tmp_path: Path, img) -> None:  # type: ignore[no-untyped-def]
    e = open_err(tmp_path, b"NOTKDUMP" + img.data[8:])
    assert "expected signature 'KDUMP   '" in e.message and e.offset == 0
    e = open_err(tmp_path, b"\x7fELF" + bytes(100))
    assert "ELF" in e.message
    with pytest.raises(UnsupportedDumpError, match="DISKDUMP"):
        KdumpFile(write(tmp_path, b"DISKDUMP" + img.data[8:]))


@pytest.mark.parametrize("size", [8, 100, 463])
def test_truncated_header(tmp_path: Path, img, size: int) -> None:  # type: ignore[no-untyped-def]
    e = open_err(tmp_path, img.data[:size])
    assert "truncated header" in e.message and "464" in e.message


@pytest.mark.parametrize("version", [0, -1, 99, 1 << 20])
def test_bad_header_version(tmp_path: Path, img, version: int) -> None:  # type: ignore[no-untyped-def]
    e = open_err(tmp_path, patch(img.data, VERSION_OFF, "<i", version))
    assert f"header_version {version}" in e.message and e.offset == VERSION_OFF


def test_newer_header_version_reads_as_6(tmp_path: Path, img) -> None:  # type: ignore[no-untyped-def]
    with KdumpFile(write(tmp_path, patch(img.data, VERSION_OFF, "<i", 7))) as k:
        assert k.read(PS, PS) == page_pattern(1)
        assert any("newer" in w for w in k.info.extra["warnings"])


def test_big_endian_and_32bit_headers_are_unsupported(tmp_path: Path, img) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnsupportedDumpError, match="big-endian"):
        KdumpFile(write(tmp_path, patch(img.data, VERSION_OFF, ">i", 6)))
    # A 32-bit host puts block_size 12 bytes earlier (8-byte struct timeval).
    b = patch(img.data, BLOCK_SIZE_OFF, "<i", 0)
    struct.pack_into("<i", b, 416, PS)
    with pytest.raises(UnsupportedDumpError, match="32-bit"):
        KdumpFile(write(tmp_path, b))


@pytest.mark.parametrize("bs", [0, -4096, 3000, 1 << 30])
def test_bad_block_size(tmp_path: Path, img, bs: int) -> None:  # type: ignore[no-untyped-def]
    e = open_err(tmp_path, patch(img.data, BLOCK_SIZE_OFF, "<i", bs))
    assert f"block_size {bs}" in e.message and "power of two" in e.message


def test_absurd_sizes_do_not_allocate(tmp_path: Path, img) -> None:  # type: ignore[no-untyped-def]
    cases = [
        (BITMAP_BLOCKS_OFF, "<I", 1 << 31, "bitmap blocks"),
        (BITMAP_BLOCKS_OFF, "<I", 3, "even number"),
        (BITMAP_BLOCKS_OFF, "<I", 0, "even number"),
        (SUB_HDR_SIZE_OFF, "<i", 1 << 30, "sub-header blocks"),
        (SUB_HDR_SIZE_OFF, "<i", 0, "sub_hdr_size 0"),
        (SUB_HDR_SIZE_OFF, "<i", -7, "sub_hdr_size -7"),
    ]
    tracemalloc.start()
    try:
        for off, fmt, value, words in cases:
            e = open_err(tmp_path, patch(img.data, off, fmt, value))
            assert words in e.message
            assert str(len(img.data)) in e.message or "expected" in e.message
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_absurd_max_mapnr_is_clamped_to_bitmap(tmp_path: Path, img) -> None:  # type: ignore[no-untyped-def]
    b = patch(img.data, MAX_MAPNR_OFF, "<I", 0xFFFFFFFF)
    struct.pack_into("<Q", b, img.sub_off + SUB_MAX_MAPNR_64, 1 << 60)
    with KdumpFile(write(tmp_path, b)) as k:
        assert k.max_mapnr == PS * 8  # one bitmap block
        assert any("max_mapnr" in w for w in k.info.extra["warnings"])
        assert k.read(PS, PS) == page_pattern(1)
    b = patch(img.data, img.sub_off + SUB_MAX_MAPNR_64, "<Q", 0)
    struct.pack_into("<I", b, MAX_MAPNR_OFF, 0)
    assert "max_mapnr 0" in open_err(tmp_path, b).message


def test_truncated_bitmap(tmp_path: Path, img) -> None:  # type: ignore[no-untyped-def]
    # Inside the 1st bitmap.
    e = open_err(tmp_path, img.data[:img.bitmap_off + 100])
    assert "bitmap blocks" in e.message and str(img.bitmap_off + 100) in e.message
    # Inside the part of the 2nd bitmap that max_mapnr needs.
    e = open_err(tmp_path, img.data[:img.bitmap_off + PS + 1])
    assert "2nd bitmap" in e.message


def test_unwritten_bitmap_padding_is_accepted(tmp_path: Path) -> None:
    """makedumpfile leaves the 2nd bitmap's padding unwritten in an empty --split part, so the
    file ends before the bitmap blocks do."""
    img = build_kdump({1: page_pattern(1)}, max_mapnr=12, split=(12, 12))
    cut = img.data[:img.bitmap_off + PS + 2]
    with KdumpFile(write(tmp_path, cut)) as k:
        assert k.dumpable_pages == 0
        assert k.page_state(1) is PageState.MISSING


def test_note_area_beyond_eof(tmp_path: Path, img) -> None:  # type: ignore[no-untyped-def]
    b = patch(img.data, img.sub_off + SUB_OFF_NOTE, "<q", len(img.data) + 5)
    e = open_err(tmp_path, b)
    assert "ELF notes" in e.message and str(len(img.data)) in e.message


def test_bad_split_range(tmp_path: Path) -> None:
    img = build_kdump({1: page_pattern(1)}, max_mapnr=12, split=(0, 12))
    b = patch(img.data, img.sub_off + 80, "<QQ", 9, 3)
    assert "split part" in open_err(tmp_path, b).message


# -- pages -----------------------------------------------------------------------------------
def test_truncated_page_data(tmp_path: Path, img) -> None:  # type: ignore[no-untyped-def]
    off7, size7 = img.page_off[7]
    cut = img.data[:off7 + size7 // 2]
    with KdumpFile(write(tmp_path, cut)) as k:
        for p in range(1, 7):
            assert k.read(p * PS, PS) == pages_10()[p]
        for p in (7, 8, 9, 10):
            assert k.page_state(p) is PageState.MISSING
        with pytest.raises(PageMissingError, match="beyond the end of the file"):
            k.read(7 * PS, 4)


def test_descriptor_table_beyond_eof(tmp_path: Path, img) -> None:  # type: ignore[no-untyped-def]
    cut = img.data[:img.desc_off[4] + 10]
    with KdumpFile(write(tmp_path, cut)) as k:
        assert any("descriptor table" in w for w in k.info.extra["warnings"])
        with pytest.raises(PageMissingError, match="page descriptor at file offset"):
            k.read(5 * PS, 1)
        assert k.page_state(1) is PageState.MISSING  # its data is gone too
        assert k.page_state(11) is PageState.EXCLUDED


def test_descriptor_pointing_beyond_eof(tmp_path: Path, img) -> None:  # type: ignore[no-untyped-def]
    b = patch(img.data, img.desc_off[4], "<qIIQ", len(img.data) + PS, 100, 1, 0)
    with KdumpFile(write(tmp_path, b)) as k:
        assert k.page_state(4) is PageState.MISSING
        with pytest.raises(PageMissingError):
            k.read(4 * PS, 1)
        assert k.read(3 * PS, PS) == pages_10()[3]
        assert k.read(5 * PS, PS) == pages_10()[5]


@pytest.mark.parametrize("desc,words", [
    ((-4096, 100, 1, 0), "claims offset"),
    ((8192, 1 << 31, 1, 0), "claims offset"),  # 2 GiB "compressed page": never allocated
    ((8192, 100, 0x3, 0), "several codecs"),
    ((8192, 100, 0, 0), "raw page holds 100 bytes"),
])
def test_corrupt_descriptors(tmp_path: Path, img, desc, words: str) -> None:  # type: ignore[no-untyped-def]
    b = patch(img.data, img.desc_off[4], "<qIIQ", *desc)
    with KdumpFile(write(tmp_path, b)) as k:
        assert k.page_state(4) is PageState.CORRUPT
        with pytest.raises(CorruptPageError, match=words) as ei:
            k.read(4 * PS + 7, 1)
        assert ei.value.address == 4 * PS + 7
        assert k.read(5 * PS, PS) == pages_10()[5]


def test_compressed_descriptor_at_zero_page_is_not_zero(tmp_path: Path, img) -> None:  # type: ignore[no-untyped-def]
    """Only a raw, page-sized descriptor at the shared zero page means ZERO."""
    b = patch(img.data, img.desc_off[4], "<qIIQ", img.data_off, 100, 1, 0)
    with KdumpFile(write(tmp_path, b)) as k:
        assert k.page_state(6) is PageState.ZERO
        assert k.page_state(4) is PageState.CORRUPT


def test_corrupt_compressed_page(tmp_path: Path, img) -> None:  # type: ignore[no-untyped-def]
    off, size = img.page_off[3]
    b = bytearray(img.data)
    b[off + 2:off + size] = bytes(x ^ 0x5A for x in b[off + 2:off + size])
    with KdumpFile(write(tmp_path, b)) as k:
        assert k.page_state(3) is PageState.CORRUPT
        with pytest.raises(CorruptPageError, match="zlib"):
            k.read(3 * PS, 1)
        assert k.read(2 * PS, PS) == pages_10()[2]
        assert k.read(4 * PS, PS) == pages_10()[4]


@pytest.mark.parametrize("codec", ["zlib", "lzo", "snappy", "zstd"])
def test_truncated_compressed_page_each_codec(tmp_path: Path, codec: str) -> None:
    img = build_kdump(pages_10(), max_mapnr=12, codec=codec)
    off, size = img.page_off[3]
    b = patch(img.data, img.desc_off[3], "<qIIQ", off, size // 2, codecs.CODEC_FLAGS[codec], 0)
    with KdumpFile(write(tmp_path, b)) as k:
        assert k.page_state(3) is PageState.CORRUPT
        assert k.read(2 * PS, PS) == pages_10()[2]


def test_incomplete_dump(tmp_path: Path) -> None:
    """makedumpfile on a full disk: status has the incomplete flag and the descriptors of
    pages it never wrote are zero."""
    pages = pages_10()
    img = build_kdump(pages, max_mapnr=12, incomplete=True)
    b = bytearray(img.data)
    for p in (8, 9, 10):
        b[img.desc_off[p]:img.desc_off[p] + PAGE_DESC.size] = bytes(PAGE_DESC.size)
    b = b[:img.page_off[8][0]]
    with KdumpFile(write(tmp_path, b)) as k:
        assert k.info.incomplete is True
        assert k.read(7 * PS, PS) == pages[7]
        assert k.page_state(8) is PageState.MISSING
        with pytest.raises(PageMissingError, match="incomplete"):
            k.read(9 * PS, 1)


# -- codecs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", ["zlib", "lzo", "snappy", "zstd"])
def test_codec_round_trip_and_size_check(codec: str) -> None:
    page = page_pattern(42)
    flags = codecs.CODEC_FLAGS[codec]
    assert decompress_page(flags, compress_page(codec, page), PS) == page
    # A valid stream of the wrong length is corrupt, not silently accepted.
    with pytest.raises(CorruptPageError, match="4096"):
        decompress_page(flags, compress_page(codec, page[:1000]), PS, paddr=0x5000)


def test_decompression_bomb_is_bounded() -> None:
    bomb = zlib.compress(bytes(64 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(CorruptPageError, match="zlib"):
            decompress_page(codecs.DUMP_DH_COMPRESSED_ZLIB, bomb, PS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    with pytest.raises(CorruptPageError, match="zstd frame announces"):
        decompress_page(codecs.DUMP_DH_COMPRESSED_ZSTD, compress_page("zstd", bytes(1 << 24)), PS)
    with pytest.raises(CorruptPageError, match="snappy header announces"):
        decompress_page(codecs.DUMP_DH_COMPRESSED_SNAPPY, compress_page("snappy", bytes(1 << 20)), PS)


def test_missing_codec_package(monkeypatch: pytest.MonkeyPatch) -> None:
    data = compress_page("snappy", page_pattern(1))
    monkeypatch.setattr(codecs, "_modules", {})
    monkeypatch.setitem(sys.modules, "cramjam", None)  # makes `import cramjam` fail
    with pytest.raises(CodecUnavailableError, match="install the 'cramjam' package"):
        decompress_page(codecs.DUMP_DH_COMPRESSED_SNAPPY, data, PS)
    assert issubclass(CodecUnavailableError, VmcorekitError)


# -- fuzzing ---------------------------------------------------------------------------------
_FUZZ_IMG = build_kdump(pages_10(), max_mapnr=12, excluded=[11], codec={1: "lzo", 2: "snappy", 3: "zstd"})


_FUZZ_OFFSETS = st.one_of(st.integers(400, 470),  # header numbers
                          st.integers(PS, PS + 120),  # sub-header
                          st.integers(_FUZZ_IMG.pdesc_off, _FUZZ_IMG.data_off),  # descriptors
                          st.integers(0, len(_FUZZ_IMG.data) - 1))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_FUZZ_OFFSETS, st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(0, len(_FUZZ_IMG.data)))
def test_fuzzed_files_fail_only_with_typed_errors(tmp_path_factory: pytest.TempPathFactory,
                                                  edits: list[tuple[int, int]], cut: int) -> None:
    b = bytearray(_FUZZ_IMG.data)
    for off, val in edits:
        b[off] = val
    path = write(tmp_path_factory.mktemp("fuzz"), b[:max(cut, len(b) // 2)])
    try:
        k = KdumpFile(path)
    except VmcorekitError:
        return
    with k:
        for p in range(12):
            k.page_state(p)
            try:
                assert len(k.read(p * PS, PS)) == PS
            except MemoryReadError:
                pass
