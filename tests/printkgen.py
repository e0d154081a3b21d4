"""Builders of synthetic kernel log buffers in each printk layout, from the kernel's documented
layouts (Documentation/admin-guide/kdump/vmcoreinfo.rst, kernel/printk/printk_ringbuffer.[ch],
kernel/printk/printk.c of 3.5-5.9 and 2.6): they write records the way the kernel's writers do
(descriptor ids and states, data-block wrapping, end-of-buffer markers, cyclic plain buffer),
and describe the result as VMCOREINFO text plus memory segments.

`FakeKernel` serves those segments through the small reader interface the printk code uses;
`to_elf` packs them into an ELF core (virtual addresses in the PT_LOADs) that the real
vmcore-dmesg can read, for differential tests.
"""
from __future__ import annotations

import struct
from collections import deque

from vmcorekit.errors import PageExcludedError, PageNotInDumpError
from vmcorekit.vmcoreinfo import VmcoreInfo

SYMS = 0xFFFFFFFF82000000  # where the builders put kernel variables
BUFS = 0xFFFF888001000000  # where they put the buffers


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


class Image:
    """Kernel variables and buffers at virtual addresses, plus the VMCOREINFO that finds them."""

    def __init__(self) -> None:
        self.segments: dict[int, bytearray] = {}
        self.lines: list[str] = ["OSRELEASE=synthetic", "PAGESIZE=4096"]
        self._next_sym = SYMS
        self._next_buf = BUFS

    def var(self, name: str, size: int, symbol: bool = True) -> int:
        addr = self._next_sym
        self._next_sym += _align(size, 8)
        self.segments.setdefault(SYMS, bytearray(0x4000))
        if symbol:
            self.lines.append(f"SYMBOL({name})={addr:x}")
        return addr

    def buffer(self, size: int) -> int:
        addr = self._next_buf
        self.segments[addr] = bytearray(_align(size, 4096))
        self._next_buf += _align(size, 4096) + 0x10000
        return addr

    def write(self, addr: int, data: bytes) -> None:
        for base, seg in self.segments.items():
            if base <= addr and addr + len(data) <= base + len(seg):
                seg[addr - base:addr - base + len(data)] = data
                return
        raise ValueError(f"no segment for {addr:#x}")

    def put(self, addr: int, fmt: str, *values: int) -> None:
        self.write(addr, struct.pack("<" + fmt, *values))

    def vmcoreinfo_text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def vmcoreinfo(self) -> VmcoreInfo:
        return VmcoreInfo.parse(self.vmcoreinfo_text())


# -- the lockless ring (5.10+) -------------------------------------------------------------------
LONG = 8
FLAGS_SHIFT = 62
ID_MASK = (1 << 62) - 1
FULL = (1 << 64) - 1
FAILED_LPOS, NO_LPOS = 0x1, 0x3
STATES = {"reserved": 0, "committed": 1, "finalized": 2, "reusable": 3}

# Offsets as Linux 6.1 x86_64 exports them, and as the early 5.10 rings (printk_info inside
# prb_desc, a dictionary ring, dict_len) laid them out.
PROFILE_61 = dict(
    rb_size=88, desc_ring=0, text_ring=48, fail=80, desc_ring_size=48,
    count_bits=0, descs=8, infos=16, head_id=24, tail_id=32,
    desc_size=24, state_var=0, text_blk=8,
    info_size=88, seq=0, ts=8, text_len=16, facility=18, flags_level=19, caller=20, dev_info=24,
    data_ring_size=32, size_bits=0, data=8, head_lpos=16, tail_lpos=24)
PROFILE_EARLY = dict(
    rb_size=104, desc_ring=0, text_ring=32, dict_ring=64, fail=96, desc_ring_size=32,
    count_bits=0, descs=8, head_id=16, tail_id=24,
    desc_size=72, info=0, state_var=32, text_blk=40, dict_blk=56,
    info_size=32, seq=0, ts=8, text_len=16, dict_len=18, facility=20, flags_level=21, caller=24,
    data_ring_size=32, size_bits=0, data=8, head_lpos=16, tail_lpos=24)


