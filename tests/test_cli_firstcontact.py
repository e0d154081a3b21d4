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


def test_ps_unknown_pid_is_an_error(sample_dump, capsys) -> None:
    rc, out, err = run(capsys, "ps", str(sample_dump), "99999")
    assert rc == 1 and out == "" and err.strip() == "vmcorekit: error: invalid task, pid or command: 99999"
    rc, out, err = run(capsys, "ps", str(sample_dump), "1", "99999")
    assert rc == 0 and " init" in out and "note: invalid task, pid or command: 99999" in err


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
    rc, out, err = run(capsys, "info", *parts)  # several files: said to be one split set
    assert rc == 0 and "a --split set of 3 files" in out


def test_filter_x_and_i_and_check_params(sample_dump, tmp_path, capsys) -> None:
    vi = REPO / "samples" / "vmcoreinfo.txt"
    out = tmp_path / "o"
    rc, _, err = run(capsys, "filter", "--check-params", "-d", "31", "-i", str(vi), "-x", str(vi),
                     str(sample_dump), str(out))
    assert rc == 0 and not out.exists() and "ignored -x" in err
    rc, _, err = run(capsys, "filter", "--eppic", "x.c", str(sample_dump), str(out))
    assert rc == 2


# -- item 8: crash's names ---------------------------------------------------------------------

def test_log_is_dmesg_and_takes_crash_flags(sample_dump, capsys) -> None:
    rc, out, _ = run(capsys, "log", str(sample_dump))
    assert rc == 0 and out == (REPO / "samples" / "expected" / "vmcore-dmesg.txt").read_text()
    rc, out, _ = run(capsys, "log", "-m", str(sample_dump))
    assert rc == 0 and out.startswith("[    0.000000] <5>Linux version")
    rc, out, _ = run(capsys, "log", "-t", str(sample_dump))
    assert rc == 0 and out.startswith("Linux version")


@pytest.mark.corpus
def test_log_m_matches_crash(corpus_case, capsys) -> None:
    rc, out, _ = run(capsys, "log", "-m", str(corpus_case / "vmcore.c-d31.kdump"))
    want = (corpus_case / "expected" / "crash" / "log-m.txt").read_text()
    assert rc == 0 and out.splitlines()[:50] == want.splitlines()[:50]


def test_kmem_without_option_is_crash_usage(sample_dump, capsys) -> None:
    rc, out, err = run(capsys, "kmem", str(sample_dump))
    assert rc == 2 and out == "" and err.count("\n") == 1 and "kmem -i|-V" in err


def test_kmem_V_lists_vm_stat(sample_dump, capsys) -> None:
    rc, out, _ = run(capsys, "kmem", "-V", str(sample_dump))
    assert rc == 0 and out.startswith("  VM_ZONE_STAT:\n") and "VM_NODE_STAT:" in out
    assert re.search(r"^ +NR_FREE_PAGES: \d+$", out, re.M)


def test_sym_l_and_q(sample_dump, capsys) -> None:
    rc, out, _ = run(capsys, "sym", "-q", "init_task", str(sample_dump))
    assert rc == 0 and re.search(r"^[0-9a-f]{16} \(D\) init_task$", out, re.M)
    rc, out, _ = run(capsys, "sym", "-l", str(sample_dump))
    addrs = [int(line.split()[0], 16) for line in out.splitlines()]
    assert rc == 0 and len(addrs) > 1000 and addrs == sorted(addrs)


def test_sym_failures_are_one_error_line(sample_dump, capsys) -> None:
    rc, out, err = run(capsys, "sym", str(sample_dump), "init_task", "nosuch1", "nosuch2")
    assert rc == 1 and "init_task" in out
    assert err == "vmcorekit: error: 2 of 3 not resolved: nosuch1: no such symbol; nosuch2: no such symbol\n"


