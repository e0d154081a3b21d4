"""Answers that must not be made up, on real dumps and copies crafted from them: a task whose
stack was freed, registers a CPU note saved, dumps cut short, numbers VMCOREINFO lies about.
The arm64 sample ships in samples/; the corpus and the zoo are used where present."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import struct
from pathlib import Path

import pytest

from conftest import SAMPLES, decompressed_elf
from vmcorekit.cli.main import main
from vmcorekit.kernel.tasks import find_task_addresses
from vmcorekit.program import Program

ZOO = Path(os.environ.get("VMCOREKIT_ZOO", "/work/scratch/zoo/dumps"))
EXIT_ZOMBIE, TASK_DEAD = 0x20, 0x80


def run(args: list[str]) -> tuple[int, str, str]:
    """main(args) in-process: (exit status, stdout, stderr)."""
    out, err = io.BytesIO(), io.BytesIO()
    so = io.TextIOWrapper(out, encoding="utf-8", errors="backslashreplace", write_through=True)
    se = io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace", write_through=True)
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
        rc = main(args)
    return rc, out.getvalue().decode("utf-8", "replace"), err.getvalue().decode("utf-8", "replace")


def arm64_sample() -> Path:
    if not (SAMPLES / "arm64" / "vmcore.elf.zst").exists():
        pytest.skip("samples/arm64/vmcore.elf.zst absent")
    return decompressed_elf(SAMPLES / "arm64")


def patched_copy(src: Path, dst: Path, edits: list[tuple[int, bytes]]) -> None:
    """A copy of the ELF dump `src` with bytes written at kernel virtual addresses."""
    with Program.open(src) as p:
        at = [(p.space.phys.file_offset(p.space.translate(va)), b) for va, b in edits]
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        for off, b in at:
            assert off is not None
            f.seek(off)
            f.write(b)


def prefix_copy(src: Path, dst: Path, fraction: float) -> None:
    n = int(src.stat().st_size * fraction)
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while n:
            chunk = fi.read(min(n, 1 << 22))
            fo.write(chunk)
            n -= len(chunk)


# -- a task whose stack is gone -------------------------------------------------------------------
def test_zombie_has_no_frames(tmp_path: Path) -> None:
    """As release_task_stack() leaves an exited task: task->stack NULL, exit_state EXIT_ZOMBIE.
    Its saved stack pointer still points into the freed stack; no trace may be made from it."""
    src = arm64_sample()
    with Program.open(src) as p:
        t = find_task_addresses(p, 1)[0]
        off = {m: p.offsetof("struct task_struct", m) for m in ("stack", "exit_state", "__state")}
    dst = tmp_path / "zombie.elf"
    patched_copy(src, dst, [(t + off["stack"], struct.pack("<Q", 0)),
                            (t + off["exit_state"], struct.pack("<i", EXIT_ZOMBIE)),
                            (t + off["__state"], struct.pack("<I", TASK_DEAD))])
    rc, out, _ = run(["ps", str(dst)])
    assert rc in (0, 3) and any(" 1 " in ln and " ZO " in ln for ln in out.splitlines())
    rc, out, _ = run(["bt", str(dst), "1"])
    assert rc == 0 and "no stack" in out and "zombie" in out and " #0 " not in out, out
    rc, out, _ = run(["bt", "--json", str(dst), "1"])
    tr = json.loads(out)["traces"][0]
    assert tr["frames"] == [] and tr["end_reason"].startswith("no stack")
    # the intact dump still traces pid 1
    rc, out, _ = run(["bt", str(src), "1"])
    assert rc == 0 and " #0 " in out


# -- registers from a CPU note ----------------------------------------------------------------------
@pytest.mark.corpus
def test_kdump_registers_are_not_an_exception(corpus_dir: Path) -> None:
    """kdump's PRSTATUS for the panicking CPU is crash_setup_regs() in __crash_kexec: a snapshot,
    not a fault."""
    rc, out, _ = run(["bt", str(corpus_dir / "kdump-kaslr" / "vmcore.c-d31.kdump")])
    assert rc == 0
    assert "[registers saved at the crash: __crash_kexec" in out and "exception RIP" not in out
    assert " panic at " in out


def test_registers_caught_in_a_retpoline_thunk_unwind() -> None:
    """QEMU caught the panicking CPU on the first instruction of __x86_indirect_thunk_array,
    whose ORC hint says "end of stack": the return address is at %rsp, and the trace goes on
    through panic to its caller."""
    dump = ZOO / "x86_64-6.1.0-57-amd64" / "hung_chain-1" / "vmcore.c-d31.kdump"
    if not dump.exists():
        pytest.skip(f"{dump} absent")
    rc, out, _ = run(["bt", "--json", str(dump)])
    tr = json.loads(out)["traces"][0]
    names = [f["function"] for f in tr["frames"]]
    assert names[0] == "__x86_indirect_thunk_array" and names[1:3] == ["panic", "watchdog.cold"], names
    assert tr["complete"]


# -- dumps cut short ----------------------------------------------------------------------------------
@pytest.mark.corpus
def test_truncated_kexec_elf_keeps_the_kernel_image(corpus_dir: Path, tmp_path: Path) -> None:
    """The kdump ELF maps the kernel image twice (its own PT_LOAD and the RAM one). Cut at 40%
    the RAM copy of the image is gone but the image segment survives: the panic is still named."""
    src = decompressed_elf(corpus_dir / "kdump-kaslr")
    cut = tmp_path / "cut.elf"
    prefix_copy(src, cut, 0.4)
    with Program.open(cut) as p:
        assert p.space.phys.info.incomplete
        assert p.read(p.symbol_address("init_uts_ns"), 8)
    rc, out, _ = run(["triage", "--json", str(cut)])
    assert rc == 3
    assert json.loads(out)["crash"]["reason"] == "sysrq triggered crash"


@pytest.mark.parametrize("fraction", [0.4, 0.6, 0.9])
def test_truncated_arm64_keeps_the_log(tmp_path: Path, fraction: float) -> None:
    """QEMU's arm64 ELF cut short loses the page tables memblock put at the top of RAM; the
    kernel image (and __log_buf in its .bss) is still in the file and dmesg keeps every record."""
    src = arm64_sample()
    rc, whole, _ = run(["dmesg", str(src)])
    assert rc == 0
    cut = tmp_path / "cut.elf"
    prefix_copy(src, cut, fraction)
    rc, out, err = run(["dmesg", str(cut)])
    assert out == whole and rc == 0, err


# -- BTF unreadable: say where, once, and blame nothing else ---------------------------------------
def test_unreadable_btf_is_not_blamed_on_the_config(sample_dump: Path, tmp_path: Path) -> None:
    """The sample's BTF pages made undecompressible: the kernel has BTF (its symbols locate
    it), so the error must not guess CONFIG_DEBUG_INFO_BTF, and the unreadable pages are said
    once, as a note, with no Python warning text."""
    from test_damaged_dumps import flip_pages

    with Program.open(sample_dump) as p:
        lo = p.space.translate(p.symbol_address("__start_BTF")) // 4096
        hi = p.space.translate(p.symbol_address("__stop_BTF") - 1) // 4096
    bad = tmp_path / "btf.kdump"
    flipped = flip_pages(sample_dump, bad, lambda pfns: (pfns >= lo) & (pfns <= hi))
    assert flipped
    rc, out, err = run(["ps", str(bad)])
    assert rc == 1
    assert "CONFIG_DEBUG_INFO_BTF" not in err and "BTF cannot be read" in err
    assert "Warning" not in err and ".py:" not in err
    notes = [ln for ln in err.splitlines() if ln.startswith("vmcorekit: note:") and "BTF" in ln]
    assert len(notes) == 1 and "BTF pages" in notes[0], err


# -- one crash time ------------------------------------------------------------------------------
def test_one_crash_time_for_every_command(sample_dump: Path) -> None:
    """QEMU's dump has no CRASHTIME: sys, info and dmesg --time human all take the timekeeper's
    clock, the same second, and say so."""
    rc, out, _ = run(["sys", "--json", str(sample_dump)])
    assert rc == 0
    s = json.loads(out)
    assert s["crash_time"] and s["crash_time_source"] == "timekeeper xtime_sec"
    rc, out, _ = run(["info", "--json", str(sample_dump)])
    i = json.loads(out)
    assert (i["crash_time"], i["crash_time_source"]) == (s["crash_time"], s["crash_time_source"])
    rc, out, _ = run(["info", str(sample_dump)])
    assert "not recorded" not in out and "timekeeper" in out
    rc, out, err = run(["dmesg", "--time", "human", str(sample_dump)])
    assert rc == 0, err
    import time
    last = out.splitlines()[-1]
    assert last.startswith("[" + time.strftime("%a %b", time.localtime(s["crash_time"]))), last


# -- partial answers exit 3 ------------------------------------------------------------------------
def test_unknown_fields_in_a_damaged_dump_are_partial(sample_dump: Path, tmp_path: Path) -> None:
    """The sample with its BTF pages damaged: what needs types is unknown, so sys, kmem -i, mod
    and triage exit 3 and their JSON says partial; the intact sample exits 0 and says nothing."""
    from test_damaged_dumps import flip_pages

    with Program.open(sample_dump) as p:
        lo = p.space.translate(p.symbol_address("__start_BTF")) // 4096
        hi = p.space.translate(p.symbol_address("__stop_BTF") - 1) // 4096
    bad = tmp_path / "btf.kdump"
    flip_pages(sample_dump, bad, lambda pfns: (pfns >= lo) & (pfns <= hi))
    for cmd in (["sys"], ["kmem", "-i"], ["mod"], ["triage"]):
        rc, out, _ = run([*cmd, "--json", str(sample_dump)])
        assert rc == 0 and "partial" not in json.loads(out), cmd
        rc, out, _ = run([*cmd, "--json", str(bad)])
        d = json.loads(out)
        assert rc == 3 and d["partial"] is True and d["partial_reasons"], (cmd, rc)
    rc, out, _ = run(["sys", str(bad)])
    assert rc == 3 and "TASKS: unknown" in out


@pytest.mark.parametrize("fraction", [0.4, 0.6, 0.9])
def test_cut_kdump_never_exits_0_with_unknowns(sample_dump: Path, tmp_path: Path, fraction: float) -> None:
    """The sample cut short: every command either answers in full or exits non-zero."""
    cut = tmp_path / "cut.kdump"
    prefix_copy(sample_dump, cut, fraction)
    rc, out, _ = run(["sys", str(cut)])
    assert rc != 0 or "unknown" not in out
    rc, out, _ = run(["kmem", "-i", str(cut)])
    assert rc != 0 or (" - " not in out and "(unknown)" not in out)
    rc, whole, _ = run(["mod", str(sample_dump)])
    rc2, out, _ = run(["mod", str(cut)])
    assert rc2 != 0 or out == whole


# -- VMCOREINFO numbers checked against the dump --------------------------------------------------
def _vmcoreinfo_with(sample_dump: Path, tmp_path: Path, key: str, value: str) -> Path:
    from vmcorekit.dump import open_dump

    with open_dump(str(sample_dump)) as phys:
        text = phys.vmcoreinfo_raw.split(b"\0", 1)[0].decode()
    lines = [ln for ln in text.splitlines() if not ln.startswith(key + "=")]
    out = tmp_path / "vmcoreinfo.txt"
    out.write_text("\n".join([*lines, f"{key}={value}"]) + "\n")
    return out


@pytest.mark.parametrize("key, value, why", [
    ("PAGESIZE", "18446744073709551615", "not a page size"),
    ("PAGESIZE", "3", "not a page size"),
    ("PAGESIZE", "16384", "the dump's pages are 4096 bytes"),
    ("OFFSET(printk_info.text_len)", "4000", "outside SIZE(printk_info)=88"),
    ("SIZE(page)", "999999999", "no kernel structure"),
    ("SYMBOL(init_uts_ns)", "ffff000000001000", "outside the kernel image"),
])
def test_vmcoreinfo_values_the_dump_contradicts_are_rejected(sample_dump: Path, tmp_path: Path,
                                                               key: str, value: str, why: str) -> None:
    """A lying VMCOREINFO value is named and ignored: ps, bt and sys answer as with the
    dump's own note (VSZ in pages of the real size, the whole trace), and say which value."""
    vi = _vmcoreinfo_with(sample_dump, tmp_path, key, value)
    for cmd in (["ps"], ["bt"], ["sys"]):
        rc0, good, _ = run([*cmd, str(sample_dump)])
        rc, out, err = run([*cmd, "--vmcoreinfo", str(vi), str(sample_dump)])
        assert f"VMCOREINFO {key}={value}: " in err and why in err, err
        assert rc0 == 0
        # the same answer; or, where the dropped value was the only source of a field (printk
        # reads its layout from VMCOREINFO), that field unknown and the exit status 3
        assert (rc, out) == (0, good) or (rc == 3 and cmd == ["sys"] and key.startswith("OFFSET")), (cmd, rc)


