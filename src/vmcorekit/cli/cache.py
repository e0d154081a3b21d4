"""`vmcorekit cache`: the private cache of decompressed copies of compressed dumps (.zst, .xz,
.gz): where it is, what it holds, and emptying it."""
from __future__ import annotations

import datetime

import click

from .common import emit_json
from .render import human_size, kv_table, print_table


@click.command("cache")
@click.option("--clear", is_flag=True, help="Remove every decompressed copy.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(clear: bool, as_json: bool) -> None:
    """Show the cache of decompressed dumps (location, copies, sizes, total), or empty it with
    --clear. Location: $VMCOREKIT_CACHE, else $XDG_CACHE_HOME/vmcorekit (~/.cache/vmcorekit);
    size cap $VMCOREKIT_CACHE_MAX (default 20 GiB, least recently used copies go first);
    largest copy $VMCOREKIT_MAX_DECOMPRESSED (default 64 GiB)."""
    from ..dump import wrapped

    d = wrapped.cache_dir(create=False)
    if clear:
        n, freed = wrapped.clear(d)
        if as_json:
            emit_json({"location": d, "removed": n, "freed_bytes": freed})
        else:
            click.echo(f"removed {n} cached cop{'y' if n == 1 else 'ies'} ({human_size(freed)}) from {d}")
        return
    es = wrapped.entries(d)
    total = sum(e["size"] for e in es)
    cap, biggest = wrapped.cache_max(), wrapped.max_decompressed()
    if as_json:
        emit_json({"location": d, "entries": es, "total_bytes": total, "max_bytes": cap,
                   "max_decompressed_bytes": biggest})
        return
    kv_table("Cache", [("location", d), ("copies", str(len(es))), ("total", human_size(total)),
                       ("cap", f"{human_size(cap)} (VMCOREKIT_CACHE_MAX)"),
                       ("largest copy", f"{human_size(biggest)} (VMCOREKIT_MAX_DECOMPRESSED)")])
    if es:
        rows = [[e["key"], human_size(e["size"]),
                 datetime.datetime.fromtimestamp(e["last_used"], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
                 ", ".join(e["sources"]) or "-"] for e in sorted(es, key=lambda e: -e["last_used"])]
        print_table("Copies (most recently used first)", ["key", "size", "last used (UTC)", "from"], rows, right=(1,))
