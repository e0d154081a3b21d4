"""The one crash-report recogniser: every crash report in a kernel log, from text lines alone.

A report is what the kernel's reporting code prints when something goes wrong — an oops,
BUG, WARNING, sanitizer report (KASAN, KMSAN, KCSAN, KFENCE, UBSAN), lockdep splat, RCU stall,
hung task, soft lockup, memory leak, panic. This module finds each one in a log (several in a
row, interleaved with other output, cut off), and parses what every report shares:

    for rep in find_reports(lines):          # lines: any iterable of str or bytes
        rep.start, rep.end, rep.cls          # line range, class of bug (from the rules)
        rep.guilty                           # Frame: the function the bug is "in"
        rep.cpu, rep.pid, rep.comm, rep.taint, rep.stack, rep.modules, rep.ip

Which header lines start a report, what class it is and how to find its guilty frame are
data: a versioned rules file (`RuleSet`, compiled from the TOML the report layer ships in
`report/rules/titles.toml`; `default_rules()` loads it). The code here is only the parser
of the shapes every report shares: printk prefixes, stack frames, the CPU/PID/Comm line,
the instruction-pointer line of each architecture, "Modules linked in:".

Everything is bounded: lines are read one at a time, a line is cut at MAX_LINE_CHARS, a report
keeps its first KEEP_LINES lines (each cut at KEEP_CHARS) and MAX_FRAMES frames and closes as cut
after MAX_LINES lines, at most MAX_OPEN reports are open at once — a 2 GB log streams in
constant memory.
"""
from __future__ import annotations

import re
import tomllib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from ...arch.platform import PLATFORMS

__all__ = ["Frame", "CrashReport", "RuleSet", "Family", "find_reports", "first_report",
           "strip_prefix", "parse_frame", "text_frame", "function_name", "decode_lines", "default_rules",
           "compile_rules", "arch_skip_frames", "RULES_PATH", "ARCHES"]

MAX_LINE_CHARS = 4096
MAX_LINES = 3000       # a report longer than this is closed and marked cut
KEEP_LINES = 400       # lines of a report kept as text (facts, lock sites and variants are read there)
KEEP_CHARS = 512
MAX_FRAMES = 512       # frames kept per report: the first MAX_FRAMES - TAIL_FRAMES and the last
TAIL_FRAMES = 128
MAX_SECTIONS = 128
MAX_MODULES = 1024
IGNORED = "(ignored) "  # section prefix of frames in a part of a report that never holds the bug
MAX_OPEN = 8           # reports open at once (one per printk caller in interleaved output)
ARCHES = tuple(PLATFORMS)

# The rules ship with the report layer as data; this layer reads the file, never its code.
RULES_PATH = Path(__file__).resolve().parents[2] / "report" / "rules" / "titles.toml"


# -- one line -----------------------------------------------------------------------------------
# What precedes the message on a console/syslog/journal line: syslog "<4>", journal and syslog
# "Jan  1 00:00:00 host kernel: " or ISO stamps, printk's "[   12.345678]" (dmesg -T's
# "[Mon Jan  1 00:00:00 2024]") and the caller id "[ T1234]"/"[ C0]" (alone or after the time;
# with or without a space between).
_PREFIX = re.compile(
    r"^(?:"
    r"<\d{1,3}>"
    r"|[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ kernel: ?"
    r"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)? \S+ kernel: ?"
    r"|kernel: "
    r"|\*\* \d+ printk messages dropped \*\* ?"
    r"|\[ *\d+\.\d+\] ?"
    r"|\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\] ?"
    r"|\[ *[TC]\d+\] ?"
    r")")
_CALLER = re.compile(r"\[ *([TC]\d+)\]")


def strip_prefix(line: str) -> tuple[str, str | None]:
    """(message, caller id 'T123'/'C0' or None) of one log line in any printk/syslog form."""
    if len(line) > MAX_LINE_CHARS:
        line = line[:MAX_LINE_CHARS]
    line = line.rstrip("\r\n")
    caller = None
    for _ in range(6):
        m = _PREFIX.match(line)
        if not m:
            break
        tok = m.group(0)
        if tok[0] == "[" and ("T" in tok or "C" in tok):
            c = _CALLER.match(tok)
            if c:
                caller = c.group(1)
        line = line[m.end():]
    return line, caller


def decode_lines(data: Iterable[bytes | str]) -> Iterator[str]:
    """Text lines of a log given as byte or str lines (invalid UTF-8 becomes \\xNN escapes,
    NULs and CRs dropped)."""
    for raw in data:
        if isinstance(raw, bytes):
            if len(raw) > MAX_LINE_CHARS:
                raw = raw[:MAX_LINE_CHARS]
            raw = raw.decode("utf-8", "backslashreplace")
        if "\x00" in raw:
            raw = raw.replace("\x00", "")
        yield raw.rstrip("\r\n").replace("\r", "")


# -- frames ---------------------------------------------------------------------------------------
# One stack frame as each architecture and era prints it:
#   x86     " func+0x1a/0x40 [mod]", " ? func+0x..", " [<ffffffff81..>] func+0x..", " <IRQ>"
#   syzbot  " func+0x1a/0x40 net/ipv4/tcp.c:123", " __dump_stack lib/dump_stack.c:77 [inline]"
#   arm64   " func+0x1a/0x40 (T)"; ppc " [c0000..] [c0000..] func+0x58/0x1f0 (unreliable)"
#   s390    " ([<0000..>] func+0x../0x..)"; arm32 "[<c010e8b4>] (func) from [<..>] (caller+0x18/0x1c)"
_FRAME = re.compile(
    r"^\s*\(?\s*(?:\[<?[0-9a-fx]{4,18}>?\]\s*){0,2}(?P<q>\?\s+)?(?:\[<?[0-9a-fx]{4,18}>?\]\s*){0,2}"
    r"(?P<fn>[A-Za-z_$][\w$.]*)"
    r"(?:\+(?P<off>0x[0-9a-f]+)(?:/(?P<size>0x[0-9a-f]+))?(?:\s+\[(?P<mod>[\w\-]+)\])?"
    r"|(?P<loc>\s+[\w./\-]+\.[chS]:\d+(?::\d+)?(?:\s+\[inline\])?))"
    r"(?P<rest>.*)$")
