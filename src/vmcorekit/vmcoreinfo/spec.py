"""The keys Documentation/admin-guide/kdump/vmcoreinfo.rst documents, with the kernel releases
and architectures that export them, for `vmcoreinfo --check`.

A key is written as it appears before '=' (SYMBOL(prb), OFFSET(page.flags), PAGESIZE). `since`
and `until` bound the releases (until is exclusive); `arch` limits it to one architecture;
`group` marks alternatives of which a kernel exports one (memory model, printk layout).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import VmcoreInfo


@dataclass(frozen=True)
class KeySpec:
    key: str
    since: tuple[int, int] = (0, 0)
    until: tuple[int, int] | None = None
    arch: str | None = None
    group: str | None = None  # alternatives: required only if the group is the one in use
    required: bool = True  # False: documented but config-dependent (absence is not a problem)


def _keys(text: str, **kw: object) -> list[KeySpec]:
    return [KeySpec(k, **kw) for k in text.split()]  # type: ignore[arg-type]


V = (5, 10)  # lockless printk ring buffer
SPEC: list[KeySpec] = [
    *_keys("OSRELEASE PAGESIZE SYMBOL(init_uts_ns) OFFSET(uts_namespace.name) SYMBOL(node_online_map) "
           "SYMBOL(swapper_pg_dir) SYMBOL(_stext) SIZE(page) SIZE(pglist_data) SIZE(zone) SIZE(free_area) "
           "SIZE(list_head) SIZE(nodemask_t) OFFSET(page.flags) OFFSET(page._refcount) OFFSET(page.mapping) "
           "OFFSET(page.lru) OFFSET(page._mapcount) OFFSET(page.private) OFFSET(pglist_data.node_zones) "
           "OFFSET(pglist_data.nr_zones) OFFSET(pglist_data.node_start_pfn) OFFSET(pglist_data.node_spanned_pages) "
           "OFFSET(pglist_data.node_id) OFFSET(zone.free_area) OFFSET(zone.vm_stat) OFFSET(zone.spanned_pages) "
           "OFFSET(free_area.free_list) OFFSET(list_head.next) OFFSET(list_head.prev) LENGTH(zone.free_area) "
           "LENGTH(free_area.free_list) NUMBER(NR_FREE_PAGES) NUMBER(PG_lru) NUMBER(PG_private) "
           "NUMBER(PG_swapcache) NUMBER(PG_head_mask) NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)"),
    # 6.10 made "slab" a page type: NUMBER(PAGE_SLAB_MAPCOUNT_VALUE) replaced NUMBER(PG_slab)
    *_keys("NUMBER(PG_slab)", until=(6, 10)),
    *_keys("SYMBOL(vmemmap)", since=(6, 2), required=False),  # CONFIG_SPARSEMEM_VMEMMAP
    *_keys("SYMBOL(vmap_area_list) OFFSET(vmap_area.va_start) OFFSET(vmap_area.list)", until=(6, 9)),
    *_keys("OFFSET(page.compound_dtor) OFFSET(page.compound_order) OFFSET(page.compound_head) "
           "NUMBER(HUGETLB_PAGE_DTOR)", required=False),
    *_keys("NUMBER(PG_swapbacked) NUMBER(PG_hwpoison) NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE) "
           "NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE) NUMBER(PAGE_SLAB_MAPCOUNT_VALUE) NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE) "
           "OFFSET(page.page_type) OFFSET(folio._folio_dtor) OFFSET(folio._folio_order) NUMBER(PG_hugetlb) "
           "NUMBER(PAGE_TYPE_BASE) NUMBER(PG_unaccepted)", required=False),
    *_keys("BUILD-ID", since=(5, 9)),
    *_keys("CRASHTIME KERNELOFFSET", required=False),
    # memory models
    *_keys("SYMBOL(mem_section) LENGTH(mem_section) SIZE(mem_section) OFFSET(mem_section.section_mem_map) "
           "NUMBER(SECTION_SIZE_BITS) NUMBER(MAX_PHYSMEM_BITS)", group="sparsemem"),
    *_keys("SYMBOL(mem_map) SYMBOL(contig_page_data) OFFSET(pglist_data.node_mem_map)", group="flatmem"),
    # printk: the lockless ring buffer (5.10+) or the structured log (3.5-5.9)
    *_keys("SYMBOL(prb) SYMBOL(printk_rb_static) SYMBOL(clear_seq) SIZE(printk_ringbuffer) "
           "OFFSET(printk_ringbuffer.desc_ring) OFFSET(printk_ringbuffer.text_data_ring) "
           "OFFSET(printk_ringbuffer.fail) SIZE(prb_desc_ring) OFFSET(prb_desc_ring.count_bits) "
           "OFFSET(prb_desc_ring.descs) OFFSET(prb_desc_ring.infos) OFFSET(prb_desc_ring.head_id) "
           "OFFSET(prb_desc_ring.tail_id) SIZE(prb_desc) OFFSET(prb_desc.state_var) "
           "OFFSET(prb_desc.text_blk_lpos) SIZE(prb_data_blk_lpos) OFFSET(prb_data_blk_lpos.begin) "
           "OFFSET(prb_data_blk_lpos.next) SIZE(printk_info) OFFSET(printk_info.seq) OFFSET(printk_info.ts_nsec) "
           "OFFSET(printk_info.text_len) OFFSET(printk_info.caller_id) OFFSET(printk_info.dev_info) "
           "SIZE(dev_printk_info) OFFSET(dev_printk_info.subsystem) LENGTH(printk_info_subsystem) "
           "OFFSET(dev_printk_info.device) LENGTH(printk_info_device) SIZE(prb_data_ring) "
           "OFFSET(prb_data_ring.size_bits) OFFSET(prb_data_ring.data) OFFSET(prb_data_ring.head_lpos) "
           "OFFSET(prb_data_ring.tail_lpos) SIZE(atomic_long_t) OFFSET(atomic_long_t.counter)",
           since=V, group="printk-lockless"),
    *_keys("SIZE(latched_seq) OFFSET(latched_seq.val)", since=(5, 11), group="printk-lockless"),
    *_keys("SYMBOL(log_buf) SYMBOL(log_buf_len) SYMBOL(log_first_idx) SYMBOL(clear_idx) SYMBOL(log_next_idx) "
           "SIZE(printk_log) OFFSET(printk_log.ts_nsec) OFFSET(printk_log.len) OFFSET(printk_log.text_len) "
           "OFFSET(printk_log.dict_len)", until=V, group="printk-structured"),
    *_keys("SYMBOL(kallsyms_names) SYMBOL(kallsyms_num_syms) SYMBOL(kallsyms_token_table) "
           "SYMBOL(kallsyms_token_index)", since=(6, 0), required=False),
    *_keys("SYMBOL(kallsyms_offsets) SYMBOL(kallsyms_relative_base) SYMBOL(kallsyms_addresses)",
           since=(6, 0), required=False),
    # x86_64
    *_keys("NUMBER(phys_base) SYMBOL(init_top_pgt) NUMBER(pgtable_l5_enabled) SYMBOL(node_data) "
           "LENGTH(node_data) NUMBER(KERNEL_IMAGE_SIZE)", arch="x86_64"),
    *_keys("NUMBER(sme_mask)", arch="x86_64", since=(4, 14)),
    # arm64
    *_keys("NUMBER(VA_BITS) NUMBER(kimage_voffset) NUMBER(PHYS_OFFSET)", arch="aarch64"),
    *_keys("NUMBER(KERNELPACMASK)", arch="aarch64", since=(5, 7), required=False),
    *_keys("NUMBER(TCR_EL1_T1SZ)", arch="aarch64", since=(5, 12), required=False),
    *_keys("NUMBER(MODULES_VADDR) NUMBER(MODULES_END) NUMBER(VMALLOC_START) NUMBER(VMALLOC_END) "
           "NUMBER(VMEMMAP_START) NUMBER(VMEMMAP_END)", arch="aarch64", since=(6, 7), required=False),
]
DOCUMENTED = {s.key for s in SPEC}
# Groups of which a kernel exports exactly one: the member found decides which is in use.
GROUP_MARKERS = {"sparsemem": "SYMBOL(mem_section)", "flatmem": "SYMBOL(mem_map)",
                 "printk-lockless": "SYMBOL(prb)", "printk-structured": "SYMBOL(log_buf)"}


@dataclass
class CheckResult:
    missing: list[str]
    unknown: list[str]
    malformed: list[str]
    notes: list[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.malformed)

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "missing": self.missing, "unknown": self.unknown,
                "malformed": self.malformed, "notes": self.notes}


def check(vi: VmcoreInfo, arch: str | None = None) -> CheckResult:
    """Missing keys (documented for this release and arch), unknown keys and malformed lines."""
    arch = arch or vi.guess_arch()
    ver = vi.kernel_version()[:2] or (99, 0)
    present = set(vi.entries)
    notes: list[str] = []
    groups_in_use = {g for g, marker in GROUP_MARKERS.items() if marker in present}
    if not groups_in_use & {"sparsemem", "flatmem"}:
        notes.append("neither SPARSEMEM (mem_section) nor FLATMEM (mem_map) keys: page classification impossible")
    if not groups_in_use & {"printk-lockless", "printk-structured"} and "SYMBOL(log_buf)" not in present:
        notes.append("no printk keys: the kernel log cannot be located")
    missing = []
    for s in SPEC:
        if not s.required or s.key in present:
            continue
        if s.arch and s.arch != arch:
            continue
        if ver < s.since or (s.until and ver >= s.until):
            continue
        if s.group and s.group not in groups_in_use:
            continue
        missing.append(s.key)
    unknown = sorted(k for k in present if k not in DOCUMENTED and not k.startswith("CONFIG_"))
    malformed = [f"line {m.line_no}: {m.reason}: {m.line[:80]!r}" for m in vi.malformed]
    if arch is None:
        notes.append("architecture unknown: arch-specific keys not checked")
    return CheckResult(missing, unknown, malformed, notes)
