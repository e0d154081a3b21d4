"""makedumpfile's flattened format (-F, and QEMU 7.2's kdump-zlib output): a 4096-byte header
("makedumpfile", type 1, version 1, big-endian), then records of (offset, size) as big-endian
int64 followed by `size` bytes that belong at `offset` of the file the stream describes, ended
by (-1, -1). Shared by the reader (dump/flat.py) and the filter's flattened writer."""
from __future__ import annotations

import struct

FLAT_SIGNATURE = b"makedumpfile"
FLAT_HEADER_SIZE = 4096
FLAT_TYPE = 1
FLAT_VERSION = 1
FLAT_TYPE_VERSION = struct.Struct(">QQ")  # at offset 16 of the header
TYPE_VERSION_OFF = 16
RECORD = struct.Struct(">qq")  # offset, size
END_MARK = RECORD.pack(-1, -1)


def is_flattened(head: bytes) -> bool:
    """True if `head` (the first bytes of a file, 16 or more) starts a flattened stream."""
    return len(head) >= 16 and head[:12] == FLAT_SIGNATURE and head[12:16] == b"\0\0\0\0"


def flat_header() -> bytes:
    """The stream's header, as makedumpfile writes it."""
    head = (FLAT_SIGNATURE + bytes(TYPE_VERSION_OFF - len(FLAT_SIGNATURE))
            + FLAT_TYPE_VERSION.pack(FLAT_TYPE, FLAT_VERSION))
    return head + bytes(FLAT_HEADER_SIZE - len(head))
