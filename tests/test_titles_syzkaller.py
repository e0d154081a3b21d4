"""Crash titles on 373 real console logs with known titles (syzkaller's report test data, see
../shared/reports/README.md): the title must equal TITLE or one of its ALT lines, and a log
with no TITLE must get no title. Prints the score per family (pytest -s); the floor sits a
little under what the rules achieve, so a rules change that loses titles fails here."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from vmcorekit.report.titles import load_rules, title_log

REPO = Path(__file__).resolve().parent.parent


def _reports() -> Path:
    """$VMCOREKIT_REPORTS, else shared/reports beside the repository (or beside its worktree
    folder: /work/wt/NAME -> /work/shared)."""
    if os.environ.get("VMCOREKIT_REPORTS"):
        return Path(os.environ["VMCOREKIT_REPORTS"]) / "syzkaller-linux"
    for base in (REPO.parent, REPO.parent.parent):
        if (base / "shared" / "reports" / "syzkaller-linux").is_dir():
            return base / "shared" / "reports" / "syzkaller-linux"
    return REPO.parent / "shared" / "reports" / "syzkaller-linux"


REPORTS = _reports()
FLOOR = 0.94          # share of logs titled right (TITLE or an ALT); the rules reach 95.2 % (339/356)
NO_TITLE_FLOOR = 1.0  # share of no-crash logs left without a title


def parse(path: Path) -> tuple[dict[str, list[str]], bytes]:
    """(header fields, each a list of values; the log bytes after the blank line)."""
    data = path.read_bytes()
    head, _, body = data.partition(b"\n\n")
    fields: dict[str, list[str]] = {}
    for line in head.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), []).append(value.strip())
    return fields, body


def family_of(title: str | None) -> str:
    if not title:
        return "(no crash)"
    return title.split(" in ")[0] if " in " in title else title[:40]


@pytest.mark.skipif(not REPORTS.is_dir(), reason=f"{REPORTS} not found (set VMCOREKIT_REPORTS)")
def test_titles_match_syzkaller() -> None:
    rules = load_rules()
    files = sorted(p for p in REPORTS.iterdir() if p.is_file() and p.name != "README.md")
    total: Counter[str] = Counter()
    good: Counter[str] = Counter()
    misses: list[str] = []
    for path in files:
        fields, body = parse(path)
        want = (fields.get("TITLE") or [""])[0] or None
        alts = fields.get("ALT", [])
        first, _ = title_log(body.splitlines(), rules)
        got = first.title if first is not None else None
        fam = family_of(want)
        total[fam] += 1
        if got == want or (want is not None and got in alts):
            good[fam] += 1
        else:
            misses.append(f"{path.name}: want {want!r} got {got!r}")
    titled = sum(v for k, v in total.items() if k != "(no crash)")
    titled_ok = sum(v for k, v in good.items() if k != "(no crash)")
    lines = [f"syzkaller titles: {titled_ok}/{titled} = {titled_ok / titled:.1%} "
             f"(no-crash logs untitled: {good['(no crash)']}/{total['(no crash)']}), rules v{rules.version}"]
    lines += [f"  {good[k]:3}/{total[k]:3}  {k}" for k in sorted(total, key=lambda k: (-total[k], k))]
    summary = "\n".join(lines)
    print(summary)
    print("misses:\n  " + "\n  ".join(misses))
    assert titled_ok / titled >= FLOOR, summary
    if total["(no crash)"]:
        assert good["(no crash)"] / total["(no crash)"] >= NO_TITLE_FLOOR, summary + "\n" + "\n".join(misses)
