"""Host-local pod IP allocation for a lab kubelet (like the CNI host-local plugin), pure.

A node owns an IPv4 pod CIDR and optionally an IPv6 one. The first host address of each is the pod
gateway (it sits on the node's pod bridge), so pods get the others. A pod gets the IPv6 address with the
same host offset as its IPv4 one (10.244.1.7 <-> fd00:244:1::7), which keeps the lab readable. Allocation
continues after the last address handed out instead of reusing freed ones at once, so a new pod does not
inherit a dead pod's conntrack entries or stale neighbour caches.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


class IpamError(ValueError):
    """A CIDR, an address or an allocation request the allocator cannot honour."""


@dataclass(frozen=True)
class PodAddresses:
    ipv4: str
    ipv6: str | None
    prefix4: int
    prefix6: int | None

    @property
    def ips(self) -> list[str]:
        return [self.ipv4] + ([self.ipv6] if self.ipv6 else [])


def _network(cidr: str, version: int, what: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        raise IpamError(f"{what} {cidr!r} is not a valid network: {exc}") from None
    if net.version != version:
        raise IpamError(f"{what} {cidr!r} is not an IPv{version} network")
    return net


class PodIpam:
    def __init__(self, cidr: str, cidr6: str | None = None) -> None:
        net4 = _network(cidr, 4, "pod CIDR")
        if net4.prefixlen > 29:
            raise IpamError(f"pod CIDR {cidr!r} is too small (at most /29)")
        self.net4 = net4
        self.net6 = _network(cidr6, 6, "IPv6 pod CIDR") if cidr6 else None
        if self.net6 is not None and self.net6.prefixlen > 120:
            raise IpamError(f"IPv6 pod CIDR {cidr6!r} is too small (at most /120)")
        # Offsets: 0 is the network, 1 the gateway, the last (IPv4) the broadcast address.
        self.first = 2
        self.last = self.net4.num_addresses - 2
        self._by_key: dict[str, int] = {}
        self._by_offset: dict[int, str] = {}
        self._cursor = self.first - 1

    @property
    def gateway4(self) -> str:
        return str(self.net4.network_address + 1)

    @property
    def gateway6(self) -> str | None:
        return str(self.net6.network_address + 1) if self.net6 is not None else None

    @property
    def capacity(self) -> int:
        return self.last - self.first + 1

    def _addresses(self, offset: int) -> PodAddresses:
        v6 = str(self.net6.network_address + offset) if self.net6 is not None else None
        return PodAddresses(
            ipv4=str(self.net4.network_address + offset),
            ipv6=v6,
            prefix4=self.net4.prefixlen,
            prefix6=self.net6.prefixlen if self.net6 is not None else None,
        )

    def allocate(self, key: str) -> PodAddresses:
        """The addresses of `key` (idempotent), allocating the next free ones if it has none yet."""
        if key in self._by_key:
            return self._addresses(self._by_key[key])
        for step in range(1, self.capacity + 1):
            offset = self.first + (self._cursor - self.first + step) % self.capacity
            if offset not in self._by_offset:
                self._take(key, offset)
                self._cursor = offset
                return self._addresses(offset)
        raise IpamError(f"pod CIDR {self.net4} is exhausted ({self.capacity} addresses in use)")

    def restore(self, key: str, ipv4: str) -> PodAddresses:
        """Record an address a pod already has (adoption after a kubelet restart)."""
        try:
            addr = ipaddress.IPv4Address(ipv4)
        except ValueError:
            raise IpamError(f"{ipv4!r} is not an IPv4 address") from None
        if addr not in self.net4:
            raise IpamError(f"{ipv4} is outside pod CIDR {self.net4}")
        offset = int(addr) - int(self.net4.network_address)
        if not self.first <= offset <= self.last:
            raise IpamError(f"{ipv4} is reserved in pod CIDR {self.net4}")
        owner = self._by_offset.get(offset)
        if owner is not None and owner != key:
            raise IpamError(f"{ipv4} already belongs to {owner}")
        if key in self._by_key and self._by_key[key] != offset:
            raise IpamError(f"{key} already has {self._addresses(self._by_key[key]).ipv4}")
        self._take(key, offset)
        return self._addresses(offset)

    def _take(self, key: str, offset: int) -> None:
        self._by_key[key] = offset
        self._by_offset[offset] = key

    def release(self, key: str) -> None:
        offset = self._by_key.pop(key, None)
        if offset is not None:
            del self._by_offset[offset]

    def owner_of(self, ipv4: str) -> str | None:
        try:
            offset = int(ipaddress.IPv4Address(ipv4)) - int(self.net4.network_address)
        except ValueError:
            return None
        return self._by_offset.get(offset)

    def __len__(self) -> int:
        return len(self._by_key)