def member_bits_61(struct_name: str, member: str) -> tuple[int, int] | None:
    """What BTF says of struct printk_info on x86_64 6.1 (facility u8, flags:5, level:3)."""
    table = {("printk_info", "facility"): (144, 8), ("printk_info", "flags"): (152, 5),
             ("printk_info", "level"): (157, 3)}
    return table.get((struct_name, member))


class _DataRing:
    """A prb_data_ring: blocks of [id][text] at logical positions, wrapping blocks at 0."""

    def __init__(self, size_bits: int) -> None:
        self.bits = size_bits
        self.size = 1 << size_bits
        self.data = bytearray(self.size)
        self.head = self.tail = (-self.size) & FULL  # BLK0_LPOS

    def next_lpos(self, begin: int, size: int) -> int:
        if begin >> self.bits == (begin + size) >> self.bits:
            return begin + size
        return ((begin + size) & ~(self.size - 1)) + size  # wrapping: stored at the start

    def store(self, rid: int, payload: bytes, expire) -> tuple[int, int]:  # type: ignore[no-untyped-def]
        size = _align(LONG + len(payload), LONG)
        if size > self.size // 2:
            raise ValueError("record too large for this ring")
        begin = self.head
        nxt = self.next_lpos(begin, size)
        while (nxt - self.tail) & FULL > self.size:
            expire()  # the kernel's data_push_tail: oldest blocks and their descriptors go
        bi = begin & (self.size - 1)
        if begin >> self.bits != nxt >> self.bits:
            if bi + LONG <= self.size:
                self.data[bi:bi + LONG] = struct.pack("<Q", rid)
            bi = 0
        self.data[bi:bi + LONG] = struct.pack("<Q", rid)
        self.data[bi + LONG:bi + LONG + len(payload)] = payload
        self.head = nxt & FULL
        return begin & FULL, nxt & FULL


