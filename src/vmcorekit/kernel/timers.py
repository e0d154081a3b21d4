"""Pending timers, as crash's `timer` (the timer wheel) and `timer -r` (hrtimers) list them.

    timer_wheel(prog)      # [TimerBase]: per CPU and base (BASE_STD, BASE_DEF, ...), its timers
    hrtimer_bases(prog)    # [HrtimerBase]: per CPU and clock, the queued hrtimers in expiry order

Wheel: per-CPU timer_bases[NR_BASES], each with vectors[WHEEL_SIZE] hlist buckets of
timer_list (entry, expires in jiffies, function). hrtimers: per-CPU hrtimer_bases, whose
clock_base[] each hold a timerqueue (an rbtree ordered by expiry) of struct hrtimer; a
clock's current time is the timekeeper's last monotonic reading (tk_core.timekeeper.tkr_mono:
base + xtime_nsec >> shift) plus the clock's offset. Every walk is bounded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import CorruptKernelDataError, MemoryReadError, TypeLookupError, VmcorekitError, partial_result
from ..program.objects import Object
from .lists import hlist_nodes, rbtree_nodes

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["Timer", "TimerBase", "HrtimerBase", "timer_wheel", "hrtimer_bases", "jiffies", "MAX_TIMERS"]

MAX_TIMERS = 1 << 16  # per base: far more than a machine keeps pending
_BASE_NAMES = ("BASE_STD", "BASE_DEF", "BASE_LOCAL")
_CLOCK_NAMES = {0: "REALTIME", 1: "MONOTONIC", 7: "BOOTTIME", 11: "TAI"}


@dataclass
class Timer:
    address: int
    expires: int  # jiffies (wheel) or ns (hrtimer)
    softexpires: int | None
    function: int
    symbol: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"timer": self.address, "expires": self.expires, "softexpires": self.softexpires,
                "function": self.function, "symbol": self.symbol}


@dataclass
class TimerBase:
    cpu: int
    index: int
    name: str
    address: int
    timers: list[Timer] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "index": self.index, "name": self.name, "base": self.address,
                "timers": [t.as_dict() for t in self.timers]}


@dataclass
class HrtimerBase:
    cpu: int
    index: int
    clockid: int
    address: int
    get_time: str | None
    now: int | None
    timers: list[Timer] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "index": self.index, "clockid": self.clockid, "base": self.address,
                "get_time": self.get_time, "now": self.now, "timers": [t.as_dict() for t in self.timers]}


def jiffies(prog: "Program") -> int:
    a = prog.try_symbol_address("jiffies_64") or prog.symbol_address("jiffies")
    return prog.read_u64(a) if prog.space.pointer_size == 8 else prog.read_u32(a)


def _cpus(prog: "Program") -> list[int]:
    from .cpus import possible_cpus
    return possible_cpus(prog)


def timer_wheel(prog: "Program", *, limit: int = MAX_TIMERS) -> list[TimerBase]:
    """Every CPU's wheel bases with their pending timers, sorted by expiry."""
    from .percpu import per_cpu
    if not prog.has_btf:
        raise TypeLookupError("timers need struct timer_base's layout, which only BTF gives")
    size = prog.types.sizeof("struct timer_base")
    sym = prog.symbols.get("timer_bases")
    nbases = max(1, min((sym.size // size) if sym is not None and sym.size else 1, len(_BASE_NAMES)))
    vec = prog.types.lookup("struct timer_base").member("vectors").type.strip_typedefs()
    nvec = min(vec.length or 0, 4096)
    o_vec = prog.offsetof("struct timer_base", "vectors")
    hsize = prog.types.sizeof("struct hlist_head")
    o_entry = prog.offsetof("struct timer_list", "entry")
    out: list[TimerBase] = []
    for cpu in _cpus(prog):
        for b in range(nbases):
            addr = per_cpu(prog, "timer_bases", cpu) + b * size
            tb = TimerBase(cpu, b, _BASE_NAMES[b], addr)
            try:
                for v in range(nvec):
                    for node in hlist_nodes(prog, addr + o_vec + v * hsize,
                                            what=f"cpu {cpu} {tb.name} bucket {v}", limit=limit):
                        t = Object(prog, "struct timer_list", address=node - o_entry)
                        fn = int(t.function)
                        tb.timers.append(Timer(t.address_, int(t.expires), None, fn,
                                               prog.symbols.symbolize(fn)))
                        if len(tb.timers) > limit:
                            raise CorruptKernelDataError(f"cpu {cpu} {tb.name}: more than {limit} timers")
            except (MemoryReadError, CorruptKernelDataError) as e:
                partial_result(f"timer wheel: {e} (after {len(tb.timers)} timers)")
            tb.timers.sort(key=lambda t: t.expires)
            out.append(tb)
    return out


def _mono_base(prog: "Program") -> int | None:
    """The timekeeper's last CLOCK_MONOTONIC reading, ns. tk_core is `struct tk_data` from
    6.13; before, an unnamed struct whose timekeeper follows a seqcount_raw_spinlock_t."""
    try:
        a = prog.symbol_address("tk_core")
        T = prog.types
        if T.has_member("struct tk_data", "timekeeper"):
            a += prog.offsetof("struct tk_data", "timekeeper")
        else:
            a += -(-T.sizeof("seqcount_raw_spinlock_t") // 8) * 8
        tkr = Object(prog, "struct timekeeper", address=a).tkr_mono
        # ktime_get() without the clocksource cycles since the last update
        v = int(tkr.base) + (int(tkr.xtime_nsec) >> int(tkr.shift))
    except (VmcorekitError, LookupError):
        return None
    return v if 0 < v < 1 << 62 else None


def hrtimer_bases(prog: "Program", *, limit: int = MAX_TIMERS) -> list[HrtimerBase]:
    """Every CPU's hrtimer clock bases with their queued timers, in expiry order."""
    from .percpu import per_cpu
    if not prog.has_btf:
        raise TypeLookupError("hrtimers need struct hrtimer_cpu_base's layout, which only BTF gives")
    cb = prog.types.lookup("struct hrtimer_cpu_base").member("clock_base").type.strip_typedefs()
    nclk = min(cb.length or 0, 16)
    o_cb = prog.offsetof("struct hrtimer_cpu_base", "clock_base")
    csize = prog.types.sizeof("struct hrtimer_clock_base")
    o_node = prog.offsetof("struct hrtimer", "node")
    mono = _mono_base(prog)
    out: list[HrtimerBase] = []
    for cpu in _cpus(prog):
        base = per_cpu(prog, "hrtimer_bases", cpu)
        for i in range(nclk):
            addr = base + o_cb + i * csize
            c = Object(prog, "struct hrtimer_clock_base", address=addr)
            gt = int(c.get_time)
            hb = HrtimerBase(cpu, i, int(c.clockid), addr, prog.symbols.symbolize(gt) if gt else None,
                             None if mono is None else mono + int(c.offset))
            try:
                for node in rbtree_nodes(prog, c.active.address_, what=f"cpu {cpu} hrtimer clock {i}",
                                         limit=limit):
                    h = Object(prog, "struct hrtimer", address=node - o_node)
                    fn = int(h.function)
                    hb.timers.append(Timer(h.address_, int(h.node.expires), int(h._softexpires), fn,
                                           prog.symbols.symbolize(fn)))
            except (MemoryReadError, CorruptKernelDataError) as e:
                partial_result(f"hrtimers: {e} (after {len(hb.timers)} timers)")
            out.append(hb)
    return out
