"""Files: a task's open file table, and paths of (vfsmount, dentry) pairs (crash's `files`).

    d_path(prog, mnt, dentry)          # "/dev/console", from the dentry/vfsmount chain
    open_files(task)                   # [OpenFile] of a task's fdtable
    task_root_cwd(task)                # (root path, cwd path)

d_path climbs `dentry->d_parent` to the root of its mount (`vfsmount->mnt_root`), then
from the mount (`struct mount`, which contains the vfsmount) to the dentry it is mounted
on in its parent mount (`mnt_mountpoint`, `mnt_parent`), until a mount is its own parent.
Every step is bounded (PATH_MAX bytes, MAX_DEPTH components); a chain that does not end is
reported, never followed forever. Files of pseudo file systems (pipes, sockets, anonymous
inodes) have no path: they are named as the kernel's d_dname does (`pipe:[inode]`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CorruptKernelDataError, MemoryReadError, VmcorekitError

if TYPE_CHECKING:
    from ..program.core import Program
    from ..program.objects import Object

__all__ = ["OpenFile", "d_path", "open_files", "task_root_cwd", "inode_type", "PATH_MAX", "MAX_FDS"]

PATH_MAX = 4096
MAX_DEPTH = 1024  # components of one path (PATH_MAX / 2 would be "a/a/a...", 2048)
MAX_FDS = 1 << 20  # sysctl fs.nr_open's ceiling
NAME_MAX = 255
# Pseudo file systems whose dentries are named by d_dname (fs/pipe.c, net/socket.c, fs/anon_inodes.c).
_DNAME = {"pipefs": "pipe:[{ino}]", "sockfs": "socket:[{ino}]", "anon_inodefs": "anon_inode:{name}"}
# S_IFMT values (include/uapi/linux/stat.h) and crash's words for them.
_TYPES = {0o140000: "SOCK", 0o120000: "LNK", 0o100000: "REG", 0o060000: "BLK", 0o040000: "DIR",
          0o020000: "CHR", 0o010000: "FIFO"}


def inode_type(mode: int) -> str:
    """crash's TYPE word for an inode's i_mode (REG, DIR, CHR, ...; "?" when unknown)."""
    return _TYPES.get(mode & 0o170000, "?")


def _name(d: "Object") -> str:
    q = d.d_name
    n = min(int(q.len), NAME_MAX)
    raw = d.prog_.read(int(q.name), n) if n else b""
    return raw.decode("utf-8", "backslashreplace")


def d_path(prog: "Program", mnt: int, dentry: int, root: tuple[int, int] | None = None) -> str:
    """The path of `dentry` seen through vfsmount `mnt`, up to `root` ((vfsmount, dentry);
    default: the top of the mount tree). CorruptKernelDataError when the chain does not end."""
    mnt_off = prog.offsetof("struct mount", "mnt")
    parts: list[str] = []
    size = 0
    d = prog.object("struct dentry", dentry)
    m = prog.object("struct mount", mnt - mnt_off)
    sb_type = ""
    try:
        sb_type = d.d_sb.s_type.name.string_().decode("ascii", "replace")
    except (VmcorekitError, LookupError):
        pass
    if sb_type in _DNAME and int(d.d_parent) == d.address_:
        ino = int(d.d_inode.i_ino) if int(d.d_inode) else 0
        return _DNAME[sb_type].format(ino=ino, name=_name(d))
    for _ in range(MAX_DEPTH):
        if root is not None and (m.address_ + mnt_off, d.address_) == root:
            break
        mnt_root = int(m.mnt.mnt_root)
        if d.address_ == mnt_root:
            parent = int(m.mnt_parent)
            if parent == m.address_ or parent == 0:
                break  # the top of the mount tree
            d = prog.object("struct dentry", int(m.mnt_mountpoint))
            m = prog.object("struct mount", parent)
            continue
        up = int(d.d_parent)
        if up == d.address_:  # a root that is not its mount's: a detached tree
            parts.append(_name(d))
            break
        name = _name(d)
        size += len(name) + 1
        if size > PATH_MAX:
            raise CorruptKernelDataError(f"path of dentry {dentry:#x}: longer than PATH_MAX ({PATH_MAX})")
        parts.append(name)
        d = prog.object("struct dentry", up)
    else:
        raise CorruptKernelDataError(f"path of dentry {dentry:#x}: more than {MAX_DEPTH} components "
                                     f"(a loop in d_parent or mnt_parent?)")
    return "/" + "/".join(reversed(parts))


@dataclass
class OpenFile:
    fd: int
    file: int
    dentry: int
    inode: int
    type: str
    path: str | None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"fd": self.fd, "file": self.file, "dentry": self.dentry, "inode": self.inode,
                "type": self.type, "path": self.path, "problem": self.problem}


def task_root_cwd(task: "Object") -> tuple[str | None, str | None]:
    """The task's root and working directory (task->fs), None for each unknown."""
    prog = task.prog_
    fs = int(task.fs)
    if not fs:
        return None, None
    f = prog.object("struct fs_struct", fs)
    out: list[str | None] = []
    for p in (f.root, f.pwd):
        try:
            out.append(d_path(prog, int(p.mnt), int(p.dentry)))
        except (VmcorekitError, LookupError):
            out.append(None)
    return out[0], out[1]


def open_files(task: "Object", problems: list[str] | None = None) -> list[OpenFile]:
    """The task's open files, by descriptor. A descriptor whose file, dentry or path cannot
    be read keeps its row with the reason in `problem` (and in `problems`)."""
    prog = task.prog_
    files = int(task.files)
    if not files:
        return []
    fdt = prog.object("struct files_struct", files).fdt
    n = int(fdt.max_fds)
    if not 0 <= n <= MAX_FDS:
        raise CorruptKernelDataError(f"task {task.address_:#x}: fdtable max_fds {n} is not a plausible size")
    ps = prog.platform.pointer_size
    raw = prog.read(int(fdt.fd), n * ps)
    out: list[OpenFile] = []
    for fd in range(n):
        fp = int.from_bytes(raw[fd * ps:(fd + 1) * ps], prog.platform.byteorder)
        if not fp:
            continue
        row = OpenFile(fd, fp, 0, 0, "?", None)
        try:
            f = prog.object("struct file", fp)
            row.dentry = int(f.f_path.dentry)
            row.inode = int(f.f_inode)
            if row.inode:
                row.type = inode_type(int(prog.object("struct inode", row.inode).i_mode))
            row.path = d_path(prog, int(f.f_path.mnt), row.dentry)
        except (MemoryReadError, CorruptKernelDataError, VmcorekitError, LookupError) as e:
            row.problem = f"fd {fd} (file {fp:#x}): {e}"
            if problems is not None:
                problems.append(row.problem)
        out.append(row)
    return out
