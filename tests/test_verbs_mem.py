"""crash's memory verbs: kmem -s / -S / -z / -f, checked against facts read another way (kmem -i's
SLAB and FREE, the task list, the zones' own counters) and against broken kernel data."""
from __future__ import annotations

import json
import re

import pytest

from vmcorekit.cli.main import main
from vmcorekit.errors import CorruptKernelDataError


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module", params=["x86_64", "arm64"])
def dump(request, sample_dump):
    if request.param == "x86_64":
        return str(sample_dump)
    from conftest import SAMPLES, decompressed_elf
    if not (SAMPLES / "arm64" / "vmcore.elf.zst").exists():
        pytest.skip("samples/arm64 absent")
    return str(decompressed_elf(SAMPLES / "arm64"))


@pytest.fixture(scope="module")
def prog(dump):
    from vmcorekit.program import Program
    p = Program.open(dump)
    yield p
    p.close()


def test_kmem_s_counts_agree_with_kmem_i(capsys, dump) -> None:
    rc, out, _ = run(capsys, "kmem", "-s", "--json", dump)
    assert rc == 0
    d = json.loads(out)
    caches = d["caches"]
    assert len(caches) > 50
    for c in caches:
        assert 0 <= c["allocated"] <= c["objects"], c
        assert c["allocated"] + c["free"] == c["objects"]
        assert (c["slabs"] == 0) == (c["objects"] == 0), c
    rc, out, _ = run(capsys, "kmem", "-i", "--json", "--no-shared", dump)
    slab_bytes = json.loads(out)["slab_bytes"]
    cache_bytes = sum(c["bytes"] for c in caches)
    # PG_slab pages (kmem -i's SLAB) hold every cache's slabs; the per-node counters miss only
    # slabs in flight, a small share
    assert 0.85 * slab_bytes <= cache_bytes <= slab_bytes
    # text layout: crash's header, one line per cache, the same numbers
    rc, text, _ = run(capsys, "kmem", "-s", dump)
    lines = text.splitlines()
    assert lines[0].split() == ["CACHE", "OBJSIZE", "ALLOCATED", "TOTAL", "SLABS", "SSIZE", "NAME"]
    by_name = {ln.split()[-1]: ln.split() for ln in lines[1:]}
    c = next(c for c in caches if c["name"] == "task_struct")
    assert by_name["task_struct"][:5] == [c["address"][2:].rjust(16, "0"), str(c["object_size_bytes"]),
                                          str(c["allocated"]), str(c["objects"]), str(c["slabs"])]


def test_kmem_S_lists_every_task_as_an_allocated_object(capsys, dump, prog) -> None:
    from vmcorekit.kernel.tasks import for_each_task_address
    tasks = set(for_each_task_address(prog))
    rc, out, _ = run(capsys, "kmem", "-S", "task_struct", "--json", dump)
    assert rc == 0
    d = json.loads(out)
    listed = {int(o["address"], 16): o["allocated"] for s in d["slabs"] for o in s["listed"]}
    assert len(listed) == d["total"]
    assert sum(listed.values()) == d["allocated"]
    # init_task is static, not from the slab; every other task is an allocated object
    heap_tasks = tasks - {prog.symbol_address("init_task")}
    assert heap_tasks and all(listed.get(t) is True for t in heap_tasks)
    for s in d["slabs"]:
        assert s["objects"] - s["free"] == sum(o["allocated"] for o in s["listed"])


def test_kmem_S_is_bounded_and_says_so(capsys, dump) -> None:
    rc, out, err = run(capsys, "kmem", "-S", "dentry", "--max-objects", "10", dump)
    assert rc == 3 and "10 of" in err
    objects = [ln for ln in out.splitlines() if re.fullmatch(r"  (\[[0-9a-f]+\]| [0-9a-f]+)", ln)]
    assert len(objects) == 10
    rc, _, err = run(capsys, "kmem", "-S", "no-such-cache", dump)
    assert rc == 2 and "no slab cache" in err


