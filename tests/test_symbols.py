"""Symbols from synthetic kallsyms tables, module structs, System.map and vmlinux ELF files."""
from __future__ import annotations

import struct

import numpy as np
import pytest

import kallsymsgen as G
from vmcorekit.cli.sym import resolve
from vmcorekit.errors import CorruptKernelDataError, MemoryReadError, SymbolError, TypeLookupError
from vmcorekit.program.symbols import Symbol, SymbolTable, kernel_symbols
from vmcorekit.program.symbols.kallsyms import read_kallsyms
from vmcorekit.program.symbols.modules import ModuleLayout, module_symbols, probe_layout

X86_PERCPU = G.sample_symbols(300, percpu=12)
PLAIN = G.sample_symbols(300, percpu=0)


def decoded(k):  # type: ignore[no-untyped-def]
    return list(zip(k.names, k.types.decode(), k.addresses.tolist()))


def expected(img):  # type: ignore[no-untyped-def]
    return [(s.name, s.type, s.address) for s in img.syms]


# -- kallsyms encodings ----------------------------------------------------------------------------
@pytest.mark.parametrize("encoding,syms", [
    ("absolute", X86_PERCPU), ("absolute", PLAIN),
    ("base-relative", PLAIN),
    ("base-relative-percpu", X86_PERCPU),
    ("pc-relative", PLAIN),
])
def test_each_address_encoding_decodes(encoding: str, syms: list[G.KSym]) -> None:
    img = G.build_kallsyms(syms, encoding)
    k = read_kallsyms(img.mem.read, img.symbols)
    assert k.encoding == encoding
    assert decoded(k) == expected(img)


@pytest.mark.parametrize("encoding", ["base-relative", "base-relative-percpu"])
def test_relative_encodings_are_told_apart_by_vmcoreinfo_anchors(encoding: str) -> None:
    syms = X86_PERCPU if encoding.endswith("percpu") else PLAIN
    img = G.build_kallsyms(syms, encoding)
    anchors = {"init_uts_ns": G.DATA + 0x3000, "_stext": G.TEXT}
    k = read_kallsyms(img.mem.read, {**img.symbols, **anchors})
    assert k.encoding == encoding
    assert sorted(k.anchors_matched) == ["_stext", "init_uts_ns"]


def test_u32_encoding_for_32_bit_kernels() -> None:
    syms = [G.KSym(0xC1000000 + 0x40 * i, "T", f"fn_{i}") for i in range(50)]
    syms.append(G.KSym(0xC1000000 + 0x4000, "D", "init_uts_ns"))
    img = G.build_kallsyms(syms, "u32", pointer_size=4, base=0xC1800000)
    k = read_kallsyms(img.mem.read, {**img.symbols, "init_uts_ns": 0xC1004000}, pointer_size=4)
    assert k.encoding == "u32"
    assert decoded(k) == expected(img)


@pytest.mark.parametrize("encoding", ["base-relative", "pc-relative", "absolute"])
def test_big_endian_tables(encoding: str) -> None:
    img = G.build_kallsyms(PLAIN, encoding, endian=">")
    k = read_kallsyms(img.mem.read, img.symbols, byteorder="big")
    assert k.encoding == encoding
    assert decoded(k) == expected(img)


def test_absolute_32_bit_addresses() -> None:
    syms = [G.KSym(0xC1000000 + 0x40 * i, "t", f"f{i}") for i in range(40)]
    img = G.build_kallsyms(syms, "absolute", pointer_size=4, base=0xC1800000)
    k = read_kallsyms(img.mem.read, img.symbols, pointer_size=4)
    assert decoded(k) == expected(img)


def test_two_byte_name_lengths() -> None:
    """6.1+: a compressed length >= 0x80 takes two ULEB128 bytes."""
    import random

    rnd = random.Random(7)
    long_names = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789_") for _ in range(n))
                  for n in (130, 300, 511)]
    syms = list(PLAIN[:20]) + [G.KSym(G.TEXT + 0x200000 + 0x100 * i, "t", nm)
                               for i, nm in enumerate(long_names)]
    img = G.build_kallsyms(syms, "base-relative")
    first_len = img.mem.read(img.names_addr, 1)[0]
    assert first_len < 0x80
    k = read_kallsyms(img.mem.read, img.symbols)
    assert decoded(k) == expected(img)
    assert set(long_names) <= set(k.names)


