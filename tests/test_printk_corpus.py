"""`vmcorekit dmesg` against the peer tools' saved outputs, for every corpus case and every form
of its dump (the ELF, makedumpfile's -c -d 31 kdump file, QEMU's own kdump-zlib file).

Which saved outputs are valid oracles is read from expected/commands.tsv (rc 0 and a non-empty
file): vmcore-dmesg failed on QEMU paging=false ELF dumps, makedumpfile 1.7.2 on QEMU 7.2 ELF
headers. All dumps of one case hold the same memory, so every valid oracle of a case applies to
every form. makedumpfile 1.7.2 prints bytes >= 0x80 sign-extended (\\xffffffc3); vmcorekit
prints \\xc3, so the expected text is converted before comparing.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from vmcorekit.cli.main import cli
from vmcorekit.kernel.printk import read_log, render
from vmcorekit.program import Program

pytestmark = pytest.mark.corpus
FORMS = ["elf", "vmcore.c-d31.kdump", "vmcore.qemu-kdump-zlib"]


def oracles(case: Path) -> dict[str, list[Path]]:
    """Valid saved outputs of the case: {'vmcore-dmesg': [...], 'makedumpfile': [...]}."""
    out: dict[str, list[Path]] = {"vmcore-dmesg": [], "makedumpfile": []}
    for line in (case / "expected" / "commands.tsv").read_text().splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) < 5 or cols[3] != "0":
            continue
        name, command = cols[0], cols[4].split()
        if name.startswith("vmcore-dmesg-"):
            path = case / "expected" / "vmcore-dmesg" / f"dmesg-from-{name[len('vmcore-dmesg-'):]}.txt"
            kind = "vmcore-dmesg"
        elif name.startswith("mdf-dump-dmesg-"):
            path = case / command[-1]
            kind = "makedumpfile"
        else:
            continue
        if path.exists() and path.stat().st_size:
            out[kind].append(path)
    return out


def fix_sign_extension(text: bytes) -> bytes:
    return re.sub(rb"\\xffffff([0-9a-f]{2})", rb"\\x\1", text)


@pytest.fixture(params=FORMS)
def dump_path(request: pytest.FixtureRequest, corpus_case: Path) -> Path:
    if request.param == "elf":
        from conftest import decompressed_elf
        return decompressed_elf(corpus_case)
    p = corpus_case / request.param
    if not p.exists():
        pytest.skip(f"{corpus_case.name} has no {request.param}")
    return p


@pytest.fixture
def log(dump_path: Path):
    with Program.open(dump_path) as prog:
        yield read_log(prog, levels=False)


def test_every_case_has_an_oracle(corpus_case: Path):
    o = oracles(corpus_case)
    assert o["makedumpfile"], "no valid makedumpfile --dump-dmesg output"


def test_matches_vmcore_dmesg(corpus_case: Path, log):
    paths = oracles(corpus_case)["vmcore-dmesg"]
    if not paths:
        pytest.skip(f"vmcore-dmesg produced no valid output for {corpus_case.name} (see commands.tsv rc)")
    ours = b"".join(line for _, line in render(log))
    for p in paths:
        assert ours == p.read_bytes(), f"differs from {p}"


def test_matches_makedumpfile(corpus_case: Path, log):
    ours = b"".join(line for _, line in render(log, style="makedumpfile"))
    for p in oracles(corpus_case)["makedumpfile"]:
        assert ours == fix_sign_extension(p.read_bytes()), f"differs from {p}"


def test_text_matches_drgn(corpus_case: Path, log):
    for sub in ("drgn", "drgn-c-d31"):
        p = corpus_case / "expected" / sub / "dmesg.txt"
        if p.exists():
            assert b"".join(line for _, line in render(log, style="raw")) == p.read_bytes(), f"differs from {p}"


def test_no_warnings_and_plausible(log):
    assert log.layout == "lockless" and not log.warnings
    assert len(log.records) > 300
    seqs = [r.seq for r in log.records]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert any(b"sysrq triggered crash" in r.text for r in log.records)


def test_cli_output(corpus_case: Path, dump_path: Path):
    o = oracles(corpus_case)
    r = CliRunner().invoke(cli, ["dmesg", str(dump_path)])
    assert r.exit_code == 0, r.stderr_bytes
    if o["vmcore-dmesg"]:
        assert r.stdout_bytes == o["vmcore-dmesg"][0].read_bytes()
    r = CliRunner().invoke(cli, ["dmesg", "--format", "makedumpfile", str(dump_path)])
    assert r.stdout_bytes == fix_sign_extension(o["makedumpfile"][0].read_bytes())


def test_levels_from_btf(corpus_case: Path):
    """The guest wrote marker lines at known levels and facilities through /dev/kmsg."""
    from conftest import decompressed_elf
    with Program.open(decompressed_elf(corpus_case)) as prog:
        log = read_log(prog)
    if not log.levels_known:
        pytest.skip(f"levels unknown: {log.levels_note}")
    by_text = {r.text: r for r in log.records if r.text.startswith(b"corpus-marker: ")}
    want = {b"crit level line": (2, 1), b"error level line": (3, 1), b"warning level line": (4, 1),
            b"notice level line": (5, 1), b"info line": (6, 1), b"debug level line": (7, 1),
            b"facility daemon(3) info line": (6, 3)}
    for text, (level, facility) in want.items():
        r = by_text[b"corpus-marker: " + text]
        assert (r.level, r.facility) == (level, facility), text
    panic = next(r for r in log.records if r.text.startswith(b"Kernel panic - not syncing"))
    assert panic.level == 0 and panic.facility == 0


def test_damaged_dump_keeps_every_readable_record(corpus_case: Path):
    """A dump that lost one page of the text ring (as a truncated or filtered file would) still
    gives every other record, with one warning for the gap."""
    from conftest import decompressed_elf
    from vmcorekit.errors import PageMissingError

    with Program.open(decompressed_elf(corpus_case)) as prog:
        whole = read_log(prog, levels=False)
        rb = prog.read_u64(prog.vmcoreinfo.symbol("prb"))
        ring = prog.read_u64(rb + prog.vmcoreinfo.offset("printk_ringbuffer.text_data_ring")
                             + prog.vmcoreinfo.offset("prb_data_ring.data"))
        bad_page = prog.space.translate(ring + 3 * 4096) & ~4095  # the 4th page of log text
        real_read = prog.phys.read

        def read(paddr: int, size: int) -> bytes:
            if paddr < bad_page + 4096 and bad_page < paddr + size:
                raise PageMissingError(bad_page, "cut off (test)")
            return real_read(paddr, size)

        prog.phys.read = read  # type: ignore[method-assign]
        damaged = read_log(prog, levels=False)
    assert len(damaged.warnings) == 1 and "missing" in damaged.warnings[0], damaged.warnings
    lost = [r.seq for r in damaged.records if r.lost]
    assert lost and lost == list(range(lost[0], lost[0] + len(lost)))
    assert [(r.seq, r.text) for r in damaged.records if not r.lost] == \
        [(r.seq, r.text) for r in whole.records if r.seq not in set(lost)]
