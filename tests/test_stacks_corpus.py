"""`bt` over the real dumps, against crash 8.0.2 (bt, bt -a, foreach bt) and drgn with debuginfo
(every task's stack). The expected files are read at test time.

Two tracers are checked:
  * the default (ORC) unwinder must give drgn's frames for every task, and, for the tasks crash
    shows, a subsequence of crash's frames (crash also prints stale return addresses it finds
    where its frame-size guesses fall short, e.g. in do_syscall_64's randomized stack offset);
  * `--unwinder crash` must reproduce crash's output byte for byte.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vmcorekit.cli.main import main
from vmcorekit.program import Program

pytestmark = pytest.mark.corpus
KERNEL = 0xFFFF800000000000


def run(capsys, *args: str) -> str:
    rc = main(list(args))
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def blocks(text: str) -> dict[str, str]:
    """crash output split into per-task blocks, keyed by the PID header line."""
    out: dict[str, str] = {}
    for b in text.strip("\n").split("\n\n"):
        out[b.split("\n", 1)[0]] = b
    return out


def crash_functions(block: str) -> list[str]:
    return re.findall(r"^\s*#\d+ \[[0-9a-f]+\] (\S+) at", block, re.M)


def drgn_stacks(path: Path) -> dict[tuple[int, str], list[int]]:
    """{(pid, comm): kernel pcs of the frames an unwinder without DWARF sees}."""
    out: dict[tuple[int, str], list[int]] = {}
    cur: list[int] = []
    for line in path.read_text().splitlines():
        m = re.match(r"PID (\d+) COMM (.*)$", line)
        if m:
            cur = out.setdefault((int(m.group(1)), m.group(2)), [])
            continue
        m = re.match(r"\s+#\d+ \S+ pc=0x([0-9a-f]+)( \(inline\))?$", line)
        if m and not m.group(2) and int(m.group(1), 16) >= KERNEL:
            cur.append(int(m.group(1), 16))
    return out


def is_subsequence(short: list[str], long: list[str]) -> bool:
    it = iter(long)
    return all(x in it for x in short)


@pytest.fixture(scope="module")
def prog(corpus_elf):
    p = Program.open(corpus_elf)
    yield p
    p.close()


def test_crash_mode_bt_and_bt_a_byte_for_byte(corpus_case, corpus_elf, capsys):
    exp = corpus_case / "expected" / "crash"
    out = run(capsys, "bt", str(corpus_elf), "--unwinder", "crash")
    assert out == (exp / "bt.txt").read_text()
    out = run(capsys, "bt", "-a", str(corpus_elf), "--unwinder", "crash")
    assert out == (exp / "bt-a.txt").read_text()


def test_crash_mode_foreach_bt(corpus_case, corpus_elf, capsys):
    """crash 8.0.2 lists only the active tasks and idle tasks on this kernel (see the corpus
    README); each block it prints must be ours exactly."""
    exp = blocks((corpus_case / "expected" / "crash" / "foreach-bt.txt").read_text())
    got = blocks(run(capsys, "bt", "--all-tasks", "--no-group", "--unwinder", "crash", str(corpus_elf)))
    assert exp
    for header, block in exp.items():
        assert got.get(header) == block, header


def test_crash_mode_on_makedumpfile_output(corpus_case, capsys):
    dump = corpus_case / "vmcore.c-d31.kdump"
    exp = corpus_case / "expected" / "crash-c-d31" / "bt.txt"
    if not dump.exists() or not exp.exists():
        pytest.skip("no makedumpfile dump in this case")
    assert run(capsys, "bt", "--unwinder", "crash", str(dump)) == exp.read_text()


def test_orc_traces_match_drgn_for_every_task(corpus_case, prog):
    from vmcorekit.kernel.stacks import stacks
    from vmcorekit.kernel.tasks import for_each_task_address, task_info
    want = drgn_stacks(corpus_case / "expected" / "drgn" / "all-stacks.txt")
    s = stacks(prog)
    compared = 0
    for t in [prog.symbol_address("init_task"), *for_each_task_address(prog)]:
        info = task_info(prog, t)
        key = (info.pid, info.comm)
        if key not in want:
            assert info.pid == 0, key  # drgn's list has every task but the boot idle task
            continue
        tr = s.trace(t)
        got = [f.pc for f in tr.frames if f.pc >= KERNEL]
        if not want[key]:
            # drgn stops at the user registers a stopped CPU's note holds; we follow the kernel
            # stack from the stop function (as crash does): it must end in those registers.
            assert tr.frames and not tr.frames[0].reliable, key
            assert tr.user_regs is not None, key
            continue
        assert got == want[key], (key, [hex(x) for x in got], [hex(x) for x in want[key]])
        assert tr.end_reason, key
        compared += 1
    assert compared >= 40


def test_sleeping_task_by_pid(corpus_case, corpus_elf, capsys):
    """A `sleep` process (bt PID) — crash cannot show it on this kernel; drgn is the oracle."""
    want = drgn_stacks(corpus_case / "expected" / "drgn" / "all-stacks.txt")
    pid = min(p for (p, comm) in want if comm == "sleep")
    data = json.loads(run(capsys, "bt", str(corpus_elf), str(pid), "--json"))
    (tr,) = data["traces"]
    assert tr["comm"] == "sleep" and tr["pid"] == pid and tr["start"] == "saved-context"
    assert [int(f["pc"], 16) for f in tr["frames"]] == want[(pid, "sleep")]  # addresses: "0x..."
    assert tr["frames"][0]["function"] == "__schedule"
    assert tr["user_regs"] is not None and tr["complete"]
    text = run(capsys, "bt", str(corpus_elf), str(pid))
    assert text.startswith(f"PID: {pid:<7}  TASK: ")
    assert re.search(r"^ #0 \[[0-9a-f]+\] __schedule at [0-9a-f]+$", text, re.M)
    assert "ORIG_RAX:" in text


def test_orc_bt_a_is_crash_without_stale_frames(corpus_case, corpus_elf, capsys):
    exp = blocks((corpus_case / "expected" / "crash" / "bt-a.txt").read_text())
    got = blocks(run(capsys, "bt", "-a", str(corpus_elf)))
    assert set(got) == set(exp)
    for header, block in exp.items():
        mine = got[header]
        ours, theirs = crash_functions(mine), crash_functions(block)
        assert ours and is_subsequence(ours, theirs), (header, ours, theirs)
        assert ours[-1] == theirs[-1]
        # the user-mode registers the stack ends in are the same
        assert mine.split("\n")[-7:] == block.split("\n")[-7:]


def test_panic_task_identified(prog, corpus_case):
    from vmcorekit.kernel.stacks import crashed_task
    c = crashed_task(prog)
    misc = (corpus_case / "expected" / "drgn" / "misc.txt").read_text()
    m = re.search(r"panic_cpu\D*(\d+)", misc)
    if m:
        assert c.cpu == int(m.group(1))
    hdr = (corpus_case / "expected" / "crash" / "bt.txt").read_text().split("\n", 1)[0]
    assert f"TASK: {c.task:x}" in hdr and c.how == "panic_cpu"


def test_grouped_all_tasks(corpus_elf, capsys):
    out = run(capsys, "bt", "--all-tasks", str(corpus_elf))
    # idle tasks and the sleeping `sleep` processes share their stacks
    groups = out.split("\n\n")
    sleepers = [g for g in groups if g.count('COMMAND: "sleep"') >= 2]
    assert sleepers and " #0 __schedule at " in sleepers[0]
    assert out.count("PID: ") >= 60


def test_active_cpus_without_btf(corpus_elf):
    """With no BTF (types from VMCOREINFO only), the running tasks are still traced from their
    CPU's registers, with the ORC layout guessed from the release."""
    from vmcorekit.kernel.stacks import stacks
    from vmcorekit.program.types.fallback import VmcoreinfoTypeSource
    from vmcorekit.program.types.registry import TypeRegistry

    with Program.open(corpus_elf) as full, Program.open(corpus_elf) as bare:
        reg = TypeRegistry([], pointer_size=8, kind="vmcoreinfo")
        reg.sources.append(VmcoreinfoTypeSource(bare.vmcoreinfo, reg))
        bare.__dict__["types"] = reg
        sf, sb = stacks(full), stacks(bare)
        assert "guessed" in sb.orc_layout.source and sb.orc_layout.fields == sf.orc_layout.fields
        crashed = sb.crashed
        assert crashed.task == sf.crashed.task
        t_full, t_bare = sf.trace(crashed.task), sb.trace(crashed.task)
        assert [f.pc for f in t_bare.frames] == [f.pc for f in t_full.frames]
        assert t_bare.user_regs is not None and t_bare.comm is None
        assert any("task_struct layout unknown" in n for n in t_bare.notes)


def test_module_orc_tables(prog):
    """Each loaded module's own ORC table is read from struct module and used for its text:
    a function's first instruction has the entry CFA = rsp + 8 (just the return address)."""
    from vmcorekit.kernel.stacks import orc as O
    from vmcorekit.kernel.stacks import stacks
    s = stacks(prog)
    mod_syms = [sym for sym in prog.symbols if sym.module is not None]
    mods = [t.name for t in s.orc.tables if t.name != "vmlinux"]
    assert mods and set(mods) <= {sym.module for sym in mod_syms}
    at_entry = total = 0
    for sym in mod_syms:
        if not sym.is_text or sym.size < 8:
            continue
        e = s.orc.find(sym.address, sym.module)
        total += 1
        if e is not None and e.type == O.CALL and e.sp_reg == O.ORC_REG_SP and e.sp_offset == 8:
            at_entry += 1
    assert total >= 20 and at_entry / total > 0.9, (at_entry, total)
