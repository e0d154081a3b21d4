"""One record per architecture: every per-architecture fact that code above arch/ needs, as
data. Code elsewhere asks `prog.platform.<fact>` instead of testing the architecture's name;
adding an architecture is one record here, one address-space module in arch/ and one unwinder
in kernel/stacks/ (docs/ARCHITECTURE.md walks through it).

Unwinders and address spaces are named, not imported: arch/ sits below kernel/, so the record
says which unwinder to try ("orc", "frame-pointer", ...) and kernel/stacks owns the code.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ..dump.elf_layout import MACHINE_NUMBERS
from ..errors import UnsupportedDumpError

if TYPE_CHECKING:
    from ..dump.base import PhysicalMemory
    from ..vmcoreinfo import VmcoreInfo
    from .base import AddressSpace

__all__ = ["Platform", "LogFacts", "RegisterLayout", "PagingGeometry", "PLATFORMS", "platform",
           "platform_for_elf_machine", "known_platforms"]


@dataclass(frozen=True)
class RegisterLayout:
    """Where a CPU's general registers sit in an NT_PRSTATUS note's descriptor: `pr_reg`
    starts at `offset` (elf_prstatus's fixed 64-bit header is 112 bytes on every 64-bit
    Linux ABI) and holds `names` as words of the platform's size and byte order."""

    names: tuple[str, ...]
    offset: int = 112

    @property
    def size(self) -> int:
        """Bytes up to the end of pr_reg: a shorter note holds no usable registers."""
        return self.offset + 8 * len(self.names)

    @property
    def note_size(self) -> int:
        """sizeof(struct elf_prstatus): pr_reg, then the int pr_fpvalid padded to 8."""
        return self.size + 8


@dataclass(frozen=True)
class PagingGeometry:
    """Page-table shapes the architecture allows; the dump's own choice is made by its
    address-space module from VMCOREINFO and the tables themselves."""

    page_sizes: tuple[int, ...]
    levels: tuple[int, ...]
    va_bits: tuple[int, ...]
    entry_size: int = 8


@dataclass(frozen=True)
class LogFacts:
    """How the architecture's oops reports look in a kernel log (kernel/printk/events.py reads
    them): they let a console log from any machine be titled, dump or no dump."""

    # (label, regex): the line naming the faulting instruction; group "where" is func+off/size.
    ip_lines: tuple[tuple[str, str], ...]
    hint: str | None  # regex of lines only this architecture prints (which arch a log came from)
    # Functions that never name a bug: entry code, exception and fault handlers, interrupt and
    # idle plumbing. Exact names or regexes (matched whole). They are part of the title rules:
    # a change here changes signatures, so bump `version` in report/rules/titles.toml with it.
    never_guilty: tuple[str, ...]


@dataclass(frozen=True)
class Platform:
    """The facts of one architecture (see the module docstring). A record without an
    `address_space` is known from its logs only: vmcorekit titles its console logs but does
    not yet read its dumps."""

    name: str  # the kernel's UTS machine name, as in `uname -m`
    aliases: tuple[str, ...]  # other spellings (Debian's, the kernel source tree's, ELF's)
    elf_machine: int  # e_machine of its ELF dumps (the ELF numbers live in dump/elf_layout.py)
    byteorder: Literal["little", "big"]
    pointer_size: int
    log: LogFacts
    # -- what reading its dumps needs -------------------------------------------------------
    address_space: str | None = None  # "module:Class" in arch/, loaded on first use
    prstatus: RegisterLayout | None = None
    pc: str = ""  # register names for the program counter, stack pointer and frame pointer
    sp: str = ""
    fp: str | None = None
    user_mode: tuple[str, int, int] | None = None  # (register, mask, value) of user mode
    pt_regs: str = "struct pt_regs"  # the BTF name of the registers an exception saves
    pt_regs_fallback: dict[str, int] = field(default_factory=dict)  # offsets without BTF
    thread_size: int = 16384  # THREAD_SIZE without KASAN, when the dump does not say
    cpu_stacks: tuple[str, ...] = ()  # per-CPU stacks besides the task's
    unwinders: tuple[str, ...] = ()  # preference order; names of kernel/stacks' unwinders
    paging: PagingGeometry | None = None
    # The per-CPU section is linked at address 0 (x86_64 SMP), so a per-CPU variable's
    # symbol value is its offset; elsewhere offsets count from __per_cpu_start.
    percpu_zero_based: bool = False
    # The kernel keeps `current` in a per-CPU variable (x86's current_task/pcpu_hot) rather
    # than in a register (arm64's sp_el0): read it there before falling back to runqueues.
    percpu_current: bool = False
    # capstone's names for its machine code: (CS_ARCH_*, CS_MODE_*, syntax), the first name
    # of each alternative that the installed capstone has; syntax "att" is AT&T (gdb's and
    # so crash's on x86). Empty: `dis` cannot disassemble for this architecture.
    disassembler: tuple[tuple[str, ...], tuple[str, ...], str] | None = None
    # The instruction ftrace patches in at a traced function's start when tracing is off
    # (crash marks it [FTRACE NOP]).
    ftrace_nop: bytes = b""

    @property
    def reads_dumps(self) -> bool:
        return self.address_space is not None

    def unpack(self, fmt: str) -> str:
        """A struct format string in this platform's byte order."""
        return ("<" if self.byteorder == "little" else ">") + fmt

    def new_address_space(self, phys: "PhysicalMemory", vmcoreinfo: "VmcoreInfo") -> "AddressSpace":
        if self.address_space is None:
            raise UnsupportedDumpError(phys.path, None, f"{self.name} dumps are not supported yet "
                                       f"(only its console logs are)")
        module, cls = self.address_space.split(":")
        try:
            mod = importlib.import_module(f"{__package__}.{module}")
        except ImportError:
            raise UnsupportedDumpError(phys.path, None,
                                       f"{self.name} address translation is not available") from None
        return getattr(mod, cls)(phys, vmcoreinfo)