class LocklessLog:
    """A printk_ringbuffer written the way the kernel's prb_reserve/commit/finalize do."""

    def __init__(self, count_bits: int = 4, size_bits: int = 10, *, early: bool = False,
                 dict_size_bits: int = 10) -> None:
        self.p = PROFILE_EARLY if early else PROFILE_61
        self.early = early
        self.count_bits = count_bits
        self.count = 1 << count_bits
        self.text = _DataRing(size_bits)
        self.dicts = _DataRing(dict_size_bits) if early else None
        p = self.p
        self.descs = bytearray(self.count * p["desc_size"])
        self.infos = bytearray(self.count * p["info_size"]) if not early else None
        desc0 = (-(self.count + 1)) & ID_MASK  # DESC0_ID
        self.head_id = self.tail_id = desc0
        self._desc(desc0 % self.count, "reusable", desc0, (FAILED_LPOS, FAILED_LPOS))
        self.next_seq = 0
        self.live: deque[int] = deque()  # ids whose text block is still in the ring
        self.lpos: dict[int, int] = {}  # id -> next lpos of its text block
        self.clear_seq = 0
        self.fail = 0

    # -- descriptor and info fields --
    def _desc(self, i: int, state: str, rid: int, lpos: tuple[int, int],
              dict_lpos: tuple[int, int] = (FAILED_LPOS, FAILED_LPOS)) -> None:
        p, base = self.p, i * self.p["desc_size"]
        struct.pack_into("<Q", self.descs, base + p["state_var"], (STATES[state] << FLAGS_SHIFT) | rid)
        struct.pack_into("<QQ", self.descs, base + p["text_blk"], *lpos)
        if self.early:
            struct.pack_into("<QQ", self.descs, base + p["dict_blk"], *dict_lpos)

    def _info(self, i: int) -> tuple[bytearray, int]:
        if self.early:
            return self.descs, i * self.p["desc_size"] + self.p["info"]
        return self.infos, i * self.p["info_size"]  # type: ignore[return-value]

    def set_state(self, rid: int, state: str) -> None:
        base = (rid % self.count) * self.p["desc_size"] + self.p["state_var"]
        struct.pack_into("<Q", self.descs, base, (STATES[state] << FLAGS_SHIFT) | rid)

    def _make_reusable(self, rid: int) -> None:
        self.set_state(rid, "reusable")

    def _expire_text(self) -> None:
        rid = self.live.popleft()
        self._make_reusable(rid)
        self.text.tail = self.lpos.pop(rid)

    def add(self, text: bytes, ts_nsec: int = 0, *, caller_id: int = 1, level: int = 6, facility: int = 0,
            flags: int = 2, subsystem: bytes = b"", device: bytes = b"", state: str = "finalized",
            dataless: str | None = None) -> int:
        """Store one record; returns its descriptor id. dataless: 'lost' (FAILED_LPOS) or
        'empty' (NO_LPOS)."""
        rid = (self.head_id + 1) & ID_MASK
        i = rid % self.count
        if (rid - self.tail_id) & ID_MASK >= self.count:
            # desc_push_tail: the oldest descriptor must be reusable before its slot is taken.
            old = self.tail_id
            if old in self.lpos:
                while old in self.lpos:
                    self._expire_text()
            self._make_reusable(old)
            self.tail_id = (self.tail_id + 1) & ID_MASK
        if dataless == "lost":
            lpos = (FAILED_LPOS, FAILED_LPOS)
        elif dataless == "empty":
            lpos = (NO_LPOS, NO_LPOS)
        else:
            lpos = self.text.store(rid, text, self._expire_text)
            self.live.append(rid)
            self.lpos[rid] = lpos[1]
        dict_lpos = (FAILED_LPOS, FAILED_LPOS)
        dict_blob = b""
        if self.early and (subsystem or device):
            dict_blob = b"\0".join(x for x in (subsystem and b"SUBSYSTEM=" + subsystem,
                                               device and b"DEVICE=" + device) if x)
            dict_lpos = self.dicts.store(rid, dict_blob, lambda: setattr(  # type: ignore[union-attr]
                self.dicts, "tail", self.dicts.head))  # dictionaries simply restart when full
        self._desc(i, state, rid, lpos, dict_lpos)
        buf, base = self._info(i)
        p = self.p
        struct.pack_into("<QQH", buf, base, self.next_seq, ts_nsec, 0 if dataless else len(text))
        struct.pack_into("<B", buf, base + p["facility"], facility)
        struct.pack_into("<B", buf, base + p["flags_level"], (flags & 0x1F) | (level << 5))
        struct.pack_into("<I", buf, base + p["caller"], caller_id)
        if self.early:
            struct.pack_into("<H", buf, base + p["dict_len"], len(dict_blob))
        else:
            d = base + p["dev_info"]
            buf[d:d + 64] = b"\0" * 64
            buf[d:d + len(subsystem[:15])] = subsystem[:15]
            buf[d + 16:d + 16 + len(device[:47])] = device[:47]
        self.next_seq += 1
        self.head_id = rid
        return rid

    def clear(self) -> None:
        self.clear_seq = self.next_seq

    def image(self, *, latched: bool = True) -> Image:
        img = Image()
        p = self.p
        prb = img.var("prb", 8)
        rb = img.var("printk_rb_static", p["rb_size"])
        clear = img.var("clear_seq", 24)
        img.put(prb, "Q", rb)
        descs = img.buffer(len(self.descs))
        img.write(descs, bytes(self.descs))
        text = img.buffer(self.text.size)
        img.write(text, bytes(self.text.data))
        dr, tr = rb + p["desc_ring"], rb + p["text_ring"]
        img.put(dr + p["count_bits"], "I", self.count_bits)
        img.put(dr + p["descs"], "Q", descs)
        if not self.early:
            infos = img.buffer(len(self.infos))  # type: ignore[arg-type]
            img.write(infos, bytes(self.infos))  # type: ignore[arg-type]
            img.put(dr + p["infos"], "Q", infos)
        img.put(dr + p["head_id"], "Q", self.head_id)
        img.put(dr + p["tail_id"], "Q", self.tail_id)
        img.put(tr + p["size_bits"], "I", self.text.bits)
        img.put(tr + p["data"], "Q", text)
        img.put(tr + p["head_lpos"], "QQ", self.text.head, self.text.tail)
        img.put(rb + p["fail"], "Q", self.fail)
        if self.early:
            dd = img.buffer(self.dicts.size)  # type: ignore[union-attr]
            img.write(dd, bytes(self.dicts.data))  # type: ignore[union-attr]
            dt = rb + p["dict_ring"]
            img.put(dt + p["size_bits"], "I", self.dicts.bits)  # type: ignore[union-attr]
            img.put(dt + p["data"], "Q", dd)
        if latched:
            img.put(clear, "IIQQ", 3, 0, 0, self.clear_seq)  # latch sequence odd: val[1] is current
        else:
            img.put(clear, "Q", self.clear_seq)
        L = img.lines
        L += [f"SIZE(printk_ringbuffer)={p['rb_size']}", f"OFFSET(printk_ringbuffer.desc_ring)={p['desc_ring']}",
              f"OFFSET(printk_ringbuffer.text_data_ring)={p['text_ring']}"]
        if self.early:
            L.append(f"OFFSET(printk_ringbuffer.dict_data_ring)={p['dict_ring']}")
        L += [f"OFFSET(printk_ringbuffer.fail)={p['fail']}", f"SIZE(prb_desc_ring)={p['desc_ring_size']}",
              f"OFFSET(prb_desc_ring.count_bits)={p['count_bits']}", f"OFFSET(prb_desc_ring.descs)={p['descs']}"]
        if not self.early:
            L.append(f"OFFSET(prb_desc_ring.infos)={p['infos']}")
        L += [f"OFFSET(prb_desc_ring.head_id)={p['head_id']}", f"OFFSET(prb_desc_ring.tail_id)={p['tail_id']}",
              f"SIZE(prb_desc)={p['desc_size']}"]
        if self.early:
            L.append(f"OFFSET(prb_desc.info)={p['info']}")
        L += [f"OFFSET(prb_desc.state_var)={p['state_var']}", f"OFFSET(prb_desc.text_blk_lpos)={p['text_blk']}"]
        if self.early:
            L.append(f"OFFSET(prb_desc.dict_blk_lpos)={p['dict_blk']}")
        L += ["SIZE(prb_data_blk_lpos)=16", "OFFSET(prb_data_blk_lpos.begin)=0", "OFFSET(prb_data_blk_lpos.next)=8",
              f"SIZE(printk_info)={p['info_size']}", f"OFFSET(printk_info.seq)={p['seq']}",
              f"OFFSET(printk_info.ts_nsec)={p['ts']}", f"OFFSET(printk_info.text_len)={p['text_len']}"]
        if self.early:
            L.append(f"OFFSET(printk_info.dict_len)={p['dict_len']}")
        L.append(f"OFFSET(printk_info.caller_id)={p['caller']}")
        if not self.early:
            L += [f"OFFSET(printk_info.dev_info)={p['dev_info']}", "SIZE(dev_printk_info)=64",
                  "OFFSET(dev_printk_info.subsystem)=0", "LENGTH(printk_info_subsystem)=16",
                  "OFFSET(dev_printk_info.device)=16", "LENGTH(printk_info_device)=48"]
        L += [f"SIZE(prb_data_ring)={p['data_ring_size']}", f"OFFSET(prb_data_ring.size_bits)={p['size_bits']}",
              f"OFFSET(prb_data_ring.data)={p['data']}", f"OFFSET(prb_data_ring.head_lpos)={p['head_lpos']}",
              f"OFFSET(prb_data_ring.tail_lpos)={p['tail_lpos']}", "SIZE(atomic_long_t)=8",
              "OFFSET(atomic_long_t.counter)=0"]
        if latched:
            L += ["SIZE(latched_seq)=24", "OFFSET(latched_seq.val)=8"]
        return img