_ARM32_FRAME = re.compile(r"^\s*\[<[0-9a-f]+>\] \((?P<fn>[A-Za-z_$][\w$.]*)(?:\+(?P<off>0x[0-9a-f]+)"
                          r"/(?P<size>0x[0-9a-f]+))?(?: \[(?P<mod>[\w\-]+)\])?\) from ")
_SUFFIX = re.compile(r"(?:\.(?:isra|constprop|part|cold|llvm|lto_priv|localalias|clone|sink)(?:\.\d+)*)+$")
_SYSCALL = re.compile(r"^(?:__(?:x64|ia32|arm64|riscv|s390x?|powerpc|x32)_(?:compat_)?sys_|__se_(?:compat_)?sys_|"
                      r"__do_(?:compat_)?sys_|SyS_|sys_|compat_SyS_|compat_sys_|__sys_|ksys_)(?P<name>\w+)$")


def function_name(raw: str) -> str:
    """A printed function name without compiler suffixes (.isra.N, .constprop.N, .part.N, .cold);
    Rust v0 symbols (_RNv...) demangled ("<rust_binder::process::Process>::update_ref")."""
    if "." in raw:
        raw = _SUFFIX.sub("", raw)
        raw = raw.split(".", 1)[0] if "." in raw and not raw.startswith(".") else raw
    if raw.startswith("_R") and len(raw) > 3:
        return rust_demangle(raw)
    return raw


# -- Rust v0 symbols ------------------------------------------------------------------------------
_RUST_BASIC = {"a": "i8", "b": "bool", "c": "char", "d": "f64", "e": "str", "f": "f32", "h": "u8",
               "i": "isize", "j": "usize", "l": "i32", "m": "u32", "n": "i128", "o": "u128", "s": "i16",
               "t": "u16", "u": "()", "v": "...", "x": "i64", "y": "u64", "z": "!", "p": "_"}


