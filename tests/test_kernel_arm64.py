"""Task, module, CPU and memory helpers on the arm64 samples: a 6.12 kernel (16K pages; the
6.2+ layouts: percpu_counter RSS, module mem[], no SPLIT_RSS) checked against drgn with
debuginfo, and a 6.1 kernel whose kallsyms has no data symbols (recovered from the image)."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SAMPLES, decompressed_elf
from vmcorekit.cli.main import main
from vmcorekit.kernel import cpus, meminfo, modules, panic, sysinfo, tasks
from vmcorekit.program import Program

from test_kernel_tasks import drgn_tasks, ours

NEW = SAMPLES / "arm64" / "16k-lpa2"
OLD = SAMPLES / "arm64"


def _open(d: Path) -> Program:
    if not (d / "vmcore.elf.zst").exists():
        pytest.skip(f"{d}/vmcore.elf.zst absent")
    return Program.open(decompressed_elf(d))


@pytest.fixture(scope="module")
def new() -> Program:
    return _open(NEW)


def _misc(d: Path) -> dict[str, str]:
    return dict(x.split("=", 1) for x in (d / "expected/misc.txt").read_text().splitlines())


def test_612_tasks_match_drgn(new: Program) -> None:
    lay = tasks._layout(new)
    assert lay.state == "__state" and lay.rss_kind == "percpu_counter" and not lay.split_rss
    rows = tasks.task_table(new)
    assert ours(rows) == drgn_tasks(NEW / "expected/tasks.tsv")
    users = [r for r in rows if not r.kernel_thread and r.mm]
    assert users and all(r.rss.total > 0 and r.vsz > 0 for r in users)


def test_612_panic_context(new: Program) -> None:
    ctx = panic.crash_context(new)
    assert ctx.cpu == int(_misc(NEW)["panic_cpu"])
    pid = int((NEW / "expected/crashed-thread.txt").read_text().split()[4])  # "crashed cpu 1 pid 175"
    assert ctx.pid == pid
    assert not ctx.notes  # QEMU's PRSTATUS pids are vCPU numbers: not compared
    assert cpus.nr_cpu_ids(new) == int(_misc(NEW)["nr_cpu_ids"])


def test_612_modules_use_mem_array(new: Program) -> None:
    exp = {}
    for line in (NEW / "expected/modules.tsv").read_text().splitlines()[1:]:
        name, base, text_size, mod = line.split("\t")
        exp[name] = (int(base, 16), int(text_size), int(mod, 16))
    mods = modules.module_table(new)
    assert {m.name: (m.base, m.address) for m in mods} == \
        {n: (b, a) for n, (b, _, a) in exp.items()}
    # the size is the module's whole core memory: text plus data, rodata, ro_after_init
    assert all(m.size >= exp[m.name][1] and m.size % new.page_size == 0 for m in mods)


def test_612_sys_and_memory(new: Program) -> None:
    si = sysinfo.system_info(new)
    assert si.uts["release"] == _misc(NEW)["uts_release"]
    assert si.panic.message == "Kernel panic - not syncing: sysrq triggered crash"
    assert si.memory_source == "node_present_pages" and si.memory_bytes == 128 << 20
    assert si.uptime.hz and si.uptime.seconds > 0
    mi = meminfo.memory_summary(new)
    assert mi.total and 0 < mi.free < mi.total and mi.committed is not None
    assert mi.slab == mi.slab_vmstat  # 6.12 has no PG_slab flag: the counters are used


def test_61_without_data_symbols_recovers_them(capsys) -> None:
    """Its kallsyms has no data symbols (no CONFIG_KALLSYMS_ALL): BTF, init_task and the rest
    are recovered from the image (program/symbols/recover.py), so ps works."""
    prog = _open(OLD)
    u = sysinfo.uts(prog)  # VMCOREINFO has init_uts_ns
    assert u["release"].startswith("6.1.")
    path = str(decompressed_elf(OLD))
    assert main(["ps", path]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) > len(drgn_tasks(OLD / "expected/tasks.tsv"))
    assert main(["sys", path]) == 0
    out = capsys.readouterr().out
    assert f"RELEASE: {u['release']}" in out and "sysrq triggered crash" in out
