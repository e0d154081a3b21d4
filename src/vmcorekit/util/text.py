"""Text from a dump, made safe to show. A dump is hostile input: a task's comm, a module name,
a log line or a symbol can hold ESC (terminal escape sequences that recolour, retitle or hide
output), CR (overwrite what was printed), VT/FF, BEL or DEL. Text output shows every such byte
escaped as `\\xNN`; newline and tab stay (they are layout). JSON escapes on its own; HTML
escapes markup and then uses this."""
from __future__ import annotations

import re
from typing import TypeVar

# C0 controls but tab (09) and newline (0a), and DEL; in text also the C1 controls (U+0080-
# U+009F: U+009B is a one-character CSI to some terminals). Bytes keep 80-9F: in UTF-8 they
# are continuation bytes of ordinary characters.
_CONTROL_STR = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_BYTES = re.compile(b"[\x00-\x08\x0b-\x1f\x7f]")

T = TypeVar("T", str, bytes)


def printable(s: T) -> T:
    """`s` (str or bytes) with each C0 control other than tab and newline, and DEL, written as
    `\\xNN` (lowercase hex, as vmcore-dmesg writes the bytes it escapes)."""
    if isinstance(s, bytes):
        return _CONTROL_BYTES.sub(lambda m: b"\\x%02x" % m[0][0], s) if _CONTROL_BYTES.search(s) else s
    return _CONTROL_STR.sub(lambda m: f"\\x{ord(m[0]):02x}", s) if _CONTROL_STR.search(s) else s
