"""What every printk layout reader produces, and the small memory interface they read through.

The readers never see a Program directly: they take anything with `vmcoreinfo`, `page_size` and
`read(address, size)` (virtual addresses), so unit tests can feed them a dict of bytes and a
VMCOREINFO parsed from synthetic text. Levels come through an optional `member_bits` callable
(BTF), see levels.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ...errors import CorruptKernelDataError, MemoryReadError
from ...vmcoreinfo import VmcoreInfo

LEVEL_NAMES = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")
FACILITY_NAMES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
                  "authpriv", "ftp", "res0", "res1", "res2", "res3",
                  "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7")
# printk_info.flags / printk_log.flags bits (kernel/printk/printk.c enum log_flags)
LOG_NEWLINE = 2
LOG_CONT = 8
CALLER_CPU_BIT = 0x80000000


class KernelMemory(Protocol):
    """The part of a Program the printk readers use."""

    vmcoreinfo: VmcoreInfo

    @property
    def page_size(self) -> int: ...

    def read(self, address: int, size: int) -> bytes: ...


@dataclass(slots=True)
class LogRecord:
    """One kernel log record. `text` is the raw bytes the kernel stored (no escaping)."""

    seq: int | None
    ts_nsec: int
    text: bytes
    caller_id: int | None = None
    level: int | None = None
    facility: int | None = None
    flags: int | None = None
    subsystem: bytes = b""
    device: bytes = b""
    # No text block: an empty message (NO_LPOS) or one whose text the kernel lost (FAILED_LPOS).
    # vmcore-dmesg prints such a record as a bare timestamp; makedumpfile skips it.
    dataless: bool = False
    # The text is gone: lost by the kernel, or on pages the dump does not hold.
    lost: bool = False
    # The text block held fewer bytes than text_len (printed clamped, like vmcore-dmesg).
    truncated: bool = False

    @property
    def caller(self) -> str | None:
        """'T<pid>' or 'C<cpu>' as the kernel's CONFIG_PRINTK_CALLER prefix writes it."""
        if self.caller_id is None:
            return None
        if self.caller_id & CALLER_CPU_BIT:
            return f"C{self.caller_id & ~CALLER_CPU_BIT}"
        return f"T{self.caller_id}"

    @property
    def continuation(self) -> bool | None:
        return None if self.flags is None else bool(self.flags & LOG_CONT)

    @property
    def level_name(self) -> str | None:
        return LEVEL_NAMES[self.level] if self.level is not None and 0 <= self.level < 8 else None

    @property
    def facility_name(self) -> str | None:
        if self.facility is None:
            return None
        return FACILITY_NAMES[self.facility] if self.facility < len(FACILITY_NAMES) else str(self.facility)


@dataclass(frozen=True)
class Gap:
    """Bytes of a kernel buffer that could not be read from the dump."""

    what: str  # "text ring", "descriptor ring", ...
    address: int
    size: int
    reason: str


@dataclass
class PrintkLog:
    """The kernel log of one dump, whatever layout the kernel used."""

    layout: str  # "lockless", "lockless-dict" (early 5.10 rings), "structured", "plain"
    records: list[LogRecord]
    # Structured layout only: positions in `records` before which the walk passed an
    # end-of-buffer marker (a zeroed header), with the marker's timestamp. vmcore-dmesg prints
    # each as a line of its own; kept apart so no one else mistakes it for a record.
    wrap_markers: list[tuple[int, int]] = field(default_factory=list)
    # Plain (pre-3.5) layout: the character buffer as vmcore-dmesg prints it.
    raw: bytes | None = None
    raw_since_clear: bytes | None = None
    clear_seq: int | None = None  # first record after the last `dmesg -c`
    clear_index: int | None = None  # the same as an index into `records` (None: unknown)
    levels_known: bool = False
    levels_note: str | None = None  # why levels are unknown, when they are
    warnings: list[str] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    bytes_read: int = 0


@dataclass
class Region:
    """A kernel buffer read in one piece; pages the dump lacks are zeros and listed in `bad`
    as (start, end) offsets, so readers can tell a real zero from a missing byte."""

    address: int
    data: bytes
    bad: list[tuple[int, int, str]]

    def gap_at(self, start: int, end: int) -> int:
        """Index in `bad` of a missing run that [start, end) (offsets into data) touches, or -1."""
        for g, (s, e, _) in enumerate(self.bad):
            if s < end and start < e:
                return g
        return -1

    def readable(self, start: int, end: int) -> bool:
        return self.gap_at(start, end) < 0


LARGE_REGION = 64 << 20  # above this, most of a buffer must be in the dump before it is read


def read_region(mem: KernelMemory, address: int, size: int) -> Region:
    """Read [address, address+size) with one big read; when that fails, page by page so every
    readable page is kept and each unreadable run becomes one entry of `bad`."""
    try:
        return Region(address, mem.read(address, size), [])
    except MemoryReadError:
        pass
    ps = mem.page_size
    if size > LARGE_REGION:
        # A corrupt length can name gigabytes the dump does not hold: sample before allocating.
        step = 64 * ps
        probes = range(address - address % ps, address + size, step)
        found = 0
        for a in probes:
            try:
                mem.read(a, 1)
                found += 1
            except MemoryReadError:
                pass
        if found * 4 < len(probes):
            raise CorruptKernelDataError(f"{size} bytes at {address:#x}: {len(probes) - found} of {len(probes)} "
                                         f"sampled pages are not in the dump (corrupt size or pointer?)")
    out = bytearray(size)
    bad: list[tuple[int, int, str]] = []
    pos = 0
    # Whole runs of pages are retried in chunks first: a filtered dump usually loses a few pages
    # of a large buffer, and per-page reads through translation cost more than chunk reads.
    chunk = 64 * ps
    while pos < size:
        n = min(size - pos, chunk - ((address + pos) % chunk) if chunk else size - pos)
        try:
            out[pos:pos + n] = mem.read(address + pos, n)
        except MemoryReadError:
            sub = pos
            while sub < pos + n:
                m = min(pos + n - sub, ps - ((address + sub) % ps))
                try:
                    out[sub:sub + m] = mem.read(address + sub, m)
                except MemoryReadError as e:
                    reason = type(e).__name__
                    if bad and bad[-1][1] == sub and bad[-1][2] == reason:
                        bad[-1] = (bad[-1][0], sub + m, reason)
                    else:
                        bad.append((sub, sub + m, reason))
                sub += m
        pos += n
    return Region(address, bytes(out), bad)


REASONS = {
    "PageExcludedError": "pages excluded by dump filtering",
    "PageMissingError": "pages missing from a truncated or incomplete dump",
    "PageNotInDumpError": "outside the memory the dump holds",
    "TranslationError": "not mapped by the kernel page tables in the dump",
    "CorruptPageError": "pages stored damaged in the dump",
}
