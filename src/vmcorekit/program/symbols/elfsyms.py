"""Symbols from a vmlinux's ELF .symtab (pyelftools finds the sections; numpy reads the table).

Type characters follow nm: A absolute, B/b bss, D/d data, R/r read-only, T/t text, W/w V/v weak;
lower case for local symbols. Section and file symbols, undefined ones and those in
non-allocated (debug) sections are left out, as kallsyms leaves them out.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

from ...errors import SymbolError

SHN_UNDEF, SHN_ABS, SHN_COMMON, SHN_LORESERVE = 0, 0xFFF1, 0xFFF2, 0xFF00
STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE, STT_TLS = 1, 2, 3, 4, 6
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4
SHT_NOBITS, SHT_NOTE = 8, 7
NT_GNU_BUILD_ID = 3


@dataclass
class ElfSymbols:
    names: list[str]
    addresses: np.ndarray  # uint64
    types: bytes
    build_id: str | None
    pointer_size: int


def _section_letters(elf) -> list[int]:  # type: ignore[no-untyped-def]
    """nm's letter (upper case) for symbols defined in each section; 0 for non-allocated."""
    out = []
    for sec in elf.iter_sections():
        flags = sec["sh_flags"]
        if not flags & SHF_ALLOC:
            out.append(0)
        elif flags & SHF_EXECINSTR:
            out.append(ord("T"))
        elif sec["sh_type"] == "SHT_NOBITS":
            out.append(ord("B"))
        elif not flags & SHF_WRITE:
            out.append(ord("R"))
        else:
            out.append(ord("D"))
    return out


def _build_id(elf) -> str | None:  # type: ignore[no-untyped-def]
    for sec in elf.iter_sections():
        if sec["sh_type"] != "SHT_NOTE":
            continue
        data = sec.data()
        pos = 0
        while pos + 12 <= len(data):
            namesz, descsz, ntype = struct.unpack_from(elf.little_endian and "<III" or ">III", data, pos)
            pos += 12
            name = data[pos:pos + namesz]
            pos += (namesz + 3) & ~3
            desc = data[pos:pos + descsz]
            pos += (descsz + 3) & ~3
            if ntype == NT_GNU_BUILD_ID and name.rstrip(b"\0") == b"GNU":
                return desc.hex()
    return None


def read_elf_symbols(path: str | os.PathLike[str]) -> ElfSymbols:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    p = os.fspath(path)
    try:
        f = open(p, "rb")
    except OSError as e:
        raise SymbolError(f"{p}: {e.strerror or e}") from None
    with f:
        try:
            elf = ELFFile(f)
            symtab = elf.get_section_by_name(".symtab")
            if symtab is None or symtab["sh_type"] != "SHT_SYMTAB":
                raise SymbolError(f"{p}: no .symtab (a stripped vmlinux?)")
            strtab = elf.get_section(symtab["sh_link"])
            raw = symtab.data()
            strs = strtab.data()
            letters = _section_letters(elf)
            build_id = _build_id(elf)
            is64 = elf.elfclass == 64
            endian = "<" if elf.little_endian else ">"
        except (ELFError, struct.error, ValueError, OSError) as e:
            raise SymbolError(f"{p}: not a readable ELF file: {e}") from None
    if is64:
        dt = np.dtype([("name", endian + "u4"), ("info", "u1"), ("other", "u1"),
                       ("shndx", endian + "u2"), ("value", endian + "u8"), ("size", endian + "u8")])
    else:
        dt = np.dtype([("name", endian + "u4"), ("value", endian + "u4"), ("size", endian + "u4"),
                       ("info", "u1"), ("other", "u1"), ("shndx", endian + "u2")])
    syms = np.frombuffer(raw[:len(raw) - len(raw) % dt.itemsize], dtype=dt)
    stype = syms["info"] & 0xF
    bind = syms["info"] >> 4
    shndx = syms["shndx"].astype(np.int64)
    keep = ((shndx != SHN_UNDEF) & (stype != STT_SECTION) & (stype != STT_FILE)
            & (syms["name"] != 0) & (syms["name"] < len(strs)))
    letter_of = np.zeros(0x10000, dtype=np.uint8)
    letter_of[:len(letters)] = letters
    letter_of[SHN_ABS] = ord("A")
    letter_of[SHN_COMMON] = ord("C")
    letter = letter_of[shndx]
    keep &= letter != 0
    weak = bind == STB_WEAK
    letter = np.where(weak, np.where(stype == STT_OBJECT, ord("V"), ord("W")), letter).astype(np.uint8)
    local = (bind == STB_LOCAL) & ~weak
    letter = np.where(local, letter | 0x20, letter).astype(np.uint8)  # lower case
    idx = np.flatnonzero(keep)
    offs = syms["name"][idx].tolist()
    names = []
    for off in offs:
        end = strs.find(b"\0", off)
        names.append(strs[off:end if end >= 0 else len(strs)].decode("latin-1"))
    addrs = syms["value"][idx].astype(np.uint64)
    # nm -n order: by address (stable), as kallsyms and System.map list them.
    order = np.argsort(addrs, kind="stable")
    return ElfSymbols([names[i] for i in order.tolist()], addrs[order],
                      letter[idx][order].tobytes(), build_id, 8 if is64 else 4)
