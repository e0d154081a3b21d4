"""ORC tables and stack unwinding: the input is a memory image holding ORC rows (segment 2: ips,
3: entries), the starting registers (4: ip, sp, bp), symbols (6: "addr size type name" lines),
the stacks (7: lo, hi, kind) and memory (the stacks' words, code bytes). The unwinder runs with
ORC, frame pointers and scanning; each trace must end with a reason, within max_frames."""
from __future__ import annotations

import struct

import numpy as np

from _harness import ImageMemory, decode_image, fuzz_main

MAX_FRAMES = 64


def test_one_input(data: bytes) -> None:
    from vmcorekit.errors import VmcorekitError
    from vmcorekit.kernel.stacks import orc as O
    from vmcorekit.kernel.stacks.kinfo import StackRange
    from vmcorekit.kernel.stacks.unwind import StackMemory, State, Unwinder
    from vmcorekit.program.symbols.table import SymbolTable

    segs, _ = decode_image(data)
    raw_ips, raw_ent = segs.pop(2, b""), segs.pop(3, b"")
    regs = segs.pop(4, b"").ljust(24, b"\0")[:24]
    sym_text = segs.pop(6, b"").decode("latin-1")
    stack_rows = segs.pop(7, b"")
    n = min(len(raw_ips) // 8, len(raw_ent) // 6)
    ips = np.frombuffer(raw_ips[:8 * n], dtype="<u8")
    ent = np.frombuffer(raw_ent[:6 * n], dtype=O.ENTRY_DTYPE)
    names, addrs, sizes, types = [], [], [], bytearray()
    for line in sym_text.splitlines()[:2000]:
        parts = line.split()
        if len(parts) == 4:
            try:
                a, sz = int(parts[0], 16) & (2**64 - 1), int(parts[1], 16) & (2**64 - 1)
            except ValueError:
                continue
            names.append(parts[3])
            addrs.append(a)
            sizes.append(sz)
            types.append(ord(parts[2][0]) if parts[2] else ord("t"))
    symbols = SymbolTable(names, np.array(addrs, dtype=np.uint64), bytes(types),
                          sizes=np.array(sizes, dtype=np.uint64), source="fuzz")
    stacks = []
    for i in range(0, min(len(stack_rows), 24 * 8) - 23, 24):
        lo, hi, kind = struct.unpack_from("<QQ8s", stack_rows, i)
        if lo < hi and hi - lo <= 1 << 20:
            stacks.append(StackRange(kind.split(b"\0")[0].decode("latin-1") or "task", lo, hi))
    mem = ImageMemory(segs)
    ip, sp, bp = struct.unpack("<3Q", regs)
    for layout in (O.LAYOUT_6_1, O.LAYOUT_6_4):
        lay = O.OrcLayout(dict(layout), "fuzz")
        try:
            index = O.OrcIndex([O.OrcTable("vmlinux", ips, ent, lay)], lay)
        except (VmcorekitError, ValueError):
            return
        for kw in ({}, {"use_orc": False, "use_fp": True}, {"use_orc": False, "use_fp": False}):
            uw = Unwinder(StackMemory(mem.read, stacks), symbols, index, max_frames=MAX_FRAMES, **kw)
            tr = uw.run(State(ip=ip, sp=sp, bp=bp or None, signal=True, method="regs"))
            assert len(tr.frames) <= MAX_FRAMES and (tr.end_reason or tr.complete)


if __name__ == "__main__":
    fuzz_main(test_one_input, __file__, ("vmcorekit.kernel.stacks", "vmcorekit.program.symbols.table"))
