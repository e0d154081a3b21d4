"""vmcorekit.drgn: drgn's own helpers on a dump with no debuginfo (kallsyms + BTF from the dump),
checked against what drgn printed with debuginfo (the `expected/` folders), against vmcorekit's
own answers, and, when a vmlinux with DWARF is given in $VMCOREKIT_DRGN_VMLINUX, against drgn
with that debuginfo run on the same dump side by side."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import CASES, SAMPLES, corpus_root, decompressed_elf
from vmcorekit.cli.main import main
from vmcorekit.errors import DrgnUnavailableError
from vmcorekit.kernel import lists, stacks, tasks
from vmcorekit.program import Program

drgn = pytest.importorskip("drgn", reason="drgn is not installed (pip install 'vmcorekit[drgn]')")
if not hasattr(drgn.Program, "set_linux_kernel_custom"):
    pytest.skip("drgn older than 0.1 (no set_linux_kernel_custom)", allow_module_level=True)

import vmcorekit.drgn as vdrgn  # noqa: E402
from drgn.helpers.linux.fs import d_path  # noqa: E402
from drgn.helpers.linux.module import for_each_module  # noqa: E402
from drgn.helpers.linux.cpumask import for_each_online_cpu, for_each_possible_cpu  # noqa: E402
from drgn.helpers.linux.mm import totalram_pages  # noqa: E402
from drgn.helpers.linux.percpu import per_cpu  # noqa: E402
from drgn.helpers.linux.printk import get_dmesg  # noqa: E402
from drgn.helpers.linux.pid import find_task, for_each_task  # noqa: E402
from drgn.helpers.linux.sched import task_state_to_char  # noqa: E402
from drgn.helpers.linux.slab import for_each_slab_cache  # noqa: E402

X86_SAMPLE = SAMPLES / "x86_64-6.1.0-56-amd64-qmp-c-d31.kdump"
ARM64_SAMPLE = SAMPLES / "arm64" / "vmcore.elf.zst"


def _dumps() -> list[Any]:
    """(dump, expected folder, file-name prefix there) per dump, each format the corpus has."""
    out = [pytest.param((X86_SAMPLE, SAMPLES / "expected", "drgn-"), id="x86_64-sample"),
           pytest.param((ARM64_SAMPLE, SAMPLES / "arm64" / "expected", ""), id="arm64-sample")]
    for case in CASES:
        for name, exp in (("vmcore.c-d31.kdump", "drgn-c-d31"), ("vmcore.elf.zst", "drgn"),
                          ("vmcore.qemu-kdump-zlib", "drgn")):
            out.append(pytest.param((case, name, exp), id=f"{case}-{name}",
                                    marks=pytest.mark.corpus))
    return out


@pytest.fixture(scope="module")
def opened() -> dict[str, Any]:
    return {}


@pytest.fixture(params=_dumps())
def dump(request: pytest.FixtureRequest, opened: dict[str, Any]) -> tuple[Any, Path, str]:
    """(drgn Program, expected folder, prefix), one Program per dump for the whole module."""
    spec = request.param
    if isinstance(spec[0], Path):
        path, exp, prefix = spec
    else:
        root = corpus_root()
        assert root is not None
        case, name, sub = spec
        path = root / case / name
        exp, prefix = root / case / "expected" / sub, ""
        if name.endswith(".elf.zst"):
            path = decompressed_elf(root / case)  # the cache the other corpus tests share
    if not path.exists():
        pytest.skip(f"{path} absent")
    key = str(path)
    if key not in opened:
        opened[key] = vdrgn.program(path)
    return opened[key], exp, prefix


def _expected(exp: Path, prefix: str, name: str) -> Path:
    p = exp / f"{prefix}{name}"
    if not p.exists():
        pytest.skip(f"no {p}")
    return p


def test_tasks_match_drgn_with_debuginfo_and_vmcorekit(dump: tuple[Any, Path, str]) -> None:
    prog, exp, prefix = dump
    vp = vdrgn.vmcorekit_program(prog)
    # drgn's task_state_to_char reads task_state_array, a data symbol: absent where kallsyms
    # keeps functions only (Debian's arm64 kernels).
    states = vp.try_symbol_address("task_state_array") is not None
    rows = {(t.pid.value_(), t.tgid.value_(), t.real_parent.pid.value_(),
             task_state_to_char(t) if states else None,
             t.value_(), t.comm.string_().decode(errors="backslashreplace"))
            for t in for_each_task(prog)}
    want = set()
    for line in _expected(exp, prefix, "tasks.tsv").read_text().splitlines()[1:]:
        pid, tgid, ppid, st, task, comm = line.split("\t")
        want.add((int(pid), int(tgid), int(ppid), st if states else None, int(task, 16), comm))
    assert rows == want
    ours = {(r.pid, r.task, r.comm) for r in tasks.task_table(vp) if not r.idle}
    assert {(r[0], r[4], r[5]) for r in rows} == ours
    assert prog["init_task"].comm.string_() == vp["init_task"].comm.string_()


def test_ps_json_same_pids_and_comms(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    prog = vdrgn.program(X86_SAMPLE)
    assert main(["ps", "--json", str(X86_SAMPLE)]) == 0
    ps = json.loads(capsys.readouterr().out)["tasks"]
    assert sorted((t["pid"], t["comm"]) for t in ps if not t["idle"]) == \
        sorted((t.pid.value_(), t.comm.string_().decode()) for t in for_each_task(prog))


def test_globals_match_drgn_misc(dump: tuple[Any, Path, str]) -> None:
    prog, exp, prefix = dump
    facts = dict(line.split("=", 1) for line in
                 _expected(exp, prefix, "misc.txt").read_text().splitlines() if "=" in line)
    ours = {
        "uts_release": lambda: prog["init_uts_ns"].name.release.string_().decode(),
        "jiffies": lambda: str(prog["jiffies"].value_()),
        "init_task": lambda: hex(prog["init_task"].address_),
        "nr_threads": lambda: str(prog["nr_threads"].value_()),
        "totalram_pages": lambda: str(prog["_totalram_pages"].counter.value_()),
        "panic_cpu": lambda: str(prog["panic_cpu"].counter.value_()),
        "nr_cpu_ids": lambda: str(prog["nr_cpu_ids"].value_()),
    }
    checked = [k for k in facts if k in ours]
    assert checked
    for k in checked:
        assert ours[k]() == facts[k], k


def test_modules_match_drgn(dump: tuple[Any, Path, str]) -> None:
    prog, exp, prefix = dump
    lines = _expected(exp, prefix, "modules.tsv").read_text().splitlines()
    want = {tuple(line.split("\t")[:3]) for line in lines[1:]}
    got = {(m.name.string_().decode(), hex(m.core_layout.base.value_()),
            str(m.core_layout.size.value_())) for m in for_each_module(prog)}
    assert got == want


def test_dmesg_matches_drgn(dump: tuple[Any, Path, str]) -> None:
    prog, exp, prefix = dump
    want = _expected(exp, prefix, "dmesg.txt").read_bytes()
    assert get_dmesg(prog) == want


def test_module_types_from_module_btf(dump: tuple[Any, Path, str]) -> None:
    """Every struct a loaded module's BTF defines is a drgn type, with the same layout."""
    from vmcorekit.program.types import BtfKind
    prog, _, _ = dump
    reg = vdrgn.vmcorekit_program(prog).types
    reg.load_modules()
    checked = 0
    for src in reg.sources[1:]:
        for tid in src.btf.ids_of_kind(BtfKind.STRUCT):
            name = src.btf.type(tid).name
            if not name:
                continue
            ours = reg.lookup(f"struct {name}")
            t = prog.type(f"struct {name}")
            assert t.size == ours.sizeof()
            assert [(m.name, m.bit_offset) for m in t.members] == \
                [(m.name, m.bit_offset) for m in ours.members]
            checked += 1
    if not checked:
        pytest.skip("no loaded module brings BTF structs in this dump")


