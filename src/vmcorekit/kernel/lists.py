"""Kernel linked structures: list_head, hlist, llist, rbtree; container_of.

Every walk is bounded and cycle-checked, because a crash dump is exactly where lists are
broken: a node seen twice (a cycle that does not pass through the head), a next pointer that
does not read (wild or poisoned), a NULL where the list must close, or more entries than
`limit`. Each raises CorruptKernelDataError naming the list and the address, after yielding
every good entry before it; with on_error="warn" the walk instead warns and stops there.

Cycle check: the first EXACT_NODES nodes go in a set (a repeat is caught the moment it
happens); past that Brent's algorithm takes over, O(1) memory, so a long corrupted walk
cannot eat memory either.

Arguments follow drgn: `head` is a `struct list_head` object or a pointer to one; plain
addresses work too when `prog=` is given.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ..errors import CorruptKernelDataError, MemoryReadError, ObjectError, PartialResultWarning
from ..program.objects import Object
from ..program.types.model import Type, TypeKind

if TYPE_CHECKING:
    from ..program.core import Program

EXACT_NODES = 1 << 16
DEFAULT_LIMIT = 1 << 22
# A red-black tree of n nodes is at most 2*log2(n+1) deep; 2**64 nodes fit in 128 levels.
RB_MAX_DEPTH = 128


class _CycleGuard:
    def __init__(self, what: str, limit: int) -> None:
        self.what = what
        self.limit = limit
        self.seen: set[int] = set()
        self.count = 0
        self.tortoise: int | None = None
        self.power = 1
        self.lam = 0

    def check(self, node: int) -> None:
        self.count += 1
        if self.count > self.limit:
            raise CorruptKernelDataError(f"{self.what}: more than {self.limit} entries "
                                         f"(at {node:#x}); a cycle or corruption? (limit=)")
        if node in self.seen or node == self.tortoise:
            raise CorruptKernelDataError(f"{self.what}: cycle: entry {node:#x} comes again "
                                         f"after {self.count - 1} entries without returning "
                                         f"to the head")
        if len(self.seen) < EXACT_NODES:
            self.seen.add(node)
            return
        self.lam += 1
        if self.tortoise is None or self.lam == self.power:
            self.tortoise = node
            self.power *= 2
            self.lam = 0


def _prog_of(obj: "Object | int", prog: "Program | None") -> "Program":
    if isinstance(obj, Object):
        return obj.prog_
    if prog is None:
        raise ObjectError("a plain address needs prog= to be walked")
    return prog


def _address_of_struct(obj: "Object | int", tag: str) -> int:
    """Address of a `struct tag`, given it or a pointer to it (or an int address)."""
    if isinstance(obj, int):
        return obj
    t = obj.type_.strip_typedefs()
    if t.kind == TypeKind.POINTER:
        return int(obj)
    if t.kind == TypeKind.STRUCT and obj.address_ is not None:
        return obj.address_
    raise ObjectError(f"expected a struct {tag} or a pointer to one, got "
                      f"{obj.type_.type_name()!r}")


def _member_offset(prog: "Program", spec: str, member: str, default: int) -> int:
    """Program.offsetof(), else `default`: with no types at all the ABI layout of list and rb
    nodes is fixed (and minimal stand-ins for a Program have no offsetof)."""
    try:
        return prog.offsetof(spec, member)
    except Exception:
        return default


def _read_ptr(prog: "Program", addr: int, what: str, where: str) -> int:
    """A link of a walk; unreadable is corruption (a wild pointer), not a missing page. Read
    with read_u64/read_u32, which minimal stand-ins for a Program have too."""
    try:
        return prog.read_u64(addr) if prog.space.pointer_size == 8 else prog.read_u32(addr)
    except MemoryReadError as e:
        raise CorruptKernelDataError(f"{what}: {where} at {addr:#x} does not read "
                                     f"(wild pointer?): {e}") from None


def _entry_type(prog: "Program", type: "str | Type") -> Type:
    t = prog.types.lookup(type)
    return t


def guarded_walk(gen: Iterator[int], on_error: str) -> Iterator[int]:
    """The nodes of a bounded walk; where it breaks (CorruptKernelDataError) either raise
    (on_error="raise") or warn a PartialResultWarning and stop (on_error="warn")."""
    if on_error not in ("raise", "warn"):
        raise ValueError("on_error must be 'raise' or 'warn'")
    try:
        yield from gen
    except CorruptKernelDataError as e:
        if on_error == "raise":
            raise
        # A UserWarning subclass: the CLI reports it once and exits 3 (partial result).
        warnings.warn(PartialResultWarning(str(e)), stacklevel=3)


_run = guarded_walk  # the older private name


def _entries(p: "Program", type: "str | Type", member: str,
             walk: Callable[[str], Iterator[int]], on_error: str) -> Iterator[Object]:
    """`type *` of each node address `walk(name)` yields, the nodes being `member` of `type`;
    `name` ("struct foo.member") is for the walk's error messages."""
    t = _entry_type(p, type)
    off = p.types.offsetof(t, member)
    pt = p.types.pointer(t)
    for node in guarded_walk(walk(f"{t.type_name()}.{member}"), on_error):
        yield Object(p, pt, (node - off) & 0xFFFFFFFFFFFFFFFF)


