"""Builds small ELF64 core files from the ELF specification, for reader tests."""
from __future__ import annotations

import struct

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
SHDR = struct.Struct("<IIQQQQIIQQ")


def note(owner: bytes, ntype: int, desc: bytes) -> bytes:
    name = owner + b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def build_core(segments: list[tuple[int, int, bytes]], notes: bytes = b"", *, machine: int = 62,
               phoff: int | None = None, shdr_first: bool = False, xnum: bool = False,
               memsz_extra: int = 0) -> bytes:
    """segments: (vaddr, paddr, data). With shdr_first the section headers come before the program
    headers (as QEMU 7.2 writes them); with xnum e_phnum is PN_XNUM and the count is in sh_info."""
    phnum = len(segments) + (1 if notes else 0)
    shnum = 1 if (xnum or shdr_first) else 0
    shoff = 64 if shnum else 0
    phoff = phoff if phoff is not None else (64 + shnum * SHDR.size)
    data_off = phoff + phnum * PHDR.size
    phdrs, blobs = [], []
    pos = data_off
    if notes:
        phdrs.append(PHDR.pack(4, 0, pos, 0, 0, len(notes), len(notes), 0))
        blobs.append(notes)
        pos += len(notes)
    for vaddr, paddr, data in segments:
        pad = -pos % 4096
        blobs.append(b"\0" * pad)
        pos += pad
        phdrs.append(PHDR.pack(1, 7, pos, vaddr, paddr, len(data), len(data) + memsz_extra, 4096))
        blobs.append(data)
        pos += len(data)
    e_phnum = 0xFFFF if xnum else phnum
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    ehdr = EHDR.pack(ident, 4, machine, 1, 0, phoff, shoff, 0, 64, PHDR.size, e_phnum, SHDR.size, shnum, 0)
    out = bytearray(ehdr)
    if shnum:
        out += SHDR.pack(0, 0, 0, 0, 0, 0, 0, phnum if xnum else 0, 0, 0)
    out += b"\0" * (phoff - len(out))
    out += b"".join(phdrs)
    out += b"".join(blobs)
    return bytes(out)
