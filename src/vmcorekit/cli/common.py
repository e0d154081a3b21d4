"""What every command shares: opening dumps, number parsing, output helpers."""
from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from ..errors import current_notes
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


def emit_json(obj: Any) -> None:
    """One JSON document on stdout. An object gains `notes`: the non-fatal problems said so
    far (errors.note), the same ones printed as `vmcorekit: note:` on stderr."""
    if isinstance(obj, dict):
        said = current_notes()
        if said or "notes" not in obj:
            obj = {**obj, "notes": list(dict.fromkeys([*obj.get("notes", []), *said]))}
    json.dump(obj, sys.stdout, indent=2, default=_json_default)
    sys.stdout.write("\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (bytes, bytearray)):
        return o.decode("utf-8", "backslashreplace")
    if hasattr(o, "__dict__"):
        return o.__dict__
    return str(o)


def is_tty() -> bool:
    return sys.stdout.isatty()
