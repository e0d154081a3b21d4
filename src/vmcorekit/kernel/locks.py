"""Sleeping locks and wait queues: what a blocked task waits on, and who holds it.

A task that sleeps on a lock leaves a waiter structure in its own stack frame, linked into
the lock's wait list (kernel/locking/mutex.c `struct mutex_waiter`, rwsem.c `struct
rwsem_waiter`, semaphore.c `struct semaphore_waiter`, kernel/sched/swait.c `struct
swait_queue` for completions, mm/filemap.c `struct wait_page_queue` for folio/page locks,
and a plain `struct wait_queue_entry` for any other wait queue). Its stack frames say which
kind (the innermost lock primitive in the backtrace); the stack itself is then scanned for a
waiter of that kind whose task field is the task, and the waiter's list ring is walked
(bounded) to the one node that is not another task's on-stack waiter: the lock's list head,
from which container_of gives the lock.

Owner words (the low bits are flags, never part of a task_struct pointer, which is at least
L1_CACHE_BYTES aligned):
  mutex.owner      4.10+: bits 0-2 WAITERS, HANDOFF, PICKUP (MUTEX_FLAGS 0x07)
  rw_semaphore.owner  bit 0 READER_OWNED (5.3+; 4.20-5.2 as well), bit 1 NONSPINNABLE (5.3+;
                   "anonymously owned" before): a reader-owned rwsem's owner is only the last
                   reader to take it, a hint, not the holder.
Layouts come from BTF; a dump without BTF has no waiter analysis.
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import CorruptKernelDataError, MemoryReadError, TypeLookupError, VmcorekitError
from .lists import list_nodes

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["OwnerWord", "decode_mutex_owner", "decode_rwsem_owner", "WaitKind", "WAIT_KINDS",
           "SLEEP_FUNCTIONS", "wait_kind", "base_function", "find_list_head", "Wait",
           "task_wait", "MUTEX_FLAGS", "RWSEM_OWNER_FLAGS"]

MUTEX_FLAGS = 0x07
_MUTEX_FLAG_NAMES = ((0x01, "waiters"), (0x02, "handoff"), (0x04, "pickup"))
RWSEM_READER_OWNED = 0x1
RWSEM_NONSPINNABLE = 0x2
RWSEM_OWNER_FLAGS = RWSEM_READER_OWNED | RWSEM_NONSPINNABLE
_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class OwnerWord:
    """A decoded owner word: the task_struct address (0: none) and the flag bits by name."""

    task: int
    flags: tuple[str, ...] = ()
    reader_owned: bool = False


def decode_mutex_owner(word: int) -> OwnerWord:
    word &= _MASK
    return OwnerWord(word & ~MUTEX_FLAGS & _MASK,
                     tuple(n for bit, n in _MUTEX_FLAG_NAMES if word & bit))


def decode_rwsem_owner(word: int) -> OwnerWord:
    word &= _MASK
    flags = []
    if word & RWSEM_READER_OWNED:
        flags.append("reader-owned")
    if word & RWSEM_NONSPINNABLE:
        flags.append("nonspinnable")
    return OwnerWord(word & ~RWSEM_OWNER_FLAGS & _MASK, tuple(flags),
                     bool(word & RWSEM_READER_OWNED))


@dataclass(frozen=True)
class WaitKind:
    """One kind of wait: the frames that show it, its on-stack waiter (type, the member that
    names the task, the list member) and the object whose list the waiter is on."""

    name: str
    functions: tuple[str, ...]  # exact base names of the frames
    prefixes: tuple[str, ...]  # or name prefixes
    waiter: str
    task_member: str
    list_member: str
    lock_type: str | None  # container of the list head; None: the object is read from the waiter
    lock_list: str | None
    owner: Callable[[int], OwnerWord] | None = None


WAIT_KINDS: tuple[WaitKind, ...] = (
    WaitKind("rwsem", ("down_read", "down_write", "down_read_killable", "down_write_killable",
                       "down_read_interruptible"),
             ("rwsem_down_", "__down_read", "__down_write"),
             "struct rwsem_waiter", "task", "list", "struct rw_semaphore", "wait_list",
             decode_rwsem_owner),
    WaitKind("mutex", ("mutex_lock", "mutex_lock_io", "mutex_lock_killable",
                       "mutex_lock_interruptible", "ww_mutex_lock"),
             ("__mutex_lock", "__ww_mutex_lock"),
             "struct mutex_waiter", "task", "list", "struct mutex", "wait_list",
             decode_mutex_owner),
    WaitKind("semaphore", ("down", "down_interruptible", "down_killable", "down_timeout",
                           "__down", "__down_common", "__down_interruptible", "__down_killable",
                           "__down_timeout"), (),
             "struct semaphore_waiter", "task", "list", "struct semaphore", "wait_list"),
    WaitKind("completion", ("__wait_for_common", "do_wait_for_common", "wait_for_common",
                            "wait_for_common_io"), ("wait_for_completion",),
             "struct swait_queue", "task", "task_list", "struct completion", "wait.task_list"),
    WaitKind("folio", ("folio_wait_bit_common", "wait_on_page_bit_common", "__folio_lock",
                       "__folio_lock_killable", "__lock_page", "__lock_page_killable",
                       "folio_wait_bit", "folio_wait_bit_killable", "wait_on_page_bit"), (),
             "struct wait_page_queue", "wait.private", "wait.entry", None, None),
)
# Any other wait queue: tried when no frame names a lock primitive.
_WAITQUEUE = WaitKind("waitqueue", (), (), "struct wait_queue_entry", "private", "entry",
                      "struct wait_queue_head", "head")
# Where a task sleeps holding nothing we can see: the frame is what it is doing.
SLEEP_FUNCTIONS = frozenset({"msleep", "msleep_interruptible", "ssleep", "usleep_range_state",
                             "schedule_timeout", "schedule_timeout_uninterruptible",
                             "schedule_timeout_interruptible", "schedule_timeout_killable",
                             "schedule_hrtimeout_range", "schedule_hrtimeout_range_clock",
                             "io_schedule_timeout", "do_nanosleep", "hrtimer_nanosleep"})
# The scheduler's own frames: never what a task is doing.
_SCHED = frozenset({"__schedule", "schedule", "schedule_preempt_disabled", "io_schedule",
                    "__switch_to", "__switch_to_asm", "cpu_switch_to", "preempt_schedule",
                    "preempt_schedule_common", "schedule_idle", "context_switch"})


def base_function(name: str | None) -> str:
    """`__mutex_lock.constprop.0` -> `__mutex_lock` (compiler clones keep the wait's name)."""
    return (name or "").split(".", 1)[0]


def wait_kind(functions: Iterable[str | None]) -> tuple[WaitKind | None, str | None]:
    """(the kind of wait, the frame that shows it) from a backtrace, innermost first. Only
    the frames next to the scheduler count (a lock primitive further out is not where the
    task sleeps): past the scheduler's own frames and sleep helpers (schedule_timeout,
    msleep, ...) the first frame either is a lock primitive or ends the search. Without a
    lock: (None, the outermost sleep helper, else that first frame)."""
    sleeper = None
    for f in functions:
        b = base_function(f)
        if not b or b in _SCHED:
            continue
        for k in WAIT_KINDS:
            if b in k.functions or (k.prefixes and b.startswith(k.prefixes)):
                return k, f
        if b in SLEEP_FUNCTIONS:
            sleeper = f  # a lock primitive's timed wait goes through these too
            continue
        return None, sleeper or f
    return None, sleeper


def find_list_head(read_pointer: Callable[[int], int], node: int,
                   is_waiter_node: Callable[[int], bool], *, limit: int,
                   prog: "Program | None" = None, what: str = "wait list") -> list[int]:
    """The nodes of the ring through `node` (a waiter's list node) that are not waiters: the
    list head(s). Bounded by `limit` nodes; a ring that does not come back to `node`, a
    NULL or an unreadable link raises CorruptKernelDataError (kernel/lists.py's walk)."""
    walker = prog if prog is not None else _PointerReader(read_pointer)
    return [n for n in list_nodes(walker, node, what=what, limit=limit)  # type: ignore[arg-type]
            if not is_waiter_node(n)]


class _PointerReader:
    """The two calls kernel/lists.py's walk makes of a Program, over a read function."""

    class _Space:
        pointer_size = 8

    space = _Space()

    def __init__(self, read_pointer: Callable[[int], int]) -> None:
        self._read = read_pointer

    def read_u64(self, addr: int) -> int:
        return self._read(addr)

    read_u32 = read_u64


@dataclass
class Wait:
    """What one blocked task waits on. `lock` is the lock object's address (the folio for a
    page lock); `owner` the decoded holder (0/None: nobody, or a kind without owners);
    `owner_known` whether the owner is a task in the task list."""

    kind: str
    frame: str | None
    lock: int | None = None
    lock_type: str | None = None
    name: str | None = None
    owner: int | None = None
    owner_flags: tuple[str, ...] = ()
    reader_owned: bool = False
    owner_known: bool = False
    waiter: int | None = None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "frame": self.frame,
                "lock": None if self.lock is None else f"{self.lock:#x}",
                "lock_type": self.lock_type, "name": self.name,
                "owner": None if not self.owner else f"{self.owner:#x}",
                "owner_flags": list(self.owner_flags), "reader_owned": self.reader_owned,
                "owner_known": self.owner_known,
                "waiter": None if self.waiter is None else f"{self.waiter:#x}",
                "problems": list(self.problems)}


