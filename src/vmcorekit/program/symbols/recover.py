"""Data symbols for kernels whose kallsyms lists only functions (CONFIG_KALLSYMS_ALL=n, as in
Debian's arm64 6.1 kernels): without them there is no `__start_BTF` (so no types), no
`init_task`, no `modules`. The image still says where much of its data is:

* `.BTF` — the vmlinux BTF blob lies in rodata, between `_etext` and the init text; its header
  (magic 0xeb9f, version 1, header length, type/string sections that tile the blob) is
  distinctive enough to find by scanning.
* `__ksymtab` / `__ksymtab_gpl` — every EXPORT_SYMBOL()ed name with its address (init_task,
  jiffies, nr_cpu_ids, __per_cpu_offset, node_data, vm_zone_stat, the cpu masks, ...). The
  table is found by matching its entries against the functions kallsyms does know: an entry
  whose value is a known function's address and whose name pointer leads to that function's
  name in rodata. `struct kernel_symbol` is either place-relative (CONFIG_HAVE_ARCH_PREL32_-
  RELOCATIONS: s32 value_offset, s32 name_offset[, s32 namespace_offset]) or absolute
  (pointers); each layout is tried.
* per-CPU variables (deferred: needs the types) — BTF's `.data..percpu` DATASEC gives each
  per-CPU variable's offset in the section; an exported per-CPU variable (`cpu_number`, ...)
  pins the section's start, `__per_cpu_start`.
* `modules` (deferred: needs struct module) — the list head in the image's data whose entries
  are all plausible `struct module`s (name, state, list links agreeing both ways).

Everything recovered is checked (anchors, consistency) and its provenance kept in notes.
"""
from __future__ import annotations

import logging
import re
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import MemoryReadError, VmcorekitError
from ..modlist import module_nodes

log = logging.getLogger(__name__)

Reader = Callable[[int, int], bytes]
MASK = (1 << 64) - 1
# Bounds: rodata of the largest kernels is well below this; more is a wrong anchor.
MAX_SCAN = 256 << 20
BTF_MAGIC = 0xEB9F
BTF_MAX = 512 << 20
KSYM_NAME_MAX = 512
_IDENT = re.compile(rb"[A-Za-z_.$][A-Za-z0-9_.$]*\Z")
# A table entry points within this distance of the string section the matched entries use.
_STRINGS_SLACK = 1 << 20
MODULES_MAX = 65536
DATA_TYPES = frozenset(b"dDbBrRgGsSvV")


@dataclass
class Recovered:
    names: list[str] = field(default_factory=list)
    addresses: list[int] = field(default_factory=list)
    types: bytearray = field(default_factory=bytearray)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, address: int, type_: str) -> None:
        self.names.append(name)
        self.addresses.append(address & MASK)
        self.types += type_.encode("latin-1")

    def __len__(self) -> int:
        return len(self.names)


def lacks_data_symbols(types: bytes) -> bool:
    """True when kallsyms holds (almost) no data symbols: a kernel without KALLSYMS_ALL keeps
    only a few section markers (`_etext`, `_end`, ...) besides its functions."""
    if not types:
        return False
    t = np.frombuffer(types, dtype=np.uint8)
    data = int(np.isin(t, np.frombuffer(bytes(DATA_TYPES), dtype=np.uint8)).sum())
    # KALLSYMS_ALL kernels have about as many data symbols as functions; under 0.5% is markers.
    return data * 200 < len(t)


# -- reading a range with holes ----------------------------------------------------------------
def read_range(read: Reader, lo: int, hi: int, page: int = 4096, chunk: int = 1 << 20) -> bytes:
    """Bytes of [lo, hi), unreadable pages as zeros (a hole must not end the scan)."""
    out = bytearray()
    pos = lo
    while pos < hi:
        n = min(chunk, hi - pos)
        try:
            out += read(pos, n)
            pos += n
            continue
        except (MemoryReadError, VmcorekitError):
            pass
        end = pos + n
        while pos < end:
            m = min(page - pos % page, end - pos)
            try:
                out += read(pos, m)
            except (MemoryReadError, VmcorekitError):
                out += bytes(m)
            pos += m
    return bytes(out)


