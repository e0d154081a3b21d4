"""The lockless printk ring buffer (Linux 5.10 and later), read from VMCOREINFO alone.

Layout (kernel/printk/printk_ringbuffer.h): `prb` points at a printk_ringbuffer holding a
descriptor ring (count = 1 << count_bits descriptors and as many printk_info) and a text data
ring (1 << size_bits bytes). A descriptor's state_var packs its id with two state bits on top;
its text_blk_lpos gives logical positions [begin, next) of a data block made of the id (an
unsigned long) followed by the text. A block that would cross the end of the ring is stored at
offset 0 instead ("wrapping"); data-less records have odd positions (FAILED_LPOS = 1: the
text was lost, NO_LPOS = 3: empty). Records are walked from tail_id to head_id, as
vmcore-dmesg, makedumpfile and drgn do, keeping committed and finalized descriptors whose id
matches: reserved ones are still being written and reusable ones have lost their data, so both
are skipped as the kernel's readers skip them. (The kernel's readers also wait for a committed
record to be finalized; the dump tools print it, since nothing will finalize it after a crash,
and so does vmcorekit.)

The early 5.10 rings (before printk_info moved to its own array and dictionaries became
dev_printk_info) export OFFSET(prb_desc.info) and dict_* keys instead of
OFFSET(prb_desc_ring.infos); both are read here.

The three arrays are read with one large read each (page by page only when that fails) and
decoded with one struct.iter_unpack pass each, so the cost is that of the log, not of the dump.
"""
from __future__ import annotations

import struct

from ...errors import CorruptKernelDataError, MemoryReadError, VmcoreinfoError
from .levels import BitfieldReader
from .model import REASONS, Gap, KernelMemory, LogRecord, PrintkLog, Region, read_region

FAILED_LPOS = 0x1
NO_LPOS = 0x3
DESC_COMMITTED = 1
DESC_FINALIZED = 2
MAX_RING_BYTES = 1 << 31  # the kernel caps log_buf_len at 2 GiB (LOG_BUF_LEN_MAX)
MAX_READ_BYTES = 1 << 31  # descriptors + infos + text together; anything larger is corrupt data


class _Keys:
    """VMCOREINFO facts of the lockless ring, with the early-5.10 alternatives."""

    def __init__(self, mem: KernelMemory) -> None:
        vi = mem.vmcoreinfo
        o = vi.offset
        self.prb_sym = vi.symbol("prb")
        self.long = vi.sizes.get("atomic_long_t", 8)
        if self.long not in (4, 8):
            raise CorruptKernelDataError(f"VMCOREINFO SIZE(atomic_long_t)={self.long}: expected 4 or 8")
        self.counter = vi.offsets.get("atomic_long_t.counter", 0)
        self.rb_size = vi.size("printk_ringbuffer")
        self.desc_ring = o("printk_ringbuffer.desc_ring")
        self.text_ring = o("printk_ringbuffer.text_data_ring")
        self.dict_ring = vi.offsets.get("printk_ringbuffer.dict_data_ring")
        self.fail = vi.offsets.get("printk_ringbuffer.fail")
        self.count_bits = o("prb_desc_ring.count_bits")
        self.descs = o("prb_desc_ring.descs")
        self.infos = vi.offsets.get("prb_desc_ring.infos")
        self.head_id = o("prb_desc_ring.head_id")
        self.tail_id = o("prb_desc_ring.tail_id")
        self.desc_size = vi.size("prb_desc")
        self.state_var = o("prb_desc.state_var")
        self.text_blk = o("prb_desc.text_blk_lpos")
        self.dict_blk = vi.offsets.get("prb_desc.dict_blk_lpos")
        self.desc_info = vi.offsets.get("prb_desc.info")
        if self.infos is None and self.desc_info is None:
            raise VmcoreinfoError("VMCOREINFO has neither OFFSET(prb_desc_ring.infos) nor OFFSET(prb_desc.info)")
        self.lpos_begin = o("prb_data_blk_lpos.begin")
        self.lpos_next = o("prb_data_blk_lpos.next")
        self.info_size = vi.size("printk_info")
        self.seq = o("printk_info.seq")
        self.ts = o("printk_info.ts_nsec")
        self.text_len = o("printk_info.text_len")
        self.dict_len = vi.offsets.get("printk_info.dict_len")
        self.caller = vi.offsets.get("printk_info.caller_id")
        self.dev_info = vi.offsets.get("printk_info.dev_info")
        self.subsys = vi.offsets.get("dev_printk_info.subsystem")
        self.subsys_len = vi.lengths.get("printk_info_subsystem")
        self.device = vi.offsets.get("dev_printk_info.device")
        self.device_len = vi.lengths.get("printk_info_device")
        self.size_bits = o("prb_data_ring.size_bits")
        self.data = o("prb_data_ring.data")
        self.clear_seq = vi.symbols.get("clear_seq")
        self.latched = "latched_seq" in vi.sizes
        self.latched_val = vi.offsets.get("latched_seq.val", 8)

    @property
    def early(self) -> bool:
        return self.desc_info is not None