class _RustSym:
    """A reader of one Rust v0 mangled name (the subset kernel symbols use: crates, nested
    namespaces, inherent and trait impls, generic arguments of plain types, back-references)."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.depth = 0

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def take(self) -> str:
        c = self.peek()
        if not c:
            raise ValueError("truncated")
        self.i += 1
        return c

    def base62(self) -> int:
        if self.peek() == "_":
            self.i += 1
            return 0
        n = 0
        while (c := self.take()) != "_":
            n = n * 62 + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".index(c)
        return n + 1

    def disambiguator(self) -> None:
        if self.peek() == "s":
            self.i += 1
            self.base62()

    def ident(self) -> str:
        self.disambiguator()
        if self.peek() == "u":
            self.i += 1
        start = self.i
        while self.peek().isdigit():
            self.i += 1
        n = int(self.s[start:self.i])
        if self.peek() == "_":
            self.i += 1
        name = self.s[self.i:self.i + n]
        self.i += n
        return name

    def backref(self, fn: Any) -> str:
        pos = 2 + self.base62()     # a back-reference counts from just after "_R"
        if self.depth > 32:
            raise ValueError("deep")
        saved = self.i
        self.i = pos
        self.depth += 1
        try:
            return fn()
        finally:
            self.depth -= 1
            self.i = saved

    def path(self) -> str:
        c = self.take()
        if c == "C":
            return self.ident()
        if c == "N":
            ns = self.take()
            inner = self.path()
            name = self.ident()
            if ns.isupper():    # closures, shims: no name of their own
                return f"{inner}::{{{ {'C': 'closure', 'S': 'shim'}.get(ns, ns)}}}" + (f"::{name}" if name else "")
            return f"{inner}::{name}" if name else inner
        if c == "M":
            self.disambiguator()
            self.path()
            return f"<{self.type()}>"
        if c == "X":
            self.disambiguator()
            self.path()
            t = self.type()
            return f"<{t} as {self.path()}>"
        if c == "Y":
            t = self.type()
            return f"<{t} as {self.path()}>"
        if c == "I":
            base = self.path()
            args = []
            while self.peek() != "E":
                args.append(self.generic_arg())
            self.i += 1
            return f"{base}<{', '.join(a for a in args if a)}>"
        if c == "B":
            return self.backref(self.path)
        raise ValueError(f"path {c!r}")

    def generic_arg(self) -> str:
        if self.peek() == "L":
            self.i += 1
            self.base62()
            return ""
        if self.peek() == "K":
            raise ValueError("const generics")
        return self.type()

    def type(self) -> str:
        c = self.peek()
        if c in _RUST_BASIC:
            self.i += 1
            return _RUST_BASIC[c]
        if c in "RQ":
            self.i += 1
            if self.peek() == "L":
                self.i += 1
                self.base62()
            return ("&" if c == "R" else "&mut ") + self.type()
        if c in "PO":
            self.i += 1
            return ("*const " if c == "P" else "*mut ") + self.type()
        if c == "S":
            self.i += 1
            return f"[{self.type()}]"
        if c == "T":
            self.i += 1
            parts = []
            while self.peek() != "E":
                parts.append(self.type())
            self.i += 1
            return f"({', '.join(parts)})"
        if c == "B":
            self.i += 1
            return self.backref(self.type)
        if c in "CMXYNI":
            return self.path()
        raise ValueError(f"type {c!r}")


def rust_demangle(symbol: str) -> str:
    """A Rust v0 symbol (_R...) as Rust writes the path; the symbol itself when it is not one
    (or uses what this reader does not know)."""
    r = _RustSym(symbol)
    try:
        if symbol[:2] != "_R":
            return symbol
        r.i = 2
        while r.peek().isdigit():   # encoding version
            r.i += 1
        return r.path()
    except (ValueError, IndexError):
        return symbol


@dataclass(frozen=True, slots=True)
class Frame:
    function: str               # suffixes stripped
    raw: str = ""               # as printed (suffixes kept)
    offset: int | None = None
    size: int | None = None
    module: str | None = None
    reliable: bool = True       # False: printed with "? " (a stack-scan guess)
    inline: bool = False
    section: str = ""           # the label the frame was printed under ("Call Trace:", "Freed by task 1:")
    irq: bool = False           # inside <IRQ>/<NMI>/<SOFTIRQ> ... </IRQ>
    line: int = -1

    def symbolic(self) -> str:
        s = self.raw or self.function
        if self.offset is not None:
            s += f"+{self.offset:#x}" + (f"/{self.size:#x}" if self.size is not None else "")
        return s + (f" [{self.module}]" if self.module else "")

    def as_dict(self) -> dict[str, Any]:
        return {"function": self.function, "module": self.module,
                "offset": None if self.offset is None else f"{self.offset:#x}",
                "size": None if self.size is None else f"{self.size:#x}", "reliable": self.reliable}


_TEXT_FRAME = re.compile(r"\s*(\? )?([^\s+]+)(?:\+\S+)?(?: \[(\S+)\])?")


def text_frame(text: str) -> Frame:
    """A frame as a backtrace stores it in text ("? func+0x1/0x2 [mod]", "func [mod]", "func"):
    its function (suffixes dropped), module and reliability; no offset (what a title and a
    signature use of a stored frame)."""
    m = _TEXT_FRAME.match(text)
    if m is None:  # blank
        return Frame("", text)
    return Frame(function_name(m[2]), m[2], None, None, m[3], m[1] is None)


def parse_frame(text: str) -> Frame | None:
    """The frame printed on one (prefix-stripped) line, or None."""
    if "+0x" not in text and ".c:" not in text and ".h:" not in text and ".S:" not in text \
            and ") from [" not in text:
        return None
    m = _FRAME.match(text)
    if m:
        fn = m["fn"]
        rest = m["rest"]
        if m["loc"] is None and rest and not (rest[0] in " \t)" or rest.startswith(",")):
            return None
        if fn in _NOT_FUNCTIONS:
            return None
        return Frame(function_name(fn), fn, int(m["off"], 16) if m["off"] else None,
                     int(m["size"], 16) if m["size"] else None, m["mod"],
                     reliable=not m["q"] and "(unreliable)" not in rest,
                     inline=bool(m["loc"] and "[inline]" in m["loc"]))
    m = _ARM32_FRAME.match(text)
    if m:
        fn = m["fn"]
        return Frame(function_name(fn), fn, int(m["off"], 16) if m["off"] else None,
                     int(m["size"], 16) if m["size"] else None, m["mod"])
    return None


# Register names and labels that look like "name+0x.." on some lines.
_NOT_FUNCTIONS = frozenset({"RIP", "EIP", "pc", "lr", "NIP", "LR", "epc", "ra", "PC", "at", "Code",
                            "RSP", "ESP", "sp", "from", "in", "by", "address", "addr"})


# -- the instruction-pointer line of each architecture ------------------------------------------
# From the Platform records (arch/platform.py), in registry order: the first match wins.
_IP_LINES: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
    (p.name, label, re.compile(rx)) for p in PLATFORMS.values() for label, rx in p.log.ip_lines)
_ARCH_HINTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (p.name, re.compile(p.log.hint)) for p in PLATFORMS.values() if p.log.hint)

# "CPU: 0 PID: 1 Comm: x Not tainted 6.1.0 #1" and 6.12's "CPU: 0 UID: 0 PID: 1 Comm: x ...".
_CPU_LINE = re.compile(r"^CPU: (?P<cpu>\d+) (?:UID: \d+ )?PID: (?P<pid>\d+) Comm: (?P<comm>.{0,64}?) "
                       r"(?:Kdump: \S+ )?(?P<taint>Not tainted|Tainted: [A-Z ]*[A-Z])"
                       r"(?:\s+(?P<release>\S+))?")
_TAINT_LINE = re.compile(r"^\s*(?P<taint>Not tainted|Tainted: [A-Z ]*[A-Z])\s+(?P<release>\S+)")
_MODULE_TOKEN = re.compile(r"^[\w\-]+(?:\([A-Z+\-]+\))?$")
_MODULES = re.compile(r"^Modules linked in:(?P<mods>.*)$")
_IRQ_PREFIX = re.compile(r"^<(IRQ|NMI|SOFTIRQ|EOI)>\s+")
_INNER_TS = re.compile(r"^\[ *\d+\.\d+\]\s*")
_IRQ_OPEN = re.compile(r"^\s*<(?:IRQ|NMI|SOFTIRQ|EOI)>\s*$")
_IRQ_CLOSE = re.compile(r"^\s*</(?:IRQ|NMI|SOFTIRQ|EOI)>\s*$")
_SECTION_LABEL = re.compile(r"^\s*(?:[A-Za-z#\->(\[.][^\n]{0,160}:|.*\bbacktrace\b.*|-> #\d+ .*)\s*$")
_TRACE_LABEL = re.compile(r"^(?:Call [Tt]race:?|Backtrace:|stack backtrace:|backtrace(?: \(crc [0-9a-f]+\))?:|"
                          r"Call Trace \(from|"
                          r"(?:Allocated|Freed) by task|Uninit was (?:created|stored)|-> #\d)")
_AT_SITE = re.compile(r"\bat: (?:\[<[0-9a-f]+>\])?\s*([A-Za-z_$][\w$.]*)\+0x")
# Lines of another task's dump (fault injection, an allocation failure's report) printed into
# the middle of a trace: the frames after them may belong to either.
_FOREIGN = re.compile(r"^(?:FAULT_INJECTION: forcing a failure|.*\bcpuset=|.*\bmems_allowed=|"
                      r"Mem-Info:|warn_alloc: |\S+: page allocation failure)")
_NOISE = re.compile(r"^(?:\d{4}/\d\d/\d\d |executing program|syzkaller login|audit: |\*\* \d+ printk)")
_REGISTER = re.compile(r"^\s*(?:[A-Z0-9]{2,4}|[a-z]{1,2}\d{0,2}|x\d{1,2}|GPR\d\d|Krnl GPRS)\s*: ?[0-9a-f]{4,}")


# -- rules ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """A refinement of a family: when `match` is found in the report's first `within` lines,
    its title templates (and class) replace the family's."""

    match: re.Pattern[str]
    title: tuple[str, ...]
    cls: str | None
    within: int
    frames: tuple[str, ...] = ()
    skip: re.Pattern[str] | None = None     # frames this variant never names, on top of the family's


