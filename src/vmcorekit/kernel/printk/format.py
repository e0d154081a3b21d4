"""Text forms of the kernel log, byte for byte as the peer tools write them.

vmcore-dmesg (kexec-tools util_lib/elf_info.c): each record is "[%5llu.%06llu] " (seconds and
microseconds, truncated) + text + "\\n"; a byte that is neither isprint() nor isspace() in the
C locale becomes "\\xNN", everything else (including a newline inside the text) is written as
is; a record without a text block still gets its timestamp line; in the structured layout the
end-of-buffer marker it walks over is printed as a record too; the plain buffer is written raw.

makedumpfile --dump-dmesg (printk.c dump_record, makedumpfile.c dump_log_entry): the same
prefix and escaping, but a newline inside the text is followed by as many spaces as the prefix
is long, and records without a text block are skipped. makedumpfile 1.7.2 escapes bytes >= 0x80
through a signed char ("\\xffffffc3"); vmcorekit writes "\\xc3" in both forms.

drgn's get_dmesg (style "raw"): the same prefix and the text's bytes unescaped, one line per
record with text.
"""
from __future__ import annotations

import re
import time as _time
from collections.abc import Callable, Iterable, Iterator, Sequence

from .model import LogRecord, PrintkLog

# Bytes vmcore-dmesg and makedumpfile write as they are: isprint() or isspace() in the C locale.
_NONPRINT = re.compile(rb"[^\x20-\x7e\t\n\x0b\x0c\r]")
_HEX = [b"\\x%02x" % i for i in range(256)]


def escape(text: bytes) -> bytes:
    """Non-printable bytes as \\xNN (lowercase), the way vmcore-dmesg writes them."""
    if not _NONPRINT.search(text):
        return text
    return _NONPRINT.sub(lambda m: _HEX[m[0][0]], text)


def seconds_stamp(ts_nsec: int) -> bytes:
    return b"[%5d.%06d]" % (ts_nsec // 1_000_000_000, ts_nsec % 1_000_000_000 // 1000)


def human_clock(crashtime: int, crash_ts_nsec: int) -> Callable[[int], bytes]:
    """Wall-clock stamps anchored on CRASHTIME: the crash happened at CRASHTIME (seconds since
    the epoch) and, on the kernel's clock, at `crash_ts_nsec` (the last record's timestamp).
    Local time, laid out like `dmesg -T`; TZ is honoured."""

    def stamp(ts_nsec: int) -> bytes:
        wall = crashtime - (crash_ts_nsec - ts_nsec) / 1e9
        return b"[" + _time.strftime("%a %b %e %H:%M:%S %Y", _time.localtime(wall)).encode() + b"]"

    return stamp


def record_prefix(rec: LogRecord, stamp: Callable[[int], bytes] | None, show_caller: bool) -> bytes:
    """"[    1.234567] ", with the caller as the kernel's console writes it
    ("[    1.234567][  T123] ") when asked; empty when neither is wanted."""
    out = stamp(rec.ts_nsec) if stamp is not None else b""
    if show_caller:
        caller = rec.caller
        out += b"[%6s]" % (caller.encode() if caller else b"?")
    return out + b" " if out else b""


def _dev_lines(rec: LogRecord) -> bytes:
    """SUBSYSTEM= / DEVICE= as /dev/kmsg shows them: continuation lines starting with a space."""
    out = b""
    if rec.subsystem:
        out += b" SUBSYSTEM=" + escape(rec.subsystem) + b"\n"
    if rec.device:
        out += b" DEVICE=" + escape(rec.device) + b"\n"
    return out


def render(log: PrintkLog, records: Sequence[LogRecord] | None = None, *, style: str = "vmcore-dmesg",
           stamp: Callable[[int], bytes] | None = seconds_stamp, show_caller: bool = False,
           dev_info: bool = False) -> Iterator[tuple[LogRecord | None, bytes]]:
    """Lines of the log as (record, bytes) pairs, `records` defaulting to the whole log. With the
    whole log and default options the bytes are those vmcore-dmesg (style "vmcore-dmesg") or
    makedumpfile --dump-dmesg (style "makedumpfile") write."""
    if style not in ("vmcore-dmesg", "makedumpfile", "raw"):
        raise ValueError(f"unknown style {style!r}")
    whole = records is None
    if log.layout == "plain":
        yield from _render_plain(log, records)
        return
    recs = log.records if records is None else records
    markers = dict(log.wrap_markers) if whole and style == "vmcore-dmesg" else {}
    indent_nl = style == "makedumpfile"
    for i, rec in enumerate(recs):
        if i in markers:
            yield None, record_prefix(LogRecord(None, markers[i], b""), stamp, show_caller) + b"\n"
        if rec.lost and not rec.dataless:
            continue  # text on pages the dump lacks: reported once per gap on stderr
        if rec.dataless and style != "vmcore-dmesg":
            continue
        prefix = record_prefix(rec, stamp, show_caller)
        body = rec.text if style == "raw" else escape(rec.text)
        if indent_nl and b"\n" in body:
            body = body.replace(b"\n", b"\n" + b" " * len(prefix))
        line = prefix + body + b"\n"
        if dev_info:
            line += _dev_lines(rec)
        yield rec, line
    if len(recs) in markers:
        yield None, record_prefix(LogRecord(None, markers[len(recs)], b""), stamp, show_caller) + b"\n"


def _render_plain(log: PrintkLog, records: Sequence[LogRecord] | None) -> Iterator[tuple[LogRecord | None, bytes]]:
    """The pre-3.5 buffer is text already: whole, it is written raw (as both tools do)."""
    if records is None:
        if log.raw:
            yield None, log.raw
        return
    for rec in records:
        yield rec, rec.text + b"\n"


def json_record(rec: LogRecord) -> dict[str, object]:
    """One record as a JSON object: only what the dump says (level/facility when known)."""
    try:
        text = rec.text.decode("utf-8")
        hexed = None
    except UnicodeDecodeError:
        text = rec.text.decode("utf-8", "backslashreplace")
        hexed = rec.text.hex()
    obj: dict[str, object] = {"seq": rec.seq, "ts_nsec": rec.ts_nsec, "caller": rec.caller, "text": text}
    if hexed is not None:
        obj["text_hex"] = hexed
    if rec.level is not None:
        obj["level"] = rec.level
        obj["level_name"] = rec.level_name
    if rec.facility is not None:
        obj["facility"] = rec.facility
        obj["facility_name"] = rec.facility_name
    if rec.flags is not None:
        obj["cont"] = rec.continuation
    if rec.subsystem:
        obj["subsystem"] = rec.subsystem.decode("utf-8", "backslashreplace")
    if rec.device:
        obj["device"] = rec.device.decode("utf-8", "backslashreplace")
    if rec.dataless:
        obj["dataless"] = True
    if rec.lost:
        obj["lost"] = True
    if rec.truncated:
        obj["truncated"] = True
    return obj


def json_lines(records: Iterable[LogRecord]) -> Iterator[bytes]:
    import json  # here: plain `dmesg` never loads it

    for rec in records:
        yield json.dumps(json_record(rec), ensure_ascii=False).encode("utf-8") + b"\n"
