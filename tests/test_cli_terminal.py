"""What a person sees on a terminal: the same layout as in a pipe (addresses never cut to fit a
window, no trailing spaces), colour only as decoration and off with NO_COLOR, long output
through $PAGER unless --no-pager. Each command runs on a real pseudo-terminal."""
from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE = next((REPO / "samples").glob("*.kdump"))


def on_tty(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, bytes]:
    """Run `vmcorekit ARGS` with stdout and stderr on a pseudo-terminal; (status, output)."""
    master, slave = pty.openpty()
    e = dict(os.environ, COLUMNS="60", LINES="20", TERM="xterm")
    e.pop("NO_COLOR", None)
    e.update(env or {})
    p = subprocess.Popen([sys.executable, "-m", "vmcorekit", *args], stdin=subprocess.DEVNULL,
                         stdout=slave, stderr=slave, env=e, close_fds=True)
    os.close(slave)
    out = bytearray()
    while True:
        r, _, _ = select.select([master], [], [], timeout)
        if not r:
            p.kill()
            raise AssertionError(f"no output for {timeout} s: {bytes(out[-500:])!r}")
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other end closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.wait(timeout=timeout), bytes(out).replace(b"\r\n", b"\n")


def test_ps_on_a_narrow_terminal_keeps_whole_addresses() -> None:
    rc, out = on_tty(["--no-pager", "ps", str(SAMPLE)], {"NO_COLOR": "1"})
    assert rc == 0, out
    text = out.decode()
    assert "\x1b" not in text  # NO_COLOR: no escape sequence at all
    piped = subprocess.run([sys.executable, "-m", "vmcorekit", "ps", str(SAMPLE)], capture_output=True,
                           text=True, check=True).stdout
    assert text == piped  # one layout for terminal and pipe
    tasks = re.findall(r"\b[0-9a-f]{16}\b", text)
    assert len(tasks) > 50  # every TASK column whole, on a 60-column terminal
    assert not any(line != line.rstrip() for line in text.splitlines())


def test_triage_text_is_one_layout_on_a_narrow_terminal() -> None:
    """triage's report: the same text on a 60-column terminal as in a pipe (headings are not as
    wide as the window, nothing wrapped or cut), no trailing spaces, colour only as decoration."""
    rc, out = on_tty(["--no-pager", "triage", str(SAMPLE)])
    assert rc == 0, out
    plain = re.sub(rb"\x1b\[[0-9;]*m", b"", out).decode()
    piped = subprocess.run([sys.executable, "-m", "vmcorekit", "triage", str(SAMPLE)], capture_output=True,
                           text=True, check=True).stdout
    assert plain == piped and "\x1b" not in piped
    assert not any(line != line.rstrip() for line in piped.splitlines())
    assert "sysrq_handle_crash < __handle_sysrq" in piped  # the signature line, not wrapped at 60


def test_colour_is_decoration_only() -> None:
    rc, out = on_tty(["--no-pager", "ps", str(SAMPLE)])
    assert rc == 0 and b"\x1b[" in out  # the header is bold on a colour terminal
    plain = re.sub(rb"\x1b\[[0-9;]*m", b"", out).decode()
    piped = subprocess.run([sys.executable, "-m", "vmcorekit", "ps", str(SAMPLE)], capture_output=True,
                           text=True, check=True).stdout
    assert plain == piped


def test_long_output_goes_through_the_pager(tmp_path: Path) -> None:
    seen = tmp_path / "paged"
    rc, out = on_tty(["ps", str(SAMPLE)], {"PAGER": f"tee {seen}"})
    assert rc == 0, out
    assert "PID    PPID  CPU       TASK" in seen.read_text()
    rc, _ = on_tty(["--no-pager", "ps", str(SAMPLE)], {"PAGER": f"tee {tmp_path / 'not'}"})
    assert rc == 0 and not (tmp_path / "not").exists()
    # VMCOREKIT_NO_PAGER does the same for scripts run on a terminal
    rc, _ = on_tty(["ps", str(SAMPLE)], {"PAGER": f"tee {tmp_path / 'not2'}", "VMCOREKIT_NO_PAGER": "1"})
    assert rc == 0 and not (tmp_path / "not2").exists()


def test_quitting_the_pager_early_is_not_an_error(tmp_path: Path) -> None:
    rc, out = on_tty(["dmesg", str(SAMPLE)], {"PAGER": "head -c 100"})
    assert rc == 0, out
    assert b"Traceback" not in out


@pytest.mark.parametrize("pager", ["no-such-pager-xyz", ""])
def test_a_missing_pager_prints_directly(pager: str) -> None:
    rc, out = on_tty(["sym", str(SAMPLE), "init_task"], {"PAGER": pager, "NO_COLOR": "1"})
    assert rc == 0 and b"init_task" in out
