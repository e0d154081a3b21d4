"""`fleet ingest`: find dumps, hash the new files, triage the new contents, index the facts.

    discover (here)  →  hash jobs (workers)  →  triage jobs for unseen content (workers)  →  rows

Incremental: a file whose path, size and mtime the index has seen is not opened again; a file
whose content the index holds already (a copy, a renamed dump) is only recorded as another
path of that dump. A file's path is recorded in the same transaction as its dump's row, so an
ingest killed at any moment loses nothing: what was not committed is simply done again.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from . import index
from .discover import Candidate, discover
from .facts import dumps_json, path_id

BATCH_ROWS = 64
BATCH_SECONDS = 1.0

Progress = Callable[[str, int, int], None]  # (phase, done, total)


class _Writer:
    """Rows buffered and written in transactions of at most BATCH_ROWS or BATCH_SECONDS."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.files: list[tuple[str, int, int, str]] = []
        self.added = 0
        self.last = time.monotonic()

    def add(self, row: dict[str, Any] | None, files: Iterable[tuple[str, int, int, str]] = ()) -> None:
        if row is not None:
            self.rows.append(row)
        self.files.extend(files)
        if len(self.rows) >= BATCH_ROWS or time.monotonic() - self.last >= BATCH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.rows or self.files:
            self.added += index.write_batch(self.path, self.rows, self.files)
        self.rows, self.files = [], []
        self.last = time.monotonic()


def _file_rows(c: Candidate, cid: str) -> list[tuple[str, int, int, str]]:
    return [(p, s, m, cid) for p, (s, m) in zip(c.paths, c.stats)]


def _format(c: Candidate, facts: dict[str, Any]) -> str | None:
    fmt = facts.get("format")
    if c.kind == "wrapped":
        ext = os.path.splitext(c.paths[0])[1].lstrip(".") or "compressed"
        return f"{fmt or 'unknown'}+{ext}"
    if c.kind == "kdump-split":
        return "kdump-split"
    return fmt or c.kind


def _row(c: Candidate, cid: str, size: int | None, status: str, error: str | None, ans: dict[str, Any],
         hash_seconds: float | None, run: int) -> dict[str, Any]:
    facts = dict(ans.get("facts") or {})
    tri = ans.get("triage")
    facts.update(content_id=cid, path=c.path, parts=len(c.paths), size=size, format=_format(c, facts),
                 minidump=ans.get("minidump"),
                 status=status, error=error, notes=[str(n) for n in ans.get("notes") or []],
                 hash_seconds=hash_seconds, worker_seconds=ans.get("seconds"), worker_rss_kb=ans.get("rss_kb"),
                 worker=ans.get("worker"), ingested_at=time.time(), run=run,
                 triage=None if tri is None else dumps_json(tri))
    return facts


