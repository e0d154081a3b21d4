#!/usr/bin/env python3
"""Cut the fuzz seeds from the real sample dump (samples/*.kdump) and write fuzz/seeds/<harness>/.

Every seed is made of real bytes of the sample where the format allows: its kdump header,
sub-header, notes and VMCOREINFO, the bitmaps and descriptors of a window of real pfns, their
compressed pages; the page tables, kallsyms tables, BTF, printk records, task list and stack
of the crashed kernel. Sizes are rewritten so each seed stays small (tens of KiB): a fuzzer
mutates small inputs far better. Run from the repository root:

    python fuzz/make_seeds.py [SAMPLE_DUMP]
"""
from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests"), str(HERE)]

from _harness import PAGE, SEEDS  # noqa: E402
from vmcorekit.dump import open_dump  # noqa: E402
from vmcorekit.dump.codecs import CODEC_FLAGS, compress_page  # noqa: E402
from vmcorekit.dump.kdump import KdumpFile  # noqa: E402
from vmcorekit.dump.kdump_layout import DESC_DTYPE, HDR_TAIL_OFF  # noqa: E402

SAMPLE = REPO / "samples" / "x86_64-6.1.0-56-amd64-qmp-c-d31.kdump"
WINDOW = 31280  # 32 pfns of the sample: compressed, zero and excluded pages side by side
SUB_MAX_MAPNR_64 = 96  # offset of max_mapnr_64 in kdump_sub_header
SUB_SPLIT = 12


def put(name: str, seed: str, data: bytes) -> None:
    d = SEEDS / name
    d.mkdir(parents=True, exist_ok=True)
    (d / seed).write_bytes(data)
    print(f"  {name}/{seed}: {len(data)} bytes")


# -- dump files ----------------------------------------------------------------------------------
def descriptors(k: KdumpFile) -> tuple[np.ndarray, np.ndarray]:
    raw = k._src.read(k._pdesc_off, k.dumpable_pages * DESC_DTYPE.itemsize)
    return np.frombuffer(raw, dtype=DESC_DTYPE), k.dumped_pfns()


def mini_kdump(k: KdumpFile, start: int, n: int, *, holes: int = 8, codec: str | None = None,
               split: tuple[int, int] | None = None) -> bytes:
    """A kdump file of the sample's pfns [start, start+n) renumbered from 0, followed by
    `holes` pfns that are not memory: the real header, sub-header and notes with max_mapnr
    (and split bounds) rewritten, the real bitmap bits, descriptors and page data. With
    `codec`, the real page contents are stored with that codec instead."""
    src = k._src
    bs = k.page_size
    sub_blocks = k.info.extra["sub_hdr_size"]
    head = bytearray(src.read(0, (1 + sub_blocks) * bs))
    max_mapnr = n + holes
    struct.pack_into("<I", head, HDR_TAIL_OFF + 12, 2)  # bitmap_blocks: one block per bitmap
    struct.pack_into("<I", head, HDR_TAIL_OFF + 16, max_mapnr)
    struct.pack_into("<Q", head, bs + SUB_MAX_MAPNR_64, max_mapnr)
    lo, hi = split or (0, max_mapnr)
    if split:
        struct.pack_into("<iQQ", head, bs + SUB_SPLIT, 1, lo, hi)
        struct.pack_into("<QQ", head, bs + 80, lo, hi)
    if codec:
        status = struct.unpack_from("<I", head, HDR_TAIL_OFF)[0] & ~0x27
        struct.pack_into("<I", head, HDR_TAIL_OFF, status | CODEC_FLAGS.get(codec, 0))
    bm1 = np.unpackbits(np.frombuffer(k._bm1, np.uint8), bitorder="little")[start:start + n]
    bm2 = np.unpackbits(np.frombuffer(k._bm2, np.uint8), bitorder="little")[start:start + n]
    bits1 = np.zeros(bs * 8, np.uint8)
    bits2 = np.zeros(bs * 8, np.uint8)
    bits1[:n], bits2[:n] = bm1, bm2
    desc, pfns = descriptors(k)
    sel = np.flatnonzero((pfns >= start) & (pfns < start + n))
    mine = [i for i in sel if lo <= pfns[i] - start < hi]
    pdesc = (1 + sub_blocks + 2) * bs
    data_off = pdesc + len(mine) * DESC_DTYPE.itemsize
    body = bytearray(bs)  # the shared zero page first
    table = bytearray()
    for i in mine:
        off, size, flags = int(desc["offset"][i]), int(desc["size"][i]), int(desc["flags"][i])
        if off == k._zero_off:
            table += struct.pack("<qIIQ", data_off, bs, 0, 0)
            continue
        stored = src.read(off, size)
        if codec:
            page = k.read(int(pfns[i]) * bs, bs)
            stored = page if codec == "none" else compress_page(codec, page)
            flags = CODEC_FLAGS.get(codec, 0)
        table += struct.pack("<qIIQ", data_off + len(body), len(stored), flags, 0)
        body += stored
    return (bytes(head) + np.packbits(bits1, bitorder="little").tobytes()
            + np.packbits(bits2, bitorder="little").tobytes() + bytes(table) + bytes(body))


