"""What crash's `sys` shows: release, node name, CPUs, date, uptime, load, memory, the panic
(whose message kernel/panic.py finds).

    system_info(prog)         # SystemInfo with every field (and why a field is missing)
    uts(prog)                 # {'sysname': 'Linux', 'nodename': ..., 'release': ..., ...}
    kernel_hz(prog)           # (250, 'tick_nsec')
    uptime(prog)              # Uptime(seconds, source, ...)

Uptime follows crash: (jiffies - INITIAL_JIFFIES) / HZ, INITIAL_JIFFIES being -300 s worth of
jiffies. HZ is not in VMCOREINFO or BTF (it is a #define), so it is derived from the dump:
CONFIG_HZ from the in-kernel config (CONFIG_IKCONFIG) when the kernel carries one, else from
`tick_nsec` (kernel/time/ntp.c keeps it at NSEC_PER_SEC / HZ, adjusted by at most NTP's
500 ppm, so rounding 1e9 / tick_nsec gives HZ exactly), else by fitting jiffies against the
timekeeper's monotonic clock. The timekeeper (tk_core.timekeeper) gives its own uptime
(monotonic seconds + offs_boot) too; it is reported alongside, and used when HZ is unknown.
crash and this tool use jiffies because the timekeeper's seconds are only updated once per
second while jiffies tick HZ times a second.
"""
from __future__ import annotations

import re
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import MemoryReadError, TypeLookupError, VmcorekitError
from ..program.objects import Object
from . import cpus as _cpus
from .memmap import node_pgdats
from . import panic as _panic

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["system_info", "SystemInfo", "uts", "kernel_hz", "read_jiffies", "uptime", "Uptime",
           "crash_time", "load_average", "cpu_mhz", "memory_size", "tainted", "format_uptime",
           "format_size", "timekeeper", "COMMON_HZ"]

UTS_FIELDS = ("sysname", "nodename", "release", "version", "machine", "domainname")
_UTS_LEN = 65  # __NEW_UTS_LEN + 1: struct new_utsname is six such arrays (ABI)
FSHIFT = 11  # load average fixed point (include/linux/sched/loadavg.h)
COMMON_HZ = (24, 32, 48, 64, 100, 128, 200, 250, 256, 300, 500, 512, 1000, 1024, 1200)
_NSEC = 1_000_000_000


# -- utsname ----------------------------------------------------------------------------------
def uts(prog: "Program") -> dict[str, str]:
    """init_uts_ns.name, field by field (struct new_utsname is ABI: six char[65])."""
    base = prog.try_symbol_address("init_uts_ns")
    if base is None:
        raise VmcorekitError("init_uts_ns not found (neither in VMCOREINFO nor the symbols)")
    off = prog.vmcoreinfo.offsets.get("uts_namespace.name")
    if off is None:
        off = prog.try_offsetof("struct uts_namespace", "name")
    if off is None:
        raise TypeLookupError("offset of uts_namespace.name unknown (no VMCOREINFO entry, no BTF)")
    raw = prog.read(base + off, _UTS_LEN * len(UTS_FIELDS))
    return {k: raw[i * _UTS_LEN:(i + 1) * _UTS_LEN].split(b"\0", 1)[0].decode("utf-8", "replace")
            for i, k in enumerate(UTS_FIELDS)}


# -- time -------------------------------------------------------------------------------------
def read_jiffies(prog: "Program") -> int:
    """jiffies_64 (the 64-bit count on every architecture)."""
    for name in ("jiffies_64", "jiffies"):
        addr = prog.try_symbol_address(name)
        if addr is not None:
            return prog.read_u64(addr) if name == "jiffies_64" or prog.space.pointer_size == 8 \
                else prog.read_u32(addr)
    raise VmcorekitError("neither jiffies_64 nor jiffies is in the symbol table")


def _ikconfig(prog: "Program") -> str | None:
    """The kernel's .config when built with CONFIG_IKCONFIG (gzip between IKCFG_ST/IKCFG_ED)."""
    start = prog.try_symbol_address("kernel_config_data")
    if start is None:
        return None
    end = prog.try_symbol_address("kernel_config_data_end")
    size = (end - start) if end is not None and 0 < end - start <= 4 << 20 else 256 << 10
    try:
        raw = prog.read(start, size)
    except MemoryReadError:
        return None
    i = raw.find(b"\x1f\x8b")
    if i < 0:
        return None
    try:
        d = zlib.decompressobj(31)
        return d.decompress(raw[i:], 16 << 20).decode("utf-8", "replace")
    except zlib.error:
        return None


