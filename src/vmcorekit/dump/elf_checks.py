"""`verify`'s checks of an ELF core (dump/elf.py registers them): the program header table,
every PT_LOAD inside the file (a file cut short loses the pages past its end: "missing"),
PT_LOAD file ranges that do not overlap, PT_NOTE inside the file and walking cleanly to its end;
with `read_data` every byte of segment data is read (I/O errors, short files)."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from .checks import BadRange, Done, Progress, VerifyReport
from .elf_layout import EHDR64, PHDR64, PT_LOAD, PT_NOTE, walk_notes

if TYPE_CHECKING:
    from .elf import ElfDump

# Bytes read at a time from segment data (cat uses 128 KiB; larger costs nothing here).
READ_CHUNK = 4 << 20


def check_elf(rep: VerifyReport, d: ElfDump, read_data: bool, threads: int, progress: Progress | None) -> None:
    """The self-checks of an ELF core; see the module docstring."""
    size = d.file_size
    m = d._map
    ehdr = EHDR64.unpack(bytes(m[0:EHDR64.size]))
    e_phoff, e_phentsize = ehdr[5], ehdr[9]
    phnum = int(d.info.extra.get("phnum", ehdr[10]))
    table = bytes(m[e_phoff:e_phoff + phnum * e_phentsize])
    loads: list[tuple[int, int, int, int, int]] = []  # (index, offset, paddr, filesz, memsz)
    note_problems: list[str] = []
    nnotes = 0
    for i in range(phnum):
        p_type, _, off, _, paddr, filesz, memsz, _ = PHDR64.unpack_from(table, i * e_phentsize)
        if p_type == PT_LOAD:
            loads.append((i, off, paddr, filesz, memsz))
        elif p_type == PT_NOTE:
            if off + filesz > size:
                note_problems.append(f"PT_NOTE {i} at [{off:#x}, {off + filesz:#x}) runs past the end of the file "
                                     f"({size} bytes)")
            data = bytes(m[off:min(off + filesz, size)]) if off < size else b""
            c, prob = walk_notes(data)
            nnotes += c
            if prob:
                note_problems.append(f"PT_NOTE {i}: {prob}")
    rep.check("headers", True, f"ELF64 core, {phnum} program headers, {len(loads)} PT_LOAD")
    rep.check("notes", not note_problems, "; ".join(note_problems) or f"{nnotes} notes")
    rep.problems.extend(note_problems)

    # PT_LOAD file ranges must not overlap one another (memory ranges may: kexec-tools maps the
    # kernel text twice, and the reader keeps one copy).
    spans = sorted((off, off + filesz, i) for i, off, _, filesz, _ in loads if filesz)
    for (a0, a1, i0), (b0, b1, i1) in zip(spans, spans[1:]):
        if b0 < a1:
            rep.problems.append(f"PT_LOAD {i1} file data [{b0:#x}, {b1:#x}) overlaps PT_LOAD {i0} [{a0:#x}, {a1:#x})")
    unaligned = [i for i, _, paddr, _, _ in loads if paddr % rep.page_size and paddr != 0xFFFFFFFFFFFFFFFF]
    if unaligned:
        rep.notes.append(f"{len(unaligned)} PT_LOAD(s) not page-aligned in physical memory (first: {unaligned[0]})")

    ps = rep.page_size
    truncated_at = size
    for s in d._segs:
        in_file = max(0, min(s.filesz, size - s.offset)) if s.offset < size else 0
        all_pages = -(-s.filesz // ps)
        if in_file >= s.filesz:
            rep.pages["good"] += all_pages
        else:
            full_pages = in_file // ps  # the page the file ends in is incomplete: missing
            rep.pages["good"] += full_pages
            rep.pages["missing"] += all_pages - full_pages
            rep.bad_ranges.append(BadRange("missing", s.paddr + full_pages * ps, s.paddr + s.filesz,
                                           all_pages - full_pages,
                                           f"segment data past the end of the file (truncated at {truncated_at:#x})"))
        rep.pages["excluded"] += -(-(s.memsz - s.filesz) // ps) if s.memsz > s.filesz else 0
    rep.check("segments", not any(r.state == "missing" for r in rep.bad_ranges),
              "every PT_LOAD inside the file" if not rep.bad_ranges else
              f"file ends at {size:#x}: {rep.pages['missing']} pages of segment data past its end")

    if not read_data:
        rep.data_checked = False
        rep.check("page data", None, "not read (--quick)")
        return
    # Read every byte of segment data once, in file order, like cat: the kernel does the work
    # (os.preadv releases the GIL), so a second thread overlaps the next read with this one.
    extents = sorted((off, min(off + filesz, size)) for _, off, _, filesz, _ in loads if off < size and filesz)
    merged: list[list[int]] = []
    for a, b in extents:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    total = sum(b - a for a, b in merged)
    pieces = [(p, min(p + READ_CHUNK, b)) for a, b in merged for p in range(a, b, READ_CHUNK)]
    done = 0
    errors: list[str] = []

    fd = d._fd

    def read_piece(ab: tuple[int, int], buf: bytearray) -> int:
        a, b = ab
        mv = memoryview(buf)[:b - a]
        got = 0
        while got < b - a:
            n = os.preadv(fd, [mv[got:]], a + got)
            if n <= 0:
                break
            got += n
        return got

    workers = max(1, min(threads, 4, len(pieces)))
    bufs = [bytearray(min(READ_CHUNK, max(total, 1))) for _ in range(workers)]
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        for start in range(0, len(pieces), workers):
            batch = pieces[start:start + workers]
            futs = [pool.submit(read_piece, ab, bufs[k]) if pool else Done.of(read_piece, ab, bufs[k])
                    for k, ab in enumerate(batch)]
            for ab, fu in zip(batch, futs):
                try:
                    got = fu.result()
                except OSError as e:
                    errors.append(f"read error at file offset {ab[0]:#x}: {e.strerror or e}")
                    got = 0
                if got < ab[1] - ab[0] and not errors:
                    errors.append(f"short read at file offset {ab[0] + got:#x}")
                done += got
            if progress:
                progress(done, total)
    finally:
        if pool is not None:
            pool.shutdown()
    rep.bytes_read += done
    rep.problems.extend(errors)
    rep.check("page data", not errors, f"{done} bytes of segment data read" + (f"; {errors[0]}" if errors else ""))


def damage_hint(phys: ElfDump) -> str | None:
    """A file that ends inside its segment data."""
    if phys.info.incomplete:
        return (f"the file ends at {phys.file_size:#x}, inside the segment data: pages are missing"
                "; `vmcorekit info --ranges` lists the missing ranges")
    return None
