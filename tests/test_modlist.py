"""The one raw walk of the modules list (program/modlist.py) and the one mem_section decoder
(vmcoreinfo/memsection.py), on hand-built memory."""
from __future__ import annotations

import struct

import pytest

from vmcorekit.errors import CorruptKernelDataError, PageNotInDumpError
from vmcorekit.program.modlist import (ModuleOffsets, module_nodes, module_offsets,
                                       prefix_offsets, walk_modules)
from vmcorekit.vmcoreinfo import VmcoreInfo
from vmcorekit.vmcoreinfo.memsection import MemSection, section_mem_map

HEAD = 0xFFFFFFFF82000000
MODS = [0xFFFFFFFFC0001000, 0xFFFFFFFFC0002000, 0xFFFFFFFFC0003000]


class Mem:
    def __init__(self) -> None:
        self.bytes: dict[int, int] = {}

    def write(self, addr: int, data: bytes) -> None:
        for i, b in enumerate(data):
            self.bytes[addr + i] = b

    def read(self, addr: int, n: int) -> bytes:
        try:
            return bytes(self.bytes[addr + i] for i in range(n))
        except KeyError:
            raise PageNotInDumpError(addr, "not in this test") from None


def modules_list(names: list[bytes], states: list[int]) -> Mem:
    """struct module's stable prefix: state, list {next, prev}, name[56]."""
    mem = Mem()
    links = [HEAD] + [m + 8 for m in MODS[:len(names)]]
    for i, link in enumerate(links):
        mem.write(link, struct.pack("<QQ", links[(i + 1) % len(links)], links[i - 1]))
    for m, name, st in zip(MODS, names, states):
        mem.write(m, struct.pack("<I4x", st))
        mem.write(m + 24, name.ljust(56, b"\0"))
    return mem


def test_prefix_walk_names_states_and_order() -> None:
    mem = modules_list([b"loop", b"brd", b"dm_mod"], [0, 3, 1])
    got = list(walk_modules(mem.read, HEAD))
    assert [(m.address, m.name, m.state) for m in got] == \
        [(MODS[0], "loop", 0), (MODS[1], "brd", 3), (MODS[2], "dm_mod", 1)]
    assert all(m.ranges == () and m.kallsyms is None and m.base is None for m in got)


def test_cycle_stops_after_the_good_nodes() -> None:
    mem = modules_list([b"loop", b"brd", b"dm_mod"], [0, 0, 0])
    mem.write(MODS[2] + 8, struct.pack("<Q", MODS[1] + 8))  # third -> second
    seen = []
    with pytest.raises(CorruptKernelDataError, match="cycle"):
        for node in module_nodes(mem.read, HEAD):
            seen.append(node)
    assert seen == [m + 8 for m in MODS]


def test_validate_checks_back_links_and_wild_links_are_corruption() -> None:
    mem = modules_list([b"loop", b"brd"], [0, 0])
    mem.write(MODS[1] + 16, struct.pack("<Q", 0x1234))  # brd.prev wrong
    assert len(list(module_nodes(mem.read, HEAD))) == 2
    with pytest.raises(CorruptKernelDataError, match="points back"):
        list(module_nodes(mem.read, HEAD, validate=True))
    mem.write(MODS[0] + 8, struct.pack("<Q", 0xFFFF888000000000))  # an unreadable link
    with pytest.raises(CorruptKernelDataError, match="does not read"):
        list(module_nodes(mem.read, HEAD))


def test_offsets_fall_back_to_the_prefix() -> None:
    assert module_offsets(None) == prefix_offsets(8)

    class NoStruct:
        kind = "btf"

        def offsetof(self, *a: object) -> int:
            raise LookupError("no struct module")

    assert module_offsets(NoStruct()) == prefix_offsets(8)
    assert prefix_offsets(4) == ModuleOffsets(list=4, name=12, name_size=60, state=0)


def test_ranges_and_pointers_by_offsets() -> None:
    mem = modules_list([b"loop"], [0])
    mem.write(MODS[0] + 0x100, struct.pack("<QI4xQQI", 0xFFFFFFFFC1000000, 0x3000,
                                           0xFFFFFFFFC0001200, 0xFFFFFFFFC1005000, 0x800))
    offs = ModuleOffsets(list=8, name=24, name_size=56, kallsyms=0x110, btf_data=0x118,
                         btf_data_size=0x120, ranges=((0x100, 0x108),))
    (m,) = walk_modules(mem.read, HEAD, offs)
    assert (m.base, m.size) == (0xFFFFFFFFC1000000, 0x3000)
    assert (m.kallsyms, m.btf_data, m.btf_data_size) == (0xFFFFFFFFC0001200, 0xFFFFFFFFC1005000, 0x800)


def test_mem_section_words_and_first_present() -> None:
    vi = VmcoreInfo.parse("SYMBOL(mem_section)=ffff888000100000\nSIZE(mem_section)=16\n"
                          "OFFSET(mem_section.section_mem_map)=0\nLENGTH(mem_section)=2048\n")
    ms = MemSection.from_vmcoreinfo(vi, extreme=True)
    assert ms is not None and ms.sec_size == 16 and ms.map_off == 0
    words = {0xFFFF888000100000: 0xFFFF888000200000,  # the root array's first root
             0xFFFF888000200000: 0, 0xFFFF888000200010: 0xFFFFEA0000000000 | 0x7}
    assert ms.first_present(words.__getitem__, flag_mask=0x3F) == 0xFFFFEA0000000007
    blob = struct.pack("<QQQQ", 0, 0, 0xFFFFEA0000000007, 0)
    assert ms.section_words(blob, 2, 8, "little") == [0, 0xFFFFEA0000000007]
    assert section_mem_map(0, 0, 32768, 64, 8) is None
    assert section_mem_map(0xFFFFEA0000000007, 1, 32768, 64, 8) == 0xFFFFEA0000000000 + 32768 * 64
    assert MemSection.from_vmcoreinfo(VmcoreInfo.parse("OSRELEASE=6.1\n"), extreme=False) is None
