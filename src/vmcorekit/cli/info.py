"""`vmcorekit info DUMP`: what the dump is and what machine it came from."""
from __future__ import annotations

import click

from ..dump import open_dump
from ..errors import note
from ..program.summary import dump_summary
from ..vmcoreinfo import VmcoreInfo
from ..util.text import printable
from .common import emit_json, json_convention, split_dump_arg
from .render import kv_table, print_table

MAX_RANGE_ROWS = 1000  # rows of the text table of memory ranges


@click.command("info")
@click.argument("dump", nargs=-1, required=True)
@click.option("--vmcoreinfo", "vmcoreinfo_file", type=click.Path(exists=True, dir_okay=False),
              help="Use this VMCOREINFO text instead of the dump's note.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--ranges", "show_ranges", is_flag=True,
              help="Also list the physical ranges whose pages are missing or unreadable (reads every page, "
                   "like `verify`); exit status 3 when there are any.")
def command(dump: tuple[str, ...], vmcoreinfo_file: str | None, as_json: bool, show_ranges: bool = False) -> None:
    """Format, codec, architecture, release, page size, CPUs, memory ranges, KASLR offset,
    phys_base, crash time, and whether the dump is filtered or incomplete."""
    with open_dump(split_dump_arg(dump)) as phys:
        vi = VmcoreInfo.from_file(vmcoreinfo_file) if vmcoreinfo_file else None
        s = dump_summary(phys, vi)
        _crash_time(phys, vi, s)
        if show_ranges:
            from ..program.summary import damage_summary
            s["damage"] = damage_summary(phys)
    if as_json:
        emit_json(info_json(s))
        _damage_status(s)
        return
    af = s.get("arch_facts", {})

    def hx(v: object) -> str:
        return f"{v:#x}" if isinstance(v, int) else "-" if v is None else str(v)

    parts = len(split_dump_arg(dump))
    rows = [
        ("file", s["path"] + (f"  (a --split set of {parts} files, read as one dump)" if parts > 1 else "")),
        ("format", s["format"] + (f" v{s['header_version']}" if s.get("header_version") else "")),
        ("codec", s.get("codec") or "-"),
        ("arch", s.get("arch") or "unknown"),
        ("release", s.get("release") or "unknown"),
        ("build id", s.get("build_id") or "-"),
        ("page size", str(s["page_size"])),
        ("cpus", str(s.get("cpus") if s.get("cpus") is not None else "unknown")),
        ("memory", f"{mib(s['memory_bytes'])} in {plural(len(s['memory_ranges']), 'range')}"),
        ("KASLR offset", hx(s.get("kaslr_offset"))),
        ("phys_base", hx(af.get("phys_base"))),
        ("paging", f"{af['paging_levels']}-level" if af.get("paging_levels") else "-"),
        ("direct map", hx(af.get("page_offset_base"))),
        ("vmemmap", hx(af.get("vmemmap_base"))),
        ("crash time", (f"{s['crash_time_utc']}  ({s['crash_time_source']})" if s.get("crash_time_utc")
                        else f"unknown ({s.get('crash_time_source') or 'not recorded'})")),
        ("dump level", str(s["dump_level"]) if s.get("dump_level") is not None else "unfiltered"),
        ("incomplete", "yes" if s["incomplete"] else "no"),
    ]
    # arm64 layout facts (AArch64.describe()), shown only when the architecture has them
    for key, label in (("va_bits", "VA bits"), ("phys_offset", "PHYS_OFFSET"), ("kimage_voffset", "kimage_voffset")):
        if af.get(key) is not None:
            rows.append((label, str(af[key]) if key == "va_bits" else hx(af[key])))
    kv_table("Dump", [(k, printable(v)) for k, v in rows])  # release, build id: the dump's bytes
    for w in af.get("warnings") or []:
        note(printable(w))
    ranges = s["memory_ranges"]
    # A table is for reading: a file may claim a million ranges (--json lists them all).
    print_table("Memory ranges", ["start", "end", "size"],
                [[f"{r['start']:#014x}", f"{r['end']:#014x}", mib(r["size"])] for r in ranges[:MAX_RANGE_ROWS]])
    if len(ranges) > MAX_RANGE_ROWS:
        click.echo(f"... and {len(ranges) - MAX_RANGE_ROWS} more ranges (--json lists them all)")
    for p in s.get("problems", []):
        note(printable(p))
    if "damage" in s:
        _print_damage(s["damage"])
        _damage_status(s)


