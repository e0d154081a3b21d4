"""The crash zoo (tests/zoo/manifest.toml): triage names every real failure the way kernel
developers do, finds the panicking task, and buckets crashes: the two boots of one bug share a
signature, different bugs never do. The expected values come from each guest's console log
(tools/zoo/manifest.py), never from vmcorekit."""
from __future__ import annotations

import collections
from typing import Any

import pytest

from zoo_dumps import dump_path, entries, triaged

IDS = [e["id"] for e in entries()]


@pytest.mark.parametrize("e", entries(), ids=IDS)
def test_triage_names_the_crash(e: dict[str, Any]) -> None:
    r = triaged(e)
    cr = r["crash"]
    assert cr["title"] == e["title"]
    assert not cr.get("title_corrupted")
    # the task the console's report header named: the panicking one; for an RCU stall, the
    # stalled CPU's (another CPU detected the stall and panicked)
    if e["kind"] == "rcu_stall" and cr["cpu"] != e["cpu"]:
        held = {(c, g["trace"]["pid"], g["trace"]["comm"]) for g in r["other_cpus"] if "trace" in g
                for c in g["cpus"]}
        assert (e["cpu"], e["pid"], e["comm"]) in held
    else:
        assert (cr["cpu"], cr["pid"], cr["comm"]) == (e["cpu"], e["pid"], e["comm"])
    assert r["kernel"]["release"] == e["kernel_release"]


def _signatures() -> dict[str, str]:
    out = {}
    for e in entries():
        if dump_path(e) is not None:
            out[e["id"]] = triaged(e)["crash"]["signature"]["id"]
    if len(out) < 2:
        pytest.skip("fewer than two zoo dumps on this machine")
    return out


def test_boots_of_one_bug_share_a_signature() -> None:
    sigs = _signatures()
    by_bug: dict[tuple[str, str, str], set[str]] = collections.defaultdict(set)
    for e in entries():
        if e["id"] in sigs:
            by_bug[(e["arch"], e["kernel_release"], e["bug"])].add(sigs[e["id"]])
    split = {k: v for k, v in by_bug.items() if len(v) > 1}
    assert not split
    assert sum(len(v) for v in by_bug.values()) == len(by_bug)


def test_different_bugs_never_share_a_signature() -> None:
    sigs = _signatures()
    bugs: dict[str, set[str]] = collections.defaultdict(set)
    for e in entries():
        if e["id"] in sigs:
            bugs[sigs[e["id"]]].add(e["bug"])
    shared = {s: b for s, b in bugs.items() if len(b) > 1}
    assert not shared