# The "where" of an instruction-pointer line: func+0x1a/0x40 [module].
_WHERE = r"(?P<where>[A-Za-z_$][\w$.]*\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[[\w\-]+\])?)"

X86_64 = Platform(
    name="x86_64", aliases=("amd64", "x86-64"), elf_machine=MACHINE_NUMBERS["x86_64"],
    byteorder="little", pointer_size=8,
    log=LogFacts(
        ip_lines=(("RIP", r"^RIP: (?:[0-9a-f]{4}:)?(?:\[<[0-9a-f]+>\]\s*(?:\[<[0-9a-f]+>\]\s*)?)?" + _WHERE),
                  ("RIP", r"^RIP: (?:[0-9a-f]{4}:)?(?P<where>0x[0-9a-f]+|[0-9a-f]{16})"),
                  ("IP", r"^IP: (?:\[<[0-9a-f]+>\]\s*)?" + _WHERE)),
        hint=r"^(?:RIP: |RSP: |Call Trace:$| <TASK>$| entry_SYSCALL_64| do_syscall_64)",
        never_guilty=(
        "entry_SYSCALL_64", "entry_SYSCALL_64_fastpath", "entry_SYSCALL_64_after_hwframe",
        "entry_SYSCALL_64_after_swapgs", "entry_SYSENTER_compat", "entry_SYSCALL_compat",
        "entry_INT80_compat", "do_syscall_64", "do_syscall_x64", "do_syscall_x32", "x64_sys_call",
        "ia32_sys_call", "do_fast_syscall_32", "__do_fast_syscall_32", "do_int80_syscall_32",
        "do_syscall_32_irqs_on", "do_SYSENTER_32", "syscall_return_slowpath",
        "syscall_exit_to_user_mode.*", "ret_from_fork", "ret_from_fork_asm", "ret_from_intr",
        "retint_kernel", "restore_args", "error_entry", "error_exit", "paranoid_entry",
        "paranoid_exit", "common_interrupt", "asm_common_interrupt", "do_IRQ", "irq_exit",
        "irq_exit_rcu", "__irq_exit_rcu", "apic_timer_interrupt", "smp_apic_timer_interrupt",
        "local_apic_timer_interrupt", "smp_trace_apic_timer_interrupt\\w*",
        "\\w*apic_timer_interrupt_entry\\w*", "trace_apic_timer_interrupt", "asm_sysvec_.*",
        "sysvec_.*", "__sysvec_.*", "asm_exc_.*", "exc_.*", "page_fault", "async_page_fault",
        "do_async_page_fault", "nmi", "do_nmi", "default_do_nmi", "nmi_handle", "end_repeat_nmi",
        "first_nmi", "repeat_nmi", "reboot_interrupt", "smp_reboot_interrupt",
        "call_function_interrupt", "smp_call_function_interrupt", "call_function_single_interrupt",
        "smp_call_function_single_interrupt", "generic_smp_call_function_single_interrupt",
        "irq_work_interrupt", "smp_irq_work_interrupt", "reschedule_interrupt",
        "smp_reschedule_interrupt", "x86_64_start_kernel", "x86_64_start_reservations",
        "start_secondary", "secondary_startup_64", "secondary_startup_64_no_verify",
        "common_startup_64", "handle_irq", "__common_interrupt", "run_on_irqstack_cond",
        "__run_on_irqstack", "call_on_stack", "do_softirq_own_stack", "__do_softirq_own_stack",
        "run_sysvec_on_irqstack_cond", "irqentry_exit.*", "irqentry_enter.*", "native_safe_halt",
        "arch_safe_halt", "default_idle", "arch_cpu_idle", "native_irq_enable",
        "trace_hardirqs_on_thunk", "trace_hardirqs_off_thunk", "lockdep_sys_exit_thunk",
        "preempt_schedule_thunk", "preempt_schedule_notrace_thunk", "___preempt_schedule",
        "native_set_fs", "__switch_to", "__switch_to_asm", "do_int3", "do_debug", "int3", "debug",
        "handle_invalid_op", "handle_stack_overflow", "kernel_init", "rest_init",
        "entry_SYSCALL_64.*", "__x64_sys_.*_thunk",
        )),
    address_space="x86_64:X86_64",
    prstatus=RegisterLayout(tuple(("r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi "
                                   "orig_rax rip cs eflags rsp ss fs_base gs_base ds es fs gs").split())),
    pc="rip", sp="rsp", fp="rbp",
    user_mode=("cs", 3, 3),  # CPL in the low bits of CS
    pt_regs_fallback={n: 8 * i for i, n in enumerate(
        "r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di orig_ax ip cs flags sp ss".split())},
    thread_size=16384,
    cpu_stacks=("IRQ", "DF", "NMI", "DB", "MCE", "VC", "VC2"),
    unwinders=("orc", "fp", "scan"),
    paging=PagingGeometry(page_sizes=(4096,), levels=(4, 5), va_bits=(48, 57)),
    percpu_zero_based=True,
    percpu_current=True,
    disassembler=(("CS_ARCH_X86",), ("CS_MODE_64",), "att"),
    ftrace_nop=bytes.fromhex("0f1f440000"),  # nopl 0x0(%rax,%rax,1)
)

