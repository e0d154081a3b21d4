"""The foundation commands (info, vmcoreinfo, vtop, rd) and their handling of bad input."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from elfgen import build_core, note
from vmcorekit.cli.main import main

VMCI = b"OSRELEASE=6.1.0\nPAGESIZE=4096\nSYMBOL(init_top_pgt)=ffffffff81000000\nNUMBER(phys_base)=0\n"


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


BAD_INPUTS = {
    "empty": b"",
    "wrong-magic": b"\x89PNG\r\n\x1a\n" + b"\0" * 100,
    "truncated-elf-header": b"\x7fELF\x02\x01\x01" + b"\0" * 20,
    "truncated-kdump-header": b"KDUMP   " + b"\0" * 20,
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_one_line_nonzero(tmp_path, capsys, name: str) -> None:
    p = tmp_path / name
    p.write_bytes(BAD_INPUTS[name])
    rc, out, err = run(capsys, "info", str(p))
    assert rc != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(p) in lines[0], err
    assert re.search(r"offset 0x[0-9a-f]+", lines[0]), err


def test_no_traceback_in_a_real_process(tmp_path) -> None:
    p = tmp_path / "junk"
    p.write_bytes(b"junk" * 10)
    r = subprocess.run([sys.executable, "-m", "vmcorekit", "info", str(p)], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "unrecognised" in r.stderr


def test_missing_vmcoreinfo_is_a_clear_error(tmp_path, capsys) -> None:
    p = tmp_path / "core"
    p.write_bytes(build_core([(0, 0x1000, b"\0" * 4096)]))
    rc, _, err = run(capsys, "vtop", str(p), "ffffffff81000000")
    assert rc == 1 and "no VMCOREINFO" in err
    rc, out, err = run(capsys, "info", str(p))
    assert rc == 0 and "FORMAT" in out and "no VMCOREINFO" in err


def test_vmcoreinfo_with_garbage_lines(tmp_path, capsys) -> None:
    p = tmp_path / "core"
    p.write_bytes(build_core([(0, 0x1000, b"\0" * 4096)], note(b"VMCOREINFO", 0, VMCI + b"garbage\n=\n")))
    rc, out, _ = run(capsys, "vmcoreinfo", "--check", str(p))
    assert rc == 1 and "malformed" in out
    rc, out, _ = run(capsys, "vmcoreinfo", str(p))
    assert rc == 0 and out.startswith("OSRELEASE=6.1.0")


@pytest.mark.corpus
def test_info_matches_crash_sys(corpus_case, corpus_elf, capsys) -> None:
    rc, out, _ = run(capsys, "info", "--json", str(corpus_elf))
    assert rc == 0
    s = json.loads(out)
    sys_txt = (corpus_case / "expected" / "crash" / "sys.txt").read_text()
    assert s["release"] == re.search(r"RELEASE: (\S+)", sys_txt).group(1)
    assert s["cpus"] == int(re.search(r"CPUS: (\d+)", sys_txt).group(1))
    assert s["page_size"] == 4096
    assert s["format"] == "elf" and s["arch"] == "x86_64"


@pytest.mark.corpus
def test_vtop_rd_cli(corpus_case, corpus_elf, capsys) -> None:
    crash = (corpus_case / "expected" / "crash" / "vtop-init_task.txt").read_text().splitlines()
    va, pa = crash[1].split()[:2]
    rc, out, _ = run(capsys, "vtop", str(corpus_elf), va)
    assert rc == 0 and out.splitlines()[1].split()[:2] == [va, pa]
    rc, out, _ = run(capsys, "rd", str(corpus_elf), "-a", "init_uts_ns")
    assert rc == 0 and out == "Linux\n"
    rc, phys_out, _ = run(capsys, "rd", "-p", str(corpus_elf), pa, "4")
    rc2, virt_out, _ = run(capsys, "rd", str(corpus_elf), va, "4")
    assert rc == rc2 == 0
    strip = lambda s: [l.split(":", 1)[1] for l in s.splitlines()]  # noqa: E731
    assert strip(phys_out) == strip(virt_out)


def test_closed_pipe_is_not_an_error(sample_dump) -> None:
    # `vmcorekit dmesg | head -1`: the reader leaves early; exit 0, nothing on stderr.
    p = subprocess.Popen([sys.executable, "-m", "vmcorekit", "dmesg", str(sample_dump)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    p.stdout.readline()
    p.stdout.close()
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0 and b"Traceback" not in err, err


def test_commands_load_lazily_and_by_their_own_names() -> None:
    """Each command module is imported only when its command runs; every listed name resolves
    to a command of that name; running one command does not import numpy-heavy others."""
    code = (
        "import sys\n"
        "from vmcorekit.cli.main import cli\n"
        "assert 'numpy' not in sys.modules, 'numpy loaded by the CLI group'\n"
        "assert not any(m.startswith('vmcorekit.cli.') and m not in ('vmcorekit.cli.main',) "
        "for m in sys.modules if m.count('.') == 2), sorted(sys.modules)\n"
        "names = cli.list_commands(None)\n"
        "for n in names:\n"
        "    assert cli.get_command(None, n).name == n, n\n"
        "assert cli.get_command(None, 'no-such') is None\n"
        "print(' '.join(names))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    for expected in ("bt", "dmesg", "filter", "info", "ps", "triage", "vmcoreinfo", "vtop"):
        assert expected in out
    assert not {"common", "main", "render"} & set(out)
