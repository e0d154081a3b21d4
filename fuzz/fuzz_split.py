"""makedumpfile --split sets: two kdump files (the input is a u32 length, the first file, the
second file) whose split headers must agree and whose pfn ranges must not overlap."""
from __future__ import annotations

import struct

from _harness import exercise_dump, fuzz_main, memfiles


def test_one_input(data: bytes) -> None:
    if len(data) < 4:
        return
    n = struct.unpack_from("<I", data)[0] % (len(data) - 3)
    with memfiles(data[4:4 + n], data[4 + n:]) as paths:
        exercise_dump(paths)


if __name__ == "__main__":
    fuzz_main(test_one_input, __file__, ("vmcorekit.dump",))
