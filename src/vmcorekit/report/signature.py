"""A stable crash signature: the normalized panic reason plus the top meaningful frames of the
panicking task, without addresses, offsets, KASLR or timestamps. Two dumps of one bug match;
different bugs do not."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .logscan import normalize_reason

# Frames every panic passes through; they say nothing about which bug it was.
_GENERIC = {
    "machine_kexec", "__crash_kexec", "crash_kexec", "panic", "vpanic", "dump_stack", "dump_stack_lvl",
    "show_stack", "__delay", "delay_tsc", "__const_udelay", "__udelay", "native_safe_halt",
    "crash_setup_regs", "nmi_panic", "die", "oops_end", "__die", "do_trap", "do_error_trap",
    "exc_invalid_op", "handle_invalid_op", "asm_exc_invalid_op", "asm_exc_page_fault", "exc_page_fault",
    "page_fault_oops", "kernelmode_fixup_or_oops", "__bad_area_nosemaphore", "bad_area_nosemaphore",
    "no_context", "do_user_addr_fault", "handle_page_fault", "_printk", "printk", "vprintk_emit",
    "crash_nmi_callback", "nmi_handle", "default_do_nmi", "exc_nmi", "end_repeat_nmi", "native_halt",
    "__warn", "report_bug", "handle_bug", "bust_spinlocks", "console_flush_on_panic",
}
TOP_FRAMES = 5


def frame_function(frame: str) -> str:
    """`func+0x16/0x20 [mod]` or `func.cold` → the bare function (module kept: it is stable)."""
    m = re.match(r"\s*([A-Za-z_$][\w$]*)(?:\.(?:cold|isra|constprop|part|llvm)[\w.]*)?", frame)
    name = m.group(1) if m else frame.strip()
    mod = re.search(r"\[(\w+)\]", frame)
    return f"{name} [{mod.group(1)}]" if mod else name


@dataclass(frozen=True)
class Signature:
    id: str
    reason: str
    frames: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "reason": self.reason, "frames": list(self.frames)}


def crash_signature(reason: str | None, frames: list[str], top: int = TOP_FRAMES) -> Signature:
    norm = normalize_reason(reason or "unknown")
    funcs: list[str] = []
    for f in frames:
        fn = frame_function(f)
        if fn.split(" ")[0] in _GENERIC or fn in funcs:
            continue
        funcs.append(fn)
        if len(funcs) == top:
            break
    text = norm + "\n" + "\n".join(funcs)
    return Signature(hashlib.sha256(text.encode()).hexdigest()[:16], norm, tuple(funcs))
