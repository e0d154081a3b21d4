"""Types of global variables.

vmlinux BTF describes types and functions, but of variables only the per-CPU ones (pahole
emits a VAR for each member of the `.data..percpu` DATASEC). Everything else a crash tool
needs is named here, with the type the kernel declares it with. Array lengths use the kernel's
own enumerators where it has them, so they follow the running kernel; a spec that does not
resolve on this kernel (a renamed type, a missing enumerator) falls through to the next.

Order of resolution (TypeRegistry.global_info):
  1. prog.types.declare_global(name, spec) made by the user
  2. a vmlinux BTF VAR of that name (per-CPU variables; offset from the DATASEC)
  3. the table below
  4. a module BTF VAR (module BTF is loaded only now, on this miss)
  5. heuristics: a function of that name in BTF; a struct named like the variable, or
     `init_<x>` -> `struct <x>`, when the symbol's size (if known) matches sizeof
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import TypeLookupError, VmcorekitError
from ...vmcoreinfo.memsection import VMCOREINFO_VALUE_SYMBOLS
from .model import Type, TypeKind

if TYPE_CHECKING:  # the registry calls in here; only its type is named
    from .registry import TypeRegistry

# name -> alternatives, first that resolves wins.
KNOWN_GLOBALS: dict[str, tuple[str, ...]] = {
    # tasks, namespaces
    "init_task": ("struct task_struct",),
    "init_uts_ns": ("struct uts_namespace",),
    "init_nsproxy": ("struct nsproxy",),
    "init_pid_ns": ("struct pid_namespace",),
    "init_struct_pid": ("struct pid",),
    "init_cred": ("struct cred",),
    "init_files": ("struct files_struct",),
    "init_fs": ("struct fs_struct",),
    "init_signals": ("struct signal_struct",),
    "init_sighand": ("struct sighand_struct",),
    "init_thread_union": ("union thread_union",),
    "init_user_ns": ("struct user_namespace",),
    "init_net": ("struct net",),
    "net_namespace_list": ("struct list_head",),
    "nr_threads": ("int",),
    "max_threads": ("int",),
    "pid_max": ("int",),
    "total_forks": ("unsigned long",),
    # memory
    "init_mm": ("struct mm_struct",),
    "vm_zone_stat": ("atomic_long_t [NR_VM_ZONE_STAT_ITEMS]", "atomic_long_t []"),
    "vm_node_stat": ("atomic_long_t [NR_VM_NODE_STAT_ITEMS]", "atomic_long_t []"),
    "vm_numa_event": ("atomic_long_t [NR_VM_NUMA_EVENT_ITEMS]", "atomic_long_t []"),
    "vm_event_states": ("struct vm_event_state",),
    "totalram_pages": ("unsigned long",),          # a variable before 5.0
    "_totalram_pages": ("atomic_long_t",),
    "_totalhigh_pages": ("atomic_long_t",),
    "totalhigh_pages": ("unsigned long",),
    "totalreserve_pages": ("unsigned long",),
    "totalcma_pages": ("unsigned long",),
    "total_swap_pages": ("long",),
    "nr_swapfiles": ("unsigned int",),
    "swap_info": ("struct swap_info_struct *[MAX_SWAPFILES]", "struct swap_info_struct *[]"),
    "vm_committed_as": ("struct percpu_counter",),
    "node_data": ("struct pglist_data *[]",),
    "contig_page_data": ("struct pglist_data",),
    "mem_section": ("struct mem_section **",),
    "node_states": ("nodemask_t [NR_NODE_STATES]", "nodemask_t []"),
    "max_pfn": ("unsigned long",),
    "max_low_pfn": ("unsigned long",),
    "min_low_pfn": ("unsigned long",),
    "high_memory": ("void *",),
    "page_offset_base": ("unsigned long",),
    "vmalloc_base": ("unsigned long",),
    "vmemmap_base": ("unsigned long",),
    "phys_base": ("unsigned long",),
    "vmap_area_list": ("struct list_head",),
    "vmap_area_root": ("struct rb_root",),
    "slab_caches": ("struct list_head",),
    "kmalloc_caches": ("struct kmem_cache *[NR_KMALLOC_TYPES][KMALLOC_SHIFT_HIGH + 1]",),
    "swapper_pg_dir": ("pgd_t []",),
    "init_top_pgt": ("pgd_t []",),
    "sysctl_overcommit_memory": ("int",),
    "sysctl_overcommit_ratio": ("int",),
    "sysctl_overcommit_kbytes": ("unsigned long",),
    # time
    "jiffies": ("volatile unsigned long",),
    "jiffies_64": ("u64",),
    "avenrun": ("unsigned long [3]",),
    "sys_tz": ("struct timezone",),
    "shadow_timekeeper": ("struct timekeeper",),
    # printk
    "prb": ("struct printk_ringbuffer *",),
    "printk_rb_static": ("struct printk_ringbuffer",),
    "printk_rb_dynamic": ("struct printk_ringbuffer",),
    "clear_seq": ("struct latched_seq",),
    "log_buf": ("char *",),
    "log_buf_len": ("u32",),
    "log_first_idx": ("u32",),
    "log_next_idx": ("u32",),
    "console_drivers": ("struct console *",),
    "console_printk": ("int [4]",),
    "linux_banner": ("const char []",),
    "saved_command_line": ("char *",),
    "boot_command_line": ("char [COMMAND_LINE_SIZE]", "char []"),
    # panic and CPUs
    "panic_cpu": ("atomic_t",),
    "crashing_cpu": ("int",),
    "panic_print": ("unsigned long",),
    "panic_on_oops": ("int",),
    "panic_timeout": ("int",),
    "oops_in_progress": ("int",),
    "tainted_mask": ("unsigned long",),
    "system_state": ("enum system_states",),
    "kexec_crash_image": ("struct kimage *",),
    "crash_notes": ("note_buf_t *",),
    "vmcoreinfo_data": ("unsigned char *",),
    "vmcoreinfo_note": ("u32 *",),
    "__per_cpu_offset": ("unsigned long []",),
    "__per_cpu_start": ("char []",),
    "nr_cpu_ids": ("unsigned int",),
    "cpu_online_mask": ("const struct cpumask * const",),
    "cpu_possible_mask": ("const struct cpumask * const",),
    "cpu_present_mask": ("const struct cpumask * const",),
    "cpu_active_mask": ("const struct cpumask * const",),
    "__cpu_online_mask": ("struct cpumask",),
    "__cpu_possible_mask": ("struct cpumask",),
    "__cpu_present_mask": ("struct cpumask",),
    "__cpu_active_mask": ("struct cpumask",),
    "__num_online_cpus": ("atomic_t",),
    "nr_online_nodes": ("unsigned int",),
    "nr_node_ids": ("unsigned int",),
    # per-CPU variables (BTF usually has them as VARs; these are the fallback)
    "runqueues": ("struct rq",),
    "current_task": ("struct task_struct *",),
    "pcpu_hot": ("struct pcpu_hot",),
    "cpu_number": ("int",),
    "irq_stat": ("irq_cpustat_t",),
    "kernel_cpustat": ("struct kernel_cpustat",),
    "hrtimer_bases": ("struct hrtimer_cpu_base",),
    # modules, filesystems, devices
    "modules": ("struct list_head",),
    "btf_modules": ("struct list_head",),
    "super_blocks": ("struct list_head",),
    "file_systems": ("struct file_system_type *",),
    "init_thread_info": ("struct thread_info",),
    "mount_hashtable": ("struct hlist_head *",),
    "dentry_hashtable": ("struct hlist_head *",),
    "inode_hashtable": ("struct hlist_head *",),
    "blockdev_superblock": ("struct super_block *",),
    "rcu_state": ("struct rcu_state",),
    "root_task_group": ("struct task_group",),
    "cgrp_dfl_root": ("struct cgroup_root",),
    "dmesg_restrict": ("int",),
    # more that drgn's helpers read (vmcorekit.drgn); lengths only where the kernel fixes them
    "task_state_array": ("const char * const []",),
    "task_struct_cachep": ("struct kmem_cache *",),
    "__highest_present_section_nr": ("unsigned long",),
    "nr_irqs": ("int",),
    "irq_desc_tree": ("struct radix_tree_root", "struct xarray"),  # the same since 4.20
    "sparse_irqs": ("struct maple_tree",),
    "nr_swap_pages": ("atomic_long_t",),
    "swapper_spaces": ("struct address_space *[]",),
    "nr_swapper_spaces": ("unsigned int []",),
    "hstates": ("struct hstate []",),
    "hugetlb_max_hstate": ("int",),
    "init_ipc_ns": ("struct ipc_namespace",),
    "init_time_ns": ("struct time_namespace",),
    "ipc_mni_shift": ("int",),
    "btf_idr": ("struct idr",),
    "prog_idr": ("struct idr",),
    "map_idr": ("struct idr",),
    "link_idr": ("struct idr",),
    "mod_tree": ("struct mod_tree_root",),
    "block_class": ("struct class",),
    "bus_kset": ("struct kset *",),
    "class_kset": ("struct kset *",),
    "slab_kset": ("struct kset *",),
    "bus_ktype": ("struct kobj_type",),
    "class_ktype": ("struct kobj_type",),
    "device_ktype": ("struct kobj_type",),
    "driver_ktype": ("struct kobj_type",),
    "module_ktype": ("struct kobj_type",),
    "memory_subsys": ("struct bus_type",),
    "pci_bus_type": ("struct bus_type",),
    "pci_root_buses": ("struct list_head",),
    "cdev_map": ("struct kobj_map *",),
    "chrdevs": ("struct char_device_struct *[255]",),    # CHRDEV_MAJOR_HASH_SIZE
    "major_names": ("struct blk_major_name *[255]",),    # BLKDEV_MAJOR_HASH_SIZE
    "idt_table": ("gate_desc [256]",),                   # IDT_ENTRIES
    "sysfs_root_kn": ("struct kernfs_node *",),
    "taint_flags": ("const struct taint_flag []",),
    "gfpflag_names": ("const struct trace_print_flags []",),
    "poll_spurious_irq_timer": ("struct timer_list",),
    "vermagic": ("const char []",),
    "stack_slabs": ("void *[]",),
}


class GlobalInfo:
    """A global variable's type, where that came from, and how to find its address."""

    __slots__ = ("name", "type", "how", "percpu_offset", "vmcoreinfo_is_value")

    def __init__(self, name: str, type: Type, how: str, percpu_offset: int | None = None,
                 vmcoreinfo_is_value: bool = False) -> None:
        self.name = name
        self.type = type
        self.how = how  # "declared", "btf-var", "table", "heuristic"
        self.percpu_offset = percpu_offset
        # VMCOREINFO's SYMBOL() holds the variable's value, not its address
        # (VMCOREINFO_SYMBOL_ARRAY of a pointer, e.g. mem_section).
        self.vmcoreinfo_is_value = vmcoreinfo_is_value

    @property
    def is_percpu(self) -> bool:
        return self.percpu_offset is not None

    def __repr__(self) -> str:
        return f"GlobalInfo({self.name!r}, {self.type.type_name()!r}, how={self.how!r})"


