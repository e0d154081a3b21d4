"""Crash titles as kernel developers and syzbot write them, and the bucket signature.

    t = title_log(lines)            # Title of a whole log: its first crash report
    t.title                         # "KASAN: use-after-free Read in tcp_close"
    t.signature                     # {"id": "...", "rules_version": 1}

Titles are built on the one recogniser (vmcorekit.kernel.printk.events); the families, title
templates and frames to skip are data: report/rules/titles.toml (versioned).
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..kernel.printk.events import (RULES_PATH, CrashReport, Frame, RuleSet, arch_skip_frames, default_rules,
                                    find_reports, function_name, text_frame)

__all__ = ["Title", "title_of", "title_log", "titles_of", "load_rules", "signature_of", "stack_title",
           "arch_skip_frames", "RULES_PATH", "TOP_FRAMES"]

TOP_FRAMES = 4
_FIELD = re.compile(r"\{(\w+)(?::(\w+))?\}")
CORRUPTED = "corrupted"


def load_rules() -> RuleSet:
    """The shipped rules (report/rules/titles.toml), loaded once."""
    return default_rules()


@dataclass
class Title:
    title: str | None
    alt_titles: list[str] = field(default_factory=list)
    cls: str | None = None
    guilty_frame: dict[str, Any] | None = None
    corrupted: bool = False
    signature: dict[str, Any] | None = None
    source: str = "log"          # "log" or "stack"
    report: CrashReport | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "alt_titles": list(self.alt_titles), "class": self.cls,
                "guilty_frame": self.guilty_frame, "corrupted": self.corrupted,
                "signature": self.signature, "title_source": self.source}


def _conv(value: str, how: str | None) -> str:
    if how is None:
        return value.strip()
    if how == "lower":
        return value.strip().lower()
    if how == "upper":
        return value.strip().upper()
    if how == "num":
        return re.sub(r"\d+", "NUM", value.strip())
    if how == "func":
        return function_name(value.strip())
    if how == "slug":
        return re.sub(r"\s+", "-", value.strip().lower())
    return value.strip()


def _render(template: str, fields: dict[str, str], frame: str | None) -> str | None:
    """The template with its fields filled in; None when one is missing."""
    out = []
    pos = 0
    for m in _FIELD.finditer(template):
        name, how = m.group(1), m.group(2)
        if name == "frame":
            value = frame
        elif name == "guilty":
            value = None if frame == CORRUPTED else frame
        elif name == "header":
            value = fields.get("_header")
        else:
            value = fields.get(name)
        if value is None:
            return None
        out.append(template[pos:m.start()])
        out.append(_conv(value, how))
        pos = m.end()
    out.append(template[pos:])
    return "".join(out).strip()


def _frame_name(rep: CrashReport) -> str:
    return rep.guilty.function if rep.guilty is not None else CORRUPTED


def _report_titles(rep: CrashReport) -> tuple[str | None, list[str]]:
    fields = dict(rep.fields)
    fields["_header"] = rep.header.strip()
    if rep.panic is not None:
        fields.setdefault("panic", rep.panic.strip())
    if not rep.stack:
        fields["nostack"] = ""      # lets a template say nothing about a frame when none was printed
    frame = _frame_name(rep)
    title = None
    for t in rep.title_templates:
        title = _render(t, fields, frame)
        if title is not None:
            break
    alts = []
    for t in rep.alt_templates:
        a = _render(t, fields, frame)
        if a is not None and a != title and a not in alts:
            alts.append(a)
    return title, alts


# guilty-frame sources that take the frame from the report's stack (so its context is known)
_FROM_STACK = ("stack", "stack-any", "stack-raw", "task-stack", "dispatch")


def _normalised_frames(rep: CrashReport, rules: RuleSet, top: int = TOP_FRAMES) -> list[str]:
    """The report's top frames for its signature, from the context the crash happened in: the
    interrupt (<IRQ>/<NMI>) when the guilty frame -- or, with none from the stack, the first frame
    that may name a bug -- is inside one, else the task. The other context is what happened to
    be interrupted (or what interrupted it), which differs from one occurrence to the next."""
    fam = rules.family(rep.family)

    def kept(fn: str) -> bool:
        return not (rules.skip.fullmatch(fn) or (fam is not None and fam.skip is not None and fam.skip.fullmatch(fn))
                    or any(p is not None and p.fullmatch(fn) for p in rules.arch_skip_re.values()))

    frames = [f for f in rep.stack if f.reliable and kept(f.function)]
    if rep.guilty is not None and rep.guilty_from in _FROM_STACK:
        in_irq = rep.guilty.irq
    else:
        in_irq = bool(frames) and frames[0].irq
    out: list[str] = []
    for f in frames:
        if f.irq != in_irq:
            continue
        fn = f.function
        name = fn + (f" [{f.module}]" if f.module else "")
        if name not in out:
            out.append(name)
        if len(out) == top:
            break
    return out


def signature_of(cls: str | None, guilty: str | None, frames: list[str], rules: RuleSet,
                 family: str | None = None) -> dict[str, Any]:
    """Bucket id: class + the report's family (a soft lockup and an RCU stall are both HANG but
    never one bug) + guilty function + the normalised top frames (no offsets, suffixes
    stripped), with the rules version beside it (a new version may move buckets)."""
    text = "\n".join([cls or "?", *([family] if family else []), guilty or CORRUPTED, *frames])
    return {"id": hashlib.sha256(text.encode()).hexdigest()[:16], "rules_version": rules.version,
            "frames": list(frames)}


def title_of(rep: CrashReport, rules: RuleSet | None = None) -> Title:
    """The title of one recognised report."""
    rules = rules or load_rules()
    title, alts = _report_titles(rep)
    g = rep.guilty
    gd = None if g is None else {"function": g.function, "module": g.module,
                                 "offset": None if g.offset is None else f"{g.offset:#x}"}
    sig = signature_of(rep.cls, None if g is None else g.function, _normalised_frames(rep, rules), rules,
                       family=rep.family)
    return Title(title, alts, rep.cls, gd, rep.corrupted, sig, "log", rep)


def titles_of(lines: Iterable[str | bytes], rules: RuleSet | None = None) -> list[Title]:
    """A title for every report in a log, in order."""
    rules = rules or load_rules()
    return [title_of(r, rules) for r in find_reports(lines, rules)]


def title_log(lines: Iterable[str | bytes], rules: RuleSet | None = None, *,
              keep: int = 64) -> tuple[Title | None, list[Title]]:
    """(the log's title — its first crash report's —, every report's title, at most `keep`)."""
    rules = rules or load_rules()
    first: Title | None = None
    out: list[Title] = []
    for rep in find_reports(lines, rules):
        t = title_of(rep, rules)
        if t.title is not None and (first is None or rep.start < first.report.start):
            first = t
        if len(out) < keep:
            out.append(t)
        elif rep.start < out[-1].report.start:
            out[-1] = t
        out.sort(key=lambda x: x.report.start)
    return first, out


def bug_frames(frames: Iterable[Frame | str], arch: str | None = None,
               rules: RuleSet | None = None) -> list[Frame]:
    """The frames of a backtrace that may name a bug, in order: without the reporting and
    sanitizer machinery, lock and string helpers ([skip]), the architecture's entry and
    exception code (its Platform record; every architecture's when `arch` is None) and the
    stall plumbing. Text frames ("func+0x1/0x2 [mod]") are parsed, suffixes dropped."""
    rules = rules or load_rules()
    arch_res = [p for a, p in rules.arch_skip_re.items() if p is not None and (arch is None or a == arch)]
    out: list[Frame] = []
    for f in frames:
        fr = f if isinstance(f, Frame) else text_frame(f)
        fn = fr.function
        if not fn or rules.skip.fullmatch(fn) or any(p.fullmatch(fn) for p in arch_res) \
                or (rules.stall_skip is not None and rules.stall_skip.fullmatch(fn)):
            continue
        out.append(fr)
    return out


def stack_title(kind: str | None, frames: Iterable[Frame | str], arch: str | None = None,
                rules: RuleSet | None = None) -> Title:
    """A title from a backtrace alone (a dump whose log holds no report): the first frame that
    names a bug, after the kind ("kernel panic", "BUG", ...)."""
    rules = rules or load_rules()
    kept = bug_frames(frames, arch, rules)
    guilty = kept[0] if kept else None
    names: list[str] = []
    for fr in kept:
        if fr.function not in names and len(names) < TOP_FRAMES:
            names.append(fr.function)
    k = kind or "crash"
    title = f"{k} in {guilty.function if guilty else CORRUPTED}"
    gd = None if guilty is None else {"function": guilty.function, "module": guilty.module,
                                      "offset": None if guilty.offset is None else f"{guilty.offset:#x}"}
    sig = signature_of(k, None if guilty is None else guilty.function, names, rules)
    return Title(title, [], k, gd, guilty is None, sig, "stack")
