"""The kernel's in-memory kallsyms tables (names, token table and index, offsets or addresses,
relative base, every address encoding), located by the VMCOREINFO of a memory image; the table
built from them answers lookups both ways."""
from __future__ import annotations

from _harness import ImageMemory, decode_image, fuzz_main


def test_one_input(data: bytes) -> None:
    from vmcorekit.errors import VmcorekitError
    from vmcorekit.program.symbols.kallsyms import read_kallsyms
    from vmcorekit.program.symbols.table import SymbolTable
    from vmcorekit.vmcoreinfo import VmcoreInfo

    segs, vmci = decode_image(data)
    vi = VmcoreInfo.parse(vmci)
    mem = ImageMemory(segs)
    try:
        t = read_kallsyms(mem.read, vi.symbols, pointer_size=8, max_syms=100_000)
    except VmcorekitError:
        return
    assert len(t.names) == len(t.addresses) == len(t.types)
    table = SymbolTable(t.names, t.addresses, t.types, source="kallsyms")
    for name in t.names[:50]:
        try:
            table.address_of(name)
        except VmcorekitError:
            pass
    for a in t.addresses[:: max(1, len(t.addresses) // 50)]:
        table.lookup(int(a))
        table.format(int(a) + 3)
        table.in_text(int(a))


if __name__ == "__main__":
    fuzz_main(test_one_input, __file__, ("vmcorekit.program.symbols", "vmcorekit.vmcoreinfo"))
