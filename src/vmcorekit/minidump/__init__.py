"""Minidumps: a kdump-compressed copy of a dump holding only the pages the first questions
read (triage, dmesg, ps, bt, mod), so that those questions get the same answers from a file
a hundred times smaller.

This layer sits above `filter/` (which writes the file) and `report/` (whose triage is one of
the questions), which never import each other; `fleet/` keeps a minidump of each dump it
ingests.
"""
from .record import COMMANDS, Recording, record_pages
from .write import MinidumpResult, write_minidump

__all__ = ["COMMANDS", "Recording", "record_pages", "MinidumpResult", "write_minidump"]