def _u(data: bytes, off: int, size: int, order: str) -> int:
    return int.from_bytes(data[off:off + size], order)


def _columns(region: Region, count: int, stride: int, fields: list[tuple[int, str]], order: str) -> list[tuple[int, ...]]:
    """Fields of an array of `count` structs of `stride` bytes, one tuple per field, decoded in
    one pass: fields are (byte offset, struct code) and may come in any order."""
    if not fields:
        return []
    need = count * stride
    if len(region.data) < need:
        raise CorruptKernelDataError("printk: ring array shorter than its element count")
    order_idx = sorted(range(len(fields)), key=lambda i: fields[i][0])
    fmt, pos = ["<" if order == "little" else ">"], 0
    for i in order_idx:
        off, code = fields[i]
        if off < pos:
            raise CorruptKernelDataError("printk: overlapping VMCOREINFO offsets")
        fmt.append(f"{off - pos}x{code}" if off > pos else code)
        pos = off + struct.calcsize("<" + code)
    if pos > stride:
        raise CorruptKernelDataError("printk: VMCOREINFO offsets beyond the struct size")
    fmt.append(f"{stride - pos}x" if stride > pos else "")
    rows = struct.iter_unpack("".join(fmt), memoryview(region.data)[:need])
    cols = list(zip(*rows)) if count else [() for _ in fields]
    out: list[tuple[int, ...]] = [()] * len(fields)
    for j, i in enumerate(order_idx):
        out[i] = cols[j]
    return out


def _cstr(b: bytes) -> bytes:
    return b.split(b"\0", 1)[0]


