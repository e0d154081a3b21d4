"""Types and typed objects on the real corpus dumps, from the dump alone (no debuginfo),
checked against the peer tools' outputs in expected/."""
from __future__ import annotations

import contextlib
import io
import re
import time
from pathlib import Path

import pytest

from vmcorekit.kernel.lists import list_for_each_entry
from vmcorekit.program import Program
from vmcorekit.kernel.percpu import per_cpu
from vmcorekit.program.types import TypeRegistry
from vmcorekit.program.types.fallback import VmcoreinfoTypeSource

pytestmark = pytest.mark.corpus

DBG_VMLINUX = Path("/usr/lib/debug/boot/vmlinux-6.1.0-56-amd64")


@pytest.fixture(scope="module")
def prog(corpus_elf: Path):
    p = Program.open(corpus_elf)
    yield p
    p.close()


def expected_tasks(case: Path) -> list[tuple[int, int, int, int, str]]:
    rows = (case / "expected" / "drgn" / "tasks.tsv").read_text().splitlines()[1:]
    out = []
    for r in rows:
        pid, tgid, ppid, _st, task, comm = r.split("\t")
        out.append((int(pid), int(tgid), int(ppid), int(task, 16), comm))
    return sorted(out)


def test_btf_found_and_fast(corpus_elf: Path):
    t0 = time.perf_counter()
    with Program.open(corpus_elf) as p:
        reg = p.types
        t = reg.lookup("struct task_struct")
        elapsed = time.perf_counter() - t0
        assert reg.kind == "btf" and not reg.warnings
        assert len(reg.btf) > 50_000
        assert t.size == reg.sizeof("struct task_struct") > 1000
    # open + kallsyms + BTF index + first lookup; generous for a loaded 2-core box
    assert elapsed < 5.0


def test_init_task_and_uts(prog: Program, corpus_case: Path):
    it = prog["init_task"]
    assert it.comm.string_() == b"swapper/0"
    assert it.pid.value_() == 0
    vi_release = prog.vmcoreinfo.osrelease
    assert prog["init_uts_ns"].name.release.string_().decode() == vi_release
    expected = (corpus_case / "expected" / "drgn" / "uts-release.txt").read_text().strip()
    assert vi_release == expected


def test_task_walk_matches_drgn(prog: Program, corpus_case: Path):
    it = prog["init_task"]
    rows = []
    for t in list_for_each_entry("struct task_struct", it.tasks.address_of_(), "tasks"):
        for th in list_for_each_entry("struct task_struct", t.signal.thread_head.address_of_(),
                                      "thread_node"):
            rows.append((int(th.pid), int(th.tgid), int(th.real_parent.pid), int(th),
                         th.comm.string_().decode(errors="backslashreplace")))
    assert sorted(rows) == expected_tasks(corpus_case)


def test_globals_match_drgn_misc(prog: Program, corpus_case: Path):
    misc = dict(line.split("=", 1) for line in
                (corpus_case / "expected" / "drgn" / "misc.txt").read_text().splitlines())
    assert prog["jiffies"].value_() == int(misc["jiffies"])
    assert prog["init_task"].address_ == int(misc["init_task"], 16)
    assert prog["nr_threads"].value_() == int(misc["nr_threads"])
    assert prog["_totalram_pages"].counter.value_() == int(misc["totalram_pages"])
    assert prog["panic_cpu"].counter.value_() == int(misc["panic_cpu"])
    assert prog["nr_cpu_ids"].value_() == int(misc["nr_cpu_ids"])
    zone = prog["vm_zone_stat"]
    assert zone.type_.type_name() == f"atomic_long_t [{prog.types.constant('NR_VM_ZONE_STAT_ITEMS')}]"
    assert prog["jiffies_64"].value_() >= prog["jiffies"].value_()


def test_per_cpu_runqueues(prog: Program):
    rq = prog["runqueues"]
    assert prog.types.global_info("runqueues").how == "btf-var"
    n = prog["nr_cpu_ids"].value_()
    for cpu in range(n):
        r = per_cpu(rq, cpu)
        assert r.cpu.value_() == cpu
        assert r.curr.comm.string_()  # the running task of that CPU


