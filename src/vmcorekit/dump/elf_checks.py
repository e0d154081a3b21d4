"""`verify`'s checks of an ELF core (dump/elf.py registers them): the program header table,
every PT_LOAD inside the file (a file cut short loses the pages past its end: "missing"),
PT_LOAD file ranges that do not overlap, PT_NOTE inside the file and walking cleanly to its end;
with `read_data` every byte of segment data is read (I/O errors, short files)."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from .checks import BadRange, Done, Progress, VerifyReport
from .elf_layout import EHDR64, NOTES_BYTES_CAP, PT_LOAD, PT_NOTE, walk_notes

if TYPE_CHECKING:
    from .elf import ElfDump

# Bytes read at a time from segment data (cat uses 128 KiB; larger costs nothing here).
READ_CHUNK = 4 << 20


PHDR_DTYPE = np.dtype([("type", "<u4"), ("flags", "<u4"), ("offset", "<u8"), ("vaddr", "<u8"), ("paddr", "<u8"),
                       ("filesz", "<u8"), ("memsz", "<u8"), ("align", "<u8")])
MAX_LISTED = 100  # overlapping or truncated segments named one by one; the rest counted


def check_elf(rep: VerifyReport, d: ElfDump, read_data: bool, threads: int, progress: Progress | None) -> None:
    """The self-checks of an ELF core; see the module docstring. The program header table is
    handled as numpy columns: a file may hold a million PT_LOADs (the reader's cap)."""
    size = d.file_size
    m = d._map
    ehdr = EHDR64.unpack(bytes(m[0:EHDR64.size]))
    e_phoff, e_phentsize = ehdr[5], ehdr[9]
    phnum = int(d.info.extra.get("phnum", ehdr[10]))
    raw = np.frombuffer(bytes(m[e_phoff:e_phoff + phnum * e_phentsize]), dtype=np.uint8)
    ph = np.ascontiguousarray(raw.reshape(phnum, e_phentsize)[:, :PHDR_DTYPE.itemsize]).view(PHDR_DTYPE).reshape(-1) \
        if phnum else np.zeros(0, dtype=PHDR_DTYPE)
    del raw
    note_problems: list[str] = []
    nnotes = 0
    budget = NOTES_BYTES_CAP  # as the reader: note bytes walked in all
    for i in np.flatnonzero(ph["type"] == PT_NOTE).tolist():
        off, filesz = int(ph["offset"][i]), int(ph["filesz"][i])
        if off + filesz > size:
            note_problems.append(f"PT_NOTE {i} at [{off:#x}, {off + filesz:#x}) runs past the end of the file "
                                 f"({size} bytes)")
        if budget <= 0:
            continue
        n = max(0, min(off + filesz, size, off + budget) - off) if off < size else 0
        budget -= n
        data = bytes(m[off:off + n])
        c, prob = walk_notes(data)
        nnotes += c
        if prob:
            note_problems.append(f"PT_NOTE {i}: {prob}")
    load_idx = np.flatnonzero(ph["type"] == PT_LOAD)
    lp = ph[load_idx]
    del ph
    rep.check("headers", True, f"ELF64 core, {phnum} program headers, {len(lp)} PT_LOAD")
    rep.check("notes", not note_problems, "; ".join(note_problems) or f"{nnotes} notes")
    rep.problems.extend(note_problems)

    # PT_LOAD file ranges must not overlap one another (memory ranges may: kexec-tools maps the
    # kernel text twice, and the reader keeps one copy).
    off_all = lp["offset"].astype(object) if len(lp) and int(lp["offset"].max()) >= 1 << 62 else lp["offset"].astype(np.int64)
    has = lp["filesz"] > 0
    order = np.argsort(lp["offset"][has], kind="stable")
    so = np.asarray(off_all[has])[order]
    se = so + lp["filesz"][has][order].astype(so.dtype)
    si = load_idx[has][order]
    if len(so) > 1:
        over = np.flatnonzero(so[1:] < se[:-1])
        for k in over[:MAX_LISTED].tolist():
            rep.problems.append(f"PT_LOAD {int(si[k + 1])} file data [{int(so[k + 1]):#x}, {int(se[k + 1]):#x}) overlaps "
                                f"PT_LOAD {int(si[k])} [{int(so[k]):#x}, {int(se[k]):#x})")
        if len(over) > MAX_LISTED:
            rep.problems.append(f"... and {len(over) - MAX_LISTED} more overlapping PT_LOAD file ranges")
    paddr = lp["paddr"]
    unaligned = np.flatnonzero((paddr % np.uint64(rep.page_size) != 0) & (paddr != np.uint64(0xFFFFFFFFFFFFFFFF)))
    if len(unaligned):
        rep.notes.append(f"{len(unaligned)} PT_LOAD(s) not page-aligned in physical memory "
                         f"(first: {int(load_idx[unaligned[0]])})")

    ps = rep.page_size
    truncated_at = size
    segs = d._segs
    col = {name: np.frombuffer(getattr(segs, name), dtype=np.uint64) if len(segs) else np.zeros(0, np.uint64)
           for name in ("paddr", "offset", "filesz", "memsz")}
    big = len(segs) and int(col["offset"].max()) >= 1 << 62
    s_off = col["offset"].astype(object if big else np.int64)
    s_fs = col["filesz"].astype(s_off.dtype)
    s_ms = col["memsz"].astype(s_off.dtype)
    in_file = np.where(s_off < size, np.clip(np.minimum(s_fs, size - s_off), 0, None), 0)
    all_pages = -(-s_fs // ps)
    whole = in_file >= s_fs
    full_pages = in_file // ps  # the page the file ends in is incomplete: missing
    rep.pages["good"] += int(all_pages[whole].sum()) + int(full_pages[~whole].sum())
    rep.pages["missing"] += int((all_pages - full_pages)[~whole].sum())
    rep.pages["excluded"] += int(np.where(s_ms > s_fs, -(-(s_ms - s_fs) // ps), 0).sum())
    cut = np.flatnonzero(~whole)
    for k in cut[:MAX_LISTED].tolist():
        fp, ap = int(full_pages[k]), int(all_pages[k])
        rep.bad_ranges.append(BadRange("missing", int(col["paddr"][k]) + fp * ps, int(col["paddr"][k]) + int(s_fs[k]),
                                       ap - fp, f"segment data past the end of the file (truncated at {truncated_at:#x})"))
    if len(cut) > MAX_LISTED:
        rep.problems.append(f"{len(cut) - MAX_LISTED} more PT_LOADs end past the end of the file (not listed)")
    rep.check("segments", not len(cut),
              "every PT_LOAD inside the file" if not len(cut) else
              f"file ends at {size:#x}: {rep.pages['missing']} pages of segment data past its end")

    if not read_data:
        rep.data_checked = False
        rep.check("page data", None, "not read (--quick)")
        return
    # Read every byte of segment data once, in file order, like cat: the kernel does the work
    # (os.preadv releases the GIL), so a second thread overlaps the next read with this one.
    keep = (s_off < size) & (s_fs > 0)
    ea = s_off[keep]
    eb = np.minimum(s_off[keep] + s_fs[keep], size)
    o = np.argsort(ea, kind="stable")
    ea, eb = ea[o], eb[o]
    merged: list[list[int]] = []
    if len(ea):
        reach = np.maximum.accumulate(eb)
        new = np.ones(len(ea), dtype=bool)
        new[1:] = ea[1:] > reach[:-1]
        first = np.flatnonzero(new)
        last = np.append(first[1:], len(ea)) - 1
        merged = [[int(a), int(b)] for a, b in zip(ea[first].tolist(), reach[last].tolist())]
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