# -- BTF -----------------------------------------------------------------------------------------
def find_btf(buf: bytes, base: int, byteorder: str = "little") -> tuple[int, int] | None:
    """(address, size) of the first well-formed BTF header in `buf` (mapped at `base`)."""
    e = "<" if byteorder == "little" else ">"
    magic = BTF_MAGIC.to_bytes(2, byteorder) + b"\x01"  # magic, version 1
    i = buf.find(magic)
    while i >= 0:
        if i % 4 == 0 and i + 24 <= len(buf):
            hdr = np.frombuffer(buf, e + "u4", count=5, offset=i + 4)
            hdr_len, type_off, type_len, str_off, str_len = (int(x) for x in hdr)
            size = hdr_len + str_off + str_len
            if (24 <= hdr_len <= 256 and hdr_len % 4 == 0 and type_off % 4 == 0
                    and type_off + type_len <= str_off and str_len > 0 and size <= BTF_MAX
                    and i + hdr_len + str_off < len(buf)
                    and buf[i + hdr_len + str_off] == 0):  # the string section starts with ""
                return base + i, size
        i = buf.find(magic, i + 1)
    return None


# -- __ksymtab -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    name: str
    stride: int
    relative: bool  # s32 place-relative offsets, else absolute pointers


_LAYOUTS = (_Layout("prel32+namespace", 12, True), _Layout("prel32", 8, True),
            _Layout("absolute+namespace", 24, False), _Layout("absolute", 16, False))


