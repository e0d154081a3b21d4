"""The plain character log buffer of kernels before 3.5: `char *log_buf` of log_buf_len bytes,
written cyclically at log_end (a free-running count of bytes ever written), with logged_chars
bytes readable since the last `dmesg -c`. Lines carry their level as a "<N>" prefix and, with
CONFIG_PRINTK_TIME, a "[%5lu.%06lu] " timestamp inside the text.

vmcore-dmesg and makedumpfile print the buffer as it is; records are parsed from its lines
only for filters, --tail and --json.
"""
from __future__ import annotations

import re

from ...errors import CorruptKernelDataError, VmcoreinfoError
from .model import REASONS, Gap, KernelMemory, LogRecord, PrintkLog, read_region

MAX_LOG_BUF = 1 << 31
_PREFIX = re.compile(rb"^<(\d{1,3})>")
_TIME = re.compile(rb"^\[ *(\d+)\.(\d{6})\] ")


def read_plain(mem: KernelMemory) -> PrintkLog:
    vi = mem.vmcoreinfo
    for name in ("log_buf", "log_end", "log_buf_len"):
        if name not in vi.symbols:
            raise VmcoreinfoError(f"VMCOREINFO has no SYMBOL({name}) for the plain printk buffer")
    order = getattr(mem, "byteorder", None) or getattr(getattr(mem, "space", None), "byteorder", "little")
    ptr_size = getattr(getattr(mem, "space", None), "pointer_size", 8)

    def u(addr: int, n: int) -> int:
        return int.from_bytes(mem.read(addr, n), order)

    buf_addr = u(vi.symbols["log_buf"], ptr_size)
    # log_end is `unsigned long` before 2.6.25 and `unsigned` after: on little-endian machines
    # its low 32 bits read the same either way (vmcore-dmesg reads 32 bits too).
    log_end = u(vi.symbols["log_end"], 4)
    buf_len = u(vi.symbols["log_buf_len"], 4)
    logged = u(vi.symbols["logged_chars"], 4) if "logged_chars" in vi.symbols else None
    if not 0 < buf_len <= MAX_LOG_BUF:
        raise CorruptKernelDataError(f"log_buf_len={buf_len} is not a plausible log buffer size")
    region = read_region(mem, buf_addr, buf_len)
    log = PrintkLog(layout="plain", records=[], bytes_read=buf_len + 16)
    for s, e, why in region.bad:
        log.gaps.append(Gap("log buffer", buf_addr + s, e - s, REASONS.get(why, why)))

    n = min(log_end, buf_len)
    raw, lost = _window(region.data, region.bad, log_end, n)
    for lo, hi, why, s, e in lost:
        log.warnings.append(f"printk: log_buf bytes {buf_addr + s:#x}-{buf_addr + e:#x} are "
                            f"{REASONS.get(why, why)}: {hi - lo} byte(s) of the log are lost")
    log.raw = raw
    if logged is not None:
        log.raw_since_clear = _window(region.data, region.bad, log_end, min(logged, n))[0]
    log.records = parse_lines(raw)
    log.levels_known = True  # the "<N>" prefixes say it
    return log


def _window(data: bytes, bad: list[tuple[int, int, str]], log_end: int,
            n: int) -> tuple[bytes, list[tuple[int, int, str, int, int]]]:
    """The last n bytes written before log_end, in logical order, without unreadable bytes;
    a line cut by a gap is dropped rather than glued to another. Also returns the gaps met as
    (logical start, logical end, reason, buffer start, buffer end)."""
    size = len(data)
    start = (log_end - n) % size if size else 0
    pieces: list[tuple[int, bytes]] = []
    lost: list[tuple[int, int, str, int, int]] = []
    pos = 0
    while pos < n:
        phys = (start + pos) % size
        run = min(n - pos, size - phys)
        cur, end = phys, phys + run
        for s, e, why in sorted(bad):
            if e <= cur or s >= end:
                continue
            if s > cur:
                pieces.append((pos + cur - phys, data[cur:s]))
            lost.append((pos + max(s, cur) - phys, pos + min(e, end) - phys, why, s, e))
            cur = max(cur, e)
        if cur < end:
            pieces.append((pos + cur - phys, data[cur:end]))
        pos += run
    if not lost:
        return b"".join(b for _, b in pieces), lost
    out = []
    for p, b in pieces:
        end = p + len(b)
        if any(hi == p for _, hi, *_ in lost):
            nl = b.find(b"\n")
            b = b[nl + 1:] if nl >= 0 else b""
        if any(lo == end for lo, *_ in lost):
            nl = b.rfind(b"\n")
            b = b[:nl + 1] if nl >= 0 else b""
        out.append(b)
    return b"".join(out), lost


def parse_lines(raw: bytes) -> list[LogRecord]:
    """Records of a plain buffer: one per line, level from "<N>", time from "[s.us] "."""
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [_parse_line(line) for line in lines]


def _parse_line(line: bytes) -> LogRecord:
    rec = LogRecord(seq=None, ts_nsec=0, text=line)
    m = _PREFIX.match(line)
    body = line
    if m:
        v = int(m.group(1))
        rec.level, rec.facility = v & 7, v >> 3
        body = line[m.end():]
    t = _TIME.match(body)
    if t:
        rec.ts_nsec = int(t.group(1)) * 1_000_000_000 + int(t.group(2)) * 1000
    return rec
