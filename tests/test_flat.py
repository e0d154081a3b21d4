"""Flattened (makedumpfile -F) streams: reassembly as a byte view, overlapping records, gaps,
truncation, and kdump files read through it."""
from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdumpgen import build_kdump, flatten, page_pattern
from vmcorekit.dump.base import PageState
from vmcorekit.dump.flat import FileSource, FlatFile, is_flattened, open_source
from vmcorekit.dump.kdump import KdumpFile, open_kdump
from vmcorekit.errors import DumpFormatError, PageMissingError, UnsupportedDumpError

PS = 4096
FLAT_HDR = 4096


def stream(records: list[tuple[int, bytes]], *, end: bool = True) -> bytes:
    out = bytearray(b"makedumpfile".ljust(16, b"\0") + struct.pack(">QQ", 1, 1))
    out = out.ljust(4096, b"\0")
    for off, data in records:
        out += struct.pack(">qq", off, len(data)) + data
    if end:
        out += struct.pack(">qq", -1, -1)
    return bytes(out)


def write(tmp_path: Path, data: bytes, name: str = "flat") -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def sample_kdump() -> tuple[bytes, dict[int, bytes]]:
    pages = {p: page_pattern(p) for p in range(3, 40) if p % 5}
    pages[12] = bytes(PS)
    img = build_kdump(pages, max_mapnr=48, excluded=[5, 10, 15])
    return img.data, pages


def test_flat_reassembly_equals_plain_file(tmp_path: Path) -> None:
    data, _ = sample_kdump()
    with FlatFile(write(tmp_path, flatten(data, chunk=3000))) as f:
        assert f.size == len(data)
        assert f.truncated is False
        assert f.read(0, f.size) == data
        assert f.segments() == [(0, len(data))]
        rng = random.Random(1)
        for _ in range(300):
            a = rng.randrange(len(data))
            n = rng.randrange(1, 20000)
            assert f.read(a, n) == data[a:a + n]
        assert f.read(len(data), 10) == b""
        assert f.read(-5, 10) == b""


def test_kdump_through_flattened_stream(tmp_path: Path) -> None:
    data, pages = sample_kdump()
    plain = KdumpFile(write(tmp_path, data, "plain"))
    flat = KdumpFile(write(tmp_path, flatten(data, chunk=777, seed=9)))
    with plain, flat:
        assert flat.info.extra["flattened"] is True and plain.info.extra["flattened"] is False
        assert flat.ranges() == plain.ranges()
        assert [n.desc for n in flat.notes] == [n.desc for n in plain.notes]
        for p in range(48):
            assert flat.page_state(p) is plain.page_state(p)
            if p in pages:
                assert flat.read(p * PS, PS) == plain.read(p * PS, PS) == pages[p]
    with open_kdump(str(tmp_path / "flat")) as k:
        assert isinstance(k, KdumpFile) and k.read(3 * PS, PS) == pages[3]


def test_later_records_win(tmp_path: Path) -> None:
    recs = [
        (0, b"A" * 100),
        (50, b"B" * 100),  # overlaps the tail of A
        (20, b"C" * 10),  # inside the A/B overlap zone
        (300, b"D" * 10),  # after a gap
        (140, b"E" * 5),  # inside B
        (0, b"F" * 5),  # rewrites the very start
    ]
    want = bytearray(310)
    covered = bytearray(310)
    for off, d in recs:
        want[off:off + len(d)] = d
        covered[off:off + len(d)] = b"\1" * len(d)
    with FlatFile(write(tmp_path, stream(recs))) as f:
        assert f.size == 310
        assert f.segments() == [(0, 150), (300, 310)]
        assert f.read(0, 150) == bytes(want[:150])
        assert f.read(300, 10) == b"D" * 10
        assert f.read(140, 100) == bytes(want[140:150])  # stops at the gap
        assert f.read(200, 10) == b""


def painter(records: list[tuple[int, bytes]]) -> tuple[bytes, bytes]:
    size = max((o + len(d) for o, d in records if d), default=0)  # empty records write nothing
    buf = bytearray(size)
    cov = bytearray(size)
    for o, d in records:
        buf[o:o + len(d)] = d
        cov[o:o + len(d)] = b"\1" * len(d)
    return bytes(buf), bytes(cov)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 60), st.integers(0, 255)), max_size=25))
def test_overlap_resolution_matches_painter(tmp_path_factory: pytest.TempPathFactory,
                                            recs: list[tuple[int, int, int]]) -> None:
    records = [(o, bytes([v]) * n) for o, n, v in recs]
    buf, cov = painter(records)
    path = write(tmp_path_factory.mktemp("flat"), stream(records))
    with FlatFile(path) as f:
        assert f.size == len(buf)
        for s, e in f.segments():
            assert f.read(s, e - s) == buf[s:e]
            assert cov[s:e] == b"\1" * (e - s)
        assert sum(e - s for s, e in f.segments()) == cov.count(1)


