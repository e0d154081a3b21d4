"""System information (kernel/sysinfo.py, kernel/cpus.py, `vmcorekit sys`) against crash's
`sys` and drgn, without debuginfo."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmcorekit.cli.main import main
from vmcorekit.kernel import cpus, panic, sysinfo
from vmcorekit.kernel.printk.model import LogRecord, PrintkLog
from vmcorekit.program import Program

from test_kernel_tasks import _no_btf, drgn_tasks

# Lines of crash's `sys` that vmcorekit must reproduce exactly. Not KERNEL / DUMPFILE (paths)
# nor TASKS (crash 8.0.2 finds 4 of this kernel's tasks).
SAME = ("CPUS", "DATE", "UPTIME", "LOAD AVERAGE", "NODENAME", "RELEASE", "VERSION", "MACHINE",
        "MEMORY", "PANIC")


def crash_sys(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        k, _, v = line.partition(": ")
        out[k.strip()] = v
    return out


@pytest.mark.corpus
@pytest.mark.parametrize("form", ["elf", "c-d31"])
def test_sys_matches_crash(corpus_case: Path, corpus_elf: Path, form: str, capsys) -> None:
    path = corpus_elf if form == "elf" else corpus_case / "vmcore.c-d31.kdump"
    exp_dir = "crash" if form == "elf" else "crash-c-d31"
    assert main(["sys", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    mine = crash_sys_text(lines)
    theirs = crash_sys(corpus_case / "expected" / exp_dir / "sys.txt")
    for key in SAME:
        assert mine[key] == theirs[key], key
    # crash's keyword column: right-aligned to 12
    assert all(line.index(":") == 12 for line in lines)
    assert mine["DUMPFILE"].endswith("[PARTIAL DUMP]") == (form == "c-d31")
    ntasks = len(drgn_tasks(corpus_case / "expected/drgn/tasks.tsv"))
    assert int(mine["TASKS"]) == ntasks + int(theirs["CPUS"].split()[0])
    ct = (corpus_case / "expected/drgn/crashed-thread.txt").read_text().split()
    assert mine["PANIC TASK"].startswith(f"{ct[1]} ({ct[3]}) on CPU ")
    assert mine["TAINT"] == "Not tainted"


def crash_sys_text(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        k, _, v = line.partition(": ")
        out[k.strip()] = v
    return out


@pytest.mark.corpus
def test_sys_json(corpus_case: Path, corpus_elf: Path, capsys) -> None:
    assert main(["sys", "--json", str(corpus_elf)]) == 0
    d = json.loads(capsys.readouterr().out)
    misc = dict(x.split("=", 1) for x in
                (corpus_case / "expected/drgn/misc.txt").read_text().splitlines())
    assert d["release"] == (corpus_case / "expected/drgn/uts-release.txt").read_text().strip()
    assert d["jiffies"] == int(misc["jiffies"])
    assert d["panic_cpu"] == int(misc["panic_cpu"])
    assert d["hz"] == 250 and d["hz_source"].startswith("tick_nsec")
    assert d["panic"]["message"] == "Kernel panic - not syncing: sysrq triggered crash"
    assert d["panic"]["cause"] == "sysrq: Trigger a crash"
    assert abs(d["uptime_seconds"] - d["uptime_timekeeper_seconds"]) < 1.5


@pytest.mark.corpus
def test_hz_fit_without_tick_nsec(corpus_elf: Path, monkeypatch) -> None:
    """With tick_nsec hidden, HZ comes from fitting jiffies to the timekeeper."""
    prog = Program.open(corpus_elf)
    real = Program.try_symbol_address  # the one symbol lookup the kernel helpers use
    monkeypatch.setattr(Program, "try_symbol_address",
                        lambda p, n: None if n == "tick_nsec" else real(p, n))
    hz, how = sysinfo.kernel_hz(prog)
    assert hz == 250 and how.startswith("fit")


@pytest.mark.corpus
def test_cpus(corpus_case: Path, corpus_elf: Path) -> None:
    prog = Program.open(corpus_elf)
    theirs = crash_sys(corpus_case / "expected/crash/sys.txt")["CPUS"]
    assert len(cpus.present_cpus(prog)) == int(theirs.split()[0])
    off = cpus.offline_cpus(prog)
    assert (f"[OFFLINE: {len(off)}]" in theirs) == bool(off)
    assert cpus.online_cpus(prog) == [c for c in cpus.present_cpus(prog) if c not in off]
    # the crash marks the task on each CPU with '>': the same tasks as cpus.active_tasks
    crash_active = {int(line[23:39], 16): int(line[18:21]) for line in
                    (corpus_case / "expected/crash/ps.txt").read_text().splitlines()
                    if line.startswith(">")}
    assert {int(t): c for c, t in cpus.active_tasks(prog).items()} == crash_active
    assert int(cpus.idle_task(prog, 0)) == prog.symbols.address_of("init_task")


def test_format_helpers() -> None:
    assert sysinfo.format_uptime(22.9) == "00:00:22"
    assert sysinfo.format_uptime(86400 * 3 + 3661) == "3 days, 01:01:01"
    assert sysinfo.format_size(0) == "0"
    assert sysinfo.format_size(132206 * 4096) == "516.4 MB"
    assert sysinfo.format_size(2 << 30) == "2 GB"
    assert sysinfo.format_size(640 << 10) == "640 KB"
    assert sysinfo._jiffies_since_boot((1 << 32) - 300 * 250 + 250 * 22, 250) == 250 * 22
    from vmcorekit.cli.sys import _date, _memory
    assert _date(1795681313) == "Thu Nov 26 08:21:53 UTC 2026"
    assert _date(1772409600) == "Mon Mar  2 00:00:00 UTC 2026"
    assert _memory(804757504) == "767.5 MB"
    assert _memory((8 << 30) - (40 << 20)) == "8 GB"


def _log(*lines: tuple[float, str, str | None]) -> PrintkLog:
    recs = [LogRecord(seq=i, ts_nsec=int(t * 1e9), text=s.encode(),
                      caller_id=None if c is None else int(c))
            for i, (t, s, c) in enumerate(lines)]
    return PrintkLog(layout="lockless", records=recs)


@pytest.mark.corpus
def test_panic_message_forms(corpus_elf: Path) -> None:
    prog = Program.open(corpus_elf)
    # an oops that went to kdump without panic(): the last oops line, its cause the first
    log = _log((1.0, "loop: module loaded", None),
               (50.0, "BUG: kernel NULL pointer dereference, address: 0000000000000008", "221"),
               (50.0, "#PF: supervisor read access in kernel mode", "221"),
               (50.0, "Oops: 0000 [#1] PREEMPT SMP NOPTI", "221"))
    pm = panic.panic_message(prog, log)
    assert pm.message == "Oops: 0000 [#1] PREEMPT SMP NOPTI"
    assert pm.cause.startswith("BUG: kernel NULL pointer dereference")
    # a panic after an oops: the panic line; the end-of-trace marker is not taken for it
    log = _log((10.0, "BUG: soft lockup - CPU#1 stuck for 22s! [sh:99]", "99"),
               (10.1, "Kernel panic - not syncing: softlockup: hung tasks", "99"),
               (10.2, "---[ end Kernel panic - not syncing: softlockup: hung tasks ]---", "99"))
    pm = panic.panic_message(prog, log)
    assert pm.message == "Kernel panic - not syncing: softlockup: hung tasks"
    assert pm.cause.startswith("BUG: soft lockup")
    # the printk caller disagrees with panic_cpu's task: said so
    assert pm.notes and "pid 99" in pm.notes[0]
    assert panic.panic_message(prog, _log((1.0, "all is well", None))) is None


@pytest.mark.corpus
def test_sys_without_btf(corpus_case: Path, corpus_elf: Path, monkeypatch, capsys) -> None:
    """No BTF: what VMCOREINFO and the symbols carry is still shown; the rest says why."""
    _no_btf(monkeypatch)
    assert main(["sys", str(corpus_elf)]) == 0
    out = capsys.readouterr()
    mine = crash_sys_text(out.out.splitlines())
    theirs = crash_sys(corpus_case / "expected/crash/sys.txt")
    for key in ("NODENAME", "RELEASE", "VERSION", "LOAD AVERAGE", "UPTIME", "PANIC", "CPUS"):
        assert mine[key] == theirs[key], key
    assert mine["TASKS"] == "unknown" and "BTF" in out.err
