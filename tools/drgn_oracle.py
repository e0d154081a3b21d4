"""drgn oracle: reference outputs of drgn (never of vmcorekit) for one crash dump.

Run under drgn with the kernel's -dbg vmlinux:

    drgn -q -c DUMP -s VMLINUX tools/drgn_oracle.py OUTDIR

tools/make-dumps.sh and tools/make-dumps-arm64.sh run it in their `oracles` stage.  The set
of files follows the dump's architecture, so that each generator's expected/ keeps the names
and formats that the samples and the tests read:

  x86_64   drgn-tasks.tsv, drgn-dmesg.txt, drgn-crashed-thread.txt, drgn-misc.txt
  aarch64  tasks.tsv, modules.tsv, vtop.tsv, misc.txt, crashed-thread.txt

Every file is written whole (a failure leaves the earlier ones in place); one summary line
goes to stdout.
"""
import os
import sys

from drgn import FaultError
from drgn.helpers.linux.mm import follow_phys, virt_to_phys
from drgn.helpers.linux.module import for_each_module
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.printk import get_dmesg
from drgn.helpers.linux.sched import task_state_to_char


def write(out, name, data):
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(os.path.join(out, name), mode) as f:
        f.write(data)


def lines(rows):
    return "\n".join(rows) + "\n"


def sorted_tasks(prog):
    return sorted(for_each_task(prog), key=lambda t: (t.pid.value_(), t.value_()))


def task_table(tasks, header):
    """One row per task: pid, tgid, parent's pid, state letter, task_struct address, comm."""
    rows = [header]
    for t in tasks:
        rows.append("%d\t%d\t%d\t%s\t%#x\t%s" % (
            t.pid, t.tgid, t.real_parent.pid, task_state_to_char(t), t.value_(),
            t.comm.string_().decode(errors="backslashreplace")))
    return rows


# NAME=value lines of drgn-read kernel variables; each architecture picks its own list.
MISC = {
    "uts_release": lambda p: p["init_uts_ns"].name.release.string_().decode(),
    "init_task": lambda p: "%#x" % p["init_task"].address_,
    "swapper_pg_dir": lambda p: "%#x" % p.symbol("swapper_pg_dir").address,
    "init_mm.pgd": lambda p: "%#x" % p["init_mm"].pgd.value_(),
    "jiffies": lambda p: "%d" % p["jiffies"].value_(),
    "nr_threads": lambda p: "%d" % p["nr_threads"].value_(),
    "nr_cpu_ids": lambda p: "%d" % p["nr_cpu_ids"].value_(),
    "panic_cpu": lambda p: "%d" % p["panic_cpu"].counter.value_(),
    "memstart_addr": lambda p: "%#x" % p["memstart_addr"].value_(),
    "kimage_voffset": lambda p: "%#x" % p["kimage_voffset"].value_(),
}


def misc(prog, names):
    return ["%s=%s" % (n, MISC[n](prog)) for n in names]


def oracle_x86_64(prog, out):
    tasks = sorted_tasks(prog)
    write(out, "drgn-tasks.tsv", lines(task_table(tasks, "pid\ttgid\tppid\tstate\ttask\tcomm")))
    write(out, "drgn-dmesg.txt", get_dmesg(prog))
    ct = prog.crashed_thread()
    write(out, "drgn-crashed-thread.txt", "pid %d comm %s\n%s\n" % (
        ct.tid, ct.object.comm.string_().decode(), ct.stack_trace()))
    write(out, "drgn-misc.txt", lines(misc(prog, (
        "uts_release", "jiffies", "init_task", "nr_threads", "panic_cpu"))))
    return "%d tasks" % len(tasks)


