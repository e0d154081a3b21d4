"""ELF cores: the ELF header, program headers (PN_XNUM through section header 0), PT_NOTE
areas and their notes, PT_LOAD segments, as ElfDump reads them; then everything a command does
with the result (reads, page states, verify, info's summary)."""
from __future__ import annotations

from _harness import exercise_dump, fuzz_main, memfiles


def test_one_input(data: bytes) -> None:
    with memfiles(b"\x7fELF" + data[4:] if len(data) >= 4 else data) as paths:
        exercise_dump(paths)


if __name__ == "__main__":
    fuzz_main(test_one_input, __file__, ("vmcorekit.dump", "vmcorekit.vmcoreinfo", "vmcorekit.arch", "vmcorekit.program.summary"))