def test_vmcoreinfo_check_rules() -> None:
    from vmcorekit.vmcoreinfo import VmcoreInfo

    vi = VmcoreInfo.parse("PAGESIZE=65536\nSIZE(page)=64\nOFFSET(page.flags)=0\nOFFSET(page.lru)=64\n"
                          "NUMBER(SECTION_SIZE_BITS)=99\nLENGTH(mem_section)=16384\n")
    rejected = vi.check(block_size=65536)
    assert [r.split("=")[0] for r in rejected] == ["OFFSET(page.lru)", "NUMBER(SECTION_SIZE_BITS)"]
    assert vi.page_size == 65536 and vi.offsets == {"page.flags": 0} and "SECTION_SIZE_BITS" not in vi.numbers
    assert VmcoreInfo.parse("PAGESIZE=4096\n").check(block_size=65536) == [
        "PAGESIZE=4096: the dump's pages are 65536 bytes"]


# -- the oops header of every kernel since 4.x ------------------------------------------------------
@pytest.mark.parametrize("line, want", [
    # 4.x: CPU, PID, Comm, taint, release, version's first word
    ("CPU: 0 PID: 1 Comm: swapper/0 Not tainted 4.4.0-21-generic #37-Ubuntu", (0, 1, "swapper/0", "4.4.0-21-generic")),
    ("CPU: 3 PID: 1 Comm: init Tainted: P           O    4.19.0-6-amd64 #1 Debian 4.19.67-2+deb10u2",
     (3, 1, "init", "4.19.0-6-amd64")),
    # 5.x: "Kdump: loaded " when a crash kernel is loaded; a BUILD_ID after the version (5.14+)
    ("CPU: 0 PID: 221 Comm: sh Kdump: loaded Not tainted 6.1.0-56-amd64 #1  Debian 6.1.192-2",
     (0, 221, "sh", "6.1.0-56-amd64")),
    ("CPU: 1 PID: 9 Comm: kworker/u4:0 Not tainted 5.15.0-91-generic #101-Ubuntu 0123456789abcdef0123",
     (1, 9, "kworker/u4:0", "5.15.0-91-generic")),
    # 6.10+: the UID; 6.14+: the preemption model after the version
    ("CPU: 0 UID: 0 PID: 192 Comm: sh Tainted: G           OE      6.12.118+deb12-amd64 #1  Debian 6.12.118-1~deb12u1",
     (0, 192, "sh", "6.12.118+deb12-amd64")),
    ("CPU: 2 UID: 1000 PID: 4242 Comm: my prog Kdump: loaded Tainted: G        W          6.15.0 #1 PREEMPT(voluntary)",
     (2, 4242, "my prog", "6.15.0")),
])
def test_oops_header_forms(line: str, want: tuple[int, int, str, str]) -> None:
    from vmcorekit.kernel.printk.events import first_report

    rep = first_report(["BUG: kernel NULL pointer dereference, address: 0000000000000000", line])
    assert rep is not None
    assert (rep.cpu, rep.pid, rep.comm, rep.release) == want