def test_rd_flags(sample_dump, capsys) -> None:
    rc, out, _ = run(capsys, "rd", "-x", str(sample_dump), "init_task", "2")
    assert rc == 0 and out.rstrip().endswith("0000000000000000") and "." not in out.split(":", 1)[1]
    rc, out, _ = run(capsys, "rd", "-d", str(sample_dump), "init_task", "1")
    assert rc == 0 and out.split()[-1] == "16384"
    rc, out, _ = run(capsys, "rd", "-s", str(sample_dump), "init_task", "6")
    assert rc == 0 and "init_stack" in out


# -- item 9: which codec backend ---------------------------------------------------------------

def test_version_lists_codec_backends(capsys) -> None:
    rc, out, _ = run(capsys, "version", "--json")
    d = json.loads(out)
    assert rc == 0 and {c["codec"] for c in d["codecs"]} == {"zlib", "lzo", "snappy", "zstd"}
    lzo = next(c for c in d["codecs"] if c["codec"] == "lzo")
    assert lzo["write"] in ("liblzo2", "lzallright")


def test_slow_lzo_path_is_said(sample_dump, tmp_path, capsys, monkeypatch) -> None:
    import vmcorekit.filter.compress as compress
    monkeypatch.setattr(compress, "_lzo_lib", False)  # as without the system's liblzo2
    rc, out, _ = run(capsys, "version")
    assert "lzallright" in out and "liblzo2-2" in out
    rc, _, err = run(capsys, "filter", "-l", "-d", "31", "--no-progress", str(sample_dump), str(tmp_path / "o"))
    assert rc == 0 and "vmcorekit: note: LZO pages by the lzallright package" in err


# -- item 11: small things ---------------------------------------------------------------------

def test_info_one_unit_and_plurals(sample_dump, capsys) -> None:
    rc, out, _ = run(capsys, "info", str(sample_dump))
    assert rc == 0 and "in 2 ranges" in out and "KiB" not in out
    from vmcorekit.cli.info import plural
    assert plural(1, "range") == "1 range"


def test_rd_a_empty_string_prints_nothing(sample_dump, capsys) -> None:
    rc, out, err = run(capsys, "rd", "-a", str(sample_dump), "init_task")  # starts with NUL bytes
    assert rc == 0 and out == "" and "empty string" in err


def test_struct_x_keeps_char_arrays_as_strings(sample_dump, capsys) -> None:
    rc, out, _ = run(capsys, "struct", "-x", str(sample_dump), "task_struct.comm,pid", "init_task")
    assert rc == 0 and out.splitlines() == ['  comm = "swapper/0\\000\\000\\000\\000\\000\\000",', "  pid = 0x0,"]


def test_vtop_page_line(sample_dump, capsys) -> None:
    rc, out, _ = run(capsys, "vtop", str(sample_dump), "init_task")
    lines = out.splitlines()
    assert rc == 0 and lines[-2] == "      PAGE       PHYSICAL      MAPPING       INDEX CNT FLAGS"
    assert lines[-1].endswith(" reserved")
    rc, out, _ = run(capsys, "vtop", "--help")
    assert "--json" in out


@pytest.mark.corpus
def test_vtop_page_line_matches_crash(corpus_case, capsys) -> None:
    if corpus_case.name != "qmp-kaslr":
        pytest.skip("crash's vtop is recorded for qmp-kaslr")
    from conftest import decompressed_elf
    rc, out, _ = run(capsys, "vtop", str(decompressed_elf(corpus_case)), "init_task")
    want = (corpus_case / "expected" / "crash" / "vtop-init_task.txt").read_text().splitlines()
    assert rc == 0 and out.splitlines()[-2:] == want[-2:]


def test_repl_echoes_objects_by_value(sample_dump) -> None:
    from vmcorekit import Program
    from vmcorekit.cli.shell import shown
    with Program.open(str(sample_dump)) as prog:
        assert repr(shown(prog["init_task"].comm)) == '"swapper/0\\000\\000\\000\\000\\000\\000"'
        assert shown(5) == 5


# -- item 5: folders of dumps as they lie on disk ----------------------------------------------