def kdump_seeds(k: KdumpFile) -> None:
    from kdumpgen import flatten

    plain = mini_kdump(k, WINDOW, 32)
    put("kdump", "zlib-window", plain)
    for codec in ("lzo", "snappy", "zstd"):
        put("kdump", f"{codec}-window", mini_kdump(k, WINDOW, 32, codec=codec))
    put("kdump", "raw-window", mini_kdump(k, WINDOW, 12, holes=4, codec="none"))
    put("kdump", "zlib-window-2", mini_kdump(k, 31528, 32, holes=0))
    put("flat", "zlib-window", flatten(plain, chunk=4096, seed=1))
    put("flat", "zlib-window-small-records", flatten(plain, chunk=700, seed=2))
    a = mini_kdump(k, WINDOW, 32, split=(0, 16))
    b = mini_kdump(k, WINDOW, 32, split=(16, 40))
    put("split", "two-parts", struct.pack("<I", len(a)) + a + b)
    # The compressed pages alone: one codec byte, then the stored page.
    desc, pfns = descriptors(k)
    sel = np.flatnonzero((pfns >= WINDOW) & (pfns < WINDOW + 32) & (desc["flags"] & 1).astype(bool))
    i = int(sel[0])
    stored = k._src.read(int(desc["offset"][i]), int(desc["size"][i]))
    page = k.read(int(pfns[i]) * k.page_size, k.page_size)
    put("codecs", "zlib", b"\x01" + stored)
    for name in ("lzo", "snappy", "zstd"):
        put("codecs", name, bytes([CODEC_FLAGS[name]]) + compress_page(name, page))
    put("codecs", "raw", b"\x00" + page)


def elf_seeds(k: KdumpFile) -> None:
    """ELF cores holding the sample's real notes and a few real pages, in QEMU's layout (section
    headers before the program headers) and in kexec's (with the duplicate kernel-text PT_LOAD)."""
    from elfgen import build_core, note

    notes = b"".join(note(n.owner.encode(), n.type, n.desc) for n in k.notes)
    pages = [k.read((WINDOW + i) * PAGE, PAGE) for i in range(6)]
    segs = [(WINDOW * PAGE, WINDOW * PAGE, b"".join(pages[:4])),
            (0x100000, 0x100000, b"".join(pages[4:]))]
    put("elf", "qemu-layout", build_core(segs, notes, shdr_first=True))
    kexec = [(0xFFFFFFFF81000000, 0x100000, pages[4]), (0xFFFF888000000000 + WINDOW * PAGE, WINDOW * PAGE,
                                                        b"".join(pages[:4])),
             (0xFFFF888000100000, 0x100000, b"".join(pages[4:]))]
    put("elf", "kexec-layout", build_core(kexec, notes))
    put("elf", "pn-xnum", build_core(segs, notes, xnum=True, memsz_extra=PAGE))


def vmcoreinfo_seeds() -> None:
    for p in sorted((REPO / "samples").rglob("vmcoreinfo.txt")):
        rel = p.relative_to(REPO / "samples").parent.as_posix().replace("/", "-")
        rel = "x86_64" if rel == "." else rel
        put("vmcoreinfo", f"sample-{rel}", p.read_bytes())


SEEDERS: dict[str, Callable[[KdumpFile], None]] = {"kdump": kdump_seeds, "elf": elf_seeds}


def hostile_seeds() -> None:
    """The Trust classes (fuzz/hostile.py) at sizes a fuzzer can mutate: the harness makes the
    claimed size a hole of a sparse memfd (or repeats the flood's note)."""
    import fuzz_hostile as fh
    import hostile

    put("hostile", "kdump-bitmaps-2^31-pages", fh.encode("kdump", 1 << 31, hostile.kdump_huge_bitmaps(1 << 31)[0]))
    put("hostile", "kdump-bitmaps-mostly-hole",
        fh.encode("kdump", 1 << 31, hostile.kdump_huge_bitmaps(1 << 31, fill=0xFF)[0]))
    flood = hostile.elf_note_flood(1 << 20)[0]
    put("hostile", "elf-note-flood", fh.encode("notes", 64 << 20, flood[:64 + 2 * 56 + 16]))
    put("hostile", "elf-many-loads", fh.encode("loads", 0, hostile.elf_many_loads(2048)[0][:2048 * 56 + 128]))
    put("hostile", "zstd-bomb", fh.encode("zstd", 0, hostile.zstd_bomb(64 << 20, head=hostile.elf_many_loads(1)[0][:4096])[0]))


def main() -> None:
    hostile_seeds()
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else SAMPLE
    with open_dump(str(path)) as k:
        assert isinstance(k, KdumpFile)
        for fn in SEEDERS.values():
            fn(k)
    vmcoreinfo_seeds()
    try:
        import kernel_seeds  # the seeds of the kernel-structure harnesses
    except ImportError:
        return
    kernel_seeds.main(path)


if __name__ == "__main__":
    main()