def read_lockless(mem: KernelMemory, bits: BitfieldReader | None = None) -> PrintkLog:
    k = _Keys(mem)
    order = getattr(mem, "byteorder", None) or getattr(getattr(mem, "space", None), "byteorder", "little")
    L = k.long
    full = (1 << (8 * L)) - 1
    flags_shift = 8 * L - 2
    id_mask = full ^ (3 << flags_shift)

    rb_addr = _u(mem.read(k.prb_sym, L), 0, L, order)
    rb = mem.read(rb_addr, k.rb_size)
    dr = k.desc_ring
    count_bits = _u(rb, dr + k.count_bits, 4, order)
    size_bits = _u(rb, k.text_ring + k.size_bits, 4, order)
    # The kernel sizes the descriptor ring from the text ring (descbits = size_bits - 5).
    if not 0 < count_bits < size_bits or (1 << size_bits) > MAX_RING_BYTES:
        raise CorruptKernelDataError(f"printk ring buffer at {rb_addr:#x}: count_bits={count_bits}, "
                                     f"size_bits={size_bits} are not a plausible ring size")
    count = 1 << count_bits
    ring_size = 1 << size_bits
    total = count * (k.desc_size + (0 if k.early else k.info_size)) + ring_size
    if total > MAX_READ_BYTES:
        raise CorruptKernelDataError(f"printk ring buffer at {rb_addr:#x}: {count} descriptors and a "
                                     f"{ring_size}-byte text ring ({total} bytes) exceed what vmcorekit reads")
    descs_addr = _u(rb, dr + k.descs, L, order)
    data_addr = _u(rb, k.text_ring + k.data, L, order)
    head_id = _u(rb, dr + k.head_id + k.counter, L, order)
    tail_id = _u(rb, dr + k.tail_id + k.counter, L, order)

    log = PrintkLog(layout="lockless-dict" if k.early else "lockless", records=[])
    if k.fail is not None:
        failed = _u(rb, k.fail + k.counter, L, order)
        if 0 < failed < 1 << 40:
            log.warnings.append(f"printk: the kernel failed to store {failed} message(s) "
                                f"(printk_ringbuffer.fail)")

    descs = read_region(mem, descs_addr, count * k.desc_size)
    if k.early:
        infos, info_base, info_stride = descs, k.desc_info, k.desc_size
    else:
        infos_addr = _u(rb, dr + k.infos, L, order)  # type: ignore[operator]
        infos = read_region(mem, infos_addr, count * k.info_size)
        info_base, info_stride = 0, k.info_size
    text = read_region(mem, data_addr, ring_size)
    dicts: Region | None = None
    dict_size = 0
    if k.early and k.dict_ring is not None and k.dict_blk is not None and k.dict_len is not None:
        dbits = _u(rb, k.dict_ring + k.size_bits, 4, order)
        if 0 < dbits and (1 << dbits) <= MAX_RING_BYTES:
            dict_size = 1 << dbits
            dicts = read_region(mem, _u(rb, k.dict_ring + k.data, L, order), dict_size)
    log.bytes_read = L + k.rb_size + len(descs.data) + len(text.data) + (0 if k.early else len(infos.data)) \
        + (len(dicts.data) if dicts else 0)
    for name, reg in (("descriptor ring", descs), ("info array", infos), ("text ring", text),
                      ("dictionary ring", dicts)):
        if reg is None or (name == "info array" and reg is descs):
            continue
        for s, e, why in reg.bad:
            log.gaps.append(Gap(name, reg.address + s, e - s, REASONS.get(why, why)))

    # The ids to visit: tail_id .. head_id inclusive. More than `count` of them cannot be live.
    span = ((head_id - tail_id) & id_mask) + 1
    if span > count:
        log.warnings.append(f"printk: descriptor ring ids {tail_id:#x}..{head_id:#x} span {span} ids for "
                            f"{count} descriptors (corrupt tail_id?): reading the last {count}")
        span = count
        tail_id = (head_id - count + 1) & id_mask

    lc = "Q" if L == 8 else "I"
    sv, begin, nxt = _columns(descs, count, k.desc_size, [
        (k.state_var + k.counter, lc), (k.text_blk + k.lpos_begin, lc), (k.text_blk + k.lpos_next, lc)], order)
    info_fields = [(k.seq, "Q"), (k.ts, "Q"), (k.text_len, "H")]
    if k.caller is not None:
        info_fields.append((k.caller, "I"))
    if k.early:  # printk_info is embedded in each descriptor
        info_fields = [(info_base + off, code) for off, code in info_fields]
    cols = _columns(infos, count, info_stride, info_fields, order)
    seqs, tss, tlens = cols[0], cols[1], cols[2]
    callers = cols[3] if k.caller is not None else None

    # Descriptors or infos on pages the dump lacks cannot be trusted: one warning per gap.
    desc_gap = _element_gap(descs, count, k.desc_size)
    info_gap = _element_gap(infos, count, info_stride) if infos is not descs else desc_gap
    skipped: dict[tuple[str, int], list[int]] = {}  # (array, gap index) -> ids on it

    dev_base = info_base + (k.dev_info or 0)
    want_dev = k.dev_info is not None and k.subsys is not None and k.device is not None
    subsys_len, device_len = k.subsys_len or 16, k.device_len or 48
    lost_text: dict[int, list[int]] = {}  # gap index -> seqs of records whose text it holds
    corrupt = 0
    records = log.records
    tdata, idata = text.data, infos.data
    cmask = count - 1
    for j in range(span):
        rid = (tail_id + j) & id_mask
        i = rid & cmask
        gd, gi = desc_gap.get(i, -1), info_gap.get(i, -1)
        if gd >= 0 or gi >= 0:
            key = ("descriptor ring", gd) if gd >= 0 else ("info array", gi)
            skipped.setdefault(key, []).append(rid)
            continue
        s_v = sv[i]
        if s_v & id_mask != rid or (s_v >> flags_shift) & 3 not in (DESC_COMMITTED, DESC_FINALIZED):
            continue  # reserved (being written), reusable (data gone) or of another id
        rec = LogRecord(seq=seqs[i], ts_nsec=tss[i], text=b"", caller_id=callers[i] if callers else None)
        start, length, status = _locate(begin[i], nxt[i], tlens[i], size_bits, L)
        if status == "dataless" or status == "lost":
            rec.dataless = True
            rec.lost = status == "lost"
        elif status == "corrupt":
            corrupt += 1
            rec.dataless = rec.lost = True
        else:
            rec.truncated = status == "truncated"
            g = text.gap_at(start, start + length)
            if g < 0:
                rec.text = tdata[start:start + length]
            else:
                rec.lost = True
                lost_text.setdefault(g, []).append(rec.seq)
        ib = info_base + i * info_stride
        if want_dev:
            d = dev_base + i * info_stride
            rec.subsystem = _cstr(idata[d + k.subsys:d + k.subsys + subsys_len])  # type: ignore[operator]
            rec.device = _cstr(idata[d + k.device:d + k.device + device_len])  # type: ignore[operator]
        elif dicts is not None:
            _dict_into(rec, dicts, descs.data, i * k.desc_size + k.dict_blk, idata,  # type: ignore[operator]
                       ib + k.dict_len, dict_size, L, order, k)  # type: ignore[operator]
        if bits is not None:
            bits.apply(rec, idata, ib)
        records.append(rec)
    for (name, g), id_list in sorted(skipped.items()):
        reg = descs if name == "descriptor ring" else infos
        s0, e0, why = reg.bad[g]
        log.warnings.append(
            f"printk: up to {len(id_list)} record(s) lost (descriptor ids {id_list[0]:#x}-{id_list[-1]:#x}): {name} "
            f"bytes {reg.address + s0:#x}-{reg.address + e0:#x} are {REASONS.get(why, why)}")
    for g, seq_list in sorted(lost_text.items()):
        s0, e0, why = text.bad[g]
        log.warnings.append(
            f"printk: {len(seq_list)} record(s) lost (seq {min(seq_list)}-{max(seq_list)}): text ring bytes "
            f"{text.address + s0:#x}-{text.address + e0:#x} are {REASONS.get(why, why)}")
    if corrupt:
        log.warnings.append(f"printk: {corrupt} descriptor(s) give impossible text positions (corrupt "
                            f"ring buffer): their text is skipped")
    log.levels_known = bits is not None
    if k.clear_seq is not None:
        try:
            log.clear_seq = _read_clear_seq(mem, k, order)
        except MemoryReadError:
            pass  # only --since-clear needs it, and it says so when it is unknown
    return log