_FRAME = re.compile(r"^#\d+\s+([A-Za-z_][\w.]*)")


def _names(trace: Any) -> list[str]:
    out = []
    for f in trace:
        try:
            out.append(f.symbol().name)
        except LookupError:
            out.append(hex(f.pc))
    return out


def test_crashed_thread_stack(dump: tuple[Any, Path, str]) -> None:
    prog, exp, prefix = dump
    text = _expected(exp, prefix, "crashed-thread.txt").read_text()
    pid = int(re.search(r"\bpid (\d+)", text).group(1))  # type: ignore[union-attr]
    # drgn finds the panicking task itself (its registers it cannot have: no CPU notes).
    assert prog.crashed_thread().tid == pid
    task = vdrgn.crashed_thread(prog)
    assert task.pid.value_() == pid
    got = _names(vdrgn.stack_trace(prog))
    assert got == _names(vdrgn.stack_trace(prog, prog.crashed_thread()))
    # The same functions as vmcorekit's bt ...
    vp = vdrgn.vmcorekit_program(prog)
    bt = [f.function for f in stacks.stack_trace(vp).frames]
    assert [n for n in got if not n.startswith("0x")] == bt
    # ... and as drgn with debuginfo, whose list also has inlined frames and whose ELF symbols
    # (with sizes) call the syscall entry by its start, where kallsyms has a label inside it.
    want = [m.group(1) for line in text.splitlines() if (m := _FRAME.match(line))]
    # GCC's clones (.cold, .constprop.0, .isra.0) are the function DWARF names
    kernel = [n.split(".")[0] for n in got if not n.startswith("0x")]
    pos = 0
    for n in kernel:
        while pos < len(want) and not _same_function(n, want[pos]):
            pos += 1
        assert pos < len(want), f"{n} of {kernel} not in order in {want}"
        pos += 1
    assert len(kernel) >= 8