# -- container_of -----------------------------------------------------------------------------
def container_of(ptr: "Object | int", type: "str | Type", member: str, *,
                 prog: "Program | None" = None) -> Object:
    """Pointer to the `type` that contains the `member` at `ptr` (`type *`)."""
    p = _prog_of(ptr, prog)
    t = _entry_type(p, type)
    if isinstance(ptr, Object):
        s = ptr.type_.strip_typedefs()
        addr = int(ptr) if s.kind == TypeKind.POINTER else ptr.address_
        if addr is None:
            raise ObjectError("container_of() needs a pointer or an object with an address")
    else:
        addr = ptr
    off = p.types.offsetof(t, member)
    return Object(p, p.types.pointer(t), (addr - off) & 0xFFFFFFFFFFFFFFFF)


# -- list_head --------------------------------------------------------------------------------
def list_nodes(prog: "Program", head: int, *, what: str | None = None,
               limit: int = DEFAULT_LIMIT, reverse: bool = False,
               validate: bool = False) -> Iterator[int]:
    """Addresses of the list_head nodes of the list at `head` (head itself excluded).
    With validate=True every node's back pointer is checked too."""
    what = what or f"list at {head:#x}"
    o_next = _member_offset(prog, "struct list_head", "next", 0)
    o_prev = _member_offset(prog, "struct list_head", "prev", prog.space.pointer_size)
    fwd, back = (o_prev, o_next) if reverse else (o_next, o_prev)
    guard = _CycleGuard(what, limit)
    prev = head
    node = _read_ptr(prog, head + fwd, what, "the head's pointer")
    while node != head:
        if node == 0:
            raise CorruptKernelDataError(f"{what}: NULL pointer in entry after {prev:#x} "
                                         f"(list not closed)")
        guard.check(node)
        nxt = _read_ptr(prog, node + fwd, what, f"pointer of entry {node:#x}")
        if validate:
            b = _read_ptr(prog, node + back, what, f"back pointer of entry {node:#x}")
            if b != prev:
                raise CorruptKernelDataError(f"{what}: entry {node:#x} points back to "
                                             f"{b:#x}, not to {prev:#x}")
        yield node
        prev, node = node, nxt


def list_for_each(head: "Object | int", *, prog: "Program | None" = None,
                  limit: int = DEFAULT_LIMIT, on_error: str = "raise",
                  reverse: bool = False, validate: bool = False) -> Iterator[Object]:
    """`struct list_head *` of each node of a list."""
    p = _prog_of(head, prog)
    h = _address_of_struct(head, "list_head")
    lt = p.types.pointer(p.types.lookup("struct list_head"))
    for node in guarded_walk(list_nodes(p, h, limit=limit, reverse=reverse, validate=validate),
                     on_error):
        yield Object(p, lt, node)