@pytest.fixture(scope="module")
def crash_dir(sample_dump, tmp_path_factory):
    """/var/crash as kdump (RHEL/Fedora), Debian/Ubuntu's kdump-tools and a --split run leave it;
    names that say nothing (`core`) and text files beside the dumps."""
    import shutil
    root = tmp_path_factory.mktemp("crash")
    (root / "127.0.0.1-2026-12-01-10:00:00").mkdir()
    shutil.copy(sample_dump, root / "127.0.0.1-2026-12-01-10:00:00" / "vmcore")
    (root / "127.0.0.1-2026-12-01-10:00:00" / "vmcore-dmesg.txt").write_text("[ 0.0] text\n")
    (root / "202612011000").mkdir()
    os.link(sample_dump, root / "202612011000" / "dump.202612011000")
    (root / "202612011000" / "dmesg.202612011000").write_text("[ 0.0] text\n")
    (root / "deep" / "er").mkdir(parents=True)
    os.link(sample_dump, root / "deep" / "er" / "core")
    (root / "split").mkdir()
    assert main(["filter", "-d", "31", "--no-progress", "--split", str(sample_dump),
                 str(root / "split" / "vmcore-1"), str(root / "split" / "vmcore-2")]) == 0
    return root


def test_triage_finds_dumps_recursively(crash_dir) -> None:
    from vmcorekit.cli.triage import _dumps_in
    found = [os.path.relpath(p, crash_dir) if "," not in p else
             ",".join(os.path.relpath(x, crash_dir) for x in p.split(",")) for p in _dumps_in((str(crash_dir),))]
    assert found == ["127.0.0.1-2026-12-01-10:00:00/vmcore", "202612011000/dump.202612011000",
                     "deep/er/core", "split/vmcore-1,split/vmcore-2"]


def test_triage_html_of_a_folder(crash_dir, tmp_path, capsys) -> None:
    out = tmp_path / "report.html"
    rc, stdout, _ = run(capsys, "triage", "-j", "2", "--html", str(out), str(crash_dir / "split"),
                        str(crash_dir / "deep"))
    assert rc == 0 and len(stdout.splitlines()) == 2
    page = out.read_text()
    assert page.count('<section id="dump-') == 2 and "vmcore-1" in page and "sysrq" in page


# -- item 4: one JSON convention, a schema per command in the wheel ----------------------------

SCHEMAS = REPO / "src" / "vmcorekit" / "schemas"
# Keys that hold addresses wherever they appear, and subtrees that are data, not vmcorekit's words.
ADDRESS_KEYS = {"address", "vaddr", "paddr", "start", "end", "task", "mm", "pc", "sp", "rip", "base", "module",
                "kaslr_offset", "phys_base", "root", "entry_paddr", "table_paddr", "page_offset_base",
                "vmemmap_base", "kernel_pgd", "mapping", "slot"}
OPAQUE = {"value", "sizes", "offsets", "lengths", "numbers", "configs", "other", "kept_by_level", "seconds"}


def _convention_problems(o, path: str = "") -> list[str]:
    out = []
    if isinstance(o, dict):
        for k, v in o.items():
            p = f"{path}.{k}"
            if k in OPAQUE:
                continue
            if k in ADDRESS_KEYS and isinstance(v, int) and not isinstance(v, bool):
                out.append(f"{p}: address as a number ({v})")
            if k in ("size", "warnings", "totalram_pages", "vsz", "kerneloffset", "osrelease", "crashtime"):
                out.append(f"{p}: not the one name of its concept")
            if k == "regs" and isinstance(v, dict):
                out += [f"{p}.{r}: register as a number" for r, x in v.items() if isinstance(x, int)]
            out += _convention_problems(v, p)
    elif isinstance(o, list):
        for i, v in enumerate(o):
            out += _convention_problems(v, f"{path}[{i}]")
    return out