def test_type_character_is_the_first_expanded_character() -> None:
    img = G.build_kallsyms(PLAIN, "base-relative")
    k = read_kallsyms(img.mem.read, img.symbols)
    d = dict(zip(k.names, k.types.decode()))
    assert d["init_task"] == "D" and d["_end"] == "B" and d["panic"] == "T"


def test_compression_is_real() -> None:
    """The builder's tables really use multi-character tokens (else decoding is not tested)."""
    img = G.build_kallsyms(PLAIN, "base-relative")
    raw = sum(len(s.name) + 2 for s in PLAIN)
    index = struct.unpack("<256H", img.mem.read(img.symbols["kallsyms_token_index"], 512))
    assert len(set(index)) > 100
    assert img.names_size < 0.7 * raw


# -- kallsyms failure modes ------------------------------------------------------------------------
def test_missing_vmcoreinfo_symbols_is_a_symbol_error() -> None:
    img = G.build_kallsyms(PLAIN, "base-relative")
    syms = dict(img.symbols)
    del syms["kallsyms_token_index"]
    with pytest.raises(SymbolError, match="kallsyms_token_index"):
        read_kallsyms(img.mem.read, syms)
    del syms["kallsyms_offsets"]
    with pytest.raises(SymbolError, match="kallsyms_offsets or kallsyms_addresses"):
        read_kallsyms(img.mem.read, syms)


@pytest.mark.parametrize("count", [0, 10_000_001, 0xFFFFFFFF])
def test_absurd_symbol_count_is_rejected(count: int) -> None:
    img = G.build_kallsyms(PLAIN, "base-relative")
    img.mem.write(img.symbols["kallsyms_num_syms"], struct.pack("<I", count))
    with pytest.raises(CorruptKernelDataError, match="kallsyms_num_syms"):
        read_kallsyms(img.mem.read, img.symbols)


def test_count_larger_than_the_tables_allow() -> None:
    img = G.build_kallsyms(PLAIN, "base-relative")
    img.mem.write(img.symbols["kallsyms_num_syms"], struct.pack("<I", 5_000_000))
    with pytest.raises(CorruptKernelDataError, match="more than the .* bytes of kallsyms_names"):
        read_kallsyms(img.mem.read, img.symbols)
    # a count that fits the span but not the records: the walk runs into the token table
    img.mem.write(img.symbols["kallsyms_num_syms"], struct.pack("<I", len(PLAIN) + 40))
    with pytest.raises((CorruptKernelDataError, MemoryReadError)):
        read_kallsyms(img.mem.read, img.symbols)


def test_zero_length_record_is_corrupt() -> None:
    img = G.build_kallsyms(PLAIN, "base-relative")
    img.mem.write(img.names_addr, b"\0")
    with pytest.raises(CorruptKernelDataError, match="length zero"):
        read_kallsyms(img.mem.read, img.symbols)


def test_names_in_a_hole_raise_memory_read_error() -> None:
    img = G.build_kallsyms(PLAIN, "base-relative")
    with pytest.raises(MemoryReadError):
        read_kallsyms(img.mem.read, {**img.symbols, "kallsyms_names": 0xFFFF888000000000})


def test_garbage_offsets_are_reported_not_guessed() -> None:
    img = G.build_kallsyms(PLAIN, "base-relative")
    rnd = np.random.default_rng(3).integers(0, 2**32, len(PLAIN), dtype=np.uint64)
    img.mem.write(img.offsets_addr, rnd.astype("<u4").tobytes())
    with pytest.raises(CorruptKernelDataError, match="do not decode consistently"):
        read_kallsyms(img.mem.read, img.symbols)


# -- SymbolTable -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def table() -> SymbolTable:
    img = G.build_kallsyms(X86_PERCPU, "base-relative-percpu")
    return kernel_symbols(img.program(), modules=False)