@dataclass(frozen=True)
class Family:
    id: str
    cls: str
    kind: str                       # panic, oops, bug, warning, hung_task, soft/hard_lockup, oom, rcu_stall
    start: tuple[re.Pattern[str], ...]
    title: tuple[str, ...]          # templates: {frame}, {guilty}, {header}, {field}, {field:lower|num|func|slug}
    alt: tuple[str, ...]
    frames: tuple[str, ...]         # where to look for the guilty frame, in order
    skip: re.Pattern[str] | None    # extra frames this family never names
    sections: re.Pattern[str] | None  # stack sections searched ("Call Trace:", ...)
    facts: tuple[re.Pattern[str], ...]  # regexes over the report body whose groups become fields
    variants: tuple[Variant, ...]
    attach: bool                    # follows another report (e.g. the panic line): joins it
    needs_frame: bool               # no guilty frame found -> "corrupted"
    priority: int
    fields: dict[str, str]          # fixed fields (defaults for templates)
    max_lines: int
    follows: tuple[str, ...] = ()   # families whose open report this header continues ("*": any)
    needs_stack: bool = False       # no call-trace label at all -> corrupted
    nests: bool = False             # printed in the middle of another report's stack: part of it
    # parts of the report that never hold the bug: (from, to) line regexes; frames between are
    # kept but never named (e.g. an RCU stall's dump of the grace-period kthread)
    ignore: tuple[tuple[re.Pattern[str], re.Pattern[str] | None], ...] = ()


@dataclass(frozen=True)
class RuleSet:
    version: int
    families: tuple[Family, ...]
    skip: re.Pattern[str]                       # frames no report ever names
    arch_skip: dict[str, frozenset[str]]        # per-architecture entry/exception frames
    arch_skip_re: dict[str, re.Pattern[str] | None]
    dispatchers: re.Pattern[str] | None         # callers that dispatch to the "interesting" callee
    prefilter: re.Pattern[str]
    stall_skip: re.Pattern[str] | None
    rename: dict[str, str] = field(default_factory=dict)   # variants of one API titled as one
    interrupt_entry: re.Pattern[str] | None = None          # the interrupt a stall is reported from
    stall_anchors: re.Pattern[str] | None = None            # waits that name a stall themselves
    stall_reporters: re.Pattern[str] | None = None          # the code that prints a stall
    foreign_frames: re.Pattern[str] | None = None           # frames only another kind of dump has
    triggers: re.Pattern[str] | None = None                 # literals every header line contains

    def family(self, fid: str) -> Family | None:
        return next((f for f in self.families if f.id == fid), None)


_NAME = re.compile(r"[A-Za-z_][\w$]*")


class _LazyPattern:
    """An alternation of regexes, compiled on first use. The rules hold ~140 of them (the skip
    lists run to hundreds of names: ~40 ms to compile in all) and a caller that only finds
    reports (the panic message of `sys`) never asks most. `fullmatch` (is this function one of
    them?) tests the plain names as a set and compiles only the real patterns."""

    __slots__ = ("pattern", "_re", "_names", "_rest")

    def __init__(self, patterns: list[str]) -> None:
        self.pattern = "|".join(f"(?:{p})" for p in patterns)
        self._re: re.Pattern[str] | None = None
        self._names = frozenset(p for p in patterns if _NAME.fullmatch(p))
        rest = [p for p in patterns if p not in self._names]
        # The other patterns' alternation: text until first use, then compiled; None if none.
        self._rest: str | re.Pattern[str] | None = "|".join(f"(?:{p})" for p in rest) or None

    def fullmatch(self, s: str) -> bool:
        if s in self._names:
            return True
        if isinstance(self._rest, str):
            self._rest = re.compile(self._rest)
        return self._rest is not None and self._rest.fullmatch(s) is not None

    def __getattr__(self, name: str) -> Any:  # match, search, ...: the whole alternation
        if self._re is None:
            self._re = re.compile(self.pattern)
        return getattr(self._re, name)


def _alt(patterns: Iterable[str]) -> re.Pattern[str] | None:
    pats = [p for p in patterns if p]
    return _LazyPattern(pats) if pats else None  # type: ignore[return-value]


def _list(v: Any) -> list[str]:
    if v is None:
        return []
    return [v] if isinstance(v, str) else list(v)


def compile_rules(data: dict[str, Any]) -> RuleSet:
    """A RuleSet from the rules file's parsed TOML (see report/rules/titles.toml)."""
    fams = []
    for f in data.get("family", []):
        variants = tuple(Variant(re.compile(v["match"]), tuple(_list(v.get("title"))), v.get("class"),
                                 int(v.get("within", 40)), tuple(_list(v.get("frames"))), _alt(_list(v.get("skip"))))
                         for v in f.get("variant", []))
        fams.append(Family(
            id=f["id"], cls=f.get("class", "BUG"), kind=f.get("kind", "bug"), start=tuple(re.compile(p) for p in _list(f["start"])),
            title=tuple(_list(f.get("title"))), alt=tuple(_list(f.get("alt"))),
            frames=tuple(_list(f.get("frames", ["ip", "stack"]))), skip=_alt(_list(f.get("skip"))),
            sections=_alt(_list(f.get("sections"))),
            facts=tuple(re.compile(p) for p in _list(f.get("facts"))), variants=variants,
            attach=bool(f.get("attach", False)), needs_frame=bool(f.get("needs_frame", True)),
            priority=int(f.get("priority", 0)), fields=dict(f.get("fields", {})),
            max_lines=int(f.get("max_lines", MAX_LINES)), follows=tuple(_list(f.get("follows"))),
            needs_stack=bool(f.get("needs_stack", False)), nests=bool(f.get("nests", False)),
            ignore=tuple((re.compile(g["from"]), re.compile(g["to"]) if g.get("to") else None)
                         for g in f.get("ignore", []))))
    fams.sort(key=lambda f: -f.priority)
    # Per-architecture frames come from the Platform records, not the rules file.
    arch_skip = {a: frozenset(x for x in p.log.never_guilty if re.fullmatch(r"[A-Za-z_]\w*", x))
                 for a, p in PLATFORMS.items() if p.log.never_guilty}
    arch_re = {a: _alt(p.log.never_guilty) for a, p in PLATFORMS.items() if p.log.never_guilty}
    skip = data.get("skip", {})
    pre = _alt(re.sub(r"\(\?P<\w+>", "(?:", p.pattern) for f in fams for p in f.start)
    triggers = _list(data.get("triggers"))
    for f in fams:
        for p in f.start:
            if triggers and not any(t in p.pattern for t in triggers):
                raise ValueError(f"rules: family {f.id}: start pattern {p.pattern!r} contains none of the triggers")
    return RuleSet(version=int(data.get("version", 0)), families=tuple(fams),
                   skip=_alt(_list(skip.get("frames")) + _list(skip.get("patterns"))) or re.compile("(?!)"),
                   arch_skip=arch_skip, arch_skip_re=arch_re,
                   dispatchers=_alt(_list(data.get("stall", {}).get("dispatchers"))),
                   prefilter=pre or re.compile("(?!)"),
                   stall_skip=_alt(_list(data.get("stall", {}).get("skip"))),
                   rename=dict(data.get("rename", {})),
                   interrupt_entry=_alt(_list(data.get("stall", {}).get("interrupt_entry"))),
                   stall_anchors=_alt(_list(data.get("stall", {}).get("anchors"))),
                   stall_reporters=_alt(_list(data.get("stall", {}).get("reporters"))),
                   foreign_frames=_alt(_list(data.get("foreign_frames"))),
                   triggers=re.compile("|".join(map(re.escape, triggers))) if triggers else None)


