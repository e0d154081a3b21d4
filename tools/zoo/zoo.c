// SPDX-License-Identifier: GPL-2.0
/*
 * zoo.ko - vmcorekit's crash zoo: deliberate ways for a kernel to die.
 *
 *   echo KIND > /sys/kernel/debug/zoo/trigger
 *
 * Every KIND has its own function (zoo_<kind>) so that the guilty frame of
 * each dump is known in advance.  The kernel's own knobs decide whether the
 * failure panics (panic_on_oops, panic_on_warn, softlockup_panic,
 * hung_task_panic, panic_on_rcu_stall, vm.panic_on_oom, unknown_nmi_panic):
 * tools/make-zoo.sh sets them per kind.  `cat /sys/kernel/debug/zoo/kinds`
 * lists the kinds this build knows.
 *
 * Written for tools/make-zoo.sh; never load it on a machine you care about.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/debugfs.h>
#include <linux/uaccess.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/list.h>
#include <linux/refcount.h>
#include <linux/mutex.h>
#include <linux/kthread.h>
#include <linux/delay.h>
#include <linux/timer.h>
#include <linux/completion.h>
#include <linux/rcupdate.h>
#include <linux/string.h>
#include <linux/sched.h>

#define ZOO_CMD_MAX 64

struct zoo_obj {
	unsigned long magic;
	struct list_head node;
	refcount_t ref;
	char name[16];
};

/* Globals the compiler cannot see through: a NULL it must really load. */
static struct zoo_obj *zoo_nullp;
static unsigned long zoo_bad_addr = 0xdead000000000000UL;	/* non-canonical on x86_64 */
static int zoo_zero;
static int zoo_depth_limit = 1 << 30;

static struct dentry *zoo_dir;

/* ------------------------------------------------------------ memory access faults */

static noinline void zoo_null_deref(void)
{
	struct zoo_obj *o = READ_ONCE(zoo_nullp);

	pr_emerg("zoo: NULL pointer dereference: reading ->magic of %px\n", o);
	WRITE_ONCE(o->magic, 0x5a5a5a5a);	/* fault address 0x0 */
}

static noinline void zoo_paging(void)
{
	/* one page of vmalloc space; the page after it is the vmap guard, never mapped */
	char *p = vmalloc(PAGE_SIZE);
	unsigned long v;

	if (!p)
		return;
	pr_emerg("zoo: paging request: reading %px, the guard page after a vmalloc'd page\n",
		 p + PAGE_SIZE);
	v = READ_ONCE(*(unsigned long *)(p + PAGE_SIZE));
	pr_emerg("zoo: read %lx\n", v);
	vfree(p);
}

static noinline void zoo_gpf(void)
{
	unsigned long *p = (unsigned long *)READ_ONCE(zoo_bad_addr);

	pr_emerg("zoo: general protection fault: reading %px\n", p);
	pr_emerg("zoo: read %lx\n", READ_ONCE(*p));
}

static noinline void zoo_divide(void)
{
	int num = 1000, den = READ_ONCE(zoo_zero);

	pr_emerg("zoo: divide error: %d / %d\n", num, den);
	pr_emerg("zoo: quotient %d\n", num / den);
}

/* ------------------------------------------------------------ BUG / WARN */

static noinline void zoo_bug(void)
{
	int state = READ_ONCE(zoo_zero) + 1;

	pr_emerg("zoo: BUG_ON(state != 0), state %d\n", state);
	BUG_ON(state != 0);
}

static noinline void zoo_warn(void)
{
	int state = READ_ONCE(zoo_zero) + 1;

	pr_emerg("zoo: WARN_ON(state != 0), state %d (panic_on_warn makes it fatal)\n", state);
	WARN_ON(state != 0);
}

static noinline void zoo_refcount(void)
{
	struct zoo_obj *o = kzalloc(sizeof(*o), GFP_KERNEL);

	if (!o)
		return;
	refcount_set(&o->ref, 1);
	pr_emerg("zoo: refcount underflow: two refcount_dec_and_test() on a count of 1\n");
	if (refcount_dec_and_test(&o->ref))
		pr_emerg("zoo: first put: count hit 0 (object would be freed here)\n");
	if (refcount_dec_and_test(&o->ref))	/* 0 -> -1: "underflow; use-after-free" */
		pr_emerg("zoo: second put returned true\n");
	kfree(o);
}

