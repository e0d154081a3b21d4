"""Mounts of a mount namespace, as crash's `mount` lists them (and /proc/mounts).

    mounts(prog, task=None)    # [Mount] of init's namespace, or of `task`'s

A namespace's mounts are on mnt_namespace.list (mount.mnt_list) up to 6.7, in the
mnt_namespace.mounts red-black tree (mount.mnt_node) from 6.8. A mount's path is built the
kernel's way (d_path): dentry names up to the mount's root, then across to the parent mount's
mountpoint, until the namespace root; bounded in depth and length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CorruptKernelDataError, MemoryReadError, TypeLookupError, partial_result
from ..program.objects import Object
from .lists import list_nodes, rbtree_nodes

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["Mount", "mounts", "MAX_MOUNTS", "mount_path", "d_path", "file_path"]

MAX_MOUNTS = 1 << 16
_MAX_DEPTH = 1024
_MAX_NAME = 256


@dataclass(frozen=True)
class Mount:
    address: int  # struct mount
    superblock: int
    fstype: str
    devname: str
    dirname: str

    def as_dict(self) -> dict[str, Any]:
        return {"mount": self.address, "superblock": self.superblock, "type": self.fstype,
                "devname": self.devname, "dirname": self.dirname}


def _cstr(prog: "Program", addr: int, n: int = _MAX_NAME) -> str:
    if not addr:
        return ""
    try:
        return prog.read_cstring(addr, n).decode("utf-8", "backslashreplace")
    except MemoryReadError:
        return "?"


def _dname(prog: "Program", dentry: Object) -> str:
    return _cstr(prog, int(dentry.d_name.name))


def mount_path(prog: "Program", mnt: Object) -> str:
    """The mount's directory, as d_path() would print it from the namespace root."""
    m_parent = int(mnt.mnt_parent)
    if m_parent == mnt.address_:
        return "/"
    return d_path(prog, Object(prog, "struct mount", address=m_parent), mnt.mnt_mountpoint)


def d_path(prog: "Program", m: Object, d: Object) -> str:
    """The path of dentry `d` seen through mount `m` (a struct mount), as d_path() prints it."""
    parts: list[str] = []
    start = m.address_
    for _ in range(_MAX_DEPTH):
        if int(d) == int(m.mnt.mnt_root):
            parent = int(m.mnt_parent)
            if parent == m.address_ or not parent:
                break
            d, m = m.mnt_mountpoint, Object(prog, "struct mount", address=parent)
            continue
        parent_d = int(d.d_parent)
        parts.append(_dname(prog, d))
        if parent_d == int(d):  # a filesystem root that is not the mount's: detached
            break
        d = d.d_parent
    else:
        raise CorruptKernelDataError(f"mount {start:#x}: path deeper than {_MAX_DEPTH}")
    return "/" + "/".join(reversed(parts))


def _namespace(prog: "Program", task: int | None) -> Object:
    t = Object(prog, "struct task_struct", address=task if task is not None else prog.symbol_address("init_task"))
    ns = t.nsproxy
    if not int(ns):
        raise CorruptKernelDataError(f"task {t.address_:#x} has no nsproxy (exiting)")
    return ns.mnt_ns


def mounts(prog: "Program", task: int | None = None, *, limit: int = MAX_MOUNTS) -> list[Mount]:
    """The mounts of init's mount namespace (or `task`'s), in the namespace's order."""
    if not prog.has_btf:
        raise TypeLookupError("mounts need struct mount's layout, which only BTF gives")
    T = prog.types
    ns = _namespace(prog, task)
    if T.has_member("struct mnt_namespace", "list"):
        o = prog.offsetof("struct mount", "mnt_list")
        nodes = list_nodes(prog, ns.list.address_, what="mount namespace list", limit=limit)
    elif T.has_member("struct mnt_namespace", "mounts"):
        o = prog.offsetof("struct mount", "mnt_node")
        nodes = rbtree_nodes(prog, ns.mounts.address_, what="mount namespace tree", limit=limit)
    else:
        raise TypeLookupError("struct mnt_namespace has neither list nor mounts")
    out: list[Mount] = []
    try:
        for node in nodes:
            m = Object(prog, "struct mount", address=node - o)
            try:
                sb = m.mnt.mnt_sb
                fstype = _cstr(prog, int(sb.s_type.name), 64)
                out.append(Mount(m.address_, int(sb), fstype, _cstr(prog, int(m.mnt_devname)),
                                 mount_path(prog, m)))
            except (MemoryReadError, CorruptKernelDataError) as e:
                partial_result(f"mount {m.address_:#x}: {e}")
    except (MemoryReadError, CorruptKernelDataError) as e:
        partial_result(f"mounts: {e} (after {len(out)} mounts)")
    return out


def file_path(prog: "Program", file: Object) -> str:
    """The path of a `struct file *` (its f_path: vfsmount and dentry)."""
    vfs = int(file.f_path.mnt)
    m = Object(prog, "struct mount", address=vfs - prog.offsetof("struct mount", "mnt"))
    return d_path(prog, m, file.f_path.dentry)