@lru_cache(maxsize=4)
def default_rules(path: str | None = None) -> RuleSet:
    """The rules file shipped with vmcorekit (or another one), compiled once."""
    with open(path or RULES_PATH, "rb") as f:
        return compile_rules(tomllib.load(f))


def arch_skip_frames(arch: str, rules: RuleSet | None = None) -> frozenset[str]:
    """Frames of one architecture that never name a bug (entry code, exception handlers): the
    exact names of its Platform record's `log.never_guilty` (the patterns among them, e.g.
    "asm_exc_.*", are in RuleSet.arch_skip_re). ARCH: a name in arch.platform.PLATFORMS."""
    rules = rules or default_rules()
    return rules.arch_skip.get(arch, frozenset())


# -- reports --------------------------------------------------------------------------------------
@dataclass
class CrashReport:
    start: int                          # first line (0-based index in the input)
    end: int                            # last line (inclusive)
    family: str
    cls: str
    header: str                         # the line that started the report (prefix stripped)
    kind: str = "bug"                   # panic, oops, bug, warning, hung_task, soft_lockup, ...
    fields: dict[str, str] = field(default_factory=dict)
    header_fields: dict[str, str] = field(default_factory=dict)  # what the header line itself says
    title_templates: tuple[str, ...] = ()
    alt_templates: tuple[str, ...] = ()
    guilty: Frame | None = None
    guilty_from: str | None = None      # "header", "ip", "stack", "lock", "dispatch"
    corrupted: bool = False
    corrupted_why: list[str] = field(default_factory=list)
    cpu: int | None = None
    pid: int | None = None
    comm: str | None = None
    taint: str | None = None
    release: str | None = None
    stack: list[Frame] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    ip: str | None = None               # "func+0x1/0x2 [mod]" from the IP line
    ip_label: str | None = None         # RIP, pc, NIP, epc, Krnl PSW, PC is at
    ip_frame: Frame | None = None
    arch: str | None = None
    error_code: str | None = None
    panic: str | None = None            # the panic message ("..." of "Kernel panic - not syncing: ...")
    panic_line: int | None = None       # its line
    caller: str | None = None
    lines: list[str] = field(default_factory=list)  # the report's lines, prefix-stripped (bounded)
    followers: list[str] = field(default_factory=list)  # headers that joined it (panic, Oops: ...)
    cut: bool = False
    interleaved_at: int | None = None   # index in `stack` of the first frame after foreign output
    frames_dropped: int = 0             # frames of a very deep stack not kept (between head and tail)

    @property
    def functions(self) -> list[str]:
        return [f.function for f in self.stack]

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "family": self.family, "class": self.cls, "kind": self.kind,
                "header": self.header, "guilty_frame": None if self.guilty is None else self.guilty.as_dict(),
                "corrupted": self.corrupted, "corrupted_why": list(self.corrupted_why),
                "cpu": self.cpu, "pid": self.pid, "comm": self.comm, "taint": self.taint,
                "ip": self.ip, "ip_label": self.ip_label, "arch": self.arch, "modules": list(self.modules),
                "stack": [f.as_dict() | {"section": f.section} for f in self.stack[:64]]}


_ERR_CODE = re.compile(r"(?:Oops|general protection fault|invalid opcode|divide error|stack segment|"
                       r"double fault)[^:]*: (?P<code>[0-9a-f]{4}) \[#\d+\]")


