"""The registry of dump formats (dump/registry.py): every entry carries its probe, its open and
its checks; files are recognised by their first bytes; a new format is its file plus one line."""
from __future__ import annotations

import gzip
import sys
import types
from pathlib import Path

import pytest

from elfgen import build_core, note
from fakes import DictMemory
from kdumpgen import build_kdump, flatten, page_pattern
from vmcorekit.dump import DumpFormat, DumpInfo, MemRange, PhysicalMemory, detect_format, open_dump, registry
from vmcorekit.dump.integrity import check_dump, damage_hint
from vmcorekit.errors import DumpFormatError

PS = 4096


def write(tmp_path: Path, data: bytes, name: str) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_every_format_has_probe_open_and_checks() -> None:
    fmts = list(registry.formats())
    assert [f.name for f in fmts] == ["elf", "kdump", "flattened", "wrapped"]
    for f in fmts:
        assert isinstance(f, DumpFormat) and callable(f.probe)
        if f.unwrap is None:  # a dump format, not a container
            assert callable(f.open) and callable(f.check) and callable(f.damage_hint) and f.readers, f.name
        else:
            assert f.open is None and f.check is None, f.name
        assert not f.probe(b"\0" * 16), f.name


def test_each_format_is_recognised_by_its_first_bytes(tmp_path: Path) -> None:
    kd = build_kdump({p: page_pattern(p) for p in range(8)}, max_mapnr=16).data
    elf = build_core([(0, 0, bytes(PS))], note(b"CORE", 1, bytes(336)))
    files = {"elf": write(tmp_path, elf, "a.core"), "kdump": write(tmp_path, kd, "a.elf"),
             "flattened": write(tmp_path, flatten(kd), "b"), "wrapped": write(tmp_path, gzip.compress(kd), "c")}
    for name, path in files.items():
        assert detect_format(path) == name
    with open_dump(files["elf"]) as phys:
        assert registry.format_of(phys).name == "elf"  # type: ignore[union-attr]
    for name in ("kdump", "flattened", "wrapped"):
        with open_dump(files[name]) as phys:
            assert registry.format_of(phys).name == "kdump"  # type: ignore[union-attr]
            assert phys.read(3 * PS, PS) == page_pattern(3)


def test_unknown_and_empty_files_give_the_typed_error(tmp_path: Path) -> None:
    with pytest.raises(DumpFormatError, match=r"at offset 0x0: unrecognised file: expected an ELF core, 'KDUMP   ' "
                                              r"or 'makedumpfile' signature, found b'hello wo'"):
        open_dump(write(tmp_path, b"hello world, not a dump", "x"))
    with pytest.raises(DumpFormatError, match="file is empty, expected a crash dump"):
        detect_format(write(tmp_path, b"", "empty"))
    with pytest.raises(DumpFormatError, match="is a directory"):
        detect_format(str(tmp_path))
    kd = build_kdump({0: page_pattern(0)}, max_mapnr=8).data
    elf = build_core([(0, 0, bytes(PS))])
    with pytest.raises(DumpFormatError, match="expected the kdump files of one --split set"):
        open_dump([write(tmp_path, kd, "k"), write(tmp_path, elf, "e")])


def test_a_memory_of_no_registered_format_gets_the_generic_checks() -> None:
    mem = DictMemory(size=4 * PS)
    mem.pages = {0: bytearray(PS), 1: bytearray(PS)}
    assert registry.format_of(mem) is None and damage_hint(mem) is None
    rep = check_dump(mem)
    assert rep.pages["good"] == 2 and [c.name for c in rep.checks] == ["notes"]


class _RawMemory(PhysicalMemory):
    """A toy format for the test below: 'RAWMEM!!' then the memory from physical address 0."""

    def __init__(self, path: str) -> None:
        super().__init__(path, DumpInfo(format="rawmem"))
        with open(path, "rb") as f:
            self.data = f.read()[8:]
        self._set_ranges([MemRange(0, len(self.data))])

    def _read_in_range(self, paddr: int, size: int) -> bytes:
        return self.data[paddr:paddr + size]


def test_a_new_format_is_one_file_and_one_registry_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def check(rep, phys, read_data, threads, progress):  # type: ignore[no-untyped-def]
        rep.check("rawmem", True, f"{len(phys.data)} bytes")

    mod = types.ModuleType("vmcorekit.dump.rawmem")
    mod.FORMAT = DumpFormat("rawmem", "'RAWMEM!!'", lambda head: head[:8] == b"RAWMEM!!",  # type: ignore[attr-defined]
                            lambda paths: _RawMemory(paths[0]), readers=(_RawMemory,), check=check,
                            damage_hint=lambda phys: None)
    monkeypatch.setitem(sys.modules, "vmcorekit.dump.rawmem", mod)
    monkeypatch.setattr(registry, "REGISTRY", (*registry.REGISTRY, ("rawmem", "FORMAT")))
    path = write(tmp_path, b"RAWMEM!!" + bytes(range(256)) * 32, "mem")
    assert detect_format(path) == "rawmem"
    with open_dump(path) as phys:
        assert phys.read(0x101, 3) == b"\1\2\3"
        rep = check_dump(phys)
    assert [c.name for c in rep.checks] == ["rawmem"]
    with pytest.raises(DumpFormatError, match="'makedumpfile' or 'RAWMEM!!' signature"):
        open_dump(write(tmp_path, b"garbage!" * 4, "bad"))


def test_probing_and_reading_an_elf_core_loads_no_numpy(tmp_path: Path) -> None:
    """Format files load as probing reaches them, and checks only when verify runs: `dmesg` on
    an ELF core starts without numpy, as before the registry."""
    import subprocess

    path = write(tmp_path, build_core([(0, 0, page_pattern(0))]), "core")
    code = ("import sys\nfrom vmcorekit.dump import open_dump\n"
            f"with open_dump({path!r}) as phys:\n    assert phys.read(8, 4)\n"
            "assert 'numpy' not in sys.modules, 'numpy loaded'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