/* ------------------------------------------------------------ hardening checks */

static noinline void zoo_list_corrupt(void)
{
	static LIST_HEAD(zoo_list);
	struct zoo_obj *o = kzalloc(sizeof(*o), GFP_KERNEL);

	if (!o)
		return;
	list_add(&o->node, &zoo_list);
	list_del(&o->node);
	pr_emerg("zoo: list corruption: list_del() of an entry already deleted (next %px)\n",
		 o->node.next);
	list_del(&o->node);	/* ->next is LIST_POISON1: CONFIG_DEBUG_LIST catches it */
	kfree(o);
}

static noinline void zoo_double_free(void)
{
	void *p;

	/* one CPU throughout, so both frees hit the same per-CPU freelist */
	preempt_disable();
	p = kmalloc(64, GFP_ATOMIC);
	pr_emerg("zoo: double free of %px (kmalloc-64)\n", p);
	kfree(p);
	kfree(p);	/* CONFIG_SLAB_FREELIST_HARDENED: BUG_ON(object == fp) */
	preempt_enable();
}

static noinline void zoo_usercopy(const char __user *ubuf)
{
	char *p = kmalloc(16, GFP_KERNEL);
	size_t n = 256;

	if (!p)
		return;
	/* hide the object from the compiler: the run-time (hardened usercopy) check must see it */
	OPTIMIZER_HIDE_VAR(p);
	OPTIMIZER_HIDE_VAR(n);
	pr_emerg("zoo: bad usercopy: copy_from_user() of %zu bytes into a 16-byte kmalloc object\n", n);
	if (copy_from_user(p, ubuf, n))
		pr_emerg("zoo: copy_from_user failed\n");
	kfree(p);
}

static noinline void zoo_fortify(const char *cmd)
{
	char small[4];

	pr_emerg("zoo: fortified strcpy() of \"%s\" (%zu bytes) into char[%zu]\n",
		 cmd, strlen(cmd) + 1, sizeof(small));
	strcpy(small, cmd);	/* FORTIFY_SOURCE: run-time overflow -> fortify_panic() */
	pr_emerg("zoo: copied %s\n", small);
}

static noinline int zoo_recurse(int depth)
{
	volatile char pad[512];

	pad[0] = (char)depth;
	pad[sizeof(pad) - 1] = (char)depth;
	if (depth < READ_ONCE(zoo_depth_limit))
		return zoo_recurse(depth + 1) + pad[0] + pad[sizeof(pad) - 1];
	return pad[0];
}

static noinline void zoo_stack_overflow(void)
{
	pr_emerg("zoo: kernel stack overflow: unbounded recursion, 512 bytes per frame\n");
	pr_emerg("zoo: recursion returned %d\n", zoo_recurse(0));
}

/* ------------------------------------------------------------ lockups and stalls */

static noinline void zoo_softlockup(void)
{
	pr_emerg("zoo: soft lockup: spinning with preemption off on CPU %d\n",
		 raw_smp_processor_id());
	preempt_disable();
	for (;;)
		cpu_relax();
}

static noinline void zoo_rcu_stall(void)
{
	pr_emerg("zoo: RCU stall: spinning in rcu_read_lock() with irqs off on CPU %d\n",
		 raw_smp_processor_id());
	rcu_read_lock();
	local_irq_disable();
	for (;;)
		cpu_relax();
}

/* hung task chain: A holds M1 and sleeps; B holds M2 and waits for M1; C waits for M2 */
static DEFINE_MUTEX(zoo_m1);
static DEFINE_MUTEX(zoo_m2);
static DECLARE_COMPLETION(zoo_a_locked);
static DECLARE_COMPLETION(zoo_b_locked);

static noinline int zoo_hung_a(void *unused)
{
	mutex_lock(&zoo_m1);
	pr_emerg("zoo: hung chain: A (pid %d) holds zoo_m1, sleeping uninterruptibly\n", current->pid);
	complete(&zoo_a_locked);
	for (;;)
		msleep(1000000);	/* TASK_UNINTERRUPTIBLE, never wakes within the timeout */
	return 0;
}