# -- the structured log (3.5 - 5.9) ----------------------------------------------------------------
class StructuredLog:
    """log_buf of struct printk_log records, written like log_store() of 4.x/5.x (and 3.5's
    `struct log` with old_names)."""

    def __init__(self, buf_len: int = 1024, *, caller: bool = False, old_names: bool = False) -> None:
        self.len = buf_len
        self.buf = bytearray(buf_len)
        self.hdr = 20 if caller else 16
        self.caller = caller
        self.struct = "log" if old_names else "printk_log"
        self.first_idx = self.next_idx = 0
        self.first_seq = self.next_seq = 0
        self.clear_idx = self.clear_seq = 0

    def _len_at(self, idx: int) -> int:
        return struct.unpack_from("<H", self.buf, idx + 8)[0]

    def _log_next(self, idx: int) -> int:
        ln = self._len_at(idx)
        return self._len_at(0) if ln == 0 else idx + ln

    def _has_space(self, size: int, empty: bool) -> bool:
        if self.next_idx > self.first_idx or empty:
            free = max(self.len - self.next_idx, self.first_idx)
        else:
            free = self.first_idx - self.next_idx
        return free >= size + self.hdr

    def add(self, text: bytes, ts_nsec: int = 0, *, dict_: bytes = b"", level: int = 6, facility: int = 0,
            flags: int = 2, caller_id: int = 1) -> None:
        size = _align(self.hdr + len(text) + len(dict_), 4)
        while self.first_seq < self.next_seq and not self._has_space(size, False):
            self.first_idx = self._log_next(self.first_idx)
            self.first_seq += 1
        if self.clear_seq < self.first_seq:
            self.clear_seq, self.clear_idx = self.first_seq, self.first_idx
        if not self._has_space(size, self.first_seq == self.next_seq):
            raise ValueError("record too large for this buffer")
        if self.next_idx + size + self.hdr > self.len:
            self.buf[self.next_idx:self.next_idx + self.hdr] = b"\0" * self.hdr  # end-of-buffer marker
            self.next_idx = 0
        i = self.next_idx
        struct.pack_into("<QHHHBB", self.buf, i, ts_nsec, size, len(text), len(dict_), facility,
                         (flags & 0x1F) | (level << 5))
        if self.caller:
            struct.pack_into("<I", self.buf, i + 16, caller_id)
        self.buf[i + self.hdr:i + self.hdr + len(text)] = text
        self.buf[i + self.hdr + len(text):i + self.hdr + len(text) + len(dict_)] = dict_
        self.next_idx += size
        self.next_seq += 1

    def clear(self) -> None:
        self.clear_idx, self.clear_seq = self.next_idx, self.next_seq

    def image(self) -> Image:
        img = Image()
        log_buf = img.var("log_buf", 8)
        for name in ("log_buf_len", "log_first_idx", "clear_idx", "log_next_idx"):
            setattr(self, f"_{name}", img.var(name, 4))
        buf = img.buffer(self.len)
        img.write(buf, bytes(self.buf))
        img.put(log_buf, "Q", buf)
        img.put(self._log_buf_len, "I", self.len)  # type: ignore[attr-defined]
        img.put(self._log_first_idx, "I", self.first_idx)  # type: ignore[attr-defined]
        img.put(self._clear_idx, "I", self.clear_idx)  # type: ignore[attr-defined]
        img.put(self._log_next_idx, "I", self.next_idx)  # type: ignore[attr-defined]
        s = self.struct
        img.lines += [f"SIZE({s})={self.hdr}", f"OFFSET({s}.ts_nsec)=0", f"OFFSET({s}.len)=8",
                      f"OFFSET({s}.text_len)=10", f"OFFSET({s}.dict_len)=12"]
        if self.caller:
            img.lines.append(f"OFFSET({s}.caller_id)=16")
        return img


