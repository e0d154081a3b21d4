"""Damaged copies of the real corpus dumps: truncated at 10/40/60/90 % and at points inside
each structure (headers, notes, bitmaps, descriptor table), and with bytes flipped inside
compressed pages.

For every damaged copy and every command (info --ranges, verify, dmesg, ps, bt):
  * no traceback, no hang (each run has a time limit), exit status 0, 1 or 3;
  * exit 0 means the output is complete: byte for byte what the intact dump gives;
  * a command whose pages all survive (the pages it reads from the intact dump are not among
    the damaged ones, as `verify` lists them) prints exactly the intact output, exit 0;
  * info --ranges and verify name the damaged ranges exactly (compared with the damage made).

Commands run in-process (main(argv)), so the pages each one reads from the intact dump can be
recorded by wrapping the dump reader's read(). Damaged copies are sparse and one at a time.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fakes import time_limit

from vmcorekit.cli.main import main
from vmcorekit.dump import open_dump
from vmcorekit.dump.kdump_layout import DESC_DTYPE
from vmcorekit.report.verify import verify

pytestmark = pytest.mark.corpus

COMMANDS = [["dmesg"], ["ps"], ["bt"]]
# triage runs everything the others do (3-4 s a dump): only on some of the damaged copies
SLOW_COMMANDS = [["triage"]]
FRACTIONS = [0.1, 0.4, 0.6, 0.9]
TIME_LIMIT = 90  # seconds per command run: a hang fails the test instead of stalling CI


# -- making damaged copies -------------------------------------------------------------------------
def sparse_prefix_copy(src: Path, dst: Path, length: int) -> None:
    """The first `length` bytes of src, holes kept (the corpus ELF dumps are mostly zeros)."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        fd = fi.fileno()
        pos = 0
        while pos < length:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            if data >= length:
                break
            hole = min(os.lseek(fd, data, os.SEEK_HOLE), length)
            fi.seek(data)
            fo.seek(data)
            left = hole - data
            while left:
                chunk = fi.read(min(left, 1 << 22))
                fo.write(chunk)
                left -= len(chunk)
            pos = hole
        fo.truncate(length)


def kdump_layout(path: Path) -> dict[str, int]:
    with open_dump(str(path)) as k:
        bs = k.page_size
        half = k.info.extra["bitmap_blocks"] // 2 * bs
        bitmap_off = k._pdesc_off - 2 * half
        return {"block": bs, "bitmap1": bitmap_off, "bitmap2": bitmap_off + half, "pdesc": k._pdesc_off,
                "ndesc": k.dumpable_pages}


def flip_pages(src: Path, dst: Path, pick: Callable[[np.ndarray], np.ndarray] | None = None,
               every: int = 1, xor: int = 0xA5) -> list[int]:
    """Copy src and flip (^ xor) 4 bytes in the middle of every `every`-th compressed page among
    those whose pfn `pick(pfns)` selects (a mask; all without it); the pfns flipped."""
    shutil.copyfile(src, dst)
    with open_dump(str(src)) as k:
        n = k.dumpable_pages
        desc = np.frombuffer(k._src.read(k._pdesc_off, n * DESC_DTYPE.itemsize), dtype=DESC_DTYPE)
        pfns = k.dumped_pfns()
    compressed = (desc["flags"] & 0x27).astype(bool)
    idx = np.flatnonzero(compressed & pick(pfns) if pick is not None else compressed)[::every]
    with open(dst, "r+b") as f:
        for i in idx:
            pos = int(desc["offset"][i]) + int(desc["size"][i]) // 2
            f.seek(pos)
            b = f.read(4)
            f.seek(pos)
            f.write(bytes(x ^ xor for x in b))
    return [int(pfns[i]) for i in idx]


# -- running commands --------------------------------------------------------------------------------