def _locate(begin: int, nxt: int, text_len: int, size_bits: int, L: int) -> tuple[int, int, str]:
    """Where a record's text lies in the ring: (offset, length, status), following the kernel's
    get_data() for validity and vmcore-dmesg's clamp of text_len to the block. Positions are
    unsigned longs: the first wrap of every ring crosses 2**64 (BLK0_LPOS is -size)."""
    if begin & 1 and nxt & 1:
        return 0, 0, "dataless" if begin == NO_LPOS and nxt == NO_LPOS else "lost"
    size = 1 << size_bits
    full = (1 << (8 * L)) - 1
    if begin >> size_bits == nxt >> size_bits and begin < nxt:
        off, data_size = begin & (size - 1), nxt - begin
    elif ((begin + size) & full) >> size_bits == nxt >> size_bits:
        off, data_size = 0, nxt & (size - 1)  # wrapping block: stored at the ring's start
    else:
        return 0, 0, "corrupt"
    if begin % L or nxt % L or data_size < L or off + data_size > size:
        return 0, 0, "corrupt"
    data_size -= L
    if text_len > data_size:
        return off + L, data_size, "truncated"
    return off + L, text_len, "ok"


def _element_gap(region: Region, count: int, stride: int) -> dict[int, int]:
    """Array elements that touch a gap: {element index: index in region.bad}."""
    gap: dict[int, int] = {}
    for g, (s, e, _) in enumerate(region.bad):
        for i in range(max(0, s // stride), min(count, (e + stride - 1) // stride)):
            gap.setdefault(i, g)
    return gap


def _dict_into(rec: LogRecord, dicts: Region, descs: bytes, lpos_off: int, infos: bytes, dlen_off: int,
               dict_size: int, L: int, order: str, k: _Keys) -> None:
    """Early 5.10 rings kept SUBSYSTEM=/DEVICE= in a dictionary ring."""
    b = _u(descs, lpos_off + k.lpos_begin, L, order)
    n = _u(descs, lpos_off + k.lpos_next, L, order)
    dlen = _u(infos, dlen_off, 2, order)
    start, length, status = _locate(b, n, dlen, dict_size.bit_length() - 1, L)
    if status in ("ok", "truncated") and dicts.readable(start, start + length):
        _parse_dict(rec, dicts.data[start:start + length])


def _parse_dict(rec: LogRecord, blob: bytes) -> None:
    for item in blob.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if not sep:
            continue
        if key == b"SUBSYSTEM":
            rec.subsystem = value
        elif key == b"DEVICE":
            rec.device = value


def _read_clear_seq(mem: KernelMemory, k: _Keys, order: str) -> int:
    """clear_seq is a plain u64 in 5.10 and a struct latched_seq (two copies picked by the low
    bit of the latch sequence) from 5.11 on."""
    addr = k.clear_seq
    assert addr is not None
    if not k.latched:
        return int.from_bytes(mem.read(addr, 8), order)
    latch = int.from_bytes(mem.read(addr, 4), order)
    return int.from_bytes(mem.read(addr + k.latched_val + 8 * (latch & 1), 8), order)
