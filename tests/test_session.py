"""`vmcorekit crash DUMP`: one session, the dump opened once, verbs run by the same code as
the standalone commands; scripts on stdin or -i, pipes and redirections, errors that cost one
line, --strict, and on a real pseudo-terminal: the prompt, completion, history."""
from __future__ import annotations

import os
import pty
import re
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE = next((REPO / "samples").glob("*.kdump"))


def session(script: str, *args: str, dump: Path = SAMPLE, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmcorekit", "crash", str(dump), *args], input=script,
                          capture_output=True, text=True, timeout=timeout)


def standalone(*args: str, dump: Path = SAMPLE) -> str:
    verb, *rest = args
    return subprocess.run([sys.executable, "-m", "vmcorekit", verb, str(dump), *rest], capture_output=True,
                          text=True, timeout=600).stdout


def test_a_script_runs_every_verb_with_the_standalone_output(tmp_path) -> None:
    out_file = tmp_path / "ps.txt"
    r = session(f"sys\np jiffies\np init_task.pid\nbt | grep -c '#'\nps > {out_file}\nsym init_task\n")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    sys_text = standalone("sys")
    assert r.stdout.startswith(sys_text)
    rest = r.stdout[len(sys_text):].splitlines()
    assert re.fullmatch(r"jiffies = \$1 = \d+", rest[0])
    assert rest[1] == "$2 = 0"  # the value counter goes on within a session, as in crash
    frames = standalone("bt").count("#")
    assert rest[2] == str(frames) and frames > 3
    assert out_file.read_text() == standalone("ps")
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    assert rest[3] == standalone("sym", "init_task").rstrip("\n")


def test_errors_cost_one_line_and_the_session_goes_on(tmp_path) -> None:
    r = session("frobnicate\np *(struct task_struct *)0x10\nrd 0x10\nlist 0x10\nbt 999999\np 1 +\n"
                "ps > /dev/null\nps >\nwhatis jiffies\n")
    assert r.returncode == 0
    err = r.stderr.splitlines()
    assert len(err) == 8, r.stderr
    assert all(line.startswith(("vmcorekit: error: ", "vmcorekit: partial: ")) for line in err), err
    assert "unknown command 'frobnicate'" in err[0]
    assert "refusing" in err[6]  # > a device: not a regular file
    assert r.stdout.endswith("volatile unsigned long jiffies;\n")


def test_strict_stops_at_the_first_error(tmp_path) -> None:
    r = session("p jiffies\nfrobnicate\np init_task.pid\n", "--strict")
    assert r.returncode == 1
    assert "jiffies = $1" in r.stdout and "$2" not in r.stdout
    assert r.stderr.count("\n") == 1
    # Without --strict the same script runs to its end.
    r = session("p jiffies\nfrobnicate\np init_task.pid\n")
    assert r.returncode == 0 and "$2 = 0" in r.stdout


def test_input_file_quit_and_shell_escape(tmp_path) -> None:
    script = tmp_path / "cmds"
    script.write_text("# a comment\n!echo from-the-shell\np jiffies | sed s/jiffies/J/\nq\np init_task.pid\n")
    r = session("", "-i", str(script), "--echo")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "crash> !echo from-the-shell" and lines[1] == "from-the-shell"
    assert lines[2] == "crash> p jiffies | sed s/jiffies/J/" and lines[3].startswith("J = $1 = ")
    assert "init_task.pid" not in r.stdout.split("crash> q")[1]  # q ended the session


def test_set_changes_what_bt_and_task_show() -> None:
    r = session("set 1\nbt\ntask -R pid\nset -c 1\ntask -R pid\n")
    assert r.returncode == 0, r.stderr
    bt = [ln for ln in r.stdout.splitlines() if ln.startswith("PID:")]
    assert bt and bt[0].startswith("PID: 1 ")
    pids = re.findall(r"^  pid = (\d+),$", r.stdout, re.M)
    cpu1 = re.findall(r"^PID: (\d+) .*CPU: 1 ", standalone("bt", "-a"), re.M)
    assert pids == ["1", cpu1[0]]


