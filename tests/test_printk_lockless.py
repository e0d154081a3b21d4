"""The lockless ring buffer reader (5.10+) on synthetic rings built like the kernel builds them."""
from __future__ import annotations

import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from printkgen import BUFS, FakeKernel, LocklessLog, member_bits_61
from vmcorekit.errors import CorruptKernelDataError, MemoryReadError, VmcorekitError
from vmcorekit.kernel.printk import read_log, render, since_clear


def texts(log):
    return [r.text for r in log.records]


def make(n, count_bits=5, size_bits=10, **kw):
    lg = LocklessLog(count_bits, size_bits, **kw)
    msgs = []
    for i in range(n):
        t = b"msg %03d " % i + b"abcdefghij" * (i % 5)
        lg.add(t, ts_nsec=1_000_000 * i + 7, caller_id=100 + i)
        msgs.append(t)
    return lg, msgs


def test_records_fields_and_text():
    lg, msgs = make(5)
    log = read_log(FakeKernel(lg.image()))
    assert log.layout == "lockless"
    assert texts(log) == msgs
    assert [r.seq for r in log.records] == [0, 1, 2, 3, 4]
    assert [r.ts_nsec for r in log.records] == [1_000_000 * i + 7 for i in range(5)]
    assert log.records[2].caller == "T102"
    assert not log.warnings
    out = b"".join(line for _, line in render(log))
    assert out.startswith(b"[    0.000000] msg 000 \n[    0.001000] msg 001 abcdefghij\n")


def test_caller_cpu():
    lg = LocklessLog(4, 9)
    lg.add(b"in irq", caller_id=0x80000003)
    assert read_log(FakeKernel(lg.image())).records[0].caller == "C3"


def test_text_ring_wraps_including_across_2_64():
    # BLK0_LPOS is -size: the first wrap of every ring crosses 2**64, later wraps do not.
    lg, msgs = make(400, count_bits=6, size_bits=9)
    assert lg.text.head > lg.text.size * 3  # wrapped several times
    log = read_log(FakeKernel(lg.image()))
    got = texts(log)
    assert got == msgs[len(msgs) - len(got):]  # a suffix of what was written, byte-exact
    assert len(got) >= 512 // (8 + 48 + 8)  # at least as many as surely fit
    assert log.records[-1].seq == 399


def test_wrapping_block_is_read_from_ring_start():
    lg = LocklessLog(4, 8)  # 256-byte ring
    lg.add(b"A" * 100)
    lg.add(b"B" * 100)  # ends at 2*112 = 224 of the first wrap
    rid = lg.add(b"C" * 40)  # 48 bytes from 224 would cross 256: stored at offset 0
    begin, nxt = struct.unpack_from("<QQ", lg.descs, (rid % lg.count) * 24 + 8)
    assert begin >> 8 != nxt >> 8
    log = read_log(FakeKernel(lg.image()))
    assert texts(log)[-1] == b"C" * 40


def test_descriptor_ring_wraps():
    lg, msgs = make(100, count_bits=3, size_bits=12)
    log = read_log(FakeKernel(lg.image()))
    got = texts(log)
    assert got == msgs[-len(got):] and 1 <= len(got) <= 8


@pytest.mark.parametrize("state,shown", [("reserved", False), ("committed", True), ("finalized", True),
                                         ("reusable", False)])
def test_descriptor_states(state, shown):
    lg, msgs = make(3)
    rid = lg.add(b"last one", state="finalized")
    lg.set_state(rid, state)
    got = texts(read_log(FakeKernel(lg.image())))
    assert got == msgs + ([b"last one"] if shown else [])


def test_descriptor_of_another_id_is_skipped():
    lg, msgs = make(3)
    rid = lg.add(b"stale")
    struct.pack_into("<Q", lg.descs, (rid % lg.count) * 24, (2 << 62) | (rid + lg.count))
    assert texts(read_log(FakeKernel(lg.image()))) == msgs


def test_dataless_records():
    lg, msgs = make(2)
    lg.add(b"", dataless="lost", ts_nsec=5_000_000_000)
    lg.add(b"", dataless="empty", ts_nsec=6_000_000_000)
    lg.add(b"after", ts_nsec=7_000_000_000)
    log = read_log(FakeKernel(lg.image()))
    lost, empty = log.records[2], log.records[3]
    assert lost.dataless and lost.lost and empty.dataless and not empty.lost
    vd = b"".join(line for _, line in render(log))
    assert b"[    5.000000] \n[    6.000000] \n[    7.000000] after\n" in vd  # as vmcore-dmesg prints
    mdf = b"".join(line for _, line in render(log, style="makedumpfile"))
    assert b"[    5.000000]" not in mdf and b"[    7.000000] after\n" in mdf  # makedumpfile skips


