"""Fleet triage on real dumps: ingest (local workers), the index, the verbs, rebucket, safety.

Test data: the shipped x86_64 sample, copies of it made distinct by one byte of header padding,
a --split set made from it by `vmcorekit filter`, the arm64 sample (zstd-wrapped ELF), a
garbage file and a truncated copy, all in a temporary folder. The cluster and dashboard tests
(test_fleet_cluster.py, test_fleet_web.py) reuse these helpers.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("duckdb")

from vmcorekit.cli.main import main  # noqa: E402
from vmcorekit.fleet import index, queries  # noqa: E402
from vmcorekit.fleet.facts import strip_timings  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "x86_64-6.1.0-56-amd64-qmp-c-d31.kdump"
ARM64 = REPO / "samples" / "arm64" / "vmcore.elf.zst"
PAD = 3000  # a byte inside block 0 after the 464-byte kdump header: padding no reader looks at

_made: dict[str, Any] = {}


def variant(dst: Path, n: int, src: Path = SAMPLE) -> Path:
    """A copy of `src` whose header padding carries `n`: same crash, another content id."""
    data = bytearray(src.read_bytes())
    data[PAD:PAD + 4] = (n + 1).to_bytes(4, "little")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)
    return dst


def env() -> dict[str, str]:
    """The environment for subprocesses: this tree's sources first."""
    e = dict(os.environ)
    src = str(REPO / "src")
    e["PYTHONPATH"] = src + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.setdefault("VMCOREKIT_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / "vmcorekit-test-cache"))
    return e


def fleet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared test fleet: 5 dumps that read (2 copies, a split set, a zstd ELF, a cut one),
    a garbage file named like a dump, and a note that is not a dump."""
    if "fleet" in _made:
        return _made["fleet"]
    d = tmp_path_factory.mktemp("fleet")
    variant(d / "host-a" / "vmcore.kdump", 1)
    variant(d / "host-b" / "deep" / "vmcore", 2)
    os.symlink(ARM64, d / "arm64-vmcore.elf.zst")
    (d / "host-c").mkdir()
    subprocess.run([sys.executable, "-m", "vmcorekit", "filter", "-d", "31", "--split", "2", str(SAMPLE),
                    str(d / "host-c" / "split.kdump")], check=True, env=env(), capture_output=True)
    (d / "junk").mkdir()
    (d / "junk" / "garbage.kdump").write_bytes(b"not a dump at all\n" * 64)
    (d / "junk" / "cut.kdump").write_bytes(SAMPLE.read_bytes()[:3_000_000])
    (d / "junk" / "README.txt").write_text("notes, not a dump\n")
    (d / "junk" / "vmcoreinfo.txt").write_text("OSRELEASE=6.1.0\n")
    import gzip
    (d / "junk" / "messages.log.gz").write_bytes(gzip.compress(b"a log, compressed\n"))
    _made["fleet"] = d
    return d


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in out.splitlines() if x.strip()]


def rows_of(path: Path) -> dict[str, dict[str, Any]]:
    """Every dump row by path, timings left out (for comparing two ingests)."""
    with index.connect(str(path), read_only=True) as con:
        cur = con.execute("SELECT * FROM dumps")
        names = [d[0] for d in cur.description]
        out = {}
        for r in cur.fetchall():
            row = {k: v for k, v in zip(names, r) if k not in index.TIMING_COLUMNS}
            row["triage"] = strip_timings(json.loads(row["triage"])) if row["triage"] else None
            out[row["path"]] = row
    return out


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """The test fleet ingested once by local workers: (fleet folder, index, summary). Once per
    session: the other fleet test files import this fixture, and pytest would build an imported
    fixture again for each file."""
    if "built" in _made:
        return _made["built"]  # type: ignore[return-value]
    d = fleet_dir(tmp_path_factory)
    ix = tmp_path_factory.mktemp("ix") / "fleet.duckdb"
    r = subprocess.run([sys.executable, "-m", "vmcorekit", "fleet", "ingest", str(d), "--index", str(ix),
                        "--workers", "2", "--json"], env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    _made["built"] = (d, ix, json.loads(r.stdout))  # type: ignore[assignment]
    return _made["built"]  # type: ignore[return-value]


def test_ingest_finds_every_dump_and_records_failures(built: tuple[Path, Path, dict[str, Any]]) -> None:
    d, ix, summary = built
    assert summary["new"] == 6 and summary["seen"] == 6 and summary["failed"] == 1
    rows = rows_of(ix)
    by_name = {Path(p.split(",")[0]).name: r for p, r in rows.items()}
    assert not {"README.txt", "vmcoreinfo.txt", "messages.log.gz"} & set(by_name)
    assert {r["status"] for r in rows.values()} == {"ok", "partial", "error"}
    a, b = by_name["vmcore.kdump"], by_name["vmcore"]
    assert a["status"] == b["status"] == "ok"
    assert a["content_id"] != b["content_id"] and a["signature"] == b["signature"]
    assert a["content_id"] == hashlib.sha256((d / "host-a" / "vmcore.kdump").read_bytes()).hexdigest()
    assert a["release"] == "6.1.0-56-amd64" and a["arch"] == "x86_64" and a["hostname"] == "vmcorekit-guest"
    assert a["title"] and a["class"].lower() == "panic" and a["rules_version"]
    assert a["panic_cpu"] == 0 and a["panic_comm"] == "sh" and a["panic_pid"] == 214
    assert a["crash_time"] == 1795687176 and a["uptime"] > 0 and a["taint_mask"] == 0
    assert a["guilty_function"] == "sysrq_handle_crash"
    assert any("sysrq_handle_crash" in f for f in a["stack_frames"])
    assert any("sysrq triggered crash" in x for x in a["title_lines"])
    tri = a["triage"]  # the bucket is the report's own (crash.signature with titles, else signature)
    assert a["signature"] in ((tri.get("crash") or {}).get("signature", {}).get("id"), tri["signature"]["id"])
    split = by_name["split.kdump.1"]
    assert split["parts"] == 2 and split["format"] == "kdump-split" and split["path"].endswith("split.kdump.2")
    assert split["signature"] == a["signature"]
    zst = by_name["arm64-vmcore.elf.zst"]
    assert zst["status"] == "ok" and zst["arch"] == "aarch64" and zst["format"] == "elf+zst"
    garbage = by_name["garbage.kdump"]
    assert garbage["status"] == "error" and "garbage.kdump" in garbage["error"] and "\n" not in garbage["error"]
    cut = by_name["cut.kdump"]
    assert cut["status"] in ("partial", "error") and cut["failed_sections"]


def test_second_ingest_adds_nothing(built: tuple[Path, Path, dict[str, Any]],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    d, ix, _ = built
    rc, out, err = run_cli(capsys, "fleet", "ingest", str(d), "--index", str(ix), "--workers", "1", "--json")
    assert rc == 0, err
    s = json_lines(out)[0]
    assert s["new"] == 0 and s["failed"] == 0 and s["triaged"] == 0 and s["seen"] == 6
    assert set(s) >= {"seen", "new", "failed", "seconds"}
    rc, out, _ = run_cli(capsys, "fleet", "ingest", str(d), "--index", str(ix), "--workers", "1")
    assert rc == 0 and out.startswith("0 new")


def test_copy_at_a_new_path_is_the_same_dump(built: tuple[Path, Path, dict[str, Any]], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    d, ix, _ = built
    work = tmp_path / "ix.duckdb"
    shutil.copy(ix, work)
    shutil.copy(d / "host-a" / "vmcore.kdump", tmp_path / "moved.kdump")
    rc, out, err = run_cli(capsys, "fleet", "ingest", str(tmp_path / "moved.kdump"), "--index", str(work), "--json")
    assert rc == 0, err
    s = json_lines(out)[0]
    assert s["new"] == 0 and s["duplicates"] == 1 and s["triaged"] == 0
    with index.connect(str(work), read_only=True) as con:
        cid = con.execute("SELECT content_id FROM files WHERE path = ?", [str(tmp_path / "moved.kdump")]).fetchone()[0]
        assert queries.report(con, cid)["paths"] == sorted([str(d / "host-a" / "vmcore.kdump"),
                                                           str(tmp_path / "moved.kdump")])


def test_verbs_json(built: tuple[Path, Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    d, ix, _ = built
    rc, out, _ = run_cli(capsys, "fleet", "top", "--index", str(ix), "--json")
    top = json_lines(out)
    # sysrq-c on x86_64 and on arm64 is one bug: one bucket across the two architectures
    assert rc == 0 and top[0]["count"] == 4 and top[0]["kernels"] == ["6.1.0-56-amd64", "6.1.0-56-arm64"]
    assert top[0]["first_seen"] == "2026-11-26T09:51:33Z" and top[0]["machines"] == 2 and top[0]["paths"] == 4
    assert len(top[0]["spark"]) == 30
    sig = top[0]["signature"]
    rc, out, _ = run_cli(capsys, "fleet", "top", "--index", str(ix), "--json", "--since", "2030-01-01")
    assert rc == 0 and out == ""
    rc, out, _ = run_cli(capsys, "fleet", "find", "--index", str(ix), "--json", "--signature", sig[:6])
    found = json_lines(out)
    assert len(found) == 4 and all(set(r) >= {"path", "signature", "status"} for r in found)
    for args, n in ((["--kernel", "6.1.0-56-arm64"], 1), (["--status", "error"], 1), (["--class", "panic"], 4),
                    (["--text", "sysrq"], 4), (["--module", "no-such-module"], 0),
                    (["--since", "2026-11-26T09:55:00Z", "--until", "2026-11-27"], 3)):
        rc, out, _ = run_cli(capsys, "fleet", "find", "--index", str(ix), "--json", *args)
        assert rc == 0 and len(json_lines(out)) == n, args
    rc, out, _ = run_cli(capsys, "fleet", "show", sig[:8], "--index", str(ix), "--json")
    s = json_lines(out)[0]
    assert s["signature"] == sig and s["count"] == 4 and len(s["members"]) == 4
    assert s["timeline"] == [{"day": "2026-11-26", "count": 4}]
    assert s["typical"]["signature"] == sig and s["typical"]["triage"]["schema"]
    rc, out, _ = run_cli(capsys, "fleet", "show", sig[:8], "--index", str(ix))
    assert rc == 0 and "Timeline" in out and "Typical report" in out
    rc, out, _ = run_cli(capsys, "fleet", "stats", "--index", str(ix), "--json")
    st = json_lines(out)[0]
    assert st["dumps"] == 6 and st["status"]["error"] == 1 and st["runs"]
    rc, out, _ = run_cli(capsys, "fleet", "top", "--index", str(ix))
    assert rc == 0 and sig in out


def test_rebucket_records_history_and_reports_merges_and_splits(
        built: tuple[Path, Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, ix, _ = built
    work = tmp_path / "ix.duckdb"
    shutil.copy(ix, work)
    with index.connect(str(work)) as con:  # as if titled by older rules
        ids = [r[0] for r in con.execute("SELECT content_id FROM dumps WHERE status = 'ok' ORDER BY path").fetchall()]
        assert len(ids) == 4  # by path: arm64, host-a, host-b, host-c (split)
        # old-a and old-b: two buckets the current rules merge; old-c: one they split (arm64 + x86_64)
        con.execute("UPDATE dumps SET signature = 'old-a', rules_version = 'old' WHERE content_id = ?", [ids[1]])
        con.execute("UPDATE dumps SET signature = 'old-b', rules_version = 'old' WHERE content_id = ?", [ids[2]])
        con.execute("UPDATE dumps SET signature = 'old-c', rules_version = 'old' WHERE content_id IN (?, ?)",
                    [ids[0], ids[3]])
        expect = {r[0] for r in con.execute("SELECT content_id FROM dumps WHERE status IN ('ok', 'partial')").fetchall()}
    rc, out, err = run_cli(capsys, "fleet", "rebucket", "--index", str(work), "--json")
    assert rc == 0, err
    r = json_lines(out)[0]
    assert r["rows"] == 5 and r["changed"] == 4
    merged_from = {tuple(m["from"]) for m in r["merged"]}
    split_from = {s["from"] for s in r["split"]}
    assert split_from == {"old-c"} and ("old-a", "old-b", "old-c") in merged_from
    with index.connect(str(work), read_only=True) as con:
        hist = con.execute("SELECT content_id, old_signature, new_signature FROM rebucket_history").fetchall()
        assert len(hist) == 5 and {h[0] for h in hist} == expect  # every row, changed or not
        assert {h[1] for h in hist} >= {"old-a", "old-b", "old-c"}
        assert con.execute("SELECT count(*) FROM dumps WHERE signature LIKE 'old-%'").fetchone()[0] == 0
    rc, out, _ = run_cli(capsys, "fleet", "rebucket", "--index", str(work))
    assert rc == 0 and "0 changed" in out


def test_export_parquet(built: tuple[Path, Path, dict[str, Any]], tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    import duckdb
    _, ix, _ = built
    rc, out, err = run_cli(capsys, "fleet", "export", "--index", str(ix), "--parquet", str(tmp_path / "pq"))
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "pq").iterdir()) == ["dumps.parquet", "files.parquet",
                                                                    "rebucket_history.parquet", "runs.parquet"]
    n = duckdb.connect().execute(f"SELECT count(*) FROM '{tmp_path / 'pq' / 'dumps.parquet'}'").fetchone()[0]
    assert n == 6


def test_corrupt_index_is_an_error_and_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"\x00garbage, not DuckDB\n" * 200)
    before = bad.read_bytes()
    for verb in (["ingest", str(SAMPLE)], ["top"], ["stats"], ["rebucket"]):
        rc, out, err = run_cli(capsys, "fleet", *verb, "--index", str(bad))
        assert rc == 1 and err.count("\n") == 1 and err.startswith("vmcorekit: error: ") and str(bad) in err, err
        assert "Traceback" not in err
    assert bad.read_bytes() == before
    import duckdb
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).execute("CREATE TABLE t (x INTEGER)").close()
    rc, _, err = run_cli(capsys, "fleet", "top", "--index", str(other))
    assert rc == 1 and "not a vmcorekit fleet index" in err
    rc, _, err = run_cli(capsys, "fleet", "top", "--index", str(tmp_path / "missing.duckdb"))
    assert rc == 1 and "no such index" in err and not (tmp_path / "missing.duckdb").exists()


def test_second_ingest_on_one_index_waits_then_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ix = tmp_path / "ix.duckdb"
    with index.locked(str(ix)):  # another writer holds it
        t = time.monotonic()
        rc, out, err = run_cli(capsys, "fleet", "ingest", str(tmp_path), "--index", str(ix), "--wait", "0.5")
        assert time.monotonic() - t >= 0.5
    assert rc == 1 and "another ingest" in err and err.count("\n") == 1


def test_a_dump_that_takes_too_long_is_stopped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Readers that hang for sure (a real dump's triage may well finish within any timeout a
    # test can afford): opening a FIFO with no writer blocks forever.
    slow = tmp_path / "d" / "vmcore"
    slow.parent.mkdir()
    os.mkfifo(slow)
    fifo = tmp_path / "d2" / "vmcore.fifo"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    ix = tmp_path / "ix.duckdb"
    t = time.monotonic()
    rc, out, err = run_cli(capsys, "fleet", "ingest", str(slow), str(fifo), "--index", str(ix),
                           "--timeout", "0.5", "--workers", "2", "--json")
    assert rc == 0, err
    assert time.monotonic() - t < 60
    s = json_lines(out)[0]
    assert s["failed"] == 2
    with index.connect(str(ix), read_only=True) as con:
        st = dict(con.execute("SELECT path, status FROM dumps").fetchall())
    assert st == {str(slow): "timeout", str(fifo): "timeout"}
    # once readable, the path's stand-in row gives way to its content's row
    fifo.unlink()
    fifo.write_bytes(b"no longer a pipe, not a dump either\n")
    rc, out, err = run_cli(capsys, "fleet", "ingest", str(fifo), "--index", str(ix), "--json")
    assert rc == 0 and json_lines(out)[0]["new"] == 1, err
    with index.connect(str(ix), read_only=True) as con:
        rows = con.execute("SELECT content_id, status FROM dumps WHERE path = ?", [str(fifo)]).fetchall()
    assert len(rows) == 1 and rows[0][1] == "error" and not rows[0][0].startswith("path-")


def test_text_output_escapes_control_characters(built: tuple[Path, Path, dict[str, Any]], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _, ix, _ = built
    work = tmp_path / "ix.duckdb"
    shutil.copy(ix, work)
    with index.connect(str(work)) as con:
        con.execute("UPDATE dumps SET title = 'evil \x1b[31mred\x1b[0m title' WHERE status = 'ok'")
    for verb in (["top"], ["find"]):
        rc, out, _ = run_cli(capsys, "fleet", *verb, "--index", str(work))
        assert rc == 0 and "\x1b" not in out and "\\x1b[31mred" in out


def _count_rows(ix: Path) -> int:
    try:
        with index.connect(str(ix), read_only=True, retry=2) as con:
            return con.execute("SELECT count(*) FROM dumps").fetchone()[0]
    except Exception:
        return 0


def _group_members(pgid: int) -> list[int]:
    """Live processes of a process group (zombies excluded)."""
    out = []
    for st in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = st.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(st.parent.name))
    return out


def test_sigkill_mid_ingest_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    d = tmp_path / "dumps"
    # Enough dumps, one worker: the kill lands mid-ingest however fast one triage is.
    n = 12
    paths = [variant(d / f"m{i:02}" / "vmcore.kdump", 100 + i) for i in range(n)]
    want = {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    ix = tmp_path / "ix.duckdb"
    cmd = [sys.executable, "-m", "vmcorekit", "fleet", "ingest", str(d), "--index", str(ix), "--workers", "1", "--json"]
    p = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and p.poll() is None and _count_rows(ix) < 1:
            time.sleep(0.2)
        assert p.poll() is None, "ingest finished before it could be killed"
        os.kill(p.pid, signal.SIGKILL)  # the ingest only: its readers must notice and go
        p.wait()
        deadline = time.monotonic() + 10
        while _group_members(p.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _group_members(p.pid), "reader processes outlived the killed ingest"
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    got_before = _count_rows(ix)
    assert 1 <= got_before < n
    r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["new"] == n - got_before
    with index.connect(str(ix), read_only=True) as con:
        ids = [x for (x,) in con.execute("SELECT content_id FROM dumps").fetchall()]
        files = con.execute("SELECT count(*) FROM files").fetchone()[0]
    assert sorted(ids) == sorted(want) and files == n


@pytest.mark.corpus
def test_corpus_dumps_bucket_together(corpus_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The corpus's kdump and flattened files (three boots of one kernel, one sysrq crash each):
    one signature, the sample's, and the corpus's notes and logs are not taken for dumps."""
    files = sorted(str(p) for p in corpus_dir.glob("*/vmcore.c-d31.kdump")) + \
        sorted(str(p) for p in corpus_dir.glob("*/vmcore.qemu-kdump-zlib"))
    if not files:
        pytest.skip("no kdump files in the corpus")
    ix = tmp_path / "ix.duckdb"
    rc, out, err = run_cli(capsys, "fleet", "ingest", *files, "--index", str(ix), "--json")
    assert rc == 0, err
    assert json_lines(out)[0]["new"] == len(files)
    with index.connect(str(ix), read_only=True) as con:
        rows = con.execute("SELECT status, signature, format FROM dumps").fetchall()
    assert {r[0] for r in rows} == {"ok"} and len({r[1] for r in rows}) == 1
    from vmcorekit.fleet.discover import discover
    found = {os.path.basename(c.paths[0]) for c in discover([str(corpus_dir)])}
    assert not {n for n in found if n.endswith((".txt", ".time", ".stderr", ".log", ".tsv", ".md"))}, found
