"""Every command on the two real arm64 samples, against drgn's oracles (made with the -dbg
vmlinux; samples/arm64*/expected/):

* samples/arm64: Debian 6.1, 4K pages, 48-bit VA, built without CONFIG_KALLSYMS_ALL: kallsyms
  holds functions only, so BTF, init_task, modules, the per-CPU variables ... are recovered
  from the image (program/symbols/recover.py);
* samples/arm64/16k-lpa2: Debian 6.12, 16K pages, 52-bit VA (LPA2), full kallsyms.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLES, decompressed_elf
from vmcorekit.cli.main import main
from vmcorekit.program import Program
from vmcorekit.program.symbols.kallsyms import read_kallsyms
from vmcorekit.program.symbols.recover import lacks_data_symbols

DIRS = {"6.1-4k": SAMPLES / "arm64", "6.12-16k-lpa2": SAMPLES / "arm64" / "16k-lpa2"}


@pytest.fixture(scope="module", params=list(DIRS))
def case(request: pytest.FixtureRequest) -> tuple[str, Path, Path]:
    d = DIRS[request.param]
    if not (d / "vmcore.elf.zst").exists():
        pytest.skip(f"{d}/vmcore.elf.zst absent")
    return request.param, d, decompressed_elf(d)


@pytest.fixture(scope="module")
def prog(case: tuple[str, Path, Path]) -> Program:
    p = Program.open(case[2])
    yield p
    p.close()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    rc = main(list(args))
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def misc(d: Path) -> dict[str, str]:
    return dict(x.split("=", 1) for x in (d / "expected/misc.txt").read_text().splitlines())


def tsv(path: Path) -> list[dict[str, str]]:
    lines = path.read_text().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, x.split("\t"))) for x in lines[1:]]


def crashed_thread(d: Path) -> tuple[int, int, int, list[str]]:
    """(cpu, pid, pc, drgn's function names) of expected/crashed-thread.txt."""
    text = (d / "expected/crashed-thread.txt").read_text()
    m = re.match(r"crashed cpu (\d+) pid (\d+) pc=0x([0-9a-f]+)", text)
    assert m
    names = re.findall(r"^#\d+\s+([^\s+(]+)", text, re.M)
    return int(m.group(1)), int(m.group(2)), int(m.group(3), 16), names


def base_name(name: str) -> str:
    """el0_svc_common.constprop.0 -> el0_svc_common (DWARF names the function, kallsyms the clone)."""
    return name.split(".", 1)[0]


# -- symbols: the kallsyms regression -----------------------------------------------------------
def test_kallsyms_decodes_and_data_symbols_are_found(case, prog):
    """The 6.1 kernel's kallsyms decodes fine (base-relative: arm64 has no
    KALLSYMS_ABSOLUTE_PERCPU) but lists no data symbols: Debian built it without
    CONFIG_KALLSYMS_ALL. Data symbols must still resolve, to drgn's addresses."""
    name, d, _ = case
    k = read_kallsyms(prog.read, prog.vmcoreinfo.symbols)
    assert k.encoding == "base-relative" and "_stext" in k.anchors_matched
    assert lacks_data_symbols(k.types) == (name == "6.1-4k")
    m = misc(d)
    syms = prog.symbols
    assert syms.address_of("init_task") == int(m["init_task"], 16)
    assert syms.address_of("swapper_pg_dir") == int(m["swapper_pg_dir"], 16)
    assert prog.read_u64(syms.address_of("jiffies")) == int(m["jiffies"])
    assert prog.read_u32(syms.address_of("nr_cpu_ids")) == int(m["nr_cpu_ids"])
    assert prog.types.kind == "btf"  # __start_BTF found (by scanning rodata on 6.1)
    assert prog.types.sizeof("struct task_struct") > 1000
    first_mod = tsv(d / "expected/modules.tsv")[0]
    # the modules list head (recovered on 6.1) links the struct module drgn lists
    head = syms.address_of("modules")
    nodes, node = [], prog.read_u64(head)
    while node != head and len(nodes) < 64:
        nodes.append(node)
        node = prog.read_u64(node)
    off = prog.types.offsetof("struct module", "list")
    assert int(first_mod["STRUCT_MODULE"], 16) + off in nodes
    # per-CPU variables: the runqueue of the crashed CPU has the crashed task as curr
    cpu, pid, _, _ = crashed_thread(d)
    rq = prog["runqueues"]
    from vmcorekit.kernel.percpu import per_cpu
    assert int(per_cpu(rq, cpu).curr.pid) == pid


# -- commands against drgn -----------------------------------------------------------------------
PS_STATE = {"RU": "R", "IN": "S", "UN": "D", "ID": "I", "ZO": "Z", "ST": "T", "TR": "t", "DE": "X"}


def test_ps_matches_drgn(case, capsys):
    _, d, path = case
    want = {(int(r["PID"]), int(r["PPID"]), int(r["TASK"], 16), r["COMM"], r["ST"])
            for r in tsv(d / "expected/tasks.tsv")}
    rows = json.loads(run(capsys, "ps", "--json", str(path)))["tasks"]
    got = {(t["pid"], t["ppid"], int(t["task"], 16), t["comm"], t["state"]) for t in rows if t["pid"]}
    assert got == want
    text = run(capsys, "ps", str(path))
    for line in text.splitlines()[1:]:
        f = line.lstrip(">").split()
        if int(f[0]):
            assert (int(f[0]), int(f[1]), int(f[3], 16), PS_STATE[f[4]]) in {w[:3] + (w[4],) for w in want}
    cpu, pid, _, _ = crashed_thread(d)
    assert re.search(rf"^>\s+{pid}\s+\d+\s+{cpu}\s", text, re.M)  # the panic task is active


def test_mod_matches_drgn(case, capsys):
    _, d, path = case
    want = {(r["NAME"], int(r["BASE"], 16), int(r["STRUCT_MODULE"], 16))
            for r in tsv(d / "expected/modules.tsv")}
    mods = json.loads(run(capsys, "mod", "--json", str(path)))["modules"]
    assert {(m["name"], int(m["base"], 16), int(m["module"], 16)) for m in mods} == want
    text = run(capsys, "mod", str(path))
    assert all(f"{a:x}  {n}" in text for n, _, a in want)


def test_sys_matches_drgn(case, capsys):
    _, d, path = case
    m = misc(d)
    cpu, pid, _, _ = crashed_thread(d)
    info = json.loads(run(capsys, "sys", "--json", str(path)))
    assert info["release"] == m["uts_release"] and info["machine"] == "aarch64"
    assert info["cpus"] == int(m["nr_cpu_ids"]) and info["jiffies"] == int(m["jiffies"])
    assert (info["panic_cpu"], info["panic_pid"], info["panic_comm"]) == (int(m["panic_cpu"]), pid, "sh")
    assert info["panic"]["message"] == "Kernel panic - not syncing: sysrq triggered crash"
    # the timekeeper (tk_core: recovered on 6.1) dates the crash and fits HZ to jiffies
    assert info["crash_time_source"] == "timekeeper xtime_sec" and info["crash_time"] > 1.6e9
    assert info["hz"] in (100, 250, 300, 1000) and 0 < info["uptime_seconds"] < 600
    text = run(capsys, "sys", str(path))
    assert f"     RELEASE: {m['uts_release']}" in text and f"PANIC TASK: {pid} (sh) on CPU {cpu}" in text


def test_dmesg_and_levels(case, capsys):
    _, d, path = case
    log = run(capsys, "dmesg", str(path))
    console = (d / "console.log").read_text(errors="replace")
    markers = re.findall(r"vmcorekit-marker: \S+", log)
    assert markers and all(mk in console for mk in markers)
    emerg = run(capsys, "dmesg", "--level", "emerg", str(path))  # needs BTF: recovered on 6.1
    assert "Kernel panic - not syncing: sysrq triggered crash" in emerg
    assert len(emerg.splitlines()) < len(log.splitlines())
    recs = [json.loads(x) for x in run(capsys, "dmesg", "--json", str(path)).splitlines()]
    assert {r.get("level") for r in recs} >= {0, 6}


def test_struct(case, capsys):
    _, d, path = case
    m = misc(d)
    out = run(capsys, "struct", str(path), "task_struct.pid,comm", m["init_task"])
    assert re.search(r"pid = 0,", out) and 'comm = "swapper/0' in out
    layout = run(capsys, "struct", "-o", str(path), "pt_regs")
    assert re.search(r"\[304\] u64 stackframe\[2\];", layout)


def test_info_vmcoreinfo_kmem(case, capsys):
    name, d, path = case
    out = run(capsys, "info", str(path))
    assert re.search(r"^ARCH\s+aarch64$", out, re.M)
    assert re.search(rf"^PAGE SIZE\s+{16384 if '16k' in name else 4096}$", out, re.M)
    chk = run(capsys, "vmcoreinfo", "--check", str(path))
    assert re.search(r"\b0 missing, 0 unknown, 0 malformed", chk)
    kb = json.loads(run(capsys, "kmem", "-i", "--json", str(path)))  # bytes: back to pages
    k = {n.removesuffix("_bytes"): v // kb["page_size"] for n, v in kb.items() if n.endswith("_bytes") and v is not None}
    assert 0 < k["free"] < k["total"] <= (128 << 20) // (16384 if "16k" in name else 4096)
    assert k["cached"] > 0 and k["used"] == k["total"] - k["free"]


# -- bt -----------------------------------------------------------------------------------------
def test_bt_crashed_thread_matches_drgn(case, prog, capsys):
    """Same functions in order as drgn (DWARF), which also lists inlined calls: every drgn frame
    we do not show must be an inlined function with no code of its own (no kallsyms symbol)."""
    _, d, path = case
    cpu, pid, pc, names = crashed_thread(d)
    data = json.loads(run(capsys, "bt", "--json", str(path)))
    assert (data["crashed"]["cpu"], len(data["traces"])) == (cpu, 1)
    tr = data["traces"][0]
    assert tr["pid"] == pid and tr["cpu"] == cpu and tr["complete"] and tr["end_reason"] == "user mode"
    assert int(tr["frames"][0]["pc"], 16) == pc
    ours = [base_name(f["function"]) for f in tr["frames"]]
    it = iter(names)
    assert all(n in it for n in ours), (ours, names)  # a subsequence, in order
    missing = [n for n in names if n not in ours]
    assert missing and not [n for n in missing if n in prog.symbols]
    assert ours[-1] == names[-1] == "el0t_64_sync"
    assert int(tr["user_regs"]["regs"]["pstate"], 16) & 0xF == 0  # EL0t (registers: "0x...")
    text = run(capsys, "bt", str(path))
    assert text.startswith(f"PID: {pid:<7}  TASK: ")
    assert re.search(r"^\s+ORIG_X0: [0-9a-f]{16}  SYSCALLNO: 40  PSTATE: [0-9a-f]{8}$", text, re.M)


def test_bt_every_task_completes(case, capsys):
    """All tasks (bt --all-tasks): every trace reaches its final frame record; the stopped
    CPU's trace crosses from the IRQ stack to the task stack."""
    _, d, path = case
    data = json.loads(run(capsys, "bt", "--all-tasks", "--json", str(path)))
    traces = data["traces"]
    assert len(traces) >= len(tsv(d / "expected/tasks.tsv"))
    bad = [(t["pid"], t["end_reason"]) for t in traces if not t["complete"]]
    assert not bad
    for t in traces:
        fns = [f["function"] for f in t["frames"]]
        assert fns[-1] in ("el0t_64_sync", "el0t_64_irq", "ret_from_fork", "__primary_switched",
                           "__secondary_switched"), fns
    active = json.loads(run(capsys, "bt", "-a", "--json", str(path)))["traces"]
    assert len(active) == 2
    stopped = [t for t in active if t["cpu"] != data["crashed"]["cpu"]][0]
    assert [f["stack"] for f in stopped["frames"]][0] == "IRQ"
    assert "task" in [f["stack"] for f in stopped["frames"]]
    assert any(f["function"] in ("local_cpu_stop", "ipi_cpu_crash_stop", "ipi_handler")
               for f in stopped["frames"])


def test_triage(case, capsys):
    _, d, path = case
    cpu, pid, _, names = crashed_thread(d)
    rep = json.loads(run(capsys, "triage", "--json", str(path)))
    text = json.dumps(rep)
    assert "sysrq triggered crash" in text and "panic" in text
    assert '"sysrq_handle_crash' in text and '"el0t_64_sync' in text


# -- filter --------------------------------------------------------------------------------------
def test_filter_keeps_what_it_should(case, prog, tmp_path, capsys):
    """filter -d 31 on arm64's vmemmap: the free pages it drops are exactly those on the buddy
    free lists (walked independently), and every page it keeps reads back unchanged."""
    pytest.importorskip("vmcorekit.filter.job")
    from vmcorekit.dump import open_dump
    from vmcorekit.filter.classify import FREE, PageClassifier

    _, d, path = case
    out = tmp_path / "out.kdump"
    run(capsys, "filter", "-d", "31", str(path), str(out))
    maxpfn = max(r.end for r in prog.phys.ranges()) // prog.page_size
    pc = PageClassifier(prog.space, prog.vmcoreinfo, maxpfn)
    # arm64's VMCOREINFO has no SYMBOL(node_data): the free-list walk gets it from the symbols.
    vi = copy.copy(prog.vmcoreinfo)
    vi.symbols = dict(vi.symbols, node_data=prog.symbols.address_of("node_data"))
    free_lists = PageClassifier(prog.space, vi, maxpfn).free_list_pfns()
    classes = {a: c[0] for a, c in pc.run([31], lambda a, b: np.ones(b - a, bool))}
    free = np.concatenate([a + np.flatnonzero(c == FREE) for a, c in classes.items()])
    assert len(free) and np.array_equal(np.sort(free), free_lists)
    # and the kernel's own count (kmem -i FREE: NR_FREE_PAGES) agrees
    k = json.loads(run(capsys, "kmem", "-i", "--json", str(path)))
    assert len(free) == k["free_bytes"] // k["page_size"]
    kept = open_dump([str(out)])
    try:
        ps = prog.page_size
        pfns = np.concatenate([a + np.arange(len(c)) for a, c in classes.items()]).tolist()
        present = [p for p in pfns if kept.page_state(p).name == "PRESENT"]
        assert len(present) < len(pfns)
        assert not set(present) & set(free.tolist())
        for p in present[:: max(1, len(present) // 200)]:
            assert kept.read(p * ps, ps) == prog.phys.read(p * ps, ps)
    finally:
        kept.close()
