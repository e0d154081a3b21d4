"""The kernel log (printk buffer) of a dump, in every layout Linux has used.

The layout is chosen from what VMCOREINFO exports, never from the release string:
SYMBOL(prb) -> the lockless ring buffer (5.10+, lockless.py); SYMBOL(log_first_idx) -> the
structured printk_log records (3.5-5.9, structured.py); SYMBOL(log_end) -> the plain character
buffer (older kernels, plain.py). This is the order vmcore-dmesg tries them in too.

    log = read_log(prog)              # PrintkLog: records, warnings, clear_seq, ...
    for rec, line in render(log):     # vmcore-dmesg's bytes; style="makedumpfile" for its form
        sys.stdout.buffer.write(line)
"""
from __future__ import annotations

from ...errors import VmcoreinfoError
from .format import escape, human_clock, json_lines, json_record, record_prefix, render, seconds_stamp
from .levels import BitfieldReader, MemberBits, bitfield_reader, member_bits_of
from .model import (FACILITY_NAMES, LEVEL_NAMES, Gap, KernelMemory, LogRecord, PrintkLog, Region,
                    read_region)

__all__ = ["read_log", "layout_of", "since_clear", "render", "escape", "json_lines", "json_record",
           "record_prefix", "seconds_stamp", "human_clock", "LogRecord", "PrintkLog", "Gap", "KernelMemory",
           "Region", "read_region", "BitfieldReader", "MemberBits", "bitfield_reader", "member_bits_of",
           "LEVEL_NAMES", "FACILITY_NAMES", "parse_levels"]


def layout_of(mem: KernelMemory) -> str:
    """'lockless', 'structured' or 'plain', from the VMCOREINFO symbols."""
    s = mem.vmcoreinfo.symbols
    if "prb" in s:
        return "lockless"
    if "log_first_idx" in s:
        return "structured"
    if "log_buf" in s and "log_end" in s:
        return "plain"
    raise VmcoreinfoError("VMCOREINFO locates no kernel log: it has none of SYMBOL(prb) (5.10+), "
                          "SYMBOL(log_first_idx) (3.5-5.9) or SYMBOL(log_end) (older kernels)")


def read_log(mem: KernelMemory, *, levels: bool = True) -> PrintkLog:
    """Every readable record of the dump's kernel log. Unreadable parts of the buffers become
    entries of `warnings` (one per gap); level, facility and flags are filled in when the
    dump's BTF describes the record struct (`levels=False` skips looking)."""
    layout = layout_of(mem)
    order = getattr(mem, "byteorder", None) or getattr(getattr(mem, "space", None), "byteorder", "little")
    if layout == "plain":
        from .plain import read_plain
        return read_plain(mem)
    structs = ("printk_info",) if layout == "lockless" else ("printk_log", "log")
    bits, note = None, "not looked up"
    if levels:
        member_bits, note = member_bits_of(mem)
        if member_bits is not None:
            bits, note = bitfield_reader(member_bits, structs, order)
    if layout == "lockless":
        from .lockless import read_lockless
        log = read_lockless(mem, bits)
    else:
        from .structured import read_structured
        log = read_structured(mem, bits)
    if bits is None:
        log.levels_note = note
    return log


def since_clear(log: PrintkLog) -> list[LogRecord]:
    """The records after the last `dmesg -c` (clear_seq / clear_idx), like makedumpfile's
    --partial-dmesg. All records when the dump does not say where the clear was."""
    if log.layout == "plain":
        if log.raw_since_clear is None:
            return log.records
        from .plain import parse_lines
        return parse_lines(log.raw_since_clear)
    if log.clear_seq is not None:
        return [r for r in log.records if r.seq is None or r.seq >= log.clear_seq]
    if log.clear_index is not None:
        return log.records[log.clear_index:]
    return log.records


_LEVEL_ALIASES = {"error": 3, "warning": 4, "panic": 0, "crit": 2, "critical": 2}


def parse_levels(spec: str) -> set[int]:
    """'err,warn' -> {3, 4}; 'warn+' -> warn and everything more severe (0..4); numbers work."""
    out: set[int] = set()
    for part in spec.split(","):
        p = part.strip().lower()
        if not p:
            continue
        plus = p.endswith("+")
        p = p.rstrip("+")
        if p.isdigit() and int(p) < 8:
            lvl = int(p)
        elif p in LEVEL_NAMES:
            lvl = LEVEL_NAMES.index(p)
        elif p in _LEVEL_ALIASES:
            lvl = _LEVEL_ALIASES[p]
        else:
            raise ValueError(f"unknown log level {part.strip()!r} (expected one of {', '.join(LEVEL_NAMES)})")
        out.update(range(lvl + 1) if plus else (lvl,))
    return out
