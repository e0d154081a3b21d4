"""The process that reads dumps: `python -m vmcorekit.fleet.child`.

One request per line on stdin (JSON: {"op": "hash"|"triage", "paths": [...]}, and "minidump":
FILE to also write the dump's minidump there), one answer per line on the original stdout; whatever else the readers print goes to /dev/null. It imports the
readers once, says `{"ready": true}`, then serves requests until stdin closes. The parent
(worker.py) kills it when a request outlives its timeout. It exits by itself when its parent
goes away (even one killed with SIGKILL), so no reader outlives an ingest.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from typing import Any


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def _rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _rss_now_kb() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return _rss_kb()


def handle(req: dict[str, Any]) -> dict[str, Any]:
    from ..errors import VmcorekitError
    from .facts import content_id, facts_from_triage, one_line

    paths = [str(p) for p in req["paths"]]
    t = time.perf_counter()
    if req.get("op") == "hash":
        try:
            cid, size = content_id(paths)
        except OSError as e:
            return {"error": one_line(e), "seconds": round(time.perf_counter() - t, 4)}
        return {"content_id": cid, "size": size, "seconds": round(time.perf_counter() - t, 4)}

    import warnings

    from ..errors import PartialResultWarning, collecting_notes
    from ..report.triage import triage
    from .rebucket import retitle

    with warnings.catch_warnings(record=True) as caught, collecting_notes() as notes:
        warnings.simplefilter("always")
        try:
            tri = triage(",".join(paths))
        except (VmcorekitError, OSError, ValueError, LookupError, EOFError, ArithmeticError) as e:
            return {"status": "error", "error": one_line(e), "seconds": round(time.perf_counter() - t, 4),
                    "rss_kb": _rss_kb()}
        except Exception as e:  # a reader's bug must not stop the fleet: the row says which
            return {"status": "error", "error": f"internal error: {type(e).__name__}: {one_line(e)}",
                    "seconds": round(time.perf_counter() - t, 4), "rss_kb": _rss_kb()}
    facts = facts_from_triage(tri)
    facts["kind"] = (tri.get("crash") or {}).get("kind") if isinstance(tri.get("crash"), dict) else None
    if not facts.get("signature") or not facts.get("title"):
        # A report from before titles: title it from the stored facts, as rebucket will.
        new = retitle(facts["title_lines"], facts["stack_frames"], facts["kind"], facts["reason"], facts["arch"])
        g = new.get("guilty_frame") or {}
        facts.update(title=facts.get("title") or new["title"], signature=facts.get("signature") or new["signature"],
                     rules_version=facts.get("rules_version") or new["rules_version"],
                     title_source=facts.get("title_source") or new["title_source"],
                     guilty_function=facts.get("guilty_function") or g.get("function"),
                     guilty_module=facts.get("guilty_module") or g.get("module"))
        facts["class"] = facts.get("class") or new["class"]
    elif not facts.get("rules_version"):
        facts["rules_version"] = "triage"
    partial = [str(w.message) for w in caught if issubclass(w.category, PartialResultWarning)]
    status = "partial" if facts["failed_sections"] or partial else "ok"
    said = list(notes)
    kept = _minidump(paths, req["minidump"], said) if req.get("minidump") else None
    return {"status": status, "error": "; ".join(partial[:3]) or None, "facts": facts, "triage": tri,
            "notes": said, "minidump": kept, "seconds": round(time.perf_counter() - t, 4), "rss_kb": _rss_kb()}


def _minidump(paths: list[str], target: str, notes: list[str]) -> str | None:
    """`filter --level triage` of the dump into `target` (named by the dump's content: one
    already there is this dump's, from an earlier run); None, with a note, when it cannot be
    written."""
    from ..errors import VmcorekitError
    from ..minidump import write_minidump
    from .facts import one_line
    if os.path.isfile(target):
        return target
    try:
        write_minidump(paths, target)
    except (VmcorekitError, OSError, ValueError, LookupError, EOFError, ArithmeticError) as e:
        notes.append(f"minidump not kept: {one_line(e)}")
        return None
    return target


def main() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    proto = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    # the readers, imported before saying ready (the first dump then costs no import time)
    from ..report import triage
    from . import facts
    del triage, facts

    def send(obj: dict[str, Any]) -> None:
        proto.write(json.dumps(obj, default=str, separators=(",", ":")).encode() + b"\n")
        proto.flush()

    send({"ready": True, "pid": os.getpid()})
    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
            res = handle(req)
        except Exception as e:  # a malformed request: answer, do not die
            res = {"status": "error", "error": f"internal error: {type(e).__name__}: {' '.join(str(e).split())}"}
        res["rss_now_kb"] = _rss_now_kb()
        send(res)


if __name__ == "__main__":
    main()
