"""makedumpfile's job: classify pages from the kernel's struct page array, drop what the dump
level excludes, compress the rest and write kdump-compressed, ELF or flattened output.

    stats = run_filter("vmcore", ["vmcore.d31"], FilterOptions(level=31, codec="zstd"))
"""
from __future__ import annotations

from ..kernel.memmap import PageLayout, find_memory_model
from .classify import (DL_EXCLUDE_CACHE, DL_EXCLUDE_CACHE_PRI, DL_EXCLUDE_FREE, DL_EXCLUDE_USER_DATA,
                       DL_EXCLUDE_ZERO, PageClassifier)
from .job import (FilterJob, FilterOptions, FilterStats, MemUsage, memory_usage, reassemble_stream, run_filter,
                  split_output_names)
from ..errors import FilterError, OutputError

__all__ = ["run_filter", "reassemble_stream", "memory_usage", "FilterJob", "FilterOptions", "FilterStats",
           "MemUsage", "FilterError", "OutputError", "PageClassifier", "PageLayout", "find_memory_model",
           "split_output_names", "DL_EXCLUDE_ZERO", "DL_EXCLUDE_CACHE", "DL_EXCLUDE_CACHE_PRI",
           "DL_EXCLUDE_USER_DATA", "DL_EXCLUDE_FREE"]
