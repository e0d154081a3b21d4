"""The crash zoo's dumps for tests: tests/zoo/manifest.toml lists one [[dump]] per dump.

Each entry's dump is the minidump shipped in the repository (`minidump`, a path under
tests/zoo/) when present; with VMCOREKIT_ZOO_FULL=1, the full dump the generator made (`dump`,
outside the repository) when that exists. Entries with neither are skipped by the tests."""
from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "tests" / "zoo" / "manifest.toml"


@lru_cache(maxsize=1)
def entries() -> tuple[dict[str, Any], ...]:
    with open(MANIFEST, "rb") as f:
        return tuple(tomllib.load(f)["dump"])


def dump_path(e: dict[str, Any]) -> Path | None:
    """The dump a test reads for entry `e`, or None when it is not on this machine."""
    if os.environ.get("VMCOREKIT_ZOO_FULL") == "1" and os.path.exists(e["dump"]):
        return Path(e["dump"])
    mini = e.get("minidump")
    if mini and (REPO / mini).is_file():
        return REPO / mini
    return None


def need(e: dict[str, Any]) -> str:
    """Entry `e`'s dump on this machine (dump_path), or skip the test."""
    import pytest
    p = dump_path(e)
    if p is None:
        pytest.skip(f"zoo dump absent: {e['id']}")
    return str(p)


def of_kind(*kinds: str) -> list[dict[str, Any]]:
    return [e for e in entries() if e["kind"] in kinds]


_triaged: dict[str, dict[str, Any]] = {}


def triaged(e: dict[str, Any]) -> dict[str, Any]:
    """triage's JSON report of entry `e`'s dump (made once per test session)."""
    from vmcorekit.report.triage import triage
    if e["id"] not in _triaged:
        _triaged[e["id"]] = triage(need(e))
    return _triaged[e["id"]]
