"""Titles and signatures from stored facts, and re-bucketing the whole index without opening
a dump.

Every title in the fleet index — at ingest when the triage report carries none, and in
`fleet rebucket` — comes from `retitle()`, the ONE call into the title engine
(report/titles.py: the log's first crash report, else the crashed task's stack), made the way
report/triage.py makes it.

The facts a title needs are stored per row: the crash log lines (`title_lines`), the crashed
task's frames (`stack_frames`), the kind of crash the log names (`kind`), the panic reason
(`reason`) and the architecture.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

def retitle(lines: list[str], frames: list[str], kind: str | None, reason: str | None,
            arch: str | None) -> dict[str, Any]:
    """{title, class, guilty_frame, signature, rules_version, title_source} of one dump."""
    return _by_title_rules(lines, frames, kind, reason, arch)


def _by_title_rules(lines: list[str], frames: list[str], kind: str | None, reason: str | None,
                    arch: str | None) -> dict[str, Any]:
    """The rule-based engine (report/titles.py), called as report/triage.py calls it: the
    log's first crash report, else — when there is a backtrace — a title from the panicking
    task's stack ("kernel panic in ..."), else no title."""
    from ..kernel.printk.events import text_frame
    from ..report import titles
    t = titles.title_log(lines)[0]
    if t is None:
        if not frames:
            return {"title": None, "class": kind, "guilty_frame": None, "signature": None, "rules_version": None,
                    "title_source": None}
        t = titles.stack_title("kernel panic", [text_frame(f) for f in frames], arch)
    d = t.as_dict()
    sig = d.get("signature") or {}
    return {"title": d.get("title"), "class": d.get("class") or kind, "guilty_frame": d.get("guilty_frame"),
            "signature": sig.get("id"), "rules_version": None if sig.get("rules_version") is None
            else str(sig.get("rules_version")), "title_source": d.get("title_source")}


def rebucket(index_path: str, *, dry_run: bool = False, wait: float = 10.0) -> dict[str, Any]:
    """Re-title every stored dump with the current rules; record old → new for every row in
    `rebucket_history`; return what merged and what split."""
    from . import index

    t0 = time.time()
    with index.locked(index_path, wait=wait), index.connect(index_path) as con:
        rows = con.execute(
            "SELECT content_id, signature, title, rules_version, title_lines, stack_frames, kind, reason, arch "
            "FROM dumps WHERE status IN ('ok', 'partial') ORDER BY content_id").fetchall()
        changes: list[tuple[Any, ...]] = []
        history: list[tuple[Any, ...]] = []
        old_to_new: dict[str, set[str]] = defaultdict(set)
        new_to_old: dict[str, set[str]] = defaultdict(set)
        run = (con.execute("SELECT coalesce(max(run), 0) + 1 FROM rebucket_history").fetchone() or [1])[0]
        for cid, old_sig, old_title, old_rules, lines, frames, kind, reason, arch in rows:
            new = retitle(list(lines or []), list(frames or []), kind, reason, arch)
            old_to_new[old_sig or "-"].add(new["signature"] or "-")
            new_to_old[new["signature"] or "-"].add(old_sig or "-")
            history.append((run, t0, cid, old_sig, new["signature"], old_title, new["title"], old_rules,
                            new["rules_version"]))
            if (old_sig, old_title, old_rules) != (new["signature"], new["title"], new["rules_version"]):
                g = new.get("guilty_frame") or {}
                changes.append((new["signature"], new["title"], new["class"], new["rules_version"],
                                new.get("title_source"), g.get("function"), g.get("module"),
                                None if g.get("offset") is None else str(g.get("offset")), cid))
        if not dry_run:
            con.execute("BEGIN")
            try:
                if history:
                    con.executemany("INSERT INTO rebucket_history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", history)
                if changes:
                    con.executemany(
                        "UPDATE dumps SET signature = ?, title = ?, class = ?, rules_version = ?, title_source = ?, "
                        "guilty_function = ?, guilty_module = ?, guilty_offset = ? WHERE content_id = ?", changes)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
    merged = [{"into": new, "from": sorted(olds)} for new, olds in sorted(new_to_old.items()) if len(olds) > 1]
    split = [{"from": old, "into": sorted(news)} for old, news in sorted(old_to_new.items()) if len(news) > 1]
    renamed = [{"from": next(iter(olds)), "into": new} for new, olds in sorted(new_to_old.items())
               if len(olds) == 1 and next(iter(olds)) != new and len(old_to_new[next(iter(olds))]) == 1]
    return {"run": run, "rows": len(rows), "changed": len(changes), "merged": merged, "split": split,
            "renamed": renamed, "dry_run": dry_run, "seconds": round(time.time() - t0, 3)}