def test_oops_header_of_each_zoo_kernel() -> None:
    """The header each zoo kernel printed (6.1 and 6.12 x86_64, 6.1 arm64) names the task its
    dump says panicked."""
    import tomllib

    from vmcorekit.kernel.printk.events import first_report

    manifest = Path(__file__).parent / "zoo" / "manifest.toml"
    cases = [c for c in tomllib.loads(manifest.read_text()).get("dump", [])
             if c.get("kind") == "null" and Path(c.get("console", "")).exists()]
    if not cases:
        pytest.skip("zoo console logs absent")
    seen = set()
    for c in cases:
        release = Path(c["console"]).parent.parent.name
        if release in seen or not Path(c.get("dump", "")).exists():
            continue
        seen.add(release)
        lines = Path(c["console"]).read_text(errors="replace").splitlines()
        rep = first_report(lines)
        assert rep is not None, c["id"]
        rc, out, _ = run(["sys", "--json", c["dump"]])
        d = json.loads(out)
        assert (rep.cpu, rep.pid, rep.comm) == (d["panic_cpu"], d["panic_pid"], d.get("panic_comm")), c["id"]


# -- arm64 without KALLSYMS_ALL: swap and commit ---------------------------------------------------
def test_commit_and_swap_symbols_from_code_match_kallsyms() -> None:
    """On the arm64 6.12 sample (full kallsyms) the names the code decoding recovers, hidden
    from the table first, land exactly where kallsyms puts them."""
    from vmcorekit.program.symbols.recover import Recovered, _code_references

    d = SAMPLES / "arm64" / "16k-lpa2"
    if not (d / "vmcore.elf.zst").exists():
        pytest.skip(f"{d}/vmcore.elf.zst absent")
    hide = {"vm_committed_as", "sysctl_overcommit_ratio", "sysctl_overcommit_kbytes", "total_swap_pages"}
    with Program.open(decompressed_elf(d)) as p:
        t = p.symbols

        class Hiding:
            def __contains__(self, name: str) -> bool:
                return name not in hide and name in t

            def address_of(self, name: str) -> int:
                if name in hide:
                    raise LookupError(name)
                return t.address_of(name)

            def lookup(self, addr: int):  # type: ignore[no-untyped-def]
                return t.lookup(addr)

        rec = Recovered()
        _code_references(p, Hiding(), rec)
        assert set(rec.names) == hide, rec.notes
        for name, addr in zip(rec.names, rec.addresses):
            assert addr == t.address_of(name), name


