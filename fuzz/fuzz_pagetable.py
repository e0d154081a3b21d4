"""Page-table walks (x86_64 4/5-level, arm64): the input is a memory image whose segments are
physical memory (segment 1: virtual addresses to translate) with the dump's VMCOREINFO; the
address space is built from it (phys_base, direct map, vmemmap discovery) and each address is
walked, explained and read."""
from __future__ import annotations

import struct

from _harness import decode_image, fuzz_main


def test_one_input(data: bytes) -> None:
    from vmcorekit.arch import address_space
    from vmcorekit.dump.base import DumpInfo, MemRange, PhysicalMemory
    from vmcorekit.errors import PageNotInDumpError, VmcorekitError
    from vmcorekit.vmcoreinfo import VmcoreInfo

    segs, vmci = decode_image(data)
    vi = VmcoreInfo.parse(vmci)
    vaddrs = [v for (v,) in struct.iter_unpack("<Q", segs.pop(1, b"")[:8 * 64][: len(segs.get(1, b"")) // 8 * 8])]

    class Phys(PhysicalMemory):
        def __init__(self) -> None:
            super().__init__("<fuzz>", DumpInfo(format="fuzz", machine=vi.guess_arch()))
            self._set_ranges([MemRange(a, a + len(b)) for a, b in segs.items() if b])

        def _read_in_range(self, paddr: int, size: int) -> bytes:
            for a, b in segs.items():
                if a <= paddr and paddr + size <= a + len(b):
                    return b[paddr - a:paddr - a + size]
            raise PageNotInDumpError(paddr, "not in the fuzz image")

    try:
        space = address_space(Phys(), vi)
        space.describe()
    except VmcorekitError:
        return
    for v in vaddrs + list(vi.symbols.values())[:16]:
        for fn in (space.translate, space.explain, lambda a: space.read(a, 16)):
            try:
                fn(v)
            except VmcorekitError:
                pass
    try:
        space.cpu_registers()
    except VmcorekitError:
        pass


if __name__ == "__main__":
    fuzz_main(test_one_input, __file__, ("vmcorekit.arch", "vmcorekit.vmcoreinfo"))
