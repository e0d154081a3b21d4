"""`vmcorekit verify` and the damage reporting it shares with `info --ranges`; the partial-result
exit status; safe output files (util/fileout.py) and read-only input.

Synthetic dumps (kdumpgen, elfgen) are damaged one structure at a time, so each expected bad
range is known exactly."""
from __future__ import annotations

import json
import os
import stat
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest

from elfgen import build_core, note
from kdumpgen import PAGE_DESC, build_kdump, flatten, page_pattern
from vmcorekit.cli.main import main
from vmcorekit.dump import open_dump
from vmcorekit.dump.checks import VerifyReport, runs_of
from vmcorekit.dump.elf_layout import walk_notes
from vmcorekit.dump.integrity import damage_hint
from vmcorekit.errors import EXIT_PARTIAL, PartialResultWarning, partial_result
from vmcorekit.report.verify import verify
from vmcorekit.util.fileout import atomic_output, safe_split_names

PS = 4096
# The real note of the shipped sample, so the VMCOREINFO check has a complete one to pass.
VMCI = (Path(__file__).resolve().parent.parent / "samples" / "vmcoreinfo.txt").read_bytes()


def write(tmp_path: Path, data: bytes, name: str = "dump") -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def pages_and_excluded() -> tuple[dict[int, bytes], list[int]]:
    """Pfns 0..127: 0..39 and 64..99 dumped (every 7th all-zero), 40..63 excluded, rest holes."""
    pages = {p: (bytes(PS) if p % 7 == 3 else page_pattern(p)) for p in [*range(40), *range(64, 100)]}
    return pages, list(range(40, 64))


def kdump_image(**kw):  # type: ignore[no-untyped-def]
    pages, excluded = pages_and_excluded()
    return build_kdump(pages, max_mapnr=128, excluded=excluded, vmcoreinfo=VMCI, **kw), pages


def check(path: str | list[str], **kw: object) -> VerifyReport:
    with open_dump(path) as phys:
        return verify(phys, **kw)  # type: ignore[arg-type]


