"""System.map (`nm -n vmlinux` output: `ADDRESS TYPE NAME` per line)."""
from __future__ import annotations

import os

import numpy as np

from ...errors import SymbolError

MAX_SYSTEM_MAP = 512 << 20


def parse_system_map(text: str, source: str = "System.map") -> tuple[list[str], np.ndarray, bytes]:
    """(names, addresses, type characters) in file order. Lines that are not `hex type name`
    raise SymbolError naming the line, except blank ones."""
    names: list[str] = []
    addrs: list[int] = []
    types = bytearray()
    for no, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3 or len(parts[1]) != 1:
            raise SymbolError(f"{source}:{no}: expected 'ADDRESS TYPE NAME', got {line[:80]!r}")
        try:
            a = int(parts[0], 16)
        except ValueError:
            raise SymbolError(f"{source}:{no}: bad address {parts[0][:40]!r}") from None
        if not 0 <= a < 1 << 64:
            raise SymbolError(f"{source}:{no}: address {parts[0][:40]!r} does not fit 64 bits")
        t = ord(parts[1])
        if t >= 128:
            raise SymbolError(f"{source}:{no}: bad symbol type {parts[1]!r}")
        addrs.append(a)
        types.append(t)
        # `nm` appends `\t[module]` for module symbols in /proc/kallsyms-like files; keep the name.
        names.append(parts[2])
    if not names:
        raise SymbolError(f"{source}: no symbols")
    return names, np.array(addrs, dtype=np.uint64), bytes(types)


def read_system_map(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray, bytes]:
    p = os.fspath(path)
    try:
        size = os.path.getsize(p)
        if size > MAX_SYSTEM_MAP:
            raise SymbolError(f"{p}: {size} bytes is too large for a System.map")
        with open(p, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SymbolError(f"{p}: {e.strerror or e}") from None
    return parse_system_map(data.decode("latin-1"), source=p)