def list_for_each_entry(type: "str | Type", head: "Object | int", member: str, *,
                        prog: "Program | None" = None, limit: int = DEFAULT_LIMIT,
                        on_error: str = "raise", reverse: bool = False,
                        validate: bool = False) -> Iterator[Object]:
    """`type *` of each entry of a list whose nodes are `member` of `type`:
    list_for_each_entry("struct task_struct", prog["init_task"].tasks.address_of_(), "tasks")."""
    p = _prog_of(head, prog)
    h = _address_of_struct(head, "list_head")
    yield from _entries(p, type, member, lambda name: list_nodes(
        p, h, what=f"list {name} (head {h:#x})", limit=limit, reverse=reverse,
        validate=validate), on_error)


def list_empty(head: "Object | int", *, prog: "Program | None" = None) -> bool:
    p = _prog_of(head, prog)
    h = _address_of_struct(head, "list_head")
    return _read_ptr(p, h + _member_offset(p, "struct list_head", "next", 0), "list",
                     "head") == h


def list_count(head: "Object | int", *, prog: "Program | None" = None,
               limit: int = DEFAULT_LIMIT) -> int:
    p = _prog_of(head, prog)
    return sum(1 for _ in list_nodes(p, _address_of_struct(head, "list_head"), limit=limit))


# -- hlist ------------------------------------------------------------------------------------
def hlist_nodes(prog: "Program", head: int, *, what: str | None = None,
                limit: int = DEFAULT_LIMIT) -> Iterator[int]:
    """Addresses of the hlist_node nodes of the hlist_head at `head` (NULL-terminated)."""
    what = what or f"hlist at {head:#x}"
    o_first = _member_offset(prog, "struct hlist_head", "first", 0)
    o_next = _member_offset(prog, "struct hlist_node", "next", 0)
    guard = _CycleGuard(what, limit)
    node = _read_ptr(prog, head + o_first, what, "the head's first pointer")
    while node:
        guard.check(node)
        nxt = _read_ptr(prog, node + o_next, what, f"next pointer of entry {node:#x}")
        yield node
        node = nxt


def hlist_for_each(head: "Object | int", *, prog: "Program | None" = None,
                   limit: int = DEFAULT_LIMIT, on_error: str = "raise") -> Iterator[Object]:
    p = _prog_of(head, prog)
    h = _address_of_struct(head, "hlist_head")
    nt = p.types.pointer(p.types.lookup("struct hlist_node"))
    for node in guarded_walk(hlist_nodes(p, h, limit=limit), on_error):
        yield Object(p, nt, node)


def hlist_for_each_entry(type: "str | Type", head: "Object | int", member: str, *,
                         prog: "Program | None" = None, limit: int = DEFAULT_LIMIT,
                         on_error: str = "raise") -> Iterator[Object]:
    p = _prog_of(head, prog)
    h = _address_of_struct(head, "hlist_head")
    yield from _entries(p, type, member, lambda name: hlist_nodes(
        p, h, what=f"hlist {name} (head {h:#x})", limit=limit), on_error)


# -- llist (lock-less, NULL-terminated singly linked) -----------------------------------------
def llist_for_each_entry(type: "str | Type", first: "Object | int", member: str, *,
                         prog: "Program | None" = None, limit: int = DEFAULT_LIMIT,
                         on_error: str = "raise") -> Iterator[Object]:
    """Entries from an `llist_node *` (e.g. `llist_head.first`)."""
    p = _prog_of(first, prog)
    node0 = int(first) if isinstance(first, Object) else first

    def nodes(name: str) -> Iterator[int]:
        what = f"llist {name} (first {node0:#x})"
        guard = _CycleGuard(what, limit)
        node = node0
        while node:
            guard.check(node)
            nxt = _read_ptr(p, node, what, f"next pointer of entry {node:#x}")
            yield node
            node = nxt
    yield from _entries(p, type, member, nodes, on_error)


