"""Typed view of the kernel's VMCOREINFO note (Documentation/admin-guide/kdump/vmcoreinfo.rst).

The note is `KEY=VALUE` lines. Keys are plain (OSRELEASE, PAGESIZE, KERNELOFFSET, ...) or
bracketed (SYMBOL(x), SIZE(x), OFFSET(s.m), LENGTH(x), NUMBER(x)); CONFIG_X=y marks options.
Parsing never fails on a bad line: it is recorded in `malformed` and the rest is kept.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import VmcoreinfoError

_BRACKET = re.compile(r"^([A-Z_]+)\((.+)\)$")
_KINDS = ("SYMBOL", "SIZE", "OFFSET", "LENGTH", "NUMBER")
MAX_NOTE_BYTES = 1 << 20
MIN_PAGE, MAX_PAGE = 4096, 256 << 10  # every page size Linux has had (hexagon's 256 KiB the top)
MAX_STRUCT = 16 << 20  # struct pglist_data, the largest VMCOREINFO sizes, is well below this
MAX_LENGTH = 1 << 24  # mem_section roots, free-area orders, free lists


@dataclass(frozen=True)
class Malformed:
    line_no: int
    line: str
    reason: str


def _parse_int(value: str, kind: str) -> int:
    v = value.strip()
    if kind in ("SYMBOL",) or kind == "hex":
        return int(v[2:] if v.lower().startswith("0x") else v, 16)
    if v.lower().startswith(("0x", "-0x")):
        return int(v, 16)
    return int(v, 10)


@dataclass
class VmcoreInfo:
    """Parsed VMCOREINFO. Dict views by kind; missing keys raise VmcoreinfoError from the
    accessor methods (`symbol()`, `size()`, ...) and return None from `get_*`."""

    raw: str
    entries: dict[str, str] = field(default_factory=dict)
    symbols: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)
    lengths: dict[str, int] = field(default_factory=dict)
    numbers: dict[str, int] = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)
    malformed: list[Malformed] = field(default_factory=list)
    source: str = "<note>"
    # Values dropped by check()/reject() because the dump contradicts them: "KEY=VALUE: why".
    rejected: list[str] = field(default_factory=list)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def parse(cls, data: bytes | str, source: str = "<note>") -> "VmcoreInfo":
        if isinstance(data, bytes):
            data = data[:MAX_NOTE_BYTES].split(b"\0", 1)[0].decode("utf-8", "replace")
        self = cls(raw=data, source=source)
        tables = {"SYMBOL": self.symbols, "SIZE": self.sizes, "OFFSET": self.offsets,
                  "LENGTH": self.lengths, "NUMBER": self.numbers}
        for no, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            key, sep, value = line.partition("=")
            if not sep or not key:
                self.malformed.append(Malformed(no, line, "expected KEY=VALUE"))
                continue
            if key in self.entries:
                self.malformed.append(Malformed(no, line, f"duplicate key {key}"))
                continue
            m = _BRACKET.match(key)
            if m and m.group(1) in tables:
                try:
                    tables[m.group(1)][m.group(2)] = _parse_int(value, m.group(1))
                except ValueError:
                    self.malformed.append(Malformed(no, line, f"expected a number for {m.group(1)}"))
                    continue
            elif key.startswith("CONFIG_"):
                self.configs[key[7:]] = value
            elif not re.fullmatch(r"[A-Za-z0-9_\-]+", key) and not m:
                self.malformed.append(Malformed(no, line, "key has unexpected characters"))
                continue
            self.entries[key] = value
        return self

    @classmethod
    def from_file(cls, path: str | Path) -> "VmcoreInfo":
        """A VMCOREINFO saved as text (makedumpfile -g / -i style, or the note's text)."""
        p = Path(path)
        data = p.read_bytes()
        if len(data) > MAX_NOTE_BYTES:
            raise VmcoreinfoError(f"{p}: {len(data)} bytes is too large for a VMCOREINFO text")
        info = cls.parse(data, source=str(p))
        if not info.entries:
            raise VmcoreinfoError(f"{p} at offset 0: expected VMCOREINFO KEY=VALUE lines, found none")
        return info

    # -- validation ----------------------------------------------------------------------------
    def reject(self, key: str, why: str) -> None:
        """Drop `key` (as written: PAGESIZE, SYMBOL(x), OFFSET(s.m), ...) so nothing uses it,
        and keep why."""
        value = self.entries.pop(key, None)
        m = _BRACKET.match(key)
        if m:
            table = {"SYMBOL": self.symbols, "SIZE": self.sizes, "OFFSET": self.offsets,
                     "LENGTH": self.lengths, "NUMBER": self.numbers}.get(m.group(1))
            if table is not None:
                table.pop(m.group(2), None)
        self.rejected.append(f"{key}={value}: {why}")

    def check(self, block_size: int | None = None) -> list[str]:
        """Reject the numbers that cannot be this kernel's, each with why (also kept in
        `rejected`): PAGESIZE not a power of two from 4 KiB to 256 KiB, or not the block size
        of a format that records one (`block_size`); a SIZE or LENGTH beyond any kernel
        structure; an OFFSET at or past its structure's SIZE; a NUMBER of bits past 64."""
        start = len(self.rejected)
        v = self.entries.get("PAGESIZE")
        if v is not None:
            n = int(v) if v.isdigit() else None
            if n is None or n & (n - 1) or not MIN_PAGE <= n <= MAX_PAGE:
                self.reject("PAGESIZE", f"not a page size (a power of two from {MIN_PAGE} to {MAX_PAGE})")
            elif block_size and n != block_size:
                self.reject("PAGESIZE", f"the dump's pages are {block_size} bytes")
        for name, size in list(self.sizes.items()):
            if not 0 < size <= MAX_STRUCT:
                self.reject(f"SIZE({name})", f"no kernel structure is {size} bytes")
        for name, n in list(self.lengths.items()):
            if not 0 <= n <= MAX_LENGTH:
                self.reject(f"LENGTH({name})", f"no kernel array has {n} elements")
        for name, off in list(self.offsets.items()):
            struct_name = name.split(".", 1)[0]
            size = self.sizes.get(struct_name)
            if off < 0 or off >= MAX_STRUCT or (size is not None and off >= size):
                why = f"outside SIZE({struct_name})={size}" if size is not None else "not a member offset"
                self.reject(f"OFFSET({name})", why)
        for name in ("SECTION_SIZE_BITS", "MAX_PHYSMEM_BITS", "VA_BITS", "PG_lru", "PG_private",
                     "PG_swapcache", "PG_swapbacked", "PG_slab", "PG_hwpoison", "PG_head",
                     "PG_buddy", "PG_offline", "PG_hugetlb"):
            n = self.numbers.get(name)
            if n is not None and not 0 <= n < 64:
                self.reject(f"NUMBER({name})", "not a bit number of a 64-bit word")
        return self.rejected[start:]

    # -- typed accessors ---------------------------------------------------------------------
    def _need(self, table: dict[str, int], kind: str, name: str) -> int:
        try:
            return table[name]
        except KeyError:
            raise VmcoreinfoError(f"VMCOREINFO has no {kind}({name})") from None

    def symbol(self, name: str) -> int:
        return self._need(self.symbols, "SYMBOL", name)

    def size(self, name: str) -> int:
        return self._need(self.sizes, "SIZE", name)

    def offset(self, name: str) -> int:
        return self._need(self.offsets, "OFFSET", name)

    def length(self, name: str) -> int:
        return self._need(self.lengths, "LENGTH", name)

    def number(self, name: str) -> int:
        return self._need(self.numbers, "NUMBER", name)

    @property
    def osrelease(self) -> str | None:
        return self.entries.get("OSRELEASE")

    @property
    def build_id(self) -> str | None:
        return self.entries.get("BUILD-ID")

    @property
    def page_size(self) -> int | None:
        v = self.entries.get("PAGESIZE")
        return int(v) if v and v.isdigit() else None

    @property
    def kerneloffset(self) -> int:
        v = self.entries.get("KERNELOFFSET")
        try:
            return int(v, 16) if v else 0
        except ValueError:
            return 0

    @property
    def crashtime(self) -> int | None:
        v = self.entries.get("CRASHTIME")
        return int(v) if v and v.isdigit() else None

    def kernel_version(self) -> tuple[int, ...]:
        """(major, minor, patch) from OSRELEASE; () when unknown."""
        m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", self.osrelease or "")
        if not m:
            return ()
        return tuple(int(x) for x in m.groups() if x is not None)

    def guess_arch(self) -> str | None:
        """Architecture from its own keys, for dumps whose container does not say."""
        if "VA_BITS" in self.numbers or "kimage_voffset" in self.numbers:
            return "aarch64"
        if "phys_base" in self.numbers or "init_top_pgt" in self.symbols or "pgtable_l5_enabled" in self.numbers:
            return "x86_64"
        return None

    def items(self) -> list[tuple[str, str]]:
        return list(self.entries.items())

    def to_dict(self) -> dict[str, object]:
        return {
            "osrelease": self.osrelease, "build_id": self.build_id, "page_size": self.page_size,
            "kerneloffset": self.kerneloffset, "crashtime": self.crashtime,
            "symbols": {k: f"{v:#x}" for k, v in self.symbols.items()},
            "sizes": self.sizes, "offsets": self.offsets, "lengths": self.lengths, "numbers": self.numbers,
            "configs": self.configs,
            "other": {k: v for k, v in self.entries.items() if not _BRACKET.match(k) and not k.startswith("CONFIG_")},
            "malformed": [m.__dict__ for m in self.malformed],
        }


def diff(a: VmcoreInfo, b: VmcoreInfo) -> list[tuple[str, str | None, str | None]]:
    """Keys whose values differ, in a's order then b's extras: (key, a_value, b_value)."""
    out: list[tuple[str, str | None, str | None]] = []
    for k, v in a.entries.items():
        w = b.entries.get(k)
        if w != v:
            out.append((k, v, w))
    for k, w in b.entries.items():
        if k not in a.entries:
            out.append((k, None, w))
    return out