AARCH64 = Platform(
    name="aarch64", aliases=("arm64",), elf_machine=MACHINE_NUMBERS["aarch64"],
    byteorder="little", pointer_size=8,
    log=LogFacts(
        ip_lines=(("pc", r"^pc ?: (?:\[<[0-9a-f]+>\] )?" + _WHERE),),
        hint=r"^(?:pc : |lr : |Call trace:$| el0_svc| el1h_64_)",
        never_guilty=(
        "vectors", "__delay_cycles",  # the exception vector table; the timer-based delay loop
        "el0_svc", "el0_svc_naked", "el0_svc_common", "do_el0_svc", "el0_svc_handler", "el0_sync",
        "el0_sync_handler", "el0_sync_compat", "el0_sync_compat_handler", "el0t_64_sync",
        "el0t_64_sync_handler", "el0t_32_sync", "el0t_32_sync_handler", "el0t_64_irq",
        "el0t_64_irq_handler", "el0_interrupt", "el0_irq", "__el0_irq_handler_common",
        "__el0_fiq_handler_common", "__el0_error_handler_common", "el0_da", "el0_ia", "el0_dbg",
        "el0_undef", "el0_fpsimd_acc", "el1_sync", "el1_sync_handler", "el1h_64_sync",
        "el1h_64_sync_handler", "el1h_64_irq", "el1h_64_irq_handler", "el1_irq", "el1_interrupt",
        "__el1_irq", "el1_abort", "el1_dbg", "el1_undef", "el1_da", "el1_ia", "el1_pc", "el1_inv",
        "el1_bti", "el1_fpac", "invoke_syscall", "__invoke_syscall", "do_mem_abort",
        "__do_kernel_fault", "do_translation_fault", "do_bad_area", "do_sea", "do_alignment_fault",
        "do_tag_check_fault", "do_el1_fpac", "el1_dbg", "do_sp_pc_abort", "do_el1_undef",
        "do_el0_undef", "do_el1_bti", "do_undefinstr", "gic_handle_irq", "handle_domain_irq",
        "generic_handle_domain_irq", "do_interrupt_handler", "call_on_irq_stack",
        "handle_arch_irq", "ret_from_fork", "cpu_switch_to", "__switch_to", "__primary_switched",
        "secondary_start_kernel", "__secondary_switched", "cpu_startup_entry", "do_idle",
        "cpuidle_idle_call", "arch_cpu_idle", "default_idle_call", "cpu_do_idle", "el0_svc_compat",
        "do_el0_svc_compat", "enter_from_user_mode", "exit_to_user_mode", "ret_to_user",
        "work_pending", "arm64_enter_el1_dbg", "mte_check_tfsr_el1",
        )),
    address_space="aarch64:AArch64",
    prstatus=RegisterLayout(tuple([f"x{i}" for i in range(31)] + ["sp", "pc", "pstate"])),
    pc="pc", sp="sp", fp="x29",
    user_mode=("pstate", 0xF, 0),  # PSTATE.M[3:0] == EL0t
    pt_regs_fallback={**{f"x{i}": 8 * i for i in range(31)}, "sp": 248, "pc": 256, "pstate": 264},
    thread_size=16384,
    cpu_stacks=("IRQ", "Overflow", "SDEI"),
    unwinders=("fp",),  # frame records (x29, x30)
    paging=PagingGeometry(page_sizes=(4096, 16384, 65536), levels=(2, 3, 4, 5),
                          va_bits=(36, 39, 42, 47, 48, 52)),
    disassembler=(("CS_ARCH_ARM64", "CS_ARCH_AARCH64"), ("CS_MODE_ARM",), ""),
)

