"""Triage of a plain kernel log (console capture, dmesg, journal or syslog): its crash title,
class, guilty frame, signature and every report in it — `vmcorekit triage --log FILE`.

Files are read in chunks, line by line with each line bounded, so a log of any size streams
in constant memory. A file that is not a text log (empty, binary, not UTF-8 text, a folder,
unreadable) raises LogInputError naming it; stray invalid bytes inside a text log are fine
(they become \\xNN escapes).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO, Any

from ..errors import LogInputError
from ..kernel.printk.events import MAX_LINE_CHARS
from .titles import load_rules, title_log

CHUNK = 1 << 20
SNIFF = 64 << 10
MAX_REPORTS = 64   # reports listed per log (the title always comes from the first)
def _check_text(sample: bytes, name: str) -> None:
    if not sample:
        raise LogInputError(f"{name}: empty file, expected a kernel log")
    # Console captures carry some garbage (NULs, stray bytes, escape sequences); a file where
    # a quarter of the characters are not text is not a log.
    text = sample.decode("utf-8", "replace")
    bad = text.count("\ufffd") + sum(1 for c in text if c < " " and c not in "\t\r\n\x1b")
    if bad * 4 > len(text):
        what = "binary data" if "\0" in text else "not UTF-8 text"
        raise LogInputError(f"{name}: {what} ({bad} of {len(text)} characters are not text), "
                            "expected a kernel log")
    if "\n" not in text and len(sample) >= SNIFF:
        raise LogInputError(f"{name}: no line breaks in the first {SNIFF // 1024} KiB, expected a kernel log")


def _lines(f: IO[bytes], first: bytes) -> Iterator[bytes]:
    """Lines of a binary stream, each cut at MAX_LINE_CHARS bytes (the rest of an over-long
    line is skipped), reading CHUNK bytes at a time."""
    buf = first
    skipping = False
    while True:
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            if not skipping:
                yield buf[start:min(nl, start + MAX_LINE_CHARS)]
            skipping = False
            start = nl + 1
        rest = buf[start:]
        if len(rest) > MAX_LINE_CHARS:
            if not skipping:
                yield rest[:MAX_LINE_CHARS]
            skipping, rest = True, b""
        chunk = f.read(CHUNK)
        if not chunk:
            if rest and not skipping:
                yield rest
            return
        buf = rest + chunk


def open_log(path: str, stdin: IO[bytes] | None = None) -> tuple[IO[bytes], bytes]:
    """(the open stream, its first bytes), after checking it is a text log. `-` is stdin."""
    if path == "-":
        import sys
        f: IO[bytes] = stdin if stdin is not None else sys.stdin.buffer
        name = "<stdin>"
    else:
        name = path
        if os.path.isdir(path):
            raise LogInputError(f"{path}: is a directory, expected a kernel log file")
        try:
            f = open(path, "rb")
        except OSError as e:
            raise LogInputError(f"{path}: {e.strerror or e}") from None
    try:
        first = f.read(SNIFF)
        _check_text(first, name)
    except OSError as e:
        f.close()
        raise LogInputError(f"{name}: {e.strerror or e}") from None
    except LogInputError:
        if f is not stdin and path != "-":
            f.close()
        raise
    return f, first


def log_lines(path: str, stdin: IO[bytes] | None = None) -> Iterator[bytes]:
    """The lines of a log file (checked to be text first; see open_log)."""
    f, first = open_log(path, stdin)
    try:
        yield from _lines(f, first)
    finally:
        if path != "-":
            f.close()


def triage_lines(lines: Any, source: str) -> dict[str, Any]:
    """The JSON-ready triage of one log given as lines (str or bytes)."""
    rules = load_rules()
    first, every = title_log(lines, rules, keep=MAX_REPORTS)
    rep = first.report if first is not None else None
    out: dict[str, Any] = {
        "source": source, "title": None, "alt_titles": [], "class": None, "guilty_frame": None,
        "corrupted": False, "signature": None,
        "reports": [{"title": t.title, "class": t.cls, "family": t.report.family, "kind": t.report.kind,
                     "start": t.report.start, "end": t.report.end, "corrupted": t.corrupted,
                     "guilty_frame": t.guilty_frame}
                    for t in every if t.report is not None],
        "cpu": None, "pid": None, "comm": None, "taint": None, "rules_version": rules.version}
    if first is not None and rep is not None:
        out.update({"title": first.title, "alt_titles": first.alt_titles, "class": first.cls,
                    "guilty_frame": first.guilty_frame, "corrupted": first.corrupted,
                    "signature": first.signature, "cpu": rep.cpu, "pid": rep.pid, "comm": rep.comm,
                    "taint": rep.taint})
    return out


def triage_log(path: str, stdin: IO[bytes] | None = None) -> dict[str, Any]:
    """The triage of one log file (`-`: stdin). Raises LogInputError when it is not a log."""
    name = "<stdin>" if path == "-" else path
    try:
        return triage_lines(log_lines(path, stdin), name)
    except OSError as e:
        raise LogInputError(f"{name}: {e.strerror or e}") from None