# -- rbtree -----------------------------------------------------------------------------------
def rbtree_nodes(prog: "Program", root: int, *, what: str | None = None,
                 limit: int = DEFAULT_LIMIT) -> Iterator[int]:
    """In-order addresses of the rb_node nodes of the rb_root at `root`."""
    what = what or f"rbtree at {root:#x}"
    ps = prog.space.pointer_size
    o_root = _member_offset(prog, "struct rb_root", "rb_node", 0)
    o_left = _member_offset(prog, "struct rb_node", "rb_left", 2 * ps)
    o_right = _member_offset(prog, "struct rb_node", "rb_right", ps)
    guard = _CycleGuard(what, limit)
    stack: list[int] = []
    node = _read_ptr(prog, root + o_root, what, "the root's node pointer")
    while stack or node:
        while node:
            if len(stack) >= RB_MAX_DEPTH:
                raise CorruptKernelDataError(f"{what}: deeper than {RB_MAX_DEPTH} levels at "
                                             f"{node:#x}; not a red-black tree (cycle?)")
            guard.check(node)
            stack.append(node)
            node = _read_ptr(prog, node + o_left, what, f"left pointer of {node:#x}")
        node = stack.pop()
        yield node
        node = _read_ptr(prog, node + o_right, what, f"right pointer of {node:#x}")


def _rb_root_address(root: "Object | int") -> int:
    """Like _address_of_struct; a struct rb_root_cached gives the rb_root inside it."""
    if not isinstance(root, int):
        t = root.type_.strip_typedefs()
        if t.kind == TypeKind.STRUCT and t.tag == "rb_root_cached" and root.address_ is not None:
            return root.address_ + root.prog_.types.offsetof(t, "rb_root")
    return _address_of_struct(root, "rb_root (or rb_root_cached)")


def rbtree_inorder_for_each(root: "Object | int", *, prog: "Program | None" = None,
                            limit: int = DEFAULT_LIMIT, on_error: str = "raise"
                            ) -> Iterator[Object]:
    """`struct rb_node *` of each node, in order."""
    p = _prog_of(root, prog)
    nt = p.types.pointer(p.types.lookup("struct rb_node"))
    for node in guarded_walk(rbtree_nodes(p, _rb_root_address(root), limit=limit), on_error):
        yield Object(p, nt, node)


def rbtree_inorder_for_each_entry(type: "str | Type", root: "Object | int", member: str, *,
                                  prog: "Program | None" = None, limit: int = DEFAULT_LIMIT,
                                  on_error: str = "raise") -> Iterator[Object]:
    """`type *` of each entry of an rbtree whose nodes are `member` of `type`, in order."""
    p = _prog_of(root, prog)
    r = _rb_root_address(root)
    yield from _entries(p, type, member, lambda name: rbtree_nodes(
        p, r, what=f"rbtree {name} (root {r:#x})", limit=limit), on_error)


def rb_parent(node: Object) -> Object:
    """The parent of an rb_node (the low bits of __rb_parent_color are the color)."""
    return Object(node.prog_, node.type_, int(node.member_("__rb_parent_color")) & ~3)


__all__ = ["container_of", "list_for_each", "list_for_each_entry", "list_empty", "list_count",
           "list_nodes", "hlist_for_each", "hlist_for_each_entry", "hlist_nodes",
           "llist_for_each_entry", "rbtree_inorder_for_each", "rbtree_inorder_for_each_entry",
           "rbtree_nodes", "rb_parent", "DEFAULT_LIMIT"]


# -- singly linked chains (crash's `list` without -h) ----------------------------------------
def linked_nodes(prog: "Program", start: int, offset: int, *, what: str | None = None,
                 limit: int = DEFAULT_LIMIT) -> Iterator[int]:
    """`start`, then each entry the pointer at `entry + offset` leads to, until a NULL
    pointer or `start` again (crash's `list -o offset start`); bounded and cycle-checked."""
    what = what or f"list at {start:#x}"
    guard = _CycleGuard(what, limit)
    node = start
    while node:
        guard.check(node)
        yield node
        node = _read_ptr(prog, (node + offset) & 0xFFFFFFFFFFFFFFFF, what, f"pointer of entry {node:#x}")
        if node == start:
            return
