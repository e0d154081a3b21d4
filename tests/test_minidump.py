"""`vmcorekit filter --level triage DUMP OUT`: a minidump answers triage, dmesg, ps, bt and mod
exactly as the dump it was made from (file facts aside), is small, and is the same bytes from
the same input."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from vmcorekit.cli.main import main
from vmcorekit.dump import open_dump
from vmcorekit.dump.recording import RecordingMemory
from vmcorekit.errors import MemoryReadError

from conftest import SAMPLES, decompressed_elf

ZOO = Path(os.environ.get("VMCOREKIT_ZOO_DUMPS", "/work/scratch/zoo/dumps"))
SAMPLE = SAMPLES / "x86_64-6.1.0-56-amd64-qmp-c-d31.kdump"
ARM64 = SAMPLES / "arm64" / "vmcore.elf.zst"

# The questions a minidump answers, as command lines (the dump's path is appended).
QUESTIONS = [["triage", "--json"], ["dmesg"], ["dmesg", "--json"], ["ps"], ["ps", "--json"], ["bt"],
             ["bt", "-a"], ["bt", "-a", "--json"], ["bt", "--all-tasks"], ["bt", "-f"], ["mod", "--json"]]
# Facts of the file, not of the crash: they differ between a dump and its minidump.
FILE_FACTS = ("dump",)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _no_timings(o: Any) -> Any:
    if isinstance(o, dict):
        return {k: _no_timings(v) for k, v in o.items() if k != "seconds"}
    if isinstance(o, list):
        return [_no_timings(v) for v in o]
    return o


def answers(capsys: pytest.CaptureFixture[str], dump: Path) -> dict[str, tuple[int, Any]]:
    out: dict[str, tuple[int, Any]] = {}
    for q in QUESTIONS:
        rc, text, _ = run(capsys, *q, str(dump))
        if q == ["triage", "--json"]:
            d = json.loads(text)
            for k in FILE_FACTS:
                d.pop(k, None)
                d["sections"].pop(k, None)
            text = _no_timings(d)
        out[" ".join(q)] = (rc, text)
    return out


def make(capsys: pytest.CaptureFixture[str], src: Path, out: Path, *extra: str) -> Path:
    rc, _, err = run(capsys, "filter", "--level", "triage", *extra, str(src), str(out))
    assert rc == 0, err
    return out


def assert_same_answers(capsys: pytest.CaptureFixture[str], src: Path, mini: Path) -> None:
    want, got = answers(capsys, src), answers(capsys, mini)
    for q in want:
        assert got[q] == want[q], f"`{q}` differs on the minidump of {src}"


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sample_mini(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SAMPLE.exists():
        pytest.skip("sample dump absent")
    out = tmp_path_factory.mktemp("mini") / "sample.kdump"
    assert main(["filter", "--level", "triage", str(SAMPLE), str(out)]) == 0
    return out


def test_sample_minidump_answers_as_the_dump(sample_mini: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_same_answers(capsys, SAMPLE, sample_mini)


def test_sample_minidump_is_small_and_valid(sample_mini: Path, capsys: pytest.CaptureFixture[str]) -> None:
    size = sample_mini.stat().st_size
    # The floor is the kernel's own tables every question reads whole (kallsyms, BTF, ORC):
    # ~3 600 of the sample's 18 800 stored pages.
    assert size < 4.5 * 2**20, size
    assert size < SAMPLE.stat().st_size / 3
    rc, text, _ = run(capsys, "info", "--json", str(sample_mini))
    info = json.loads(text)
    assert rc == 0 and info["format"].startswith("kdump") and info["dump_level"] == 31
    rc, text, err = run(capsys, "verify", str(sample_mini))
    assert rc == 0, text + err  # bitmaps, descriptors, every page decompresses, notes, VMCOREINFO
    with open_dump(str(sample_mini)) as mini, open_dump(str(SAMPLE)) as orig:
        assert mini.vmcoreinfo_raw == orig.vmcoreinfo_raw
        assert [n.desc for n in mini.notes_named("CORE", 1)] == [n.desc for n in orig.notes_named("CORE", 1)]
        assert mini.ranges() == orig.ranges()  # holes stay holes; unkept pages read as excluded


def test_minidump_is_reproducible(sample_mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    again = make(capsys, SAMPLE, tmp_path / "again.kdump")
    assert sha256(again) == sha256(sample_mini)


def test_minidump_refuses_existing_output_and_the_input(sample_mini: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "taken.kdump"
    out.write_bytes(b"keep me")
    rc, _, err = run(capsys, "filter", "--level", "triage", str(SAMPLE), str(out))
    assert rc == 1 and "File exists" in err and out.read_bytes() == b"keep me"
    make(capsys, SAMPLE, out, "-f")
    assert sha256(out) == sha256(sample_mini)
    copy = tmp_path / "in.kdump"
    shutil.copyfile(SAMPLE, copy)
    before = sha256(copy)
    rc, _, err = run(capsys, "filter", "--level", "triage", "-f", str(copy), str(copy))
    assert rc != 0 and sha256(copy) == before
    rc, _, err = run(capsys, "filter", "--level", "triage", "-d", "31", str(SAMPLE), str(tmp_path / "x"))
    assert rc == 2 and not (tmp_path / "x").exists()


def test_minidump_json_and_codec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not SAMPLE.exists():
        pytest.skip("sample dump absent")
    rc, text, err = run(capsys, "filter", "--level", "triage", "-z", "--json", str(SAMPLE), str(tmp_path / "z.kdump"))
    assert rc == 0, err
    d = json.loads(text)
    import jsonschema
    from importlib.resources import files
    jsonschema.validate(d, json.loads(files("vmcorekit").joinpath("schemas/filter.json").read_text()))
    assert d["level"] == "triage" and d["dumped_pages"] == d["recorded_pages"] > 0
    assert d["written_bytes"] == (tmp_path / "z.kdump").stat().st_size
    rc, text, _ = run(capsys, "info", "--json", str(tmp_path / "z.kdump"))
    assert json.loads(text)["codec"] == "zstd"
    rc, text, _ = run(capsys, "triage", "--json", str(tmp_path / "z.kdump"))
    assert rc == 0 and json.loads(text)["crash"]["title"]


def test_recording_view_records_what_was_read_and_where_reads_stopped() -> None:
    if not SAMPLE.exists():
        pytest.skip("sample dump absent")
    with open_dump(str(SAMPLE)) as inner:
        rec = RecordingMemory(inner)
        ps = inner.page_size
        present = next(r for r in inner.ranges() if r.size > 4 * ps)
        rec.read(present.start + ps - 8, 16)  # two frames
        assert rec.read_pfns().tolist() == [present.start // ps, present.start // ps + 1]
        # a read running into a page the dump does not hold records the readable frames before it
        hole_end = inner.ranges()[0].end
        with pytest.raises(MemoryReadError):
            rec.read(hole_end - 2 * ps, 3 * ps)
        got = rec.read_pfns().tolist()
        assert hole_end // ps - 2 in got and hole_end // ps not in got


# Why a page is missing is a fact of the file: a cut dump's page lies beyond the end of the
# file, the minidump's copy of it has an empty descriptor. Which page, and that it is missing,
# are the same.
MISSING_WHY = re.compile(r"page data (at file offset 0x[0-9a-f]+ \(\+\d+\) is beyond the end of the file"
                         r"|was never written \([^)]*\))")


def test_cut_input_gives_a_minidump_or_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not SAMPLE.exists():
        pytest.skip("sample dump absent")
    data = SAMPLE.read_bytes()
    for frac in (0.9, 0.4, 0.001):
        cut = tmp_path / f"cut{frac}.kdump"
        cut.write_bytes(data[:int(len(data) * frac)])
        out = tmp_path / f"mini{frac}.kdump"
        rc, _, err = run(capsys, "filter", "--level", "triage", str(cut), str(out))
        if rc == 0:
            # the same answers, gaps included: each page a question stopped at is missing there too
            want = MISSING_WHY.sub("page data missing", json.dumps(answers(capsys, cut)))
            got = MISSING_WHY.sub("page data missing", json.dumps(answers(capsys, out)))
            assert got == want
        else:
            lines = [ln for ln in err.splitlines() if ln.startswith("vmcorekit: error:")]
            assert rc == 1 and len(lines) == 1 and not out.exists(), err
    assert (tmp_path / "mini0.9.kdump").exists()  # a dump cut near its end still has most answers


def test_arm64_minidump_answers_as_the_dump(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not ARM64.exists():
        pytest.skip("arm64 sample absent")
    mini = make(capsys, ARM64, tmp_path / "arm64.kdump")
    assert_same_answers(capsys, ARM64, mini)


@pytest.mark.corpus
@pytest.mark.parametrize("form", ["kdump", "elf"])
def test_corpus_minidump_answers_as_the_dump(corpus_case: Path, form: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    if form == "elf" and corpus_case.name != "qmp-kaslr":
        pytest.skip("one ELF case is enough: the others are the same machines")
    src = corpus_case / "vmcore.c-d31.kdump" if form == "kdump" else decompressed_elf(corpus_case)
    mini = make(capsys, src, tmp_path / "mini.kdump")
    assert mini.stat().st_size < src.stat().st_size / 2
    assert_same_answers(capsys, src, mini)


def _zoo_cases() -> list[Path]:
    picks = [("x86_64-6.1.0-57-amd64", "null-1"), ("x86_64-6.12.118+deb12-amd64", "hung_chain-1"),
             ("arm64-6.1.0-57-arm64", "oom_user-1")]
    out = []
    for kind, case in picks:
        d = ZOO / kind / case
        for name in ("vmcore.c-d31.kdump", "dump.elf.zst"):
            if (d / name).exists():
                out.append(d / name)
                break
    return out


@pytest.mark.parametrize("index", range(3))
def test_zoo_minidump_answers_as_the_dump(index: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = _zoo_cases()
    if index >= len(cases):
        pytest.skip(f"zoo dumps absent ({ZOO})")
    src = cases[index]
    mini = make(capsys, src, tmp_path / "mini.kdump")
    assert_same_answers(capsys, src, mini)


# -- fleet ingest --keep-minidump ---------------------------------------------------------------

def _fleet_env() -> dict[str, str]:
    e = dict(os.environ)
    src = str(Path(__file__).resolve().parent.parent / "src")
    e["PYTHONPATH"] = src + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def keep_minidump_fleet(root: Path) -> Path:
    """Two dumps (the sample and a distinct copy) and a cut one, with the minidump folder
    inside the searched folder (it must not be ingested itself)."""
    from test_fleet import variant
    variant(root / "a" / "vmcore.kdump", 11)
    variant(root / "b" / "vmcore", 12)
    data = SAMPLE.read_bytes()
    (root / "c").mkdir()
    (root / "c" / "vmcore.kdump").write_bytes(data[:len(data) // 1000])  # not even its headers
    return root


def check_kept(root: Path, ix: Path, keep: Path, summary: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    from vmcorekit.fleet import index
    assert summary["new"] == 3 and summary["failed"] == 1, summary
    with index.connect(str(ix), read_only=True) as con:
        rows = con.execute("SELECT content_id, path, status, minidump, signature FROM dumps ORDER BY path").fetchall()
    kept = {cid: (path, md, sig) for cid, path, status, md, sig in rows if status in ("ok", "partial")}
    assert len(kept) == 2 and all(md for _, md, _ in kept.values())
    assert sorted(p.name for p in keep.iterdir()) == sorted(f"{cid}.kdump" for cid in kept)
    for cid, (path, md, sig) in kept.items():
        assert Path(md) == keep / f"{cid}.kdump"
        rc, text, _ = run(capsys, "triage", "--json", md)
        assert json.loads(text)["signature"]["id"] == sig
    # `fleet show` names each member's minidump
    sig = next(iter(kept.values()))[2]
    rc, text, err = run(capsys, "fleet", "show", sig, "--index", str(ix), "--json")
    assert rc == 0, err
    members = json.loads(text.splitlines()[0])["members"]
    assert {m["minidump"] for m in members} == {md for _, md, _ in kept.values()}
    rc, text, _ = run(capsys, "fleet", "show", sig, "--index", str(ix))
    assert "MINIDUMP" in text and str(keep) in text


def test_fleet_ingest_keeps_a_minidump_per_dump(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("duckdb")
    if not SAMPLE.exists():
        pytest.skip("sample dump absent")
    import subprocess
    import sys
    root = keep_minidump_fleet(tmp_path / "fleet")
    keep, ix = root / "minidumps", tmp_path / "ix.duckdb"
    cmd = [sys.executable, "-m", "vmcorekit", "fleet", "ingest", str(root), "--index", str(ix), "--workers", "2",
           "--keep-minidump", str(keep), "--json"]
    r = subprocess.run(cmd, env=_fleet_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    check_kept(root, ix, keep, json.loads(r.stdout), capsys)
    # again: nothing new, and the minidumps in the searched folder are not dumps to ingest
    r = subprocess.run(cmd, env=_fleet_env(), capture_output=True, text=True, timeout=600)
    again = json.loads(r.stdout)
    assert r.returncode == 0 and again["new"] == 0 and again["seen"] == 3, again


def test_makedumpfile_reads_the_minidumps_log(sample_mini: Path, tmp_path: Path) -> None:
    """Another reader: makedumpfile walks the page tables even for the kernel image, so the
    minidump keeps the table entries mapping what was read."""
    import subprocess
    mdf = shutil.which("makedumpfile")
    if mdf is None:
        pytest.skip("makedumpfile not installed")
    logs = []
    for src in (SAMPLE, sample_mini):
        out = tmp_path / f"{src.name}.dmesg"
        r = subprocess.run([mdf, "--dump-dmesg", str(src), str(out)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        logs.append(out.read_bytes())
    assert logs[0] == logs[1] and len(logs[0]) > 1000
