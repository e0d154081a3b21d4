"""Dump readers: every supported file becomes a PhysicalMemory.

Formats are recognised by their first bytes, never by file name: ELF (`\\x7fELF`),
kdump-compressed (`KDUMP   `), makedumpfile's flattened stream (`makedumpfile`), and those
inside zstd/xz/gzip. dump/registry.py lists them; each format's file holds its probe, its
reader and its checks for `verify`.
"""
from __future__ import annotations

from .base import DumpFormat, DumpInfo, MemRange, Note, PageState, PhysicalMemory, VirtualSegment
from .elf_layout import parse_notes
from .registry import detect_format, open_dump

__all__ = ["DumpFormat", "DumpInfo", "MemRange", "Note", "PageState", "PhysicalMemory", "VirtualSegment",
           "open_dump", "parse_notes", "detect_format"]
