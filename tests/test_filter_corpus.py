"""`vmcorekit filter` against makedumpfile 1.7 on the real corpus dumps.

makedumpfile is run here on the same input (for the QMP dumps the normalized ELF it can read,
made by `normalize_elf` below, as the corpus script does), its outputs cached per session.
The kept-page sets are compared through the 2nd bitmaps; the kdump case's -c output and -E
output are compared byte for byte.
"""
from __future__ import annotations

import importlib.util
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vmcorekit.dump import open_dump
from vmcorekit.dump.kdump import KdumpFile
from vmcorekit.filter import FilterJob, FilterOptions, run_filter
from vmcorekit.filter.bitmaps import PfnBitmap
from vmcorekit.filter.compress import lzo_backend
from vmcorekit.filter.job import memory_usage

pytestmark = pytest.mark.corpus
MDF = shutil.which("makedumpfile")
LEVELS = [0, 1, 2, 4, 8, 16, 31]
needs_mdf = pytest.mark.skipif(MDF is None, reason="makedumpfile is not installed")


def normalize_elf(src: Path, dst: Path) -> None:
    """QEMU 7.2 puts section headers before its program headers, which makedumpfile 1.7.2
    cannot read: the dump generator's own `normalize-elf` makes the copy it can (one
    implementation for tools and tests), written under a temporary name first."""
    spec = importlib.util.spec_from_file_location("dumpgen", Path(__file__).resolve().parent.parent / "tools" / "dumpgen.py")
    assert spec is not None and spec.loader is not None
    dumpgen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dumpgen)
    tmp = dst.with_suffix(".part")
    dumpgen.cmd_normalize_elf([str(src), str(tmp)])
    tmp.rename(dst)


@pytest.fixture(scope="session")
def mdf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mdf")


@pytest.fixture(scope="session")
def mdf_input(corpus_case: Path, corpus_elf: Path, mdf_dir: Path) -> Path:
    """The ELF makedumpfile reads for this case (normalized for QEMU's dumps)."""
    with open(corpus_elf, "rb") as f:
        phoff = struct.unpack_from("<Q", f.read(64), 32)[0]
    if phoff == 64:
        return corpus_elf
    dst = mdf_dir / f"{corpus_case.name}.norm.elf"
    if not dst.exists():
        normalize_elf(corpus_elf, dst)
    return dst


def run_mdf(args: list[str], out: Path) -> Path:
    if not out.exists():
        subprocess.run([MDF, *args, str(out)], check=True, capture_output=True, timeout=300)
    return out


def mdf_output(mdf_input: Path, mdf_dir: Path, case: str, *args: str) -> Path:
    name = f"{case}{''.join(args).replace(' ', '')}"
    return run_mdf([*args, str(mdf_input)], mdf_dir / name)


