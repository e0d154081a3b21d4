"""More of crash's verbs: runq, ptov, dis, foreach, files, vm, sig. Each answer is checked
against facts read another way (ps's task table, symbols, the address space's own walk), on
the shipped samples and, when present, the zoo's full dumps; corrupt kernel data is crafted by
lying about a few words of a real dump."""
from __future__ import annotations

import json
import os

import pytest

from vmcorekit.cli.main import main
from zoo_dumps import of_kind


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def prog(sample_dump):
    from vmcorekit.program import Program
    p = Program.open(str(sample_dump))
    yield p
    p.close()


def _full_zoo(kind: str) -> list[str]:
    """The zoo's full dumps of `kind` on this machine (x86_64 kdump files)."""
    return [e["dump"] for e in of_kind(kind) if e["dump"].endswith(".kdump") and os.path.exists(e["dump"])]


class _Lies:
    """Make a Program read chosen 64-bit words differently: a corrupt structure in a real dump."""

    def __init__(self, monkeypatch, prog, words: dict[int, int]) -> None:
        real = type(prog).read_u64
        real_read = type(prog).read

        def read_u64(self, address: int) -> int:
            return words[address] if address in words else real(self, address)

        def read(self, address: int, size: int, physical: bool = False) -> bytes:
            data = bytearray(real_read(self, address, size, physical))
            if not physical:
                for a, v in words.items():
                    if address <= a and a + 8 <= address + size:
                        data[a - address:a - address + 8] = v.to_bytes(8, "little")
            return bytes(data)
        monkeypatch.setattr(type(prog), "read_u64", read_u64)
        monkeypatch.setattr(type(prog), "read", read)


# -- runq ---------------------------------------------------------------------------------------

def _check_runq_against_ps(p) -> int:
    from vmcorekit.kernel.sched import runqueues
    from vmcorekit.kernel.tasks import task_table
    rows = {r.task: r for r in task_table(p)}
    queued = 0
    for rq in runqueues(p):
        assert rq.problems == []
        cur = rows[rq.current]
        assert cur.active and cur.cpu == rq.cpu  # ps's '>' on that CPU
        for t in rq.tasks():
            row = rows[t.address]
            assert row.state == "R" and row.pid == t.pid and row.comm == t.comm, (rq.cpu, t)
            assert row.cpu == rq.cpu
            assert t.address != rq.current  # the running entity is not in a tree
            queued += 1
        assert rq.nr_running is not None and rq.nr_running >= len(rq.tasks())
    return queued


def test_runq_current_and_queued_tasks_are_ps_running_tasks(prog) -> None:
    _check_runq_against_ps(prog)


@pytest.mark.parametrize("path", _full_zoo("softlockup") + _full_zoo("rcu_stall"))
def test_runq_queued_tasks_on_zoo_dumps(path) -> None:
    from vmcorekit.program import Program
    with Program.open(path) as p:
        _check_runq_against_ps(p)


def test_runq_cfs_tree_is_in_vruntime_order() -> None:
    from vmcorekit.kernel.sched import runqueues
    from vmcorekit.program import Program
    paths = _full_zoo("softlockup") + _full_zoo("rcu_stall")
    if not paths:
        pytest.skip("zoo full dumps absent")
    seen = 0
    for path in paths:
        with Program.open(path) as p:
            for rq in runqueues(p):
                v = [int(p.object("struct task_struct", t.address).se.vruntime) for t in rq.cfs if t.kind == "task"]
                assert v == sorted(v)
                seen += len(v)
    assert seen > 0


def test_runq_text_and_cpu_choice(sample_dump, capsys) -> None:
    rc, out, err = run(capsys, "runq", str(sample_dump))
    assert rc == 0, err
    blocks = out.strip().split("\n\n")
    assert [b.splitlines()[0].split()[1] for b in blocks] == ["0", "1"]
    for b in blocks:
        lines = b.splitlines()
        assert lines[0].startswith("CPU ") and " RUNQUEUE: " in lines[0]
        assert lines[1].startswith("  CURRENT: PID: ")
        assert "  RT PRIO_ARRAY: " in b and "  CFS RB_ROOT: " in b
    rc, out, _ = run(capsys, "runq", "-c", "1", str(sample_dump))
    assert rc == 0 and out.startswith("CPU 1 RUNQUEUE:") and "CPU 0" not in out
    rc, out, _ = run(capsys, "runq", "-t", str(sample_dump))
    assert rc == 0 and out.splitlines()[0].startswith(" CPU 0: ")
    rc, _, err = run(capsys, "runq", "-c", "7", str(sample_dump))
    assert rc == 2 and "CPU 7 is not present" in err


