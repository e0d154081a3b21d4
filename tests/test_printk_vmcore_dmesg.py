"""Differential tests: the real vmcore-dmesg (kexec-tools) reads the same synthetic buffers,
packed into ELF cores, and vmcorekit's default output must equal its output byte for byte.
Skipped where vmcore-dmesg is not installed."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from printkgen import FakeKernel, LocklessLog, PlainLog, StructuredLog, to_elf
from vmcorekit.kernel.printk import read_log, render

VMCORE_DMESG = shutil.which("vmcore-dmesg") or shutil.which("vmcore-dmesg", path="/usr/sbin:/sbin")
pytestmark = pytest.mark.skipif(VMCORE_DMESG is None, reason="vmcore-dmesg (kexec-tools) not installed")

ALL_BYTES = bytes(range(1, 256))


def vmcore_dmesg(img, tmp_path) -> bytes:
    path = tmp_path / "core.elf"
    path.write_bytes(to_elf(img))
    r = subprocess.run([VMCORE_DMESG, str(path)], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def ours(img) -> bytes:
    return b"".join(line for _, line in render(read_log(FakeKernel(img), levels=False)))


def test_lockless_everything(tmp_path):
    lg = LocklessLog(5, 10)
    for i in range(120):
        lg.add(b"msg %d " % i + (ALL_BYTES[i % 200:(i % 200) + 40] if i % 3 == 0 else b"text\nmore"),
               ts_nsec=i * 987_654_321)
        if i == 100:
            lg.add(b"", dataless="lost", ts_nsec=1)
            lg.add(b"", dataless="empty", ts_nsec=2)
    lg.add(b"in flight", state="reserved")
    img = lg.image()
    assert ours(img) == vmcore_dmesg(img, tmp_path)


def test_lockless_all_bytes_escaping(tmp_path):
    lg = LocklessLog(4, 11)
    lg.add(ALL_BYTES)
    img = lg.image()
    assert ours(img) == vmcore_dmesg(img, tmp_path)


def test_lockless_committed_not_finalized(tmp_path):
    lg = LocklessLog(4, 10)
    lg.add(b"done")
    lg.add(b"last, committed", state="committed")
    img = lg.image()
    out = vmcore_dmesg(img, tmp_path)
    assert ours(img) == out and b"last, committed" in out


@pytest.mark.parametrize("old_names", [False, True])
def test_structured_wrapped(tmp_path, old_names):
    sl = StructuredLog(900, old_names=old_names)
    for i in range(80):
        sl.add(b"structured %d " % i + ALL_BYTES[i:i + i % 30] + (b"\ncont" if i % 7 == 0 else b""),
               ts_nsec=i * 3_000_000_001, dict_=b"SUBSYSTEM=x" if i % 4 == 0 else b"")
    img = sl.image()
    out = vmcore_dmesg(img, tmp_path)
    assert b"[    0.000000] \n" in out  # vmcore-dmesg prints the wrap marker
    assert ours(img) == out


def test_structured_unwrapped(tmp_path):
    sl = StructuredLog(4096)
    for i in range(10):
        sl.add(b"hello %d" % i, ts_nsec=i)
    img = sl.image()
    assert ours(img) == vmcore_dmesg(img, tmp_path)


@pytest.mark.parametrize("n", [3, 200])
def test_plain(tmp_path, n):
    pl = PlainLog(1024)
    for i in range(n):
        pl.add(b"plain %d \x01\xfe" % i, ts_nsec=i * 10**6)
    img = pl.image()
    assert ours(img) == vmcore_dmesg(img, tmp_path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.binary(max_size=90), st.sampled_from([None, None, None, "lost", "empty"])),
                min_size=1, max_size=90), st.integers(3, 6), st.integers(8, 11))
def test_lockless_random_histories(tmp_path, recs, count_bits, size_bits):
    lg = LocklessLog(count_bits, size_bits)
    for i, (text, dataless) in enumerate(recs):
        lg.add(text[: lg.text.size // 4], ts_nsec=i * 1_234_567, dataless=dataless)
    img = lg.image()
    assert ours(img) == vmcore_dmesg(img, tmp_path)
