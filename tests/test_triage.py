"""The triage report: right panic, task, CPU and backtrace on real dumps; JSON valid against
the documented schema; stable signatures; sections degrade one by one; HTML renders."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from vmcorekit.cli.main import main
from vmcorekit.report.render_html import render_html
from vmcorekit.report.triage import triage

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "src" / "vmcorekit" / "schemas" / "triage.json").read_text())


def crash_bt_functions(path: Path) -> list[str]:
    return re.findall(r"^\s*#\d+ \[[0-9a-f]+\] (\S+) at", path.read_text(), re.M)


def is_subsequence(small: list[str], big: list[str]) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


@pytest.fixture(scope="module")
def sample_report(sample_dump) -> dict:
    return triage(str(sample_dump))


def test_sample_report(sample_report, sample_dump) -> None:
    r = sample_report
    jsonschema.validate(r, SCHEMA)
    assert all(s["ok"] for s in r["sections"].values()), r["sections"]
    assert r["crash"]["reason"] == "sysrq triggered crash"
    assert r["crash"]["comm"] == "sh" and r["crash"]["cpu"] == 0
    funcs = [f["function"] for f in r["backtrace"]["frames"]]
    assert "sysrq_handle_crash" in funcs and "write_sysrq_trigger" in funcs
    assert r["signature"]["frames"][:2] == ["sysrq_handle_crash", "__handle_sysrq"]
    expected = (sample_dump.parent / "expected" / "drgn-crashed-thread.txt").read_text()
    assert f"pid {r['crash']['pid']} comm sh" in expected


@pytest.mark.corpus
def test_corpus_report(corpus_case, corpus_elf) -> None:
    r = triage(str(corpus_elf))
    jsonschema.validate(r, SCHEMA)
    assert all(s["ok"] for s in r["sections"].values()), r["sections"]
    assert r["crash"]["reason"] == "sysrq triggered crash"
    crash_dir = corpus_case / "expected" / "crash"
    head = (crash_dir / "bt.txt").read_text().splitlines()[0]
    pid, cpu, comm = re.match(r'PID: (\d+)\s+TASK: \S+\s+CPU: (\d+)\s+COMMAND: "(.*)"', head).groups()
    assert (r["crash"]["pid"], r["crash"]["cpu"], r["crash"]["comm"]) == (int(pid), int(cpu), comm)
    # The ORC trace is crash's list without the stale return addresses crash's heuristic shows.
    # crash prints the interrupted frame as "[exception RIP: ...]", not as a numbered frame.
    ours = [f["function"] for f in r["backtrace"]["frames"] if not (f["interrupted"] and f is r["backtrace"]["frames"][0])]
    theirs = crash_bt_functions(crash_dir / "bt.txt")
    assert is_subsequence(ours, theirs) and len(ours) >= 7, (ours, theirs)
    assert r["kernel"]["release"] in (crash_dir / "sys.txt").read_text()


@pytest.mark.corpus
def test_same_panic_same_signature(corpus_dir) -> None:
    from conftest import decompressed_elf
    sigs = {triage(str(decompressed_elf(corpus_dir / c)))["signature"]["id"] for c in ("qmp-kaslr", "kdump-kaslr")}
    sigs.add(triage(str(corpus_dir / "qmp-nokaslr" / "vmcore.c-d31.kdump"))["signature"]["id"])
    assert len(sigs) == 1


def test_truncated_dump_still_reports(sample_dump, tmp_path) -> None:
    cut = tmp_path / "cut.kdump"
    data = sample_dump.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    r = triage(str(cut))
    jsonschema.validate(r, SCHEMA)
    assert r["dump"]["path"] == str(cut)
    # Kernel facts and the log sit in pages near the start of a kdump file; what is lost is
    # reported per section, never as a crash of the whole report.
    assert "kernel" in r and r["sections"]["kernel"]["ok"]
    for name, st in r["sections"].items():
        assert st["ok"] or st["error"], name


def test_cli_json_and_html(sample_dump, tmp_path, capsys) -> None:
    html = tmp_path / "report.html"
    rc = main(["triage", "--json", "--html", str(html), str(sample_dump)])
    out = capsys.readouterr().out
    assert rc == 0
    jsonschema.validate(json.loads(out), SCHEMA)
    page = html.read_text()
    assert oct(os.stat(html).st_mode & 0o777) == "0o600"
    assert "sysrq triggered crash" in page and "<svg" in page and "<details" in page
    assert not re.search(r"(?:src|href)=\"https?:", page)


def test_many_dumps_group_by_signature(sample_dump, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.kdump"
    bad.write_bytes(b"KDUMP   " + b"\0" * 100)
    rc = main(["triage", "-j", "2", str(sample_dump), str(sample_dump), str(bad)])
    out, err = capsys.readouterr()
    rows = [json.loads(l) for l in out.splitlines()]
    assert rc == 1 and len(rows) == 3
    assert rows[0]["ok"] and rows[1]["ok"] and not rows[2]["ok"] and str(bad) in rows[2]["path"]
    assert rows[0]["signature"] == rows[1]["signature"]
    table = err.splitlines()
    assert table[0].startswith("SIGNATURE") and re.search(rf"^{rows[0]['signature']}\s+2\s", "\n".join(table), re.M)


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="no chromium")
def test_html_in_headless_chromium(sample_report, tmp_path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(sample_report))
    shot = tmp_path / "shot.png"
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
                        "--window-size=1280,2000", f"--screenshot={shot}", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000, r.stderr[-2000:]
    console = [l for l in r.stderr.splitlines() if "CONSOLE" in l or "Uncaught" in l]
    assert not console, console