static noinline int zoo_hung_b(void *unused)
{
	mutex_lock(&zoo_m2);
	complete(&zoo_b_locked);
	pr_emerg("zoo: hung chain: B (pid %d) holds zoo_m2, waits for zoo_m1\n", current->pid);
	mutex_lock(&zoo_m1);
	mutex_unlock(&zoo_m1);
	mutex_unlock(&zoo_m2);
	return 0;
}

static noinline int zoo_hung_c(void *unused)
{
	pr_emerg("zoo: hung chain: C (pid %d) waits for zoo_m2\n", current->pid);
	mutex_lock(&zoo_m2);
	mutex_unlock(&zoo_m2);
	return 0;
}

static noinline void zoo_hung_chain(void)
{
	kthread_run(zoo_hung_a, NULL, "zoo_hung_a");
	wait_for_completion(&zoo_a_locked);
	kthread_run(zoo_hung_b, NULL, "zoo_hung_b");
	wait_for_completion(&zoo_b_locked);
	msleep(100);
	kthread_run(zoo_hung_c, NULL, "zoo_hung_c");
	pr_emerg("zoo: hung chain started: C -> zoo_m2 (B) -> zoo_m1 (A, asleep)\n");
}

/* ABBA: two kthreads take two mutexes in opposite orders */
static DEFINE_MUTEX(zoo_lock_a);
static DEFINE_MUTEX(zoo_lock_b);
static DECLARE_COMPLETION(zoo_abba_1_locked);
static DECLARE_COMPLETION(zoo_abba_2_locked);

static noinline int zoo_abba_1(void *unused)
{
	mutex_lock(&zoo_lock_a);
	pr_emerg("zoo: ABBA: thread 1 (pid %d) holds zoo_lock_a, wants zoo_lock_b\n", current->pid);
	complete(&zoo_abba_1_locked);
	wait_for_completion(&zoo_abba_2_locked);
	mutex_lock(&zoo_lock_b);
	mutex_unlock(&zoo_lock_b);
	mutex_unlock(&zoo_lock_a);
	return 0;
}

static noinline int zoo_abba_2(void *unused)
{
	mutex_lock(&zoo_lock_b);
	pr_emerg("zoo: ABBA: thread 2 (pid %d) holds zoo_lock_b, wants zoo_lock_a\n", current->pid);
	complete(&zoo_abba_2_locked);
	wait_for_completion(&zoo_abba_1_locked);
	mutex_lock(&zoo_lock_a);
	mutex_unlock(&zoo_lock_a);
	mutex_unlock(&zoo_lock_b);
	return 0;
}

static noinline void zoo_abba(void)
{
	kthread_run(zoo_abba_1, NULL, "zoo_abba_1");
	kthread_run(zoo_abba_2, NULL, "zoo_abba_2");
	pr_emerg("zoo: ABBA deadlock started\n");
}

/* ------------------------------------------------------------ memory exhaustion, panics */

static noinline void zoo_oom_slab(void)
{
	LIST_HEAD(leak);
	unsigned long n = 0;

	pr_emerg("zoo: slab leak: kmalloc(1024, GFP_KERNEL) until the OOM killer runs\n");
	for (;;) {
		struct list_head *e = kmalloc(1024, GFP_KERNEL);

		if (!e)
			break;
		list_add(e, &leak);
		if (++n % 16384 == 0)
			pr_info("zoo: leaked %lu KiB\n", n);
		cond_resched();
	}
	pr_emerg("zoo: kmalloc failed after %lu objects\n", n);
}

static noinline void zoo_panic(void)
{
	panic("zoo: deliberate panic from the zoo module");
}

static void zoo_timer_fn(struct timer_list *t);
static DEFINE_TIMER(zoo_timer, zoo_timer_fn);

static noinline void zoo_timer_fn(struct timer_list *t)
{
	struct zoo_obj *o = READ_ONCE(zoo_nullp);

	/* softirq context: the oops is "Fatal exception in interrupt" */
	WRITE_ONCE(o->magic, 0x7171);
}