def test_kmem_z_and_f_agree_with_the_free_counters(capsys, dump) -> None:
    rc, out, _ = run(capsys, "kmem", "-z", "--json", dump)
    assert rc == 0
    zones = json.loads(out)["zones"]
    populated = [z for z in zones if z["spanned_pages"]]
    assert populated
    for z in populated:
        assert z["managed_pages"] <= z["present_pages"] <= z["spanned_pages"]
        assert z["watermarks"]["min"] <= z["watermarks"]["low"] <= z["watermarks"]["high"]
        buddy = sum(a["pages"] for a in z["free_areas"])
        assert buddy == z["vm_stat"]["NR_FREE_PAGES"]
        for a in z["free_areas"]:  # the walked lists hold what nr_free says
            assert sum(a["by_migratetype"].values()) == a["blocks"]
    rc, out, _ = run(capsys, "kmem", "-i", "--json", "--no-shared", dump)
    page_size = json.loads(out)["page_size"]
    assert sum(z["vm_stat"]["NR_FREE_PAGES"] for z in zones) * page_size == json.loads(out)["free_bytes"]
    rc, text, _ = run(capsys, "kmem", "-f", dump)
    assert rc == 0 and text.rstrip().endswith("(verified)")


def test_a_looping_freelist_is_bounded_and_reported(prog, monkeypatch) -> None:
    from vmcorekit.kernel import slab as S
    from vmcorekit.program.objects import Object
    cache = S.find_cache(prog, "task_struct")
    s = next(s for s in S.cache_slabs(prog, cache.address) if s.inuse < s.objects)
    c = Object(prog, "struct kmem_cache", address=cache.address)
    lo, hi = s.base, s.base + s.objects * cache.size
    real = prog.read_pointer
    rnd = int(c.random) if prog.types.has_member("struct kmem_cache", "random") else 0
    off = int(c.offset)

    def looping(addr: int) -> int:  # every free pointer names the slab's first object
        if lo <= addr - off < hi:
            return lo ^ rnd ^ S._swab64(addr) if rnd else lo
        return real(addr)

    monkeypatch.setattr(prog, "read_pointer", looping)
    with pytest.raises(CorruptKernelDataError, match="met twice"):
        S.freelist_objects(prog, c, lo, lo, hi, s.objects)


def test_a_looping_free_list_is_bounded_and_partial(prog, monkeypatch) -> None:
    import warnings
    from vmcorekit.kernel import zones as Z
    z = next(z for z in Z.zones(prog) if z.spanned and any(z.free_blocks))
    order = next(o for o, n in enumerate(z.free_blocks) if n)
    head = next(h for _, h, n in z.free_lists[order] if n)
    from vmcorekit.errors import PartialResultWarning
    real = prog.read_u64
    first = real(head)

    def looping(addr: int) -> int:  # the first block's next points at itself
        return first if addr == first else real(addr)

    monkeypatch.setattr(prog, "read_u64", looping)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fl = Z._free_lists(prog, z.free_area_addresses[order], z.free_blocks[order], "test")
    assert sum(n for _, _, n in fl) <= z.free_blocks[order]
    assert any(issubclass(x.category, PartialResultWarning) for x in w)


def test_kmem_usage_is_one_line(capsys, dump) -> None:
    for args in (["-s", "-z"], ["-p"], []):
        rc, out, err = run(capsys, "kmem", *args, dump)
        assert rc == 2 and out == "" and "usage: vmcorekit kmem" in err


# -- kmem ADDR ------------------------------------------------------------------------------------

def test_kmem_addr_of_a_task_is_its_task_struct_object(capsys, dump, prog) -> None:
    from vmcorekit.kernel.tasks import for_each_task_address
    t = next(a for a in for_each_task_address(prog) if a != prog.symbol_address("init_task"))
    rc, out, _ = run(capsys, "kmem", "--json", dump, f"{t + 0x40:x}")
    assert rc == 0
    facts = json.loads(out)["facts"]
    obj = next(f for f in facts if f["kind"] == "slab object")
    assert obj["name"] == "task_struct" and int(obj["object"], 16) == t and obj["state"] == "allocated"
    # its stack: the task stack fact names the same task
    stack = prog.read_pointer(t + prog.offsetof("struct task_struct", "stack"))
    rc, out, _ = run(capsys, "kmem", "--json", dump, f"{stack + 0x100:x}")
    st = next(f for f in json.loads(out)["facts"] if f["kind"] == "task stack")
    assert int(st["task"], 16) == t


def test_kmem_addr_of_module_and_kernel_text(capsys, dump, prog) -> None:
    from vmcorekit.kernel.modules import module_table
    mods = [m for m in module_table(prog) if m.base]
    if mods:
        m = mods[0]
        addr = m.base + 0x10  # module text starts at its base
        rc, out, _ = run(capsys, "kmem", "--json", dump, f"{addr:x}")
        facts = json.loads(out)["facts"]
        assert any(f["kind"].startswith("module") and m.name in f["text"] for f in facts), facts
    rc, out, _ = run(capsys, "kmem", dump, "schedule")
    assert rc == 0 and re.match(r"[0-9a-f]+ \(T\) schedule\n", out)
    assert "PAGE" in out and "PHYSICAL" in out  # with the struct page of the text