def timekeeper(prog: "Program") -> Object | None:
    """The live struct timekeeper (tk_core.timekeeper; shadow_timekeeper when tk_core's copy
    does not look right). None without BTF."""
    if not prog.has_btf:
        return None
    T = prog.types
    try:
        tk_type = T.lookup("struct timekeeper")
    except TypeLookupError:
        return None
    cands: list[Object] = []
    core = prog.try_symbol_address("tk_core")
    if core is not None:
        try:  # 6.13+: static struct tk_data tk_core, a named type
            cands.append(Object(prog, tk_type, address=core + T.offsetof("struct tk_data",
                                                                          "timekeeper")))
        except TypeLookupError:
            # static struct { seqcount_raw_spinlock_t seq; struct timekeeper timekeeper; }
            # tk_core (anonymous): the timekeeper follows the counter at the next 8 bytes.
            for seq_t in ("seqcount_raw_spinlock_t", "seqcount_t"):
                try:
                    off = -(-T.sizeof(seq_t) // 8) * 8
                    cands.append(Object(prog, tk_type, address=core + off))
                    break
                except TypeLookupError:
                    continue
    shadow = prog.try_symbol_address("shadow_timekeeper")
    if shadow is not None:
        cands.append(Object(prog, tk_type, address=shadow))
    for tk in cands:
        try:
            sec = int(tk.xtime_sec)
            if 0 < sec < 1 << 40 and 0 <= int(tk.ktime_sec) < 1 << 40:
                return tk
        except (VmcorekitError, LookupError):
            continue
    return None


def kernel_hz(prog: "Program") -> tuple[int | None, str]:
    """(HZ, how it was found) — see the module docstring for the order and why."""
    cfg = _ikconfig(prog)
    if cfg is not None:
        m = re.search(r"^CONFIG_HZ=(\d+)$", cfg, re.M)
        if m:
            return int(m.group(1)), "CONFIG_HZ (in-kernel config)"
    addr = prog.try_symbol_address("tick_nsec")
    if addr is not None:
        try:
            tn = prog.read_u64(addr) if prog.space.pointer_size == 8 else prog.read_u32(addr)
        except MemoryReadError:
            tn = 0
        if 100_000 <= tn <= 50_000_000:  # HZ 20..10000
            return round(_NSEC / tn), f"tick_nsec ({tn} ns per tick)"
    tk = timekeeper(prog)
    if tk is not None:
        try:
            mono = int(tk.ktime_sec)
            j = read_jiffies(prog)
        except (VmcorekitError, LookupError):
            mono, j = 0, 0
        if mono >= 10:
            best = min(COMMON_HZ, key=lambda hz: abs(_jiffies_since_boot(j, hz) / hz - mono))
            err = abs(_jiffies_since_boot(j, best) / best - mono)
            if err < 2:
                return best, f"fit of jiffies to the timekeeper's {mono} s (off by {err:.2f} s)"
    return None, "HZ unknown: no in-kernel config, no tick_nsec, no timekeeper to fit"


def _jiffies_since_boot(jiffies: int, hz: int, bits: int = 64) -> int:
    # INITIAL_JIFFIES = (unsigned long)(unsigned int)(-300 * HZ): jiffies wrap 5 minutes in.
    initial = (-300 * hz) & 0xFFFFFFFF
    return (jiffies - initial) & ((1 << bits) - 1)


@dataclass
class Uptime:
    seconds: float | None  # what is shown: from jiffies when HZ is known
    source: str
    jiffies: int | None = None
    hz: int | None = None
    hz_source: str = ""
    timekeeper_seconds: float | None = None  # boottime: monotonic + offs_boot


def uptime(prog: "Program") -> Uptime:
    hz, how = kernel_hz(prog)
    try:
        j: int | None = read_jiffies(prog)
    except (VmcorekitError, MemoryReadError):
        j = None
    tk_s: float | None = None
    tk = timekeeper(prog)
    if tk is not None:
        try:
            ns = int(tk.ktime_sec) * _NSEC + int(tk.offs_boot)
            tk_s = ns / _NSEC
        except (VmcorekitError, LookupError):
            tk_s = None
    if hz and j is not None:
        secs = _jiffies_since_boot(j, hz, prog.space.pointer_size * 8) / hz
        return Uptime(secs, f"jiffies / HZ ({how})", j, hz, how, tk_s)
    if tk_s is not None:
        return Uptime(tk_s, "timekeeper (monotonic + offs_boot)", j, hz, how, tk_s)
    return Uptime(None, how, j, hz, how, None)


def crash_time(prog: "Program") -> tuple[int | None, str]:
    """(seconds since the epoch at the crash, source): VMCOREINFO's CRASHTIME (written by
    the crashing kernel), else the timekeeper's wall clock (xtime_sec)."""
    ct = getattr(prog.vmcoreinfo, "crashtime", None)
    if ct:
        return int(ct), "VMCOREINFO CRASHTIME"
    tk = timekeeper(prog)
    if tk is not None:
        try:
            return int(tk.xtime_sec), "timekeeper xtime_sec"
        except (VmcorekitError, LookupError):
            pass
    return None, "no CRASHTIME in VMCOREINFO and no readable timekeeper"


def load_average(prog: "Program") -> tuple[float, float, float] | None:
    """avenrun[] as /proc/loadavg rounds it (fixed point, FSHIFT bits)."""
    addr = prog.try_symbol_address("avenrun")
    if addr is None:
        return None
    ps = prog.space.pointer_size
    try:
        raw = prog.read(addr, 3 * ps)
    except MemoryReadError:
        return None
    vals = struct.unpack("<3Q" if ps == 8 else "<3I", raw)
    out = []
    for v in vals:
        v += (1 << FSHIFT) // 200  # round to 2 decimals, as the kernel does
        out.append((v >> FSHIFT) + (((v & ((1 << FSHIFT) - 1)) * 100) >> FSHIFT) / 100)
    return out[0], out[1], out[2]


def cpu_mhz(prog: "Program") -> int | None:
    """x86's calibrated CPU clock (cpu_khz / 1000), as crash's MACHINE line shows it."""
    addr = prog.try_symbol_address("cpu_khz")
    if addr is None:
        return None
    try:
        khz = prog.read_u32(addr)
    except MemoryReadError:
        return None
    return khz // 1000 if khz else None


def memory_size(prog: "Program") -> tuple[int | None, str]:
    """(bytes of RAM, source): the present pages of every online node, as crash counts them;
    without BTF, the RAM ranges the dump itself holds."""
    if prog.has_btf:
        try:
            total = 0
            for pgdat in node_pgdats(prog):
                o = Object(prog, "struct pglist_data", address=pgdat)
                total += int(o.node_present_pages)
            if total:
                return total * prog.page_size, "node_present_pages"
        except (VmcorekitError, LookupError):
            pass
    try:
        total = sum(r.size for r in prog.phys.ranges())
        return total, "RAM ranges in the dump"
    except (VmcorekitError, AttributeError, TypeError, ValueError):
        return None, "unknown"


def tainted(prog: "Program") -> tuple[int | None, str, list[str]]:
    """(tainted_mask, the kernel's "Tainted:" letters, letters set)."""
    from .modules import decode_taint
    addr = prog.try_symbol_address("tainted_mask")
    if addr is None:
        return None, "", []
    try:
        mask = prog.read_pointer(addr)
    except MemoryReadError:
        return None, "", []
    text, letters = decode_taint(prog, mask)
    return mask, text, letters


# -- formatting like crash --------------------------------------------------------------------
def format_uptime(seconds: float) -> str:
    """crash's form: "HH:MM:SS", with "N days, " in front past a day."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{days} days, " if days else "") + f"{h:02d}:{m:02d}:{s:02d}"


def format_size(nbytes: int) -> str:
    """crash's pages_to_size(): "0", "516.4 MB", "2 GB" (a ".0" is dropped), "640 KB"."""
    if nbytes == 0:
        return "0"
    gib, mib = 1 << 30, 1 << 20
    if nbytes >= gib:
        s = f"{nbytes / gib:.1f} GB"
    elif nbytes >= mib:
        s = f"{nbytes / mib:.1f} MB"
    else:
        s = f"{nbytes // 1024} KB"
    return s.replace(".0 ", " ", 1)


# -- everything -------------------------------------------------------------------------------
@dataclass
class SystemInfo:
    uts: dict[str, str] = field(default_factory=dict)
    cpus: int | None = None  # present CPUs
    cpus_offline: list[int] = field(default_factory=list)
    crash_time: int | None = None
    crash_time_source: str = ""
    uptime: Uptime | None = None
    load_average: tuple[float, float, float] | None = None
    tasks: int | None = None
    cpu_mhz: int | None = None
    memory_bytes: int | None = None
    memory_source: str = ""
    panic: "_panic.PanicMessage | None" = None
    panic_cpu: int | None = None
    panic_pid: int | None = None
    panic_comm: str | None = None
    tainted_mask: int | None = None
    taint_text: str = ""
    taint_letters: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Fields that could not be found (an error, not an absent fact), each with why: in a
    # damaged dump these are gaps in the answer.
    unknown: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        u = self.uptime
        return {
            **{k: self.uts.get(k) for k in UTS_FIELDS},
            "cpus": self.cpus, "cpus_offline": self.cpus_offline,
            "crash_time": self.crash_time, "crash_time_source": self.crash_time_source,
            "date": None if self.crash_time is None else
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.crash_time)),
            "uptime_seconds": None if u is None else u.seconds,
            "uptime_source": None if u is None else u.source,
            "uptime_timekeeper_seconds": None if u is None else u.timekeeper_seconds,
            "jiffies": None if u is None else u.jiffies, "hz": None if u is None else u.hz,
            "hz_source": None if u is None else u.hz_source,
            "load_average": self.load_average, "tasks": self.tasks, "cpu_mhz": self.cpu_mhz,
            "memory_bytes": self.memory_bytes, "memory_source": self.memory_source,
            "panic": None if self.panic is None else {
                "message": self.panic.message, "cause": self.panic.cause,
                "timestamp_ns": self.panic.timestamp_ns, "caller": self.panic.caller,
                "notes": self.panic.notes},
            "panic_cpu": self.panic_cpu, "panic_pid": self.panic_pid,
            "panic_comm": self.panic_comm,
            "tainted_mask": self.tainted_mask, "taint": self.taint_letters,
            "warnings": self.warnings, "unknown": self.unknown,
        }