def _symbol_name(prog: "Program", addr: int) -> str | None:
    """`zoo_m1` for a lock that is a global (or `name+0x10` inside one); for a module's data
    without data symbols (a kernel without CONFIG_KALLSYMS_ALL) `[zoo]+0x1170`, the offset
    from the module's base; None elsewhere (the heap, a stack)."""
    try:
        s = prog.symbols.lookup(addr)
    except (VmcorekitError, LookupError, AttributeError):
        s = None
    if s is not None and not s.is_text:
        off = addr - s.address
        return s.name if off == 0 else f"{s.name}+{off:#x}"
    for name, lo, hi in _module_ranges(prog):
        if lo <= addr < hi:
            return f"[{name}]+{addr - lo:#x}"
    return None


def _module_ranges(prog: "Program") -> list[tuple[str, int, int]]:
    def make() -> list[tuple[str, int, int]]:
        from ..program.modlist import program_modules
        out = []
        try:
            for m in program_modules(prog):
                if m.ranges:
                    base = m.ranges[0][0]
                    out.extend((m.name, base, b + n) for b, n in m.ranges if b >= base)
        except (VmcorekitError, LookupError):
            pass
        return out
    return prog.memo(("locks", "module ranges"), make)


def task_wait(prog: "Program", task: int, functions: list[str | None], stack: tuple[int, int],
              sp: int, task_stacks: Mapping[int, int], thread_size: int) -> Wait | None:
    """What the task at `task` (not running; its saved stack pointer `sp` within `stack`
    [lo, hi)) waits on, from its backtrace's `functions` and the waiter on its stack.
    `task_stacks` maps every known task_struct address to its stack base (to tell the other
    waiters of a list from its head and to validate owners). None: it waits on nothing we
    recognise (running, or asleep in a plain schedule)."""
    kind, frame = wait_kind(functions)
    lo, hi = stack
    if not (lo <= sp < hi):
        sp = lo
    try:
        raw = prog.read(sp, hi - sp)
    except MemoryReadError:
        return None if kind is None else Wait(kind.name, frame, problems=["stack unreadable"])
    kinds = [kind] if kind is not None else []
    if kind is None and base_function(frame) not in SLEEP_FUNCTIONS:
        kinds.append(_WAITQUEUE)
    problems: list[str] = []
    for k in kinds:
        w = _find_waiter(prog, k, task, raw, sp, task_stacks, thread_size, problems)
        if w is not None:
            w.frame = frame
            return w
    if kind is not None:
        return Wait(kind.name, frame, problems=[f"no {kind.waiter} for this task on its stack"]
                    + problems[-1:])
    if base_function(frame) in SLEEP_FUNCTIONS:
        return Wait("sleep", frame)
    return None