def run(args: list[str], record: set[int] | None = None) -> tuple[int, bytes, str]:
    """main(args) in-process: (exit status, stdout bytes, stderr text). With `record`, every
    physical page the command reads is added to it."""
    out, err = io.BytesIO(), io.BytesIO()
    so = io.TextIOWrapper(out, encoding="utf-8", errors="backslashreplace", write_through=True)
    se = io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace", write_through=True)
    patches = contextlib.ExitStack()
    if record is not None:
        import vmcorekit.program.core as core

        real_open = core.open_dump

        def recording_open(paths):  # type: ignore[no-untyped-def]
            phys = real_open(paths)
            inner = phys.read
            ps = phys.page_size

            def read(paddr: int, size: int) -> bytes:
                if size > 0:
                    record.update(range(paddr // ps, (paddr + size - 1) // ps + 1))
                return inner(paddr, size)
            phys.read = read
            return phys
        core.open_dump = recording_open
        patches.callback(setattr, core, "open_dump", real_open)
    with patches, contextlib.redirect_stdout(so), contextlib.redirect_stderr(se), time_limit(TIME_LIMIT):
        rc = main(args)
    return rc, out.getvalue(), err.getvalue().decode("utf-8", "replace")


def have_command(name: str) -> bool:
    from vmcorekit.cli.main import cli
    return cli.get_command(None, name) is not None  # type: ignore[arg-type]


# -- the intact references ---------------------------------------------------------------------------
FORMS = ["kdump", "elf"]


@pytest.fixture(scope="module")
def references() -> dict[tuple[str, str, str], tuple[int, bytes, set[int]]]:
    return {}


def dump_of(form: str, corpus_case: Path, corpus_elf: Path) -> Path:
    return corpus_case / "vmcore.c-d31.kdump" if form == "kdump" else corpus_elf


def reference(refs: dict, case: str, form: str, path: Path, cmd: list[str]) -> tuple[int, bytes, set[int]]:  # type: ignore[type-arg]
    key = (case, form, " ".join(cmd))
    if key not in refs:
        pages: set[int] = set()
        rc, out, err = run([*cmd, str(path)], record=pages)
        assert "Traceback" not in err, err
        refs[key] = (rc, out, pages)
    return refs[key]


def damaged_pfns(path: Path) -> tuple[set[int], object]:
    """Pfns that verify says are missing or corrupt (whole runs), and its report."""
    with open_dump(str(path)) as phys:
        rep = verify(phys)
    ps = rep.page_size
    bad: set[int] = set()
    for r in rep.bad_ranges:
        bad.update(range(r.start // ps, -(-r.end // ps)))
    return bad, rep


def check_commands(refs: dict, case: str, form: str, intact: Path, damaged: Path, bad: set[int],  # type: ignore[type-arg]
                   slow: bool = False) -> dict:  # type: ignore[type-arg]
    """Every command on the damaged copy against its intact reference (see module docstring)."""
    results = {}
    for cmd in COMMANDS + (SLOW_COMMANDS if slow else []):
        if not have_command(cmd[0]):
            continue
        ref_rc, ref_out, pages = reference(refs, case, form, intact, cmd)
        rc, out, err = run([*cmd, str(damaged)])
        name = " ".join(cmd)
        assert "Traceback" not in err, f"{name}: {err}"
        assert rc in (0, 1, 3), f"{name}: exit {rc}: {err}"
        if rc == 1:
            assert len([ln for ln in err.splitlines() if ln.startswith("vmcorekit: error:")]) == 1, err
        survived = not (pages & bad)
        if rc == 0 or survived:
            # Exit 0 promises a complete result; and a command whose pages all survive must
            # give one.
            assert (rc, out) == (ref_rc, ref_out), (
                f"{name}: exit {rc}, pages {'survive' if survived else 'damaged'}, output "
                f"{'differs' if out != ref_out else 'same'}; stderr: {err[-2000:]}")
        if rc == 3:  # partial: the command says what is missing (triage: in its report)
            said = b"unavailable" in out if cmd[0] == "triage" else "vmcorekit:" in err
            assert said, f"{name}: partial result without a word of what is missing"
        results[name] = (rc, survived)
    return results


# -- the tests -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", FORMS)
def test_truncated_at_fractions(corpus_case: Path, corpus_elf: Path, tmp_path: Path, form: str,
                                references: dict) -> None:  # type: ignore[type-arg]
    intact = dump_of(form, corpus_case, corpus_elf)
    size = intact.stat().st_size
    full = {}
    for frac in FRACTIONS:
        cut = int(size * frac)
        dst = tmp_path / f"cut{int(frac * 100)}"
        sparse_prefix_copy(intact, dst, cut)
        try:
            bad, rep = damaged_pfns(dst)
            assert rep.pages["missing"] > 0 and rep.pages["corrupt"] == 0
            assert all(r.state == "missing" for r in rep.bad_ranges)
            # info --ranges lists exactly the ranges verify found, and exits 3.
            rc, out, err = run(["info", "--ranges", "--json", str(dst)])
            assert rc == 3 and "Traceback" not in err
            import json
            d = json.loads(out)
            assert [(r["start"], r["end"]) for r in d["damage"]["unreadable_ranges"]] == \
                   [(f"{r.start:#x}", f"{r.end:#x}") for r in rep.bad_ranges]  # addresses: "0x..."
            assert d["incomplete"] is True
            full[frac] = check_commands(references, corpus_case.name, form, intact, dst, bad, slow=frac == 0.9)
        finally:
            dst.unlink()
    print(f"{corpus_case.name}/{form}: (exit status, pages survived) by cut: {full}")


def test_missing_ranges_match_the_truncation(corpus_case: Path, tmp_path: Path) -> None:
    """Every dumped page whose data lies past the cut is listed, and no other page."""
    intact = corpus_case / "vmcore.c-d31.kdump"
    cut = int(intact.stat().st_size * 0.6)
    dst = tmp_path / "cut"
    sparse_prefix_copy(intact, dst, cut)
    with open_dump(str(intact)) as k:
        n = k.dumpable_pages
        desc = np.frombuffer(k._src.read(k._pdesc_off, n * DESC_DTYPE.itemsize), dtype=DESC_DTYPE)
        pfns = k.dumped_pfns()
    lost = set(pfns[(desc["offset"] + desc["size"].astype(np.int64)) > cut].tolist())
    with open_dump(str(dst)) as phys:
        rep = verify(phys)
    ps = rep.page_size
    inside = np.zeros(len(pfns), dtype=bool)
    for r in rep.bad_ranges:
        inside |= (pfns >= r.start // ps) & (pfns < r.end // ps)
    assert set(pfns[inside].tolist()) == lost
    assert rep.pages["missing"] == len(lost)


def structure_cuts(form: str, intact: Path) -> dict[str, int]:
    if form == "elf":
        with open_dump(str(intact)) as d:
            note_off = min(n.offset for n in d.notes if n.offset is not None)
        return {"elf-header": 40, "program-headers": 100, "notes": note_off + 100}
    lay = kdump_layout(intact)
    return {"kdump-header": 300, "sub-header": lay["block"] + 60, "notes": lay["block"] + 400,
            "bitmap1": lay["bitmap1"] + 100, "bitmap2": lay["bitmap2"] + 100,
            "descriptors": lay["pdesc"] + 24 * (lay["ndesc"] // 2) + 7}


@pytest.mark.parametrize("form", FORMS)
def test_truncated_inside_structures(corpus_case: Path, corpus_elf: Path, tmp_path: Path, form: str,
                                     references: dict) -> None:  # type: ignore[type-arg]
    """Cut inside the headers, notes, bitmaps or descriptor table: each command either says in
    one line why the dump cannot be read (exit 1) or prints what survives (exit 3)."""
    intact = dump_of(form, corpus_case, corpus_elf)
    for where, cut in structure_cuts(form, intact).items():
        dst = tmp_path / f"cut-{where}"
        sparse_prefix_copy(intact, dst, cut)
        try:
            rc, out, err = run(["verify", str(dst)])
            assert "Traceback" not in err and rc in (1, 3), (where, rc, err)
            if rc == 1:
                assert err.count("vmcorekit: error:") == 1 and str(dst) in err, (where, err)
            rc, out, err = run(["info", "--ranges", str(dst)])
            assert "Traceback" not in err and rc in (1, 3), (where, rc, err)
            for cmd in COMMANDS:
                if have_command(cmd[0]):
                    rc, out, err = run([*cmd, str(dst)])
                    assert "Traceback" not in err and rc in (1, 3), (where, cmd, rc, err)
        finally:
            dst.unlink()


def test_flipped_compressed_pages(corpus_case: Path, tmp_path: Path, references: dict) -> None:  # type: ignore[type-arg]
    """Bytes flipped inside every 40th compressed page: verify finds each one as corrupt, and
    the commands print everything else."""
    intact = corpus_case / "vmcore.c-d31.kdump"
    dst = tmp_path / "flipped"
    flipped = flip_pages(intact, dst, every=40, xor=0x5A)
    bad, rep = damaged_pfns(dst)
    assert rep.pages["missing"] == 0
    # zlib's checksum catches any flip: every damaged page, and only those, is corrupt.
    assert bad == set(flipped)
    assert rep.pages["corrupt"] == len(flipped)
    rc, out, err = run(["verify", str(dst)])
    assert rc == 3 and "DAMAGED" in out.decode()
    check_commands(references, corpus_case.name, "kdump", intact, dst, bad, slow=True)


@pytest.mark.parametrize("form", FORMS)
def test_intact_dump_verifies(corpus_case: Path, corpus_elf: Path, form: str) -> None:
    rc, out, err = run(["verify", "--json", str(dump_of(form, corpus_case, corpus_elf))])
    import json
    d = json.loads(out)
    assert rc == 0 and d["ok"], (d["problems"], d["checks"])
    assert d["pages"]["missing"] == d["pages"]["corrupt"] == 0 and not d["bad_ranges"]


@pytest.mark.parametrize("cmd", ["dmesg", "ps"])
def test_damage_outside_what_a_command_reads_leaves_it_whole(corpus_case: Path, tmp_path: Path, cmd: str,
                                                             references: dict) -> None:  # type: ignore[type-arg]
    """Corrupt every compressed page the command does not read (thousands): the log and the
    task list come out unchanged, exit 0, while verify finds every damaged page."""
    if not have_command(cmd):
        pytest.skip(f"no {cmd} command")
    intact = corpus_case / "vmcore.c-d31.kdump"
    ref_rc, ref_out, pages = reference(references, corpus_case.name, "kdump", intact, [cmd])
    keep = np.array(sorted(pages), dtype=np.int64)
    dst = tmp_path / "outside"
    flipped = flip_pages(intact, dst, lambda pfns: ~np.isin(pfns, keep))
    assert len(flipped) > 1000
    rc, out, err = run([cmd, str(dst)])
    assert (rc, out) == (ref_rc, ref_out) and ref_rc == 0, err
    rc, out, err = run(["verify", "--json", str(dst)])
    import json
    assert rc == 3 and json.loads(out)["pages"]["corrupt"] == len(flipped)


def test_damage_inside_the_log_is_reported_once(corpus_case: Path, tmp_path: Path,
                                                references: dict) -> None:  # type: ignore[type-arg]
    """Corrupt one page in the middle of the printk text ring: dmesg prints every other record
    (a subset of the intact output, in order), names the damaged bytes once, exits 3."""
    from vmcorekit import Program
    from vmcorekit.kernel.printk.lockless import _Keys

    intact = corpus_case / "vmcore.c-d31.kdump"
    ref_rc, ref_out, _ = reference(references, corpus_case.name, "kdump", intact, ["dmesg"])
    with Program.open(str(intact)) as prog:
        k = _Keys(prog)
        rb = prog.read_u64(k.prb_sym)
        data = prog.read_u64(rb + k.text_ring + k.data)
        size = 1 << prog.read_u32(rb + k.text_ring + k.size_bits)
        ring = [prog.space.translate(data + off) // prog.page_size for off in range(0, size, prog.page_size)]
        stored = [pfn for pfn in ring if prog.phys.page_state(pfn).value == "present"]  # not all-zero
    assert len(stored) >= 3
    target = stored[len(stored) // 2]
    dst = tmp_path / "inside"
    flipped = flip_pages(intact, dst, lambda pfns: pfns == target)
    assert flipped == [target]
    rc, out, err = run(["dmesg", str(dst)])
    assert rc == 3, err
    lines, ref_lines = out.splitlines(), ref_out.splitlines()
    assert 0 < len(ref_lines) - len(lines) < 200
    it = iter(ref_lines)
    assert all(line in it for line in lines)  # an in-order subsequence
    mentions = [ln for ln in err.splitlines() if "text ring" in ln]
    assert len(mentions) == 1, err
