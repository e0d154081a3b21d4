"""What every command shares: opening dumps, number parsing, output helpers."""
from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from ..errors import PARTIAL_SAID, current_notes
from ..program import Program


def split_dump_arg(dump: str | tuple[str, ...]) -> list[str]:
    """DUMP is one file, or the files of a makedumpfile --split set joined by commas."""
    parts = [dump] if isinstance(dump, str) else list(dump)
    out = [p for part in parts for p in part.split(",") if p]
    for p in out:
        if not os.path.exists(p):
            raise click.BadParameter(f"{p}: no such file", param_hint="DUMP")
        if os.path.isdir(p):
            raise click.BadParameter(f"{p}: is a directory, expected a dump file", param_hint="DUMP")
    return out


def dump_arguments(f: Any) -> Any:
    """DUMP (FILE, or FILE1,FILE2,... for a split set) plus --vmcoreinfo FILE for dumps whose
    note is missing or damaged."""
    f = click.option("--vmcoreinfo", "vmcoreinfo_file", type=click.Path(exists=True, dir_okay=False),
                     help="Use this VMCOREINFO text instead of the dump's note.")(f)
    f = click.argument("dump", metavar="DUMP")(f)
    return f


def open_program(dump: str | tuple[str, ...], vmcoreinfo_file: str | None) -> Program:
    """The dump as a Program, for `with open_program(...) as prog:`. Inside a `crash` session
    the session's Program, opened once, is lent instead: leaving the block does not close it."""
    if _session is not None:
        return _Lent(_session.prog)  # type: ignore[return-value]
    return Program.open(split_dump_arg(dump), vmcoreinfo=vmcoreinfo_file)


def parse_address(text: str) -> int:
    """Hex (with or without 0x) — kernel addresses are always written in hex."""
    t = text.strip().lower()
    try:
        return int(t[2:] if t.startswith("0x") else t, 16)
    except ValueError:
        raise click.BadParameter(f"expected a hexadecimal address, got {text!r}") from None


def resolve_address(prog: Program, text: str) -> int:
    """A hex address or a symbol name."""
    try:
        return parse_address(text)
    except click.BadParameter:
        return prog.symbol_address(text)


def hex_address(v: Any) -> Any:
    """An address as JSON carries it: "0x..." (a decimal above 2**53 is corrupted by jq 1.6 and
    JavaScript); None and already-converted strings pass through. A negative value is a
    64-bit machine word read as signed (arm64's syscallno -1): written as the word."""
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v & 0xFFFF_FFFF_FFFF_FFFF:#x}" if v < 0 else f"{v:#x}"
    return v


def json_convention(obj: Any, addresses: frozenset[str] | set[str] = frozenset(),
                    renames: dict[str, str] | None = None, opaque: frozenset[str] | set[str] = frozenset()) -> Any:
    """Apply vmcorekit's one JSON convention (README "JSON output") to a command's answer:
    integers under a key in `addresses` become "0x..." strings (every integer inside, when
    the key holds a list or an object, e.g. a register set); keys in `renames` get their one
    name (`size` -> `size_bytes`, `kerneloffset` -> `kaslr_offset`); objects under a key in
    `opaque` (a struct's member values, a note's raw tables) are left as they are."""
    renames = renames or {}

    def conv(o: Any, as_address: bool) -> Any:
        if isinstance(o, dict):
            out = {}
            for k, v in o.items():
                if k in opaque:
                    out[renames.get(k, k)] = v
                    continue
                out[renames.get(k, k)] = conv(v, as_address or k in addresses)
            return out
        if isinstance(o, (list, tuple)):
            return [conv(v, as_address) for v in o]
        return hex_address(o) if as_address else o

    return conv(obj, False)


def meminfo_json(d: dict[str, Any]) -> dict[str, Any]:
    """A memory summary (kernel.meminfo's as_dict: counts of pages) in bytes, the unit in the
    key: total_bytes = pages * page_size, as `kmem -i --json` and triage's memory.summary."""
    ps = d["page_size"]
    out: dict[str, Any] = {"page_size": ps}
    for k, v in (d.get("pages") or {}).items():
        out[f"{k}_bytes"] = None if v is None else v * ps
    out["notes"] = d.get("notes", [])
    return out


