"""Symbols from the real corpus dumps, with no debuginfo, against VMCOREINFO, the peer tools'
outputs in expected/, and (when installed) the -dbg vmlinux's ELF symtab and modules."""
from __future__ import annotations

import random
import re
import time
from pathlib import Path

import pytest

from vmcorekit.errors import DumpFormatError
from vmcorekit.program import Program
from vmcorekit.program.symbols import SymbolTable, kernel_symbols

pytestmark = pytest.mark.corpus

DBG = Path("/usr/lib/debug")
VMLINUX = DBG / "boot" / "vmlinux-6.1.0-56-amd64"
SYSTEM_MAP = DBG / "boot" / "System.map-6.1.0-56-amd64"
MODULE_DBG = DBG / "lib" / "modules" / "6.1.0-56-amd64"


@pytest.fixture(scope="module")
def loaded(corpus_case: Path, corpus_elf: Path):  # type: ignore[no-untyped-def]
    prog = Program.open(corpus_elf)
    t0 = time.perf_counter()
    table = prog.symbols
    table.load_deferred()
    seconds = time.perf_counter() - t0
    yield corpus_case, prog, table, seconds
    prog.close()


@pytest.fixture(scope="session")
def elf_symtab() -> dict[str, list[tuple[int, str, int]]]:
    """name -> [(st_value, type, st_size)] straight from pyelftools, link-time addresses."""
    if not VMLINUX.exists():
        pytest.skip(f"{VMLINUX} not installed (apt-get install linux-image-6.1.0-56-amd64-dbg)")
    from elftools.elf.elffile import ELFFile

    out: dict[str, list[tuple[int, str, int]]] = {}
    with open(VMLINUX, "rb") as f:
        elf = ELFFile(f)
        for s in elf.get_section_by_name(".symtab").iter_symbols():
            if s.name and s["st_shndx"] != "SHN_UNDEF" and s["st_info"]["type"] not in ("STT_FILE", "STT_SECTION"):
                out.setdefault(s.name, []).append((s["st_value"], s["st_info"]["type"], s["st_size"]))
    return out


def expected(case: Path, rel: str) -> str:
    p = case / "expected" / rel
    if not p.exists():
        pytest.skip(f"{p} absent")
    return p.read_text(errors="replace")


# -- always available: VMCOREINFO and the peer tools' outputs --------------------------------------
def test_decode_time_and_source(loaded) -> None:  # type: ignore[no-untyped-def]
    case, prog, table, seconds = loaded
    assert table.source.startswith("kallsyms (")
    assert table.problems == []
    print(f"\n{case.name}: {len(table)} symbols ({table.source}) in {seconds:.3f}s")
    assert seconds < 3.0  # ~0.1-0.3 s on the 2-core test host; generous for a loaded machine


def test_vmcoreinfo_symbols_agree(loaded) -> None:  # type: ignore[no-untyped-def]
    _, prog, table, _ = loaded
    vi = prog.vmcoreinfo.symbols
    assert table.address_of("_stext") == vi["_stext"]
    assert table.address_of("init_uts_ns") == vi["init_uts_ns"]
    checked, wrong = 0, []
    for name, addr in vi.items():
        if name.startswith("kallsyms_") or name not in table:
            continue
        checked += 1
        if addr not in {s.address for s in table.symbols_named(name)}:
            wrong.append(name)
    # SYMBOL(mem_section) is the pointer's value (VMCOREINFO_SYMBOL_ARRAY), not its address.
    assert set(wrong) <= {"mem_section"}
    assert checked >= 6


def test_symbol_count_matches_drgn(loaded) -> None:  # type: ignore[no-untyped-def]
    case, _, table, _ = loaded
    m = re.search(r"number of symbols -> (\d+)", expected(case, "drgn/no-debuginfo.txt"))
    assert m, "drgn's no-debuginfo output lacks the symbol count"
    names, addrs, sizes, types, mods = table.arrays()
    assert int((mods < 0).sum()) == int(m.group(1))


def test_init_task_and_panic(loaded) -> None:  # type: ignore[no-untyped-def]
    case, _, table, _ = loaded
    m = re.search(r"init_task=0x([0-9a-f]+)", expected(case, "drgn/misc.txt"))
    assert table.address_of("init_task") == int(m.group(1), 16)
    m = re.search(r"\(panic\+0x10\) -> Symbol\(name='panic', address=0x([0-9a-f]+), size=0x([0-9a-f]+)",
                  expected(case, "drgn/no-debuginfo.txt"))
    s = table.lookup(int(m.group(1), 16) + 0x10)
    assert (s.name, s.address, s.size) == ("panic", int(m.group(1), 16), int(m.group(2), 16))