def test_kmem_addr_nowhere_is_one_line_and_partial(capsys, dump) -> None:
    rc, out, err = run(capsys, "kmem", "-p", dump, "7fffff000000")
    assert rc == 3 and out == ""
    assert sum(1 for ln in err.splitlines() if ln.startswith("vmcorekit: partial")) == 1


# -- mount ----------------------------------------------------------------------------------------

def test_mount_lists_root_and_proc(capsys, dump, prog) -> None:
    rc, out, _ = run(capsys, "mount", "--json", dump)
    assert rc == 0
    ms = json.loads(out)["mounts"]
    dirs = {m["dirname"]: m for m in ms}
    assert "/" in dirs and dirs["/proc"]["type"] == "proc"
    # the root mount is init's fs root: init_task.fs->root.mnt is &mount.mnt
    from vmcorekit.program.objects import Object
    fs = Object(prog, "struct task_struct", address=prog.symbol_address("init_task")).fs
    root_vfsmount = int(fs.root.mnt)
    assert root_vfsmount - prog.offsetof("struct mount", "mnt") in {int(m["mount"], 16) for m in ms}
    rc, text, _ = run(capsys, "mount", dump, "1")
    assert rc == 0 and text.split("\n")[0].split() == ["MOUNT", "SUPERBLK", "TYPE", "DEVNAME", "DIRNAME"]
    assert any(ln.split()[-1] == "/proc" and ln.split()[2] == "proc" for ln in text.splitlines()[1:])


def test_a_looping_mount_list_is_bounded(prog, monkeypatch) -> None:
    import warnings
    from vmcorekit.errors import PartialResultWarning
    from vmcorekit.kernel import mounts as M
    first = M.mounts(prog)
    if len(first) < 3:
        pytest.skip("fewer than three mounts")
    o = prog.offsetof("struct mount", "mnt_list")
    second = first[1].address + o
    third = first[2].address + o
    real = prog.read_u64

    def looping(addr: int) -> int:  # the third mount's next goes back to the second
        return second if addr == third else real(addr)

    monkeypatch.setattr(prog, "read_u64", looping)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = M.mounts(prog)
    assert [m.address for m in got] == [m.address for m in first[:3]]
    assert any(issubclass(x.category, PartialResultWarning) for x in w)


def test_swap_agrees_with_kmem_i(capsys, dump) -> None:
    import jsonschema
    from pathlib import Path
    import vmcorekit
    schema = json.loads((Path(vmcorekit.__file__).parent / "schemas" / "swap.json").read_text())
    rc, out, err = run(capsys, "swap", "--json", dump)
    d = json.loads(out)
    jsonschema.validate(d, schema)
    rc_i, out, _ = run(capsys, "kmem", "-i", "--json", "--no-shared", dump)
    mi = json.loads(out)
    if d["areas"] is None:  # arm64 Debian's kallsyms has no swap_info: said, exit 3
        assert rc == 3 and "swap_info" in err
        # kmem -i recovers total_swap_pages from the kernel's code; no areas then means none
        assert mi["swap_total_bytes"] in (None, 0)
        return
    assert rc == 0
    assert sum(a["size_bytes"] for a in d["areas"]) == mi["swap_total_bytes"]
    assert sum(a["used_bytes"] for a in d["areas"]) == mi["swap_used_bytes"]
    rc, text, _ = run(capsys, "swap", dump)
    assert text.splitlines()[0].split() == ["SWAP_INFO_STRUCT", "TYPE", "SIZE", "USED", "PCT", "PRI", "FILENAME"]
    assert len(text.splitlines()) == 1 + len(d["areas"])


def test_net_lists_the_loopback_device(capsys, dump, prog) -> None:
    rc, out, _ = run(capsys, "net", "--json", dump)
    assert rc == 0
    devs = json.loads(out)["devices"]
    from vmcorekit.program.objects import Object
    lo = int(Object(prog, "struct net", address=prog.symbol_address("init_net")).loopback_dev)
    d = next(d for d in devs if int(d["net_device"], 16) == lo)
    assert d["name"] == "lo" and "LOOPBACK" in d["flag_names"] and d["mtu"] == 65536
    assert len({d["name"] for d in devs}) == len(devs)
    rc, text, _ = run(capsys, "net", dump)
    assert [ln.split()[1] for ln in text.splitlines()[1:]] == [d["name"] for d in devs]