def bad(rep: VerifyReport) -> list[tuple[str, int, int, int]]:
    return [(r.state, r.start // PS, r.end // PS, r.pages) for r in rep.bad_ranges]


# -- kdump ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", ["zlib", "lzo", "snappy", "zstd", "none"])
def test_intact_kdump(tmp_path: Path, codec: str) -> None:
    img, pages = kdump_image(codec=codec)
    rep = check(write(tmp_path, img.data))
    assert rep.ok, (rep.problems, rep.checks)
    zero = sum(1 for c in pages.values() if c == bytes(PS))
    assert rep.pages == {"good": len(pages) - zero, "zero": zero, "excluded": 24, "missing": 0, "corrupt": 0}
    assert {c.name for c in rep.checks} >= {"headers", "bitmaps", "descriptors", "page data", "notes", "vmcoreinfo"}


def test_truncated_in_page_data_lists_each_lost_page(tmp_path: Path) -> None:
    img, pages = kdump_image()
    off70, _ = img.page_off[70]
    rep = check(write(tmp_path, img.data[:off70 + 10]))
    # Pages from 70 on lose their data; the zero pages among them still read (shared zero page).
    lost = [p for p in sorted(pages) if p >= 70 and pages[p] != bytes(PS)]
    assert rep.pages["missing"] == len(lost)
    covered = {p for _, a, b, _ in bad(rep) for p in range(a, b)}
    assert covered & set(pages) == set(lost)
    assert all(r.state == "missing" and "past the end of the file" in r.reason for r in rep.bad_ranges)
    # Zero pages split the runs: 73 (zero) separates [70, 73) from [74, 80) ...
    assert ("missing", 70, 73, 3) in bad(rep)
    assert not rep.ok
    assert damage_hint(open_dump(write(tmp_path, img.data[:off70 + 10], "again"))) is not None


def test_truncated_in_descriptor_table(tmp_path: Path) -> None:
    img, pages = kdump_image()
    cut = img.desc_off[80] + 5  # inside the descriptor of pfn 80
    rep = check(write(tmp_path, img.data[:cut]))
    # The page data (the zero page included) comes after the table: nothing survives.
    assert rep.pages["missing"] == len(pages) and rep.pages["good"] == rep.pages["zero"] == 0
    first = min(pages)
    assert bad(rep) == [("missing", first, 80, sum(1 for p in pages if p < 80)),
                        ("missing", 80, max(pages) + 1, sum(1 for p in pages if p >= 80))]
    assert "past the end of the file" in rep.bad_ranges[0].reason
    assert "descriptor not in the file" in rep.bad_ranges[1].reason


def test_corrupt_page_found_and_grouped(tmp_path: Path) -> None:
    img, _ = kdump_image()
    data = bytearray(img.data)
    for pfn in (5, 6, 90):
        off, size = img.page_off[pfn]
        data[off + size // 2] ^= 0xFF
    rep = check(write(tmp_path, bytes(data)))
    assert rep.pages["corrupt"] == 3 and rep.pages["missing"] == 0
    assert bad(rep) == [("corrupt", 5, 7, 2), ("corrupt", 90, 91, 1)]
    assert all("zlib" in r.reason for r in rep.bad_ranges)
    # --quick reads no page data, so it cannot see them.
    quick = check(write(tmp_path, bytes(data), "q"), read_data=False)
    assert quick.pages["corrupt"] == 0 and not quick.data_checked


def test_bad_descriptors(tmp_path: Path) -> None:
    img, _ = kdump_image()
    data = bytearray(img.data)
    off, size = img.page_off[8]
    PAGE_DESC.pack_into(data, img.desc_off[8], 100, size, 1, 0)  # points into the header
    PAGE_DESC.pack_into(data, img.desc_off[9], off, size, 1 | 0x20, 0)  # zlib and zstd at once
    PAGE_DESC.pack_into(data, img.desc_off[10], off, PS + 1, 1, 0)  # larger than a page
    PAGE_DESC.pack_into(data, img.desc_off[11], 0, 0, 0, 0)  # never written
    rep = check(write(tmp_path, bytes(data)))
    reasons = {r.start // PS: (r.state, r.reason) for r in rep.bad_ranges}
    assert reasons[8] == ("corrupt", "data offset points into the headers or descriptor table")
    assert reasons[9] == ("corrupt", "descriptor flags name several codecs")
    assert reasons[10][0] == "corrupt" and "larger than a page" in reasons[10][1]
    assert reasons[11] == ("missing", "descriptor is empty")
    assert not rep.ok and next(c for c in rep.checks if c.name == "descriptors").ok is False


def test_overlapping_page_data_is_a_problem(tmp_path: Path) -> None:
    img, _ = kdump_image()
    data = bytearray(img.data)
    off, size = img.page_off[12]
    PAGE_DESC.pack_into(data, img.desc_off[13], off + 1, size, 1, 0)
    rep = check(write(tmp_path, bytes(data)))
    assert any("overlapping" in p for p in rep.problems)


def test_bitmaps_disagree(tmp_path: Path) -> None:
    """A page marked dumped in the 2nd bitmap but absent from the 1st."""
    img, _ = kdump_image()
    data = bytearray(img.data)
    bm1 = img.bitmap_off
    data[bm1 + 1] &= ~0x01 & 0xFF  # pfn 8 leaves the 1st bitmap only
    rep = check(write(tmp_path, bytes(data)))
    assert any("not in memory (1st bitmap)" in p for p in rep.problems)
    assert next(c for c in rep.checks if c.name == "bitmaps").ok is False


def test_incomplete_flag(tmp_path: Path) -> None:
    img, _ = kdump_image(incomplete=True)
    rep = check(write(tmp_path, img.data))
    assert any("incomplete" in p for p in rep.problems) and not rep.ok


def test_flattened_with_a_gap_and_no_end_marker(tmp_path: Path) -> None:
    img, _ = kdump_image()
    off, size = img.page_off[30]
    flat = flatten(img.data, drop=(off, off + size), end_marker=False)
    rep = check(write(tmp_path, flat))
    assert ("missing", 30, 31, 1) in bad(rep)
    assert next(r for r in rep.bad_ranges if r.start == 30 * PS).reason == "page data not in the flattened stream"
    assert any("no end marker" in p for p in rep.problems)
    # The intact stream verifies.
    assert check(write(tmp_path, flatten(img.data), "ok")).ok


def test_split_set_with_a_missing_part(tmp_path: Path) -> None:
    pages, excluded = pages_and_excluded()
    paths = []
    for i, b in enumerate([(0, 50), (50, 90), (90, 128)]):
        img = build_kdump(pages, max_mapnr=128, excluded=excluded, split=b, vmcoreinfo=VMCI)
        paths.append(write(tmp_path, img.data, f"part{i}"))
    assert check(paths).ok
    rep = check([paths[0], paths[2]])
    lost = sorted(p for p in pages if 50 <= p < 90)
    assert rep.pages["missing"] == len(lost)
    assert bad(rep) == [("missing", lost[0], lost[-1] + 1, len(lost))]
    assert "in no given file" in rep.bad_ranges[0].reason


def test_progress_is_monotonic(tmp_path: Path) -> None:
    img, _ = kdump_image()
    seen: list[tuple[int, int]] = []
    check(write(tmp_path, img.data), progress=lambda d, t: seen.append((d, t)), threads=2)
    assert seen and seen[-1][0] == seen[-1][1]
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


# -- ELF -----------------------------------------------------------------------------------------
def elf_image() -> tuple[bytes, list[tuple[int, int, bytes]]]:
    segs = [(0xFFFF888000000000, 0, b"".join(page_pattern(p) for p in range(16))),
            (0xFFFF888000100000, 0x100000, b"".join(page_pattern(p) for p in range(256, 288)))]
    notes = note(b"CORE", 1, bytes(336)) + note(b"VMCOREINFO", 0, VMCI)
    return build_core(segs, notes), segs


def test_elf_intact_and_truncated(tmp_path: Path) -> None:
    data, _ = elf_image()
    rep = check(write(tmp_path, data))
    assert rep.ok and rep.pages["good"] == 48, (rep.problems, rep.checks)
    with open_dump(write(tmp_path, data, "x")) as d:
        seg2 = d._segs[1].offset
    cut = seg2 + 10 * PS + 100
    rep = check(write(tmp_path, data[:cut], "cut"))
    assert bad(rep) == [("missing", 0x100 + 10, 0x100 + 32, 22)]
    assert rep.pages == {"good": 16 + 10, "zero": 0, "excluded": 0, "missing": 22, "corrupt": 0}


def test_elf_overlapping_segments_and_bad_notes(tmp_path: Path) -> None:
    data, _ = elf_image()
    b = bytearray(data)
    with open_dump(write(tmp_path, data)) as d:
        phoff = struct.unpack_from("<Q", data, 32)[0]
        off0 = d._segs[0].offset
    # Program header 2 (second PT_LOAD) now starts inside the first one's file data.
    struct.pack_into("<Q", b, phoff + 2 * 56 + 8, off0 + PS)
    # The note area's second note claims a descriptor longer than the area.
    note_off = struct.unpack_from("<Q", data, phoff + 8)[0]
    first = 12 + 8 + 336
    struct.pack_into("<I", b, note_off + first + 4, 1 << 20)
    rep = check(write(tmp_path, bytes(b), "bad"))
    assert any("overlaps PT_LOAD" in p for p in rep.problems)
    assert any("runs past the end" in p and "PT_NOTE" in p for p in rep.problems)


def test_walk_notes() -> None:
    good = note(b"CORE", 1, b"x" * 10) + note(b"VMCOREINFO", 0, b"A=1\n")
    assert walk_notes(good) == (2, None)
    assert walk_notes(good + bytes(64)) == (2, None)
    assert walk_notes(good + b"\1\0\0")[1] is not None
    assert walk_notes(good[:-3])[1] is not None


def test_vmcoreinfo_problems(tmp_path: Path) -> None:
    pages, excluded = pages_and_excluded()
    img = build_kdump(pages, max_mapnr=128, excluded=excluded, vmcoreinfo=None)
    rep = check(write(tmp_path, img.data))
    assert next(c for c in rep.checks if c.name == "vmcoreinfo").ok is False
    img = build_kdump(pages, max_mapnr=128, excluded=excluded, vmcoreinfo=VMCI + b"garbage line\n")
    rep = check(write(tmp_path, img.data, "m"))
    c = next(c for c in rep.checks if c.name == "vmcoreinfo")
    assert c.ok is False and "malformed" in c.detail


def test_runs_of() -> None:
    pfns = np.array([1, 2, 3, 7, 8, 9])
    codes = np.array([0, 0, 1, 1, 1, 1])
    assert runs_of(pfns, codes) == [(1, 3, 2, 0), (3, 4, 1, 1), (7, 10, 3, 1)]
    # By descriptor index: 3 and 7 are neighbours among the dumped pages (4..6 excluded).
    assert runs_of(pfns, codes, np.array([0, 1, 2, 3, 4, 5])) == [(1, 3, 2, 0), (3, 10, 4, 1)]
    assert runs_of(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)) == []


# -- the CLI -------------------------------------------------------------------------------------
def cli(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_verify_cli_exit_status(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    img, _ = kdump_image()
    good = write(tmp_path, img.data, "good")
    rc, out, err = cli(capsys, "verify", good)
    assert rc == 0 and "OK" in out
    off, _ = img.page_off[70]
    cut = write(tmp_path, img.data[:off + 1], "cut")
    rc, out, err = cli(capsys, "verify", "--json", cut)
    assert rc == EXIT_PARTIAL
    d = json.loads(out)
    assert d["ok"] is False and d["pages"]["missing"] > 0
    assert d["bad_ranges"][0]["start"] == f"{70 * PS:#x}"
    junk = write(tmp_path, b"KDUMP   " + bytes(50), "junk")
    rc, out, err = cli(capsys, "verify", junk)
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err
    rc, out, err = cli(capsys, "info", "--ranges", cut)
    assert rc == EXIT_PARTIAL and f"{70 * PS:#014x}" in out and "past the end of the file" in out
    rc, out, err = cli(capsys, "info", "--ranges", "--json", good)
    assert rc == 0 and json.loads(out)["damage"]["unreadable_ranges"] == []


def test_partial_result_mechanism(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A command that warns PartialResultWarning exits 3; each message printed once; a
    reported=False warning only sets the status."""
    import click

    from vmcorekit.cli import main as main_mod

    @click.command("partial-test")
    def cmd() -> None:
        click.echo("some output")
        partial_result("pages 0x1000-0x2000 are missing")
        partial_result("pages 0x1000-0x2000 are missing")
        partial_result("already said", reported=False)

    monkeypatch.setitem(main_mod.cli.commands, "partial-test", cmd)
    rc, out, err = cli(capsys, "partial-test")
    assert rc == EXIT_PARTIAL and out == "some output\n"
    assert err.count("pages 0x1000-0x2000 are missing") == 1
    assert "already said" not in err

    @click.command("full-test")
    def ok() -> None:
        click.echo("all")
        warnings.warn("an ordinary warning is no partial result", UserWarning)

    monkeypatch.setitem(main_mod.cli.commands, "full-test", ok)
    with pytest.warns(UserWarning, match="ordinary"):
        assert cli(capsys, "full-test")[0] == 0
    with pytest.warns(PartialResultWarning):
        partial_result("library users see a normal warning")


# -- safe outputs --------------------------------------------------------------------------------
def test_atomic_output_mode_and_rename(tmp_path: Path) -> None:
    final = tmp_path / "out"
    old = os.umask(0)
    try:
        with atomic_output(final) as f:
            f.write(b"data")
            assert not final.exists()  # only complete files carry the final name
            tmps = [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
            assert len(tmps) == 1 and stat.S_IMODE(tmps[0].stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert final.read_bytes() == b"data"
    assert stat.S_IMODE(final.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_output_error_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_output(final) as f:
            f.write(b"half")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
    final.write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(final) as f:
            f.write(b"half")
            raise KeyboardInterrupt
    assert final.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_output_symlink_at_final_name_is_replaced(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"secret config")
    os.chmod(victim, 0o644)
    link = tmp_path / "out"
    link.symlink_to(victim)
    with atomic_output(link) as f:
        f.write(b"dump")
    assert victim.read_bytes() == b"secret config"  # never written through
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert not link.is_symlink() and link.read_bytes() == b"dump"


def test_atomic_output_symlink_at_temp_name_is_refused(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Someone who guesses the temporary name and plants a link there gets an error, and the
    link's target is untouched."""
    from vmcorekit.util import fileout

    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    monkeypatch.setattr(fileout.os, "urandom", lambda n: b"guessd"[:n])
    (tmp_path / f".out.{b'guessd'.hex()}.tmp").symlink_to(victim)
    from vmcorekit.errors import OutputError
    with pytest.raises(OutputError, match="out: cannot create") as e:
        with atomic_output(tmp_path / "out") as f:
            f.write(b"dump")
    assert ".tmp" not in str(e.value)  # the user's path is named, never our temporary
    assert victim.read_bytes() == b"keep" and not (tmp_path / "out").exists()
    assert (tmp_path / f".out.{b'guessd'.hex()}.tmp").is_symlink()  # not ours: left alone


def test_atomic_output_long_name(tmp_path: Path) -> None:
    final = tmp_path / ("n" * 250)
    with atomic_output(final) as f:
        f.write(b"x")
    assert final.read_bytes() == b"x"


def test_safe_split_names(tmp_path: Path) -> None:
    out = tmp_path / "vmcore"
    names = safe_split_names(out, 3)
    assert names == [str(tmp_path / f"vmcore.{i}") for i in (1, 2, 3)]
    assert all(os.path.dirname(n) == str(tmp_path) for n in names)
    assert safe_split_names(out, 1) == [str(out)]
    for bad_name in ("", str(tmp_path) + "/", ".", "..", str(tmp_path / ".."), "a\0b", "x" * 254):
        with pytest.raises(ValueError):
            safe_split_names(bad_name, 3)
    for n in (0, -1, 5000):
        with pytest.raises(ValueError):
            safe_split_names(out, n)
    (tmp_path / "vmcore.2").mkdir()
    with pytest.raises(ValueError):
        safe_split_names(out, 3)


# -- read-only input -----------------------------------------------------------------------------
def _fd_modes(path: str) -> list[int]:
    """Access modes of this process's descriptors open on `path`."""
    real = os.path.realpath(path)
    modes = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.path.realpath(f"/proc/self/fd/{fd}") != real:
                continue
            with open(f"/proc/self/fdinfo/{fd}") as f:
                flags = next(int(line.split()[1], 8) for line in f if line.startswith("flags:"))
            modes.append(flags & os.O_ACCMODE)
        except (OSError, StopIteration):
            continue
    return modes


def _map_perms(path: str) -> list[str]:
    real = os.path.realpath(path)
    with open("/proc/self/maps") as f:
        return [line.split()[1] for line in f if line.rstrip().endswith(real)]


@pytest.mark.parametrize("kind", ["kdump", "flattened", "elf"])
def test_input_opened_read_only(tmp_path: Path, kind: str) -> None:
    img, _ = kdump_image()
    data = {"kdump": img.data, "flattened": flatten(img.data), "elf": elf_image()[0]}[kind]
    p = write(tmp_path, data)
    os.chmod(p, 0o444)
    before = os.stat(p)
    with open_dump(p) as phys:
        assert _fd_modes(p) and all(m == os.O_RDONLY for m in _fd_modes(p))
        perms = _map_perms(p)
        assert perms and all("w" not in m for m in perms), perms
        for r in phys.ranges():
            phys.read(r.start, min(r.size, 4 * PS))
        verify(phys)
    after = os.stat(p)
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    assert Path(p).read_bytes() == data
    assert _fd_modes(p) == []  # closed


def test_broken_kernel_list_is_a_partial_result() -> None:
    """A list walked with on_error="warn" that meets a cycle ends with a PartialResultWarning
    naming why (the CLI turns it into exit status 3), after yielding every good entry."""
    import vmcorekit.kernel.lists as lists
    from vmcorekit.errors import PageNotInDumpError

    mem = {0x1000: 0x2000, 0x2000: 0x3000, 0x3000: 0x2000}  # head -> a -> b -> a: a cycle

    class Prog:  # what list_nodes uses of a Program, with no types (ABI offsets)
        class space:
            pointer_size = 8

        def read_u64(self, addr: int) -> int:
            if addr not in mem:
                raise PageNotInDumpError(addr, "not in this test")
            return mem[addr]

    with pytest.warns(PartialResultWarning, match="cycle"):
        got = list(lists._run(lists.list_nodes(Prog(), 0x1000), "warn"))  # type: ignore[arg-type]
    assert got == [0x2000, 0x3000]


def test_decompressed_copy_cache_must_be_private(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Dumps shipped compressed are decompressed into a cache folder with a predictable name; a
    folder someone else can write to (or a link planted at the default name) could hold planted
    copies: refused."""
    from vmcorekit.dump.wrapped import cache_dir
    from vmcorekit.errors import VmcorekitError

    ok = tmp_path / "mine"
    monkeypatch.setenv("VMCOREKIT_CACHE", str(ok))
    assert cache_dir() == str(ok) and stat.S_IMODE(ok.stat().st_mode) & 0o022 == 0
    link = tmp_path / "link"
    link.symlink_to(ok)
    monkeypatch.setenv("VMCOREKIT_CACHE", str(link))
    assert cache_dir() == str(link)  # a folder the user chose may be a link
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    monkeypatch.setenv("VMCOREKIT_CACHE", str(shared))
    with pytest.raises(VmcorekitError, match="no one else can write"):
        cache_dir()
    # The default name ($XDG_CACHE_HOME/vmcorekit): a link planted there is refused.
    monkeypatch.delenv("VMCOREKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "xdg").mkdir()
    (tmp_path / "xdg" / "vmcorekit").symlink_to(ok)
    with pytest.raises(VmcorekitError):
        cache_dir()
    (tmp_path / "xdg" / "vmcorekit").unlink()
    assert cache_dir() == str(tmp_path / "xdg" / "vmcorekit")
    assert stat.S_IMODE((tmp_path / "xdg" / "vmcorekit").stat().st_mode) == 0o700


def test_windows_do_not_change_the_result(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The descriptor table is checked a window at a time (bounded memory on huge dumps): runs
    that cross windows are still one run, counts add up."""
    import vmcorekit.dump.kdump_checks as V

    img, _ = kdump_image()
    data = bytearray(img.data)
    for pfn in (14, 15, 16, 20):  # not all-zero pages (those share one stored page)
        off, size = img.page_off[pfn]
        data[off + size // 2] ^= 0xFF
    off70, _ = img.page_off[70]
    path = write(tmp_path, bytes(data[:off70 + 1]))
    whole = check(path)
    monkeypatch.setattr(V, "DESC_WINDOW", 8)
    small = check(path)
    assert small.pages == whole.pages and small.bad_ranges == whole.bad_ranges
    assert bad(small)[:2] == [("corrupt", 14, 17, 3), ("corrupt", 20, 21, 1)]  # 14-16 cross an edge
