"""Network devices of a network namespace (init_net by default), as crash's `net` lists them.

    net_devices(prog)    # [NetDevice]: address, name, flags, hardware address, IPv4 addresses

The devices are on net->dev_base_head (net_device.dev_list); IPv4 addresses on
dev->ip_ptr->ifa_list (in_ifaddr.ifa_next). Walks are bounded and a broken list is reported.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import CorruptKernelDataError, MemoryReadError, TypeLookupError, partial_result
from ..program.objects import Object
from ..program.types.model import TypeKind
from .lists import list_nodes

if TYPE_CHECKING:
    from ..program.core import Program

__all__ = ["NetDevice", "net_devices", "IFF_NAMES"]

MAX_DEVICES = 1 << 16
_MAX_ADDRS = 1024
_MAX_HWADDR = 32  # MAX_ADDR_LEN
# include/uapi/linux/if.h, enum net_device_flags (stable ABI)
IFF_NAMES = ("UP", "BROADCAST", "DEBUG", "LOOPBACK", "POINTOPOINT", "NOTRAILERS", "RUNNING",
             "NOARP", "PROMISC", "ALLMULTI", "MASTER", "SLAVE", "MULTICAST", "PORTSEL",
             "AUTOMEDIA", "DYNAMIC", "LOWER_UP", "DORMANT", "ECHO")


@dataclass
class NetDevice:
    address: int
    name: str
    flags: int
    hwaddr: str
    mtu: int
    ipv4: list[str] = field(default_factory=list)

    @property
    def flag_names(self) -> list[str]:
        return [n for i, n in enumerate(IFF_NAMES) if self.flags >> i & 1]

    def as_dict(self) -> dict[str, Any]:
        return {"net_device": self.address, "name": self.name, "flags": self.flags,
                "flag_names": self.flag_names, "hwaddr": self.hwaddr, "mtu": self.mtu,
                "ipv4": self.ipv4}


def _hwaddr(prog: "Program", dev: Object) -> str:
    n = min(int(dev.addr_len), _MAX_HWADDR)
    da = dev.dev_addr
    # a pointer since 5.17, an array before
    a = int(da) if da.type_.strip_typedefs().kind == TypeKind.POINTER else da.address_
    if not a or not n:
        return ""
    return ":".join(f"{b:02x}" for b in prog.read(a, n))


def _ipv4(prog: "Program", dev: Object) -> list[str]:
    ind = int(dev.ip_ptr)
    if not ind:
        return []
    out = []
    ifa = int(Object(prog, "struct in_device", address=ind).ifa_list)
    seen: set[int] = set()
    while ifa and len(out) < _MAX_ADDRS:
        if ifa in seen:
            raise CorruptKernelDataError(f"{dev.address_:#x}: IPv4 address list loops at {ifa:#x}")
        seen.add(ifa)
        i = Object(prog, "struct in_ifaddr", address=ifa)
        # __be32 in network order: its bytes in memory are the address's
        out.append(str(ipaddress.IPv4Address(prog.read(i.ifa_address.address_, 4))))
        ifa = int(i.ifa_next)
    return out


def net_devices(prog: "Program", net: int | None = None) -> list[NetDevice]:
    """The devices of network namespace `net` (a struct net address; init_net when None)."""
    if not prog.has_btf:
        raise TypeLookupError("network devices need struct net_device's layout, which only BTF gives")
    if net is None:
        net = prog.symbol_address("init_net")
    head = Object(prog, "struct net", address=net).dev_base_head.address_
    o = prog.offsetof("struct net_device", "dev_list")
    out: list[NetDevice] = []
    try:
        for node in list_nodes(prog, head, what="net devices", limit=MAX_DEVICES):
            dev = Object(prog, "struct net_device", address=node - o)
            try:
                name = bytes(dev.name.string_()).decode("utf-8", "backslashreplace")
                d = NetDevice(dev.address_, name, int(dev.flags), _hwaddr(prog, dev), int(dev.mtu))
                if prog.types.has_member("struct net_device", "ip_ptr"):
                    d.ipv4 = _ipv4(prog, dev)
                out.append(d)
            except (MemoryReadError, CorruptKernelDataError) as e:
                partial_result(f"net device at {dev.address_:#x}: {e}")
    except (MemoryReadError, CorruptKernelDataError) as e:
        partial_result(f"net devices: {e} (after {len(out)} devices)")
    return out