def test_truncated_text_len_is_clamped_to_block():
    lg = LocklessLog(4, 9)
    rid = lg.add(b"0123456789")  # block: 8 id + 10 text, aligned to 24
    struct.pack_into("<H", lg.infos, (rid % lg.count) * 88 + 16, 500)
    rec = read_log(FakeKernel(lg.image())).records[0]
    assert rec.truncated and rec.text.startswith(b"0123456789") and len(rec.text) == 16


def test_levels_from_btf_bits():
    lg = LocklessLog(4, 9)
    lg.add(b"crit", level=2, facility=0)
    lg.add(b"daemon info", level=6, facility=3, flags=8)
    log = read_log(FakeKernel(lg.image(), member_bits=member_bits_61))
    assert log.levels_known
    a, b = log.records
    assert (a.level, a.facility, a.level_name) == (2, 0, "crit")
    assert (b.level, b.facility, b.facility_name, b.continuation) == (6, 3, "daemon", True)


def test_levels_unknown_without_btf():
    lg, _ = make(2)
    log = read_log(FakeKernel(lg.image()))
    assert not log.levels_known and log.levels_note
    assert all(r.level is None and r.facility is None for r in log.records)


def test_dev_info():
    lg = LocklessLog(4, 10)
    lg.add(b"pci thing", subsystem=b"pci", device=b"+pci:0000:00:01.0")
    lg.add(b"plain")
    log = read_log(FakeKernel(lg.image()))
    r = log.records[0]
    assert (r.subsystem, r.device) == (b"pci", b"+pci:0000:00:01.0")
    out = b"".join(line for _, line in render(log, dev_info=True))
    assert out == (b"[    0.000000] pci thing\n SUBSYSTEM=pci\n DEVICE=+pci:0000:00:01.0\n"
                   b"[    0.000000] plain\n")


def test_early_510_rings_with_dictionaries():
    lg = LocklessLog(4, 10, early=True)
    lg.add(b"first")
    lg.add(b"with dict", subsystem=b"net", device=b"n2", level=3)
    for i in range(40):  # wrap the text ring too
        lg.add(b"filler %d" % i + b"." * (i % 13))
    log = read_log(FakeKernel(lg.image(), member_bits=lambda s, m: {"facility": (160, 8), "flags": (168, 5),
                                                                     "level": (173, 3)}.get(m)))
    assert log.layout == "lockless-dict"
    got = texts(log)
    assert got[-1] == b"filler 39" + b"." * (39 % 13)
    lg2 = LocklessLog(4, 10, early=True)
    lg2.add(b"with dict", subsystem=b"net", device=b"n2", level=3)
    r = read_log(FakeKernel(lg2.image(), member_bits=lambda s, m: {"level": (173, 3)}.get(m))).records[0]
    assert (r.text, r.subsystem, r.device, r.level) == (b"with dict", b"net", b"n2", 3)


@pytest.mark.parametrize("latched", [True, False])
def test_since_clear(latched):
    lg = LocklessLog(5, 11)
    for i in range(5):
        lg.add(b"before %d" % i)
    lg.clear()
    for i in range(3):
        lg.add(b"after %d" % i)
    log = read_log(FakeKernel(lg.image(latched=latched)))
    assert log.clear_seq == 5
    assert [r.text for r in since_clear(log)] == [b"after 0", b"after 1", b"after 2"]


# -- damaged dumps ---------------------------------------------------------------------------------
def _addr_of(img, nth):
    return sorted(a for a in img.segments if a >= BUFS)[nth]


def test_gap_in_text_ring_loses_only_its_records():
    lg, msgs = make(150, count_bits=8, size_bits=13)  # 8 KiB of text: two pages
    img = lg.image()
    text = _addr_of(img, 1)  # buffers in order: descriptors, text, infos
    whole = read_log(FakeKernel(img))
    assert not any(r.lost for r in whole.records)
    log = read_log(FakeKernel(img, holes=[(text + 4096, text + 8192)]))
    assert len(log.warnings) == 1, log.warnings
    assert "lost" in log.warnings[0] and "excluded" in log.warnings[0]
    lost = [r for r in log.records if r.lost]
    assert lost and all(r.text == b"" for r in lost)
    # every other record is there, byte-exact
    assert [(r.seq, r.text) for r in log.records if not r.lost] == \
        [(r.seq, r.text) for r in whole.records if r.seq not in {x.seq for x in lost}]
    assert not any(b"[" in line and line.endswith(b"] \n") for _, line in render(log))


