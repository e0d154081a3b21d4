"""Linked-list and tree walkers (list_head both ways with back-pointer checks, hlist, llist,
rbtree in order): the input is a memory image of nodes (segment 1: the heads to start from).
Every walk must end — at the head, at NULL, or with CorruptKernelDataError naming why."""
from __future__ import annotations

import struct

from _harness import ImageMemory, decode_image, fuzz_main

LIMIT = 5000  # entries per walk: cycles and absurd lengths must hit the guard, not the clock


class _Space:
    pointer_size = 8


class FakeProg:
    """What the walkers use of a Program (no types: the ABI offsets of list and rb nodes)."""

    space = _Space()

    def __init__(self, mem: ImageMemory) -> None:
        self.read = mem.read

    def read_u64(self, addr: int) -> int:
        return struct.unpack("<Q", self.read(addr, 8))[0]

    def read_u32(self, addr: int) -> int:
        return struct.unpack("<I", self.read(addr, 4))[0]


def test_one_input(data: bytes) -> None:
    from vmcorekit.errors import VmcorekitError
    from vmcorekit.kernel.lists import hlist_nodes, list_nodes, rbtree_nodes

    segs, _ = decode_image(data)
    heads = [h for (h,) in struct.iter_unpack("<Q", segs.pop(1, b"")[:32].ljust(32, b"\0"))]
    prog = FakeProg(ImageMemory(segs))
    walks = [lambda: list_nodes(prog, heads[0], limit=LIMIT),  # type: ignore[arg-type]
             lambda: list_nodes(prog, heads[0], limit=LIMIT, reverse=True, validate=True),  # type: ignore[arg-type]
             lambda: hlist_nodes(prog, heads[1], limit=LIMIT),  # type: ignore[arg-type]
             lambda: rbtree_nodes(prog, heads[2], limit=LIMIT),  # type: ignore[arg-type]
             lambda: hlist_nodes(prog, heads[3], limit=LIMIT)]  # type: ignore[arg-type]
    for walk in walks:
        n = 0
        try:
            for _ in walk():
                n += 1
        except VmcorekitError:
            pass
        assert n <= LIMIT


if __name__ == "__main__":
    fuzz_main(test_one_input, __file__, ("vmcorekit.kernel.lists",))