def test_lookup_size_is_distance_to_next_symbol(table: SymbolTable) -> None:
    p = table.address_of("panic")
    s = table.lookup(p + 5)
    assert s == Symbol("panic", p, 0x300, "T", None)  # _etext follows at +0x300
    assert table.lookup(p + 0x2FF).name == "panic"
    assert table.lookup(p + 0x300).name == "_etext"
    assert table.format(p + 0x1F) == "panic+0x1f/0x300"


def test_aliases_resolve_to_the_first_in_kallsyms_order(table: SymbolTable) -> None:
    s = table.lookup(G.TEXT)
    assert s is not None and s.name == "_text"
    assert {x.name for x in table if x.address == G.TEXT} == {"_text", "_stext", "startup_64"}


def test_per_cpu_offsets_are_names_not_addresses(table: SymbolTable) -> None:
    assert table.address_of("fixed_percpu_data") == 0
    assert table.lookup(0) is None and table.lookup(0x1000) is None
    assert table.format(0x1000) == "0x1000"


def test_below_and_above_the_table(table: SymbolTable) -> None:
    assert table.lookup(G.TEXT - 1) is None
    end = table.address_of("_end")
    s = table.lookup(end)
    assert s is not None and s.name == "_end" and s.size == 0
    assert table.lookup(end + 1) is None
    assert table.lookup(-1) is None and table.lookup(1 << 64) is None


def test_duplicates_and_preference(table: SymbolTable) -> None:
    dups = table.symbols_named("dup_static")
    assert len(dups) == 3 and {d.type for d in dups} == {"t", "d"}
    assert table.address_of("dup_static") == dups[0].address
    assert table.symbols_named("no_such") == []
    with pytest.raises(SymbolError):
        table.address_of("no_such")
    assert "panic" in table and "no_such" not in table


def test_symbolize_and_size_of(table: SymbolTable) -> None:
    p = table.address_of("panic")
    assert table.symbolize(p) == "panic" and table.symbolize(p + 0x10) == "panic+0x10"
    assert table.symbolize(0x10) is None
    assert table.size_of("panic") == 0x300 and table.size_of("init_task") == 0x2640
    assert table.size_of("fixed_percpu_data") == 0x1000  # to the next per-CPU variable
    with pytest.raises(SymbolError):
        table.size_of("no_such")


def test_in_text(table: SymbolTable) -> None:
    assert table.in_text(table.address_of("panic") + 4)
    assert not table.in_text(table.address_of("init_task"))
    assert not table.in_text(0x1000)


def test_sym_cli_resolution(table: SymbolTable) -> None:
    p = table.address_of("panic")
    assert resolve(table, "init_task")[0]["line"] == f"{G.DATA:016x} (D) init_task"
    assert resolve(table, f"{p + 23:x}")[0]["line"] == f"{p + 23:016x} (T) panic+23"
    with pytest.raises(SymbolError):
        resolve(table, "zzz_not_hex")
    with pytest.raises(SymbolError):
        resolve(table, "0x10")


def test_lookups_are_fast(table: SymbolTable) -> None:
    import time

    addrs = [G.TEXT + int(x) for x in np.random.default_rng(0).integers(0, 0x10000, 2000)]
    t = time.perf_counter()
    for a in addrs:
        table.lookup(a)
    assert (time.perf_counter() - t) / len(addrs) < 200e-6


# -- modules ---------------------------------------------------------------------------------------
MODS = [
    ("loop", [G.ModSym("lo_open", G.MODULES + 0x3000, 0x40, "t"),
              G.ModSym("lo_release", G.MODULES + 0x3040, 0x80, "t"),
              G.ModSym("loop_exit", G.MODULES + 0x30C0, 0x20, "t"),
              G.ModSym("max_loop", G.MODULES + 0x4100, 4, "d"),
              G.ModSym("__this_module", G.MODULES, G.MODULE_SIZE, "d"),
              G.ModSym("$x", G.MODULES + 0x3000, 0, "t"),
              G.ModSym("undef_ref", 0, 0, "U", shndx=0)]),
    ("brd", [G.ModSym("brd_probe", G.MODULES + 0x9000, 0x1B, "t"),
             G.ModSym("panic", G.MODULES + 0x9100, 0x10, "t")]),
]


