"""The content id of a dump and the facts the index keeps from its triage report.

Content id: SHA-256 over the whole content, streamed (hashlib.file_digest). Full hashing was
chosen over size + sampled blocks because it costs little beside triage (~450 MB/s with the
SHA extensions; a 2 GiB dump ≈ 5 s, run on the worker that reads the dump anyway) and a
sampled hash would call two dumps that differ in one unsampled page the same dump. A split
set's id is the SHA-256 of its parts' ids in path order.

The triage dict is read defensively (`.get` everywhere): the new fields (`title`, `class`,
`guilty_frame`, `signature.rules_version`, `title_source`) are preferred when present, the
older ones (`crash.reason`, `crash.kind`, `signature.frames`) used otherwise.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

HASH = "sha256"
# Events whose explanation a row keeps (the log scanner's kinds).
EXPLAINED = ("hung_task", "soft_lockup", "hard_lockup", "oom", "rcu_stall")
MAX_TITLE_LINES = 200
_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def file_id(path: str) -> tuple[str, int]:
    """(SHA-256 hex of the file's content, its size), streamed."""
    with open(path, "rb") as f:
        h = hashlib.file_digest(f, HASH)
        return h.hexdigest(), f.tell()


def content_id(paths: list[str]) -> tuple[str, int]:
    """The id of one dump: its file's hash, or for a split set the hash of its parts' hashes."""
    if len(paths) == 1:
        return file_id(paths[0])
    ids, total = [], 0
    for p in paths:
        i, n = file_id(p)
        ids.append(i)
        total += n
    return hashlib.sha256("\n".join(ids).encode()).hexdigest(), total


def path_id(path: str) -> str:
    """A stable stand-in id for a dump whose content could not be read (so a re-run finds the
    row and adds nothing)."""
    return "path-" + hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:58]


def one_line(e: BaseException | str) -> str:
    return " ".join(str(e).split()) or (type(e).__name__ if isinstance(e, BaseException) else "")


def clean(text: Any) -> str:
    """Text from a dump made safe for a terminal: control characters shown escaped (`\\x1b`)."""
    s = "" if text is None else str(text)
    return _CTRL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), s)


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _int(v: Any) -> int | None:
    try:
        return None if v is None or isinstance(v, bool) else int(v, 0) if isinstance(v, str) else int(v)
    except (TypeError, ValueError):
        return None


def _float(v: Any) -> float | None:
    try:
        return None if v is None or isinstance(v, bool) else float(v)
    except (TypeError, ValueError):
        return None


def stack_frames(tri: dict[str, Any]) -> list[str]:
    """The crashed task's frames as the kernel prints them (`func+0x16/0x20 [mod]`, `? ` before
    a frame the unwinder only guessed), else the log's call trace."""
    frames = []
    for f in _d(tri.get("backtrace")).get("frames") or []:
        if not isinstance(f, dict) or not (f.get("symbolic") or f.get("function")):
            continue
        text = str(f.get("symbolic") or f.get("function"))
        if f.get("module") and f"[{f['module']}]" not in text:
            text += f" [{f['module']}]"
        frames.append(("? " if f.get("reliable") is False else "") + text)
    if not frames:
        frames = [str(f) for f in _d(tri.get("crash")).get("log_call_trace") or []]
    return frames


def title_lines(tri: dict[str, Any]) -> list[str]:
    """The log lines a title is made from: the report's own crash lines when it gives them,
    else the lines of its recognised events and the log's tail."""
    crash = _d(tri.get("crash"))
    for key in ("report_lines", "lines"):
        lines = crash.get(key)
        if isinstance(lines, list) and lines:
            return [str(x) for x in lines][:MAX_TITLE_LINES]
    out: list[str] = []
    for r in _d(tri.get("log")).get("tail") or []:
        text = r.get("text") if isinstance(r, dict) else r
        if text is not None:
            out.extend(str(text).split("\n"))
    if not out:
        for e in tri.get("events") or []:
            out.extend(str(x) for x in _d(e).get("lines") or [])
    return out[-MAX_TITLE_LINES:]


