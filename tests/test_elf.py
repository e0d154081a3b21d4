"""ELF core reader: header placement variants, notes, truncation, bad input."""
from __future__ import annotations

import hashlib

import pytest

from elfgen import build_core, note
from vmcorekit.dump import PageState, open_dump
from vmcorekit.dump.elf import ElfDump
from vmcorekit.errors import DumpFormatError, PageExcludedError, PageMissingError, PageNotInDumpError

PAGE_A = bytes(range(256)) * 16
PAGE_B = b"B" * 4096
VMCI = b"OSRELEASE=6.1.0\nPAGESIZE=4096\n"


def write(tmp_path, data: bytes, name: str = "core") -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


@pytest.mark.parametrize("layout", ["plain", "qemu", "xnum"])
def test_reads_segments_and_notes(tmp_path, layout: str) -> None:
    notes = note(b"CORE", 1, b"\0" * 336) + note(b"VMCOREINFO", 0, VMCI)
    kw = {"plain": {}, "qemu": {"shdr_first": True}, "xnum": {"xnum": True}}[layout]
    path = write(tmp_path, build_core([(0, 0x1000, PAGE_A), (0, 0x10000, PAGE_B * 2)], notes, **kw))
    with open_dump(path) as d:
        assert isinstance(d, ElfDump)
        assert d.machine == "x86_64"
        assert d.read(0x1000, 4096) == PAGE_A
        assert d.read(0x10000 + 4090, 10) == b"B" * 10
        assert d.vmcoreinfo_raw == VMCI
        assert [n.owner for n in d.notes] == ["CORE", "VMCOREINFO"]
        assert [(r.start, r.end) for r in d.ranges()] == [(0x1000, 0x2000), (0x10000, 0x12000)]
        with pytest.raises(PageNotInDumpError, match="0x3000"):
            d.read(0x3000, 8)
        with pytest.raises(PageNotInDumpError):
            d.read(0x1ff8, 16)  # runs off the end of a range into a hole
        assert d.page_state(0x10) == PageState.PRESENT and d.page_state(0x5) == PageState.HOLE


def test_kcore_style_virtual_segments(tmp_path) -> None:
    # /proc/kcore: segments without a physical address carry p_paddr = -1.
    path = write(tmp_path, build_core([(0xFFFFC90000000000, 2**64 - 1, PAGE_A), (0xFFFF888000001000, 0x1000, PAGE_B)]))
    with open_dump(path) as d:
        assert [(s.vaddr, s.paddr) for s in d.virtual_segments] == [(0xFFFFC90000000000, None),
                                                                   (0xFFFF888000001000, 0x1000)]
        assert d.read(0x1000, 4) == b"BBBB"


def test_memsz_beyond_filesz_is_excluded(tmp_path) -> None:
    path = write(tmp_path, build_core([(0, 0x1000, PAGE_A)], memsz_extra=0x2000))
    with open_dump(path) as d:
        assert d.page_state(2) == PageState.EXCLUDED
        with pytest.raises(PageExcludedError):
            d.read(0x2000, 8)


def test_truncated_page_data(tmp_path) -> None:
    data = build_core([(0, 0x1000, PAGE_A + PAGE_B)])
    path = write(tmp_path, data[:-4096 - 100])
    with open_dump(path) as d:
        assert d.info.incomplete
        assert d.read(0x1000, 16) == PAGE_A[:16]
        assert d.page_state(2) == PageState.MISSING
        with pytest.raises(PageMissingError):
            d.read(0x2000, 4096)


@pytest.mark.parametrize("data,match", [
    (b"", "empty"),
    (b"NOTADUMP" * 8, "unrecognised"),
    (b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x04\x00", "truncated ELF header"),
    (b"\x7fELF\x01\x01\x01" + b"\0" * 60, "64-bit"),
])
def test_bad_headers(tmp_path, data: bytes, match: str) -> None:
    with pytest.raises(DumpFormatError, match=match) as e:
        open_dump(write(tmp_path, data))
    assert str(tmp_path) in str(e.value)


def test_program_headers_past_eof(tmp_path) -> None:
    data = bytearray(build_core([(0, 0x1000, PAGE_A)]))
    data[56:58] = (5000).to_bytes(2, "little")  # e_phnum far beyond the file
    with pytest.raises(DumpFormatError, match="program headers") as e:
        open_dump(write(tmp_path, bytes(data)))
    assert e.value.offset == 64


def test_absurd_segment_sizes(tmp_path) -> None:
    data = bytearray(build_core([(0, 0x1000, PAGE_A)]))
    # p_filesz / p_memsz of the only PT_LOAD set to 2**63
    import struct
    off = 64 + 32
    data[off:off + 16] = struct.pack("<QQ", 1 << 63, 1 << 63)
    with pytest.raises(DumpFormatError, match="implausible"):
        open_dump(write(tmp_path, bytes(data)))


def test_garbage_notes_do_not_break_reading(tmp_path) -> None:
    junk = note(b"VMCOREINFO", 0, VMCI)[:10] + b"\xff" * 30
    path = write(tmp_path, build_core([(0, 0x1000, PAGE_A)], junk))
    with open_dump(path) as d:
        assert d.read(0x1000, 4) == PAGE_A[:4]


def test_input_is_never_written(tmp_path) -> None:
    path = write(tmp_path, build_core([(0, 0x1000, PAGE_A)], note(b"VMCOREINFO", 0, VMCI)))
    before = hashlib.sha256(open(path, "rb").read()).hexdigest()
    import os
    os.chmod(path, 0o400)
    with open_dump(path) as d:
        d.read(0x1000, 4096)
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == before


@pytest.mark.corpus
def test_corpus_elf_opens(corpus_case, corpus_elf) -> None:
    with open_dump(corpus_elf) as d:
        assert d.machine == "x86_64"
        assert d.vmcoreinfo_raw.decode().strip() == (corpus_case / "vmcoreinfo.txt").read_text().strip()
        assert len(d.notes_named("CORE", 1)) == 2