def test_arm64_without_kallsyms_all_has_swap_and_commit() -> None:
    """The arm64 6.1 sample (CONFIG_KALLSYMS_ALL=n): kmem -i gives every figure; the commit
    limit is totalram * overcommit_ratio / 100 + swap, as vm_commit_limit() computes it."""
    src = arm64_sample()
    rc, out, err = run(["kmem", "-i", "--json", str(src)])
    assert rc == 0, err
    d = json.loads(out)
    with Program.open(src) as p:
        ratio = p.read_u32(p.symbol_address("sysctl_overcommit_ratio"))
        ps = p.page_size
    assert 0 < ratio <= 100
    rc, text, _ = run(["kmem", "-i", str(src)])
    assert "(unknown)" not in text
    limit = d["commit_limit_bytes"]
    assert d["committed_bytes"] is not None and d["swap_total_bytes"] == 0
    assert limit // ps == d["total_bytes"] // ps * ratio // 100


def test_running_task_traced_when_its_task_struct_was_filtered_out() -> None:
    """makedumpfile -d 31 left the panicking task's task_struct out of this 6.12 dump; its CPU's
    registers and stack are there, and the trace reaches panic and sysrq_handle_crash."""
    dump = ZOO / "x86_64-6.12.118+deb12-amd64" / "sysrq-1" / "vmcore.c-d31.kdump"
    if not dump.exists():
        pytest.skip(f"{dump} absent")
    rc, out, _ = run(["bt", "--json", str(dump)])
    tr = json.loads(out)["traces"][0]
    names = [f["function"] for f in tr["frames"]]
    assert "panic" in names and names[names.index("panic") + 1] == "sysrq_handle_crash", names
    if tr["pid"] is None:  # this dump lost the task_struct: the trace says so
        assert any("task_struct" in n and "unreadable" in n for n in tr["notes"])
