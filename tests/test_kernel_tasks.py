"""Tasks and CPUs (kernel/tasks.py, kernel/cpus.py, `vmcorekit ps`) against drgn with debuginfo
and crash, on the real dumps, without debuginfo; plus corruption and no-BTF behaviour."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from vmcorekit.cli.main import main
from vmcorekit.errors import CorruptKernelDataError, TypeLookupError
from vmcorekit.kernel import cpus, panic, tasks
from vmcorekit.program import Program

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def drgn_tasks(path: Path) -> set[tuple[int, int, int, str, int, str]]:
    """(pid, tgid, ppid, state, task, comm) rows of drgn's for_each_task dump."""
    out = set()
    for line in path.read_text().splitlines()[1:]:
        pid, tgid, ppid, st, task, comm = line.split("\t")
        out.add((int(pid), int(tgid), int(ppid), st, int(task, 16), comm))
    return out


def ours(rows: list[tasks.TaskSummary]) -> set[tuple[int, int, int, str, int, str]]:
    return {(r.pid, r.tgid, r.ppid, r.state, r.task, r.comm) for r in rows if r.pid > 0}


@pytest.fixture(scope="module")
def programs() -> dict[str, Program]:
    return {}


def _prog(programs: dict[str, Program], path: Path) -> Program:
    key = str(path)
    if key not in programs:
        programs[key] = Program.open(path)
    return programs[key]


@pytest.mark.corpus
def test_tasks_match_drgn(corpus_case: Path, corpus_elf: Path, programs) -> None:
    prog = _prog(programs, corpus_elf)
    rows = tasks.task_table(prog)
    assert ours(rows) == drgn_tasks(corpus_case / "expected/drgn/tasks.tsv")
    # one idle task per present CPU, pid 0, named swapper/N
    idle = [r for r in rows if r.pid == 0]
    assert [r.comm for r in idle] == [f"swapper/{c}" for c in cpus.present_cpus(prog)]
    assert all(r.idle and r.kernel_thread for r in idle)


@pytest.mark.corpus
def test_tasks_match_drgn_on_filtered_kdump(corpus_case: Path, programs) -> None:
    prog = _prog(programs, corpus_case / "vmcore.c-d31.kdump")
    assert ours(tasks.task_table(prog)) == drgn_tasks(corpus_case / "expected/drgn-c-d31/tasks.tsv")


def test_sample_tasks_match_drgn(programs) -> None:
    dumps = sorted(SAMPLES.glob("*.kdump"))
    if not dumps:
        pytest.skip("no sample dump")
    prog = _prog(programs, dumps[0])
    assert ours(tasks.task_table(prog)) == drgn_tasks(SAMPLES / "expected/drgn-tasks.tsv")


@pytest.mark.corpus
def test_panic_task_and_cpu(corpus_case: Path, corpus_elf: Path, programs) -> None:
    prog = _prog(programs, corpus_elf)
    misc = dict(line.split("=", 1) for line in
                (corpus_case / "expected/drgn/misc.txt").read_text().splitlines())
    ctx = panic.crash_context(prog)
    assert ctx.cpu == int(misc["panic_cpu"])
    first = (corpus_case / "expected/drgn/crashed-thread.txt").read_text().split("\n", 1)[0]
    assert ctx.pid == int(first.split()[1])  # "pid 221 comm sh"
    assert not ctx.notes
    assert cpus.nr_cpu_ids(prog) == int(misc["nr_cpu_ids"])
    panic_rows = [r for r in tasks.task_table(prog) if r.panic]
    assert len(panic_rows) == 1 and panic_rows[0].pid == ctx.pid and panic_rows[0].active


def _crash_ps(path: Path) -> dict[int, list[str]]:
    """crash ps rows by task address: [marker, pid, ppid, cpu, st, %mem, vsz, rss, comm]."""
    rows = {}
    for line in path.read_text().splitlines()[1:]:
        mark = line[:2].strip()
        f = line[2:].split()
        rows[int(f[3], 16)] = [mark, f[0], f[1], f[2], f[4], f[5], f[6], f[7], " ".join(f[8:])]
    return rows


