"""Lockups and stalls: which CPUs had stopped making progress at the crash, and for how long.

    softlockup_state(prog)   # SoftLockupState: now, threshold, each CPU's last watchdog touch
    rcu_gp_state(prog)       # RcuGpState: the grace period in flight, its age, who holds it up

Soft lockup (kernel/watchdog.c): each CPU's watchdog thread stamps the per-CPU
`watchdog_touch_ts` with get_timestamp() (running_clock() >> 30, about seconds) whenever it
gets to run; a CPU whose stamp is older than 2 * watchdog_thresh is stuck. "Now" is the
latest runqueue clock of any CPU (sched_clock, the same clock, in ns; a CPU with interrupts
off stops updating its own). A stamp of 0 (the watchdog never ran) or ULONG_MAX
(SOFTLOCKUP_DELAY_REPORT: touched, the next check starts over) says nothing.

RCU stall (kernel/rcu/tree*.c): a grace period is in flight when the low two bits of
rcu_state.gp_seq are not 0; it began at rcu_state.gp_start (jiffies); a CPU still owes a
quiescent state when its bit (rcu_data.grpmask) is set in its leaf rcu_node's `qsmask`.
rcu_state is found by symbol, else (a symbol table without it) from any CPU's
rcu_data.mynode: the root rcu_node is rcu_state.node[0].
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import MemoryReadError, TypeLookupError, VmcorekitError
from ..program.objects import Object
from . import cpus as _cpus
from .percpu import per_cpu

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["CpuWatch", "SoftLockupState", "softlockup_state", "RcuGpState", "rcu_gp_state",
           "DEFAULT_WATCHDOG_THRESH"]

DEFAULT_WATCHDOG_THRESH = 10  # kernel/watchdog.c's default, in seconds
_ULONG_MAX = (1 << 64) - 1
_MAX_RCU_LEVELS = 4  # RCU_NUM_LVLS is at most 4
_MAX_LAG = 10 ** 7  # seconds: a stamp this far off is no stamp


@dataclass(frozen=True)
class CpuWatch:
    cpu: int
    touch_ts: int  # seconds (running_clock >> 30)
    lag: int | None  # seconds since the last touch; None: unknown
    stuck: bool

    def as_dict(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "touch_ts": self.touch_ts, "lag_seconds": self.lag, "stuck": self.stuck}


@dataclass
class SoftLockupState:
    now: int | None  # seconds, running_clock >> 30
    threshold: int  # seconds (2 * watchdog_thresh)
    threshold_source: str
    cpus: list[CpuWatch] = field(default_factory=list)

    @property
    def stuck(self) -> list[CpuWatch]:
        return [c for c in self.cpus if c.stuck]

    def as_dict(self) -> dict[str, Any]:
        return {"now": self.now, "threshold_seconds": self.threshold,
                "threshold_source": self.threshold_source,
                "cpus": [c.as_dict() for c in self.cpus]}


def _now(prog: "Program") -> int | None:
    """The latest runqueue clock (ns) over the present CPUs, in running_clock >> 30 units."""
    best = None
    for cpu in _cpus.present_cpus(prog):
        rq = _cpus.runqueue(prog, cpu)
        if rq is None:
            continue
        try:
            c = int(rq.clock)
        except (MemoryReadError, VmcorekitError, LookupError):
            continue
        best = c if best is None else max(best, c)
    return None if best is None else best >> 30


def _threshold(prog: "Program") -> tuple[int, str]:
    addr = prog.try_symbol_address("watchdog_thresh")
    if addr is not None:
        try:
            t = prog.read_u32(addr)
            if 0 < t <= 60:  # proc_watchdog_thresh allows 0..60
                return 2 * t, "2 * watchdog_thresh"
        except MemoryReadError:
            pass
    return 2 * DEFAULT_WATCHDOG_THRESH, "2 * the default watchdog_thresh (the symbol is not in this dump)"


def softlockup_state(prog: "Program", threshold: int | None = None) -> SoftLockupState | None:
    """Each CPU's soft-lockup watchdog stamp and how stale it is; None when the kernel has no
    soft-lockup watchdog. `threshold` (seconds) overrides the dump's."""
    if prog.try_symbol_address("watchdog_touch_ts") is None:
        return None
    thr, how = _threshold(prog)
    if threshold is not None:
        thr, how = threshold, "given"
    st = SoftLockupState(now=_now(prog), threshold=thr, threshold_source=how)
    for cpu in _cpus.present_cpus(prog):
        try:
            ts = prog.read_u64(per_cpu(prog, "watchdog_touch_ts", cpu)) if prog.platform.pointer_size == 8 \
                else prog.read_u32(per_cpu(prog, "watchdog_touch_ts", cpu))
        except (VmcorekitError, LookupError):
            continue
        if ts in (0, _ULONG_MAX, 0xFFFFFFFF) or st.now is None:
            st.cpus.append(CpuWatch(cpu, ts, None, False))
            continue
        lag = st.now - ts
        if not -_MAX_LAG < lag < _MAX_LAG:
            st.cpus.append(CpuWatch(cpu, ts, None, False))
            continue
        st.cpus.append(CpuWatch(cpu, ts, max(lag, 0), lag >= thr))
    return st