def test_crashed_task_is_running(prog: Program, corpus_case: Path):
    first = (corpus_case / "expected" / "drgn" / "crashed-thread.txt").read_text().split()
    pid = int(first[1])
    n = prog["nr_cpu_ids"].value_()
    currs = {int(per_cpu(prog["runqueues"], c).curr.pid) for c in range(n)}
    assert pid in currs


def test_modules_and_module_btf(prog: Program, corpus_case: Path):
    rows = (corpus_case / "expected" / "drgn" / "modules.tsv").read_text().splitlines()[1:]
    names = [r.split("\t")[0] for r in rows]
    got = [m.name.string_().decode() for m in
           list_for_each_entry("struct module", prog["modules"].address_of_(), "list")]
    assert got == names
    if "loop" in names:
        t = prog.types.lookup("struct loop_device")  # only in loop.ko's split BTF
        assert t.size and t.has_member("lo_number")
        assert any(s.name == "btf:loop" for s in prog.types.sources)


def test_printk_info_bitfields(prog: Program):
    reg = prog.types
    assert reg.member_bits("struct printk_info", "level")[1] == 3
    assert reg.member_bits("struct printk_info", "flags")[1] == 5
    # facility is a whole byte in 6.1
    fac = reg.member_bits("struct printk_info", "facility")
    assert fac[1] == 8 and fac[0] % 8 == 0
    # VMCOREINFO agrees with BTF on every OFFSET/SIZE it exports
    vi = prog.vmcoreinfo
    for key, off in vi.offsets.items():
        owner, _, member = key.partition(".")
        for spec in (f"struct {owner}", owner):
            if reg.has_member(spec, member):
                assert reg.offsetof(spec, member) == off, key
                break
    for name, size in vi.sizes.items():
        for spec in (f"struct {name}", name):
            if reg.has_type(spec):
                assert reg.sizeof(spec) == size, name
                break


def test_crash_list_tasks_format(prog: Program, corpus_case: Path):
    """`list -h init_task -o task_struct.tasks -s task_struct.pid,tgid,comm`, byte for byte."""
    expected = (corpus_case / "expected" / "crash" / "list-tasks.txt").read_text()
    it = prog["init_task"]
    chunks = [f"{it.address_:x}\n" + it.format_members_(["pid", "tgid", "comm"])]
    for t in list_for_each_entry("struct task_struct", it.tasks.address_of_(), "tasks"):
        chunks.append(f"{int(t):x}\n" + t.deref().format_members_(["pid", "tgid", "comm"]))
    assert "\n".join(chunks) + "\n" == expected


def test_crash_p_init_uts_ns_format(prog: Program, corpus_case: Path):
    expected = (corpus_case / "expected" / "crash" / "p-init_uts_ns.txt").read_text()
    body = expected.split(" = ", 1)[1]
    text = prog["init_uts_ns"].name.format_()
    assert text.split(" ", 2)[2] + "\n" == body  # drop the "struct new_utsname " header
    jiffies = (corpus_case / "expected" / "crash" / "p-jiffies.txt").read_text()
    assert jiffies.strip().endswith(f"= {prog['jiffies'].value_()}")


def test_vmcoreinfo_fallback_without_btf(prog: Program):
    """No BTF: init_uts_ns.name.release still reads (OFFSET(uts_namespace.name) + the ABI
    layout of new_utsname); struct page members come from SIZE/OFFSET."""
    reg = TypeRegistry([], pointer_size=8, kind="vmcoreinfo")
    reg.sources.append(VmcoreinfoTypeSource(prog.vmcoreinfo, reg))
    saved = prog.__dict__.get("types")
    prog.__dict__["types"] = reg
    try:
        assert prog["init_uts_ns"].name.release.string_().decode() == prog.vmcoreinfo.osrelease
        assert reg.sizeof("struct page") == prog.vmcoreinfo.size("page")
        assert reg.offsetof("struct page", "_refcount") == prog.vmcoreinfo.offset("page._refcount")
        flags = reg.lookup("struct page").member("flags").type
        assert flags.size == 8
        assert reg.lookup("struct zone").member("free_area").type.length == \
            prog.vmcoreinfo.length("zone.free_area")
        with pytest.raises(Exception):
            prog["init_task"]
    finally:
        if saved is not None:
            prog.__dict__["types"] = saved
        else:
            prog.__dict__.pop("types", None)


