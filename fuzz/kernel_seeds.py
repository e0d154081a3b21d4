"""Seeds of the kernel-structure harnesses (memory images, see _harness.encode_image), cut from
the real sample dump: its kallsyms tables (truncated to their first symbols), BTF (its first
types), page tables, task list and vmap_area tree, the crashed task's stack with the ORC rows of
its frames, and its log records (re-laid in small rings of every printk layout).
Called by make_seeds.py."""
from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from _harness import PAGE, encode_image
from make_seeds import put
from vmcorekit import Program

KALLSYMS_KEEP = 400
BTF_KEEP = 300


def recording(fn: Callable[[int, int], bytes], log: dict[int, bytes]) -> Callable[[int, int], bytes]:
    """fn, remembering every successful read (address -> bytes)."""
    def read(addr: int, n: int) -> bytes:
        data = fn(addr, n)
        log[addr] = bytes(data) if len(data) >= len(log.get(addr, b"")) else log[addr]
        return data
    return read


def merge(reads: dict[int, bytes]) -> dict[int, bytes]:
    """Overlapping or touching reads -> disjoint segments."""
    out: dict[int, bytes] = {}
    cur_a, cur = None, b""
    for a, b in sorted(reads.items()):
        if cur_a is not None and a <= cur_a + len(cur):
            cur = cur[:a - cur_a] + b + cur[a - cur_a + len(b):] if a - cur_a + len(b) > len(cur) else cur
            continue
        if cur_a is not None:
            out[cur_a] = cur
        cur_a, cur = a, b
    if cur_a is not None:
        out[cur_a] = cur
    return out


# -- kallsyms ------------------------------------------------------------------------------------
def kallsyms_seed(prog: Program) -> None:
    vi = prog.vmcoreinfo
    s = vi.symbols
    n = KALLSYMS_KEEP
    names_addr = s["kallsyms_names"]
    blob = prog.read(names_addr, 64 * n)
    pos = 0
    for _ in range(n):  # the byte length of the first n name records
        ln = blob[pos]
        if ln & 0x80:
            ln = (ln & 0x7F) | (blob[pos + 1] << 7)
            pos += 1
        pos += 1 + ln
    # Whole pages, as a dump holds them (readers fetch page by page near a gap), with
    # kallsyms_num_syms rewritten in its page.
    index = struct.unpack("<256H", prog.read(s["kallsyms_token_index"], 512))
    spans = [(s["kallsyms_num_syms"], 4), (names_addr, pos), (s["kallsyms_offsets"], 4 * n),
             (s["kallsyms_relative_base"], 8), (s["kallsyms_token_index"], 512),
             (s["kallsyms_token_table"], max(index) + 64)]
    pages: dict[int, bytearray] = {}
    for addr, size in spans:
        for pg in range(addr & ~(PAGE - 1), addr + size, PAGE):
            pages.setdefault(pg, bytearray(prog.read(pg, PAGE)))
    nsyms = s["kallsyms_num_syms"]
    pages[nsyms & ~(PAGE - 1)][nsyms % PAGE:nsyms % PAGE + 4] = struct.pack("<I", n)
    segs = merge({a: bytes(b) for a, b in pages.items()})
    put("kallsyms", "x86_64-6.1-first-400", encode_image(segs, vi.raw.encode()))
    # the same tables with the 2-byte-length records a longer name would use
    put("kallsyms", "x86_64-6.1-no-anchors", encode_image(segs, b"\n".join(
        ln.encode() for ln in vi.raw.splitlines() if "kallsyms" in ln or not ln.startswith("SYMBOL"))))