def member_bits_structured(struct_name: str, member: str) -> tuple[int, int] | None:
    table = {"facility": (112, 8), "flags": (120, 5), "level": (125, 3)}
    return table.get(member) if struct_name in ("printk_log", "log") else None


# -- the plain buffer (before 3.5) -----------------------------------------------------------------
class PlainLog:
    """char log_buf[] written cyclically by emit_log_char(); `dmesg -c` zeroes logged_chars."""

    def __init__(self, buf_len: int = 512) -> None:
        self.len = buf_len
        self.buf = bytearray(buf_len)
        self.log_end = 0
        self.logged_chars = 0

    def write(self, text: bytes) -> None:
        for c in text:
            self.buf[self.log_end % self.len] = c
            self.log_end += 1
            if self.logged_chars < self.len:
                self.logged_chars += 1

    def add(self, text: bytes, ts_nsec: int | None = None, level: int = 6) -> None:
        stamp = b"" if ts_nsec is None else b"[%5d.%06d] " % (ts_nsec // 10**9, ts_nsec % 10**9 // 1000)
        self.write(b"<%d>" % level + stamp + text + b"\n")

    def clear(self) -> None:
        self.logged_chars = 0

    def image(self) -> Image:
        img = Image()
        log_buf = img.var("log_buf", 8)
        end = img.var("log_end", 4)
        blen = img.var("log_buf_len", 4)
        chars = img.var("logged_chars", 4)
        buf = img.buffer(self.len)
        img.write(buf, bytes(self.buf))
        img.put(log_buf, "Q", buf)
        img.put(end, "I", self.log_end)
        img.put(blen, "i", self.len)
        img.put(chars, "I", self.logged_chars)
        return img


# -- serving an image ------------------------------------------------------------------------------
class FakeKernel:
    """The reader interface of the printk code over an Image. `holes` are [start, end) virtual
    ranges to report as excluded pages; reads are counted page by page."""

    page_size = 4096
    byteorder = "little"

    def __init__(self, img: Image, *, holes: list[tuple[int, int]] = (), member_bits=None,  # type: ignore[assignment]
                 vmcoreinfo: VmcoreInfo | None = None) -> None:
        self.segments = {base: bytes(seg) for base, seg in img.segments.items()}
        self.vmcoreinfo = vmcoreinfo or img.vmcoreinfo()
        self.holes = list(holes)
        self.pages_read: set[int] = set()
        self.reads = 0
        if member_bits is not None:
            self.member_bits = member_bits

    def read(self, address: int, size: int) -> bytes:
        self.reads += 1
        out = bytearray()
        pos, end = address, address + size
        while pos < end:
            n = min(end, (pos | 4095) + 1) - pos
            for s, e in self.holes:
                if s < pos + n and pos < e:
                    raise PageExcludedError(pos, "excluded (test hole)")
            for base, seg in self.segments.items():
                if base <= pos and pos + n <= base + len(seg):
                    out += seg[pos - base:pos - base + n]
                    break
            else:
                raise PageNotInDumpError(pos, "not in test image")
            self.pages_read.add(pos >> 12)
            pos += n
        return bytes(out)


def to_elf(img: Image) -> bytes:
    """An ELF64 core of the image (PT_LOAD virtual addresses set, as kdump writes them) with
    its VMCOREINFO note: what vmcore-dmesg reads."""
    from elfgen import build_core, note

    segs = []
    paddr = 0x100000
    for base, seg in sorted(img.segments.items()):
        segs.append((base, paddr, bytes(seg)))
        paddr += _align(len(seg), 4096) + 0x100000
    return build_core(segs, note(b"VMCOREINFO", 0, img.vmcoreinfo_text().encode()))