def _vk_list_names(vp: Program) -> list[str]:
    """slab cache names by vmcorekit's own objects and list walk: an independent reading."""
    head = vp["slab_caches"]
    off = vp.offsetof("struct kmem_cache", "list")
    out = []
    for node in lists.list_for_each(head):
        cache = vp.object("struct kmem_cache", node.value_() - off)
        out.append(cache.name.string_().decode())
    return out


def test_slab_caches_match_vmcorekit(dump: tuple[Any, Path, str]) -> None:
    prog, _, _ = dump
    vp = vdrgn.vmcorekit_program(prog)
    if vp.try_symbol_address("slab_caches") is None:
        pytest.skip("this kernel's kallsyms has no data symbols and slab_caches is not recovered")
    names = [c.name.string_().decode() for c in for_each_slab_cache(prog)]
    assert names and names == _vk_list_names(vp)


def _vk_path(vp: Program, path: Any) -> str:
    """prepend_path() with vmcorekit's objects: dentries up to the mount's root, then across
    to the mount point in the parent mount, until the root mount."""
    mnt_off = vp.offsetof("struct mount", "mnt")
    mnt = vp.object("struct mount", path.mnt.value_() - mnt_off)
    dentry = path.dentry
    parts: list[bytes] = []
    for _ in range(4096):
        if dentry.value_() == mnt.mnt.mnt_root.value_():
            parent = mnt.mnt_parent
            if parent.value_() == mnt.address_:
                break
            dentry = mnt.mnt_mountpoint
            mnt = parent[0]
            continue
        parts.append(dentry.d_name.name.string_())
        dentry = dentry.d_parent
    return "/" + "/".join(p.decode(errors="replace") for p in reversed(parts))


def test_d_path_matches_vmcorekit(dump: tuple[Any, Path, str]) -> None:
    prog, _, _ = dump
    vp = vdrgn.vmcorekit_program(prog)
    exes = set()
    for t in for_each_task(prog):
        vt = vp.object("struct task_struct", t.value_())
        if t.fs:
            assert d_path(t.fs.pwd.address_of_()).decode() == _vk_path(vp, vt.fs.pwd)
        if t.mm and t.mm.exe_file:
            exe = d_path(t.mm.exe_file.f_path.address_of_()).decode()
            assert exe == _vk_path(vp, vt.mm.exe_file.f_path)
            exes.add(exe)
    assert exes  # user tasks exist in every dump here
    init = find_task(prog, 1)
    assert d_path(init.mm.exe_file.f_path.address_of_()).startswith(b"/")


