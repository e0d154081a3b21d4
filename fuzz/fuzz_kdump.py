"""kdump-compressed files: disk_dump_header, kdump_sub_header, the notes and VMCOREINFO it
places, both bitmaps, the page descriptors and the compressed pages they point at (zlib, LZO,
snappy, zstd, raw); then reads, page states, verify and info's summary."""
from __future__ import annotations

from _harness import exercise_dump, fuzz_main, memfiles


def test_one_input(data: bytes) -> None:
    # Keep the signature: the mutations that matter are past it.
    with memfiles(b"KDUMP   " + data[8:] if len(data) >= 8 else data) as paths:
        exercise_dump(paths)


if __name__ == "__main__":
    fuzz_main(test_one_input, __file__, ("vmcorekit.dump", "vmcorekit.vmcoreinfo", "vmcorekit.arch", "vmcorekit.program.summary"))
