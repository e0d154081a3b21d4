"""Kernel facts the unwinders share, from the dump alone: types (BTF, else VMCOREINFO's few),
symbols, memory, the kernel release, and a task's stack. Tasks, CPUs and per-CPU data are
kernel/tasks.py's, kernel/cpus.py's and kernel/percpu.py's; the per-CPU stacks of each
architecture (IRQ, exception, overflow stacks) and its THREAD_SIZE are its unwinder module's
(x86_64.py, arm64.py), found through platforms.py.
"""
from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from ...errors import TypeLookupError, VmcorekitError
from ..tasks import TaskInfo
from .model import StackRange

if TYPE_CHECKING:
    from ...program import Program

__all__ = ["KernelInfo", "StackFacts", "StackRange", "TaskInfo", "task_stack"]


class StackFacts(Protocol):
    """What each architecture's unwinder module says about its stacks (platforms.py)."""

    @property
    def thread_size(self) -> int: ...

    def cpu_stacks(self, cpu: int) -> list[StackRange]: ...

    def task_stack(self, info: TaskInfo) -> StackRange | None: ...


class KernelInfo:
    """What the unwinders ask of one dump (types, symbols, memory), computed once."""

    def __init__(self, prog: "Program") -> None:
        self.prog = prog
        self.notes: list[str] = []

    # -- types --------------------------------------------------------------------------------
    @cached_property
    def types(self) -> Any | None:
        try:
            t = self.prog.types
        except (VmcorekitError, ImportError) as e:
            self.notes.append(f"no types ({e})")
            return None
        if getattr(t, "kind", "btf") == "vmcoreinfo":
            # VMCOREINFO knows a handful of structures; the ones we ask for are rarely among them,
            # but any it does answer are right.
            self.notes.append("no BTF: only VMCOREINFO's structure facts are available")
        return t

    def offsetof(self, spec: str, designator: str) -> int | None:
        """Program.offsetof, None when the dump's types do not say."""
        if self.types is None:
            return None
        try:
            return int(self.prog.offsetof(spec, designator))
        except (LookupError, VmcorekitError):
            return None

    def sizeof(self, spec: str) -> int | None:
        t = self.types
        if t is None:
            return None
        try:
            return int(t.sizeof(spec))
        except (TypeLookupError, LookupError, VmcorekitError):
            return None

    def has_type(self, spec: str) -> bool:
        t = self.types
        return bool(t is not None and t.has_type(spec))

    def struct(self, spec: str) -> Any | None:
        t = self.types
        if t is None:
            return None
        try:
            return t.lookup(spec)
        except (TypeLookupError, LookupError, VmcorekitError):
            return None

    # -- symbols and memory -------------------------------------------------------------------
    @cached_property
    def symbols(self) -> Any:
        return self.prog.symbols

    # -- kernel release -----------------------------------------------------------------------
    @cached_property
    def version(self) -> tuple[int, ...] | None:
        try:
            return tuple(self.prog.vmcoreinfo.kernel_version())
        except (VmcorekitError, AttributeError, TypeError, ValueError):
            return None


def task_stack(info: TaskInfo, thread_size: int) -> StackRange | None:
    """The task's own kernel stack: THREAD_SIZE bytes from task->stack."""
    if not info.stack:
        return None
    return StackRange("task", info.stack, info.stack + thread_size, info.cpu)