# -- BTF -----------------------------------------------------------------------------------------
def btf_seed(prog: Program) -> None:
    """The dump's BTF cut after its first types; the string section cut (at a NUL) after the
    last name those types' records use."""
    from vmcorekit.program.types.btf import Btf

    start = prog.symbols.address_of("__start_BTF")
    data = prog.read(start, prog.symbols.address_of("__stop_BTF") - start)
    btf = Btf(data)
    magic, ver, flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", data)
    keep = BTF_KEEP
    words = btf._offsets  # word offset of each record
    cut = 4 * int(words[keep]) if len(words) > keep else type_len
    types = data[hdr_len + type_off:hdr_len + type_off + cut]
    strings = data[hdr_len + str_off:hdr_len + str_off + str_len]
    # Any word of the kept records may be a name offset (members, enumerators, params too).
    w = np.frombuffer(types, dtype="<u4")
    used = w[w < len(strings)]
    end = int(used.max()) if len(used) else 1
    end = strings.index(b"\0", end) + 1 if end < len(strings) else len(strings)
    strings = strings[:min(end, 256 << 10)]
    if strings[-1:] != b"\0":
        strings = strings[:strings.rindex(b"\0") + 1]
    hdr = struct.pack("<HBBIIIII", magic, ver, flags, 24, 0, len(types), len(types), len(strings))
    put("btf", f"x86_64-6.1-first-{keep}", hdr + types + strings)


# -- page tables ---------------------------------------------------------------------------------
def pagetable_seed(prog: Program, name: str = "x86_64-6.1-4level") -> None:
    from vmcorekit.arch import address_space

    extra = []
    if prog.arch == "x86_64":
        from vmcorekit.kernel.stacks import stacks

        st = stacks(prog)
        extra.append(st.ki.task(st.crashed.task).stack + 0x100)  # a vmalloc'ed stack
    phys = prog.phys
    reads: dict[int, bytes] = {}
    real_read = phys.read
    phys.read = recording(real_read, reads)  # type: ignore[method-assign]
    try:
        space = address_space(phys, prog.vmcoreinfo)
        d = space.describe()
        vaddrs = sorted(set(prog.vmcoreinfo.symbols.values()))[:40] + extra
        for key in ("page_offset_base", "vmemmap_base", "page_offset", "vmemmap_start"):
            if isinstance(d.get(key), int):
                vaddrs += [d[key] + 0x1000000, d[key] + 0x40]
        for v in vaddrs:
            try:
                space.walk(v)
            except Exception:
                pass
    finally:
        phys.read = real_read  # type: ignore[method-assign]
    print(f"  pagetable: {len(reads)} reads, {sum(len(b) for b in reads.values())} bytes")
    # The entries the walks read, with their neighbours (a fuzzer mutates small inputs best).
    segs = merge({a & ~63: real_read(a & ~63, 128) for a in reads})
    segs[1] = b"".join(struct.pack("<Q", v) for v in vaddrs)
    put("pagetable", name, encode_image(segs, prog.vmcoreinfo.raw.encode()))


# -- lists and trees -----------------------------------------------------------------------------
def lists_seed(prog: Program) -> None:
    from vmcorekit.kernel.lists import list_nodes, rbtree_nodes

    reads: dict[int, bytes] = {}
    real = prog.read
    prog.read = recording(real, reads)  # type: ignore[method-assign]
    try:
        tasks = prog.symbol_address("init_task") + prog.types.offsetof("struct task_struct", "tasks")
        n_tasks = sum(1 for _ in list_nodes(prog, tasks, validate=True))
        root = prog.symbol_address("vmap_area_root")
        n_vmap = sum(1 for _ in rbtree_nodes(prog, root))
    finally:
        prog.read = real  # type: ignore[method-assign]
    segs = merge(reads)
    # heads: list_head, hlist_head, rb_root, llist first (the list node doubles as the others)
    segs[1] = struct.pack("<4Q", tasks, tasks, root, tasks)
    print(f"  lists: {n_tasks} tasks, {n_vmap} vmap areas")
    put("lists", "x86_64-6.1-tasks-vmap", encode_image(segs))