static noinline void zoo_timer_null(void)
{
	pr_emerg("zoo: arming a timer whose callback dereferences NULL\n");
	mod_timer(&zoo_timer, jiffies + 1);
}

/* ------------------------------------------------------------ the trigger file */

static const char *const zoo_kinds[] = {
	"null", "paging", "gpf", "bug", "warn", "refcount", "list", "double_free",
	"usercopy", "fortify", "stack_overflow", "divide", "softlockup", "hung_chain",
	"abba", "rcu_stall", "oom_slab", "panic", "timer_null",
};

static ssize_t zoo_trigger_write(struct file *file, const char __user *ubuf,
				 size_t count, loff_t *ppos)
{
	char cmd[ZOO_CMD_MAX];
	size_t n = min(count, sizeof(cmd) - 1);

	if (copy_from_user(cmd, ubuf, n))
		return -EFAULT;
	cmd[n] = '\0';
	strim(cmd);
	pr_emerg("zoo: trigger '%s' from %s (pid %d) on CPU %d\n", cmd, current->comm,
		 current->pid, raw_smp_processor_id());

	if (!strcmp(cmd, "null"))
		zoo_null_deref();
	else if (!strcmp(cmd, "paging"))
		zoo_paging();
	else if (!strcmp(cmd, "gpf"))
		zoo_gpf();
	else if (!strcmp(cmd, "bug"))
		zoo_bug();
	else if (!strcmp(cmd, "warn"))
		zoo_warn();
	else if (!strcmp(cmd, "refcount"))
		zoo_refcount();
	else if (!strcmp(cmd, "list"))
		zoo_list_corrupt();
	else if (!strcmp(cmd, "double_free"))
		zoo_double_free();
	else if (!strcmp(cmd, "usercopy"))
		zoo_usercopy(ubuf);
	else if (!strncmp(cmd, "fortify", 7))
		zoo_fortify(cmd);
	else if (!strcmp(cmd, "stack_overflow"))
		zoo_stack_overflow();
	else if (!strcmp(cmd, "divide"))
		zoo_divide();
	else if (!strcmp(cmd, "softlockup"))
		zoo_softlockup();
	else if (!strcmp(cmd, "hung_chain"))
		zoo_hung_chain();
	else if (!strcmp(cmd, "abba"))
		zoo_abba();
	else if (!strcmp(cmd, "rcu_stall"))
		zoo_rcu_stall();
	else if (!strcmp(cmd, "oom_slab"))
		zoo_oom_slab();
	else if (!strcmp(cmd, "panic"))
		zoo_panic();
	else if (!strcmp(cmd, "timer_null"))
		zoo_timer_null();
	else
		return -EINVAL;
	return count;
}

static ssize_t zoo_kinds_read(struct file *file, char __user *ubuf, size_t count,
			      loff_t *ppos)
{
	char buf[512];
	size_t len = 0;
	int i;

	for (i = 0; i < ARRAY_SIZE(zoo_kinds); i++)
		len += scnprintf(buf + len, sizeof(buf) - len, "%s\n", zoo_kinds[i]);
	return simple_read_from_buffer(ubuf, count, ppos, buf, len);
}

static const struct file_operations zoo_trigger_fops = {
	.owner = THIS_MODULE,
	.write = zoo_trigger_write,
	.llseek = noop_llseek,
};

static const struct file_operations zoo_kinds_fops = {
	.owner = THIS_MODULE,
	.read = zoo_kinds_read,
	.llseek = default_llseek,
};

static int __init zoo_init(void)
{
	zoo_dir = debugfs_create_dir("zoo", NULL);
	debugfs_create_file("trigger", 0200, zoo_dir, NULL, &zoo_trigger_fops);
	debugfs_create_file("kinds", 0444, zoo_dir, NULL, &zoo_kinds_fops);
	pr_info("zoo: loaded; echo KIND > /sys/kernel/debug/zoo/trigger\n");
	return 0;
}

static void __exit zoo_exit(void)
{
	del_timer_sync(&zoo_timer);
	debugfs_remove_recursive(zoo_dir);
}

module_init(zoo_init);
module_exit(zoo_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vmcorekit crash zoo: deliberate kernel failures for crash-dump tests");
MODULE_AUTHOR("vmcorekit");
