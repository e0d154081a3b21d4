# drgn oracle: drgn -q -c DUMP -s VMLINUX drgn-tasks.py OUTDIR
import os, sys
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.sched import task_state_to_char
from drgn.helpers.linux.printk import get_dmesg

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rows = ["pid\ttgid\tppid\tstate\ttask\tcomm"]
for t in sorted(for_each_task(prog), key=lambda t: (t.pid.value_(), t.value_())):
    rows.append("%d\t%d\t%d\t%s\t%#x\t%s" % (
        t.pid, t.tgid, t.real_parent.pid, task_state_to_char(t), t.value_(),
        t.comm.string_().decode(errors="backslashreplace")))
with open(os.path.join(out, "drgn-tasks.tsv"), "w") as f:
    f.write("\n".join(rows) + "\n")
with open(os.path.join(out, "drgn-dmesg.txt"), "wb") as f:
    f.write(get_dmesg(prog))
ct = prog.crashed_thread()
with open(os.path.join(out, "drgn-crashed-thread.txt"), "w") as f:
    f.write("pid %d comm %s\n%s\n" % (ct.tid, ct.object.comm.string_().decode(), ct.stack_trace()))
with open(os.path.join(out, "drgn-misc.txt"), "w") as f:
    f.write("uts_release=%s\n" % prog["init_uts_ns"].name.release.string_().decode())
    f.write("jiffies=%d\n" % prog["jiffies"].value_())
    f.write("init_task=%#x\n" % prog["init_task"].address_)
    f.write("nr_threads=%d\n" % prog["nr_threads"].value_())
    f.write("panic_cpu=%d\n" % prog["panic_cpu"].counter.value_())
print("drgn oracle: %d tasks" % (len(rows) - 1))
