"""Compressed pages alone: the first byte is a page descriptor's flags (which codec), the rest
the stored page. decompress_page must return exactly one page or raise CorruptPageError (or
CodecUnavailableError), whatever the bytes; each codec's output is bounded."""
from __future__ import annotations

from _harness import fuzz_main


def test_one_input(data: bytes) -> None:
    from vmcorekit.dump.codecs import decompress_page
    from vmcorekit.errors import VmcorekitError

    if not data:
        return
    for page_size in (4096, 16384):
        try:
            out = decompress_page(data[0], data[1:], page_size, paddr=0x1000)
        except VmcorekitError:
            continue
        assert len(out) == page_size


if __name__ == "__main__":
    fuzz_main(test_one_input, __file__, ("vmcorekit.dump.codecs",))