def program_with_modules(types: object | None = None, state: dict[str, int] | None = None,
                         typetab: bool = True):  # type: ignore[no-untyped-def]
    img = G.build_kallsyms(X86_PERCPU, "base-relative-percpu")
    head = next(s.address for s in img.syms if s.name == "modules")
    img.mem.map(head, b"\0" * 16)
    mods = [(n, [G.ModSym(s.name, s.value + (0x10000 if n == "brd" else 0), s.size, s.type, s.shndx)
                 for s in syms]) for n, syms in MODS]
    G.build_modules(img.mem, head, mods, state=state, typetab=typetab)
    return img.program(types_obj=types), head


@pytest.mark.parametrize("types", [None, G.FakeTypes()], ids=["probe", "types"])
def test_module_symbols(types: object | None) -> None:
    prog, _ = program_with_modules(types)
    t = kernel_symbols(prog)
    assert not t.complete
    s = t.lookup(G.MODULES + 0x3010)  # loads the deferred module symbols
    assert t.complete
    assert s == Symbol("lo_open", G.MODULES + 0x3000, 0x40, "t", "loop")
    assert t.format(G.MODULES + 0x3041) == "lo_release+0x1/0x80 [loop]"
    assert t.modules() == ["loop", "brd"]
    assert ("layout from types" if types else "layout from probe") in t.source
    # undefined and mapping symbols are skipped
    assert "undef_ref" not in t and "$x" not in t
    # vmlinux's global wins over a module's local of the same name; module:name reaches it
    assert t.address_of("panic") == next(s.address for s in X86_PERCPU if s.name == "panic")
    assert t.address_of("brd:panic") == G.MODULES + 0x19100
    assert {s.module for s in t.symbols_named("panic")} == {None, "brd"}
    assert [r["line"] for r in resolve(t, "brd:panic")] == [f"{G.MODULES + 0x19100:016x} (t) panic [brd]"]
    assert resolve(t, f"{G.MODULES + 0x19001:x}")[0]["line"].endswith("(t) brd_probe+1 [brd]")
    # the last text symbol keeps its st_size rather than running into the data
    assert t.lookup(G.MODULES + 0x30C0).size == 0x20
    assert t.lookup(G.MODULES + 0x3200) is None
    assert t.in_text(G.MODULES + 0x3001) and not t.in_text(G.MODULES + 0x4100)


def test_module_lookup_by_name_loads_modules() -> None:
    prog, _ = program_with_modules()
    t = kernel_symbols(prog)
    assert t.address_of("brd_probe") == G.MODULES + 0x19000


def test_unformed_modules_are_skipped() -> None:
    prog, _ = program_with_modules(state={"brd": 3})
    t = kernel_symbols(prog)
    assert t.modules() == ["loop"]


def test_types_without_typetab_use_st_info() -> None:
    prog, head = program_with_modules(G.FakeTypes(with_typetab=False), typetab=False)
    t = kernel_symbols(prog)
    s = t.get("lo_open")
    assert s is not None and s.module == "loop" and s.type == "t"
    assert t.get("max_loop").type == "d"


def test_types_without_struct_module_fall_back_to_probe() -> None:
    class NoStruct:
        def offsetof(self, *a: object) -> int:
            raise TypeLookupError("no BTF")

        def member(self, *a: object) -> object:
            raise TypeLookupError("no BTF")

    prog, _ = program_with_modules(NoStruct())
    t = kernel_symbols(prog)
    assert t.get("lo_open") is not None
    assert "probe" in t.source


def test_module_list_cycle_is_reported_not_endless() -> None:
    prog, head = program_with_modules()
    first = struct.unpack("<Q", prog.mem.read(head, 8))[0]
    # make the first module's next point to itself
    prog.mem.write(first, struct.pack("<Q", first))
    t = kernel_symbols(prog)
    assert t.lookup(G.MODULES + 0x3000) is None
    assert any("cycle" in p for p in t.problems)
    assert t.address_of("panic")  # vmlinux symbols still fine


