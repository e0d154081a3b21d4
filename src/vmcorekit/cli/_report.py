"""How every command ends, for both entry points (the click CLI and the fast dmesg path, which
imports no click): partial results said once each as they happen, notes after the answer, and
exit 3 for an answer with gaps."""
from __future__ import annotations

import warnings
from collections.abc import Callable

from ..errors import EXIT_PARTIAL, PARTIAL_SAID, PartialResultWarning, collecting_notes


def run_reporting(run: Callable[[], int], say: Callable[[str], None]) -> int:
    """run() with each PartialResultWarning said once through `say` (and kept in
    errors.PARTIAL_SAID for the JSON), then each note; its status, or 3 when it returned 0
    with partial results."""
    partial: list[str] = []
    PARTIAL_SAID.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("always", PartialResultWarning)  # dedup below, by message
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
            if not issubclass(category, PartialResultWarning):
                return shown(message, category, filename, lineno, file, line)
            text = str(message)
            if text not in partial:
                partial.append(text)
                PARTIAL_SAID.append(text)
                if getattr(message, "reported", True):
                    say(f"vmcorekit: partial: {text}")

        warnings.showwarning = show
        with collecting_notes() as notes:
            rc = run()
    for n in notes:  # errors.note(): non-fatal problems, once each, after the answer
        say(f"vmcorekit: note: {n}")
    return EXIT_PARTIAL if rc == 0 and partial else rc