def ingest(paths: list[str], index_path: str, executor: Any, *, timeout: float = 120.0, wait: float = 10.0,
           progress: Progress | None = None, keep_minidump: str | None = None) -> dict[str, Any]:
    """`keep_minidump`: a folder where the worker that triages a dump also writes its minidump
    (`filter --level triage`), named CONTENT_ID.kdump; the row's `minidump` column says where.
    The folder is never searched for dumps."""
    t0 = time.time()
    keep = os.path.abspath(keep_minidump) if keep_minidump else None
    if keep:
        os.makedirs(keep, exist_ok=True)
    with index.locked(index_path, wait=wait):
        with index.connect(index_path, create_missing=True):
            pass
        known, ids = index.known_files(index_path)
        stats = {p: (s, m) for p, (s, m, _c) in known.items()}
        cands = discover(paths, stats)
        if keep:  # the minidumps are dumps too, but copies of ones indexed already
            cands = [c for c in cands if not any(_under(p, keep) for p in c.paths)]
        unchanged = len({known[p][2] for p in _all_files(paths) if p in known and _same(p, known[p])})
        run = index.new_run(index_path, executor.name)
        w = _Writer(index_path)
        failed = duplicates = 0
        try:
            # -- phase 1: content ids of the new files
            by_id = {i: c for i, c in enumerate(cands)}
            hashed: dict[int, dict[str, Any]] = {}
            jobs = [{"op": "hash", "paths": c.paths, "timeout": timeout, "id": i} for i, c in by_id.items()]
            if progress:
                progress("hash", 0, len(jobs))
            for n, ans in enumerate(executor.map_unordered(jobs), 1):
                hashed[ans["id"]] = ans
                if progress:
                    progress("hash", n, len(jobs))
            triage_jobs: list[dict[str, Any]] = []
            waiting: dict[str, list[Candidate]] = {}  # content id → later paths of a dump being triaged
            for i, c in by_id.items():
                ans = hashed[i]
                cid = ans.get("content_id")
                if cid is None:  # unreadable, or hung: a row per path, retried by the next run
                    status = "timeout" if ans.get("status") == "timeout" else "error"
                    w.add(_row(c, path_id(c.path), None, status, ans.get("error"), ans, ans.get("seconds"), run))
                    failed += 1
                    continue
                c.size = ans.get("size")  # type: ignore[attr-defined]
                c.hash_seconds = ans.get("seconds")  # type: ignore[attr-defined]
                if cid in ids:
                    duplicates += 1
                    w.add(None, _file_rows(c, cid))
                elif cid in waiting:
                    duplicates += 1
                    waiting[cid].append(c)
                elif c.kind is None:  # not a dump: the probe's reason is the row's
                    w.add(_row(c, cid, c.size, "error", c.problem, {}, c.hash_seconds, run),  # type: ignore[attr-defined]
                          _file_rows(c, cid))
                    ids.add(cid)
                    failed += 1
                else:
                    waiting[cid] = []
                    job = {"op": "triage", "paths": c.paths, "timeout": timeout, "id": i, "cid": cid}
                    if keep:
                        job["minidump"] = os.path.join(keep, f"{_safe_name(cid)}.kdump")
                    triage_jobs.append(job)
            w.flush()
            # -- phase 2: triage each new content once
            cid_of = {j["id"]: j["cid"] for j in triage_jobs}
            if progress:
                progress("triage", 0, len(triage_jobs))
            for n, ans in enumerate(executor.map_unordered(triage_jobs), 1):
                c, cid = by_id[ans["id"]], cid_of[ans["id"]]
                status = ans.get("status") or "error"
                if status in ("error", "timeout"):
                    failed += 1
                row = _row(c, cid, getattr(c, "size", None), status, ans.get("error"), ans,
                           getattr(c, "hash_seconds", None), run)
                files = _file_rows(c, cid) + [f for d in waiting.pop(cid, []) for f in _file_rows(d, cid)]
                w.add(row, files)
                if progress:
                    progress("triage", n, len(triage_jobs))
            w.flush()
        finally:
            try:
                w.flush()
            finally:
                secs = time.time() - t0
                index.finish_run(index_path, run, len(cands) + unchanged, w.added, failed, secs)
    secs = time.time() - t0
    return {"index": index_path, "run": run, "executor": executor.name, "seen": len(cands) + unchanged,
            "new": w.added, "failed": failed, "duplicates": duplicates, "unchanged": unchanged,
            "triaged": len(triage_jobs), "seconds": round(secs, 3),
            "dumps_per_minute": round(len(triage_jobs) / secs * 60, 1) if secs > 0 else None}


def _same(p: str, k: tuple[int, int, str]) -> bool:
    try:
        st = os.stat(p)
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == (k[0], k[1])


def _all_files(paths: Iterable[str]) -> Iterable[str]:
    for top in paths:
        if os.path.isdir(top):
            for root, _dirs, files in os.walk(top):
                for name in files:
                    yield os.path.join(root, name)
        else:
            yield top


def _under(path: str, folder: str) -> bool:
    p = os.path.abspath(path)
    return p == folder or p.startswith(folder.rstrip(os.sep) + os.sep)


def _safe_name(cid: str) -> str:
    """A content id as a file name (they are hex digests; anything else is made so)."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in cid)[:200]
