"""Which stack code serves which platform: one line per architecture, keyed by the Platform
record's name (arch/platform.py). Each names the module's stack facts (THREAD_SIZE, per-CPU
stacks, a task's stack), its tracer (the unwinders of `Platform.unwinders`, in that order) and
its reproduction of crash 8.0.2's `bt`. A new architecture adds its module and its line here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import UnsupportedDumpError
from . import arm64, x86_64
from .crashbt import x86_64_crash_trace

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
    crash_trace: "Callable[[Stacks, int], Trace]"


STACK_PLATFORMS: dict[str, PlatformStacks] = {
    "x86_64": PlatformStacks(x86_64.X86Kernel, x86_64.trace, x86_64_crash_trace),
    # crash's arm64 bt follows the frame records too
    "aarch64": PlatformStacks(arm64.Arm64Kernel, arm64.trace, arm64.trace),
}


def platform_stacks(platform: "Platform") -> PlatformStacks:
    """The stack code of `platform`; UnsupportedDumpError when vmcorekit has none."""
    ps = STACK_PLATFORMS.get(platform.name)
    if ps is None:
        raise UnsupportedDumpError("", None, f"no stack unwinder for {platform.name}")
    return ps