def _json_cases(dump: str, tmp: Path) -> list[tuple[str, list[str]]]:
    vi = str(REPO / "samples" / "vmcoreinfo.txt")
    return [
        ("info", ["info", "--json", dump]), ("info", ["info", "--json", "--ranges", dump]),
        ("vmcoreinfo", ["vmcoreinfo", "--json", dump]), ("vmcoreinfo-check", ["vmcoreinfo", "--check", "--json", dump]),
        ("vmcoreinfo-diff", ["vmcoreinfo", "--diff", vi, "--json", dump]),
        ("vtop", ["vtop", "--json", dump, "init_task"]), ("vtop", ["vtop", "--json", dump, "jiffies"]),
        ("bt", ["bt", "--json", dump]), ("bt", ["bt", "--json", "-a", dump]),
        ("ps", ["ps", "--json", dump]), ("sys", ["sys", "--json", dump]), ("mod", ["mod", "--json", dump]),
        ("sym", ["sym", "--json", dump, "init_task", "jiffies"]), ("sym", ["sym", "--json", "-q", "init_tas", dump]),
        ("struct", ["struct", "--json", dump, "task_struct.pid,comm,stack", "init_task"]),
        ("struct", ["struct", "--json", dump, "list_head"]),
        ("kmem", ["kmem", "-i", "--json", dump]), ("kmem", ["kmem", "-V", "--json", dump]),
        ("kmem", ["kmem", "-s", "--json", dump]), ("kmem", ["kmem", "-z", "--json", dump]),
        ("kmem", ["kmem", "-S", "task_struct", "--json", dump]), ("kmem", ["kmem", "-f", "--json", dump]),
        ("kmem", ["kmem", "--json", dump, "init_task"]), ("mount", ["mount", "--json", dump]), ("net", ["net", "--json", dump]), ("swap", ["swap", "--json", dump]), ("irq", ["irq", "--json", "-s", dump]),
        ("timer", ["timer", "--json", dump]), ("timer", ["timer", "-r", "--json", dump]),
        ("search", ["search", "--json", dump, "init_task"]), ("search", ["search", "--json", "-c", "Linux version", dump]),
        ("verify", ["verify", "--quick", "--json", dump]),
        ("filter", ["filter", "--json", "--no-progress", "-d", "31", dump, str(tmp / "filtered")]),
        ("filter", ["filter", "--json", "--no-progress", "--mem-usage", dump]),
        ("triage", ["triage", "--json", dump]), ("triage-many", ["triage", "--json", "-j", "1", dump, dump]),
        ("dmesg", ["dmesg", "--json", dump]), ("version", ["version", "--json"]),
        ("p", ["p", "--json", dump, "init_task.tasks"]), ("p", ["px", "--json", dump, "jiffies"]),
        ("p", ["pd", "--json", dump, "runqueues"]), ("whatis", ["whatis", "--json", dump, "jiffies"]),
        ("whatis", ["whatis", "--json", dump, "list_head"]),
        ("list", ["list", "--json", dump, "-h", "init_task", "-o", "task_struct.tasks", "-s", "task_struct.pid,comm"]),
        ("task", ["task", "--json", dump, "1", "-R", "pid,comm,tasks"]), ("set", ["set", "--json", dump]),
        ("runq", ["runq", "--json", dump]), ("runq", ["runq", "--json", "-c", "0", dump]),
        ("ptov", ["ptov", "--json", dump, "1000000", "0"]),
        ("dis", ["dis", "--json", dump, "schedule"]), ("dis", ["dis", "--json", dump, "-l", "3", "panic"]),
        ("foreach", ["foreach", "--json", dump, "RU", "bt"]),
        ("files", ["files", "--json", dump, "1"]),
        ("vm", ["vm", "--json", dump, "1"]), ("vm", ["vm", "--json", dump, "2"]),
        ("sig", ["sig", "--json", dump, "1"]),
    ]


@pytest.fixture(params=["x86_64", "arm64"])
def any_sample(request, sample_dump):
    """The shipped samples: the x86_64 kdump file and the arm64 ELF core."""
    if request.param == "x86_64":
        return sample_dump
    from conftest import SAMPLES, decompressed_elf
    if not (SAMPLES / "arm64" / "vmcore.elf.zst").exists():
        pytest.skip("samples/arm64 absent")
    return decompressed_elf(SAMPLES / "arm64")


