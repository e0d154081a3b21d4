"""OOM explained from the zoo's real dumps (the slab leak of tools/zoo/zoo.c, a user process
eating memory) on x86_64 6.1/6.12 and arm64 6.1; RSS on 6.12 computed independently from the
per-CPU counters; slab and RSS walks bounded on crafted (overlaid) kernel data."""
from __future__ import annotations

import json
import re
import struct
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from zoo_dumps import dump_path, need

from vmcorekit.cli.main import main
from vmcorekit.errors import PartialResultWarning
from vmcorekit.kernel import slab as slab_mod
from vmcorekit.kernel.oom import oom_log_facts
from vmcorekit.kernel.tasks import MAX_RSS_PAGES, find_task, task_summary
from vmcorekit.program import Program
from vmcorekit.report.triage import triage

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = tomllib.loads((ROOT / "tests" / "zoo" / "manifest.toml").read_text())["dump"]
SCHEMA = json.loads((ROOT / "src" / "vmcorekit" / "schemas" / "triage.json").read_text())


def cases(*kinds: str, release: str = "") -> list[Any]:
    return [pytest.param(e, id=e["id"]) for e in MANIFEST
            if e["kind"] in kinds and release in e["kernel_release"]]


@lru_cache(maxsize=2)
def _triage(path: str) -> dict[str, Any]:
    return triage(path)


def leaked_cache() -> str:
    """The kmalloc cache zoo_oom_slab() leaks into, from the module's source."""
    src = (ROOT / "tools" / "zoo" / "zoo.c").read_text()
    body = src[src.index("zoo_oom_slab(void)"):]
    size = int(re.search(r"kmalloc\((\d+), GFP_KERNEL\)", body).group(1))
    return f"kmalloc-{size // 1024}k" if size >= 1024 and size % 1024 == 0 else f"kmalloc-{size}"


@pytest.mark.parametrize("entry", cases("oom_slab"))
def test_slab_leak_is_named(entry: dict[str, Any]) -> None:
    r = _triage(need(entry))
    jsonschema.validate(r, SCHEMA)
    o = r["oom"]
    cache = leaked_cache()
    assert o["verdict"].startswith(f"slab {cache} holds ")
    pct = int(re.search(r"holds (\d+) %", o["verdict"]).group(1))
    assert 30 <= pct <= 100
    assert o["slab"]["top"][0]["name"] == cache and not o["slab"]["top"][0]["reclaimable"]
    # the caches' own sum agrees with the kernel's SUnreclaim counter (large kmallocs and
    # per-CPU counter drift aside)
    unrec, sunreclaim = o["slab"]["caches_unreclaimable_pages"], o["slab"]["sunreclaim_pages"]
    assert abs(unrec - sunreclaim) <= 0.05 * sunreclaim
    assert o["log"]["invoker"] == entry["oom"]["comm"] and o["log"]["gfp_mask"] == entry["oom"]["gfp_mask"]
    assert o["log"]["order"] == entry["oom"]["order"] and o["log"]["panic"] == "system-wide"


@pytest.mark.parametrize("entry", cases("oom_user"))
def test_eating_process_is_named(entry: dict[str, Any]) -> None:
    r = _triage(need(entry))
    jsonschema.validate(r, SCHEMA)
    o = r["oom"]
    assert o["verdict"].startswith(f"task {entry['oom']['comm']} (pid {entry['pid']}) holds ")
    top = o["top_tasks"][0]
    assert top["name"] == entry["oom"]["comm"] and top["anon_pages"] > 0.8 * top["pages"]
    assert top["percent_of_ram"] > 40


@pytest.mark.parametrize("entry", cases("softlockup", "timer_null"))
def test_no_oom_section_without_an_oom(entry: dict[str, Any]) -> None:
    r = _triage(need(entry))
    assert "oom" not in r and r["sections"]["oom"]["ok"]


def test_oom_log_facts_memcg() -> None:
    lines = [
        "[  5.1] stress invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
        "[  5.1] CPU: 1 PID: 321 Comm: stress Not tainted 6.1.0 #1",
        "[  5.2] memory: usage 51200kB, limit 51200kB, failcnt 9",
        "[  5.3] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
        "oom_memcg=/box,task_memcg=/box,task=stress,pid=321,uid=0",
        "[  5.3] Memory cgroup out of memory: Killed process 321 (stress) total-vm:60000kB, "
        "anon-rss:50000kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:120kB oom_score_adj:0",
    ]
    o = oom_log_facts(lines)
    assert (o.invoker, o.invoker_pid, o.gfp_mask, o.order) == ("stress", 321, "0xcc0(GFP_KERNEL)", 0)
    assert (o.constraint, o.task_memcg, o.oom_memcg) == ("CONSTRAINT_MEMCG", "/box", "/box")
    assert (o.victim_pid, o.victim_comm, o.panic) == (321, "stress", None)
    assert not oom_log_facts(["[ 1.0] nothing to see"]).seen
    # dump_tasks()'s table, 6.12's columns; a short (cut) row is skipped
    table = oom_log_facts(lines[:2] + [
        "[  5.2] Tasks state (memory values in pages):",
        "[  5.2] [  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name",
        "[  5.2] [    321]     0   321    14392    14187    13856        0       331   155648        0             0 my prog",
        "[  5.2] [    322]     0   321       12",
        "[  5.2] [    400]     0   400      565      331        0        0       331    36864        0             0 sleep",
    ]).tasks
    assert table == [{"pid": 321, "uid": 0, "tgid": 321, "total_vm": 14392, "rss": 14187, "rss_anon": 13856,
                      "rss_file": 0, "rss_shmem": 331, "pgtables_bytes": 155648, "swapents": 0,
                      "oom_score_adj": 0, "name": "my prog"}, table[1]]
    assert table[1]["pid"] == 400 and table[1]["name"] == "sleep"
    o = oom_log_facts(["Kernel panic - not syncing: Out of memory: compulsory panic_on_oom is enabled"])
    assert o.seen and o.panic == "compulsory"


