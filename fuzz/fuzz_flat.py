"""makedumpfile's flattened stream: the 4 KiB header and the (offset, size) records, overlapping
and out of order, as FlatFile indexes them; then the kdump file they describe, read through it."""
from __future__ import annotations

from _harness import exercise_dump, fuzz_main, memfiles


def test_one_input(data: bytes) -> None:
    with memfiles(b"makedumpfile\0\0\0\0" + data[16:] if len(data) >= 16 else data) as paths:
        exercise_dump(paths)


if __name__ == "__main__":
    fuzz_main(test_one_input, __file__, ("vmcorekit.dump",))
