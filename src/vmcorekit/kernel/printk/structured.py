"""The structured log buffer of Linux 3.5 to 5.9: variable-length `struct printk_log` records
(named `struct log` before 3.11) in one character array.

Each record is a header {u64 ts_nsec; u16 len; u16 text_len; u16 dict_len; u8 facility;
u8 flags:5, level:3; [u32 caller_id]} followed by the text and the dictionary (KEY=VALUE pairs
separated by NUL), padded to `len`. Records run from log_first_idx to log_next_idx; a header
with len == 0 marks the end of the used part of the buffer and sends the walk back to index 0.

A walk that meets an unreadable page cannot know where the next record starts; it resumes at
the first offset after the gap from which a chain of well-formed headers reaches log_next_idx
(found in one backward pass over the buffer), so every readable record is kept.
"""
from __future__ import annotations

from collections.abc import Callable

from ...errors import CorruptKernelDataError, VmcoreinfoError
from .levels import BitfieldReader
from .model import REASONS, Gap, KernelMemory, LogRecord, PrintkLog, Region, read_region

MAX_LOG_BUF = 1 << 31
RESYNC_PROBES = 1 << 20  # header offsets tried when resynchronising after damage, per log


class _Keys:
    def __init__(self, mem: KernelMemory) -> None:
        vi = mem.vmcoreinfo
        s = vi.symbols
        for name in ("log_buf", "log_buf_len", "log_first_idx", "log_next_idx"):
            if name not in s:
                raise VmcoreinfoError(f"VMCOREINFO has no SYMBOL({name}) for the structured printk log")
        self.log_buf, self.log_buf_len = s["log_buf"], s["log_buf_len"]
        self.first_idx, self.next_idx = s["log_first_idx"], s["log_next_idx"]
        self.clear_idx = s.get("clear_idx")
        # struct printk_log, or `struct log` before 3.11
        self.struct = "printk_log" if "printk_log" in vi.sizes else "log"
        st = self.struct
        self.hdr = vi.size(st)
        self.ts = vi.offset(f"{st}.ts_nsec")
        self.len = vi.offset(f"{st}.len")
        self.text_len = vi.offset(f"{st}.text_len")
        self.dict_len = vi.offsets.get(f"{st}.dict_len")
        self.caller = vi.offsets.get(f"{st}.caller_id")
        self.long = vi.sizes.get("long", 8)


def read_structured(mem: KernelMemory, bits: BitfieldReader | None = None) -> PrintkLog:
    k = _Keys(mem)
    order = getattr(mem, "byteorder", None) or getattr(getattr(mem, "space", None), "byteorder", "little")
    ptr_size = getattr(getattr(mem, "space", None), "pointer_size", 8)

    def u(addr: int, n: int) -> int:
        return int.from_bytes(mem.read(addr, n), order)

    buf_addr = u(k.log_buf, ptr_size)
    buf_len = u(k.log_buf_len, 4)
    first, nxt = u(k.first_idx, 4), u(k.next_idx, 4)
    clear = u(k.clear_idx, 4) if k.clear_idx is not None else None
    if not k.hdr <= buf_len <= MAX_LOG_BUF:
        raise CorruptKernelDataError(f"log_buf_len={buf_len} is not a plausible log buffer size")
    if first > buf_len - k.hdr or nxt > buf_len:
        raise CorruptKernelDataError(f"log_first_idx={first} / log_next_idx={nxt} lie outside "
                                     f"log_buf ({buf_len} bytes)")
    region = read_region(mem, buf_addr, buf_len)
    data = region.data
    log = PrintkLog(layout="structured", records=[], bytes_read=buf_len + 20)
    for s, e, why in region.bad:
        log.gaps.append(Gap("log buffer", buf_addr + s, e - s, REASONS.get(why, why)))

    def header(idx: int) -> tuple[int, int, int] | None:
        """(len, text_len, dict_len) of a well-formed header at idx, else None."""
        if idx < 0 or idx + k.hdr > buf_len or not region.readable(idx, idx + k.hdr):
            return None
        ln = int.from_bytes(data[idx + k.len:idx + k.len + 2], order)
        tl = int.from_bytes(data[idx + k.text_len:idx + k.text_len + 2], order)
        dl = int.from_bytes(data[idx + k.dict_len:idx + k.dict_len + 2], order) if k.dict_len is not None else 0
        if ln == 0:
            return 0, 0, 0
        if ln < k.hdr or idx + ln > buf_len or k.hdr + tl + dl > ln or ln % 4:
            return None
        return ln, tl, dl

    records = log.records
    idx = first
    wrapped = False
    # Every record is at least a header long: the walk cannot take more steps than this.
    budget = buf_len // k.hdr + 2
    clear_pos: int | None = None
    # Per unreadable run of log_buf: records whose text it holds, and stretches skipped over it.
    memos: dict[bool, dict[int, bool]] = {True: {}, False: {}}  # resync results, shared by all gaps
    probes = [RESYNC_PROBES]  # offsets all resyncs together may try: corrupt buffers cost bounded time
    text_lost: dict[int, int] = {}
    skipped: dict[int, list[str]] = {}
    while idx != nxt and budget > 0:
        budget -= 1
        if clear is not None and idx == clear and clear_pos is None:
            clear_pos = len(records)
        h = header(idx)
        if h is not None and h[0] and (first <= nxt or wrapped) and idx < nxt < idx + h[0]:
            h = None  # a record that jumps over log_next_idx is not one
        if h is None:
            pending = first > nxt and not wrapped
            resume = _resync(header, region, idx, nxt, buf_len, k.hdr, pending, memos[pending], probes)
            gap = region.gap_at(idx, min(buf_len, idx + k.hdr))
            what = (f"log_buf+{idx:#x}..+{resume:#x}" if resume is not None
                    else f"log_buf+{idx:#x} to log_next_idx")
            if gap >= 0:
                skipped.setdefault(gap, []).append(what)
            else:
                log.warnings.append(f"printk: malformed record header at log_buf+{idx:#x} (corrupt buffer): "
                                    f"records in {what} are lost")
            if resume is None:
                break
            if resume < idx:
                wrapped = True
            idx = resume
            continue
        ln, tl, dl = h
        if ln == 0:
            # End-of-buffer marker: vmcore-dmesg prints its (zeroed) header as a line.
            if wrapped or first <= nxt:
                log.warnings.append(f"printk: unexpected end-of-buffer marker at log_buf+{idx:#x} "
                                    f"(corrupt log indexes); stopping")
                break
            ts = int.from_bytes(data[idx + k.ts:idx + k.ts + 8], order)
            log.wrap_markers.append((len(records), ts))
            wrapped = True
            idx = 0
            continue
        body = idx + k.hdr
        rec = LogRecord(seq=None, ts_nsec=int.from_bytes(data[idx + k.ts:idx + k.ts + 8], order),
                        text=data[body:body + tl])
        if k.caller is not None:
            rec.caller_id = int.from_bytes(data[idx + k.caller:idx + k.caller + 4], order)
        gap = region.gap_at(body, body + tl + dl)
        if gap >= 0:
            rec.lost, rec.text = True, b""
            text_lost[gap] = text_lost.get(gap, 0) + 1
        elif dl:
            _parse_dict(rec, data[body + tl:body + tl + dl])
        if bits is not None:
            bits.apply(rec, data, idx)
        records.append(rec)
        idx += ln
    else:
        if budget <= 0 and idx != nxt:
            log.warnings.append("printk: the structured log does not reach log_next_idx (cycle?); stopping")
    for g in sorted(set(text_lost) | set(skipped)):
        s0, e0, why = region.bad[g]
        parts = []
        if g in text_lost:
            parts.append(f"{text_lost[g]} record(s) lost their text")
        if g in skipped:
            parts.append("records in " + ", ".join(skipped[g]) + " are lost")
        log.warnings.append(f"printk: log_buf bytes {buf_addr + s0:#x}-{buf_addr + e0:#x} are "
                            f"{REASONS.get(why, why)}: {'; '.join(parts)}")
    log.levels_known = bits is not None
    if clear is not None:
        # clear_idx == log_next_idx: nothing since the clear; not met at all: it fell off the
        # start of the buffer, so everything is newer (the kernel resets it the same way).
        log.clear_index = clear_pos if clear_pos is not None else (len(records) if clear == nxt else 0)
    return log