def test_runq_loop_in_cfs_tree_is_bounded_and_reported(sample_dump, monkeypatch, capsys) -> None:
    from vmcorekit.kernel.cpus import runqueue
    from vmcorekit.program import Program
    with Program.open(str(sample_dump)) as p:
        rq = runqueue(p, 0)
        root = rq.cfs.tasks_timeline.rb_root.address_
        node = rq.address_ + 0x200  # any readable word pair: the node points left at itself
        left = node + p.offsetof("struct rb_node", "rb_left")
        right = node + p.offsetof("struct rb_node", "rb_right")
    _Lies(monkeypatch, p, {root: node, left: node, right: 0})
    rc, out, err = run(capsys, "runq", "-c", "0", str(sample_dump))
    assert rc == 3 and "cycle" in err and "CFS rbtree" in err
    assert "CURRENT: PID:" in out


# -- ptov ---------------------------------------------------------------------------------------

@pytest.fixture(params=["x86_64", "arm64"])
def any_sample(request, sample_dump):
    if request.param == "x86_64":
        return sample_dump
    from conftest import SAMPLES, decompressed_elf
    if not (SAMPLES / "arm64" / "vmcore.elf.zst").exists():
        pytest.skip("samples/arm64 absent")
    return decompressed_elf(SAMPLES / "arm64")


def test_ptov_inverts_the_page_table_walk(any_sample, capsys) -> None:
    from vmcorekit.kernel.tasks import for_each_task_address
    from vmcorekit.program import Program
    with Program.open(str(any_sample)) as p:
        tasks = [t for t in for_each_task_address(p) if p.space.direct_map().contains(t)][:5]
        assert tasks
        walked = [p.space.walk(t).paddr for t in tasks]  # the page tables, not the linear shortcut
    rc, out, err = run(capsys, "ptov", "--json", str(any_sample), *(f"{pa:x}" for pa in walked))
    assert rc == 0, err
    got = json.loads(out)["addresses"]
    assert [int(r["vaddr"], 16) for r in got] == tasks and all(r["in_dump"] for r in got)
    rc, out, _ = run(capsys, "ptov", str(any_sample), f"{walked[0]:x}")
    assert out.splitlines() == ["VIRTUAL           PHYSICAL", f"{tasks[0]:<16x}  {walked[0]:x}"]


def test_ptov_beyond_the_direct_map_is_said(sample_dump, capsys) -> None:
    rc, out, err = run(capsys, "ptov", str(sample_dump), "0", "ffffffffffff")
    assert rc == 0 and "note: 0xffffffffffff: beyond the direct map" in err
    assert out.splitlines()[2].startswith("(none)")
    rc, _, err = run(capsys, "ptov", str(sample_dump), "xyz")
    assert rc == 2 and "hexadecimal" in err


# -- dis ----------------------------------------------------------------------------------------

def test_dis_of_a_function_covers_it_and_names_call_targets(any_sample, capsys) -> None:
    from vmcorekit.program import Program
    with Program.open(str(any_sample)) as p:
        sym = p.symbols.get("schedule")
        assert sym is not None
        rc, out, err = run(capsys, "dis", "--json", str(any_sample), "schedule")
        assert rc == 0, err
        insns = json.loads(out)["instructions"]
        addrs = [int(i["address"], 16) for i in insns]
        assert addrs[0] == sym.address and addrs[-1] < sym.address + sym.size
        # contiguous: each instruction starts where the one before ended
        assert all(a + len(bytes.fromhex(i["bytes"])) == b for a, i, b in zip(addrs, insns, addrs[1:]))
        assert addrs[-1] + len(bytes.fromhex(insns[-1]["bytes"])) == sym.address + sym.size
        assert all(i["symbol"] == "schedule" and int(i["address"], 16) - sym.address == i["offset"] for i in insns)
        calls = [i for i in insns if i["mnemonic"] in ("call", "bl")]
        assert calls
        for c in calls:  # every direct call lands on the start of a kernel function
            t = p.symbols.lookup(int(c["target"], 16))
            assert t is not None and t.is_text and t.address == int(c["target"], 16) and c["target_symbol"] == t.name
            assert f"<{t.name}>" in c["text"]
    rc, out, _ = run(capsys, "dis", str(any_sample), "schedule", "3")
    lines = out.splitlines()
    assert rc == 0 and len(lines) == 3
    assert lines[0].startswith(f"{sym.address:#x} <schedule>:")
    assert lines[1].startswith(f"{addrs[1]:#x} <schedule+{addrs[1] - sym.address}>:")