# -- ORC and the crashed task's stack ------------------------------------------------------------
def orc_seed(prog: Program) -> None:
    from vmcorekit.kernel.stacks import stacks

    s = stacks(prog)
    task = s.crashed.task
    tr = s.trace(task)
    info = s.ki.task(task)
    ranges = s.stacks_for(info, s.crashed.cpu)
    vm = s.orc.by_name["vmlinux"]
    keep: set[int] = set()
    for f in tr.frames:
        k = int(np.searchsorted(vm.ips, np.uint64(f.pc), side="right")) - 1
        keep.update(range(max(0, k - 3), min(len(vm.ips), k + 4)))
    idx = np.array(sorted(keep))
    ips, ent = vm.ips[idx], vm.entries[idx]
    segs: dict[int, bytes] = {2: ips.astype("<u8").tobytes(), 3: ent.tobytes()}
    f0 = tr.frames[0]
    regs = f0.exception.regs if f0.exception is not None else {}
    segs[4] = struct.pack("<3Q", f0.pc, f0.sp, regs.get("rbp", 0) if isinstance(regs, dict) else 0)
    lines = []
    for f in tr.frames:
        sym = prog.symbols.lookup(f.pc - 1)
        if sym is not None:
            lines.append(f"{sym.address:x} {sym.size:x} {sym.type} {sym.name}")
    segs[6] = "\n".join(sorted(set(lines))).encode()
    segs[7] = b"".join(struct.pack("<QQ8s", r.lo, r.hi, r.kind.encode()) for r in ranges)
    for r in ranges:
        try:
            segs[r.lo] = prog.read(r.lo, r.hi - r.lo)
        except Exception:
            pass
    for f in tr.frames:  # the code before each return address (call-site checks)
        try:
            segs[f.pc - 16] = prog.read(f.pc - 16, 32)
        except Exception:
            pass
    put("orc", "x86_64-6.1-crashed-task", encode_image(merge_keep_small(segs)))


def merge_keep_small(segs: dict[int, bytes]) -> dict[int, bytes]:
    small = {a: b for a, b in segs.items() if a < 16}
    return {**small, **merge({a: b for a, b in segs.items() if a >= 16})}


# -- printk --------------------------------------------------------------------------------------
def printk_seeds(prog: Program) -> None:
    from printkgen import LocklessLog, PlainLog, StructuredLog

    from vmcorekit.kernel.printk import read_log

    log = read_log(prog, levels=True)
    recs = [r for r in log.records if r.text][:24] + [r for r in log.records if r.text][-24:]
    ring = LocklessLog(count_bits=5, size_bits=12)
    for i, r in enumerate(recs):
        ring.add(r.text, r.ts_nsec, caller_id=r.caller_id or 1, level=r.level if r.level is not None else 6,
                 facility=r.facility or 0, subsystem=r.subsystem, device=r.device)
        if i == 10:
            ring.clear()
    img = ring.image()
    put("printk", "lockless-real-records", encode_image(dict(img.segments), img.vmcoreinfo_text().encode()))
    early = LocklessLog(count_bits=4, size_bits=11, early=True)
    for r in recs[:20]:
        early.add(r.text, r.ts_nsec, subsystem=b"pci", device=b"+pci:0000:00:01.0")
    img = early.image()
    put("printk", "lockless-early-5.10", encode_image(dict(img.segments), img.vmcoreinfo_text().encode()))
    st = StructuredLog(buf_len=2048, caller=True)
    for r in recs[:30]:
        st.add(r.text, r.ts_nsec)
    img = st.image()
    put("printk", "structured", encode_image(dict(img.segments), img.vmcoreinfo_text().encode()))
    pl = PlainLog(buf_len=1024)
    for r in recs[:30]:
        pl.add(r.text, r.ts_nsec)
    img = pl.image()
    put("printk", "plain", encode_image(dict(img.segments), img.vmcoreinfo_text().encode()))


def arm64_seed(repo: Path) -> None:
    """Page tables of the arm64 sample (its ELF ships zstd-compressed: decompressed to a
    temporary file first)."""
    import tempfile

    import zstandard

    src = repo / "samples" / "arm64" / "vmcore.elf.zst"
    if not src.exists():
        return
    with tempfile.NamedTemporaryFile(suffix=".elf") as tmp:
        with open(src, "rb") as fi:
            zstandard.ZstdDecompressor(max_window_size=1 << 31).copy_stream(fi, tmp)
        tmp.flush()
        with Program.open(tmp.name) as prog:
            pagetable_seed(prog, "aarch64-6.1-48bit")


def main(path: Path) -> None:
    with Program.open(str(path)) as prog:
        for fn in (kallsyms_seed, btf_seed, pagetable_seed, lists_seed, orc_seed, printk_seeds):
            fn(prog)
    arm64_seed(path.resolve().parent.parent)