def _try_spec(reg: "TypeRegistry", specs: tuple[str, ...]) -> tuple[Type, str] | None:
    for spec in specs:
        try:
            return reg.lookup(spec), spec
        except TypeLookupError:
            continue
    return None


def resolve_global(reg: "TypeRegistry", name: str, declared: "str | Type | None",
                   symbol_size: int | None) -> GlobalInfo:
    is_value = name in VMCOREINFO_VALUE_SYMBOLS
    if declared is not None:
        return GlobalInfo(name, reg.lookup(declared), "declared", vmcoreinfo_is_value=is_value)
    try:
        var = reg.variable(name, modules=False)
    except VmcorekitError:
        var = None
    if var is not None:
        t, pcpu = var
        return GlobalInfo(name, t, "btf-var", pcpu, vmcoreinfo_is_value=is_value)
    specs = KNOWN_GLOBALS.get(name)
    if specs is not None:
        found = _try_spec(reg, specs)
        if found is not None:
            return GlobalInfo(name, found[0], "table", vmcoreinfo_is_value=is_value)
    try:
        var = reg.variable(name)  # a module's per-CPU variable
    except VmcorekitError:
        var = None
    if var is not None:
        return GlobalInfo(name, var[0], "btf-var", var[1], vmcoreinfo_is_value=is_value)
    guessed = _heuristic(reg, name, symbol_size)
    if guessed is not None:
        return guessed
    if specs is not None:
        raise TypeLookupError(f"global {name!r}: none of its known types {list(specs)} exist "
                              f"here ({reg._why()})")
    raise TypeLookupError(f"no type known for global {name!r}; declare it with "
                          f"prog.types.declare_global({name!r}, 'TYPE')")


def _heuristic(reg: "TypeRegistry", name: str, symbol_size: int | None) -> GlobalInfo | None:
    fn = None
    for s in reg.sources:
        f = getattr(s, "function", None)
        if f is not None:
            fn = f(name)
            if fn is not None:
                return GlobalInfo(name, fn, "btf-func")
    candidates = [name]
    if name.startswith("init_"):
        candidates.append(name[5:])
    for tag in candidates:
        try:
            t = reg.tagged(TypeKind.STRUCT, tag)
        except TypeLookupError:
            continue
        if t.size is None:
            continue
        # Without a size to compare, a same-named struct is only trusted for `x` itself.
        # kallsyms sizes are distances to the next symbol: allow alignment padding.
        if symbol_size is not None and not t.size <= symbol_size < t.size + 64:
            continue
        if symbol_size is None and tag != name:
            continue
        return GlobalInfo(name, t, "heuristic")
    return None