def test_dis_r_ends_with_the_call_before_a_return_address(any_sample, capsys) -> None:
    """bt's caller frames hold return addresses: the instruction just before one is a call,
    so `dis -r RET-1` ends with a call instruction whose end is RET."""
    rc, out, _ = run(capsys, "bt", "--json", str(any_sample))
    frames = json.loads(out)["traces"][0]["frames"]
    # Past the first two frames: those may hold an interrupted pc rather than a return address.
    rets = [int(f["pc"], 16) for f in frames[2:] if f["function"] and f.get("exception") is None][:4]
    assert rets
    for ret in rets:
        rc, out, err = run(capsys, "dis", "--json", "-r", str(any_sample), f"{ret - 1:x}")
        assert rc == 0, err
        last = json.loads(out)["instructions"][-1]
        assert last["mnemonic"] in ("call", "bl", "blr"), last
        assert int(last["address"], 16) + len(bytes.fromhex(last["bytes"])) == ret


def test_dis_x86_is_att_syntax(sample_dump, capsys) -> None:
    rc, out, _ = run(capsys, "dis", str(sample_dump), "schedule")
    assert rc == 0
    assert any(ln.split(":", 1)[1].split()[:2] == ["push", "%rbp"] for ln in out.splitlines())
    assert "%" in out and "$0x" in out and "qword ptr" not in out


def test_dis_failures(sample_dump, capsys) -> None:
    rc, _, err = run(capsys, "dis", str(sample_dump), "no_such_function_here")
    assert rc == 1 and err.count("\n") == 1 and "not found" in err
    rc, out, err = run(capsys, "dis", str(sample_dump), "10", "3")  # user space: not in the dump
    assert rc == 3 and "not in the dump" in err and out == ""
    rc, _, err = run(capsys, "dis", str(sample_dump), "-r", "-f", "schedule")
    assert rc == 2


# -- foreach ------------------------------------------------------------------------------------

def test_foreach_selects_by_state_and_name_like_ps(prog, sample_dump, capsys) -> None:
    from vmcorekit.kernel.tasks import task_table
    rows = task_table(prog)
    rc, out, err = run(capsys, "foreach", "--json", str(sample_dump), "RU", "bt")
    assert rc == 0, err
    got = json.loads(out)["tasks"]
    assert [int(t["task"], 16) for t in got] == [r.task for r in rows if r.crash_state == "RU"]
    assert all(t["output"]["traces"][0]["task"] == t["task"] for t in got)
    rc, out, _ = run(capsys, "foreach", str(sample_dump), "sh", "kernel", "task", "-R", "pid")
    want = [r for r in rows if r.comm == "sh" or r.kernel_thread]
    assert rc == 0 and out.count("  STATE: ") == len(want)
    assert [int(x) for x in out.split("    PID: ")[1:] for x in [x.split()[0]]] == [r.pid for r in want]


def test_foreach_bt_matches_crash_task_order(corpus_case, capsys) -> None:
    import re
    want = (corpus_case / "expected" / "crash" / "foreach-bt.txt")
    if not want.exists():
        pytest.skip("no crash foreach bt output in this case")
    heads = re.findall(r"^PID: (\d+)\s+TASK: ([0-9a-f]+)\s+CPU: (\d+)", want.read_text(), re.M)
    rc, out, err = run(capsys, "foreach", str(corpus_case / "vmcore.c-d31.kdump"), "bt")
    assert rc in (0, 3), err
    ours = re.findall(r"^PID: (\d+)\s+TASK: ([0-9a-f]+)\s+CPU: (\d+)", out, re.M)
    it = iter(ours)
    assert heads and all(h in it for h in heads)  # crash's tasks, in crash's order