def _crash_time(phys, vi: VmcoreInfo | None, s: dict) -> None:  # type: ignore[no-untyped-def, type-arg]
    """The crash time every command shows (kernel/sysinfo.crash_time: CRASHTIME, else the
    timekeeper's wall clock), in the summary as `crash_time` and its `crash_time_source`."""
    import datetime as _dt

    from ..errors import VmcorekitError
    from ..kernel.sysinfo import crash_time
    from ..program import Program

    if s.get("crash_time") is not None:
        s["crash_time_source"] = "VMCOREINFO CRASHTIME"
        return
    if vi is None and phys.vmcoreinfo_raw is None:
        s["crash_time_source"] = "no VMCOREINFO"
        return
    try:
        ct, how = crash_time(Program(phys, vi))  # phys stays open: the caller closes it
    except (VmcorekitError, LookupError, ValueError) as e:
        ct, how = None, f"no CRASHTIME in VMCOREINFO; timekeeper unreadable ({e})"
    s["crash_time"] = ct
    s["crash_time_source"] = how
    if ct is not None:
        s["crash_time_utc"] = _dt.datetime.fromtimestamp(ct, _dt.timezone.utc).isoformat()


INFO_ADDRESSES = frozenset({"start", "end", "kaslr_offset", "phys_base", "page_offset_base", "vmemmap_base",
                            "kernel_pgd", "sme_mask", "phys_offset", "kimage_voffset"})


def info_json(s: dict) -> dict:  # type: ignore[type-arg]
    """`info --json`: the summary in the JSON convention; the dump's ELF/kdump notes are
    `elf_notes`, so `notes` is the one list of non-fatal problems every command has."""
    s = dict(s)
    s["elf_notes"] = s.pop("notes", [])
    af = s["arch_facts"] = dict(s.get("arch_facts") or {})
    for msg in [*(af.pop("warnings", None) or []), *s.pop("problems", [])]:
        note(msg)  # said on stderr as in the text form; emit_json puts them in `notes`
    return json_convention(s, INFO_ADDRESSES, {"size": "size_bytes"})


def mib(n: int) -> str:
    """Every size `info` prints is in one unit (MiB); exact byte counts are in --json."""
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 or n == 0 else f"{n / (1 << 20):.3f} MiB"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _print_damage(d: dict) -> None:  # type: ignore[type-arg]
    """The --ranges section: each missing or unreadable range once."""
    p = d["pages"]
    kv_table("Damage", [("pages", f"good {p['good']}, zero {p['zero']}, excluded {p['excluded']}, "
                                  f"missing {p['missing']}, corrupt {p['corrupt']}")])
    rows = [[r["state"], f"{r['start']:#014x}", f"{r['end']:#014x}", str(r["pages"]), r["reason"]]
            for r in d["unreadable_ranges"]]
    if rows:
        print_table("Missing or unreadable ranges", ["state", "start", "end", "pages", "reason"], rows, right=(3,))
    else:
        click.echo("no missing or unreadable pages")
    for msg in d["problems"]:
        click.echo(f"problem: {msg}")


def _damage_status(s: dict) -> None:  # type: ignore[type-arg]
    d = s.get("damage")
    if d and (d["unreadable_ranges"] or d["problems"]):
        from ..errors import EXIT_PARTIAL
        raise click.exceptions.Exit(EXIT_PARTIAL)
