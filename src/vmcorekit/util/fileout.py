"""Writing outputs safely: dumps hold secrets, and a half-written file must never carry the
final name. Files are created exclusively (O_EXCL, never following a planted symlink) under a
temporary name in the destination folder, mode 0600, and renamed only when complete."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import BinaryIO


MAX_SPLIT_PARTS = 4096
_NAME_MAX = 255


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], mode: int = 0o600) -> Iterator[BinaryIO]:
    final = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(final))
    # The temporary name keeps within NAME_MAX however long the final name is.
    tmp = os.path.join(folder, f".{os.path.basename(final)[:200]}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0),
                 mode)
    try:
        with os.fdopen(fd, "wb") as f:
            # By descriptor, not by name: a name can be swapped for a symlink meanwhile.
            os.fchmod(f.fileno(), mode)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def safe_split_names(output: str | os.PathLike[str], n: int) -> list[str]:
    """The files of an n-part --split output: OUTPUT.1 ... OUTPUT.n beside OUTPUT (OUTPUT itself
    when n is 1). Each is a plain file name in OUTPUT's folder — no separator, no '.' or '..',
    no NUL, within NAME_MAX — so none can land outside that folder; ValueError otherwise.
    (A symlink already at one of the names is replaced by atomic_output, never written through.)"""
    if not 1 <= n <= MAX_SPLIT_PARTS:
        raise ValueError(f"--split needs 1 to {MAX_SPLIT_PARTS} parts, got {n}")
    out = os.fspath(output)
    if "\0" in out:
        raise ValueError("output name contains a NUL byte")
    base = os.path.basename(out)
    if base in ("", ".", "..") or out.endswith(os.sep):
        raise ValueError(f"{out!r}: expected a file name for the output, not a folder")
    folder = os.path.dirname(os.path.abspath(out))
    names = [out] if n == 1 else [os.path.join(os.path.dirname(out), f"{base}.{i}") for i in range(1, n + 1)]
    for name in names:
        b = os.path.basename(name)
        if len(os.fsencode(b)) > _NAME_MAX:
            raise ValueError(f"output name {b!r} is longer than {_NAME_MAX} bytes")
        if os.path.dirname(os.path.abspath(name)) != folder:
            raise ValueError(f"output name {name!r} leaves the folder {folder!r}")
        if os.path.isdir(name):
            raise ValueError(f"{name!r} is a folder; expected a file name")
    return names
