"""`vmcorekit version`: vmcorekit's version and, per page codec, which implementation reads and
writes it (a missing system library changes speed and bytes, never correctness)."""
from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

import click

from .common import emit_json


def _pkg(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def codec_backends() -> list[dict[str, Any]]:
    """One row per codec: what writes pages (filter), what reads them, and their versions."""
    import zlib

    from ..filter.compress import liblzo2, zlib_engine
    rows: list[dict[str, Any]] = []
    engine = zlib_engine("auto")
    rows.append({"codec": "zlib", "write": "isal" if engine == "isal" else "libz",
                 "write_version": _pkg("isal") if engine == "isal" else zlib.ZLIB_RUNTIME_VERSION,
                 "read": "libz", "read_version": zlib.ZLIB_RUNTIME_VERSION,
                 "note": "" if engine == "isal" else "install the isal package for ~4x faster -c"})
    lib = liblzo2()
    if lib is not None:
        import ctypes
        lib.lzo_version_string.restype = ctypes.c_char_p
        lzo_w, lzo_v, lzo_note = "liblzo2", lib.lzo_version_string().decode(), ""
    else:
        lzo_w, lzo_v = "lzallright", _pkg("lzallright")
        lzo_note = "slow path: install the system's liblzo2 (Debian: liblzo2-2) for makedumpfile's compressor"
    rows.append({"codec": "lzo", "write": lzo_w, "write_version": lzo_v,
                 "read": "lzallright", "read_version": _pkg("lzallright"), "note": lzo_note})
    rows.append({"codec": "snappy", "write": "cramjam", "write_version": _pkg("cramjam"),
                 "read": "cramjam", "read_version": _pkg("cramjam"), "note": ""})
    rows.append({"codec": "zstd", "write": "zstandard", "write_version": _pkg("zstandard"),
                 "read": "zstandard", "read_version": _pkg("zstandard"), "note": ""})
    return rows


@click.command("version")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(as_json: bool) -> None:
    """vmcorekit's version, Python's, and the library behind each page codec."""
    info = {"vmcorekit": _pkg("vmcorekit"), "python": platform.python_version(),
            "click": _pkg("click"), "rich": _pkg("rich"), "numpy": _pkg("numpy"),
            "codecs": codec_backends()}
    if as_json:
        emit_json(info)
        return
    click.echo(f"vmcorekit {info['vmcorekit']} (Python {info['python']}, {sys.platform}; "
               f"click {info['click']}, rich {info['rich']}, numpy {info['numpy']})")
    from .render import print_table
    print_table(None, ["CODEC", "WRITES WITH", "READS WITH", "NOTE"],
                [[r["codec"], f"{r['write']} {r['write_version'] or '?'}",
                  f"{r['read']} {r['read_version'] or '?'}", r["note"]] for r in codec_backends()])
