"""Log levels, facilities and flags: bitfields VMCOREINFO does not export.

struct printk_info (and printk_log before 5.10) packs `u8 facility; u8 flags:5; u8 level:3`;
where the bits sit depends on the compiler and byte order, so they are taken from the kernel's
own type information (BTF) and never guessed. Anything that can answer
`member_bits(struct_name, member) -> (bit_offset, bit_size) | None` will do: prog.types when
the dump carries BTF, or a test double.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .model import LogRecord

MemberBits = Callable[[str, str], "tuple[int, int] | None"]


class BitfieldReader:
    """Extracts level/facility/flags from a struct's raw bytes at known bit positions."""

    def __init__(self, fields: dict[str, tuple[int, int]], byteorder: str = "little") -> None:
        self.fields = fields
        self.order = byteorder
        # Read the smallest byte span covering each field once per record.
        self._spans = {name: (bo // 8, (bo + bs + 7) // 8, bo % 8, (1 << bs) - 1)
                       for name, (bo, bs) in fields.items()}

    def value(self, name: str, data: bytes, base: int) -> int | None:
        span = self._spans.get(name)
        if span is None:
            return None
        lo, hi, shift, mask = span
        raw = int.from_bytes(data[base + lo:base + hi], self.order)
        if self.order != "little":
            # Big-endian bitfields count from the most significant bit of the span.
            shift = (hi - lo) * 8 - shift - (mask.bit_length())
        return (raw >> shift) & mask

    def apply(self, rec: LogRecord, data: bytes, base: int) -> None:
        rec.level = self.value("level", data, base)
        rec.facility = self.value("facility", data, base)
        rec.flags = self.value("flags", data, base)


def bitfield_reader(member_bits: MemberBits | None, structs: tuple[str, ...],
                    byteorder: str = "little") -> tuple[BitfieldReader | None, str | None]:
    """A reader for level/facility/flags of the first struct in `structs` the type source knows,
    or (None, why) when levels cannot be known."""
    if member_bits is None:
        return None, "the dump carries no usable BTF type information"
    for struct_name in structs:
        found: dict[str, tuple[int, int]] = {}
        for member in ("level", "facility", "flags"):
            try:
                bits = member_bits(struct_name, member)
            except Exception:  # noqa: BLE001 - any type-source failure means "unknown"
                bits = None
            if bits is not None:
                found[member] = (int(bits[0]), int(bits[1]))
        if "level" in found:
            return BitfieldReader(found, byteorder), None
    return None, f"BTF has no struct {' / '.join(structs)} with a level member"


def member_bits_of(mem: Any) -> tuple[MemberBits | None, str | None]:
    """The `member_bits` function for a Program (or test double), and why there is none.

    A test double may define `member_bits(struct_name, member)` itself; a Program answers
    through `prog.types` (program/types: BTF found in the dump's memory), whose member_bits
    takes "struct NAME" and raises when the member is unknown."""
    direct = getattr(mem, "member_bits", None)
    if callable(direct):
        return direct, None
    import warnings

    try:
        with warnings.catch_warnings():
            # The registry warns when it falls back to VMCOREINFO; here that is just "unknown".
            warnings.simplefilter("ignore")
            types = mem.types
    except ImportError:
        return None, "type information support is not available"
    except AttributeError:
        return None, "no type information source"
    except Exception as e:  # noqa: BLE001 - a damaged BTF blob must not stop dmesg
        return None, f"BTF unreadable: {e}"
    if types is None:
        return None, "the dump carries no BTF"
    if getattr(types, "kind", "btf") == "vmcoreinfo":
        why = "; ".join(w.removeprefix("no BTF: ") for w in getattr(types, "warnings", []))
        return None, f"no usable BTF in the dump ({why})" if why else "no usable BTF in the dump"
    fn = getattr(types, "member_bits", None)
    if not callable(fn):
        return None, "the type registry cannot locate bit fields"

    def member_bits(struct_name: str, member: str) -> tuple[int, int] | None:
        try:
            return fn(f"struct {struct_name}", member)
        except LookupError:
            return None

    return member_bits, None
