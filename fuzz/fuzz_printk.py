"""The kernel log in every printk layout (lockless ring of 5.10+ and its early-5.10 form with
a dictionary ring, the structured log of 3.5-5.9, the plain character buffer of older kernels):
the input is a memory image with the VMCOREINFO that locates the buffers; read_log and every
renderer must take whatever the buffers hold."""
from __future__ import annotations

from _harness import ImageMemory, decode_image, fuzz_main

# What BTF says of printk_info / printk_log on 6.1 x86_64 (facility u8, flags:5, level:3), so
# the level decoding is exercised too.
_BITS = {("printk_info", "facility"): (144, 8), ("printk_info", "flags"): (152, 5),
         ("printk_info", "level"): (157, 3), ("printk_log", "facility"): (112, 8),
         ("printk_log", "flags"): (120, 5), ("printk_log", "level"): (125, 3)}


def test_one_input(data: bytes) -> None:
    from vmcorekit.errors import VmcorekitError
    from vmcorekit.kernel import printk
    from vmcorekit.vmcoreinfo import VmcoreInfo

    segs, vmci = decode_image(data)
    mem = ImageMemory(segs, VmcoreInfo.parse(vmci))
    mem.member_bits = lambda s, m: _BITS.get((s, m))  # type: ignore[attr-defined]
    for levels in (False, True):
        try:
            log = printk.read_log(mem, levels=levels)
        except VmcorekitError:
            return
        for style in ("vmcore-dmesg", "makedumpfile"):
            for _ in printk.render(log, None, style=style, stamp=printk.seconds_stamp, show_caller=True,
                                   dev_info=True):
                pass
        for _ in printk.json_lines(log.records):
            pass
        printk.since_clear(log)


if __name__ == "__main__":
    fuzz_main(test_one_input, __file__, ("vmcorekit.kernel.printk", "vmcorekit.vmcoreinfo"))
