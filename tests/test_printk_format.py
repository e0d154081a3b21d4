"""Output forms of `vmcorekit dmesg`: escaping, prefixes, styles, JSON, and the command's options
(run over synthetic logs by standing a FakeKernel in for the opened dump)."""
from __future__ import annotations

import contextlib
import json
import os

import pytest
from click.testing import CliRunner

import vmcorekit.cli.dmesg as dmesg_cli
from printkgen import FakeKernel, LocklessLog, PlainLog, StructuredLog, member_bits_61
from vmcorekit.cli.main import cli
from vmcorekit.kernel.printk import LogRecord, escape, human_clock, parse_levels, record_prefix, seconds_stamp


def test_escape_every_byte():
    for b in range(256):
        raw = bytes([b])
        keep = 0x20 <= b <= 0x7E or b in b"\t\n\x0b\x0c\r"  # isprint() || isspace() in the C locale
        assert escape(raw) == (raw if keep else b"\\x%02x" % b)
    assert escape("café".encode()) == b"caf\\xc3\\xa9"


def test_stamps_and_prefix():
    assert seconds_stamp(0) == b"[    0.000000]"
    assert seconds_stamp(123_456_789_999) == b"[  123.456789]"
    assert seconds_stamp(123456 * 10**9) == b"[123456.000000]"
    r = LogRecord(seq=1, ts_nsec=1_500_000_000, text=b"x", caller_id=42)
    assert record_prefix(r, seconds_stamp, False) == b"[    1.500000] "
    assert record_prefix(r, seconds_stamp, True) == b"[    1.500000][   T42] "
    assert record_prefix(r, None, True) == b"[   T42] "
    assert record_prefix(r, None, False) == b""


def test_human_clock_anchors_last_record_on_crashtime(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    import time
    time.tzset()
    try:
        stamp = human_clock(1_795_681_313, 22_000_000_000)
        assert stamp(22_000_000_000) == b"[" + time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(1_795_681_313)).encode() + b"]"
        assert stamp(12_000_000_000) == b"[" + time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(1_795_681_303)).encode() + b"]"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_parse_levels():
    assert parse_levels("err,warn") == {3, 4}
    assert parse_levels("warning+") == {0, 1, 2, 3, 4}
    assert parse_levels("0,debug") == {0, 7}
    with pytest.raises(ValueError):
        parse_levels("loud")


# -- the command ---------------------------------------------------------------------------------
class _Prog(FakeKernel):
    has_btf = False  # no types: the crash time is CRASHTIME's or unknown (no timekeeper)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def run(monkeypatch, tmp_path, kernel, *args):
    dump = tmp_path / "dump"
    dump.write_bytes(b"\x7fELF")
    monkeypatch.setattr(dmesg_cli, "open_program", lambda d, v: kernel)
    result = CliRunner().invoke(cli, ["dmesg", str(dump), *args], catch_exceptions=False)
    return result


def lockless(levels=True, crashtime=None):
    lg = LocklessLog(5, 11)
    lg.add(b"boot", ts_nsec=0, level=6, caller_id=1)
    lg.add(b"oops\nsecond line", ts_nsec=1_000_000_000, level=3, caller_id=0x80000001,
           subsystem=b"pci", device=b"+pci:0000:00:02.0")
    lg.clear()
    lg.add(b"warn caf\xc3\xa9", ts_nsec=2_000_000_000, level=4, caller_id=77)
    lg.add(b"", dataless="lost", ts_nsec=3_000_000_000)
    img = lg.image()
    if crashtime is not None:
        img.lines.append(f"CRASHTIME={crashtime}")
    return _Prog(img, member_bits=member_bits_61 if levels else None)


def test_cli_default_and_makedumpfile(monkeypatch, tmp_path):
    r = run(monkeypatch, tmp_path, lockless())
    assert r.exit_code == 0
    assert r.stdout_bytes == (b"[    0.000000] boot\n[    1.000000] oops\nsecond line\n"
                              b"[    2.000000] warn caf\\xc3\\xa9\n[    3.000000] \n")
    r = run(monkeypatch, tmp_path, lockless(), "--format", "makedumpfile")
    assert r.stdout_bytes == (b"[    0.000000] boot\n[    1.000000] oops\n               second line\n"
                              b"[    2.000000] warn caf\\xc3\\xa9\n")