@pytest.mark.skipif(not os.environ.get("VMCOREKIT_DRGN_VMLINUX"),
                    reason="set VMCOREKIT_DRGN_VMLINUX to a vmlinux with DWARF of the x86_64 sample")
def test_same_answers_as_drgn_with_debuginfo() -> None:
    """Side by side on the x86_64 sample: drgn with the vmlinux's DWARF vs drgn with the dump's
    own kallsyms and BTF: tasks, slab caches, d_path of every task, every task's stack."""
    ref = drgn.Program()
    ref.set_core_dump(str(X86_SAMPLE))
    ref.load_debug_info([os.environ["VMCOREKIT_DRGN_VMLINUX"]])
    prog = vdrgn.program(X86_SAMPLE)

    def facts(p: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "slabs": [c.name.string_() for c in for_each_slab_cache(p)],
            "online": list(for_each_online_cpu(p)), "totalram": totalram_pages(p),
            "runqueues": [per_cpu(p["runqueues"], c).nr_running.value_()
                          for c in for_each_possible_cpu(p)],
            "modules": [(m.name.string_(), m.core_layout.base.value_()) for m in for_each_module(p)],
        }
        for t in for_each_task(p):
            paths = (d_path(t.fs.pwd.address_of_()) if t.fs else None,
                     d_path(t.mm.exe_file.f_path.address_of_()) if t.mm and t.mm.exe_file else None)
            out[t.pid.value_()] = (t.comm.string_(), t.value_(), paths)
        return out

    assert facts(prog) == facts(ref)
    for t in for_each_task(ref):
        want = [n for n in _names(f for f in ref.stack_trace(t) if not f.is_inline)
                if not n.startswith("0x")]
        got = [n for n in _names(vdrgn.stack_trace(prog, t.value_())) if not n.startswith("0x")]
        assert len(got) == len(want) and all(map(_same_function, got, want)), (got, want)


def _same_function(kallsyms_name: str, elf_name: str) -> bool:
    """kallsyms keeps labels ELF symbols do not (entry_SYSCALL_64_after_hwframe inside
    entry_SYSCALL_64): the label names the same code."""
    return kallsyms_name == elf_name or kallsyms_name.startswith(elf_name + "_")


