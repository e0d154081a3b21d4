"""`bt` on the small real dump shipped in samples/ (runs without the corpus): the panicking
task's frames must be drgn's (with debuginfo), minus the inlined functions drgn adds from DWARF."""
from __future__ import annotations

import json
import re

from vmcorekit.cli.main import main


def _norm(name: str) -> str:
    name = re.sub(r"\+0x[0-9a-f]+/0x[0-9a-f]+$", "", name)
    name = re.sub(r"\.cold$", "", name)
    # kallsyms names the label inside entry_SYSCALL_64 the return address lies after
    return "entry_SYSCALL_64" if name.startswith("entry_SYSCALL_64") else name


def test_sample_panic_trace_matches_drgn(sample_dump, capsys):
    expected = sample_dump.parent / "expected" / "drgn-crashed-thread.txt"
    text = expected.read_text()
    pid = int(re.match(r"pid (\d+)", text).group(1))
    drgn_names = [_norm(m) for m in re.findall(r"^#\d+\s+(\S+)", text, re.M) if not m.startswith("0x")]
    assert main(["bt", str(sample_dump), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (tr,) = data["traces"]
    assert tr["pid"] == pid and tr["complete"] and tr["user_regs"] is not None
    ours = [_norm(f["function"]) for f in tr["frames"]]
    it = iter(drgn_names)
    assert all(n in it for n in ours), (ours, drgn_names)
    # every non-inlined function drgn shows is found (drgn's extra ones are inlined)
    assert len(ours) >= 10 and ours[0] == "delay_tsc" and ours[-1] == "entry_SYSCALL_64"
    assert tr["frames"][0]["exception"]["source"] == "note"


def test_sample_bt_text_and_crash_mode(sample_dump, capsys):
    assert main(["bt", "-a", str(sample_dump)]) == 0
    out = capsys.readouterr().out
    # QEMU took the dump: the panicking CPU's registers are its snapshot, not a fault
    assert out.count("PID: ") == 2 and "[registers at dump time: delay_tsc+51]" in out
    assert "[exception RIP: delay_tsc" not in out
    assert main(["bt", "--unwinder", "crash", str(sample_dump)]) == 0
    crash_style = capsys.readouterr().out
    # crash starts the panicking task at the return address into panic() it finds on the stack
    assert re.search(r"^ #0 \[[0-9a-f]+\] panic at [0-9a-f]+$", crash_style, re.M)
    assert "ORIG_RAX:" in crash_style