def explanation(tri: dict[str, Any]) -> str | None:
    """The hung-task / lockup / OOM / RCU-stall explanation when the report has one."""
    for key in ("explanation", "why"):
        v = tri.get(key)
        if isinstance(v, str) and v:
            return v
        if isinstance(v, dict) and (v.get("summary") or v.get("text")):
            return str(v.get("summary") or v.get("text"))
    for e in tri.get("events") or []:
        e = _d(e)
        if e.get("kind") in EXPLAINED:
            return str(e.get("summary") or e.get("kind"))
    return None


def facts_from_triage(tri: dict[str, Any]) -> dict[str, Any]:
    """The columns of one indexed dump, from its triage report (content id, path, status and
    timings are the caller's). The title fields are read where the report puts them — `crash`
    (title, class, guilty_frame, signature {id, rules_version}, title_source) or the top
    level — and the older top-level `signature` {id, frames} is the fallback."""
    dump, kern, crash = _d(tri.get("dump")), _d(tri.get("kernel")), _d(tri.get("crash"))
    taint = _d(tri.get("taint"))

    def new(key: str) -> Any:
        v = crash.get(key)
        return v if v is not None else tri.get(key)

    # A report made with the title engine says so (crash.title present, even when None: no
    # title); only an older report's top-level signature stands in for the bucket.
    titled = "title" in crash or "title" in tri or "title" in _d(tri.get("sections"))
    sig = _d(crash.get("signature") if "signature" in crash and titled else
             tri.get("signature") if not titled or "id" in _d(tri.get("signature")) and "rules_version" in
             _d(tri.get("signature")) else None)
    guilty = _d(new("guilty_frame"))
    mods = [m.get("name") if isinstance(m, dict) else m for m in tri.get("modules") or []]
    cls = new("class") or crash.get("kind")
    title = new("title")
    failed = sorted(n for n, s in _d(tri.get("sections")).items() if not _d(s).get("ok"))
    return {
        "format": dump.get("format"),
        "arch": dump.get("arch") or kern.get("machine"),
        "release": kern.get("release"),
        "build": kern.get("version"),
        "build_id": kern.get("build_id"),
        "hostname": kern.get("nodename"),
        "crash_time": _float(kern.get("crash_time")),
        "uptime": _float(kern.get("uptime_seconds")),
        "title": None if title is None else str(title),
        "class": None if cls is None else str(cls),
        "title_source": new("title_source"),
        "guilty_function": guilty.get("function"),
        "guilty_module": guilty.get("module"),
        "guilty_offset": None if guilty.get("offset") is None else str(guilty.get("offset")),
        "signature": sig.get("id"),
        "rules_version": None if sig.get("rules_version") is None else str(sig.get("rules_version")),
        "reason": crash.get("reason"),
        "panic_cpu": _int(crash.get("cpu") if crash.get("cpu") is not None else kern.get("panic_cpu")),
        "panic_pid": _int(crash.get("pid") if crash.get("pid") is not None else kern.get("panic_pid")),
        "panic_comm": crash.get("comm") or kern.get("panic_comm"),
        "taint_mask": _int(taint.get("mask") if taint else kern.get("tainted_mask")),
        "taint": taint.get("text") if taint else None,
        "modules": [str(m) for m in mods if m],
        "explanation": explanation(tri),
        "title_lines": title_lines(tri),
        "stack_frames": stack_frames(tri),
        "failed_sections": failed,
        "triage_seconds": _float(tri.get("seconds")),
    }


def strip_timings(tri: Any) -> Any:
    """A triage dict without its timings (for comparing two runs of one dump)."""
    if isinstance(tri, dict):
        return {k: strip_timings(v) for k, v in tri.items() if k != "seconds"}
    if isinstance(tri, list):
        return [strip_timings(v) for v in tri]
    return tri


def dumps_json(obj: Any) -> str:
    return json.dumps(obj, default=str, separators=(",", ":"))