def test_gap_in_stream_makes_pages_missing(tmp_path: Path) -> None:
    data, pages = sample_kdump()
    img = build_kdump(pages, max_mapnr=48, excluded=[5, 10, 15])
    off, size = img.page_off[7]
    with KdumpFile(write(tmp_path, flatten(data, drop=(off, off + size)))) as k:
        assert k.page_state(7) is PageState.MISSING
        with pytest.raises(PageMissingError, match="not in the flattened stream"):
            k.read(7 * PS, 1)
        assert k.read(8 * PS, PS) == pages[8]


def test_truncated_stream_keeps_what_arrived(tmp_path: Path) -> None:
    pages = {p: page_pattern(p) for p in range(3, 40)}
    img = build_kdump(pages, max_mapnr=48)
    data = img.data
    chunk = 512
    full = stream([(o, data[o:o + chunk]) for o in range(0, len(data), chunk)], end=False)
    # Cut the stream (records in file order) inside the data of the last page.
    last = max(pages)
    t = img.page_off[last][0] + 3
    cut = full[:FLAT_HDR + (t // chunk) * (16 + chunk) + 16 + t % chunk]
    with FlatFile(write(tmp_path, cut, "cut")) as f:
        assert f.truncated is True
        assert f.size == t
        assert f.read(0, t + 100) == data[:t]
    with KdumpFile(str(tmp_path / "cut")) as k:
        for p in range(3, last):
            assert k.read(p * PS, PS) == pages[p]
        assert k.page_state(last) is PageState.MISSING
        with pytest.raises(PageMissingError):
            k.read(last * PS, 1)


def test_flat_header_errors(tmp_path: Path) -> None:
    with pytest.raises(DumpFormatError, match="4096 bytes"):
        FlatFile(write(tmp_path, b"makedumpfile\0\0\0\0" + bytes(100)))
    with pytest.raises(DumpFormatError, match="expected signature 'makedumpfile'"):
        FlatFile(write(tmp_path, b"KDUMP   " + bytes(5000)))
    bad = bytearray(stream([(0, b"x")]))
    bad[16:32] = struct.pack(">QQ", 2, 1)
    with pytest.raises(UnsupportedDumpError, match="type 2"):
        FlatFile(write(tmp_path, bytes(bad)))
    neg = stream([(0, b"abc")])[:-16] + struct.pack(">qq", -5, 10) + bytes(10)
    with pytest.raises(DumpFormatError, match="offset -5"):
        FlatFile(write(tmp_path, neg))
    with pytest.raises(DumpFormatError):
        FlatFile(write(tmp_path, b""))


def test_flattened_elf_is_reported_as_such(tmp_path: Path) -> None:
    elf = b"\x7fELF\x02\x01\x01" + bytes(2000)
    with pytest.raises(UnsupportedDumpError, match="holds an ELF core"):
        KdumpFile(write(tmp_path, flatten(elf)))


def test_huge_record_size_does_not_allocate(tmp_path: Path) -> None:
    """A record claiming 2^62 bytes is clipped to what the file holds."""
    data = stream([(0, b"hello")], end=False) + struct.pack(">qq", 10, 1 << 62) + b"world"
    with FlatFile(write(tmp_path, data)) as f:
        assert f.truncated is True
        assert f.read(0, 5) == b"hello"
        assert f.read(10, 100) == b"world"
        assert f.size == 15


def test_open_source_and_detection(tmp_path: Path) -> None:
    data, _ = sample_kdump()
    assert is_flattened(flatten(data)[:16]) and not is_flattened(data[:16])
    with open_source(write(tmp_path, flatten(data))) as s:
        assert isinstance(s, FlatFile)
    with open_source(write(tmp_path, data, "plain")) as s:
        assert isinstance(s, FileSource) and s.read(0, 8) == b"KDUMP   " and s.size == len(data)
    with open_source(write(tmp_path, b"", "empty")) as s:
        assert s.size == 0 and s.read(0, 10) == b""


@pytest.mark.corpus
def test_corpus_qemu_flattened_layout(corpus_dir: Path) -> None:
    path = corpus_dir / "qmp-kaslr" / "vmcore.qemu-kdump-zlib"
    if not path.exists():
        pytest.skip(f"{path} not present (set VMCOREKIT_CORPUS)")
    with FlatFile(str(path)) as f:
        assert f.truncated is False
        # QEMU writes the 464-byte header, the sub-header and notes, then everything from the
        # bitmaps on without gaps.
        segs = f.segments()
        assert segs[0] == (0, 464) and segs[1][0] == 4096 and segs[-1][1] == f.size
        assert f.read(0, 8) == b"KDUMP   "
        assert f.size == 28351402  # what `makedumpfile -R` reassembles
