"""Memory summary (kernel/meminfo.py, `vmcorekit kmem -i`) against crash's `kmem -i`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmcorekit.cli.main import main
from vmcorekit.kernel import meminfo
from vmcorekit.program import Program

from test_kernel_tasks import _no_btf, _overlay


def crash_kmem(path: Path) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines()[1:]:
        if line.strip():
            out[line[:13].strip()] = int(line[13:].split()[0])
    return out


@pytest.mark.corpus
@pytest.mark.parametrize("form", ["elf", "c-d31"])
def test_kmem_i_matches_crash_line_for_line(corpus_case: Path, corpus_elf: Path, form: str,
                                            capsys) -> None:
    path = corpus_elf if form == "elf" else corpus_case / "vmcore.c-d31.kdump"
    exp = corpus_case / "expected" / ("crash" if form == "elf" else "crash-c-d31") / "kmem-i.txt"
    assert main(["kmem", "-i", str(path)]) == 0
    assert capsys.readouterr().out == exp.read_text()


@pytest.mark.corpus
def test_kmem_json_and_slab_counters(corpus_case: Path, corpus_elf: Path, capsys) -> None:
    assert main(["kmem", "-i", "--json", str(corpus_elf)]) == 0
    d = json.loads(capsys.readouterr().out)
    p = {k.removesuffix("_bytes"): v // d["page_size"] for k, v in d.items() if k.endswith("_bytes") and v is not None}
    theirs = crash_kmem(corpus_case / "expected/crash/kmem-i.txt")
    assert p["total"] == theirs["TOTAL MEM"] and p["free"] == theirs["FREE"]
    assert p["used"] == p["total"] - p["free"] == theirs["USED"]
    misc = dict(x.split("=", 1) for x in
                (corpus_case / "expected/drgn/misc.txt").read_text().splitlines())
    assert p["total"] == int(misc["totalram_pages"])
    # SLAB is crash's PG_slab page count; the kernel's own counters are larger (they count
    # every page of multi-page slabs) and are reported apart
    assert p["slab"] == theirs["SLAB"] and p["slab_vmstat"] > p["slab"]
    assert any("PG_slab" in n for n in d["notes"])


@pytest.mark.corpus
def test_free_and_committed_follow_memory(corpus_elf: Path) -> None:
    """The numbers are read, not remembered: change the kernel's counters, they change."""
    prog = Program.open(corpus_elf)
    before = meminfo.memory_summary(prog, shared=False)
    addr = prog.symbols.address_of("vm_committed_as")
    off = prog.types.offsetof("struct percpu_counter", "count")
    _overlay(prog, {addr + off: (-5).to_bytes(8, "little", signed=True),
                    prog.symbols.address_of("sysctl_overcommit_ratio"):
                        (100).to_bytes(4, "little")})
    after = meminfo.memory_summary(prog, shared=False)
    assert after.committed == 0  # a negative percpu count is shown as 0, like the kernel
    assert after.commit_limit == before.total
    assert after.shared is None and before.free == after.free


@pytest.mark.corpus
def test_kmem_without_btf(corpus_case: Path, corpus_elf: Path, monkeypatch, capsys) -> None:
    """No BTF: TOTAL, FREE (NUMBER(NR_FREE_PAGES) + VMCOREINFO's zone offsets), USED and
    SHARED (struct page offsets; PG_reserved read off the _stext page) are still right."""
    _no_btf(monkeypatch)
    assert main(["kmem", "-i", str(corpus_elf)]) == 0
    out = capsys.readouterr()
    theirs = crash_kmem(corpus_case / "expected/crash/kmem-i.txt")
    lines = {x[:13].strip(): x for x in out.out.splitlines()[1:] if x.strip()}
    for key in ("TOTAL MEM", "FREE", "USED", "SHARED"):
        assert int(lines[key][13:].split()[0]) == theirs[key], key
    assert "(unknown)" in lines["CACHED"] and "no BTF" in out.err
    assert "PG_reserved = bit 12" in out.err


def test_kmem_needs_i(tmp_path, capsys) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"\0" * 64)
    assert main(["kmem", str(f)]) != 0
    assert "-i" in capsys.readouterr().err
