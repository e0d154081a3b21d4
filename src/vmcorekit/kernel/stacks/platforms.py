"""Which stack code serves which platform: one line per architecture, keyed by the Platform
record's name (arch/platform.py). Each names the module's stack facts (THREAD_SIZE, per-CPU
stacks, a task's stack), its tracer (the unwinders of `Platform.unwinders`, in that order) and
its reproduction of crash 8.0.2's `bt`. A new architecture adds its module and its line here.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import UnsupportedDumpError

if TYPE_CHECKING:
    from ...arch import Platform
    from . import Stacks
    from .kinfo import KernelInfo, StackFacts
    from .model import Trace

__all__ = ["PlatformStacks", "STACK_PLATFORMS", "platform_stacks"]


@dataclass(frozen=True)
class PlatformStacks:
    facts: "Callable[[KernelInfo], StackFacts]"
    trace: "Callable[..., Trace]"  # (stacks, task, *, unwinder, max_frames)
    crash_ref: str  # "module:name" of crash's bt, loaded only when asked for

    def crash_trace(self, stacks: "Stacks", task: int) -> "Trace":
        return _load(self.crash_ref)(stacks, task)  # type: ignore[return-value]


# "module:name" in this package for the facts, the tracer and crash's bt; a module is imported
# only when a dump of its architecture is traced.
STACK_PLATFORMS: dict[str, tuple[str, str, str]] = {
    "x86_64": ("x86_64:X86Kernel", "x86_64:trace", "crashbt:x86_64_crash_trace"),
    # crash's arm64 bt follows the frame records too
    "aarch64": ("arm64:Arm64Kernel", "arm64:trace", "arm64:trace"),
}


def _load(ref: str) -> Callable[..., object]:
    module, name = ref.split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)  # type: ignore[no-any-return]


def platform_stacks(platform: "Platform") -> PlatformStacks:
    """The stack code of `platform`; UnsupportedDumpError when vmcorekit has none."""
    refs = STACK_PLATFORMS.get(platform.name)
    if refs is None:
        raise UnsupportedDumpError("", None, f"no stack unwinder for {platform.name}")
    return PlatformStacks(_load(refs[0]), _load(refs[1]), refs[2])  # type: ignore[arg-type]