# -- irq ------------------------------------------------------------------------------------------

def test_irq_counts_add_up_to_each_cpus_kstat(capsys, dump, prog) -> None:
    from vmcorekit.kernel.percpu import per_cpu
    from vmcorekit.program.objects import Object
    rc, out, _ = run(capsys, "irq", "-s", "-a", "--json", dump)
    assert rc == 0
    irqs = json.loads(out)["irqs"]
    assert len({i["irq"] for i in irqs}) == len(irqs) and any(i["actions"] for i in irqs)
    cpus = {c for i in irqs for c in i["counts"]}
    assert len(cpus) >= 2  # the sample machines have two CPUs; both counted
    for cpu in cpus:
        k = Object(prog, "struct kernel_stat", address=per_cpu(prog, "kstat", int(cpu)))
        assert sum(i["counts"].get(cpu, 0) for i in irqs) == int(k.irqs_sum)
    rc, text, _ = run(capsys, "irq", "-s", dump)
    assert text.splitlines()[0].split() == [f"CPU{c}" for c in sorted(int(c) for c in cpus)]


def test_a_looping_xarray_is_bounded(prog, monkeypatch) -> None:
    from vmcorekit.kernel import xarray as X
    head = prog.try_symbol_address("irq_desc_tree")
    if head is None:
        pytest.skip("no irq_desc_tree on this kernel")
    o_head = prog.offsetof("struct xarray", "xa_head")
    node = prog.read_pointer(head + o_head)
    assert X._xa_is_node(node)
    o_slots = prog.offsetof("struct xa_node", "slots")
    real_read = prog.read

    def looping(addr: int, size: int, physical: bool = False) -> bytes:  # slot 0 names the node itself
        raw = real_read(addr, size, physical)
        if addr == node - 2 + o_slots:
            raw = node.to_bytes(8, "little") + raw[8:]
        return raw

    monkeypatch.setattr(prog, "read", looping)
    real_u8 = prog.read_u8
    monkeypatch.setattr(prog, "read_u8", lambda a: 6 if a == node - 2 else real_u8(a))
    with pytest.raises(CorruptKernelDataError, match="deeper"):
        X.xa_entries(prog, head)


# -- timer ----------------------------------------------------------------------------------------

def test_timer_wheel_and_hrtimers(capsys, dump, prog) -> None:
    rc, out, _ = run(capsys, "timer", "--json", dump)
    assert rc == 0
    d = json.loads(out)
    timers = [t for b in d["timer_bases"] for t in b["timers"]]
    assert timers and all(t["symbol"] for t in timers)  # every function resolves to a symbol
    for b in d["timer_bases"]:
        assert [t["expires"] for t in b["timers"]] == sorted(t["expires"] for t in b["timers"])
    # a timer_list sits in its CPU's wheel: its flags' low bits name that CPU (TIMER_CPUMASK)
    from vmcorekit.program.objects import Object
    for b in d["timer_bases"]:
        for t in b["timers"]:
            flags = int(Object(prog, "struct timer_list", address=int(t["timer"], 16)).flags)
            assert flags & 0x3FFFF == b["cpu"]
    rc, out, _ = run(capsys, "timer", "-r", "--json", dump)
    hb = json.loads(out)["hrtimer_bases"]
    # each CPU's scheduler tick is one queued CLOCK_MONOTONIC hrtimer; the clock's time (the
    # timekeeper's last update) is the same on every CPU, and no later than the last tick due
    # (a stopped CPU's tick stays in the past); CLOCK_REALTIME's is a date of this century
    mono = [b for b in hb if b["clockid"] == 1 and b["index"] == 0]
    assert len({b["now"] for b in mono}) == 1 and mono[0]["now"] > 0
    ticks = [t["expires"] for b in mono for t in b["timers"] if t["symbol"] == "tick_sched_timer"]
    assert ticks and all(n == 1 for n in (sum(t["symbol"] == "tick_sched_timer" for t in b["timers"])
                                          for b in mono if b["timers"]))
    assert mono[0]["now"] <= max(ticks) + 1_000_000_000
    real = next(b for b in hb if b["clockid"] == 0)
    assert 1_600_000_000 * 10**9 < real["now"] < 2_200_000_000 * 10**9
    assert all(t["softexpires"] <= t["expires"] for b in hb for t in b["timers"])


# -- search ---------------------------------------------------------------------------------------

