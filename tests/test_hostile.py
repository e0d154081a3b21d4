"""Trust: hostile input held, reproducible output.

Each crafted file (fuzz/hostile.py: a real or tiny header claiming far more than the file
holds, the rest a hole of a sparse file) goes through the commands a user runs, each in a
subprocess measured with os.wait4: one line on stderr naming the file (and the offset), exit
status 1 or 3, under 20 s and 1 GiB of peak RSS."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
sys.path.insert(0, str(FUZZ))

import hostile  # noqa: E402

SAMPLE = hostile.SAMPLE
MAX_SECONDS = 20
MAX_RSS = 1 << 30


# The child reports its own peak RSS (VmHWM) as it exits: wait4's ru_maxrss would also count
# what the child was before exec — a copy of this pytest process (fork keeps the parent's
# high-water mark across execve), gigabytes late in a full run.
_LAUNCH = ("import atexit, os, runpy, sys\n"
           "out = os.environ.pop('VMCOREKIT_TEST_HWM')\n"
           "def hwm():\n"
           "    with open('/proc/self/status') as f:\n"
           "        kb = next(int(ln.split()[1]) for ln in f if ln.startswith('VmHWM:'))\n"
           "    with open(out, 'w') as f:\n"
           "        f.write(str(kb * 1024))\n"
           "atexit.register(hwm)\n"
           "sys.argv = ['vmcorekit', *sys.argv[1:]]\n"
           "runpy.run_module('vmcorekit', run_name='__main__')\n")


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, float, int, str]:
    """(exit status, seconds, peak RSS in bytes, stderr) of `vmcorekit ARGS` in a child
    (time and status from os.wait4, peak RSS the child's own VmHWM)."""
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="hwm-") as hwm:
        t = time.monotonic()
        p = subprocess.Popen([sys.executable, "-c", _LAUNCH, *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env={**os.environ, **(env or {}), "VMCOREKIT_TEST_HWM": hwm.name})
        assert p.stderr is not None
        err = p.stderr.read().decode(errors="replace")
        _, status, _ = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        secs = time.monotonic() - t
        rss = int(open(hwm.name).read() or 0)
    assert rss > 0, err
    return p.returncode, secs, rss, err


def assert_held(args: list[str], path: Path, *, offset: bool = True, env: dict[str, str] | None = None,
                expect: str = "") -> str:
    rc, secs, rss, err = run(args, env)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc in (1, 3), (rc, err)
    assert len(lines) == 1 and lines[0].startswith(f"vmcorekit: error: {path}"), err
    if offset:
        assert " at offset 0x" in lines[0], err
    assert expect in lines[0], err
    assert secs < MAX_SECONDS, (args, secs)
    assert rss < MAX_RSS, (args, rss >> 20)
    return lines[0]


# -- 2. memory follows what a header claims ---------------------------------------------------
@pytest.mark.parametrize("cmd", ["info", "dmesg", "verify", "filter"])
def test_kdump_bitmaps_claiming_2_33_pages(tmp_path: Path, cmd: str) -> None:
    """16 KiB on disk, bitmaps for 2^33 pages (2 GiB of hole): was 4.5-7.3 GiB of RSS."""
    bad = hostile.write(tmp_path / "huge-bitmaps.kdump", hostile.kdump_huge_bitmaps())
    assert bad.stat().st_blocks * 512 <= 64 << 10
    args = [cmd, str(bad)] + (["-d", "31", "-c", str(tmp_path / "out")] if cmd == "filter" else [])
    assert_held(args, bad, expect="marks no page")


def test_kdump_bitmaps_mostly_hole_stay_views(tmp_path: Path) -> None:
    """The same claim with a block of pages present: it opens, and its bitmaps are looked at
    where they lie (no copy of 2 GiB), verify and info included."""
    bad = hostile.write(tmp_path / "mostly-hole.kdump", hostile.kdump_huge_bitmaps(fill=0xFF))
    for cmd in (["info"], ["verify", "--quick"]):
        rc, secs, rss, err = run([*cmd, str(bad)])
        assert rc in (0, 3) and secs < MAX_SECONDS and rss < MAX_RSS, (cmd, rc, secs, rss >> 20, err)


# -- 4. floods of notes and program headers -------------------------------------------------------
def test_elf_note_flood(tmp_path: Path) -> None:
    """64 MiB of empty notes (4 M of them): was 22 s and 2 GiB."""
    bad = hostile.write(tmp_path / "notes.elf", hostile.elf_note_flood())
    for cmd in ("info", "verify"):
        assert_held([cmd, str(bad)], bad, expect="more than 65536 ELF notes")


def test_elf_pt_load_flood(tmp_path: Path) -> None:
    """2^20 + 1 PT_LOADs: refused past the cap, naming the header."""
    bad = hostile.write(tmp_path / "loads.elf", hostile.elf_many_loads((1 << 20) + 1))
    assert_held(["info", str(bad)], bad, expect="more than 1048576 PT_LOAD")


def test_elf_pt_load_at_the_cap_is_compact(tmp_path: Path) -> None:
    """2^20 PT_LOADs (the cap) open within the bounds: columns, not objects (was 590 MiB, 9 s
    to open alone)."""
    f = hostile.write(tmp_path / "loads.elf", hostile.elf_many_loads(1 << 20))
    rc, secs, rss, err = run(["verify", "--quick", str(f)])
    assert rc in (0, 3) and secs < MAX_SECONDS and rss < MAX_RSS, (rc, secs, rss >> 20, err)


def test_elf_reader_caps_in_process() -> None:
    from vmcorekit.dump.elf_layout import NOTES_CAP, parse_notes, walk_notes

    flood = (b"\x01\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0") * (NOTES_CAP + 10)
    t = time.monotonic()
    assert len(parse_notes(flood, limit=NOTES_CAP + 1)) == NOTES_CAP + 1
    count, problem = walk_notes(flood)
    assert problem and "more than" in problem and count == NOTES_CAP + 1
    assert time.monotonic() - t < 5


# -- 3. decompression bombs and the cache -----------------------------------------------------------
def test_zstd_bomb_of_zeros(tmp_path: Path) -> None:
    """96 KiB inflating to 1 GiB of zeros: not a dump, refused at its first bytes (was 3.1 GiB
    of RSS and the whole copy written for 3 GiB)."""
    bad = hostile.write(tmp_path / "bomb.zst", hostile.zstd_bomb(1 << 30))
    cache = tmp_path / "cache"
    assert_held(["info", str(bad)], bad, env={"VMCOREKIT_CACHE": str(cache)}, expect="holds no crash dump")
    assert not [p for p in cache.iterdir() if p.suffix == ".dump"]


@pytest.mark.parametrize("declare", [True, False])
def test_zstd_bomb_past_the_limit(tmp_path: Path, declare: bool) -> None:
    """An ELF header then zeros: the declared size is refused before any work; an undeclared
    one when the copy passes VMCOREKIT_MAX_DECOMPRESSED. Nothing is left in the cache."""
    head = hostile.elf_many_loads(1)[0][:4096]
    bad = hostile.write(tmp_path / "bomb.zst", hostile.zstd_bomb(1 << 30, head=head, declare=declare))
    cache = tmp_path / "cache"
    env = {"VMCOREKIT_CACHE": str(cache), "VMCOREKIT_MAX_DECOMPRESSED": "64M"}
    assert_held(["info", str(bad)], bad, env=env, expect="VMCOREKIT_MAX_DECOMPRESSED")
    assert not list(cache.iterdir())


def test_free_space_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zstandard

    from vmcorekit.dump import open_dump, wrapped
    from vmcorekit.errors import CacheError

    monkeypatch.setenv("VMCOREKIT_CACHE", str(tmp_path / "cache"))
    p = tmp_path / "s.zst"
    p.write_bytes(zstandard.ZstdCompressor().compress(SAMPLE.read_bytes()))
    monkeypatch.setattr(wrapped, "_free", lambda d: 10 << 20)
    with pytest.raises(CacheError, match="free"):
        open_dump(p)


def test_cache_reuse_key_stale_and_lru(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zstandard

    from vmcorekit.dump import open_dump, wrapped

    cache = tmp_path / "cache"
    monkeypatch.setenv("VMCOREKIT_CACHE", str(cache))
    data = SAMPLE.read_bytes()
    p = tmp_path / "s.zst"
    p.write_bytes(zstandard.ZstdCompressor().compress(data))
    with open_dump(p) as d:
        copy = d.info.extra["decompressed_copy"]
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE(os.stat(copy).st_mode) == 0o600

    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("decompressed again")

    with monkeypatch.context() as m:
        m.setattr(wrapped, "_decompress", boom)
        m.setattr(wrapped, "content_key", boom)  # a second open costs a stat, not a hash
        with open_dump(p) as d:
            assert d.info.extra["decompressed_copy"] == copy
    # Same content under another name: the same copy (keyed by content, not by name).
    q = tmp_path / "copy-of-s.zst"
    q.write_bytes(p.read_bytes())
    with monkeypatch.context() as m:
        m.setattr(wrapped, "_decompress", boom)
        with open_dump(q) as d:
            assert d.info.extra["decompressed_copy"] == copy
    with open_dump(q) as d:
        assert d.info.extra["decompressed_copy"] == copy
    # The file changes: its old copy goes once nothing else uses it.
    q.unlink()
    with open_dump(p):
        pass
    p.write_bytes(zstandard.ZstdCompressor(level=5).compress(data[:-4096] + bytes(4096)))
    with open_dump(p) as d:
        new = d.info.extra["decompressed_copy"]
    assert new != copy and not os.path.exists(copy)
    assert [e["path"] for e in wrapped.entries(str(cache))] == [new]
    # LRU: with a cap below two copies, the least recently used goes.
    r = tmp_path / "r.zst"
    r.write_bytes(zstandard.ZstdCompressor().compress(data))
    monkeypatch.setenv("VMCOREKIT_CACHE_MAX", str(len(data) + (1 << 20)))
    with open_dump(r) as d:
        newest = d.info.extra["decompressed_copy"]
    assert [e["path"] for e in wrapped.entries(str(cache))] == [newest]


def test_cache_command(tmp_path: Path) -> None:
    import json

    import zstandard

    cache = tmp_path / "cache"
    env = {**os.environ, "VMCOREKIT_CACHE": str(cache)}
    p = tmp_path / "s.zst"
    p.write_bytes(zstandard.ZstdCompressor().compress(SAMPLE.read_bytes()))
    vk = [sys.executable, "-m", "vmcorekit"]
    subprocess.run([*vk, "info", str(p)], env=env, check=True, capture_output=True)
    out = json.loads(subprocess.run([*vk, "cache", "--json"], env=env, check=True, capture_output=True).stdout)
    assert out["location"] == str(cache) and len(out["entries"]) == 1
    assert out["total_bytes"] == SAMPLE.stat().st_size and out["entries"][0]["sources"] == [str(p)]
    text = subprocess.run([*vk, "cache"], env=env, check=True, capture_output=True, text=True).stdout
    assert str(cache) in text and "15.4 MiB" in text
    cleared = subprocess.run([*vk, "cache", "--clear"], env=env, check=True, capture_output=True, text=True).stdout
    assert "removed 1" in cleared and not [f for f in cache.iterdir() if f.suffix == ".dump"]


def test_default_cache_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vmcorekit.dump import wrapped

    monkeypatch.delenv("VMCOREKIT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert wrapped.cache_dir() == str(tmp_path / "xdg" / "vmcorekit")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert wrapped.cache_dir(create=False) == str(tmp_path / "home" / ".cache" / "vmcorekit")
    assert wrapped.parse_size("64G") == 64 << 30 and wrapped.parse_size("1.5M") == 3 << 19
    assert wrapped.parse_size("4096") == 4096


# -- 1. outputs that are not ours to replace --------------------------------------------------------
def test_filter_refuses_device_fifo_symlink_and_input(tmp_path: Path) -> None:
    """A FIFO stands for /dev/null (a device root would replace): refused as is and through a
    symlink; the input dump itself (same inode) too; the error names the user's path."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(fifo)
    dump = tmp_path / "in.kdump"
    dump.write_bytes(SAMPLE.read_bytes())
    hard = tmp_path / "hard"
    os.link(dump, hard)
    for out, expect in ((fifo, "not a regular file"), (link, "through a symlink"), (hard, "is the input dump")):
        line = assert_held(["filter", "-d", "31", "-c", str(dump), str(out)], out, offset=False, expect=expect)
        assert ".tmp" not in line
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and link.is_symlink()
    assert dump.read_bytes() == SAMPLE.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "hard", "in.kdump", "link"]


# -- 5. reproducible output -------------------------------------------------------------------------
def test_filter_output_is_reproducible(tmp_path: Path) -> None:
    """Same input and options, same bytes: two runs, and 1 vs 2 workers."""
    outs = []
    for i, threads in enumerate((1, 2, 2)):
        out = tmp_path / f"o{i}"
        subprocess.run([sys.executable, "-m", "vmcorekit", "filter", "-c", "-d", "31", "--threads", str(threads),
                        str(SAMPLE), str(out)], check=True, capture_output=True)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]


# -- 6. control characters ----------------------------------------------------------------------------
def test_printable() -> None:
    from vmcorekit.util.text import printable

    assert printable("a\tb\nc") == "a\tb\nc"
    assert printable("\x1b[31mred\r\x0b\x0c\x07\x7f") == "\\x1b[31mred\\x0d\\x0b\\x0c\\x07\\x7f"
    assert printable(b"x\x1by\x00\n") == b"x\\x1by\\x00\n"
    assert printable("caf\u00e9") == "caf\u00e9"


def test_reports_escape_controls() -> None:
    from vmcorekit.report.render_html import _e
    from vmcorekit.report.render_text import _shown

    assert _e("<b>\x1b]0;pwned\x07") == "&lt;b&gt;\\x1b]0;pwned\\x07"
    assert _shown({"a": ["x\x1by", {"b": "\r"}], "n": 3}) == {"a": ["x\\x1by", {"b": "\\x0d"}], "n": 3}


def test_dmesg_and_mod_escape_controls() -> None:
    from types import SimpleNamespace

    from vmcorekit.cli._dmesg import _safe
    from vmcorekit.cli.mod import mod_lines

    normal = b"[    0.000000] Linux version 6.1.0 (gcc) #1 SMP\n"
    assert _safe(normal) == normal
    assert _safe(b"[    1.000000] a\rb\x0bc\x0cd\\x1b\n") == b"[    1.000000] a\\x0db\\x0bc\\x0cd\\x1b\n"
    m = SimpleNamespace(address=0xFFFFFFFFC0000000, name="ev\x1b[2Jil", base=None, size=None, taint_letters="",
                        taints=0, out_of_tree=False, unsigned=False, state="live")
    assert "\x1b" not in "".join(mod_lines([m])) and "ev\\x1b[2Jil" in mod_lines([m])[1]