# -- RSS on 6.2+: per-CPU counters -------------------------------------------------------------
def _raw_rss_pages(prog: Program, task: int) -> int:
    """file + anon + shmem of the task's mm, read by hand: each rss_stat[i] is a struct
    percpu_counter whose `count` plus every possible CPU's s32 delta is the value."""
    T = prog.types
    mm = prog.read_pointer(task + prog.offsetof("struct task_struct", "mm"))
    if not mm:
        return 0
    base = mm + prog.offsetof("struct mm_struct", "rss_stat")
    size = T.sizeof("struct percpu_counter")
    o_count, o_pcpu = prog.offsetof("struct percpu_counter", "count"), prog.offsetof("struct percpu_counter", "counters")
    offsets = prog.symbol_address("__per_cpu_offset")
    ncpu = prog.read_u32(prog.symbol_address("nr_cpu_ids"))
    total = 0
    for name in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES"):
        pc = base + T.constant(name) * size
        v = prog.read_s64(pc + o_count)
        pcpu = prog.read_pointer(pc + o_pcpu)
        for cpu in range(ncpu):
            v += struct.unpack("<i", prog.read((pcpu + prog.read_pointer(offsets + 8 * cpu)) & (2**64 - 1), 4))[0]
        total += max(v, 0)
    return total


@pytest.mark.parametrize("entry", cases("oom_user", "softlockup", release="6.12"))
def test_ps_rss_on_6_12_matches_the_per_cpu_counters(entry: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    path = need(entry)
    assert main(["ps", "--json", "-u", path]) in (0, 3)
    rows = json.loads(capsys.readouterr().out)["tasks"]
    assert rows
    with Program.open([path]) as prog:
        ps = prog.page_size
        for row in rows:
            assert row["rss_bytes"] == _raw_rss_pages(prog, int(row["task"], 16)) * ps, row
    init = next(r for r in rows if r["pid"] == 1)
    # crash 8.0.6 shows init at 1700 KiB on such a machine: shmem pages are most of it
    assert init["rss"]["shmem_bytes"] > init["rss"]["anon_bytes"] and init["rss_bytes"] > 1024 * 1024


# -- bounds on crafted data: a real dump with a few words overlaid -----------------------------
def _overlay(prog: Program, monkeypatch: pytest.MonkeyPatch, patches: dict[int, bytes]) -> None:
    real = prog.read

    def read(address: int, size: int, physical: bool = False) -> bytes:
        data = bytearray(real(address, size, physical))
        if not physical:
            for a, b in patches.items():
                lo, hi = max(a, address), min(a + len(b), address + size)
                if lo < hi:
                    data[lo - address:hi - address] = b[lo - a:hi - a]
        return bytes(data)

    monkeypatch.setattr(prog, "read", read)


def _zoo_612() -> str:
    e = next((e for e in MANIFEST if e["kind"] == "oom_slab" and "6.12" in e["kernel_release"]), None)
    if e is None or dump_path(e) is None:
        pytest.skip("6.12 zoo dump absent")
    return str(dump_path(e))


def test_slab_caches_list_that_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    with Program.open([_zoo_612()]) as prog:
        good = slab_mod.slab_caches(prog)
        o_list = prog.offsetof("struct kmem_cache", "list")
        # the 5th cache's next points back at the 3rd: a loop the walk must end
        fifth = good[4].address + o_list
        _overlay(prog, monkeypatch, {fifth: struct.pack("<Q", good[2].address + o_list)})
        with pytest.warns(PartialResultWarning, match="slab caches"):
            got = slab_mod._walk(prog, slab_mod.MAX_CACHES)
        assert [c.name for c in got] == [c.name for c in good[:5]]


def test_slab_cache_with_absurd_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    with Program.open([_zoo_612()]) as prog:
        good = slab_mod.slab_caches(prog)
        victim = max(good, key=lambda c: c.pages)
        node0 = prog.read_pointer(victim.address + prog.offsetof("struct kmem_cache", "node"))
        o = prog.offsetof("struct kmem_cache_node", "nr_slabs")
        _overlay(prog, monkeypatch, {node0 + o: struct.pack("<q", 1 << 60)})
        with pytest.warns(PartialResultWarning, match=victim.name):
            got = slab_mod._walk(prog, slab_mod.MAX_CACHES)
        assert victim.name not in {c.name for c in got} and len(got) == len(good) - 1
        # a tiny walk limit: bounded, partial
        with pytest.warns(PartialResultWarning):
            assert len(slab_mod._walk(prog, 3)) <= 3


def test_absurd_rss_counter_is_a_problem_not_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    with Program.open([_zoo_612()]) as prog:
        t = find_task(prog, 1)
        mm = int(t.mm)
        pc = mm + prog.offsetof("struct mm_struct", "rss_stat") + \
            prog.types.constant("MM_ANONPAGES") * prog.types.sizeof("struct percpu_counter")
        _overlay(prog, monkeypatch, {pc + prog.offsetof("struct percpu_counter", "count"):
                                     struct.pack("<q", MAX_RSS_PAGES * 4)})
        s = task_summary(find_task(prog, 1))
        assert s.rss.total == 0 and any("not a page count" in p for p in s.problems)