def arm64_translations(prog, tasks):
    """Virtual -> physical through the page tables (drgn's follow_phys walks them): image
    symbols, linear-map task_structs, vmalloc'd stacks, module structs (through
    swapper_pg_dir) and user addresses of the shells (through their mm->pgd).  ROOT is the
    physical address of the page-table root walked."""
    init_mm = prog["init_mm"].address_of_()
    rows = ["KIND\tVADDR\tPADDR\tROOT"]

    def add(kind, va, mm=init_mm):
        if mm == init_mm:  # swapper_pg_dir is in the kernel image, outside the linear map
            root = mm.pgd.value_() - prog["kimage_voffset"].value_()
        else:
            root = virt_to_phys(mm.pgd).value_()
        try:
            rows.append("%s\t%#x\t%#x\t%#x" % (kind, va, follow_phys(mm, va).value_(), root))
        except FaultError:
            rows.append("%s\t%#x\tFAULT\t%#x" % (kind, va, root))

    add("image:init_task", prog["init_task"].address_)
    add("image:swapper_pg_dir", prog.symbol("swapper_pg_dir").address)
    add("image:jiffies", prog["jiffies"].address_)
    add("linear:mem_section", prog["mem_section"].value_())
    for t in tasks[1:6]:
        add("linear:task %d" % t.pid.value_(), t.value_())
        add("vmalloc:stack %d" % t.pid.value_(), t.stack.value_())
    for m in for_each_module(prog):
        add("module:%s" % m.name.string_().decode(), m.value_())
    for t in tasks:
        if t.mm and t.comm.string_() == b"sh":
            mm = t.mm
            add("user:pid %d arg_start" % t.pid.value_(), mm.arg_start.value_(), mm)
            add("user:pid %d start_brk" % t.pid.value_(), mm.start_brk.value_(), mm)
    return rows


def oracle_aarch64(prog, out):
    tasks = sorted_tasks(prog)
    rows = task_table(tasks, "PID\tTGID\tPPID\tST\tTASK\tCOMM")
    write(out, "tasks.tsv", lines(rows))

    mods = ["NAME\tBASE\tSIZE\tSTRUCT_MODULE"]
    for m in for_each_module(prog):
        # struct module_layout core_layout until 6.3; mem[MOD_TEXT] (index 0) from 6.4
        lay = m.core_layout if hasattr(m, "core_layout") else m.mem[0]
        mods.append("%s\t%#x\t%d\t%#x" % (m.name.string_().decode(), lay.base.value_(),
                                          lay.size.value_(), m.value_()))
    write(out, "modules.tsv", lines(mods))

    vt = arm64_translations(prog, tasks)
    write(out, "vtop.tsv", lines(vt))
    write(out, "misc.txt", lines(misc(prog, (
        "uts_release", "init_task", "swapper_pg_dir", "init_mm.pgd", "jiffies", "nr_cpu_ids",
        "panic_cpu", "memstart_addr", "kimage_voffset"))))

    # The panicking CPU's registers as QEMU's PRSTATUS gave them, and drgn's unwind.
    regs = []
    for cpu in range(prog["nr_cpu_ids"].value_()):
        try:
            th = prog.crashed_thread() if cpu == prog["panic_cpu"].counter.value_() else None
        except Exception:
            th = None
        if th is not None:
            f0 = th.stack_trace()[0]
            regs.append("crashed cpu %d pid %d pc=%#x sp=%#x" % (cpu, th.tid, f0.pc, f0.sp))
            regs.append(" ".join("%s=%#x" % kv for kv in sorted(f0.registers().items())))
            regs.append(str(th.stack_trace()))
    write(out, "crashed-thread.txt", lines(regs))
    return "%d tasks, %d modules, %d translations" % (len(rows) - 1, len(mods) - 1, len(vt) - 1)


ORACLES = {"x86_64": oracle_x86_64, "aarch64": oracle_aarch64}


def main(prog, argv):
    if len(argv) != 1:
        raise SystemExit("usage: drgn -q -c DUMP -s VMLINUX %s OUTDIR" % sys.argv[0])
    arch = prog.platform.arch.name.lower()     # drgn.Architecture.X86_64 / AARCH64
    if arch not in ORACLES:
        raise SystemExit("drgn oracle: no oracle set for architecture %s" % arch)
    out = argv[0]
    os.makedirs(out, exist_ok=True)
    print("drgn oracle: " + ORACLES[arch](prog, out))


if __name__ == "__main__":
    _prog = globals().get("prog")   # drgn puts the Program into a script's globals as `prog`
    if _prog is None:
        raise SystemExit("run under drgn: drgn -q -c DUMP -s VMLINUX %s OUTDIR" % sys.argv[0])
    main(_prog, sys.argv[1:])