def test_foreach_usage_errors(sample_dump, capsys) -> None:
    rc, _, err = run(capsys, "foreach", str(sample_dump), "RU")
    assert rc == 2 and "name a verb" in err
    rc, _, err = run(capsys, "foreach", str(sample_dump), "no_such_comm", "bt")
    assert rc == 2 and "no task matches" in err


# -- files --------------------------------------------------------------------------------------

def test_files_of_pid_1_include_the_console(prog, sample_dump, capsys) -> None:
    rc, out, err = run(capsys, "files", "--json", str(sample_dump), "1")
    assert rc == 0, err
    d = json.loads(out)
    assert d["pid"] == 1 and d["root"] == "/" and d["files"]
    console = [f for f in d["files"] if f["path"] == "/dev/console"]
    assert console and all(f["type"] == "CHR" for f in console)
    for f in d["files"]:  # each row agrees with the kernel's own links, read independently
        file = prog.object("struct file", int(f["file"], 16))
        assert int(file.f_path.dentry) == int(f["dentry"], 16) == int(f["dentry"], 16)
        dentry = prog.object("struct dentry", int(f["dentry"], 16))
        assert int(dentry.d_inode) == int(f["inode"], 16)
        assert f["path"].rsplit("/", 1)[1] == dentry.d_name.name.string_().decode()
    inode = prog.object("struct inode", int(console[0]["inode"], 16))
    assert int(inode.i_rdev) == (5 << 20) | 1  # MKDEV(TTYAUX_MAJOR, 1): the console device
    rc, out, _ = run(capsys, "files", str(sample_dump), "1")
    lines = out.splitlines()
    assert lines[0].startswith("PID: 1 ") and lines[1].startswith("ROOT: /")
    assert lines[2].split() == ["FD", "FILE", "DENTRY", "INODE", "TYPE", "PATH"]
    assert any(ln.split()[0] == "0" and ln.endswith(" CHR  /dev/console") for ln in lines[3:])


def test_files_bad_pid_is_one_error_line(sample_dump, capsys) -> None:
    rc, out, err = run(capsys, "files", str(sample_dump), "99999")
    assert rc == 1 and out == "" and err.count("\n") == 1 and "no task with pid 99999" in err


def test_files_loop_in_d_parent_is_bounded_and_reported(prog, sample_dump, monkeypatch, capsys) -> None:
    from vmcorekit.kernel.tasks import find_task
    fds = find_task(prog, 1).files.fdt.fd
    console = int(fds[0].f_path.dentry)
    other = next(int(fds[i].f_path.dentry) for i in range(1, 64) if int(fds[i]) and int(fds[i].f_path.dentry) != console)
    off = prog.offsetof("struct dentry", "d_parent")
    _Lies(monkeypatch, prog, {console + off: other, other + off: console})  # two dentries, each the other's parent
    rc, out, err = run(capsys, "files", str(sample_dump), "1")
    assert rc == 3 and ("PATH_MAX" in out or "components" in out), out  # said in the row
    assert " CHR  (" in out  # the row stays, with the reason


# -- vm -----------------------------------------------------------------------------------------

def test_vm_of_a_user_task_maps_its_executable(any_sample, capsys) -> None:
    from vmcorekit.kernel.tasks import find_task
    from vmcorekit.program import Program
    rc, out, err = run(capsys, "vm", "--json", str(any_sample), "1")
    assert rc == 0, err
    d = json.loads(out)
    with Program.open(str(any_sample)) as p:
        mm = find_task(p, 1).mm
        exe = mm.exe_file
        from vmcorekit.kernel.fs import d_path
        exe_path = d_path(p, int(exe.f_path.mnt), int(exe.f_path.dentry))
        assert int(d["mm"], 16) == int(mm)
        assert len(d["vmas"]) == int(mm.map_count)
        spans = [(int(v["start"], 16), int(v["end"], 16)) for v in d["vmas"]]
        assert spans == sorted(spans) and all(a < b for a, b in spans)
        assert all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))  # no overlap
        assert sum(b - a for a, b in spans) == d["total_vm_bytes"] == int(mm.total_vm) * p.page_size
        code = int(mm.start_code)
        holder = [v for v in d["vmas"] if int(v["start"], 16) <= code < int(v["end"], 16)]
        assert holder and holder[0]["path"] == exe_path and holder[0]["file"] is not None
    rc, out, _ = run(capsys, "vm", str(any_sample), "1")
    lines = out.splitlines()
    assert lines[1].split() == ["MM", "PGD", "RSS", "TOTAL_VM"] and lines[3].split()[:3] == ["VMA", "START", "END"]
    assert any(ln.endswith(" " + exe_path) for ln in lines[4:])