def test_sym_command_matches_crash(loaded) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from vmcorekit.cli.main import cli

    case, prog, _, _ = loaded
    want = expected(case, "crash/sym-init_task.txt")
    r = CliRunner().invoke(cli, ["sym", str(prog.phys.path), "init_task"])
    assert r.exit_code == 0, r.output
    assert r.output.rstrip("\n") == want.rstrip("\n")


def test_crash_backtrace_frames_resolve(loaded) -> None:  # type: ignore[no-untyped-def]
    """Every `#N [sp] func at addr [module]` of crash's bt -a / foreach bt (crash used the
    debuginfo vmlinux) names the symbol we find at that address."""
    case, _, table, _ = loaded
    n = 0
    for f in ("crash/bt-a.txt", "crash/foreach-bt.txt"):
        for line in expected(case, f).splitlines():
            m = re.match(r"\s*#\d+ \[[0-9a-f]+\] (\S+) at ([0-9a-f]+)(?: \[(\S+)\])?", line)
            if m:
                s = table.lookup(int(m.group(2), 16))
                assert s is not None and (s.name, s.module) == (m.group(1), m.group(3)), line
                n += 1
    assert n >= 10


def test_drgn_stack_frames_resolve(loaded) -> None:  # type: ignore[no-untyped-def]
    """drgn names frames from DWARF: a `.cold`/`.isra` clone carries its parent's name and an
    asm label inside a function the function's; otherwise the names must be ours."""
    case, _, table, _ = loaded
    exact = loose = 0
    for line in expected(case, "drgn/all-stacks.txt").splitlines():
        m = re.match(r"\s+#\d+ (\S+) pc=0x([0-9a-f]+)$", line)
        if not m or m.group(1).startswith("0x"):
            continue
        fn, pc = m.group(1), int(m.group(2), 16)
        s = table.lookup(pc)
        assert s is not None, line
        if s.name == fn:
            exact += 1
            continue
        starts = [x.address for x in table.symbols_named(fn)]
        assert s.name.split(".")[0] == fn or any(a <= s.address <= pc for a in starts), line
        loose += 1
    assert exact > 10 * loose


def test_modules_match_drgn_and_crash(loaded) -> None:  # type: ignore[no-untyped-def]
    case, _, table, _ = loaded
    rows = [ln.split("\t") for ln in expected(case, "drgn/modules.tsv").splitlines()[1:] if ln]
    ranges = {name: (int(base, 16), int(size)) for name, base, size in rows}
    assert sorted(table.modules()) == sorted(ranges)
    names, addrs, sizes, types, mods = table.arrays()
    for k, mod in enumerate(table.module_names):
        base, size = ranges[mod]
        a = addrs[mods == k]
        assert len(a) > 5
        assert ((a >= base) & (a < base + size)).all(), mod
    # crash's MODULE column is the struct module, which is the module's __this_module
    for line in expected(case, "crash/mod.txt").splitlines()[1:]:
        parts = line.split()
        assert table.address_of(f"{parts[1]}:__this_module") == int(parts[0], 16)


def test_module_layout_from_btf_matches_the_memory_probe(loaded) -> None:  # type: ignore[no-untyped-def]
    """Module symbols are read with struct module offsets from prog.types (BTF); the probe that
    stands in without BTF must find the same offsets."""
    import dataclasses

    from vmcorekit.program.symbols.modules import layout_from_types, probe_layout

    _, prog, table, _ = loaded
    try:
        types = prog.types
    except ImportError as e:
        pytest.skip(f"types unavailable: {e}")
    if getattr(types, "kind", None) == "vmcoreinfo":
        pytest.skip("no BTF in this dump")
    assert "layout from types" in table.source
    a = layout_from_types(types)
    first = prog.read_u64(table.address_of("modules"))
    b = probe_layout(prog.read, first - 8)
    assert dataclasses.replace(a, source="") == dataclasses.replace(b, source="")


def test_kdump_compressed_dump_gives_the_same_symbols(loaded) -> None:  # type: ignore[no-untyped-def]
    case, _, table, _ = loaded
    path = case / "vmcore.c-d31.kdump"
    if not path.exists():
        pytest.skip("no makedumpfile output")
    try:
        prog = Program.open(path)
    except DumpFormatError as e:
        pytest.skip(f"kdump reader: {e}")
    with prog:
        other = prog.symbols
        other.load_deferred()
        a, b = table.arrays(), other.arrays()
        assert a[0] == b[0] and (a[1] == b[1]).all() and a[3] == b[3]
        assert other.module_names == table.module_names


