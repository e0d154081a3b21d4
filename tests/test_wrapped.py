"""Dumps inside zstd/xz/gzip open transparently through a private decompressed copy."""
from __future__ import annotations

import gzip
import lzma
import os

import pytest
import zstandard

from elfgen import build_core, note
from vmcorekit.dump import open_dump
from vmcorekit.errors import DumpFormatError

PAGE = bytes(range(256)) * 16
CORE = build_core([(0, 0x1000, PAGE)], note(b"VMCOREINFO", 0, b"OSRELEASE=6.1\n"))


@pytest.mark.parametrize("kind", ["zstd", "xz", "gzip"])
def test_wrapped_elf_opens(tmp_path, monkeypatch, kind: str) -> None:
    monkeypatch.setenv("VMCOREKIT_CACHE", str(tmp_path / "cache"))
    pack = {"zstd": zstandard.ZstdCompressor().compress, "xz": lzma.compress, "gzip": gzip.compress}[kind]
    p = tmp_path / f"vmcore.{kind}"
    p.write_bytes(pack(CORE))
    with open_dump(p) as d:
        assert d.read(0x1000, 4096) == PAGE
        assert d.path == str(p)
        copy = d.info.extra["decompressed_copy"]
        assert oct(os.stat(copy).st_mode & 0o777) == "0o600"
    with open_dump(p) as d:  # second open reuses the copy
        assert d.info.extra["decompressed_copy"] == copy


def test_corrupt_wrapper_is_a_format_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VMCOREKIT_CACHE", str(tmp_path / "cache"))
    p = tmp_path / "vmcore.zst"
    p.write_bytes(zstandard.ZstdCompressor().compress(CORE)[:40])
    with pytest.raises(DumpFormatError, match="cannot decompress"):
        open_dump(p)
    assert not [f for f in os.listdir(tmp_path / "cache") if f.endswith(".dump")]