BT_ADDRESSES = frozenset({"task", "pc", "sp", "slot", "address", "regs", "user_regs"})


def bt_json(d: dict[str, Any]) -> dict[str, Any]:
    """`bt --json` in the convention: task, pc, sp, stack slots and registers as "0x..."."""
    return json_convention(d, BT_ADDRESSES, {"size": "size_bytes"})  # type: ignore[no-any-return]


def ps_json(d: dict[str, Any]) -> dict[str, Any]:
    """`ps --json` in the convention: VSZ and RSS in bytes (the text shows KiB; the kernel
    counts pages), the warnings in `notes`."""
    ps = d["page_size"]

    def task(t: dict[str, Any]) -> dict[str, Any]:
        t = dict(t)
        rss = t.pop("rss", None) or {}
        t["vsz_bytes"] = t.pop("vsz", 0) * ps
        t["rss_bytes"] = rss.get("crash", 0) * ps  # what crash's RSS column counts
        t["rss"] = {f"{'swap' if k == 'swapents' else k}_bytes": v * ps for k, v in rss.items() if k != "crash"}
        return json_convention(t, {"task", "mm"})  # type: ignore[no-any-return]

    total = d.get("totalram_pages")
    return {"page_size": ps, "totalram_bytes": None if total is None else total * ps,
            "tasks": [task(t) for t in d.get("tasks", [])], "notes": list(d.get("warnings", []))}


def emit_json(obj: Any) -> None:
    """One JSON document on stdout. An object gains `notes`: the non-fatal problems said so
    far (errors.note), the same ones printed as `vmcorekit: note:` on stderr; and when part
    of the answer is missing (exit status 3), `partial: true` with the gaps in `partial_reasons`."""
    if isinstance(obj, dict):
        said = current_notes()
        if said or "notes" not in obj:
            obj = {**obj, "notes": list(dict.fromkeys([*obj.get("notes", []), *said]))}
        if PARTIAL_SAID and "partial" not in obj:
            obj = {**obj, "partial": True, "partial_reasons": list(PARTIAL_SAID)}
    json.dump(obj, sys.stdout, indent=2, default=_json_default)
    sys.stdout.write("\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (bytes, bytearray)):
        return o.decode("utf-8", "backslashreplace")
    if hasattr(o, "__dict__"):
        return o.__dict__
    return str(o)




# -- a `crash` session: one open Program shared by every verb run in it ------------------------

class Session:
    """What a session keeps between verbs: the open Program, the current task (`set PID`,
    `set -c CPU`; None: the panic task) and gdb's value counter ($1, $2, ... of `p`)."""

    def __init__(self, prog: Program, dump: str, vmcoreinfo_file: str | None) -> None:
        self.prog = prog
        self.dump = dump
        self.vmcoreinfo_file = vmcoreinfo_file
        self.task: int | None = None
        self.history: list[Any] = []  # the Objects `p` printed: $1, $2, ...

    def next_value(self, obj: Any) -> int:
        """Keep `obj` as the next $N of the value history; N."""
        if len(self.history) < 1 << 16:  # bounded, as gdb's
            self.history.append(obj)
        return len(self.history)


class _Lent:
    """A session's Program lent to one command: `with` gives the Program and closes nothing."""

    def __init__(self, prog: Program) -> None:
        self._prog = prog

    def __enter__(self) -> Program:
        return self._prog

    def __exit__(self, *exc: object) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._prog, name)


_session: Session | None = None


def current_session() -> Session | None:
    """The running session, when a command runs inside `vmcorekit crash` (else None)."""
    return _session


def enter_session(s: Session | None) -> Session | None:
    """Make `s` the running session (None: none); returns the one it replaces."""
    global _session
    old, _session = _session, s
    return old