def bitmaps_of(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with KdumpFile(str(path)) as k:
        nb = (k.max_mapnr + 7) // 8
        b1 = PfnBitmap(k.max_mapnr, np.frombuffer(k._bm1[:nb], np.uint8)).get(0, k.max_mapnr)
        b2 = PfnBitmap(k.max_mapnr, np.frombuffer(k._bm2[:nb], np.uint8)).get(0, k.max_mapnr)
    return b1, b2


# -- the kept pages are makedumpfile's ----------------------------------------------------------

@needs_mdf
@pytest.mark.parametrize("level", LEVELS)
def test_bitmaps_equal_makedumpfile(corpus_case: Path, corpus_elf: Path, mdf_input: Path, mdf_dir: Path,
                                    level: int) -> None:
    theirs = mdf_output(mdf_input, mdf_dir, corpus_case.name, "-l", "-d", str(level))
    t1, t2 = bitmaps_of(theirs)
    with FilterJob(str(corpus_elf), FilterOptions(level=level)) as job:
        job.prepare()
        m1 = job.bm1.get(0, job.bm1.nbits)
        m2 = job.bm2.get(0, job.bm2.nbits)
    assert len(m1) == len(t1), "max_mapnr differs"
    assert np.array_equal(m1, t1), "1st bitmap differs"
    # One known difference: makedumpfile 1.7.2 sets the 1st-bitmap bit of a page only partly
    # inside a PT_LOAD (kexec's 0x1000-0x9fc00 ends mid-page) and clears its 2nd-bitmap bit
    # (exclude_nodata_pages rounds p_paddr + p_filesz down). vmcorekit agrees: such a page is
    # not wholly in the dump. So the 2nd bitmaps must be equal with no exception.
    diff = np.flatnonzero(m2 != t2)
    assert not len(diff), f"2nd bitmaps differ at {len(diff)} pfns, first {[hex(int(p)) for p in diff[:8]]}"


@needs_mdf
def test_report_counts_equal_makedumpfile(corpus_case: Path, corpus_elf: Path, mdf_input: Path,
                                          mdf_dir: Path) -> None:
    """--show-stats gives makedumpfile's per-class counts (its --message-level 16 report)."""
    out = mdf_dir / f"{corpus_case.name}-report"
    if out.exists():
        out.unlink()
    r = subprocess.run([MDF, "-l", "-d", "31", "--message-level", "16", str(mdf_input), str(out)],
                       capture_output=True, text=True, check=True, timeout=300)
    theirs = {}
    for line in (r.stdout + r.stderr).splitlines():
        if ":" in line and "0x" in line:
            k, v = line.split(":", 1)
            theirs[k.strip()] = int(v.strip(), 16)
    with FilterJob(str(corpus_elf), FilterOptions(level=31)) as job:
        st = job.prepare()
    for key, name in [("cache", "Non-private cache pages"), ("cache_private", "Private cache pages"),
                      ("user", "User process data pages"), ("free", "Free pages"),
                      ("hwpoison", "Hwpoison pages"), ("offline", "Offline pages")]:
        assert st.excluded[key] == theirs[name], name
    assert st.max_mapnr == theirs["Total pages"]


# -- bytes -----------------------------------------------------------------------------------------

def test_zlib_d31_is_byte_identical_to_makedumpfile(corpus_case: Path, corpus_elf: Path, tmp_path: Path) -> None:
    """The corpus' vmcore.c-d31.kdump is makedumpfile -c -d 31 of this very dump: same headers,
    notes, bitmaps, descriptors and zlib streams."""
    out = tmp_path / "c-d31"
    run_filter(str(corpus_elf), [str(out)], FilterOptions(level=31, codec="zlib", zlib_engine="zlib", threads=2))
    assert out.read_bytes() == (corpus_case / "vmcore.c-d31.kdump").read_bytes()
    assert out.stat().st_mode & 0o777 == 0o600


@needs_mdf
@pytest.mark.skipif(lzo_backend() != "liblzo2", reason="liblzo2 (makedumpfile's LZO) is not installed")
def test_lzo_d31_is_byte_identical_to_makedumpfile(corpus_case: Path, corpus_elf: Path, mdf_input: Path,
                                                   mdf_dir: Path, tmp_path: Path) -> None:
    """With liblzo2's lzo1x_1 (what makedumpfile calls) the LZO output is makedumpfile's too."""
    theirs = mdf_output(mdf_input, mdf_dir, corpus_case.name, "-l", "-d", "31")
    out = tmp_path / "l-d31"
    run_filter(str(corpus_elf), [str(out)], FilterOptions(level=31, codec="lzo", threads=2))
    assert out.read_bytes() == theirs.read_bytes()


@needs_mdf
def test_elf_output_matches_makedumpfile(corpus_case: Path, corpus_elf: Path, mdf_input: Path, mdf_dir: Path,
                                         tmp_path: Path) -> None:
    theirs = mdf_output(mdf_input, mdf_dir, corpus_case.name, "-E", "-d", "31")
    out = tmp_path / "E-d31"
    run_filter(str(mdf_input), [str(out)], FilterOptions(level=31, elf=True))
    mine, ref = open_dump(str(out)), open_dump(str(theirs))
    try:
        if corpus_case.name.startswith("kdump"):
            assert out.read_bytes() == theirs.read_bytes()
            return
        # QEMU dumps: makedumpfile's -E writes 35 pages of the BIOS ROM PT_LOAD at 0xfffc0000.
        # That range lies beyond the last mem_map (max_mapnr 0x10000); write_elf_pages_cyclic()
        # asks is_dumpable() with a cycle computed from that segment's own start pfn, so
        # is_dumpable_buffer() reads bits of the 2nd-bitmap buffer at (pfn - cycle.start_pfn),
        # which belong to other, unrelated pfns. vmcorekit keeps nothing beyond max_mapnr, as the
        # kdump-compressed outputs of both tools do. Everything else is the same.
        segs_m = [(s.paddr, s.size) for s in mine.virtual_segments]
        segs_r = [(s.paddr, s.size) for s in ref.virtual_segments]
        assert segs_m == segs_r
        rom = 0xFFFC0000
        for r in ref.ranges():
            for pfn in range(r.start >> 12, min(r.end, rom) >> 12):
                assert mine.page_state(pfn) == ref.page_state(pfn), hex(pfn)
        assert all(mine.page_state(p).value == "excluded" for p in range(rom >> 12, (rom + 0x40000) >> 12))
    finally:
        mine.close()
        ref.close()


@pytest.mark.parametrize("codec", ["zstd", "zlib"])
def test_kept_pages_hold_the_input_bytes(corpus_elf: Path, tmp_path: Path, codec: str) -> None:
    """zlib: the default engine (ISA-L where installed) writes other streams than libz, the
    same pages."""
    out = tmp_path / "z-d31"
    run_filter(str(corpus_elf), [str(out)], FilterOptions(level=31, codec=codec))
    src, dst = open_dump(str(corpus_elf)), open_dump(str(out))
    try:
        pfns = dst.dumped_pfns()
        assert len(pfns) > 1000
        for a in range(0, len(pfns), 4096):
            for p in pfns[a:a + 4096].tolist():
                assert dst.read(p << 12, 4096) == src.read(p << 12, 4096), hex(p)
    finally:
        src.close()
        dst.close()


# -- interoperability ---------------------------------------------------------------------------

@needs_mdf
@pytest.mark.parametrize("codec,engine", [("lzo", "auto"), ("zlib", "auto")])
def test_makedumpfile_reads_vmcorekit_output(corpus_case: Path, corpus_elf: Path, tmp_path: Path, codec: str,
                                             engine: str) -> None:
    """makedumpfile --dump-dmesg on vmcorekit's LZO output, and on its zlib output from the
    default engine (ISA-L's streams, not libz's), gives the log it gives on its own; the ISA-L
    output is within a few percent of makedumpfile's size."""
    out = tmp_path / "d31"
    st = run_filter(str(corpus_elf), [str(out)], FilterOptions(level=31, codec=codec, zlib_engine=engine))
    log = tmp_path / "dmesg.txt"
    subprocess.run([MDF, "--dump-dmesg", str(out), str(log)], check=True, capture_output=True, timeout=120)
    expected = corpus_case / "expected" / "makedumpfile" / "dmesg-from-c-d31.txt"
    assert log.read_bytes() == expected.read_bytes()
    if codec == "zlib" and st.engine == "isal":
        theirs = (corpus_case / "vmcore.c-d31.kdump").stat().st_size
        assert 0.95 < out.stat().st_size / theirs < 1.05


@needs_mdf
def test_refilter_both_ways(corpus_case: Path, corpus_elf: Path, mdf_input: Path, mdf_dir: Path,
                            tmp_path: Path) -> None:
    """vmcorekit re-filters a level-0 dump to 31 (makedumpfile's own d31 bitmaps result), and
    makedumpfile re-filters vmcorekit's level-0 dump likewise."""
    ref = mdf_output(mdf_input, mdf_dir, corpus_case.name, "-l", "-d", "31")
    _, want = bitmaps_of(ref)
    d0 = tmp_path / "d0"
    run_filter(str(corpus_elf), [str(d0)], FilterOptions(level=0, codec="none"))
    mine = tmp_path / "d0-to-d31"
    st = run_filter(str(d0), [str(mine)], FilterOptions(level=16 | 8 | 4 | 2 | 1, codec="snappy"))
    assert st.level == 31
    assert np.array_equal(bitmaps_of(mine)[1], want)
    theirs = tmp_path / "mdf-refilter"
    subprocess.run([MDF, "-c", "-d", "31", str(d0), str(theirs)], check=True, capture_output=True, timeout=300)
    assert np.array_equal(bitmaps_of(theirs)[1], want)
    # a higher level on top of a filtered dump keeps the old exclusions
    with FilterJob(str(mine), FilterOptions(level=1)) as job:
        assert job.prepare().level == 31


@needs_mdf
def test_flattened_stream_round_trips(corpus_case: Path, corpus_elf: Path, mdf_input: Path, tmp_path: Path) -> None:
    ref = corpus_case / "vmcore.c-d31.kdump"
    # vmcorekit -F | makedumpfile -R
    flat = tmp_path / "flat"
    with open(flat, "wb") as f:
        run_filter(str(corpus_elf), None, FilterOptions(level=31, codec="zlib", zlib_engine="zlib"), stream=f)
    rebuilt = tmp_path / "rebuilt"
    with open(flat, "rb") as f:
        subprocess.run([MDF, "-R", str(rebuilt)], stdin=f, check=True, capture_output=True, timeout=120)
    assert rebuilt.read_bytes() == ref.read_bytes()
    # makedumpfile -F | vmcorekit filter -R
    mflat = tmp_path / "mflat"
    with open(mflat, "wb") as f:
        subprocess.run([MDF, "-c", "-d", "31", "-F", str(mdf_input)], stdout=f, check=True, timeout=300,
                       stderr=subprocess.DEVNULL)
    back = tmp_path / "back"
    with open(mflat, "rb") as f:
        r = subprocess.run([sys.executable, "-m", "vmcorekit", "filter", "-R", str(back)], stdin=f,
                           capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert back.read_bytes() == ref.read_bytes()
    # vmcorekit reads a flattened stream directly, and re-filters it
    again = tmp_path / "again"
    run_filter(str(flat), [str(again)], FilterOptions(level=31, codec="zlib", zlib_engine="zlib"))
    assert again.read_bytes() == ref.read_bytes()


@needs_mdf
def test_split_reads_back_and_reassembles(corpus_elf: Path, tmp_path: Path) -> None:
    names = [str(tmp_path / f"s.{i}") for i in (1, 2, 3)]
    run_filter(str(corpus_elf), names, FilterOptions(level=31, codec="zlib", zlib_engine="zlib", split=3))
    whole = tmp_path / "whole"
    run_filter(str(corpus_elf), [str(whole)], FilterOptions(level=31, codec="zlib", zlib_engine="zlib"))
    parts, one = open_dump(names), open_dump(str(whole))
    try:
        pfns = one.dumped_pfns()
        sizes = [p.dumpable_pages for p in parts.parts]
        assert sum(sizes) == len(pfns) and min(sizes) > 0
        for p in pfns[::97].tolist():
            assert parts.read(p << 12, 4096) == one.read(p << 12, 4096)
    finally:
        parts.close()
        one.close()
    joined = tmp_path / "joined"
    subprocess.run([MDF, "--reassemble", *names, str(joined)], check=True, capture_output=True, timeout=120)
    with open_dump(str(joined)) as j, open_dump(str(whole)) as w:
        assert np.array_equal(j.dumped_pfns(), w.dumped_pfns())
        for p in w.dumped_pfns()[::53].tolist():
            assert j.read(p << 12, 4096) == w.read(p << 12, 4096)


def test_drgn_opens_snappy_and_zstd(corpus_case: Path, corpus_elf: Path, tmp_path: Path) -> None:
    drgn = pytest.importorskip("drgn")
    if not getattr(drgn, "_with_libkdumpfile", False):
        pytest.skip("drgn is built without libkdumpfile: it cannot read kdump files")
    from vmcorekit.vmcoreinfo import VmcoreInfo
    vi = VmcoreInfo.from_file(corpus_case / "vmcoreinfo.txt")
    for codec in ("snappy", "zstd"):
        out = tmp_path / codec
        run_filter(str(corpus_elf), [str(out)], FilterOptions(level=31, codec=codec))
        prog = drgn.Program()
        prog.set_core_dump(str(out))
        uts = prog.read(vi.symbol("init_uts_ns") + vi.offsets.get("uts_namespace.name", 0), 65 * 3)
        assert uts.split(b"\0")[0] == b"Linux"
        assert vi.osrelease.encode() in uts


def test_mem_usage_agrees_with_filtering(corpus_elf: Path) -> None:
    mu = memory_usage(str(corpus_elf))
    for level in (0, 2, 16, 31):
        with FilterJob(str(corpus_elf), FilterOptions(level=level & ~1)) as job:
            st = job.prepare()
        assert mu.kept[level & ~1] == st.dumped
    assert mu.kept[31] == mu.by_class["kernel"]
    assert mu.kept[0] == mu.present and mu.kept[1] == mu.present - mu.zero


def test_dry_run_size_is_the_real_size(corpus_elf: Path, tmp_path: Path) -> None:
    st = run_filter(str(corpus_elf), None, FilterOptions(level=31, codec="snappy", dry_run=True))
    out = tmp_path / "real"
    run_filter(str(corpus_elf), [str(out)], FilterOptions(level=31, codec="snappy"))
    assert st.written == out.stat().st_size


def test_cli_dump_dmesg_and_stats(corpus_case: Path, corpus_elf: Path, tmp_path: Path) -> None:
    from vmcorekit.cli.main import main
    out = tmp_path / "d.kdump"
    assert main(["filter", "-d", "31", "-z", "--show-stats", "--no-progress", str(corpus_elf), str(out)]) == 0
    log = tmp_path / "log"
    assert main(["filter", "--dump-dmesg", str(out), str(log)]) == 0
    assert b"Kernel panic - not syncing" in log.read_bytes()


VMLINUX = Path("/usr/lib/debug/boot/vmlinux-6.1.0-56-amd64")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("crash") is None or not VMLINUX.exists(),
                    reason="crash or the corpus kernel's debuginfo vmlinux is not installed")
def test_crash_reads_zstd_output(corpus_case: Path, corpus_elf: Path, tmp_path: Path) -> None:
    """crash's `log` over vmcorekit's zstd output is what it prints over makedumpfile's -c."""
    if not corpus_case.name.startswith("kdump"):
        pytest.skip("one case is enough for crash (about 10 s a session)")
    out = tmp_path / "z"
    run_filter(str(corpus_elf), [str(out)], FilterOptions(level=31, codec="zstd"))
    cmds = tmp_path / "cmds"
    log = tmp_path / "log.txt"
    cmds.write_text(f"log > {log}\nq\n")
    subprocess.run(["crash", "-s", str(VMLINUX), str(out), "-i", str(cmds)], capture_output=True, timeout=300,
                   stdin=subprocess.DEVNULL)
    assert log.read_bytes() == (corpus_case / "expected" / "crash-c-d31" / "log.txt").read_bytes()


def test_elf_from_kdump_input(corpus_elf: Path, tmp_path: Path) -> None:
    """-E from a kdump-compressed dump (makedumpfile refuses): segments per run of existing
    pages, direct-map virtual addresses, the kept pages' bytes."""
    kd = tmp_path / "kd"
    run_filter(str(corpus_elf), [str(kd)], FilterOptions(level=31, codec="snappy"))
    elf = tmp_path / "elf"
    run_filter(str(kd), [str(elf)], FilterOptions(level=31, elf=True))
    with open_dump(str(kd)) as a, open_dump(str(elf)) as b:
        assert all(s.vaddr > 0xFF00000000000000 for s in b.virtual_segments)
        for p in a.dumped_pfns()[::41].tolist():
            if b.page_state(p).value == "excluded":  # level 31 drops zero pages from ELF output
                assert a.read(p << 12, 4096) == bytes(4096)
            else:
                assert b.read(p << 12, 4096) == a.read(p << 12, 4096)
