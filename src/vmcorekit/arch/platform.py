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

__all__ = ["Platform", "RegisterLayout", "PagingGeometry", "PLATFORMS", "platform",
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
class Platform:
    """The facts of one architecture (see the module docstring)."""

    name: str  # the kernel's UTS machine name, as in `uname -m`
    aliases: tuple[str, ...]  # other spellings (Debian's, the kernel source tree's)
    elf_machine: int  # e_machine of its ELF dumps (the ELF numbers live in dump/elf_layout.py)
    byteorder: Literal["little", "big"]
    pointer_size: int
    prstatus: RegisterLayout
    pc: str  # register names for the program counter, stack pointer and frame pointer
    sp: str
    fp: str | None
    user_mode: tuple[str, int, int]  # (register, mask, value): the saved registers are user mode
    pt_regs: str  # the BTF name of the saved-registers struct on an exception entry
    pt_regs_fallback: dict[str, int]  # its member offsets when the dump has no BTF
    thread_size: int  # THREAD_SIZE without KASAN, when the dump does not say
    # Per-CPU stacks besides the task's, found by the unwinder module of this arch.
    cpu_stacks: tuple[str, ...]
    unwinders: tuple[str, ...]  # preference order; names of kernel/stacks' unwinders
    log_ip_label: str  # regex matching the log line that names the faulting instruction
    # Functions that are never the bug: entry code, exception and fault handlers, the
    # arch's crash/NMI plumbing. The title rules skip them when naming the guilty frame.
    never_guilty: frozenset[str]
    paging: PagingGeometry
    address_space: str  # "module:Class" in arch/, loaded on first use
    # The per-CPU section is linked at address 0 (x86_64 SMP), so a per-CPU variable's
    # symbol value is its offset; elsewhere offsets count from __per_cpu_start.
    percpu_zero_based: bool = False
    # The kernel keeps `current` in a per-CPU variable (x86's current_task/pcpu_hot) rather
    # than in a register (arm64's sp_el0): read it there before falling back to runqueues.
    percpu_current: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    def unpack(self, fmt: str) -> str:
        """A struct format string in this platform's byte order."""
        return ("<" if self.byteorder == "little" else ">") + fmt

    def new_address_space(self, phys: "PhysicalMemory", vmcoreinfo: "VmcoreInfo") -> "AddressSpace":
        module, cls = self.address_space.split(":")
        try:
            mod = importlib.import_module(f"{__package__}.{module}")
        except ImportError:
            raise UnsupportedDumpError(phys.path, None,
                                       f"{self.name} address translation is not available") from None
        return getattr(mod, cls)(phys, vmcoreinfo)


X86_64 = Platform(
    name="x86_64", aliases=("amd64", "x86-64"), elf_machine=MACHINE_NUMBERS["x86_64"], byteorder="little", pointer_size=8,
    prstatus=RegisterLayout(tuple(("r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi "
                                   "orig_rax rip cs eflags rsp ss fs_base gs_base ds es fs gs").split())),
    pc="rip", sp="rsp", fp="rbp",
    user_mode=("cs", 3, 3),  # CPL in the low bits of CS
    pt_regs="struct pt_regs",
    pt_regs_fallback={n: 8 * i for i, n in enumerate(
        "r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di orig_ax ip cs flags sp ss".split())},
    thread_size=16384,
    cpu_stacks=("IRQ", "DF", "NMI", "DB", "MCE", "VC", "VC2"),
    unwinders=("orc", "fp", "scan"),
    log_ip_label=r"RIP: [0-9a-f]{4}:",
    never_guilty=frozenset("""
        asm_exc_page_fault exc_page_fault asm_exc_general_protection exc_general_protection
        asm_exc_invalid_op exc_invalid_op asm_exc_divide_error exc_divide_error asm_exc_int3
        exc_int3 asm_exc_double_fault exc_double_fault asm_exc_debug exc_debug asm_exc_nmi
        exc_nmi asm_sysvec_apic_timer_interrupt sysvec_apic_timer_interrupt
        asm_common_interrupt common_interrupt asm_sysvec_call_function_single
        sysvec_call_function_single asm_sysvec_reschedule_ipi asm_exc_stack_segment
        exc_stack_segment handle_bug handle_invalid_op do_error_trap do_trap do_int3
        do_user_addr_fault kernel_fault handle_page_fault page_fault_oops no_context
        __bad_area_nosemaphore bad_area_nosemaphore kernelmode_fixup_or_oops
        do_kern_addr_fault spurious_kernel_fault fixup_exception ex_handler_default
        entry_SYSCALL_64 entry_SYSCALL_64_after_hwframe do_syscall_64 do_syscall_x64
        x64_sys_call ret_from_fork ret_from_fork_asm die oops_end oops_begin __die
        __die_body show_regs show_trace_log_lvl show_stack dump_stack dump_stack_lvl
        nmi_handle default_do_nmi irqentry_exit irqentry_enter __sysvec_apic_timer_interrupt
        native_safe_halt default_idle arch_cpu_idle
        """.split()),
    paging=PagingGeometry(page_sizes=(4096,), levels=(4, 5), va_bits=(48, 57)),
    address_space="x86_64:X86_64",
    percpu_zero_based=True,
    percpu_current=True,
)

AARCH64 = Platform(
    name="aarch64", aliases=("arm64",), elf_machine=MACHINE_NUMBERS["aarch64"], byteorder="little", pointer_size=8,
    prstatus=RegisterLayout(tuple([f"x{i}" for i in range(31)] + ["sp", "pc", "pstate"])),
    pc="pc", sp="sp", fp="x29",
    user_mode=("pstate", 0xF, 0),  # PSTATE.M[3:0] == EL0t
    pt_regs="struct pt_regs",
    pt_regs_fallback={**{f"x{i}": 8 * i for i in range(31)}, "sp": 248, "pc": 256, "pstate": 264},
    thread_size=16384,
    cpu_stacks=("IRQ", "overflow", "SDEI"),
    unwinders=("fp",),  # frame records (x29, x30)
    log_ip_label=r"pc : ",
    never_guilty=frozenset("""
        el1_abort el1_da el1_ia el1_undef el1_inv el1_dbg el1_fpac el1_bti el1h_64_sync
        el1h_64_sync_handler el1h_64_irq el1h_64_irq_handler el1_interrupt el0_svc
        el0t_64_sync el0t_64_sync_handler el0_svc_common do_el0_svc invoke_syscall
        do_mem_abort do_translation_fault do_page_fault do_bad_area __do_kernel_fault
        die_kernel_fault die arm64_notify_die do_undefinstr bug_handler brk_handler
        call_break_hook do_debug_exception el1_dbg_handler call_el1_break_hook
        ret_from_fork show_regs dump_backtrace show_stack dump_stack dump_stack_lvl
        __die panic_bad_stack handle_bad_stack cpu_do_idle arch_cpu_idle default_idle_call
        """.split()),
    paging=PagingGeometry(page_sizes=(4096, 16384, 65536), levels=(2, 3, 4, 5),
                          va_bits=(36, 39, 42, 47, 48, 52)),
    address_space="aarch64:AArch64",
)

PLATFORMS: dict[str, Platform] = {p.name: p for p in (X86_64, AARCH64)}
_BY_ALIAS = {a: p for p in PLATFORMS.values() for a in (p.name, *p.aliases)}
_BY_ELF = {p.elf_machine: p for p in PLATFORMS.values()}


def known_platforms() -> list[str]:
    return sorted(PLATFORMS)


def platform(name: str) -> Platform | None:
    """The record of an architecture by any of its names; None when vmcorekit has none."""
    return _BY_ALIAS.get(name.lower()) if name else None


def platform_for_elf_machine(machine: int) -> Platform | None:
    return _BY_ELF.get(machine)