class _Builder:
    """One open report while its lines stream by."""

    def __init__(self, fam: Family, m: re.Match[str], idx: int, text: str, caller: str | None) -> None:
        self.fam = fam
        groups = {k: v for k, v in m.groupdict().items() if v is not None}
        self.rep = CrashReport(start=idx, end=idx, family=fam.id, cls=fam.cls, header=text.strip(),
                               kind=fam.kind, fields=dict(groups), header_fields=groups, caller=caller)
        self.rep.lines.append(text[:KEEP_CHARS])
        if "[#" in text and (e := _ERR_CODE.search(text)):
            self.rep.error_code = e["code"]
        self.section = "header"
        self.irq = False
        self.sections = 0
        self.in_modules = False
        self.has_trace_label = False
        self.last_was_frame = False
        self.tail: deque[Frame] = deque(maxlen=TAIL_FRAMES)
        self.ignoring: int | None = None
        self.in_trace = False
        self.noise_in_trace = False

    def add(self, idx: int, text: str, caller: str | None) -> None:
        rep = self.rep
        rep.end = idx
        self.last_was_frame = False
        if len(rep.lines) < KEEP_LINES:
            rep.lines.append(text[:KEEP_CHARS])
        s = text.strip()
        if not s:
            self.in_modules = False
            return
        if self.fam.ignore:
            if self.ignoring is not None:
                end = self.fam.ignore[self.ignoring][1]
                if end is not None and end.search(s):
                    self.ignoring = None
            if self.ignoring is None:
                self.ignoring = next((k for k, (a, _) in enumerate(self.fam.ignore) if a.search(s)), None)
        if s[0] == "<" and (m := _IRQ_PREFIX.match(s)):
            self.irq = m.group(1) != "EOI"
            text = s = _INNER_TS.sub("", s[m.end():]).strip()
            if not s:
                return
            text = " " + s
        fr = parse_frame(text)
        if fr is not None:
            if self.noise_in_trace:
                # other output between two frames of one trace: interleaved with another dump
                if rep.interleaved_at is None and len(rep.stack) < MAX_FRAMES:
                    rep.interleaved_at = len(rep.stack)
                self.noise_in_trace = False
            frame = Frame(fr.function, fr.raw, fr.offset, fr.size, fr.module, fr.reliable, fr.inline,
                          IGNORED + self.section if self.ignoring is not None else self.section, self.irq, idx)
            if len(rep.stack) < MAX_FRAMES - TAIL_FRAMES:
                rep.stack.append(frame)
            else:   # a runaway recursion: keep its start and its end (where it was entered)
                self.tail.append(frame)
                rep.frames_dropped += 1
            self.last_was_frame = True
            return
        if _IRQ_OPEN.match(s):
            self.irq = True
            return
        if _IRQ_CLOSE.match(s):
            self.irq = False
            return
        if s in ("<TASK>", "</TASK>"):
            return
        if rep.cpu is None and s.startswith("CPU: ") and (m := _CPU_LINE.match(s)):
            rep.cpu, rep.pid, rep.comm = int(m["cpu"]), int(m["pid"]), m["comm"].strip()
            rep.taint, rep.release = m["taint"], m["release"]
            return
        if rep.taint is None and "ainted" in s and (m := _TAINT_LINE.match(s)):
            rep.taint, rep.release = m["taint"], m["release"]
            return
        if s.startswith("Modules linked in:"):
            m = _MODULES.match(s)
            mods = [t for t in (m["mods"].split() if m else []) if _MODULE_TOKEN.match(t)]
            rep.modules = mods[:MAX_MODULES]
            self.in_modules = True
            return
        if self.in_modules and len(rep.modules) < MAX_MODULES and all(_MODULE_TOKEN.match(t) for t in s.split()):
            rep.modules.extend(s.split()[:MAX_MODULES - len(rep.modules)])
            return
        self.in_modules = False
        if rep.ip is None and not s.startswith(("RIP: 0033:", "RIP: 0023:", "RIP: 002b:")):   # user mode
            for arch, label, pat in _IP_LINES:
                if s.startswith(label) and (m := pat.match(s)):
                    rep.ip, rep.ip_label = m["where"], label
                    rep.arch = rep.arch or arch
                    if "+0x" in m["where"]:
                        fr = parse_frame(" " + m["where"])
                        if fr is not None:
                            rep.ip_frame = Frame(fr.function, fr.raw, fr.offset, fr.size, fr.module,
                                                 section="ip", line=idx)
                    return
        if rep.arch is None:
            for arch, pat in _ARCH_HINTS:
                if pat.match(text) or pat.match(s):
                    rep.arch = arch
                    break
        if rep.error_code is None and "[#" in s and (m := _ERR_CODE.search(s)):
            rep.error_code = m["code"]
        if _REGISTER.match(s):
            return
        if self.in_trace and rep.stack and rep.stack[-1].section == self.section and _FOREIGN.search(s):
            self.noise_in_trace = True
        if _TRACE_LABEL.match(s):
            self.has_trace_label = True
            self.in_trace = True
        if (s.endswith(":") or "-> #" in s or "backtrace" in s) and len(s) < 160 and _SECTION_LABEL.match(s) \
                and not _NOISE.match(s):
            if self.sections < MAX_SECTIONS:
                self.section = s[:160]
                self.sections += 1
                self.noise_in_trace = False


def _matches(rules: RuleSet, text: str) -> tuple[Family, re.Match[str]] | None:
    if rules.triggers is not None and not rules.triggers.search(text):
        return None
    s = text.strip()
    if not s or s.startswith("---[ end ") or not rules.prefilter.search(s):
        return None
    for fam in rules.families:
        for pat in fam.start:
            m = pat.search(s)
            if m:
                return fam, m
    return None


def find_reports(lines: Iterable[str | bytes], rules: RuleSet | None = None) -> Iterator[CrashReport]:
    """Every crash report in a log, each finished (guilty frame, corrupted) when it closes.

    Streams: only open reports are held. When the log carries printk caller ids ("[T123]",
    "[C0]"), output of different tasks interleaved on the console is told apart: each caller
    has its own open report (at most MAX_OPEN), so reports come out in the order they close,
    which may differ from the order they started (sort by `start` when it matters)."""
    rules = rules or default_rules()
    open_: dict[str | None, _Builder] = {}
    last: _Builder | None = None
    for idx, raw in enumerate(decode_lines(lines)):
        text, caller = strip_prefix(raw)
        cur = open_.get(caller)
        hit = _matches(rules, text)
        if hit is not None:
            fam, m = hit
            if cur is None and caller is not None and last is not None and last.rep.caller is None:
                cur = last      # a log whose first lines had no caller ids
            if cur is not None and fam.attach and idx - cur.rep.end <= 200:
                cur.add(idx, text, caller)
                _follow(cur.rep, text)
                if fam.id == "panic" and cur.rep.panic is None:
                    cur.rep.panic = m.groupdict().get("msg") or text.strip()
                    cur.rep.panic_line = idx
                last = cur
                continue
            if cur is not None and fam.nests and cur.last_was_frame:
                cur.add(idx, text, caller)
                last = cur
                continue
            if cur is not None and _continues(cur, fam, text):
                cur.add(idx, text, caller)
                _follow(cur.rep, text)
                last = cur
                continue
            if cur is not None:
                del open_[cur.rep.caller]
                yield _finish(cur, rules)
            if len(open_) >= MAX_OPEN:
                oldest = min(open_.values(), key=lambda b: b.rep.end)
                del open_[oldest.rep.caller]
                yield _finish(oldest, rules)
            cur = _Builder(fam, m, idx, text, caller)
            open_[caller] = cur
            if fam.id == "panic":
                cur.rep.panic = m.groupdict().get("msg") or text.strip()
                cur.rep.panic_line = idx
            last = cur
            continue
        if cur is None:
            # A caller with no report of its own (an NMI backtrace printed by another CPU, a
            # line without caller id): it belongs to the report printed last.
            cur = last
            if cur is None or open_.get(cur.rep.caller) is not cur:
                continue
            if caller is not None and cur.rep.caller is not None and caller != cur.rep.caller \
                    and caller[0] == cur.rep.caller[0] == "T":
                # another task's output in the middle of the report
                continue
        cur.add(idx, text, caller)
        last = cur
        st = text.strip()
        if st.startswith("---[ end ") or idx - cur.rep.start >= cur.fam.max_lines:
            if idx - cur.rep.start >= cur.fam.max_lines:
                cur.rep.cut = True
            open_.pop(cur.rep.caller, None)
            yield _finish(cur, rules)
            if last is cur:
                last = None
    for b in sorted(open_.values(), key=lambda b: b.rep.start):
        yield _finish(b, rules)


