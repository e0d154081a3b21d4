"""`vmcorekit vmcoreinfo DUMP`: the VMCOREINFO note — raw, as JSON, checked, or diffed."""
from __future__ import annotations

import sys

import click

from ..dump import detect_format, open_dump
from ..errors import DumpFormatError, VmcoreinfoError
from ..vmcoreinfo import VmcoreInfo, diff
from ..vmcoreinfo.spec import check
from .common import emit_json, json_convention
from .render import print_table


def load_vmcoreinfo(path: str) -> tuple[VmcoreInfo, str | None]:
    """VMCOREINFO from a dump (its note) or from a text file; with the dump's arch if known."""
    try:
        detect_format(path)
    except DumpFormatError:
        return VmcoreInfo.from_file(path), None
    with open_dump(path) as phys:
        raw = phys.vmcoreinfo_raw
        if raw is None:
            raise VmcoreinfoError(f"{path}: the dump carries no VMCOREINFO note")
        return VmcoreInfo.parse(raw, source=path), phys.machine


@click.command("vmcoreinfo")
@click.argument("dump", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Typed view as JSON.")
@click.option("--check", "do_check", is_flag=True,
              help="Validate against the keys documented for this release and architecture.")
@click.option("--diff", "other", type=click.Path(exists=True, dir_okay=False),
              help="Show keys that differ from another dump's (or text file's) VMCOREINFO.")
def command(dump: str, as_json: bool, do_check: bool, other: str | None) -> None:
    """Print the dump's VMCOREINFO note (DUMP may also be a VMCOREINFO text file)."""
    vi, arch = load_vmcoreinfo(dump)
    if other:
        vo, _ = load_vmcoreinfo(other)
        rows = diff(vi, vo)
        if as_json:
            emit_json([{"key": k, "a": a, "b": b} for k, a, b in rows])
        elif not rows:
            click.echo("VMCOREINFO notes are identical")
        else:
            print_table(None, ["key", dump, other], [[k, a if a is not None else "(absent)",
                                                      b if b is not None else "(absent)"] for k, a, b in rows])
        sys.exit(1 if rows else 0)
    if do_check:
        res = check(vi, arch)
        if as_json:
            emit_json(res.to_dict())
        else:
            click.echo(f"release {vi.osrelease or 'unknown'}, arch {arch or vi.guess_arch() or 'unknown'}: "
                       f"{len(vi.entries)} keys, {len(res.missing)} missing, {len(res.unknown)} unknown, "
                       f"{len(res.malformed)} malformed")
            for k in res.missing:
                click.echo(f"missing  {k}")
            for k in res.unknown:
                click.echo(f"unknown  {k}")
            for m in res.malformed:
                click.echo(f"malformed {m}")
            for n in res.notes:
                click.echo(f"note     {n}")
        sys.exit(0 if res.ok else 1)
    if as_json:
        # one name per concept across commands: release, kaslr_offset (an address), crash_time
        emit_json(json_convention(vi.to_dict(), {"kerneloffset"},
                                  {"osrelease": "release", "kerneloffset": "kaslr_offset", "crashtime": "crash_time"},
                                  opaque={"symbols", "sizes", "offsets", "lengths", "numbers", "configs", "other"}))
    else:
        sys.stdout.write(vi.raw if vi.raw.endswith("\n") else vi.raw + "\n")
