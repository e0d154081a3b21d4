"""The structured printk_log buffer (3.5-5.9) and the plain character buffer (before 3.5),
on synthetic buffers written the way those kernels wrote them."""
from __future__ import annotations

import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from printkgen import BUFS, FakeKernel, PlainLog, StructuredLog, member_bits_structured
from vmcorekit.errors import CorruptKernelDataError, VmcorekitError, VmcoreinfoError
from vmcorekit.kernel.printk import layout_of, read_log, render, since_clear


def fill(sl, n, start=0):
    msgs = []
    for i in range(start, start + n):
        t = b"record %d " % i + b"z" * (i * 7 % 40)
        sl.add(t, ts_nsec=i * 1_000_000_007)
        msgs.append(t)
    return msgs


def buf_addr(img):
    return min(a for a in img.segments if a >= BUFS)


# -- structured --------------------------------------------------------------------------------
def test_structured_no_wrap():
    sl = StructuredLog(2048)
    msgs = fill(sl, 10)
    log = read_log(FakeKernel(sl.image()))
    assert log.layout == "structured" and not log.warnings and not log.wrap_markers
    assert [r.text for r in log.records] == msgs
    assert log.records[3].ts_nsec == 3_000_000_021


@pytest.mark.parametrize("old_names", [False, True])
def test_structured_wraps_with_end_marker(old_names):
    sl = StructuredLog(700, old_names=old_names)
    msgs = fill(sl, 60)
    assert sl.first_idx > sl.next_idx  # the live records wrap around the end of log_buf
    log = read_log(FakeKernel(sl.image()))
    got = [r.text for r in log.records]
    assert got == msgs[-len(got):] and len(got) >= 5
    assert len(log.wrap_markers) == 1
    pos, ts = log.wrap_markers[0]
    assert 0 < pos < len(got) and ts == 0
    vd = b"".join(line for _, line in render(log))
    # vmcore-dmesg prints the zeroed marker header as a record of its own
    assert vd.count(b"[    0.000000] \n") == 1
    mdf = b"".join(line for _, line in render(log, style="makedumpfile"))
    assert b"[    0.000000] \n" not in mdf


def test_structured_first_idx_on_marker():
    # log_first_idx may point at an end marker: the record it means is the one at index 0.
    sl = StructuredLog(700)
    fill(sl, 60)
    img = sl.image()
    fk = FakeKernel(img)
    log = read_log(fk)
    marker_idx = None
    # find the marker: walk from first_idx by len
    idx = sl.first_idx
    while True:
        ln = struct.unpack_from("<H", sl.buf, idx + 8)[0]
        if ln == 0:
            marker_idx = idx
            break
        idx += ln
    img.put(img.vmcoreinfo().symbol("log_first_idx"), "I", marker_idx)
    log2 = read_log(FakeKernel(img))
    assert log2.wrap_markers == [(0, 0)]
    after = [r.text for r in log.records[log.wrap_markers[0][0]:]]
    assert [r.text for r in log2.records] == after


def test_structured_caller_dict_levels():
    sl = StructuredLog(1024, caller=True)
    sl.add(b"hello", ts_nsec=5, dict_=b"SUBSYSTEM=usb\0DEVICE=c189:1", level=3, facility=1, caller_id=0x80000001)
    log = read_log(FakeKernel(sl.image(), member_bits=member_bits_structured))
    r = log.records[0]
    assert (r.text, r.subsystem, r.device, r.caller) == (b"hello", b"usb", b"c189:1", "C1")
    assert (r.level, r.facility) == (3, 1) and log.levels_known


def test_structured_since_clear():
    sl = StructuredLog(4096)
    fill(sl, 5)
    sl.clear()
    after = fill(sl, 3, start=5)
    log = read_log(FakeKernel(sl.image()))
    assert [r.text for r in since_clear(log)] == after
    sl2 = StructuredLog(4096)
    fill(sl2, 4)
    sl2.clear()
    assert since_clear(read_log(FakeKernel(sl2.image()))) == []


def test_structured_gap_resynchronises():
    sl = StructuredLog(3 * 4096)
    msgs = fill(sl, 300)
    img = sl.image()
    base = buf_addr(img)
    whole = read_log(FakeKernel(img))
    log = read_log(FakeKernel(img, holes=[(base + 4096, base + 8192)]))
    assert len(log.warnings) == 1, log.warnings
    assert "excluded" in log.warnings[0]
    got = [r.text for r in log.records if not r.lost]
    wanted = [r.text for r in whole.records]
    # what was readable is there in order, and the records after the gap were found again
    assert got[-1] == msgs[-1] and len(got) < len(wanted)
    it = iter(wanted)
    assert all(any(g == w for w in it) for g in got)
    assert len(got) > len(wanted) * 0.5