# -- with the -dbg package -------------------------------------------------------------------------
def test_sample_against_vmlinux_symtab(loaded, elf_symtab) -> None:  # type: ignore[no-untyped-def]
    """5000 random vmlinux symbols: an ELF symbol of that name sits at our address minus
    KERNELOFFSET (per-CPU offsets are not moved)."""
    _, prog, table, _ = loaded
    shift = prog.vmcoreinfo.kerneloffset
    names, addrs, sizes, types, mods = table.arrays()
    idx = [i for i in range(len(names)) if mods[i] < 0]
    sample = random.Random(4).sample(idx, 5000)
    missing, wrong = [], []
    for i in sample:
        cands = elf_symtab.get(names[i])
        if not cands:
            missing.append(names[i])
            continue
        a = int(addrs[i])
        if not any(v == a or v + shift == a for v, _, _ in cands):
            wrong.append((names[i], hex(a), [hex(v) for v, _, _ in cands]))
    assert not wrong
    assert not missing


def test_function_sizes_cover_elf_sizes(loaded, elf_symtab) -> None:  # type: ignore[no-untyped-def]
    """kallsyms has no sizes: the distance to the next symbol is at least the function's
    ELF st_size, and only alignment padding longer."""
    _, prog, table, _ = loaded
    shift = prog.vmcoreinfo.kerneloffset
    checked = 0
    for name in ("panic", "schedule", "__schedule", "do_syscall_64", "vfs_write", "kmalloc_trace"):
        s = table.get(name)
        cands = [c for c in elf_symtab.get(name, []) if c[0] + shift == s.address and c[1] == "STT_FUNC"]
        if cands:
            st_size = cands[0][2]
            assert st_size <= s.size < st_size + 64, (name, s.size, st_size)
            checked += 1
    assert checked >= 4


def test_kallsyms_equals_system_map(loaded) -> None:  # type: ignore[no-untyped-def]
    """Every (name, address) kallsyms has is in System.map, shifted; through kernel_symbols'
    own System.map path too."""
    if not SYSTEM_MAP.exists():
        pytest.skip(f"{SYSTEM_MAP} not installed")
    _, prog, table, _ = loaded
    shift = prog.vmcoreinfo.kerneloffset
    pairs = set()
    for line in SYSTEM_MAP.read_text().splitlines():
        a, t, n = line.split()[:3]
        v = int(a, 16)
        pairs.add((n, v))
        pairs.add((n, v + shift))
    names, addrs, sizes, types, mods = table.arrays()
    ours = {(n, int(a)) for n, a, m in zip(names, addrs.tolist(), mods.tolist()) if m < 0}
    assert ours <= pairs
    via_map = kernel_symbols(prog, system_map=SYSTEM_MAP, modules=False)
    for name in ("init_task", "panic", "modules", "runqueues", "jiffies", "_end"):
        assert via_map.address_of(name) == table.address_of(name)


def test_module_symbols_against_ko_files(loaded) -> None:  # type: ignore[no-untyped-def]
    """Within one .ko section, symbol offsets are fixed: our addresses minus the .ko st_value
    must be one constant per (module, section)."""
    if not MODULE_DBG.exists():
        pytest.skip(f"{MODULE_DBG} not installed")
    from elftools.elf.elffile import ELFFile

    _, _, table, _ = loaded
    for mod in table.modules():
        ko = next(MODULE_DBG.rglob(f"{mod}.ko"), None)
        if ko is None:
            continue
        with open(ko, "rb") as f:
            elf = ELFFile(f)
            bias: dict[int, set[int]] = {}
            seen = 0
            for s in elf.get_section_by_name(".symtab").iter_symbols():
                if not isinstance(s["st_shndx"], int) or not s.name or s["st_info"]["type"] != "STT_FUNC":
                    continue
                ours = [x for x in table.symbols_named(s.name) if x.module == mod]
                if len(ours) == 1:
                    bias.setdefault(s["st_shndx"], set()).add(ours[0].address - s["st_value"])
                    seen += 1
        assert seen >= 2, mod
        assert all(len(b) == 1 for b in bias.values()), (mod, bias)


def test_vmlinux_path_matches_kallsyms(loaded) -> None:  # type: ignore[no-untyped-def]
    if not VMLINUX.exists():
        pytest.skip(f"{VMLINUX} not installed")
    _, prog, table, _ = loaded
    t = kernel_symbols(prog, vmlinux=VMLINUX, modules=False)
    assert isinstance(t, SymbolTable)
    for name in ("init_task", "panic", "modules", "init_uts_ns", "_stext"):
        assert t.address_of(name) == table.address_of(name)
