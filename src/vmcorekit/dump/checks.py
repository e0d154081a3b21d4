"""The report every format's self-checks fill in for `verify` (and `info --ranges`), and the
helpers they share. Nothing here knows a file format: each format's file (or its checks module)
registers its checks with its DumpFormat, and dump/integrity.py runs them.

Bad pages are grouped into runs of consecutive *dumped* pages with the same state and reason:
a run [start, end) may enclose pages that were excluded by filtering (never in the dump), and
`pages` counts only the dumped pages in it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .base import PageState, PhysicalMemory

# Page states as small ints in numpy arrays.
GOOD, ZERO, EXCLUDED, MISSING, CORRUPT = 0, 1, 2, 3, 4
STATE_NAMES = {GOOD: "good", ZERO: "zero", EXCLUDED: "excluded", MISSING: "missing", CORRUPT: "corrupt"}

# A PhysicalMemory with no format-specific checks is probed page by page: cap the work.
GENERIC_PAGE_LIMIT = 1 << 22

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass(frozen=True)
class BadRange:
    """A run of dumped pages that cannot be read. `start`/`end` are physical addresses; pages
    counts the dumped pages inside (excluded pages in between are not in the dump at all)."""

    state: str  # "missing" or "corrupt"
    start: int
    end: int
    pages: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "start": self.start, "end": self.end, "pages": self.pages,
                "reason": self.reason}


@dataclass
class Check:
    name: str
    ok: bool | None  # None: not run (not applicable, or skipped by --quick)
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": "skip" if self.ok is None else "ok" if self.ok else "fail",
                "detail": self.detail}


@dataclass
class VerifyReport:
    path: str
    format: str
    page_size: int
    pages: dict[str, int] = field(default_factory=lambda: {n: 0 for n in STATE_NAMES.values()})
    bad_ranges: list[BadRange] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # inconsistencies: the dump is damaged
    notes: list[str] = field(default_factory=list)  # observations that do not make it damaged
    bytes_read: int = 0
    seconds: float = 0.0
    data_checked: bool = True

    @property
    def ok(self) -> bool:
        """True when nothing is missing, corrupt or inconsistent."""
        return not (self.problems or self.pages["missing"] or self.pages["corrupt"]
                    or any(c.ok is False for c in self.checks))

    def check(self, name: str, ok: bool | None, detail: str = "") -> None:
        self.checks.append(Check(name, ok, detail))

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "page_size": self.page_size, "ok": self.ok,
                "data_checked": self.data_checked, "pages": dict(self.pages),
                "bad_ranges": [r.to_json() for r in self.bad_ranges],
                "checks": [c.to_json() for c in self.checks], "problems": list(self.problems),
                "notes": list(self.notes), "bytes_read": self.bytes_read, "seconds": round(self.seconds, 3)}


# -- run-length grouping -------------------------------------------------------------------------
def runs_of(pfns: np.ndarray, codes: np.ndarray, index: np.ndarray | None = None
            ) -> list[tuple[int, int, int, int]]:
    """(first pfn, last pfn + 1, count, code) for each run of equal codes among the bad pages
    `pfns` (sorted). `index` gives each page's position among the dumped pages (its descriptor
    number): a run also ends where a good dumped page comes between two bad ones. Without it,
    pfns must be consecutive to share a run."""
    if len(pfns) == 0:
        return []
    pos = pfns if index is None else index
    brk = np.flatnonzero((codes[1:] != codes[:-1]) | (pos[1:] != pos[:-1] + 1)) + 1
    starts = np.concatenate([[0], brk])
    ends = np.concatenate([brk, [len(pfns)]])
    return [(int(pfns[s]), int(pfns[e - 1]) + 1, int(e - s), int(codes[s])) for s, e in zip(starts, ends)]


class Reasons:
    """Reason texts for bad pages, numbered so that runs can be grouped by reason."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.state: list[int] = []
        self._ids: dict[tuple[int, str], int] = {}

    def code(self, state: int, text: str) -> int:
        key = (state, text)
        c = self._ids.get(key)
        if c is None:
            c = self._ids[key] = len(self.text)
            self.text.append(text)
            self.state.append(state)
        return c


def add_runs(rep: VerifyReport, pfns: np.ndarray, codes: np.ndarray, reasons: Reasons, ps: int,
             index: np.ndarray | None = None) -> None:
    for a, b, n, c in runs_of(pfns, codes, index):
        rep.bad_ranges.append(BadRange(STATE_NAMES[reasons.state[c]], a * ps, b * ps, n, reasons.text[c]))


class Done:
    """A result computed in this thread, with a future's result() (which re-raises)."""

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error

    @classmethod
    def of(cls, fn: Callable[..., Any], *args: Any) -> "Done":
        try:
            return cls(fn(*args))
        except Exception as e:  # handed to result(), as a future would
            return cls(error=e)

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def count_notes(rep: VerifyReport, phys: PhysicalMemory) -> None:
    """The notes check of a format whose reader already walked its note area."""
    rep.check("notes", True, f"{len(phys.notes)} notes")


def check_generic(rep: VerifyReport, phys: PhysicalMemory, read_data: bool = True, threads: int = 1,
                  progress: Progress | None = None) -> None:
    """A PhysicalMemory of no registered format: ask page_state() page by page (capped)."""
    ps = phys.page_size
    budget = GENERIC_PAGE_LIMIT
    states = {PageState.PRESENT: GOOD, PageState.ZERO: ZERO, PageState.EXCLUDED: EXCLUDED,
              PageState.MISSING: MISSING, PageState.CORRUPT: CORRUPT}
    pf: list[int] = []
    cd: list[int] = []
    reasons = Reasons()
    for r in phys.ranges():
        for pfn in range(r.start // ps, -(-r.end // ps)):
            st = states.get(phys.page_state(pfn))
            budget -= 1
            if st is None:
                continue
            rep.pages[STATE_NAMES[st]] += 1
            if st >= MISSING:
                pf.append(pfn)
                cd.append(reasons.code(st, STATE_NAMES[st]))
            if budget <= 0:
                rep.notes.append(f"stopped after {GENERIC_PAGE_LIMIT} pages")
                break
    add_runs(rep, np.array(pf, dtype=np.int64), np.array(cd, dtype=np.int32), reasons, ps)
    count_notes(rep, phys)
