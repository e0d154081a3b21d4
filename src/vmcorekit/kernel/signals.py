"""Signals of a task: handlers, blocked and pending sets, queued siginfo (crash's `sig`).

    signal_state(task)      # SignalState: the group's handlers and shared pending set,
                            # each thread's blocked and private pending sets

A sigset_t is `unsigned long sig[_NSIG_WORDS]` (64 signals), bit n-1 for signal n. The
handlers are the thread group's (`task->sighand->action[]`); the shared pending set is the
group's (`task->signal->shared_pending`), the private one each thread's (`task->pending`).
Queued siginfo (`struct sigqueue`) lists are walked bounded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import CorruptKernelDataError, MemoryReadError, VmcorekitError
from .lists import list_nodes

if TYPE_CHECKING:
    from ..program.objects import Object

__all__ = ["SIGNAL_NAMES", "SA_FLAGS", "Action", "Pending", "ThreadSignals", "SignalState",
           "signal_state", "sigset_names", "MAX_QUEUED_SIGNALS"]

# include/uapi/asm-generic/signal.h (x86 and arm64 share the numbers).
SIGNAL_NAMES = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT",
                7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2",
                13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD",
                18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG",
                24: "SIGXCPU", 25: "SIGXFSZ", 26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO",
                30: "SIGPWR", 31: "SIGSYS"}
SA_FLAGS = ((0x00000001, "SA_NOCLDSTOP"), (0x00000002, "SA_NOCLDWAIT"), (0x00000004, "SA_SIGINFO"),
            (0x04000000, "SA_RESTORER"), (0x08000000, "SA_ONSTACK"), (0x10000000, "SA_RESTART"),
            (0x40000000, "SA_NODEFER"), (0x80000000, "SA_RESETHAND"))
MAX_QUEUED_SIGNALS = 1 << 16  # RLIMIT_SIGPENDING's usual size is a few thousand


def signal_name(n: int) -> str:
    if n in SIGNAL_NAMES:
        return SIGNAL_NAMES[n]
    return "SIGRTMIN" if n == 32 else f"SIGRTMIN+{n - 32}" if n > 32 else f"SIG{n}"


def sigset_names(mask: int) -> list[str]:
    return [signal_name(n) for n in range(1, 65) if mask >> (n - 1) & 1]


def _sigset(obj: "Object") -> int:
    """A sigset_t as one integer (word i holds signals 64*i+1 ...)."""
    words = obj.sig
    n = words.type_.strip_typedefs().length or 1
    bits = 0
    for i in range(n):
        bits |= int(words[i]) << (64 * i)
    return bits


@dataclass
class Action:
    signal: int
    address: int  # the struct k_sigaction
    handler: int  # 0 SIG_DFL, 1 SIG_IGN, else a user address
    flags: int
    mask: int

    def handler_text(self) -> str:
        return {0: "SIG_DFL", 1: "SIG_IGN"}.get(self.handler, f"{self.handler:x}")

    def flag_names(self) -> list[str]:
        return [n for bit, n in SA_FLAGS if self.flags & bit]


@dataclass
class Pending:
    address: int  # the struct sigpending
    signal: int
    queued: list[int] = field(default_factory=list)  # si_signo of each queued sigqueue


@dataclass
class ThreadSignals:
    task: int
    pid: int
    blocked: int
    pending: Pending


@dataclass
class SignalState:
    signal_struct: int
    sighand: int
    nr_threads: int | None
    actions: list[Action]
    shared: Pending | None
    threads: list[ThreadSignals]
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        def pend(p: Pending | None) -> dict[str, Any] | None:
            return None if p is None else {"address": p.address, "signal": f"{p.signal:#018x}",
                                           "signals": sigset_names(p.signal), "queued": p.queued}
        return {"signal_struct": self.signal_struct, "sighand": self.sighand, "nr_threads": self.nr_threads,
                "actions": [{"signal": a.signal, "name": signal_name(a.signal), "address": a.address,
                             "handler": a.handler, "flags": a.flags, "flag_names": a.flag_names(),
                             "mask": f"{a.mask:#018x}"} for a in self.actions],
                "shared_pending": pend(self.shared),
                "threads": [{"task": t.task, "pid": t.pid, "blocked": f"{t.blocked:#018x}",
                             "blocked_signals": sigset_names(t.blocked), "pending": pend(t.pending)}
                            for t in self.threads],
                "problems": list(self.problems)}


def _pending(p: "Object", what: str, problems: list[str]) -> Pending:
    prog = p.prog_
    out = Pending(p.address_, _sigset(p.signal))  # type: ignore[arg-type]
    off = prog.offsetof("struct sigqueue", "list")
    signo = prog.offsetof("struct sigqueue", "info.si_signo")
    try:
        for node in list_nodes(prog, p.list.address_, what=what, limit=MAX_QUEUED_SIGNALS):
            out.queued.append(prog.read_u32(node - off + signo))
    except (CorruptKernelDataError, MemoryReadError) as e:
        problems.append(str(e))
    return out


def signal_state(task: "Object") -> SignalState:
    """The signal state of `task` (a task_struct or a pointer to one) and its thread group."""
    from ..program.types.model import TypeKind
    from .tasks import for_each_thread
    prog = task.prog_
    if task.type_.strip_typedefs().kind == TypeKind.POINTER:
        task = task.deref()
    problems: list[str] = []
    sig, hand = int(task.signal), int(task.sighand)
    actions: list[Action] = []
    if hand:
        arr = prog.object("struct sighand_struct", hand).action
        n = min(arr.type_.strip_typedefs().length or 0, 64)
        size = prog.types.sizeof("struct k_sigaction")
        for i in range(n):
            sa = arr[i].sa
            actions.append(Action(i + 1, arr.address_ + i * size, int(sa.sa_handler), int(sa.sa_flags),  # type: ignore[operator]
                                  _sigset(sa.sa_mask)))
    shared = None
    nr = None
    if sig:
        s = prog.object("struct signal_struct", sig)
        nr = int(s.nr_threads)
        shared = _pending(s.shared_pending, f"shared pending signals of {sig:#x}", problems)
    threads: list[ThreadSignals] = []
    try:
        members = list(for_each_thread(task)) if sig else [task]
    except (VmcorekitError, LookupError) as e:
        problems.append(f"threads of task {task.address_:#x}: {e}")
        members = [task]
    for t in members[:MAX_QUEUED_SIGNALS]:
        addr = int(t) if t.type_.strip_typedefs().kind == TypeKind.POINTER else t.address_
        tt = prog.object("struct task_struct", addr)  # type: ignore[arg-type]
        threads.append(ThreadSignals(addr, int(tt.pid), _sigset(tt.blocked),  # type: ignore[arg-type]
                                     _pending(tt.pending, f"pending signals of task {addr:#x}", problems)))
    return SignalState(sig, hand, nr, actions, shared, threads, problems)