@dataclass
class RcuGpState:
    name: str  # rcu_sched / rcu_preempt
    gp_seq: int
    in_progress: bool
    age_jiffies: int | None
    age_seconds: float | None
    holding: list[int]  # CPUs that still owe the grace period a quiescent state
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "gp_seq": self.gp_seq, "in_progress": self.in_progress,
                "age_jiffies": self.age_jiffies, "age_seconds": self.age_seconds,
                "holding_cpus": self.holding, "source": self.source}


def _rcu_state_address(prog: "Program") -> tuple[int | None, str]:
    addr = prog.try_symbol_address("rcu_state")
    if addr is not None:
        return addr, "rcu_state"
    if prog.try_symbol_address("rcu_data") is None:
        return None, "no rcu_state or rcu_data"
    off = prog.offsetof("struct rcu_state", "node")
    for cpu in _cpus.possible_cpus(prog)[:1]:
        rd = Object(prog, "struct rcu_data", address=per_cpu(prog, "rcu_data", cpu))
        node = int(rd.mynode)
        for _ in range(_MAX_RCU_LEVELS):
            if not node:
                break
            parent = int(Object(prog, "struct rcu_node", address=node).parent)
            if not parent:
                return node - off, "the root of rcu_data.mynode"
            node = parent
    return None, "the rcu_node tree has no root within 4 levels"


def rcu_gp_state(prog: "Program") -> RcuGpState | None:
    """The RCU grace period at the crash; None when the kernel's RCU state is not found."""
    from .sysinfo import kernel_hz, read_jiffies
    if not prog.has_btf:
        return None
    try:
        addr, source = _rcu_state_address(prog)
        if addr is None:
            return None
        rs = Object(prog, "struct rcu_state", address=addr)
        name = prog.read_cstring(int(rs.name), 16).decode("ascii", "replace")
        if not name.startswith("rcu_"):
            return None  # not an rcu_state: the walk was led astray
        gp_seq = int(rs.gp_seq)
        if gp_seq > _ULONG_MAX >> 1:
            gp_seq -= _ULONG_MAX + 1   # a signed long, as the kernel prints it (g=-479): it starts below 0
        in_progress = bool(gp_seq & 3)
        age = sec = None
        if in_progress:
            age = (read_jiffies(prog) - int(rs.gp_start)) & _ULONG_MAX
            if age > 1 << 62:
                age = None
            hz, _how = kernel_hz(prog)
            sec = round(age / hz, 1) if age is not None and hz else None
        holding = []
        if in_progress:
            for cpu in _cpus.possible_cpus(prog):
                rd = Object(prog, "struct rcu_data", address=per_cpu(prog, "rcu_data", cpu))
                try:
                    if int(rd.grpmask) & int(rd.mynode.qsmask):
                        holding.append(cpu)
                except MemoryReadError:
                    continue
        return RcuGpState(name, gp_seq, in_progress, age, sec, holding, source)
    except (TypeLookupError, MemoryReadError, VmcorekitError, LookupError):
        return None
