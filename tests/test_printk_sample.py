"""`vmcorekit dmesg` on the real dumps shipped in samples/ against the reference tools' outputs
saved beside them (x86_64 kdump file), and against the guest's serial console (arm64 ELF)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import SAMPLES, decompressed_elf
from vmcorekit.kernel.printk import read_log, render
from vmcorekit.program import Program


def _lines(log, style: str) -> bytes:
    return b"".join(line for _, line in render(log, style=style))


def test_x86_64_sample(sample_dump: Path):
    exp = SAMPLES / "expected"
    with Program.open(sample_dump) as prog:
        log = read_log(prog, levels=False)
    assert not log.warnings
    if (exp / "vmcore-dmesg.txt").exists():
        assert _lines(log, "vmcore-dmesg") == (exp / "vmcore-dmesg.txt").read_bytes()
    mdf = exp / "makedumpfile-dmesg.txt"
    if mdf.exists():
        assert _lines(log, "makedumpfile") == re.sub(rb"\\xffffff([0-9a-f]{2})", rb"\\x\1", mdf.read_bytes())
    if (exp / "drgn-dmesg.txt").exists():
        assert _lines(log, "raw") == (exp / "drgn-dmesg.txt").read_bytes()


def test_arm64_sample_matches_console():
    case = SAMPLES / "arm64"
    if not (case / "vmcore.elf.zst").exists():
        pytest.skip("no arm64 sample")
    with Program.open(decompressed_elf(case)) as prog:
        log = read_log(prog, levels=False)
    assert log.layout == "lockless" and not log.warnings
    ours = set(_lines(log, "raw").decode("utf-8", "replace").splitlines())
    console = (case / "console.log").read_text("utf-8", "replace").replace("\r", "").splitlines()
    stamped = [line for line in console if re.match(r"^\[ *\d+\.\d{6}\] ", line)]
    assert len(stamped) > 200
    assert [line for line in stamped if line not in ours] == []