# Headers that belong to the report already open (x86 prints "BUG: unable to handle ..." then
# "Oops: ..."; a GPF after "KASAN: null-ptr-deref"): a second header before any stack frame of
# the open report continues it.
def _continues(cur: _Builder, fam: Family, text: str) -> bool:
    rep = cur.rep
    if rep.stack or cur.has_trace_label:
        return False
    return (rep.family in fam.follows or "*" in fam.follows) and rep.end - rep.start < 30


def _follow(rep: CrashReport, text: str) -> None:
    if len(rep.followers) < 16:
        rep.followers.append(text.strip()[:KEEP_CHARS])


def first_report(lines: Iterable[str | bytes], rules: RuleSet | None = None) -> CrashReport | None:
    for rep in find_reports(lines, rules):
        return rep
    return None


# -- the guilty frame -------------------------------------------------------------------------------
def _skipped(rules: RuleSet, fam: Family, arch_res: list[re.Pattern[str]], fn: str) -> bool:
    if rules.skip.fullmatch(fn):
        return True
    if fam.skip is not None and fam.skip.fullmatch(fn):
        return True
    return any(p.fullmatch(fn) for p in arch_res)


def _finish(b: _Builder, rules: RuleSet) -> CrashReport:
    rep, fam = b.rep, b.fam
    if b.tail:
        rep.frames_dropped -= len(b.tail)
        rep.stack.extend(b.tail)
        b.tail.clear()
    # Entry and exception frames of every architecture: their names never collide, and the
    # architecture a log came from is not always certain.
    arch_res = [p for p in rules.arch_skip_re.values() if p is not None]
    # facts and variants
    body = rep.lines[:200]
    for pat in fam.facts:
        for ln in body:
            m = pat.search(ln)
            if m:
                for k, v in m.groupdict().items():
                    if v is not None and k not in rep.fields:
                        rep.fields[k] = v
                break
    for k, v in fam.fields.items():
        rep.fields.setdefault(k, v)
    sources, var_skip = _variant(rep, fam)
    _pick_guilty(rep, fam, rules, arch_res, sources, var_skip, b.has_trace_label)
    _settle(rep, fam, rules)
    return rep


def _settle(rep: CrashReport, fam: Family, rules: RuleSet) -> None:
    """The guilty frame's canonical name, and the report's corruption verdict."""
    if rep.guilty is not None and rep.guilty.function in rules.rename:
        g = rep.guilty
        rep.guilty = Frame(rules.rename[g.function], g.raw, g.offset, g.size, g.module, g.reliable, g.inline,
                           g.section, g.irq, g.line)
    if rep.guilty is None and fam.needs_frame and not rep.corrupted:
        rep.corrupted = True
        rep.corrupted_why.append("no guilty frame" if rep.stack else "no stack")
    if rep.cut:
        rep.corrupted = True
        rep.corrupted_why.append("cut")


# "\t0-...0: (1 GPs behind) idle=..." — one line per stalled CPU in an RCU stall report (the
# flags are O/o/N and a digit or '!' across kernel versions; expedited stalls list "{ 0-...D }").
_RCU_STALLED_CPU = re.compile(r"^(?:rcu:)?\s*(?:\{\s*)?(\d{1,5})-[O.][o.][N.][\w.!]?(?::|\s|\})")
_RCU_EXPEDITED = re.compile(r"(\d{1,5})-[O.][o.][N.][\w.!]?")


def stalled_cpus(rep: CrashReport) -> list[int]:
    """The CPUs a stall or lockup report says are stuck: an RCU stall's per-CPU lines, a lockup's
    CPU# (bounded: at most 4096 CPUs, the report's kept lines)."""
    out: list[int] = []
    if rep.kind in ("soft_lockup", "hard_lockup"):
        cpu = rep.fields.get("cpu")
        return [int(cpu)] if cpu is not None and cpu.isdigit() else []
    if rep.kind != "rcu_stall":
        return out
    for ln in rep.lines:
        m = _RCU_STALLED_CPU.match(ln)
        found = [m.group(1)] if m else []
        if not found and "expedited" in rep.header and "{" in ln:
            found = _RCU_EXPEDITED.findall(ln)
        for c in found:
            if int(c) not in out and len(out) < 4096:
                out.append(int(c))
    return out


def restacked(rep: CrashReport, frames: Sequence[Frame], rules: RuleSet | None = None, *,
              section: str | None = "dump") -> CrashReport | None:
    """`rep` read again with `frames` as its stack: the stuck CPU's backtrace taken from a dump,
    for a stall whose log holds no stack of that CPU (arm64 cannot NMI-backtrace another CPU: its
    RCU stall report prints only the detecting CPU's interrupt). The report's lines, fields and
    family stay; its guilty frame is chosen by the family's rules over the new stack. None when
    the family is unknown to `rules`. `section` labels the new frames (None: each keeps its own,
    for the report's own stack with some frames renamed)."""
    rules = rules or default_rules()
    fam = rules.family(rep.family)
    if fam is None:
        return None
    stack = [f if section is None else replace(f, section=section, line=-1) for f in frames[:MAX_FRAMES]]
    new = replace(rep, stack=stack,
                  fields=dict(rep.fields), guilty=None, guilty_from=None, ip=None, ip_frame=None,
                  interleaved_at=None, corrupted=False, corrupted_why=[], frames_dropped=0)
    arch_res = [p for p in rules.arch_skip_re.values() if p is not None]
    sources, var_skip = _variant(new, fam)
    _pick_guilty(new, fam, rules, arch_res, sources, var_skip, True)
    _settle(new, fam, rules)
    return new


def _variant(rep: CrashReport, fam: Family) -> tuple[tuple[str, ...], re.Pattern[str] | None]:
    """Apply the family's variant the report's lines match (title, class, fields); return
    its frame sources and extra skips."""
    titles, cls, sources = fam.title, fam.cls, fam.frames
    var_skip: re.Pattern[str] | None = None
    for var in fam.variants:
        hit = None
        for ln in rep.lines[:var.within]:
            hit = var.match.search(ln)
            if hit:
                break
        if hit:
            titles = var.title or titles
            cls = var.cls or cls
            sources = var.frames or sources
            var_skip = var.skip
            for k, v in hit.groupdict().items():
                if v is not None:
                    rep.fields[k] = v
            break
    rep.cls = cls
    rep.title_templates = titles
    rep.alt_templates = fam.alt

    return sources, var_skip