def test_missing_drgn_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "drgn", None)  # import drgn now raises ImportError
    with pytest.raises(DrgnUnavailableError, match=r"vmcorekit\[drgn\]"):
        vdrgn.program(X86_SAMPLE)
    assert main(["drgn", str(X86_SAMPLE)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vmcorekit: error: drgn is not installed")


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent / "src"))
    return subprocess.run([sys.executable, "-m", "vmcorekit", "drgn", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_runs_a_script_with_prog_and_args(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text(
        "import sys\n"
        "from drgn.helpers.linux.pid import for_each_task\n"
        "import vmcorekit.drgn\n"
        "print(sys.argv[1:], len(list(for_each_task(prog))))\n"
        "print(vmcorekit.drgn.stack_trace(prog)[0].symbol().name)\n"
        "sys.exit(int(sys.argv[2]))\n")
    with Program.open(X86_SAMPLE) as vp:
        n = sum(1 for r in tasks.task_table(vp) if not r.idle)
        top = stacks.stack_trace(vp).frames[0].function
    # options after SCRIPT are the script's, even those vmcorekit drgn has itself
    r = _cli(str(X86_SAMPLE), str(script), "--help", "7", "--vmcoreinfo")
    assert r.returncode == 7, r.stderr
    assert r.stdout.splitlines() == [f"['--help', '7', '--vmcoreinfo'] {n}", top]


def test_cli_script_error_and_repl(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("prog['no_such_symbol_anywhere']\n")
    r = _cli(str(X86_SAMPLE), str(bad))
    assert r.returncode == 1
    assert "ObjectNotFoundError" in r.stderr and "no_such_symbol_anywhere" in r.stderr
    r = _cli(str(X86_SAMPLE), stdin="print('release', prog['UTS_RELEASE'].string_().decode())\n")
    assert r.returncode == 0, r.stderr
    with Program.open(X86_SAMPLE) as vp:
        release = vp.vmcoreinfo.osrelease
    assert f"release {release}" in r.stdout


# -- the type conversion on crafted BTF ------------------------------------------------------------
def _crafted_registry(cycle: bool = False) -> Any:
    from btfgen import BtfBuilder
    from vmcorekit.program.types import Btf, registry_from_btf
    b = BtfBuilder()
    u32 = b.int("unsigned int", 4)
    s32 = b.int("int", 4, signed=True)
    char = b.int("char", 1, signed=True, char=True)
    node = b.forward()
    pnode = b.ptr(node)
    cnode = b.qual("const", node)
    pcnode = b.ptr(cnode)
    arr = b.array(char, 16, u32)
    color = b.enum("color", 4, [("RED", 0), ("GREEN", 1), ("BLUE", -1)], signed=True)
    fn = b.func_proto(s32, [("n", pnode), ("flags", u32)])
    pfn = b.ptr(fn)
    fwd = b.fwd("later")  # only declared here ...
    pfwd = b.ptr(fwd)
    inner = b.union("", 4, [("i", s32, 0), ("u", u32, 0)])
    b.fill(node, b.compound_rec("struct", "node", 64, [
        ("next", pnode, 0), ("prev", pcnode, 64), ("name", arr, 128), ("c", color, 256),
        ("lo", u32, 288, 3), ("hi", u32, 291, 5), ("", inner, 320), ("cb", pfn, 384),
        ("l", pfwd, 448)]))
    b.struct("later", 4, [("x", s32, 0)])  # ... and defined further on
    b.typedef("node_t", node)
    if cycle:  # a damaged blob: a typedef that names itself
        loop = b.forward()
        b.fill(loop, b.head("loop_t", "typedef", size_type=loop))
    return registry_from_btf(Btf(b.build(), name="crafted"))


def _converter(reg: Any) -> Any:
    prog = drgn.Program(drgn.Platform(drgn.Architecture.X86_64,
                                      drgn.PlatformFlags.IS_64_BIT
                                      | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
    conv = vdrgn._TypeConverter(drgn, prog, lambda: reg)
    prog.register_type_finder("crafted", conv.find, enable_index=0)
    return prog


def test_btf_types_become_drgn_types() -> None:
    prog = _converter(_crafted_registry())
    t = prog.type("struct node")
    assert t.size == 64
    assert [m.name for m in t.members] == ["next", "prev", "name", "c", "lo", "hi", None, "cb", "l"]
    # the cycle through a pointer resolves lazily, as deep as one follows it
    assert t.member("next").type.type.member("next").type.type.member("name").offset == 16
    assert t.member("prev").type.type.qualifiers == drgn.Qualifiers.CONST
    assert str(t.member("name").type) == "char [16]"
    lo, hi = t.member("lo"), t.member("hi")
    assert (lo.bit_offset, lo.bit_field_size, hi.bit_offset, hi.bit_field_size) == (288, 3, 291, 5)
    assert t.has_member("u") and t.member("u").offset == 40  # through the anonymous union
    cb = t.member("cb").type.type
    assert cb.kind == drgn.TypeKind.FUNCTION
    assert [(p.name, str(p.type)) for p in cb.parameters] == [("n", "struct node *"),
                                                              ("flags", "unsigned int")]
    assert t.member("l").type.type.members[0].name == "x"  # the forward resolved to its definition
    e = prog.type("enum color")
    assert [(x.name, x.value) for x in e.enumerators] == [("RED", 0), ("GREEN", 1), ("BLUE", -1)]
    assert prog.type("node_t").type.tag == "node"
    # Values decode through drgn with these types.
    data = bytearray(64)
    data[36:40] = ((5 << 3) | 6).to_bytes(4, "little")
    data[40:44] = (-2).to_bytes(4, "little", signed=True)
    obj = drgn.Object.from_bytes_(prog, t, bytes(data))
    assert (obj.lo.value_(), obj.hi.value_(), obj.i.value_()) == (6, 5, -2)
    with pytest.raises(LookupError):
        prog.type("struct absent")


def test_btf_typedef_cycle_is_an_error_not_a_recursion() -> None:
    prog = _converter(_crafted_registry(cycle=True))
    with pytest.raises(LookupError, match="too deep|cycle"):
        prog.type("loop_t")
