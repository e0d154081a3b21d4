"""`vmcorekit filter`: makedumpfile's job (dump levels, codecs, -E, -F, -R, --split)."""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from .common import emit_json, split_dump_arg

CODEC_FLAGS = {"c": "zlib", "l": "lzo", "p": "snappy", "z": "zstd"}


def _size(text: str | None) -> int | None:
    """Bytes, with an optional K/M/G/T suffix (powers of 1024)."""
    if text is None:
        return None
    t = text.strip().upper().rstrip("B")
    mult = 1
    for i, suffix in enumerate("KMGT", 1):
        if t.endswith(suffix):
            mult, t = 1024 ** i, t[:-1]
            break
    try:
        v = int(float(t) * mult)
    except ValueError:
        raise click.BadParameter(f"expected a size such as 4G or 500M, got {text!r}", param_hint="--max-size") from None
    if v <= 0:
        raise click.BadParameter("expected a positive size", param_hint="--max-size")
    return v


class _RichProgress:
    """A rich progress bar with ETA on stderr, one task per phase."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
        self.progress = Progress(TextColumn("{task.description:<30}"), BarColumn(), TaskProgressColumn(),
                                 TextColumn("eta"), TimeRemainingColumn(), console=Console(stderr=True),
                                 transient=False)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "_RichProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, phase: str, done: int, total: int) -> None:
        task = self.tasks.get(phase)
        if task is None:
            task = self.tasks[phase] = self.progress.add_task(phase, total=max(total, 1))
        self.progress.update(task, completed=done, total=max(total, 1))


# makedumpfile options that change only how makedumpfile itself runs (memory, temporary files,
# debugging): accepted so kdump's `core_collector makedumpfile ...` lines run unchanged, and
# said once as a note. Options that change what is written (--eppic, --config) are refused.
IGNORED = {
    "exclude_vmemmap": "-e (exclude unused vmemmap pages): every mem_map page is kept",
    "vmlinux": "-x VMLINUX: page classes come from the dump's VMCOREINFO and BTF, VMLINUX is not read",
    "work_dir": "--work-dir: vmcorekit keeps its bitmaps in memory",
    "cyclic_buffer": "--cyclic-buffer: vmcorekit keeps its bitmaps in memory",
    "non_cyclic": "--non-cyclic: vmcorekit keeps its bitmaps in memory",
    "non_mmap": "--non-mmap: vmcorekit reads the dump as it sees fit",
    "block_order": "-b: vmcorekit sizes its own caches",
    "splitblock_size": "--splitblock-size: --split parts hold equal shares of pages",
    "debug": "-D: no makedumpfile debug messages",
}
MSG_COMMON, MSG_REPORT = 2, 16  # makedumpfile's --message-level bits honoured here


def _refuse_existing(outputs: list[str], force: bool, inputs: Sequence[str] = ()) -> None:
    """makedumpfile never overwrites a dump: "File exists", status 1, unless -f. What -f never
    replaces (a device, FIFO or folder, also through a symlink; the input dump) is refused
    first, saying which."""
    from ..util.fileout import check_output_path
    for o in outputs:
        if os.path.isdir(o):
            raise click.BadParameter(f"{o}: is a directory", param_hint="OUTPUT")
        check_output_path(o, inputs)
        if not force and os.path.lexists(o):
            raise click.ClickException(f"{o}: File exists (as makedumpfile: -f overwrites it)")


@click.command("filter")
@click.argument("paths", nargs=-1, metavar="DUMP OUTPUT...")
@click.option("-d", "--dump-level", "level", type=click.IntRange(0, 31), default=None,
              help="Pages to exclude, a sum of: 1 zero, 2 non-private cache, 4 all cache, 8 user data, "
                   "16 free (default 0, as makedumpfile; a re-filtered dump keeps its own level too).")
@click.option("--level", "keep_level", type=click.Choice(["triage"]), default=None,
              help="triage: a minidump, only the pages triage, dmesg, ps, bt and mod read on DUMP "
                   "(their answers on it are DUMP's; other questions may find pages missing).")
@click.option("-c", "codec_flag", flag_value="c", help="Compress pages with zlib.")
@click.option("-l", "codec_flag", flag_value="l", help="Compress pages with LZO.")
@click.option("-p", "codec_flag", flag_value="p", help="Compress pages with snappy.")
@click.option("-z", "codec_flag", flag_value="z", help="Compress pages with zstd.")
@click.option("--codec", type=click.Choice(["zlib", "lzo", "snappy", "zstd", "none"]),
              help="Page codec by name (default zlib, where makedumpfile stores pages raw; 'none' does that).")
@click.option("--zlib-engine", type=click.Choice(["auto", "isal", "zlib"]), default="auto", show_default=True,
              help="zlib pages by the system's libz (zlib: makedumpfile's exact bytes, reproducible) or by "
                   "ISA-L (isal: ~4x faster, files ~4% larger at -d 31, any zlib reads them, but the bytes "
                   "differ from run to run); auto = zlib.")
@click.option("-E", "elf", is_flag=True, help="Write an ELF core instead of kdump-compressed.")
@click.option("-F", "flatten", is_flag=True, help="Write the flattened format to standard output (for ssh).")
@click.option("-R", "reassemble", is_flag=True, help="Rebuild OUTPUT from a flattened stream on standard input.")
@click.option("-f", "force", is_flag=True, help="Overwrite OUTPUT if it exists (otherwise: File exists, status 1).")
@click.option("--split", "split", is_flag=True,
              help="Write one kdump file per OUTPUT, sharing the pages (makedumpfile's --split DUMP OUT1 OUT2...; "
                   "also --split N DUMP OUT for OUT.1..N).")
@click.option("--num-threads", "--threads", "threads", type=click.IntRange(1, 1024), default=None,
              help="Compression workers (default: all cores).")
@click.option("--message-level", type=click.IntRange(0, 31), default=None, metavar="N",
              help="makedumpfile's message bits: without 2 (common messages) the closing 'saved' line is "
                   "not printed; 16 (report) prints the page report as --show-stats.")
@click.option("-i", "--vmcoreinfo", "vmcoreinfo_file", type=click.Path(exists=True, dir_okay=False),
              help="Use this VMCOREINFO text instead of the dump's note.")
@click.option("-x", "vmlinux", type=click.Path(exists=True, dir_okay=False), metavar="VMLINUX",
              help="Accepted for makedumpfile's command lines; not read.")
@click.option("-e", "exclude_vmemmap", is_flag=True, help="Accepted for makedumpfile's command lines; ignored.")
@click.option("--work-dir", type=click.Path(), help="Accepted for makedumpfile's command lines; ignored.")
@click.option("--cyclic-buffer", type=int, metavar="KB", help="Accepted for makedumpfile's command lines; ignored.")
@click.option("--non-cyclic", is_flag=True, help="Accepted for makedumpfile's command lines; ignored.")
@click.option("--non-mmap", is_flag=True, help="Accepted for makedumpfile's command lines; ignored.")
@click.option("-b", "block_order", type=int, metavar="ORDER", help="Accepted for makedumpfile's command lines; ignored.")
@click.option("--splitblock-size", type=int, metavar="N", help="Accepted for makedumpfile's command lines; ignored.")
@click.option("-D", "debug", is_flag=True, help="Accepted for makedumpfile's command lines; ignored.")
@click.option("--eppic", hidden=True, help="Refused: vmcorekit cannot erase data with eppic macros.")
@click.option("--config", hidden=True, help="Refused: vmcorekit cannot erase data by a filter config.")
@click.option("--check-params", is_flag=True, help="Only check the options, as makedumpfile.")
@click.option("--dry-run", is_flag=True, help="Do everything but write; report what would be written.")
@click.option("--show-stats", is_flag=True, help="Print the page report (pages per class) like makedumpfile.")
@click.option("--mem-usage", is_flag=True, help="Show what each dump level would keep, then stop.")
@click.option("--dump-dmesg", is_flag=True, help="Write the kernel log of DUMP to OUTPUT (makedumpfile's format).")
@click.option("--partial-dmesg", is_flag=True, help="With --dump-dmesg: only the records after the last clear.")
@click.option("--max-size", "max_size", default=None, help="Fail (leaving no file) if the output would exceed this size.")
@click.option("--json", "as_json", is_flag=True, help="Statistics as JSON on standard output (not with -F).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
def command(paths: tuple[str, ...], level: int | None, keep_level: str | None, codec_flag: str | None, codec: str | None,
            zlib_engine: str, elf: bool, flatten: bool, reassemble: bool, force: bool, split: bool,
            threads: int | None, message_level: int | None, vmcoreinfo_file: str | None,
            eppic: str | None, config: str | None, check_params: bool, dry_run: bool, show_stats: bool,
            mem_usage: bool, dump_dmesg: bool, partial_dmesg: bool, max_size: str | None, as_json: bool,
            progress: bool | None, **ignored: Any) -> None:
    """Filter and compress a dump like makedumpfile.

    \b
      vmcorekit filter -d 31 -c DUMP OUTPUT        kdump-compressed, zlib
      vmcorekit filter -d 31 -E DUMP OUTPUT        ELF
      vmcorekit filter -d 31 -F DUMP | ssh ...     flattened stream on stdout
      vmcorekit filter -R OUTPUT < STREAM          rebuild a flattened stream
      vmcorekit filter --split DUMP OUT1 OUT2 OUT3 a split set of three files
      vmcorekit filter --mem-usage DUMP            what each dump level keeps
      vmcorekit filter --level triage DUMP OUTPUT  a minidump for triage, dmesg, ps, bt, mod
      vmcorekit filter -l --message-level 7 -d 31 /proc/vmcore OUT   kdump's core_collector line

    DUMP may be an ELF core, a kdump-compressed file (re-filtering: its dump level is kept and
    raised), a flattened stream, or a --split set given as FILE1,FILE2,...
    An existing OUTPUT is refused (File exists, status 1) unless -f.
    """
    from ..errors import note
    from ..filter import FilterOptions
    from ..filter.job import reassemble_stream, run_filter, split_output_names

    if eppic or config:
        raise click.UsageError(f"{'--eppic' if eppic else '--config'} erases data vmcorekit cannot "
                               "interpret; use makedumpfile for filtering by macros or a config")
    for key, why in IGNORED.items():
        if ignored.get(key):
            note(f"ignored {why}")
    quiet = message_level is not None and not message_level & MSG_COMMON
    if message_level is not None and message_level & MSG_REPORT:
        show_stats = True
    limit = _size(max_size)
    if reassemble:
        if len(paths) != 1:
            raise click.UsageError("-R takes one argument: the OUTPUT file to rebuild from standard input")
        if sys.stdin.isatty():
            raise click.UsageError("-R reads a flattened dump from standard input; pipe one in")
        _refuse_existing([paths[0]], force)
        if check_params:
            return
        records = reassemble_stream(sys.stdin.buffer, paths[0], limit)
        if not quiet:
            click.echo(f"The dumpfile is saved to {paths[0]} ({records} records).", err=True)
        return
    if codec_flag and codec and CODEC_FLAGS[codec_flag] != codec:
        raise click.UsageError(f"-{codec_flag} and --codec {codec} name different codecs")
    if sum(map(bool, (codec_flag or codec, elf))) > 1:
        raise click.UsageError("-E writes uncompressed ELF; it cannot be combined with a codec")
    chosen = codec or (CODEC_FLAGS[codec_flag] if codec_flag else "zlib")
    parts = list(paths)
    n_split = 1
    if split and len(parts) >= 3 and parts[0].isdigit() and not os.path.exists(parts[0]):
        n_split = int(parts.pop(0))  # vmcorekit's older form: --split N DUMP OUT -> OUT.1..N
        if not 1 <= n_split <= 4096:
            raise click.UsageError(f"--split {n_split}: expected 1 to 4096 files")
    if not parts:
        raise click.UsageError("missing DUMP")
    dump = split_dump_arg(parts[0])
    rest = parts[1:]
    if split and n_split == 1:
        n_split = len(rest)
        if n_split < 2 and not dry_run:
            raise click.UsageError("--split needs DUMP and at least two OUTPUT files")
    if dump_dmesg:
        if len(rest) != 1:
            raise click.UsageError("--dump-dmesg takes DUMP OUTPUT")
        _refuse_existing(rest, force, dump)
        if not check_params:
            _dump_dmesg(dump, rest[0], vmcoreinfo_file, partial_dmesg, quiet)
        return
    if keep_level is not None:
        if len(rest) != 1:
            raise click.UsageError("--level triage takes DUMP OUTPUT")
        if level is not None or elf or flatten or split or dry_run or mem_usage:
            raise click.UsageError("--level triage chooses the pages itself and writes one kdump-compressed "
                                   "file: it takes no -d, -E, -F, --split, --dry-run or --mem-usage")
        _refuse_existing(rest, force, dump)
        if not check_params:
            _minidump(dump, rest[0], vmcoreinfo_file, codec or (CODEC_FLAGS[codec_flag] if codec_flag else None),
                      limit, as_json, quiet)
        return
    show = progress if progress is not None else sys.stderr.isatty()
    opts = FilterOptions(level=0 if level is None else level, codec=chosen, zlib_engine=zlib_engine, elf=elf,
                         split=max(n_split, 1), threads=threads, dry_run=dry_run, max_size=limit,
                         vmcoreinfo_file=vmcoreinfo_file)
    if mem_usage:
        if rest:
            raise click.UsageError("--mem-usage takes only DUMP")
        if not check_params:
            _mem_usage(dump, opts, as_json, show)
        return
    if flatten:
        if rest:
            raise click.UsageError("-F writes to standard output: give only DUMP")
        if sys.stdout.isatty() and not dry_run and not check_params:
            raise click.UsageError("-F writes binary data to standard output; redirect it to a file or a pipe")
        if as_json:
            raise click.UsageError("--json prints on standard output, which -F uses for the dump")
        outputs: list[str] | None = None
    elif dry_run:
        outputs = None
    else:
        if not rest:
            raise click.UsageError("missing OUTPUT")
        if n_split > 1 and len(rest) == 1:
            outputs = split_output_names(rest[0], n_split)
        elif len(rest) == n_split:
            outputs = rest
        else:
            raise click.UsageError(f"expected 1 OUTPUT (or --split and several), got {len(rest)}")
        _refuse_existing(outputs, force, dump)
    if check_params:  # makedumpfile --check-params: the options are fine, nothing is done
        return
    if chosen == "lzo":
        from ..filter.compress import lzo_backend
        if lzo_backend() != "liblzo2":
            note("LZO pages by the lzallright package (slower, other bytes than makedumpfile's): "
                 "install the system's liblzo2 (Debian: liblzo2-2) for makedumpfile's compressor")
    stream = sys.stdout.buffer if flatten and not dry_run else None
    if show:
        with _RichProgress() as bar:
            opts.progress = bar
            stats = run_filter(dump, outputs, opts, stream=stream)
    else:
        stats = run_filter(dump, outputs, opts, stream=stream)
    for w in stats.warnings:  # `vmcorekit: note:` lines, and `notes` in --json: one list of them
        note(w)
    if as_json:
        emit_json({k: v for k, v in stats.to_dict().items() if k != "warnings"})
    elif show_stats or dry_run:
        click.echo(stats.report(), err=flatten, nl=False)
    if outputs and not as_json and not quiet:
        where = ", ".join(outputs)
        click.echo(f"The dumpfile is saved to {where}.", err=True)


def _mem_usage(dump: list[str], opts: Any, as_json: bool, show: bool) -> None:
    from ..filter.job import memory_usage
    from .render import print_table
    if show:
        with _RichProgress() as bar:
            opts.progress = bar
            mu = memory_usage(dump, opts)
    else:
        mu = memory_usage(dump, opts)
    if as_json:
        emit_json({k: v for k, v in mu.to_dict().items() if k != "warnings"})
        return
    ps = mu.page_size
    c = mu.by_class
    rows = [("ZERO", c["zero"], "yes", "Pages filled with zero"),
            ("NON_PRI_CACHE", c["cache"], "yes", "Cache pages without private flag"),
            ("PRI_CACHE", c["cache_private"], "yes", "Cache pages with private flag"),
            ("USER", c["user"], "yes", "User process pages"),
            ("FREE", c["free"], "yes", "Free pages"),
            ("KERN_DATA", c["kernel"], "no", "Dumpable kernel data")]
    print_table("Page types", ["TYPE", "PAGES", "EXCLUDABLE", "DESCRIPTION"], rows, right=(1,))
    levels = [0, 1, 2, 4, 8, 16, 31]
    print_table("Dump levels", ["LEVEL", "PAGES KEPT", "SIZE MiB", "OF PRESENT"],
                [(lv, mu.kept[lv], f"{mu.kept[lv] * ps / (1 << 20):.1f}",
                  f"{100 * mu.kept[lv] / mu.present:.1f}%" if mu.present else "-") for lv in levels], right=(1, 2, 3))
    click.echo(f"page size: {ps}   pages on system: {mu.existing}   present in dump: {mu.present}")


def _dump_dmesg(dump: list[str], output: str, vmcoreinfo_file: str | None, partial: bool = False,
                quiet: bool = False) -> None:
    """The kernel log as makedumpfile --dump-dmesg writes it, through atomic_output."""
    from ..program import Program
    from ..util.fileout import atomic_output
    try:
        from ..kernel.printk import read_log, render, since_clear
    except ImportError as e:
        raise click.ClickException(f"--dump-dmesg needs vmcorekit.kernel.printk ({e})") from None
    with Program.open(dump, vmcoreinfo=vmcoreinfo_file) as prog:
        log = read_log(prog)
        with atomic_output(output, inputs=dump) as f:
            for _rec, line in render(log, since_clear(log) if partial else None, style="makedumpfile"):
                f.write(line)
    from ..errors import note
    for w in getattr(log, "warnings", []) or []:
        note(w)
    if not quiet:
        click.echo(f"The dmesg log is saved to {output}.", err=True)


def _minidump(dump: list[str], output: str, vmcoreinfo_file: str | None, codec: str | None,
              limit: int | None, as_json: bool, quiet: bool) -> None:
    """--level triage: record what the first questions read, write only that."""
    from ..errors import note
    from ..minidump import write_minidump
    from ..minidump.write import DEFAULT_CODEC
    r = write_minidump(dump, output, vmcoreinfo_file=vmcoreinfo_file, codec=codec or DEFAULT_CODEC,
                       max_size=limit)
    for w in r.stats.warnings:
        note(w)
    for name, why in r.recording.errors.items():
        note(f"{name} stops early on this dump ({why}); the minidump holds what it read")
    if as_json:
        emit_json({k: v for k, v in r.to_dict().items() if k != "warnings"})
    elif not quiet:
        click.echo(f"The dumpfile is saved to {output} ({r.pages} pages, {r.written} bytes).", err=True)