# Known from their logs only, so far (their dumps: the issue on new architectures).
PPC64LE = Platform(
    name="ppc64le", aliases=("ppc64", "powerpc", "ppc64el"), elf_machine=MACHINE_NUMBERS["ppc64"],
    byteorder="little", pointer_size=8,
    log=LogFacts(
        ip_lines=(("NIP", r"^NIP \[[0-9a-f]+\] " + _WHERE),),
        hint=r"^(?:NIP \[|MSR: |--- interrupt: )",
        never_guilty=(
        "system_call_exception", "system_call_common", "system_call_vectored_common",
        "system_call_vectored_emulate", "syscall_exit_prepare", "interrupt_return",
        "interrupt_return_srr", "interrupt_exit_kernel_prepare", "ret_from_fork",
        "ret_from_kernel_thread", "start_kernel_thread", "do_page_fault", "__do_page_fault",
        "___do_page_fault", "hash__do_page_fault", "bad_page_fault", "__bad_page_fault",
        "data_access_common_virt", "instruction_access_common_virt", "program_check_exception",
        "program_check_common", "program_check_common_virt", "_exception", "_exception_pkey",
        "do_bad_page_fault_segv", "decrementer_common_virt", "timer_interrupt", "do_IRQ",
        "hardware_interrupt_common_virt", "__do_irq", "call_do_irq", "do_softirq_own_stack",
        "call_do_softirq", "start_secondary", "start_secondary_prolog", "arch_local_irq_restore",
        "replay_soft_interrupts", "__replay_soft_interrupts", "power_pmu_enable", "die",
        "system_reset_exception", "machine_check_exception", "do_slb_fault", "do_bad_slb_fault",
        "do_hash_fault", "data_access_slb_common_virt", "data_access_slb_common",
        "data_access_common", "instruction_access_slb_common_virt", "do_hash_page",
        "handle_page_fault",
        )),
)

RISCV64 = Platform(
    name="riscv64", aliases=("riscv",), elf_machine=MACHINE_NUMBERS["riscv64"],
    byteorder="little", pointer_size=8,
    log=LogFacts(
        ip_lines=(("epc", r"^epc ?: (?:[0-9a-f]+ )?(?:\[<[0-9a-f]+>\] )?" + _WHERE),),
        hint=r"^(?:epc : | ra : |status: [0-9a-f]+ badaddr: )",
        never_guilty=(
        "handle_exception", "ret_from_exception", "ret_from_syscall", "ret_from_syscall_rejected",
        "handle_syscall", "do_trap_ecall_u", "do_trap_ecall_s", "do_trap_ecall_m", "do_trap_break",
        "do_trap_insn_illegal", "do_trap_load_fault", "do_trap_store_fault", "do_trap_unknown",
        "do_trap_load_misaligned", "do_trap_store_misaligned", "do_trap_error", "do_page_fault",
        "handle_page_fault", "no_context", "die", "do_irq", "handle_riscv_irq",
        "call_on_irq_stack", "ret_from_fork", "__switch_to", "riscv_intc_irq", "handle_bad_stack",
        "_start_kernel", "smp_callin", "do_trap", "do_trap_insn_fault", "do_trap_ecall_u",
        "riscv_v_vstate_discard",
        )),
)