def test_every_command_json_matches_its_schema(any_sample, tmp_path, capsys) -> None:
    import jsonschema
    seen = set()
    for name, args in _json_cases(str(any_sample), tmp_path):
        rc, out, err = run(capsys, *args)
        # vmcoreinfo --diff: 1 when the notes differ; swap: 3 when swap_info is not in the symbol table
        assert rc in (0, 1) or (name, rc) == ("swap", 3), (args, rc, err)
        docs = [json.loads(line) for line in out.splitlines()] if name in ("dmesg", "triage-many") else [json.loads(out)]
        schema = json.loads((SCHEMAS / f"{name}.json").read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        for d in docs:
            jsonschema.validate(d, schema)
            assert _convention_problems(d) == [], (args, _convention_problems(d)[:5])
            if isinstance(d, dict) and name not in ("dmesg", "triage-many"):
                assert isinstance(d.get("notes"), list), args
        seen.add(name)
    assert seen == {p.stem for p in SCHEMAS.glob("*.json")}  # every schema is exercised


def test_schemas_ship_in_the_package_and_help_points_there(capsys) -> None:
    from importlib import resources
    assert resources.files("vmcorekit").joinpath("schemas", "triage.json").is_file()
    text = (REPO / "pyproject.toml").read_text()
    assert '"schemas/*.json"' in text
    rc, out, _ = run(capsys, "triage", "--help")
    assert "vmcorekit schema triage" in " ".join(out.split())
    rc, out, _ = run(capsys, "schema", "triage")
    assert rc == 0 and json.loads(out)["$id"] == "vmcorekit-triage/1"


# -- item 10: packaging ------------------------------------------------------------------------

def test_license_is_the_declared_one() -> None:
    text = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^license = "GPL-2.0-or-later"$', text, re.M)
    assert re.search(r'^license-files = \["LICENSE"\]$', text, re.M)
    assert re.search(r'requires = \["setuptools>=(\d+)', text) and \
        int(re.search(r'requires = \["setuptools>=(\d+)', text).group(1)) >= 77  # PEP 639 support
    lic = (REPO / "LICENSE").read_text()
    assert "GNU GENERAL PUBLIC LICENSE" in lic and "Version 2, June 1991" in lic
    assert "License ::" not in text  # a license classifier next to an SPDX expression is refused
    assert (REPO / "CHANGELOG.md").read_text().startswith("# Changelog")


def test_man_pages_are_current() -> None:
    r = subprocess.run([sys.executable, str(REPO / "tools" / "make-man.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (REPO / "man" / "vmcorekit-filter.1").read_text().startswith('.TH "VMCOREKIT-FILTER" "1"')


def test_shell_completion(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "_VMCOREKIT_COMPLETE": "bash_complete",
           "COMP_WORDS": "vmcorekit filter --num", "COMP_CWORD": "2"}
    r = subprocess.run([sys.executable, "-m", "vmcorekit"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "--num-threads" in r.stdout
    env.update(_VMCOREKIT_COMPLETE="bash_source")
    r = subprocess.run([sys.executable, "-m", "vmcorekit"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "_vmcorekit_completion" in r.stdout


def test_readme_keeps_two_commands_for_a_fresh_machine() -> None:
    text = (REPO / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [line.strip() for line in quick.splitlines() if line.startswith("    ")]
    assert commands == ["pip install . && vmcorekit triage samples/x86_64-6.1.0-56-amd64-qmp-c-d31.kdump",
                        "pip install -e '.[test]' && python -m pytest"]
    for word in ("liblzo2-2", "_VMCOREKIT_COMPLETE", "pipx", "externally-managed", "vmcorekit schema",
                 "--num-threads", "File exists"):
        assert word in text, word


def test_closed_stderr_keeps_the_status(sample_dump, tmp_path) -> None:
    """`vmcorekit sys CUT 2>&1 | head -1`: the notes after the answer meet the closed pipe; the
    command still ends quietly with the status its answer earned (3: partial), not 1."""
    cut = tmp_path / "cut.kdump"
    with open(sample_dump, "rb") as f:
        cut.write_bytes(f.read(12_000_000))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    p = subprocess.Popen([sys.executable, "-m", "vmcorekit", "sys", str(cut)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.stdout is not None
    p.stdout.readline()
    p.stdout.close()
    p.wait(timeout=120)
    assert p.returncode == 3
