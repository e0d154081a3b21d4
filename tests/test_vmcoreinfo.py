"""VMCOREINFO parsing, validation against the documented keys, and diff."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmcorekit.errors import VmcoreinfoError
from vmcorekit.vmcoreinfo import VmcoreInfo, diff
from vmcorekit.vmcoreinfo.spec import check

TEXT = """OSRELEASE=6.1.0-56-amd64
BUILD-ID=eb4fbcd037e7253717950bf2b93bd5566f47c56f
PAGESIZE=4096
SYMBOL(init_uts_ns)=ffffffff9e3fb000
OFFSET(uts_namespace.name)=0
SIZE(page)=64
LENGTH(mem_section)=262144
NUMBER(phys_base)=-316669952
NUMBER(kimage_voffset)=0xffff800008000000
KERNELOFFSET=1b800000
CRASHTIME=1795681313
CONFIG_KALLSYMS=y
"""


def test_typed_view() -> None:
    vi = VmcoreInfo.parse(TEXT.encode())
    assert vi.osrelease == "6.1.0-56-amd64"
    assert vi.kernel_version() == (6, 1, 0)
    assert vi.page_size == 4096
    assert vi.symbol("init_uts_ns") == 0xFFFFFFFF9E3FB000
    assert vi.offset("uts_namespace.name") == 0
    assert vi.size("page") == 64 and vi.length("mem_section") == 262144
    assert vi.number("phys_base") == -316669952
    assert vi.number("kimage_voffset") == 0xFFFF800008000000  # arm64 prints some NUMBERs in hex
    assert vi.kerneloffset == 0x1B800000 and vi.crashtime == 1795681313
    assert vi.configs == {"KALLSYMS": "y"}
    assert not vi.malformed
    with pytest.raises(VmcoreinfoError, match="SYMBOL\\(nope\\)"):
        vi.symbol("nope")


def test_garbage_lines_are_reported_not_fatal() -> None:
    vi = VmcoreInfo.parse(b"OSRELEASE=6.1\nno equals sign\nSIZE(page)=sixty-four\n\xff\xfe=\x00junk after nul")
    assert vi.osrelease == "6.1"
    reasons = [m.reason for m in vi.malformed]
    assert any("KEY=VALUE" in r for r in reasons) and any("number" in r for r in reasons)
    assert "page" not in vi.sizes


@given(st.binary(max_size=2000))
def test_parse_never_raises(data: bytes) -> None:
    VmcoreInfo.parse(data)


def test_check_finds_missing_and_unknown() -> None:
    vi = VmcoreInfo.parse(TEXT + "SYMBOL(prb)=ffffffff9e2643e0\nSIZE(made_up)=3\n")
    res = check(vi, "x86_64")
    assert "SYMBOL(printk_rb_static)" in res.missing  # lockless printk in use, key absent
    assert "SYMBOL(init_top_pgt)" in res.missing
    assert "SIZE(made_up)" in res.unknown
    assert "NUMBER(VA_BITS)" not in res.missing  # arm64 key, not x86_64's
    assert not res.ok


def test_diff() -> None:
    a = VmcoreInfo.parse(TEXT)
    b = VmcoreInfo.parse(TEXT.replace("1b800000", "0").replace("CRASHTIME=1795681313\n", "") + "X=1\n")
    assert diff(a, b) == [("KERNELOFFSET", "1b800000", "0"), ("CRASHTIME", "1795681313", None), ("X", None, "1")]


def test_from_file(tmp_path) -> None:
    p = tmp_path / "vmcoreinfo.txt"
    p.write_text(TEXT)
    assert VmcoreInfo.from_file(p).osrelease == "6.1.0-56-amd64"
    p.write_bytes(b"\x00\x01 binary junk")
    with pytest.raises(VmcoreinfoError, match="offset 0"):
        VmcoreInfo.from_file(p)


@pytest.mark.corpus
def test_corpus_notes_validate(corpus_case) -> None:
    vi = VmcoreInfo.from_file(corpus_case / "vmcoreinfo.txt")
    res = check(vi, "x86_64")
    assert res.ok, res.to_dict()
    assert res.unknown == []