class _KsymtabScan:
    def __init__(self, buf: bytes, base: int, known: dict[int, set[str]], byteorder: str) -> None:
        self.buf, self.base, self.known = buf, base, known
        self.e = "<" if byteorder == "little" else ">"
        self.end = base + len(buf)

    def entry(self, pos: int, lay: _Layout) -> tuple[int, int] | None:
        """(value, name address) of the entry at buffer offset `pos`."""
        if pos < 0 or pos + lay.stride > len(self.buf):
            return None
        if lay.relative:
            v, n = struct.unpack_from(self.e + "ii", self.buf, pos)
            at = self.base + pos
            return (at + v) & MASK, (at + 4 + n) & MASK
        v, n = struct.unpack_from(self.e + "QQ", self.buf, pos)
        return v, n

    def string_at(self, addr: int) -> bytes | None:
        """The NUL-terminated identifier at `addr`, else None. (It need not follow a NUL: the
        linker merges a name that is the tail of another, "PageMovable" in
        "__ClearPageMovable".)"""
        off = addr - self.base
        if not 0 <= off < len(self.buf):
            return None
        end = self.buf.find(b"\0", off, off + KSYM_NAME_MAX)
        if end <= off:
            return None
        s = self.buf[off:end]
        return s if _IDENT.match(s) else None

    def candidates(self, lay: _Layout, addrs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(buffer offsets, values, name addresses) of the entries whose value is a known
        function and whose name pointer lands in the scanned range (vectorised; the names are
        compared afterwards)."""
        if lay.relative:
            n = len(self.buf) // 4
            a = np.frombuffer(self.buf, self.e + "i4", count=n).astype(np.int64).astype(np.uint64)
            at = np.uint64(self.base) + np.arange(n, dtype=np.uint64) * np.uint64(4)
            val = at + a  # wraps modulo 2**64 like the kernel's pointers
            nam = np.zeros(n, dtype=np.uint64)
            nam[:-1] = at[:-1] + np.uint64(4) + a[1:]
            step = 4
        else:
            n = len(self.buf) // 8
            val = np.frombuffer(self.buf, self.e + "u8", count=n)
            nam = np.zeros(n, dtype=np.uint64)
            nam[:-1] = val[1:]
            step = 8
        k = np.searchsorted(addrs, val)
        k[k >= len(addrs)] = 0
        hit = np.flatnonzero((addrs[k] == val) & (nam > np.uint64(self.base)) & (nam < np.uint64(self.end)))
        return hit * step, val[hit], nam[hit]

    def matched(self, lay: _Layout, addrs: np.ndarray) -> list[int]:
        out = []
        pos, val, nam = self.candidates(lay, addrs)
        for p, v, n in zip(pos.tolist(), val.tolist(), nam.tolist()):
            s = self.string_at(n)
            if s is not None and s.decode("latin-1") in self.known.get(v, ()):
                out.append(p)
        return out


def read_ksymtab(buf: bytes, base: int, known_names: Sequence[str], known_addrs: np.ndarray,
                 byteorder: str = "little") -> tuple[list[tuple[str, int]], str]:
    """Every (name, address) of the exported-symbol tables found in `buf` (mapped at `base`),
    and a note saying how they were found. `known_*` are kallsyms' functions (the anchors)."""
    if not len(known_addrs):
        return [], "no kallsyms functions to anchor __ksymtab"
    known: dict[int, set[str]] = {}
    for n, a in zip(known_names, known_addrs.tolist()):
        known.setdefault(a, set()).add(n)
    addrs = np.unique(known_addrs.astype(np.uint64))
    scan = _KsymtabScan(buf, base, known, byteorder)
    best: tuple[int, _Layout, list[int]] | None = None
    for lay in _LAYOUTS:
        hits = scan.matched(lay, addrs)
        if len(hits) < 8:
            continue
        # The right stride puts a valid entry next to most matched ones.
        score = sum(1 for p in hits if (e := scan.entry(p + lay.stride, lay)) is not None
                    and scan.string_at(e[1]) is not None)
        if best is None or score > best[0]:
            best = (score, lay, hits)
        if score >= 0.9 * len(hits):
            break  # unambiguous: the later layouts are not tried
    if best is None:
        return [], "no __ksymtab found (fewer than 8 exported functions matched kallsyms)"
    score, lay, hits = best
    if score < len(hits) // 2:
        return [], (f"__ksymtab not trusted: {len(hits)} entries matched kallsyms but only "
                    f"{score} have a valid neighbour ({lay.name} layout)")
    names_at = [scan.entry(p, lay)[1] for p in hits]  # type: ignore[index]
    s_lo, s_hi = min(names_at) - _STRINGS_SLACK, max(names_at) + _STRINGS_SLACK

    def valid(pos: int) -> tuple[str, int] | None:
        got = scan.entry(pos, lay)
        if got is None or not s_lo <= got[1] < s_hi:
            return None
        s = scan.string_at(got[1])
        return None if s is None else (s.decode("latin-1"), got[0])

    # Grow each run of entries from its matched members outwards, one stride at a time.
    taken: dict[int, tuple[str, int]] = {}
    for p in sorted(hits):
        if p in taken:
            continue
        for direction in (1, -1):
            q = p if direction == 1 else p - lay.stride
            while q not in taken:
                got = valid(q)
                if got is None:
                    break
                taken[q] = got
                q += direction * lay.stride
    entries = [taken[p] for p in sorted(taken)]
    lo, hi = min(taken), max(taken) + lay.stride
    return entries, (f"{len(entries)} exported symbols from __ksymtab ({lay.name} entries, "
                     f"{base + lo:#x}..{base + hi:#x}; {len(hits)} confirmed by kallsyms)")


# -- early recovery: needs only memory and the kallsyms functions --------------------------------
def _first(names: Sequence[str], addrs: np.ndarray, want: str) -> int | None:
    try:
        return int(addrs[names.index(want)])
    except ValueError:
        return None


def recover_early(read: Reader, names: list[str], addrs: np.ndarray, types: bytes, *,
                  byteorder: str = "little", page_size: int = 4096,
                  vmcoreinfo: dict[str, int] | None = None) -> Recovered:
    """__start_BTF/__stop_BTF and the exported symbols, from the rodata between `_etext` and the
    init text (where scripts/link-vmlinux.sh and the linker scripts put .BTF and __ksymtab);
    and VMCOREINFO's SYMBOL()s that are image addresses (not the pointer values some of them
    carry, such as mem_section's)."""
    rec = Recovered()
    stext = _first(names, addrs, "_stext")
    if vmcoreinfo and stext is not None:
        have = set(names)
        for n, v in vmcoreinfo.items():
            if n not in have and abs(v - stext) < 1 << 31:
                rec.add(n, v, "D")
    etext = _first(names, addrs, "_etext")
    init = _first(names, addrs, "_sinittext")
    if etext is None:
        rec.notes.append("no _etext in kallsyms: rodata not located, no data symbols recovered")
        return rec
    hi = init if init is not None and etext < init <= etext + MAX_SCAN else etext + (64 << 20)
    buf = read_range(read, etext, hi, page_size)
    have = set(names) | set(rec.names)
    got = find_btf(buf, etext, byteorder)
    if got is not None:
        start, size = got
        if "__start_BTF" not in have:
            rec.add("__start_BTF", start, "R")
            rec.add("__stop_BTF", start + size, "R")
        rec.notes.append(f"BTF header found at {start:#x} ({size} bytes) by scanning rodata")
    else:
        rec.notes.append(f"no BTF header in rodata {etext:#x}..{hi:#x}")
    t = np.frombuffer(types, dtype=np.uint8)
    text = np.isin(t, np.frombuffer(b"tTwW", dtype=np.uint8))
    idx = np.flatnonzero(text)
    entries, note = read_ksymtab(buf, etext, [names[i] for i in idx.tolist()], addrs[idx], byteorder)
    rec.notes.append(note)
    stext = stext or 0
    for name, value in entries:
        if name in have:
            continue
        have.add(name)
        rec.add(name, value, "T" if stext <= value < etext else "D")
    return rec


# -- late recovery: needs the types ------------------------------------------------------------
def _percpu(prog: Any, table: Any, rec: Recovered) -> None:
    reg = prog.types
    btf = getattr(reg, "btf", None)
    if btf is None:
        rec.notes.append("per-CPU variables not recovered: no BTF")
        return
    from ..types.btf import BtfKind

    offs: dict[str, int] = {}
    for sid in btf.ids_of_kind(BtfKind.DATASEC):
        sec = btf.type(sid)
        if sec.name == ".data..percpu":
            for si in sec.secinfo:
                offs.setdefault(btf.type(si.type).name, si.offset)
    if not offs:
        rec.notes.append("per-CPU variables not recovered: BTF has no .data..percpu section")
        return
    starts: Counter[int] = Counter()
    for name, off in offs.items():
        try:
            a = table.address_of(name)
        except (VmcorekitError, LookupError):
            continue
        starts[(a - off) & MASK] += 1
    if not starts:
        rec.notes.append("per-CPU variables not recovered: no exported per-CPU variable pins "
                         "__per_cpu_start")
        return
    start, votes = starts.most_common(1)[0]
    if votes * 2 <= sum(starts.values()):
        rec.notes.append(f"per-CPU variables not recovered: exported per-CPU variables disagree "
                         f"on __per_cpu_start ({dict(starts)})")
        return
    have = "__per_cpu_start" in table
    if not have:
        rec.add("__per_cpu_start", start, "D")
    n = 0
    for name, off in offs.items():
        if name not in table:
            rec.add(name, start + off, "D")
            n += 1
    rec.notes.append(f"{n} per-CPU variables from BTF at __per_cpu_start {start:#x} "
                     f"({votes} exported per-CPU variables agree)")


class _ImageData:
    """(start, bytes) of each image data range, read on first use and shared by the scans."""

    def __init__(self, prog: Any, table: Any) -> None:
        self.prog, self.table = prog, table
        self._blobs: list[tuple[int, bytes]] | None = None

    def blobs(self) -> list[tuple[int, bytes]]:
        if self._blobs is None:
            self._blobs = [(lo, read_range(self.prog.read, lo, hi, self.prog.page_size))
                           for lo, hi in _image_data_ranges(self.prog, self.table)]
        return self._blobs


def _image_data_ranges(prog: Any, table: Any) -> list[tuple[int, int]]:
    """Where the image's data lies: the kernel-image regions above the init text (their
    extent comes from the page tables), else 64 MiB above the highest init symbol."""
    try:
        lo = table.address_of("_einittext")
    except (VmcorekitError, LookupError):
        return []
    out = []
    for r in getattr(prog.space, "regions", []):
        if r.name == "kernel image" and r.end > lo:
            out.append((max(r.start, lo), r.end))
    return out or [(lo, lo + (64 << 20))]


def _modules_head(prog: Any, table: Any, rec: Recovered, data: _ImageData) -> None:
    reg = prog.types
    if getattr(reg, "btf", None) is None:
        rec.notes.append("modules list not recovered: no BTF for struct module")
        return
    try:
        o_list = reg.offsetof("struct module", "list")
        o_name = reg.offsetof("struct module", "name")
        o_state = reg.offsetof("struct module", "state")
    except VmcorekitError as e:
        rec.notes.append(f"modules list not recovered: {e}")
        return
    space = prog.space
    lin = [(r.start, r.end) for r in getattr(space, "regions", []) if r.name == "linear map"]
    img = [(r.start, r.end) for r in getattr(space, "regions", []) if r.name == "kernel image"]
    ptr_lo = 1 << 63 if space.pointer_size == 8 else 1 << 31

    def plausible_module(node: int) -> bool:
        mod = node - o_list
        try:
            raw = prog.read(mod + o_name, 56)
            state = int.from_bytes(prog.read(mod + o_state, 4), "little")
        except (MemoryReadError, VmcorekitError):
            return False
        nm = raw.split(b"\0", 1)[0]
        return bool(nm) and b"\0" in raw and _IDENT.match(nm) is not None and state <= 3

    found: list[tuple[int, int]] = []
    for lo, buf in data.blobs():
        n = len(buf) // 8
        w = np.frombuffer(buf, "<u8", count=n)
        nxt, prv = w[:-1], w[1:]
        at = np.uint64(lo) + np.arange(n - 1, dtype=np.uint64) * np.uint64(8)
        ok = (nxt >= np.uint64(ptr_lo)) & (prv >= np.uint64(ptr_lo)) & (nxt != at)
        ok &= (nxt & np.uint64(7)) == 0
        for a, b in lin + img:  # module memory is neither linear map nor image
            ok &= ~((nxt >= np.uint64(a)) & (nxt < np.uint64(b)))
            ok &= ~((prv >= np.uint64(a)) & (prv < np.uint64(b)))
        for i in np.flatnonzero(ok).tolist():
            head = lo + 8 * i
            first = int(nxt[i])
            try:
                if int.from_bytes(prog.read(first + 8, 8), "little") != head:
                    continue
            except (MemoryReadError, VmcorekitError):
                continue
            if not plausible_module(first):
                continue
            count = _walk_modules(prog, head, plausible_module)
            if count:
                found.append((head, count))
    if not found:
        rec.notes.append("modules list not recovered: no list head in the image data links "
                         "struct modules (none loaded?)")
        return
    if len(found) > 1:
        rec.notes.append("modules list not recovered: several candidate heads "
                         + ", ".join(f"{h:#x}" for h, _ in found))
        return
    head, count = found[0]
    rec.add("modules", head, "d")
    rec.notes.append(f"modules list head found at {head:#x} ({count} modules linked)")


def _walk_modules(prog: Any, head: int, plausible: Callable[[int], bool]) -> int:
    """Number of entries when every one is a plausible module and the links agree both ways
    (the one modules-list walk, validating); 0 otherwise."""
    count = 0
    try:
        for node in module_nodes(prog.read, head, limit=MODULES_MAX, validate=True):
            if not plausible(node):
                return 0
            count += 1
    except (MemoryReadError, VmcorekitError):
        return 0
    return count


def _timekeepers(prog: Any, table: Any, rec: Recovered, data: _ImageData) -> None:
    """tk_core and shadow_timekeeper: the struct timekeepers in the image's data whose fields
    agree with each other (the same clocksource for tkr_mono and tkr_raw, offs_real ==
    -wall_to_monotonic, xtime + wall_to_monotonic == ktime_sec). tk_core wraps its timekeeper
    after a seqcount and is cacheline aligned; the other copy is shadow_timekeeper."""
    reg = prog.types
    if getattr(reg, "btf", None) is None:
        return
    T = "struct timekeeper"
    try:
        o = {k: reg.offsetof(T, k) // 8 for k in ("tkr_mono.clock", "tkr_raw.clock", "xtime_sec",
                                                   "ktime_sec", "wall_to_monotonic.tv_sec",
                                                   "wall_to_monotonic.tv_nsec", "offs_real")}
        size = reg.sizeof(T)
        seq = -(-reg.sizeof("seqcount_raw_spinlock_t") // 8) * 8
    except VmcorekitError as e:
        rec.notes.append(f"timekeeper not recovered: {e}")
        return
    if "tk_core" in table or reg.has_type("struct tk_data"):
        return  # 6.13+ names the type; such kernels are not the ones missing symbols
    found: list[int] = []
    for lo, buf in data.blobs():
        w = np.frombuffer(buf, "<u8", count=len(buf) // 8)
        n = len(w) - size // 8
        if n <= 0:
            continue
        col = {k: w[v:v + n] for k, v in o.items()}
        sw = {k: c.view(np.int64) for k, c in col.items()}
        ok = (col["tkr_mono.clock"] == col["tkr_raw.clock"]) & (col["tkr_mono.clock"] >> np.uint64(63) == 1)
        ok &= (col["ktime_sec"] > 0) & (col["ktime_sec"] < 1 << 40)
        ok &= (col["xtime_sec"] > 0) & (col["xtime_sec"] < 1 << 40)
        ok &= (col["wall_to_monotonic.tv_nsec"] < 1_000_000_000)
        ok &= sw["offs_real"] == -(sw["wall_to_monotonic.tv_sec"] * 1_000_000_000
                                   + sw["wall_to_monotonic.tv_nsec"])
        mono = sw["xtime_sec"] + sw["wall_to_monotonic.tv_sec"]
        ok &= np.abs(mono - sw["ktime_sec"]) <= 1
        found += [lo + 8 * i for i in np.flatnonzero(ok).tolist()]
    core = [a for a in found if (a - seq) % 64 == 0]
    if len(found) > 2 or len(core) != 1:
        rec.notes.append("timekeeper not recovered: " + (f"{len(found)} candidates" if found else
                                                        "no struct timekeeper in the image data"))
        return
    rec.add("tk_core", core[0] - seq, "b")
    for a in found:
        if a != core[0]:
            rec.add("shadow_timekeeper", a, "b")
    also = " (and shadow_timekeeper)" if len(found) == 2 else ""
    rec.notes.append(f"tk_core found at {core[0] - seq:#x}{also}")


def _function_refs(prog: Any, table: Any, name: str) -> list[tuple[str, int, int]] | None:
    """The globals function `name` addresses (AddressSpace.data_references), None when the
    function or the architecture's decoder is missing."""
    try:
        addr = table.address_of(name)
    except LookupError:
        return None
    sym = table.lookup(addr)
    size = sym.size if sym is not None and sym.address == addr and sym.size else 256
    return prog.space.data_references(prog.read(addr, min(size, 4096)), addr)


def _code_references(prog: Any, table: Any, rec: Recovered) -> None:
    """vm_committed_as, sysctl_overcommit_kbytes / _ratio and total_swap_pages (kmem -i's swap
    and commit figures), from the code of the functions that read them:

    * vm_memory_committed() is percpu_counter_sum_positive(&vm_committed_as): the first
      address it forms;
    * vm_commit_limit() loads the two sysctls and total_swap_pages (in both branches) and
      totalram_pages: its one 4-byte global is the ratio; of its 8-byte globals other than
      _totalram_pages, the one loaded twice is total_swap_pages, the other the kbytes.
    Anything less clear-cut is left unrecovered."""
    have = set(rec.names)
    refs = _function_refs(prog, table, "vm_memory_committed")
    if refs is None:
        rec.notes.append("commit figures not recovered: no vm_memory_committed or no decoder")
    elif "vm_committed_as" not in table:
        addrs = [t for k, _, t in refs if k == "addr"]
        if addrs:
            rec.add("vm_committed_as", addrs[0], "D")
            have.add("vm_committed_as")
    refs = _function_refs(prog, table, "vm_commit_limit")
    if not refs:
        rec.notes.append("overcommit and swap totals not recovered: vm_commit_limit not decoded")
        return
    total = table.address_of("_totalram_pages") if "_totalram_pages" in table else None
    ints = list(dict.fromkeys(t for k, n, t in refs if k == "load" and n == 4))
    longs = Counter(t for k, n, t in refs if k == "load" and n == 8 and t != total)
    if len(ints) == 1 and "sysctl_overcommit_ratio" not in table:
        rec.add("sysctl_overcommit_ratio", ints[0], "D")
    twice = [t for t, c in longs.items() if c >= 2]
    once = [t for t, c in longs.items() if c == 1]
    if len(longs) == 2 and len(twice) == 1 and len(once) == 1:
        if "total_swap_pages" not in table:
            rec.add("total_swap_pages", twice[0], "D")
        if "sysctl_overcommit_kbytes" not in table:
            rec.add("sysctl_overcommit_kbytes", once[0], "D")
        rec.notes.append("total_swap_pages and the overcommit sysctls recovered from vm_commit_limit's code")
    else:
        rec.notes.append(f"overcommit and swap totals not recovered: vm_commit_limit loads "
                         f"{len(longs)} other 8-byte globals")


def recover_late(prog: Any, table: Any) -> Recovered:
    """Per-CPU variables and the modules list head, which need BTF's layouts."""
    rec = Recovered()
    data = _ImageData(prog, table)
    try:
        _percpu(prog, table, rec)
    except (VmcorekitError, LookupError, ImportError) as e:  # ImportError: no types at all
        rec.notes.append(f"per-CPU variables not recovered: {e}")
    if "modules" not in table:
        try:
            _modules_head(prog, table, rec, data)
        except (VmcorekitError, LookupError, ImportError) as e:
            rec.notes.append(f"modules list not recovered: {e}")
    if "tk_core" not in table and "shadow_timekeeper" not in table:
        try:
            _timekeepers(prog, table, rec, data)
        except (VmcorekitError, LookupError, ImportError) as e:
            rec.notes.append(f"timekeeper not recovered: {e}")
    try:
        _code_references(prog, table, rec)
    except (VmcorekitError, LookupError) as e:
        rec.notes.append(f"commit and swap symbols not recovered: {e}")
    for n in rec.notes:
        log.debug("symbol recovery: %s", n)
    return rec