def test_help_lists_the_verbs_and_their_options() -> None:
    r = session("help\nhelp list\nhelp nosuch\n")
    assert r.returncode == 0
    for verb in ("bt", "p", "px", "pd", "whatis", "list", "task", "set", "struct", "log", "ps"):
        assert re.search(rf"^  {verb}\s", r.stdout, re.M), verb
    assert "--head-in-struct" in r.stdout
    assert r.stderr.count("\n") == 1 and "nosuch" in r.stderr


def test_the_session_opens_the_dump_once_and_verbs_answer_fast() -> None:
    """20 verbs after start-up: the Program is lent to each, its caches stay warm."""
    from vmcorekit.cli.common import Session, enter_session, open_program
    from vmcorekit.cli.crash import Runner, _Stdout
    prog = open_program(str(SAMPLE), None)
    s = Session(prog, str(SAMPLE), None)
    saved = enter_session(s)
    lines = ["p jiffies", "px jiffies", "pd init_task.pid", "p init_uts_ns.name.release", "whatis task_struct",
             "whatis jiffies", "struct list_head", "task -R pid,comm", "set 1", "task", "bt", "bt -a", "ps",
             "log", "mod", "sym init_task", "kmem -i", "sys",
             "list -h init_task -o task_struct.tasks -s task_struct.pid,comm", "p per_cpu(runqueues, 1).nr_running"]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        r = Runner(s, page=False, strict=True, echo=False)
        for ln in lines:  # start-up: the first answer of each verb fills the caches
            with _Stdout(devnull):
                assert r.run_line(ln) == 0, ln
        opened = []
        import vmcorekit.program.core as core
        real = core.Program.open
        core.Program.open = classmethod(lambda cls, *a, **k: opened.append(a) or real(*a, **k))  # type: ignore
        times = []
        try:
            for ln in lines:
                t = time.perf_counter()
                with _Stdout(devnull):
                    assert r.run_line(ln) == 0, ln
                times.append(time.perf_counter() - t)
        finally:
            core.Program.open = real  # type: ignore[method-assign]
        assert opened == []  # no verb opened the dump again
        times.sort()
        assert times[len(times) // 2] < 0.3, times  # the median verb, with room for a loaded machine
    finally:
        os.close(devnull)
        enter_session(saved)
        prog.close()


def test_completion_offers_verbs_symbols_structs_and_members() -> None:
    from vmcorekit.cli.common import Session, open_program
    from vmcorekit.cli.crash import Runner, complete_word
    prog = open_program(str(SAMPLE), None)
    try:
        r = Runner(Session(prog, str(SAMPLE), None), page=False, strict=False, echo=False)
        assert "whatis" in complete_word(r, [], "wh")
        assert "list" in complete_word(r, ["help"], "li")
        members = complete_word(r, ["struct"], "task_struct.")
        assert {"task_struct.pid", "task_struct.comm", "task_struct.tasks"} <= set(members)
        assert "task_struct.pid,comm" in complete_word(r, ["struct"], "task_struct.pid,co")
        assert "task_struct.se.vruntime" in complete_word(r, ["struct"], "task_struct.se.vr")
        assert "task_struct" in complete_word(r, ["struct"], "task_str")
        assert "init_task" in complete_word(r, ["p"], "init_ta")
        assert "init_task.comm" in complete_word(r, ["p"], "init_task.co")
        assert "&init_task" in complete_word(r, ["p"], "&init_ta")
        assert "init_task.mm->pgd" in complete_word(r, ["p"], "init_task.mm->pg")
        assert "--head-in-struct" in complete_word(r, ["list"], "--he")
        assert "pid,comm" in complete_word(r, ["task", "-R"], "pid,co")
        assert len(complete_word(r, ["sym"], "")) <= 200  # bounded
    finally:
        prog.close()


# -- on a terminal ------------------------------------------------------------------------------

def _pty_session(args: list[str], keys: list[tuple[bytes, bytes]], env: dict[str, str]) -> tuple[int, bytes]:
    """Run `vmcorekit ARGS` on a pseudo-terminal; for each (keys, wanted): type the keys and
    read until `wanted` shows (escape sequences removed)."""
    master, slave = pty.openpty()
    e = dict(os.environ, COLUMNS="100", LINES="30", TERM="xterm", **env)
    p = subprocess.Popen([sys.executable, "-m", "vmcorekit", *args], stdin=slave, stdout=slave, stderr=slave,
                         env=e, close_fds=True)
    os.close(slave)
    out = bytearray()

    def plain() -> bytes:
        return re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", bytes(out))

    try:
        for typed, wanted in keys:
            if typed:
                os.write(master, typed)
            end = time.time() + 120
            while wanted not in plain():
                if time.time() > end:
                    raise AssertionError(f"{wanted!r} never showed: {plain()[-800:]!r}")
                r, _, _ = select.select([master], [], [], 0.5)
                if r:
                    try:
                        out += os.read(master, 65536)
                    except OSError:
                        break
        rc = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
    return rc, plain()


def test_a_dump_path_on_a_terminal_opens_the_session(tmp_path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "PAGER": "cat"}
    rc, out = _pty_session([str(SAMPLE)], [
        (b"", b"crash>"),
        (b"p jiffies\r", b"jiffies = $1 = "),
        (b"struct task_struct.pi_\t", b"task_struct.pi_lock"),  # completion offers members
        (b"\x15whatis init_uts_n\t", b"whatis init_uts_ns"),  # a unique one completes
        (b"\r", b"struct uts_namespace init_uts_ns;"),
        (b"frobnicate\r", b"unknown command 'frobnicate'"),
        (b"p init_task.pid\r", b"$2 = 0"),  # the session went on
        (b"q\r", b""),
    ], env)
    assert rc == 0, out[-500:]
    hist = tmp_path / "state" / "vmcorekit" / "crash_history"
    assert stat.S_IMODE(hist.stat().st_mode) == 0o600
    assert "p jiffies" in hist.read_text()


def test_long_output_pages_through_the_pager(tmp_path) -> None:
    pager = tmp_path / "pager"
    pager.write_text("#!/bin/sh\necho PAGER-START\ncat\necho PAGER-END\n")
    pager.chmod(0o700)
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "PAGER": str(pager)}
    rc, out = _pty_session(["crash", str(SAMPLE)], [
        (b"", b"crash>"),
        (b"p jiffies\r", b"jiffies = $1 = "),  # short: no pager
        (b"ps\r", b"PAGER-END"),  # longer than 30 lines: paged
        (b"q\r", b""),
    ], env)
    assert rc == 0
    text = out.decode(errors="replace")
    assert text.count("PAGER-START") == 1 and text.index("PAGER-START") > text.index("jiffies = $1")


def test_arm64_session() -> None:
    from conftest import SAMPLES, decompressed_elf
    if not (SAMPLES / "arm64" / "vmcore.elf.zst").exists():
        pytest.skip("samples/arm64 absent")
    d = decompressed_elf(SAMPLES / "arm64")
    r = session("p init_task.pid\nwhatis jiffies\nbt | head -1\ntask -R comm\nfrobnicate\nset -c 0\n", dump=d)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("$1 = 0\n")
    assert "unsigned long jiffies;" in r.stdout
    assert re.search(r"^PID: \d+ ", r.stdout, re.M)
    assert r.stderr.count("\n") == 1


def test_values_printed_are_named_by_dollar_n() -> None:
    r = session("p init_task.tasks.next\np $1->prev\np $\np $9\n")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    first = lines[0].split()[-1]
    assert lines[0].startswith("$1 = (struct list_head *) 0x")
    assert lines[1].startswith("$2 = (struct list_head *) 0x") and lines[1] != lines[0].replace("$1", "$2")
    assert lines[2] == lines[1].replace("$2", "$3")  # $ alone: the last value
    assert "no value $9" in r.stderr and r.stderr.count("\n") == 1
    assert first.startswith("0x")