def _has(prog: "Program", name: str) -> bool:
    """Whether the kernel has symbol `name` (an unreadable symbol table: as far as is known, yes)."""
    try:
        return prog.try_symbol_address(name) is not None
    except (VmcorekitError, LookupError):
        return True


def system_info(prog: "Program", *, count_tasks: bool = True) -> SystemInfo:
    """Every `sys` field; a field that cannot be found is None with a line in `warnings`."""
    si = SystemInfo()
    w = si.warnings

    def attempt(what: str, fn: Any) -> Any:
        try:
            return fn()
        except (VmcorekitError, LookupError, ValueError) as e:
            w.append(f"{what}: {e}")
            si.unknown.append(f"{what}: {e}")
            return None

    si.uts = attempt("utsname", lambda: uts(prog)) or {}
    present = attempt("CPUs", lambda: _cpus.present_cpus(prog))
    if present is not None:
        si.cpus = len(present)
        si.cpus_offline = attempt("online CPUs", lambda: _cpus.offline_cpus(prog)) or []
    si.crash_time, si.crash_time_source = attempt("crash time", lambda: crash_time(prog)) or (
        None, "unreadable")
    si.uptime = attempt("uptime", lambda: uptime(prog))
    if si.uptime is not None and si.uptime.seconds is None:
        w.append(f"uptime: {si.uptime.source}")
    si.load_average = attempt("load average", lambda: load_average(prog))
    si.cpu_mhz = attempt("CPU clock", lambda: cpu_mhz(prog))
    si.memory_bytes, si.memory_source = attempt("memory", lambda: memory_size(prog)) or (None, "unreadable")
    if count_tasks:
        from .tasks import task_table
        rows = attempt("tasks", lambda: task_table(prog))
        si.tasks = None if rows is None else len(rows)
    si.panic = attempt("panic message", lambda: _panic.panic_message(prog))
    ctx = attempt("panic CPU", lambda: _panic.crash_context(prog))
    if ctx is not None:
        si.panic_cpu = ctx.cpu
        if ctx.task is not None:
            si.panic_pid = ctx.pid
            si.panic_comm = attempt("panic task", lambda: ctx.task.comm.string_().decode(
                "utf-8", "backslashreplace"))
        w.extend(ctx.notes)
    mask = attempt("taint", lambda: tainted(prog))
    if mask is not None:
        si.tainted_mask, si.taint_text, si.taint_letters = mask
    for what, missing, why in (
            ("crash time", si.crash_time is None, si.crash_time_source),
            ("uptime", si.uptime is not None and si.uptime.seconds is None,
             si.uptime.source if si.uptime else ""),
            ("memory", si.memory_bytes is None, si.memory_source),
            ("load average", si.load_average is None and _has(prog, "avenrun"), "avenrun unreadable"),
            ("taint", si.tainted_mask is None and _has(prog, "tainted_mask"), "tainted_mask unreadable")):
        if missing and not any(u.startswith(what + ":") for u in si.unknown):
            si.unknown.append(f"{what}: {why}")
    return si
