# drgn oracle for an arm64 dump: drgn -q -c DUMP -s VMLINUX drgn-oracle.py OUTDIR
import os, sys
from drgn import FaultError
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.sched import task_state_to_char
from drgn.helpers.linux.module import for_each_module
from drgn.helpers.linux.mm import follow_phys, virt_to_phys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)

def w(name, text):
    with open(os.path.join(out, name), "w") as f:
        f.write(text)

rows = ["PID\tTGID\tPPID\tST\tTASK\tCOMM"]
tasks = sorted(for_each_task(prog), key=lambda t: (t.pid.value_(), t.value_()))
for t in tasks:
    rows.append("%d\t%d\t%d\t%s\t%#x\t%s" % (
        t.pid, t.tgid, t.real_parent.pid, task_state_to_char(t), t.value_(),
        t.comm.string_().decode(errors="backslashreplace")))
w("tasks.tsv", "\n".join(rows) + "\n")

mods = ["NAME\tBASE\tSIZE\tSTRUCT_MODULE"]
for m in for_each_module(prog):
    # struct module_layout core_layout until 6.3; mem[MOD_TEXT] (index 0) from 6.4
    lay = m.core_layout if hasattr(m, "core_layout") else m.mem[0]
    mods.append("%s\t%#x\t%d\t%#x" % (m.name.string_().decode(), lay.base.value_(), lay.size.value_(),
                                      m.value_()))
w("modules.tsv", "\n".join(mods) + "\n")

# Virtual -> physical through page tables (drgn's follow_phys walks them). ROOT is the
# physical address of the page-table root walked: swapper_pg_dir, or a process's mm->pgd.
init_mm = prog["init_mm"].address_of_()
vt = ["KIND\tVADDR\tPADDR\tROOT"]
def add(kind, va, mm=init_mm):
    if mm == init_mm:  # swapper_pg_dir is in the kernel image, outside the linear map
        root = mm.pgd.value_() - prog["kimage_voffset"].value_()
    else:
        root = virt_to_phys(mm.pgd).value_()
    try:
        vt.append("%s\t%#x\t%#x\t%#x" % (kind, va, follow_phys(mm, va).value_(), root))
    except FaultError:
        vt.append("%s\t%#x\tFAULT\t%#x" % (kind, va, root))
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
w("vtop.tsv", "\n".join(vt) + "\n")
pgd = init_mm.pgd

misc = [
    "uts_release=%s" % prog["init_uts_ns"].name.release.string_().decode(),
    "init_task=%#x" % prog["init_task"].address_,
    "swapper_pg_dir=%#x" % prog.symbol("swapper_pg_dir").address,
    "init_mm.pgd=%#x" % pgd.value_(),
    "jiffies=%d" % prog["jiffies"].value_(),
    "nr_cpu_ids=%d" % prog["nr_cpu_ids"].value_(),
    "panic_cpu=%d" % prog["panic_cpu"].counter.value_(),
    "memstart_addr=%#x" % prog["memstart_addr"].value_(),
    "kimage_voffset=%#x" % prog["kimage_voffset"].value_(),
]
w("misc.txt", "\n".join(misc) + "\n")

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
w("crashed-thread.txt", "\n".join(regs) + "\n")
print("drgn oracle: %d tasks, %d modules, %d translations" % (len(rows) - 1, len(mods) - 1, len(vt) - 1))