def test_gap_in_descriptors_one_warning_per_gap():
    lg, msgs = make(30, count_bits=8, size_bits=13)  # 256 descs * 24 bytes: two pages
    img = lg.image()
    descs = _addr_of(img, 0)
    log = read_log(FakeKernel(img, holes=[(descs, descs + 1)]))  # first page of descriptors
    assert len(log.warnings) == 1 and "descriptor ring" in log.warnings[0]


def test_unreadable_prb_is_an_error():
    lg, _ = make(3)
    img = lg.image()
    prb = img.vmcoreinfo().symbol("prb")
    with pytest.raises(MemoryReadError):
        read_log(FakeKernel(img, holes=[(prb, prb + 8)]))


def test_corrupt_tail_id_is_bounded():
    lg, msgs = make(10, count_bits=4, size_bits=10)
    img = lg.image()
    rb = img.vmcoreinfo().symbol("printk_rb_static")
    img.put(rb + 32, "Q", 5)  # tail_id far behind head_id
    log = read_log(FakeKernel(img))
    assert any("span" in w for w in log.warnings)
    assert texts(log) == msgs[-len(log.records):]


@pytest.mark.parametrize("field,value", [(0, 63), (0, 0), (48, 40)])
def test_absurd_ring_sizes_raise(field, value):
    lg, _ = make(3)
    img = lg.image()
    rb = img.vmcoreinfo().symbol("printk_rb_static")
    img.put(rb + field, "I", value)  # count_bits (0) / text size_bits (48)
    with pytest.raises(CorruptKernelDataError):
        read_log(FakeKernel(img))


def test_impossible_positions_are_reported_not_followed():
    lg, msgs = make(4)
    rid = lg.head_id
    struct.pack_into("<QQ", lg.descs, (rid % lg.count) * 24 + 8, 16, 8)  # next before begin
    log = read_log(FakeKernel(lg.image()))
    assert any("impossible" in w for w in log.warnings)
    assert texts(log)[:3] == msgs[:3]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_corruption_never_hangs_or_crashes(data):
    lg, _ = make(data.draw(st.integers(0, 80)), count_bits=4, size_bits=9)
    for _ in range(data.draw(st.integers(1, 30))):
        target = data.draw(st.sampled_from(["descs", "infos", "text"]))
        buf = lg.descs if target == "descs" else lg.infos if target == "infos" else lg.text.data
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] = data.draw(st.integers(0, 255))
    t0 = time.monotonic()
    try:
        log = read_log(FakeKernel(lg.image(), member_bits=member_bits_61))
        b"".join(line for _, line in render(log))
        b"".join(line for _, line in render(log, style="makedumpfile"))
    except VmcorekitError:
        pass
    assert time.monotonic() - t0 < 5


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=120), min_size=1, max_size=150), st.integers(3, 6), st.integers(8, 11))
def test_any_history_reads_back_a_suffix(msgs, count_bits, size_bits):
    lg = LocklessLog(count_bits, size_bits)
    for i, m in enumerate(msgs):
        if len(m) + 16 > lg.text.size // 2:
            m = m[: lg.text.size // 4]
        msgs[i] = m
        lg.add(m, ts_nsec=i)
    log = read_log(FakeKernel(lg.image()))
    assert not log.warnings
    got = [(r.seq, r.text) for r in log.records]
    n = len(got)
    assert n >= 1
    assert got == [(i, msgs[i]) for i in range(len(msgs) - n, len(msgs))]


def test_reads_only_the_log():
    lg, _ = make(50, count_bits=6, size_bits=12)
    img = lg.image()
    fk = FakeKernel(img)
    read_log(fk)
    ring_pages = sum((len(s) + 4095) // 4096 for a, s in img.segments.items() if a >= BUFS)
    assert len(fk.pages_read) <= ring_pages + 1  # the rings plus the page of kernel variables
    assert fk.reads <= 8  # a handful of big reads, not one per record