def _find_waiter(prog: "Program", k: WaitKind, task: int, raw: bytes, base: int,
                 task_stacks: Mapping[int, int], thread_size: int,
                 problems: list[str]) -> Wait | None:
    try:
        off_task = prog.offsetof(k.waiter, k.task_member)
        off_list = prog.offsetof(k.waiter, k.list_member)
        off_head = prog.offsetof(k.lock_type, k.lock_list) if k.lock_type else 0
    except (TypeLookupError, LookupError, VmcorekitError):
        return None
    ps = prog.platform.pointer_size
    fmt = prog.platform.unpack("Q" if ps == 8 else "I")
    limit = len(task_stacks) + 2  # a wait list holds each task at most once, plus its head

    def is_waiter_node(n: int) -> bool:
        # Another task's waiter: its task field names a known task whose stack holds it.
        try:
            t = prog.read_pointer(n - off_list + off_task)
        except MemoryReadError:
            return False
        b = task_stacks.get(t)
        return b is not None and b <= n < b + thread_size

    for pos in range(0, len(raw) - ps + 1, ps):
        if struct.unpack_from(fmt, raw, pos)[0] != task:
            continue
        waiter = base + pos - off_task
        node = waiter + off_list
        if not (base <= node < base + len(raw)):
            continue
        if k.lock_type is None:  # a page lock: the folio is in the waiter itself
            w = _folio_wait(prog, k, waiter, task)
            if w is not None:
                return w
            continue
        try:
            heads = find_list_head(prog.read_pointer, node, is_waiter_node, limit=limit,
                                   prog=prog, what=f"{k.lock_type} wait list")
        except CorruptKernelDataError as e:
            problems.append(str(e))  # said only if no candidate is the waiter
            continue
        if not heads:
            continue
        best = None
        for h in heads:  # one head in a sound list; prefer the one with a real owner
            lock = h - off_head
            ow = _owner(prog, k, lock)
            if best is None or (ow is not None and ow.task in task_stacks):
                best = (lock, ow)
        assert best is not None
        lock, ow = best
        w = Wait(k.name, None, lock=lock, lock_type=k.lock_type, name=_symbol_name(prog, lock),
                 waiter=waiter, problems=[f"{len(heads)} list heads in one wait ring"]
                 if len(heads) > 1 else [])
        if ow is not None:
            w.owner, w.owner_flags, w.reader_owned = ow.task, ow.flags, ow.reader_owned
            w.owner_known = ow.task in task_stacks
            if ow.task and not w.owner_known:
                w.problems.append(f"owner {ow.task:#x} is not a task in the task list")
        if k.name == "waitqueue" and w.name is None:
            continue  # an anonymous wait queue entry could be anything on the stack
        return w
    return None


def _owner(prog: "Program", k: WaitKind, lock: int) -> OwnerWord | None:
    if k.owner is None or k.lock_type is None:
        return None
    try:
        return k.owner(prog.read_pointer(lock + prog.offsetof(k.lock_type, "owner")))
    except (MemoryReadError, TypeLookupError, LookupError):
        return None


def _folio_wait(prog: "Program", k: WaitKind, waiter: int, task: int) -> Wait | None:
    """A wait_page_queue: validated by its wake function (wake_page_function)."""
    try:
        fn = prog.read_pointer(waiter + prog.offsetof(k.waiter, "wait.func"))
        s = prog.symbols.lookup(fn)
        if s is None or s.name != "wake_page_function":
            return None
        member = "folio" if prog.types.has_member(k.waiter, "folio") else "page"
        obj = prog.read_pointer(waiter + prog.offsetof(k.waiter, member))
        bit = prog.read_u32(waiter + prog.offsetof(k.waiter, "bit_nr"))
    except (MemoryReadError, TypeLookupError, LookupError, VmcorekitError):
        return None
    return Wait(k.name, None, lock=obj, lock_type=f"struct {member}", name=f"{member} bit {bit}",
                waiter=waiter)