def _pick_guilty(rep: CrashReport, fam: Family, rules: RuleSet, arch_res: list[re.Pattern[str]],
                 sources: tuple[str, ...], var_skip: re.Pattern[str] | None, has_trace_label: bool) -> None:
    """The guilty frame of `rep` from its stack, by the family's sources in order; marks the
    report corrupted when the stack cannot name one."""
    def ok(fn: str) -> bool:
        return not _skipped(rules, fam, arch_res, fn) and not (var_skip is not None and var_skip.fullmatch(fn))

    stack = [f for f in rep.stack if (fam.sections is None or fam.sections.search(f.section))
             and not f.section.startswith(IGNORED)]
    for src in sources:
        got: Frame | None = None
        if src in ("header", "header-any") or src.startswith("field:"):
            raw = rep.fields.get("fn" if src.startswith("header") else src[6:])
            if raw:
                fr = parse_frame(" " + raw) if "+0x" in raw else None
                name = fr.raw if fr else raw.strip("()[],:")
                name = re.sub(r"\+0x.*$", "", name)
                if re.fullmatch(r"[A-Za-z_$][\w$.]*", name) and (src == "header-any" or ok(function_name(name))):
                    got = fr or Frame(function_name(name), name, section="header", line=rep.start)
        elif src in ("ip", "ip-any"):
            if rep.ip_frame is not None and (src == "ip-any" or ok(rep.ip_frame.function)):
                got = rep.ip_frame
        elif src in ("stack", "stack-any"):
            for f in stack:
                if (f.reliable or src == "stack-any") and ok(f.function):
                    got = f
                    break
        elif src == "stack-raw":    # the innermost reliable frame, whatever it is
            got = next((f for f in stack if f.reliable), None)
        elif src == "task-stack":   # frames outside interrupt context
            for f in stack:
                if f.reliable and not f.irq and ok(f.function):
                    got = f
                    break
        elif src == "dispatch":
            got = _dispatch_frame(rules, fam, arch_res, stack, rep.ip_frame)
        elif src.startswith(("after:", "after1:")):
            # the lock site ("at: func+0x..") on the line matching the regex or those after it;
            # after1: only that line and the next
            span = 2 if src.startswith("after1:") else 12
            pat = re.compile(src.split(":", 1)[1])
            for i, ln in enumerate(rep.lines[:400]):
                if pat.search(ln):
                    for k, nxt in enumerate(rep.lines[i:i + span]):
                        m = _AT_SITE.search(nxt)
                        name = m.group(1) if m else None
                        if name is None and k == 1 and ln.rstrip().endswith("at:"):
                            fr = parse_frame(nxt)
                            name = fr.raw if fr is not None else None
                        if name and ok(function_name(name)):
                            got = Frame(function_name(name), name, section="lock")
                            break
                    break
        if got is not None:
            rep.guilty, rep.guilty_from = got, src
            break
    if rules.foreign_frames is not None:
        for i, f in enumerate(rep.stack):
            if f.reliable and rules.foreign_frames.fullmatch(f.function) and fam.id not in ("oom",):
                if rep.interleaved_at is None or i < rep.interleaved_at:
                    rep.interleaved_at = i
                break
    if rep.guilty is not None and rep.interleaved_at is not None and rep.guilty_from in (
            "stack", "stack-any", "task-stack") and rep.guilty.line >= rep.stack[
            min(rep.interleaved_at, len(rep.stack) - 1)].line:
        rep.guilty = None
        rep.corrupted = True
        rep.corrupted_why.append("interleaved")
    if fam.needs_stack and not has_trace_label and not any(
            f.reliable and not _skipped(rules, fam, arch_res, f.function) for f in rep.stack):
        rep.guilty = None
        rep.corrupted = True
        rep.corrupted_why.append("no call trace")


def _dispatch_frame(rules: RuleSet, fam: Family, arch_res: list[re.Pattern[str]],
                    stack: list[Frame], ip: Frame | None = None) -> Frame | None:
    """A stall's guilty frame: the function a generic dispatcher (syscall entry, ioctl, sendmsg,
    a timer, a work item, the network receive path) handed control to, nearest the stall; else
    the syscall the task was in. Frames inside the interrupt that reported the stall are skipped."""
    frames: list[Frame] = []
    if rules.interrupt_entry is not None:
        # The interrupt that reported the stall: what it interrupted is the stalled code.
        for i, f in enumerate(stack):
            if rules.interrupt_entry.fullmatch(f.function):
                if rules.stall_reporters is not None and \
                        not any(rules.stall_reporters.fullmatch(g.function) for g in stack[:i]):
                    break
                j = i
                while j + 1 < len(stack) and rules.interrupt_entry.fullmatch(stack[j + 1].function):
                    j += 1
                frames = [g for g in stack[j + 1:] if g.reliable and g.section == f.section]
                break
    if not frames:
        frames = [f for f in stack if f.reliable and not (rules.stall_reporters is not None
                                                          and rules.stall_reporters.fullmatch(f.function))]
    if not frames:
        return None
    if rules.stall_anchors is not None:
        for f in ([ip] if ip is not None else []) + frames:
            if rules.stall_anchors.fullmatch(f.function):
                return f
    best: Frame | None = None
    syscall: Frame | None = None
    # outermost first
    for i in range(len(frames) - 1, 0, -1):
        caller, callee = frames[i], frames[i - 1]
        if syscall is None and (m := _SYSCALL.match(caller.function)) and not _SYSCALL.match(callee.function):
            # the syscall by its name (sys_futex); a compat entry point is its own (compat_SyS_mount)
            name = caller.function if "compat" in caller.function else "sys_" + m["name"]
            syscall = Frame(name, caller.raw, section=caller.section, line=caller.line)
        if rules.dispatchers is not None and rules.dispatchers.fullmatch(caller.function) \
                and not _SYSCALL.match(callee.function) \
                and not _skipped(rules, fam, arch_res, callee.function) \
                and not (rules.stall_reporters is not None and rules.stall_reporters.fullmatch(callee.function)) \
                and not (rules.stall_skip is not None and rules.stall_skip.fullmatch(callee.function)):
            best = callee
    if best is not None:
        return best
    if syscall is not None:
        return syscall
    for f in frames:
        if not _skipped(rules, fam, arch_res, f.function) and \
                not (rules.stall_skip is not None and rules.stall_skip.fullmatch(f.function)):
            return f
    return None