def test_structured_corrupt_length_stops_cleanly():
    sl = StructuredLog(2048)
    msgs = fill(sl, 20)
    idx = 0
    for _ in range(5):
        idx += struct.unpack_from("<H", sl.buf, idx + 8)[0]
    struct.pack_into("<H", sl.buf, idx + 8, 3)  # a record length smaller than a header
    log = read_log(FakeKernel(sl.image()))
    assert any("malformed" in w for w in log.warnings)
    assert [r.text for r in log.records][:5] == msgs[:5]


def test_structured_length_cycle_is_bounded():
    sl = StructuredLog(2048)
    fill(sl, 10)
    # Make the 3rd record point back at the 2nd: a cycle that never reaches log_next_idx.
    first_len = struct.unpack_from("<H", sl.buf, 8)[0]
    second = first_len
    second_len = struct.unpack_from("<H", sl.buf, second + 8)[0]
    struct.pack_into("<H", sl.buf, second + 8, 0xFFFF - 3)
    t0 = time.monotonic()
    log = read_log(FakeKernel(sl.image()))
    assert time.monotonic() - t0 < 2 and log.warnings and second_len


def test_structured_bad_indexes_raise():
    sl = StructuredLog(1024)
    fill(sl, 3)
    img = sl.image()
    img.put(img.vmcoreinfo().symbol("log_first_idx"), "I", 5000)
    with pytest.raises(CorruptKernelDataError):
        read_log(FakeKernel(img))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_structured_random_corruption(data):
    sl = StructuredLog(data.draw(st.sampled_from([512, 1024, 4096])))
    fill(sl, data.draw(st.integers(0, 120)))
    for _ in range(data.draw(st.integers(1, 20))):
        sl.buf[data.draw(st.integers(0, sl.len - 1))] = data.draw(st.integers(0, 255))
    t0 = time.monotonic()
    try:
        log = read_log(FakeKernel(sl.image()))
        b"".join(line for _, line in render(log))
    except VmcorekitError:
        pass
    assert time.monotonic() - t0 < 5


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=120), st.sampled_from([512, 1000, 2048]))
def test_structured_any_history_reads_back_a_suffix(msgs, size):
    sl = StructuredLog(size)
    for i, m in enumerate(msgs):
        sl.add(m, ts_nsec=i)
    log = read_log(FakeKernel(sl.image()))
    assert not log.warnings
    got = [r.text for r in log.records]
    assert got and got == msgs[-len(got):]


# -- plain ---------------------------------------------------------------------------------------
def test_plain_layout_and_wrap():
    pl = PlainLog(256)
    for i in range(40):
        pl.add(b"line %d" % i, ts_nsec=i * 10**7, level=i % 8)
    log = read_log(FakeKernel(pl.image()))
    assert log.layout == "plain" and layout_of(FakeKernel(pl.image())) == "plain"
    full = b"".join(b"<%d>[%5d.%06d] line %d\n" % (i % 8, 0, i * 10000, i) for i in range(40))
    assert log.raw == full[-256:]
    out = b"".join(line for _, line in render(log))
    assert out == full[-256:]  # raw, as vmcore-dmesg writes it
    last = log.records[-1]
    assert (last.level, last.ts_nsec, last.text) == (7, 390_000_000, b"<7>[    0.390000] line 39")


def test_plain_not_wrapped_and_since_clear():
    pl = PlainLog(4096)
    for i in range(5):
        pl.add(b"old %d" % i)
    pl.clear()
    pl.add(b"new")
    log = read_log(FakeKernel(pl.image()))
    assert log.raw.startswith(b"<6>old 0\n") and log.raw_since_clear == b"<6>new\n"
    assert [r.text for r in since_clear(log)] == [b"<6>new"]


def test_plain_gap_drops_cut_lines():
    pl = PlainLog(3 * 4096)
    for i in range(600):
        pl.add(b"line %04d" % i)
    img = pl.image()
    base = buf_addr(img)
    log = read_log(FakeKernel(img, holes=[(base + 4096, base + 8192)]))
    assert len(log.warnings) == 1
    for line in log.raw.split(b"\n")[:-1]:
        assert line.startswith(b"<6>line ") and len(line) == 12  # no half lines glued together


def test_no_printk_keys():
    from printkgen import Image
    img = Image()
    with pytest.raises(VmcoreinfoError):
        read_log(FakeKernel(img))
