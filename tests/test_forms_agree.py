"""The same dump in different containers reads the same: ELF vs makedumpfile's kdump-compressed
vs QEMU's flattened kdump-zlib, by virtual address through the whole stack."""
from __future__ import annotations

import pytest

from vmcorekit import Program
from vmcorekit.errors import MemoryReadError


def _ranges(prog: Program) -> list[tuple[int, int]]:
    vi = prog.vmcoreinfo
    out = [(vi.symbol("init_uts_ns"), 390), (vi.symbol("swapper_pg_dir"), 4096)]
    # The printk ring buffer: kernel data pages that every dump level keeps.
    prb = vi.symbol("printk_rb_static")
    out.append((prb, 256))
    return out


@pytest.mark.corpus
def test_virtual_reads_agree_across_forms(corpus_case, corpus_elf) -> None:
    forms = [corpus_case / "vmcore.c-d31.kdump"]
    if (corpus_case / "vmcore.qemu-kdump-zlib").exists():
        forms.append(corpus_case / "vmcore.qemu-kdump-zlib")
    with Program.open(corpus_elf) as ref:
        wanted = [(a, n, ref.read(a, n)) for a, n in _ranges(ref)]
        # A stretch of the direct map: the page tables' own pages are always kept.
        root_va = ref.space.page_offset + ref.space.kernel_root
        wanted.append((root_va, 4096, ref.read(root_va, 4096)))
        for path in forms:
            with Program.open(path) as other:
                assert other.space.page_offset == ref.space.page_offset
                for addr, n, data in wanted:
                    assert other.read(addr, n) == data, f"{path.name} differs at {addr:#x}"


@pytest.mark.corpus
def test_filtered_pages_raise_not_zero(corpus_case, corpus_elf) -> None:
    # -d 31 drops free pages; reading one must raise, never return zeros.
    with Program.open(corpus_case / "vmcore.c-d31.kdump") as prog:
        phys = prog.phys
        excluded = next(pfn for r in phys.ranges() for pfn in range(r.start >> 12, r.end >> 12)
                        if phys.page_state(pfn).value == "excluded")
        with pytest.raises(MemoryReadError, match=f"{excluded << 12:#x}"):
            prog.read(excluded << 12, 8, physical=True)