def test_struct_cli(corpus_elf: Path, corpus_case: Path):
    from vmcorekit.cli.main import main

    def run(*args: str) -> tuple[int, str]:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = main(["struct", str(corpus_elf), *args])
        return rc, buf.getvalue()

    rc, out = run("list_head")
    assert rc == 0 and out == ("struct list_head {\n   [0] struct list_head *next;\n"
                               "   [8] struct list_head *prev;\n}\nSIZE: 16\n")
    rc, out = run("uts_namespace.name", "init_uts_ns")
    with Program.open(corpus_elf) as p2:
        release = p2.vmcoreinfo.osrelease
    assert rc == 0 and f'    release = "{release}\\000' in out
    rc, out = run("task_struct.pid,comm", "init_task", "--json")
    assert rc == 0 and '"comm": "swapper/0"' in out
    rc, out = run("rq.cpu", "runqueues:a")
    assert rc == 0 and re.search(r"\[1\]: [0-9a-f]+\n  cpu = 1,", out)
    rc, _ = run("no_such_struct", "0")
    assert rc == 1


@pytest.mark.skipif(not DBG_VMLINUX.exists(), reason="debuginfo vmlinux not installed")
def test_btf_agrees_with_dwarf(prog: Program, corpus_elf: Path):
    """Sizes and member offsets of a few hundred structs, BTF vs the -dbg vmlinux's DWARF
    (through drgn, which reads DWARF quickly)."""
    drgn = pytest.importorskip("drgn")
    dp = drgn.Program()
    dp.set_core_dump(str(corpus_elf))
    dp.load_debug_info([str(DBG_VMLINUX)])
    btf = prog.types.btf
    from vmcorekit.program.types import BtfKind
    names = sorted({btf.type(i).name for i in btf.ids_of_kind(BtfKind.STRUCT)
                    if btf.type(i).name})
    sample = names[:: max(1, len(names) // 400)]
    checked = 0
    for name in sample:
        try:
            dt = dp.type(f"struct {name}")
        except LookupError:
            continue
        if not dt.is_complete():
            continue
        mine = prog.types.lookup(f"struct {name}")
        assert mine.size == dt.size, name
        for m in dt.members:
            if m.name is None:
                continue
            bit, bf = prog.types.member(mine, m.name)[1:]
            assert bit == m.bit_offset, (name, m.name)
            assert (bf or 0) == (m.bit_field_size or 0), (name, m.name)
        checked += 1
    assert checked >= 300


@pytest.mark.skipif(not DBG_VMLINUX.exists(), reason="debuginfo vmlinux not installed")
def test_btf_from_vmlinux_file_matches_memory(prog: Program, tmp_path: Path):
    from test_btf import kernelish, minimal_elf

    from vmcorekit.program.types import BtfFormatError, kernel_types
    reg = kernel_types(prog, vmlinux=str(DBG_VMLINUX))
    assert reg.kind == "btf-file"
    assert len(reg.btf) == len(prog.types.btf)
    assert reg.sizeof("struct task_struct") == prog.types.sizeof("struct task_struct")
    other = tmp_path / "other-vmlinux"
    note = b"\x04\0\0\0\x04\0\0\0\x03\0\0\0GNU\0\xde\xad\xbe\xef"
    other.write_bytes(minimal_elf([(".note.gnu.build-id", 7, note), (".BTF", 1, kernelish()[0])]))
    with pytest.raises(BtfFormatError, match="build ID"):
        kernel_types(prog, vmlinux=str(other))