def test_probe_rejects_a_struct_without_kallsyms() -> None:
    mem = G.FlatMemory()
    blob = bytearray(4096)
    blob[24:28] = b"fake"
    mem.map(G.MODULES, bytes(blob))
    with pytest.raises(CorruptKernelDataError, match="no pointer to its kallsyms"):
        probe_layout(mem.read, G.MODULES)


def test_module_symbols_with_explicit_layout() -> None:
    prog, head = program_with_modules()
    layout = ModuleLayout(8, 24, 56, G.KALLSYMS_PTR, 0, 8, 16, 24, source="given")
    t = module_symbols(prog, head, layout)
    assert len(t) == 7 and t.module_names == ["loop", "brd"]


# -- System.map and vmlinux ------------------------------------------------------------------------
SHIFT = 0x1B800000


def kaslr_program():  # type: ignore[no-untyped-def]
    """A KASLR'd kernel: run-time addresses = link-time + SHIFT (per-CPU offsets unmoved)."""
    moved = [G.KSym(s.address if s.percpu else s.address + SHIFT, s.type, s.name, s.percpu)
             for s in X86_PERCPU]
    img = G.build_kallsyms(moved, "base-relative-percpu", base=G.RODATA + SHIFT)
    vi = img.vmcoreinfo({"init_uts_ns": G.DATA + 0x3000 + SHIFT, "_stext": G.TEXT + SHIFT},
                        kerneloffset=SHIFT)
    return G.FakeProgram(img.mem, vi), moved


def test_system_map_is_shifted_by_kerneloffset(tmp_path) -> None:  # type: ignore[no-untyped-def]
    prog, moved = kaslr_program()
    f = tmp_path / "System.map"
    f.write_text(G.system_map(moved, shift=SHIFT))
    t = kernel_symbols(prog, system_map=f, modules=False)
    k = kernel_symbols(prog, modules=False)
    assert t.address_of("init_task") == G.DATA + SHIFT == k.address_of("init_task")
    assert t.address_of("fixed_percpu_data") == 0  # per-CPU offsets do not move
    names, addrs, *_ = k.arrays()
    assert all(t.address_of(n) == int(a) for n, a in zip(names, addrs) if n != "dup_static")


def test_system_map_for_another_kernel_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    prog, moved = kaslr_program()
    f = tmp_path / "System.map"
    f.write_text(G.system_map(moved, shift=SHIFT - 0x200000))
    with pytest.raises(SymbolError, match="does not match"):
        kernel_symbols(prog, system_map=f)


def test_bad_system_map_lines(tmp_path) -> None:  # type: ignore[no-untyped-def]
    prog, _ = kaslr_program()
    for text in ("ffffffff81000000 T\n", "zzzz T name\n", "", "ffffffff81000000 TT x\n"):
        f = tmp_path / "bad.map"
        f.write_text(text)
        with pytest.raises(SymbolError):
            kernel_symbols(prog, system_map=f)


def test_vmlinux_symtab(tmp_path) -> None:  # type: ignore[no-untyped-def]
    prog, moved = kaslr_program()
    f = tmp_path / "vmlinux"
    f.write_bytes(G.build_vmlinux(moved, shift=SHIFT))
    t = kernel_symbols(prog, vmlinux=f, modules=False)
    assert t.address_of("init_task") == G.DATA + SHIFT
    assert t.get("panic").type == "T" and t.get("init_task").type == "D"
    assert t.get("_end").type == "B" and t.get("dup_static").type == "t"
    assert "vmlinux.o" not in t  # file symbols are not symbols
    assert t.lookup(G.DATA + SHIFT + 4).name == "init_task"


def test_vmlinux_with_other_build_id_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    prog, moved = kaslr_program()
    prog.vmcoreinfo.entries["BUILD-ID"] = "ab" * 20
    f = tmp_path / "vmlinux"
    f.write_bytes(G.build_vmlinux(moved, shift=SHIFT))
    with pytest.raises(SymbolError, match="build ID"):
        kernel_symbols(prog, vmlinux=f)


def test_not_an_elf_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    prog, _ = kaslr_program()
    f = tmp_path / "vmlinux"
    f.write_bytes(b"not an elf at all" * 10)
    with pytest.raises(SymbolError):
        kernel_symbols(prog, vmlinux=f)