S390X = Platform(
    name="s390x", aliases=("s390",), elf_machine=MACHINE_NUMBERS["s390x"],
    byteorder="big", pointer_size=8,
    log=LogFacts(
        ip_lines=(("Krnl PSW", r"^Krnl PSW : [0-9a-f]+ [0-9a-f]+ \(" + _WHERE + r"\)"),),
        hint=r"^(?:Krnl PSW |Krnl GPRS:|Krnl Code:)",
        never_guilty=(
        "system_call", "__do_syscall", "do_syscall", "sysc_do_svc", "sysc_tracesys",
        "pgm_check_handler", "__do_pgm_check", "do_exception", "do_dat_exception",
        "do_report_trap", "do_trap", "do_no_context", "do_low_address", "do_protection_exception",
        "illegal_op", "translation_exception", "io_int_handler", "ext_int_handler", "do_io_irq",
        "do_ext_irq", "do_IRQ", "do_irq_async", "__ret_from_fork", "ret_from_fork",
        "kernel_thread_starter", "mcck_int_handler", "s390_do_machine_check", "die",
        "report_user_fault", "psw_idle", "psw_idle_exit", "enabled_wait", "arch_cpu_idle",
        "__switch_to", "restart_int_handler", "do_restart", "smp_start_secondary",
        "monitor_event_exception", "space_switch_exception", "special_op_exception",
        )),
)

ARM = Platform(
    name="arm", aliases=("armv7l", "armhf", "armel"), elf_machine=MACHINE_NUMBERS["arm"],
    byteorder="little", pointer_size=4,
    log=LogFacts(
        ip_lines=(("PC is at", r"^PC is at " + _WHERE),),
        hint=r"^(?:PC is at |LR is at |Backtrace:$)",
        never_guilty=(
        "__dabt_svc", "__dabt_usr", "__irq_svc", "__irq_usr", "__und_svc", "__und_usr",
        "__pabt_svc", "__pabt_usr", "vector_swi", "ret_fast_syscall", "ret_from_fork",
        "ret_to_user", "ret_to_user_from_irq", "do_DataAbort", "do_PrefetchAbort", "do_page_fault",
        "__do_kernel_fault", "__do_user_fault", "do_bad_area", "do_alignment", "do_undefinstr",
        "arm_notify_die", "do_translation_fault", "do_sect_fault", "gic_handle_irq", "handle_IRQ",
        "__handle_domain_irq", "generic_handle_arch_irq", "asm_do_IRQ", "secondary_start_kernel",
        "__secondary_switched", "__switch_to", "do_work_pending", "slow_work_pending",
        "local_restart", "__enable_mmu",
        )),
)

I386 = Platform(
    name="i386", aliases=("i686", "x86"), elf_machine=MACHINE_NUMBERS["i386"],
    byteorder="little", pointer_size=4,
    log=LogFacts(
        ip_lines=(("EIP", r"^EIP: (?:[0-9a-f]{4}:)?(?:\[<[0-9a-f]+>\]\s*)?" + _WHERE),),
        hint=None,
        never_guilty=()),
)

PLATFORMS: dict[str, Platform] = {p.name: p for p in (X86_64, AARCH64, PPC64LE, RISCV64, S390X, ARM, I386)}
_BY_ALIAS = {a: p for p in PLATFORMS.values() for a in (p.name, *p.aliases)}
_BY_ELF = {p.elf_machine: p for p in PLATFORMS.values()}


def known_platforms() -> list[str]:
    return sorted(PLATFORMS)


def platform(name: str) -> Platform | None:
    """The record of an architecture by any of its names; None when vmcorekit has none."""
    return _BY_ALIAS.get(name.lower()) if name else None


def platform_for_elf_machine(machine: int) -> Platform | None:
    return _BY_ELF.get(machine)