def test_cli_filters(monkeypatch, tmp_path):
    r = run(monkeypatch, tmp_path, lockless(), "--since-clear")
    assert r.stdout_bytes == b"[    2.000000] warn caf\\xc3\\xa9\n[    3.000000] \n"
    r = run(monkeypatch, tmp_path, lockless(), "--tail", "1", "--format", "makedumpfile")
    assert r.stdout_bytes == b""  # the last record has no text: makedumpfile prints nothing for it
    r = run(monkeypatch, tmp_path, lockless(), "--tail", "2")
    assert r.stdout_bytes == b"[    2.000000] warn caf\\xc3\\xa9\n[    3.000000] \n"
    r = run(monkeypatch, tmp_path, lockless(), "--level", "err,warn")
    assert r.stdout_bytes == b"[    1.000000] oops\nsecond line\n[    2.000000] warn caf\\xc3\\xa9\n"
    r = run(monkeypatch, tmp_path, lockless(), "--level", "err", "--show-caller", "--dev-info", "--time", "none")
    assert r.stdout_bytes == b"[    C1] oops\nsecond line\n SUBSYSTEM=pci\n DEVICE=+pci:0000:00:02.0\n"


def test_cli_level_without_btf_says_so(monkeypatch, tmp_path):
    r = run(monkeypatch, tmp_path, lockless(levels=False), "--level", "err")
    assert r.exit_code == 0
    assert b"levels are unknown" in r.stderr_bytes
    assert r.stdout_bytes.count(b"\n") == 5  # nothing filtered out on a guess


def test_cli_json(monkeypatch, tmp_path):
    r = run(monkeypatch, tmp_path, lockless(), "--json")
    objs = [json.loads(line) for line in r.stdout_bytes.splitlines()]
    assert [o["seq"] for o in objs] == [0, 1, 2, 3]
    assert objs[1] == {"seq": 1, "ts_nsec": 1_000_000_000, "caller": "C1", "text": "oops\nsecond line",
                       "level": 3, "level_name": "err", "facility": 0, "facility_name": "kern", "cont": False,
                       "subsystem": "pci", "device": "+pci:0000:00:02.0"}
    assert objs[2]["text"] == "warn café"
    assert objs[3]["lost"] is True and objs[3]["dataless"] is True
    r = run(monkeypatch, tmp_path, lockless(levels=False), "--json")
    assert "level" not in json.loads(r.stdout_bytes.splitlines()[0])


def test_cli_time_human(monkeypatch, tmp_path):
    r = run(monkeypatch, tmp_path, lockless(), "--time", "human")
    assert r.exit_code != 0 and b"CRASHTIME" in r.stderr_bytes
    monkeypatch.setenv("TZ", "UTC")
    r = run(monkeypatch, tmp_path, lockless(crashtime=1_795_681_313), "--time", "human", "--tail", "2")
    assert r.exit_code == 0
    import time
    time.tzset()
    want = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(1_795_681_312)).encode()
    assert r.stdout_bytes.startswith(b"[" + want + b"] warn")


def test_cli_structured_and_plain(monkeypatch, tmp_path):
    sl = StructuredLog(600)
    for i in range(50):
        sl.add(b"s%d" % i, ts_nsec=i)
    r = run(monkeypatch, tmp_path, _Prog(sl.image()))
    assert r.exit_code == 0 and r.stdout_bytes.count(b"[    0.000000] \n") == 1  # the wrap marker line
    pl = PlainLog(128)
    for i in range(20):
        pl.add(b"p%d" % i, level=3 if i % 2 else 6)
    r = run(monkeypatch, tmp_path, _Prog(pl.image()))
    assert r.stdout_bytes == bytes(pl.buf[pl.log_end % 128:] + pl.buf[:pl.log_end % 128])
    r = run(monkeypatch, tmp_path, _Prog(pl.image()), "--level", "err")
    assert r.stdout_bytes and all(line.startswith(b"<3>") for line in r.stdout_bytes.splitlines())


def test_cli_gap_warning_on_stderr(monkeypatch, tmp_path):
    lg = LocklessLog(6, 13)
    for i in range(150):
        lg.add(b"msg %d " % i + b"x" * (i % 40))
    img = lg.image()
    text = sorted(a for a in img.segments if a >= 0xFFFF888001000000)[1]
    r = run(monkeypatch, tmp_path, _Prog(img, holes=[(text + 4096, text + 8192)]))
    assert r.exit_code == 0
    warnings = [line for line in r.stderr_bytes.splitlines() if b"warning" in line]
    assert len(warnings) == 1 and b"lost" in warnings[0]


def test_cli_real_error_is_one_line(tmp_path):
    from vmcorekit.cli.main import main
    bad = tmp_path / "notadump"
    bad.write_bytes(b"hello")
    with contextlib.redirect_stderr(open(os.devnull, "w")):
        assert main(["dmesg", str(bad)]) == 1
