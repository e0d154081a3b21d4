"""First contact: the CLI behaves like the tools kernel engineers already use (makedumpfile,
crash, vmcore-dmesg), with one error voice, one JSON convention and packaging that installs."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vmcorekit.cli.main import main

REPO = Path(__file__).resolve().parent.parent


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _oldest_click() -> str:
    text = (REPO / "pyproject.toml").read_text()
    return re.search(r'"click>=([0-9.]+)', text).group(1)


def _pythons() -> list[str]:
    """This interpreter, plus the one in $VMCOREKIT_OLDEST_DEPS_PYTHON (a venv holding the
    oldest click pyproject.toml allows: `pip install 'click==8.1.*'`), when set."""
    out = [sys.executable]
    old = os.environ.get("VMCOREKIT_OLDEST_DEPS_PYTHON")
    if old:
        out.append(old)
    return out


@pytest.mark.parametrize("python", _pythons())
def test_closed_pipe_under_each_click(sample_dump, python: str) -> None:
    """`vmcorekit dmesg | head -1` exits 0 silently whatever click does with EPIPE (8.1 and
    8.5 differ)."""
    if python != sys.executable:
        ver = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('click'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
        assert ver.startswith(_oldest_click()), f"{python} has click {ver}, not the oldest allowed"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    p = subprocess.Popen([python, "-m", "vmcorekit", "dmesg", str(sample_dump)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    p.stdout.readline()
    p.stdout.close()
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0 and err == b"", err


# -- item 7: one error voice, documented exit codes ------------------------------------------

def test_no_arguments_is_help_on_stdout(capsys) -> None:
    rc, out, err = run(capsys)
    assert rc == 0 and "Commands:" in out and err == ""


@pytest.mark.parametrize("args, code", [
    (["info"], 2),                          # missing argument
    (["info", "/no/such/dump"], 2),         # missing file
    (["vmcoreinfo", "/no/such/dump"], 2),
    (["nosuchcommand"], 2),
    (["info", "--nosuchoption", "x"], 2),
    (["kmem", "--nosuchoption", "x"], 2),
])
def test_usage_errors_are_one_line(capsys, args: list[str], code: int) -> None:
    rc, out, err = run(capsys, *args)
    assert rc == code and out == ""
    assert err.count("\n") == 1 and err.startswith("vmcorekit: error: ") and "--help" in err, err


def test_unknown_format_is_1(tmp_path, capsys) -> None:
    p = tmp_path / "junk"
    p.write_bytes(b"junk" * 100)
    rc, _, err = run(capsys, "info", str(p))
    assert rc == 1 and err.startswith("vmcorekit: error: ") and err.count("\n") == 1


def test_mod_unknown_name_is_an_error(sample_dump, capsys) -> None:
    rc, out, err = run(capsys, "mod", str(sample_dump), "dummy", "nosuch")
    assert rc == 1 and "dummy" in out and err.strip() == "vmcorekit: error: module not loaded: nosuch"


def test_info_two_dumps_must_be_a_split_set(sample_dump, tmp_path, capsys) -> None:
    rc, out, err = run(capsys, "info", str(sample_dump), str(sample_dump))
    assert rc == 1 and "split" in err and out == ""


def test_vmcoreinfo_diff_exits_1_when_different(sample_dump, tmp_path, capsys) -> None:
    rc, _, _ = run(capsys, "vmcoreinfo", "--diff", str(sample_dump), str(sample_dump))
    assert rc == 0
    txt = (REPO / "samples" / "vmcoreinfo.txt").read_text().replace("OSRELEASE=", "OSRELEASE=9")
    other = tmp_path / "vi.txt"
    other.write_text(txt)
    rc, out, _ = run(capsys, "vmcoreinfo", "--diff", str(sample_dump), str(other))
    assert rc == 1 and "OSRELEASE" in out


# -- item 3: makedumpfile's habits ------------------------------------------------------------

def test_filter_refuses_existing_output_unless_f(sample_dump, tmp_path, capsys) -> None:
    out = tmp_path / "vmcore"
    out.write_bytes(b"keep me")
    rc, _, err = run(capsys, "filter", "-d", "31", "--no-progress", str(sample_dump), str(out))
    assert rc == 1 and "File exists" in err and out.read_bytes() == b"keep me"
    rc, _, err = run(capsys, "filter", "-f", "-d", "31", "--no-progress", str(sample_dump), str(out))
    assert rc == 0 and out.read_bytes()[:8] == b"KDUMP   "


# kdump's core_collector lines (kexec-tools kdump.conf, Debian kdump-tools MAKEDUMP_ARGS)
CORE_COLLECTORS = [
    "-l --message-level 7 -d 31",
    "-l --message-level 1 -d 31",
    "-c -d 31",
    "-z -d 31 --num-threads 2",
    "-p -d 31 -e --work-dir /tmp --cyclic-buffer 1024",
    "-c -d 31 --non-cyclic --non-mmap",
]


@pytest.mark.parametrize("line", CORE_COLLECTORS)
def test_filter_runs_core_collector_lines(sample_dump, tmp_path, capsys, line: str) -> None:
    out = tmp_path / "vmcore-incomplete"
    rc, _, err = run(capsys, "filter", "--no-progress", *line.split(), str(sample_dump), str(out))
    assert rc == 0, err
    assert out.read_bytes()[:8] == b"KDUMP   "
    for opt in ("-e ", "--work-dir", "--cyclic-buffer", "--non-cyclic"):
        if opt in line + " ":
            assert f"vmcorekit: note: ignored {opt.strip()}" in err
    # --message-level without bit 2 (common messages) keeps makedumpfile's closing line quiet
    assert ("saved to" in err) == ("--message-level 1" not in line)


def test_filter_split_in_makedumpfile_form(sample_dump, tmp_path, capsys) -> None:
    parts = [str(tmp_path / f"p{i}") for i in range(3)]
    rc, _, err = run(capsys, "filter", "-d", "31", "--no-progress", "--split", str(sample_dump), *parts)
    assert rc == 0, err
    rc, out, err = run(capsys, "info", "--json", ",".join(parts))
    assert rc == 0 and json.loads(out)["format"] == "kdump-split"


def test_filter_x_and_i_and_check_params(sample_dump, tmp_path, capsys) -> None:
    vi = REPO / "samples" / "vmcoreinfo.txt"
    out = tmp_path / "o"
    rc, _, err = run(capsys, "filter", "--check-params", "-d", "31", "-i", str(vi), "-x", str(vi),
                     str(sample_dump), str(out))
    assert rc == 0 and not out.exists() and "ignored -x" in err
    rc, _, err = run(capsys, "filter", "--eppic", "x.c", str(sample_dump), str(out))
    assert rc == 2
