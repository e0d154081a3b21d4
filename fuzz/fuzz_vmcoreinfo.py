"""VMCOREINFO text: parsing never fails, every accessor either answers or raises
VmcoreinfoError, validation and diff take any note."""
from __future__ import annotations

from _harness import fuzz_main


def test_one_input(data: bytes) -> None:
    from vmcorekit.errors import VmcorekitError
    from vmcorekit.vmcoreinfo import VmcoreInfo, diff
    from vmcorekit.vmcoreinfo.spec import check

    vi = VmcoreInfo.parse(data)
    for prop in ("osrelease", "build_id", "page_size", "kerneloffset", "crashtime"):
        try:
            getattr(vi, prop)
        except VmcorekitError:
            pass
    vi.kernel_version()
    vi.guess_arch()
    vi.to_dict()
    vi.items()
    for arch in (None, "x86_64", "aarch64"):
        check(vi, arch).to_dict()
    for table, get in ((vi.symbols, vi.symbol), (vi.sizes, vi.size), (vi.offsets, vi.offset),
                       (vi.lengths, vi.length), (vi.numbers, vi.number)):
        for name in list(table)[:20] + ["no-such-key"]:
            try:
                get(name)
            except VmcorekitError:
                pass
    diff(vi, VmcoreInfo.parse(data[::-1]))
    vi2 = VmcoreInfo.parse(data.decode("latin-1"))
    assert vi2.raw is not None


if __name__ == "__main__":
    fuzz_main(test_one_input, __file__, ("vmcorekit.vmcoreinfo",))