def test_search_finds_a_list_link_to_init_task(capsys, dump, prog) -> None:
    from vmcorekit.kernel.tasks import for_each_task_address
    o = prog.offsetof("struct task_struct", "tasks")
    target = prog.symbol_address("init_task") + o
    first = int(prog["init_task"].tasks.next) - o  # the first task after init_task
    assert first in set(for_each_task_address(prog))
    where = first + o + prog.offsetof("struct list_head", "prev")  # its prev is &init_task.tasks
    rc, out, _ = run(capsys, "search", "--json", dump, f"{target:x}")
    assert rc == 0
    hits = {int(h["address"], 16) for h in json.loads(out)["matches"]}
    assert where in hits
    assert all(prog.read_pointer(a) == target for a in hits)  # read back through the page tables
    # with the low 12 bits masked, the exact matches are still found, among others
    rc, out, _ = run(capsys, "search", "--json", "-m", "fff", dump, f"{target:x}")
    masked = {int(h["address"], 16) for h in json.loads(out)["matches"]}
    assert hits <= masked
    # a window: only what lies in it
    rc, out, _ = run(capsys, "search", "--json", "-s", f"{where - 64:x}", "-l", "80", dump, f"{target:x}")
    assert [int(h["address"], 16) for h in json.loads(out)["matches"]] == [where]


def test_search_strings_and_physical(capsys, dump, prog) -> None:
    rc, out, _ = run(capsys, "search", "--json", "-c", "Linux version", dump)
    assert rc == 0
    ms = json.loads(out)["matches"]
    assert ms and all(prog.read(int(m["address"], 16), 13) == b"Linux version" for m in ms)
    assert any(prog.vmcoreinfo.osrelease in m["text"] for m in ms)  # linux_banner
    rc, out, _ = run(capsys, "search", "--json", "-p", "-c", "Linux version", dump)
    phys = json.loads(out)["matches"]
    assert [m["physical"] for m in phys] == [m["physical"] for m in ms]
    assert all(m["address"] == m["physical"] for m in phys)
    rc, out, err = run(capsys, "search", "--max-hits", "1", "-c", "Linux version", dump)
    assert rc == 3 and len(out.splitlines()) == 1 and "max-hits" in err


def test_kmem_p_of_a_page_cache_page_names_its_file(capsys, dump, prog) -> None:
    import numpy as np
    from vmcorekit.kernel.memmap import find_memory_model, pfn_to_page, read_struct_pages
    from vmcorekit.kernel.xarray import xa_entries
    from vmcorekit.program.objects import Object
    vi = prog.vmcoreinfo
    size, o_map = vi.size("page"), prog.offsetof("struct page", "mapping")
    end = max(r.end for r in prog.phys.ranges()) // prog.page_size
    model = find_memory_model(prog.space, vi, end)
    found = None
    for ch in model.chunks:  # a struct page whose mapping is an address_space (bit 0 clear)
        n = min(ch.pfn_end - ch.pfn_start, 1 << 16)
        raw, valid = read_struct_pages(prog.space, ch.vaddr, n, size, prog.page_size)
        maps = np.frombuffer(raw, dtype=np.dtype({"names": ["m"], "formats": ["<u8"], "offsets": [o_map],
                                                  "itemsize": size}), count=n)["m"]
        for k in np.nonzero(valid & (maps != 0) & ((maps & np.uint64(3)) == 0) & (maps > np.uint64(1 << 63)))[0]:
            pfn = ch.pfn_start + int(k)
            m = Object(prog, "struct address_space", address=int(maps[k]))
            try:
                host = int(m.host)
                if host and int(Object(prog, "struct inode", address=host).i_mapping) == m.address_:
                    found = (pfn, m, host)
                    break
            except Exception:
                continue
        if found:
            break
    if found is None:
        pytest.skip("no page-cache page in this dump's mem_map")
    pfn, m, host = found
    page = pfn_to_page(prog, pfn)
    # the mapping's own page tree holds this page at its index: an independent path
    index = int(Object(prog, "struct page", address=page).index)
    assert (index, page) in xa_entries(prog, m.i_pages.address_) or \
        any(e == page for _, e in xa_entries(prog, m.i_pages.address_))
    rc, out, _ = run(capsys, "kmem", "-p", "--json", dump, f"{pfn * prog.page_size:x}")
    assert rc == 0
    d = json.loads(out)
    fact = next(f for f in d["facts"] if f["kind"] == "page cache")
    assert int(fact["inode"], 16) == host and fact["index"] == index
    assert int(d["page"]["struct_page"], 16) == page
