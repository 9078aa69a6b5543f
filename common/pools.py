"""The pool model both configuration sources (MetalLB's ConfigMap and the metallb.io CRDs) are parsed into."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from common.selectors import LabelSelector

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_buggy_ip(ip: IPAddress) -> bool:
    """An IPv4 address ending in .0 or .255: some CPE firmwares drop traffic to them (avoid-buggy-ips)."""
    return ip.version == 4 and int(ip) & 0xFF in (0, 0xFF)


def buggy_count(first: int, last: int) -> int:
    """How many integers in [first, last] end in .0 or .255 as IPv4 addresses (O(1), for pool sizes)."""

    def upto(n: int, residue: int) -> int:  # count of x in [0, n] with x % 256 == residue
        return 0 if n < residue else (n - residue) // 256 + 1

    return sum(upto(last, r) - upto(first - 1, r) for r in (0, 255))


@dataclass(frozen=True)
class AddressRange:
    """An inclusive range of addresses of one family, first <= last."""

    first: IPAddress
    last: IPAddress

    def __post_init__(self) -> None:
        if self.first.version != self.last.version:
            raise ValueError(f"{self.first} and {self.last} are of different address families")
        if int(self.first) > int(self.last):
            raise ValueError(f"{self.first} is after {self.last}")

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    @property
    def version(self) -> int:
        return self.first.version

    def __contains__(self, ip: object) -> bool:
        if not isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address) or ip.version != self.version:
            return False
        return int(self.first) <= int(ip) <= int(self.last)

    def __str__(self) -> str:
        """CIDR notation when the range is exactly one prefix, else "first-last"."""
        networks = list(ipaddress.summarize_address_range(self.first, self.last))
        if len(networks) == 1:
            return str(networks[0])
        return f"{self.first}-{self.last}"


@dataclass(frozen=True)
class ServiceAllocation:
    """IPAddressPool.spec.serviceAllocation: which Services may use the pool, and with what priority."""

    priority: int | None = None
    namespaces: tuple[str, ...] = ()
    namespace_selectors: tuple[LabelSelector, ...] = ()
    service_selectors: tuple[LabelSelector, ...] = ()

    def admits(
        self, namespace: str, namespace_labels: Mapping[str, str], service_labels: Mapping[str, str]
    ) -> bool:
        """Each non-empty criterion must hold; within a list of selectors any one matching is enough."""
        if self.namespaces and namespace not in self.namespaces:
            return False
        selectors = self.namespace_selectors
        if selectors and not any(s.matches(namespace_labels) for s in selectors):
            return False
        return not self.service_selectors or any(s.matches(service_labels) for s in self.service_selectors)


# Who may share an IP of a pool (the allow-shared-ip annotation): any two Services with the same key
# (MetalLB's rule), or only Services of one namespace.
IP_SHARING_CLUSTER = "cluster"
IP_SHARING_NAMESPACE = "namespace"
IP_SHARING_SCOPES = (IP_SHARING_CLUSTER, IP_SHARING_NAMESPACE)


@dataclass(frozen=True)
class Pool:
    name: str
    ranges: tuple[AddressRange, ...]
    protocol: str = "layer2"
    auto_assign: bool = True
    avoid_buggy_ips: bool = False
    service_allocation: ServiceAllocation | None = None
    source: str = ""  # the object it came from, e.g. "ConfigMap metallb-system/config"
    labels: tuple[tuple[str, str], ...] = ()  # the IPAddressPool's labels (for ipAddressPoolSelectors)
    ip_sharing: str = IP_SHARING_CLUSTER  # IP_SHARING_SCOPES

    def contains(self, ip: IPAddress) -> bool:
        """Whether ``ip`` is one this pool hands out (avoid-buggy-ips excludes .0 and .255)."""
        if self.avoid_buggy_ips and is_buggy_ip(ip):
            return False
        return any(ip in r for r in self.ranges)

    def versions(self) -> tuple[int, ...]:
        return tuple(sorted({r.version for r in self.ranges}))

    def size(self, version: int | None = None) -> int:
        """Number of assignable addresses (of one family, or all)."""
        total = 0
        for r in self.ranges:
            if version is not None and r.version != version:
                continue
            total += r.size
            if self.avoid_buggy_ips and r.version == 4:
                total -= buggy_count(int(r.first), int(r.last))
        return total


@dataclass(frozen=True)
class L2Advertisement:
    name: str
    ip_address_pools: tuple[str, ...] = ()
    ip_address_pool_selectors: tuple[LabelSelector, ...] = ()
    node_selectors: tuple[LabelSelector, ...] = ()
    interfaces: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class Config:
    pools: tuple[Pool, ...] = ()
    l2_advertisements: tuple[L2Advertisement, ...] = ()

    def pool(self, name: str) -> Pool | None:
        for pool in self.pools:
            if pool.name == name:
                return pool
        return None
