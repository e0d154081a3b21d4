"""Questions asked of the index: top, find, show, stats. Each takes an open (read-only)
connection and returns plain JSON-ready values; the CLI and the dashboard only format them.

A dump's time is its crash time, or when it was ingested when the dump does not say.
"""
from __future__ import annotations

import json
import re
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from ..errors import FleetError

T = "coalesce(crash_time, ingested_at)"
GOOD = "status IN ('ok', 'partial')"
DAY = 86400.0
_REL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$")


def parse_time(text: str | None, now: float | None = None) -> float | None:
    """'7d', '24h', '90m', '2w' (ago), a UNIX time, or an ISO date/time (UTC) → UNIX seconds."""
    if text is None or text == "":
        return None
    now = time.time() if now is None else now
    m = _REL.match(text)
    if m:
        mult = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": DAY, "w": 7 * DAY}[m.group(2)]
        return now - float(m.group(1)) * mult
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise FleetError(f"time {text!r}: expected 7d, 24h, 90m, 2w, a UNIX time or an ISO date") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dicts(cur: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def spark_days(days: int, now: float | None = None) -> list[int]:
    """The day numbers (UNIX days) of the last `days` days, oldest first."""
    today = int((time.time() if now is None else now) // DAY)
    return list(range(today - days + 1, today + 1))


def top(con: Any, since: float | None = None, limit: int = 50, days: int = 30,
        now: float | None = None) -> list[dict[str, Any]]:
    """Signatures ranked by count in the window, with first/last seen, kernels, machines and
    paths, and a per-day count of the last `days` days (the sparkline)."""
    where, args = [GOOD, "signature IS NOT NULL"], []
    if since is not None:
        where.append(f"{T} >= ?")
        args.append(since)
    rows = _dicts(con.execute(
        f"SELECT signature, mode(title) AS title, mode(class) AS class, count(*) AS count, "
        f"min({T}) AS first_seen, max({T}) AS last_seen, list(DISTINCT release ORDER BY release) AS kernels, "
        f"count(DISTINCT hostname) AS machines, count(DISTINCT path) AS paths, "
        f"mode(guilty_function) AS guilty_function, mode(guilty_module) AS guilty_module, "
        f"max(rules_version) AS rules_version "
        f"FROM dumps WHERE {' AND '.join(where)} GROUP BY signature ORDER BY count DESC, last_seen DESC, signature "
        f"LIMIT ?", [*args, limit]))
    if not rows:
        return rows
    day_list = spark_days(days, now)
    per: dict[str, Counter[int]] = {}
    sigs = [r["signature"] for r in rows]
    for sig, day, n in con.execute(
            f"SELECT signature, CAST(floor({T} / {DAY}) AS BIGINT) AS day, count(*) FROM dumps "
            f"WHERE {GOOD} AND signature IN (SELECT unnest(?)) AND {T} >= ? GROUP BY 1, 2",
            [sigs, day_list[0] * DAY]).fetchall():
        per.setdefault(sig, Counter())[int(day)] = n
    for r in rows:
        c = per.get(r["signature"], Counter())
        r["spark"] = [c[d] for d in day_list]
        r["kernels"] = [k for k in r["kernels"] or [] if k]
        r["first_seen"], r["last_seen"] = iso(r["first_seen"]), iso(r["last_seen"])
    return rows


FIND_COLUMNS = "content_id, path, signature, status, title, class, release, hostname, crash_time, error, size, format"


def find(con: Any, *, signature: str | None = None, text: str | None = None, cls: str | None = None,
         kernel: str | None = None, module: str | None = None, since: float | None = None,
         until: float | None = None, status: str | None = None, query: str | None = None,
         limit: int = 1000) -> list[dict[str, Any]]:
    """One row per dump matching every filter given. `text` matches the title (and reason,
    guilty function, explanation, error), `query` also the signature, content id, path, kernel
    and host (the dashboard's search box)."""
    where, args = ["TRUE"], []
    if signature:
        where.append("signature LIKE ? ESCAPE '\\'")
        args.append(_like_prefix(signature))
    if text:
        where.append("(title ILIKE ? ESCAPE '\\' OR reason ILIKE ? ESCAPE '\\' OR guilty_function ILIKE ? ESCAPE '\\' "
                     "OR explanation ILIKE ? ESCAPE '\\' OR error ILIKE ? ESCAPE '\\')")
        args += [_like_any(text)] * 5
    if query:
        q = _like_any(query)
        where.append("(title ILIKE ? ESCAPE '\\' OR reason ILIKE ? ESCAPE '\\' OR guilty_function ILIKE ? ESCAPE '\\' "
                     "OR error ILIKE ? ESCAPE '\\' OR path ILIKE ? ESCAPE '\\' OR release ILIKE ? ESCAPE '\\' "
                     "OR hostname ILIKE ? ESCAPE '\\' OR signature LIKE ? ESCAPE '\\' OR content_id LIKE ? ESCAPE '\\')")
        args += [q] * 7 + [_like_prefix(query.strip().lower())] * 2
    if cls:
        where.append("lower(class) = lower(?)")
        args.append(cls)
    if kernel:
        where.append("(release = ? OR build ILIKE ? ESCAPE '\\' OR build_id = ?)")
        args += [kernel, _like_any(kernel), kernel]
    if module:
        where.append("(guilty_module = ? OR list_contains(modules, ?))")
        args += [module, module]
    if since is not None:
        where.append(f"{T} >= ?")
        args.append(since)
    if until is not None:
        where.append(f"{T} < ?")
        args.append(until)
    if status:
        where.append("status = ?")
        args.append(status)
    from .index import has_column
    cols = FIND_COLUMNS + (", minidump" if has_column(con, "minidump") else ", NULL AS minidump")
    rows = _dicts(con.execute(f"SELECT {cols} FROM dumps WHERE {' AND '.join(where)} "
                              f"ORDER BY {T} DESC, path LIMIT ?", [*args, limit]))
    for r in rows:
        r["crash_time"] = iso(r["crash_time"])
    return rows


def _like_any(s: str) -> str:
    return "%" + re.sub(r"([%_\\])", r"\\\1", s) + "%"


def _like_prefix(s: str) -> str:
    return re.sub(r"([%_\\])", r"\\\1", s) + "%"


def resolve_signature(con: Any, sig: str) -> str | None:
    """A full signature from a unique prefix (None when nothing matches)."""
    found = [r[0] for r in con.execute("SELECT DISTINCT signature FROM dumps WHERE signature LIKE ? ESCAPE '\\' "
                                       "ORDER BY 1 LIMIT 2", [_like_prefix(sig)]).fetchall()]
    if len(found) > 1 and sig not in found:
        raise FleetError(f"signature {sig!r} is ambiguous: {', '.join(found)}, ...")
    return sig if sig in found else (found[0] if found else None)


def show(con: Any, sig: str, members: int = 200) -> dict[str, Any] | None:
    """One signature: summary, a per-day timeline, kernels and modules involved, its members,
    and the typical report (a member with the most common stack, the latest of those)."""
    full = resolve_signature(con, sig)
    if full is None:
        return None
    head = _dicts(con.execute(
        f"SELECT signature, mode(title) AS title, mode(class) AS class, count(*) AS count, "
        f"min({T}) AS first_seen, max({T}) AS last_seen, count(DISTINCT hostname) AS machines, "
        f"count(DISTINCT path) AS paths, mode(guilty_function) AS guilty_function, "
        f"mode(guilty_module) AS guilty_module, max(rules_version) AS rules_version "
        f"FROM dumps WHERE signature = ? GROUP BY signature", [full]))[0]
    head["first_seen"], head["last_seen"] = iso(head["first_seen"]), iso(head["last_seen"])
    head["timeline"] = [{"day": iso(d * DAY)[:10], "count": n} for d, n in con.execute(  # type: ignore[index]
        f"SELECT CAST(floor({T} / {DAY}) AS BIGINT), count(*) FROM dumps WHERE signature = ? GROUP BY 1 ORDER BY 1",
        [full]).fetchall()]
    head["kernels"] = [{"release": r, "count": n} for r, n in con.execute(
        "SELECT release, count(*) FROM dumps WHERE signature = ? GROUP BY 1 ORDER BY 2 DESC, 1", [full]).fetchall()]
    head["modules"] = [{"module": m, "count": n} for m, n in con.execute(
        "SELECT m, count(*) FROM (SELECT unnest(modules) AS m FROM dumps WHERE signature = ?) "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 50", [full]).fetchall()]
    head["guilty_modules"] = [m for (m,) in con.execute(
        "SELECT DISTINCT guilty_module FROM dumps WHERE signature = ? AND guilty_module IS NOT NULL ORDER BY 1",
        [full]).fetchall()]
    head["hosts"] = [{"hostname": h, "count": n} for h, n in con.execute(
        "SELECT hostname, count(*) FROM dumps WHERE signature = ? GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 50",
        [full]).fetchall()]
    head["members"] = find(con, signature=full, limit=members)
    stacks = con.execute(f"SELECT content_id, stack_frames, {T} FROM dumps WHERE signature = ?", [full]).fetchall()
    common = Counter(tuple(s or ()) for _, s, _ in stacks).most_common(1)[0][0]
    typical = max((r for r in stacks if tuple(r[1] or ()) == common), key=lambda r: (r[2] or 0, r[0]))[0]
    head["typical"] = report(con, typical)
    return head


def report(con: Any, cid: str) -> dict[str, Any] | None:
    """One dump's row (lists and the triage JSON included)."""
    rows = _dicts(con.execute("SELECT * FROM dumps WHERE content_id = ?", [cid]))
    if not rows:
        return None
    r = rows[0]
    r["triage"] = json.loads(r["triage"]) if r.get("triage") else None
    r["crash_time"] = iso(r["crash_time"])
    r["ingested_at"] = iso(r["ingested_at"])
    r["paths"] = [p for (p,) in con.execute("SELECT path FROM files WHERE content_id = ? ORDER BY 1", [cid]).fetchall()]
    return r


def stats(con: Any) -> dict[str, Any]:
    one = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
    by = lambda col: dict(con.execute(  # noqa: E731
        f"SELECT coalesce(CAST({col} AS VARCHAR), '-'), count(*) FROM dumps GROUP BY 1 ORDER BY 2 DESC, 1").fetchall())
    first, last = con.execute(f"SELECT min({T}), max({T}) FROM dumps WHERE {GOOD}").fetchone()
    runs = _dicts(con.execute("SELECT run, started, finished, executor, seen, new, failed, seconds FROM runs "
                              "ORDER BY run DESC LIMIT 5"))
    for r in runs:
        r["started"], r["finished"] = iso(r["started"]), iso(r["finished"])
    return {
        "dumps": one("SELECT count(*) FROM dumps"),
        "signatures": one(f"SELECT count(DISTINCT signature) FROM dumps WHERE {GOOD}"),
        "machines": one("SELECT count(DISTINCT hostname) FROM dumps"),
        "paths": one("SELECT count(*) FROM files"),
        "bytes": one("SELECT coalesce(sum(size), 0) FROM dumps"),
        "first": iso(first), "last": iso(last),
        "status": by("status"), "class": by("class"), "kernels": by("release"), "arch": by("arch"),
        "format": by("format"),
        "triage_seconds_mean": one("SELECT round(avg(worker_seconds), 3) FROM dumps WHERE status <> 'timeout'"),
        "worker_rss_kb_max": one("SELECT max(worker_rss_kb) FROM dumps"),
        "runs": runs,
        "rebucket_runs": one("SELECT count(DISTINCT run) FROM rebucket_history"),
    }