def _resync(header: "Callable[[int], tuple[int, int, int] | None]", region: Region, idx: int, nxt: int,
            buf_len: int, hdr: int, wrap_pending: bool, memo: dict[int, bool],
            probes: list[int] | None = None) -> int | None:
    """The first offset after the unreadable or malformed spot at idx from which well-formed
    headers lead to log_next_idx. When a wrap is still pending (idx lies in the older part,
    after log_next_idx) the chain may pass one end-of-buffer marker; otherwise it must reach
    log_next_idx without passing it. Results are memoised along each chain (and across calls
    with the same wrap_pending), so all searches together are linear in the buffer size."""
    align = 4
    bad_end = idx + hdr
    g = region.gap_at(idx, min(buf_len, idx + hdr))
    if g >= 0:
        bad_end = max(bad_end, region.bad[g][1])

    def reaches(p: int) -> bool:
        path: list[int] = []
        q = p
        result = False
        for _ in range(buf_len // hdr + 2):
            if q == nxt:
                result = True
                break
            if q in memo:
                result = memo[q]
                break
            h = header(q)
            if h is None:
                break
            path.append(q)
            if h[0] == 0:
                if not (wrap_pending and q > nxt):
                    break
                q = 0
                continue
            if q <= nxt < q + h[0] or (q > nxt and not wrap_pending):
                break  # jumped over log_next_idx
            q += h[0]
        for r in path:
            memo[r] = result
        return result

    start = (bad_end + align - 1) // align * align
    if wrap_pending:
        candidates = [range(start, buf_len - hdr + 1, align), range(0, nxt + 1, align)]
    else:
        candidates = [range(start, nxt + 1, align)]
    budget = probes if probes is not None else [RESYNC_PROBES]
    for r in candidates:
        p = r.start
        while p < r.stop:
            g = region.gap_at(p, min(buf_len, p + hdr))
            if g >= 0:
                # No header starts where its bytes are missing: jump past the unreadable run
                # (one step, not one per offset; log_next_idx itself may lie inside it).
                after = max(p + align, (region.bad[g][1] + align - 1) // align * align)
                if p <= nxt < after and nxt in r:
                    return nxt
                p = after
                continue
            budget[0] -= 1
            if budget[0] < 0:
                return None
            if reaches(p):
                return p
            p += align
    return None


def _parse_dict(rec: LogRecord, blob: bytes) -> None:
    for item in blob.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key == b"SUBSYSTEM":
            rec.subsystem = value
        elif sep and key == b"DEVICE":
            rec.device = value
