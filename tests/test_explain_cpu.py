"""Lockups, stalls and interrupt context explained from the zoo's real dumps (x86_64 6.1 and
6.12, arm64 6.1): the stalled CPUs, the task and where it spun, for how long, the other CPUs'
stacks grouped; the softirq or NMI the panicking CPU was in. Skipped without the zoo."""
from __future__ import annotations

import json
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from zoo_dumps import need

from vmcorekit.kernel.irqctx import decode_preempt_count
from vmcorekit.report.triage import triage

MANIFEST = tomllib.loads((Path(__file__).parent / "zoo" / "manifest.toml").read_text())["dump"]
SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "src" / "vmcorekit" / "schemas" /
                     "triage.json").read_text())


def cases(*kinds: str) -> list[Any]:
    return [pytest.param(e, id=e["id"]) for e in MANIFEST if e["kind"] in kinds]


@lru_cache(maxsize=4)
def _triage(path: str) -> dict[str, Any]:
    return triage(path)


def report(entry: dict[str, Any]) -> dict[str, Any]:
    return _triage(need(entry))


@pytest.mark.parametrize("entry", cases("softlockup"))
def test_soft_lockup(entry: dict[str, Any]) -> None:
    r = report(entry)
    jsonschema.validate(r, SCHEMA)
    lk = r["lockup"]
    assert lk["kind"] == "soft_lockup"
    assert [s["cpu"] for s in lk["stalled"]] == entry["stalled_cpus"]
    s = lk["stalled"][0]
    stuck = entry["stuck"]
    assert (s["pid"], s["comm"]) == (stuck["pid"], stuck["comm"])
    assert s["seconds_source"] == "watchdog_touch_ts"   # from the dump, not the log
    assert stuck["seconds"] - 1 <= s["seconds"] <= stuck["seconds"] + 5
    if "error" not in s:  # one 6.12 dump lost the stack's page to makedumpfile's level 31
        assert s["where"].startswith(entry["pc_function"] + "+")
    # the watchdog's timer caught it: a hard IRQ on top of the task
    assert s["context"].startswith("task > hardirq")
    others = [c for g in lk["other_cpus"] for c in g["cpus"]]
    assert sorted(others) == sorted(set(others)) and not set(others) & set(entry["stalled_cpus"])
    assert others  # every zoo machine has two CPUs


@pytest.mark.parametrize("entry", cases("rcu_stall"))
def test_rcu_stall(entry: dict[str, Any]) -> None:
    r = report(entry)
    jsonschema.validate(r, SCHEMA)
    lk = r["lockup"]
    assert lk["kind"] == "rcu_stall"
    assert lk["rcu"]["in_progress"] and lk["rcu"]["holding_cpus"] == entry["stalled_cpus"]
    assert [s["cpu"] for s in lk["stalled"]] == entry["stalled_cpus"]
    s = lk["stalled"][0]
    # panic_on_rcu_stall fires at the first report: rcu_cpu_stall_timeout (10 s) after the
    # grace period began
    assert 9 <= s["seconds"] <= 30 and s["seconds_source"] == "rcu_state.gp_start"
    assert (s["pid"], s["comm"]) == (entry["trigger"]["pid"], entry["trigger"]["comm"])
    assert s["where"].startswith(entry["guilty"] + "+")


@pytest.mark.parametrize("entry", cases("timer_null"))
def test_timer_softirq(entry: dict[str, Any]) -> None:
    r = report(entry)
    jsonschema.validate(r, SCHEMA)
    it = r["interrupt"]
    first = it["cpus"][0]
    assert first["panic"] and first["cpu"] == entry["cpu"]
    assert "softirq" in first["levels"] and first["softirq"] == "TIMER"
    assert first["softirq_handler"] == "run_timer_softirq"
    assert "softirq TIMER" in it["summary"]
    assert "lockup" not in r


@pytest.mark.parametrize("entry", cases("nmi"))
def test_unknown_nmi(entry: dict[str, Any]) -> None:
    r = report(entry)
    first = r["interrupt"]["cpus"][0]
    # the NMI's own HARDIRQ_OFFSET is no IRQ level; an IRQ it interrupted is (nmi-2 on 6.1)
    assert first["panic"] and first["levels"][-1] == "NMI" and first["levels"].count("NMI") == 1
    pc = int(first["preempt_count"], 16)
    assert first["levels"].count("hardirq") == (pc >> 16 & 0xF) - 1
    assert first["softirq"] is None


@pytest.mark.parametrize("entry", cases("oom_user", "panic"))
def test_no_lockup_where_there_is_none(entry: dict[str, Any]) -> None:
    r = report(entry)
    assert "lockup" not in r and r["sections"]["lockup"]["ok"]
    assert r["interrupt"]["cpus"][0]["softirq"] is None


@pytest.mark.parametrize("entry", cases("softlockup")[:1])
def test_text_and_html_show_the_sections(entry: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    from vmcorekit.cli.main import main
    html = tmp_path / "r.html"
    assert main(["triage", "--html", str(html), need(entry)]) in (0, 3)
    out = capsys.readouterr().out
    assert "Lockup / stall: soft lockup" in out and "Interrupt context" in out
    assert f"CPU {entry['stuck']['cpu']} stuck for" in out
    page = html.read_text()
    assert "<h2>Lockup / stall</h2>" in page and "<h2>Interrupt context</h2>" in page


def test_preempt_count_decoding() -> None:
    # x86's inverted PREEMPT_NEED_RESCHED bit is no context
    assert decode_preempt_count(0x80010000) == {"preempt": 0, "softirq_serving": False,
                                                "bh_disabled": 0, "hardirq": 1, "nmi": 0}
    d = decode_preempt_count(0x103)  # serving a softirq, preemption off 3 deep
    assert d["softirq_serving"] and d["preempt"] == 3 and not d["hardirq"]
    d = decode_preempt_count(0x200)  # local_bh_disable(): not serving
    assert not d["softirq_serving"] and d["bh_disabled"] == 1
    d = decode_preempt_count(0x110001)
    assert d["nmi"] == 1 and d["hardirq"] == 1