@pytest.mark.corpus
def test_ps_cli_matches_crash_rows(corpus_case: Path, corpus_elf: Path, capsys) -> None:
    """Every task crash found is printed identically (crash 8.0.2 finds only the running ones
    on this kernel and shows their parent as -1: there drgn's ppid is the reference), but for
    RSS and %MEM: crash 8.0.4 added shmem pages to RSS (as /proc's VmRSS has them), which
    8.0.2, the recorded output, left out. So the recorded RSS must be exactly our file + anon
    pages, and our RSS column that plus the task's shmem pages."""
    assert main(["ps", str(corpus_elf)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert main(["ps", "--json", str(corpus_elf)]) == 0
    js = {int(t["task"], 16): t for t in json.loads(capsys.readouterr().out)["tasks"]}
    expected = (corpus_case / "expected/crash/ps.txt").read_text().splitlines()
    assert lines[0] == expected[0]
    mine = {int(line[23:39], 16): line for line in lines[1:]}
    drgn_ppid = {t[4]: t[2] for t in drgn_tasks(corpus_case / "expected/drgn/tasks.tsv")}
    with_shmem = 0
    for task, crow in _crash_ps(corpus_case / "expected/crash/ps.txt").items():
        exp_line = next(x for x in expected[1:] if f"{task:016x}" in x)
        if crow[2] == "-1":
            exp_line = exp_line[:10] + f"{drgn_ppid[task]:>7}" + exp_line[17:]
        rss = js[task]["rss"]
        assert (rss["file_bytes"] + rss["anon_bytes"]) // 1024 == int(crow[7])
        assert js[task]["rss_bytes"] // 1024 == int(crow[7]) + rss["shmem_bytes"] // 1024
        with_shmem += rss["shmem_bytes"] > 0
        # the columns before %MEM, VSZ and COMM as crash printed them
        m, e = mine[task][2:].split(), exp_line[2:].split()
        assert mine[task][:2] == exp_line[:2] and m[:5] == e[:5] and m[6] == e[6] and m[8:] == e[8:]
        assert len(mine[task]) == len(exp_line)
    assert with_shmem  # the comparison saw shmem: the two crash versions do differ here
    assert len(lines) - 1 == len(drgn_tasks(corpus_case / "expected/drgn/tasks.tsv")) + \
        sum(1 for x in lines[1:] if x[2:9].strip() == "0")


@pytest.mark.corpus
def test_ps_filters_and_json(corpus_case: Path, corpus_elf: Path, capsys) -> None:
    expected = drgn_tasks(corpus_case / "expected/drgn/tasks.tsv")
    assert main(["ps", "--json", "-u", str(corpus_elf)]) == 0
    user = json.loads(capsys.readouterr().out)["tasks"]
    assert user and all(not t["kernel_thread"] for t in user)
    # in this workload every kernel thread is kthreadd or one of its children
    assert {t["pid"] for t in user} == {t[0] for t in expected if t[0] != 2 and t[2] != 2}
    assert main(["ps", "--json", "--state", "I", "-k", str(corpus_elf)]) == 0
    idle = json.loads(capsys.readouterr().out)["tasks"]
    assert {t["pid"] for t in idle} == {t[0] for t in expected if t[3] == "I"}
    assert all(t["crash_state"] == "ID" for t in idle)
    assert main(["ps", str(corpus_elf), "1", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [int(x[2:9]) for x in lines[1:]] == [1, 2]
    assert main(["ps", "--active", "--sort", "cpu", str(corpus_elf)]) == 0
    act = capsys.readouterr().out.splitlines()[1:]
    assert all(x.startswith(">") for x in act) and len(act) == len(cpus.present_cpus(
        Program.open(corpus_elf)))
    assert main(["ps", "-u", "-k", str(corpus_elf)]) != 0


# -- state letters ---------------------------------------------------------------------------
class _Lay:
    state_chars = "RSDTtXZPI"
    task_report = 0x7F


@pytest.mark.parametrize("state,exit_state,char", [
    (0, 0, "R"), (1, 0, "S"), (2, 0, "D"), (4, 0, "T"), (8, 0, "t"), (0, 0x10, "X"),
    (0, 0x20, "Z"), (0x40, 0, "P"), (0x402, 0, "I"), (0x102, 0, "D"), (0x81, 0, "S"),
])
def test_state_letters_like_drgn(state: int, exit_state: int, char: str) -> None:
    assert tasks._state_char(_Lay(), state, exit_state) == char  # type: ignore[arg-type]
    assert tasks.CRASH_STATE_CODES[char] in ("RU", "IN", "UN", "ST", "TR", "DE", "ZO", "PA", "ID")


@pytest.mark.corpus
def test_state_table_read_from_the_kernel(corpus_elf: Path, programs) -> None:
    chars, report = tasks._state_table(_prog(programs, corpus_elf))
    assert chars == "RSDTtXZPI" and report == 0x7F


# -- corruption ------------------------------------------------------------------------------
def _overlay(prog: Program, patches: dict[int, bytes]) -> None:
    """Make `prog` see different bytes at some addresses (a corrupted dump)."""
    real = Program.read

    def read(address: int, size: int, physical: bool = False) -> bytes:
        data = bytearray(real(prog, address, size, physical))
        if not physical:
            for a, b in patches.items():
                lo, hi = max(a, address), min(a + len(b), address + size)
                if lo < hi:
                    data[lo - address:hi - address] = b[lo - a:hi - a]
        return bytes(data)
    prog.read = read  # type: ignore[method-assign]


@pytest.mark.corpus
def test_task_list_cycle_is_bounded(corpus_elf: Path) -> None:
    prog = Program.open(corpus_elf)
    good = list(tasks.for_each_task(prog))
    off = prog.types.offsetof("struct task_struct", "tasks")
    leaders = [t for t in good if int(t.pid) == int(t.tgid)]
    # the 6th leader's tasks.next points back at the 3rd: a loop that skips the head
    _overlay(prog, {int(leaders[5]) + off: struct.pack("<Q", int(leaders[2]) + off)})
    with pytest.raises(CorruptKernelDataError, match="cycle"):
        list(tasks.for_each_task(prog))
    warns: list[str] = []
    rows = tasks.task_table(prog, warnings=warns)
    assert warns and "cycle" in warns[0]
    assert {r.pid for r in rows} >= {int(t.pid) for t in leaders[:6]}
    assert len(rows) < len(good) + 2


@pytest.mark.corpus
def test_wild_mm_pointer_is_reported_not_fatal(corpus_elf: Path) -> None:
    prog = Program.open(corpus_elf)
    init = tasks.find_task(prog, 1)
    assert init is not None
    off = prog.types.offsetof("struct task_struct", "mm")
    _overlay(prog, {int(init) + off: struct.pack("<Q", 0xDEAD000000000000)})
    info = tasks.task_summary(tasks.find_task(prog, 1))
    assert info.problems and info.rss.total == 0


# -- no BTF ----------------------------------------------------------------------------------
def _no_btf(monkeypatch) -> None:
    import vmcorekit.program.types as T
    from vmcorekit.program.types.fallback import VmcoreinfoTypeSource
    from vmcorekit.program.types.registry import TypeRegistry

    def kernel_types(prog, **kw):  # type: ignore[no-untyped-def]
        reg = TypeRegistry([], pointer_size=8, kind="vmcoreinfo")
        reg.sources.append(VmcoreinfoTypeSource(prog.vmcoreinfo, reg))
        return reg
    monkeypatch.setattr(T, "kernel_types", kernel_types)


@pytest.mark.corpus
def test_without_btf_tasks_say_why(corpus_case: Path, corpus_elf: Path, monkeypatch,
                                   capsys) -> None:
    _no_btf(monkeypatch)
    prog = Program.open(corpus_elf)
    with pytest.raises(TypeLookupError, match="BTF"):
        tasks.task_table(prog)
    # the per-CPU current task still works (as void *): x86's current_task needs only symbols
    drgn = drgn_tasks(corpus_case / "expected/drgn/tasks.tsv")
    running = {int(t) for t in cpus.active_tasks(prog).values()}
    assert running == {t[4] for t in drgn if t[3] == "R"}
    assert panic.crash_context(prog).task is not None
    assert main(["ps", str(corpus_elf)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "BTF" in err
