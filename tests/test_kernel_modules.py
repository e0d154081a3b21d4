"""Modules (kernel/modules.py, `vmcorekit mod`) against drgn and crash; taint decoding."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmcorekit.cli.main import main
from vmcorekit.kernel import modules
from vmcorekit.program import Program

from test_kernel_tasks import _no_btf, _overlay


def drgn_modules(path: Path) -> set[tuple[str, int, int]]:
    out = set()
    for line in path.read_text().splitlines()[1:]:
        name, base, size = line.split("\t")
        out.add((name, int(base, 16), int(size)))
    return out


@pytest.mark.corpus
@pytest.mark.parametrize("form", ["elf", "c-d31"])
def test_modules_match_drgn(corpus_case: Path, corpus_elf: Path, form: str) -> None:
    path = corpus_elf if form == "elf" else corpus_case / "vmcore.c-d31.kdump"
    exp = corpus_case / ("expected/drgn/modules.tsv" if form == "elf" else
                         "expected/drgn-c-d31/modules.tsv")
    with Program.open(path) as prog:
        mods = modules.module_table(prog)
        assert {(m.name, m.base, m.size) for m in mods} == drgn_modules(exp)
        # list order (newest first), like drgn's for_each_module
        names = [line.split("\t")[0] for line in exp.read_text().splitlines()[1:]]
        assert [m.name for m in mods] == names
        assert all(m.state == "live" and m.taints == 0 and not m.out_of_tree
                   and not m.unsigned for m in mods)
        assert modules.find_module(prog, "loop") is not None
        assert modules.find_module(prog, "no_such_module") is None


@pytest.mark.corpus
def test_mod_cli_matches_crash(corpus_case: Path, corpus_elf: Path, capsys) -> None:
    """crash's MODULE, NAME, BASE and SIZE columns, in crash's order; crash's OBJECT FILE
    column is replaced by STATE and TAINT."""
    assert main(["mod", str(corpus_elf)]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = (corpus_case / "expected/crash/mod.txt").read_text().splitlines()
    assert len(lines) == len(expected)
    cut = expected[0].index("OBJECT FILE")
    for mine, theirs in zip(lines, expected):
        assert mine[:cut] == theirs[:cut]
    assert lines[0][cut:].split() == ["STATE", "TAINT"]
    assert all(x[cut:].split() == ["live", "-"] for x in lines[1:])
    assert main(["mod", "--json", str(corpus_elf), "loop"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in d["modules"]] == ["loop"]


@pytest.mark.corpus
def test_taint_decoding_uses_the_kernels_table(corpus_elf: Path) -> None:
    with Program.open(corpus_elf) as prog:
        flags, src = modules.taint_flags(prog)
        assert src == "kernel"
        letters = "".join(f.c_true for f in flags)
        assert letters.startswith("PFSRMBUDAWCIOELKX")
        text, set_letters = modules.decode_taint(prog, (1 << 0) | (1 << 12) | (1 << 13))
        assert set_letters == ["P", "O", "E"]
        assert text[0] == "P" and text[12] == "O" and text[13] == "E" and text[1] == " "
        assert modules.decode_taint(prog, 0) == ("", [])
        assert modules.decode_taint(prog, 1)[0][0] == "P"
        assert modules.decode_taint(prog, 0)[0] == ""
        assert modules.decode_taint(prog, 1 << 40)[1] == [f"?{1 << 40:#x}"]
        assert modules.module_taint_letters(prog, (1 << 12) | (1 << 13) | (1 << 9)) == "OE"


@pytest.mark.corpus
def test_out_of_tree_and_unsigned_flagged(corpus_elf: Path, capsys) -> None:
    """A module whose taints say O and E (as insmod of an unsigned out-of-tree module
    leaves them) is flagged in the table and by the CLI."""
    prog = Program.open(corpus_elf)
    loop = modules.find_module(prog, "loop")
    off = prog.types.offsetof("struct module", "taints")
    _overlay(prog, {int(loop) + off: ((1 << 12) | (1 << 13)).to_bytes(8, "little")})
    info = modules.module_info(modules.find_module(prog, "loop"))
    assert info.taint_letters == "OE" and info.out_of_tree and info.unsigned
    from vmcorekit.cli.mod import mod_lines
    line = next(x for x in mod_lines([info]) if "loop" in x)
    assert line.endswith("OE (out-of-tree, unsigned)")


@pytest.mark.corpus
def test_module_list_cycle_is_bounded(corpus_elf: Path) -> None:
    prog = Program.open(corpus_elf)
    mods = list(modules.for_each_module(prog))
    off = prog.types.offsetof("struct module", "list")
    # the third module's next points back at the second
    _overlay(prog, {int(mods[2]) + off: (int(mods[1]) + off).to_bytes(8, "little")})
    warns: list[str] = []
    got = modules.module_table(prog, warnings=warns)
    assert [m.name for m in got] == [m.name.string_().decode() for m in mods[:3]]
    assert warns and "cycle" in warns[0]


@pytest.mark.corpus
def test_modules_without_btf(corpus_case: Path, corpus_elf: Path, monkeypatch, capsys) -> None:
    _no_btf(monkeypatch)
    prog = Program.open(corpus_elf)
    mods = modules.module_table(prog)
    assert {m.name for m in mods} == {n for n, _, _ in
                                      drgn_modules(corpus_case / "expected/drgn/modules.tsv")}
    assert all(m.base is None and m.state == "live" for m in mods)
    assert main(["mod", str(corpus_elf)]) == 0
    out = capsys.readouterr()
    assert "no BTF" in out.err and "qemu_fw_cfg" in out.out
