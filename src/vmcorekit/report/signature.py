"""A signature from a panic reason and a backtrace alone: the normalized reason plus the top
frames that may name a bug (report/titles.py's one frame filter), without addresses, offsets,
KASLR or timestamps. Triage buckets by the title engine's signature (class + guilty function +
frames, with the rules version); this one serves when there is neither a recognised report
nor a backtrace to title."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .logscan import normalize_reason
from .titles import bug_frames

TOP_FRAMES = 5


@dataclass(frozen=True)
class Signature:
    id: str
    reason: str
    frames: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "reason": self.reason, "frames": list(self.frames)}


def crash_signature(reason: str | None, frames: list[str], top: int = TOP_FRAMES) -> Signature:
    norm = normalize_reason(reason or "unknown")
    funcs: list[str] = []
    for fr in bug_frames(frames):
        fn = f"{fr.function} [{fr.module}]" if fr.module else fr.function
        if fn in funcs:
            continue
        funcs.append(fn)
        if len(funcs) == top:
            break
    text = norm + "\n" + "\n".join(funcs)
    return Signature(hashlib.sha256(text.encode()).hexdigest()[:16], norm, tuple(funcs))