def test_vm_of_a_kernel_thread_has_no_mm(sample_dump, capsys) -> None:
    rc, out, _ = run(capsys, "vm", "--json", str(sample_dump), "2")
    assert rc == 0 and json.loads(out)["mm"] == "0x0" and json.loads(out)["vmas"] == []


def test_vm_loop_in_maple_tree_is_bounded_and_reported(prog, sample_dump, monkeypatch, capsys) -> None:
    from vmcorekit.kernel.tasks import find_task
    mt = find_task(prog, 1).mm.mm_mt
    root_at = mt.address_ + prog.offsetof("struct maple_tree", "ma_root")
    node = int(mt.ma_root) & ~0xFF
    enode = node | (2 << 3) | 2  # the same node, said to be an internal maple_range_64 node
    slot0 = node + prog.offsetof("struct maple_node", "mr64.slot")
    _Lies(monkeypatch, prog, {root_at: enode, slot0: enode})  # whose first child is itself
    rc, out, err = run(capsys, "vm", str(sample_dump), "1")
    assert rc == 3 and "maple tree" in err and "levels" in err
    assert "MM" in out


def test_vm_bad_pid(sample_dump, capsys) -> None:
    rc, out, err = run(capsys, "vm", str(sample_dump), "424242")
    assert rc == 1 and out == "" and "no task with pid 424242" in err


# -- sig ----------------------------------------------------------------------------------------

def test_sig_handlers_and_sets(any_sample, capsys) -> None:
    rc, out, err = run(capsys, "sig", "--json", str(any_sample), "1")
    assert rc == 0, err
    d = json.loads(out)
    acts = {a["signal"]: a for a in d["actions"]}
    assert sorted(acts) == list(range(1, 65))
    # The kernel refuses handlers for SIGKILL and SIGSTOP (do_sigaction: -EINVAL).
    assert acts[9]["handler"] == "0x0" and acts[19]["handler"] == "0x0"
    assert acts[9]["name"] == "SIGKILL" and acts[32]["name"] == "SIGRTMIN"
    assert d["nr_threads"] == len(d["threads"]) and d["threads"][0]["pid"] == 1
    for a in d["actions"]:  # a handler other than SIG_DFL/SIG_IGN is a user-space address
        h = int(a["handler"], 16)
        assert h in (0, 1) or h < 1 << 47
        assert ("SA_RESTORER" in a["flag_names"]) == bool(a["flags"] & 0x04000000)
    rc, out, _ = run(capsys, "sig", str(any_sample), "1")
    lines = out.splitlines()
    assert lines[1].startswith("SIGNAL_STRUCT: ") and lines[2].split()[:2] == ["SIG", "SIGACTION"]
    assert lines[3].split()[0] == "[1]" and "SHARED_PENDING" in lines and "  PRIVATE_PENDING" in lines


def test_sig_loop_in_sigqueue_list_is_bounded_and_reported(prog, sample_dump, monkeypatch, capsys) -> None:
    from vmcorekit.kernel.tasks import find_task
    t = find_task(prog, 1)
    head = t.pending.list.address_
    node = t.signal.address_ + 0x100  # a readable word pair, made a node that points at itself
    _Lies(monkeypatch, prog, {head: node, node: node})
    rc, out, err = run(capsys, "sig", str(sample_dump), "1")
    assert rc == 3 and "cycle" in err and "pending signals" in err
    assert "PRIVATE_PENDING" in out


def test_sig_bad_pid(sample_dump, capsys) -> None:
    rc, out, err = run(capsys, "sig", str(sample_dump), "31337")
    assert rc == 1 and out == "" and err.count("\n") == 1
