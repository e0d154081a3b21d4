"""Writing outputs safely: dumps hold secrets, and a half-written file must never carry the
final name. Files are created exclusively (O_EXCL, never following a planted symlink) under a
temporary name in the destination folder, mode 0600, and renamed only when complete."""
from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from ..errors import OutputError


MAX_SPLIT_PARTS = 4096
_NAME_MAX = 255


def check_output_path(final: str, inputs: Iterable[str] = ()) -> None:
    """Refuse an output name that is not ours to replace: something there that is not a
    regular file (a device such as /dev/null, a FIFO, a socket, a folder), also behind a
    symlink (root replacing /dev/null would break the system), or one of the input dumps
    (same inode: the input would be gone before it was read)."""
    try:
        st = os.stat(final)  # follows a symlink: what it points at counts
    except FileNotFoundError:
        return
    except OSError as e:
        raise OutputError(f"{final}: cannot check the output path: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        what = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, FIFO or socket)"
        via = " (through a symlink)" if os.path.islink(final) else ""
        raise OutputError(f"{final}: the output exists and is {what}{via}; refusing to replace it")
    for src in inputs:
        with contextlib.suppress(OSError):
            s2 = os.stat(src)
            if (s2.st_dev, s2.st_ino) == (st.st_dev, st.st_ino):
                raise OutputError(f"{final}: the output is the input dump {src}; refusing to overwrite it")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], mode: int = 0o600, *,
                  inputs: Iterable[str] = ()) -> Iterator[BinaryIO]:
    final = os.fspath(path)
    check_output_path(final, inputs)
    folder = os.path.dirname(os.path.abspath(final))
    # The temporary name keeps within NAME_MAX however long the final name is. Errors name
    # `final`, the user's path: the temporary is ours, never theirs to look for.
    tmp = os.path.join(folder, f".{os.path.basename(final)[:200]}.{os.urandom(6).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as e:
        raise OutputError(f"{final}: cannot create the output in {folder}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            # By descriptor, not by name: a name can be swapped for a symlink meanwhile.
            os.fchmod(f.fileno(), mode)
            yield f
            f.flush()
            os.fsync(f.fileno())
        # Checked again just before the rename: the path may have changed during the run.
        check_output_path(final, inputs)
        try:
            os.replace(tmp, final)
        except OSError as e:
            raise OutputError(f"{final}: cannot move the finished output into place: {e.strerror or e}") from None
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
