"""Which of a node's interfaces announce an IP: pure selection over what the wire layer reads from the kernel.

By default every interface that can answer except virtual ones (MetalLB's exclusion patterns: bridges' ports,
container and CNI links, loopback, IPVS' dummy). An L2Advertisement naming interfaces overrides the patterns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# MetalLB's default exclusions (internal/layer2), anchored at the start of the name.
DEFAULT_EXCLUDED = (
    r"^docker", r"^cbr", r"^dummy", r"^virbr", r"^lxcbr", r"^veth", r"^lo$", r"^cali", r"^tunl",
    r"^flannel", r"^kube-ipvs", r"^cni", r"^nodelocaldns", r"^lxc",
)  # fmt: skip


@dataclass(frozen=True)
class Interface:
    """What the kernel says about one interface."""

    name: str
    index: int
    mac: str  # "aa:bb:cc:dd:ee:ff"
    up: bool = True
    broadcast: bool = True  # IFF_BROADCAST: ARP works on it
    noarp: bool = False  # IFF_NOARP
    enslaved: bool = False  # a port of a bridge or bond: its master answers instead
    link_local: str = ""  # its IPv6 link-local address: NDP answers from it (none: no NDP here)

    @property
    def ipv6_link_local(self) -> bool:
        return bool(self.link_local)

    def problem(self, version: int) -> str | None:
        """Why this interface cannot announce IPs of ``version``, or None."""
        if not self.up:
            return "is down"
        if self.enslaved:
            return "is a port of a bridge or bond (announce on its master)"
        if self.noarp or not self.broadcast:
            return "does not do ARP/NDP (NOARP or no broadcast)"
        if version == 6 and not self.ipv6_link_local:
            return "has no IPv6 link-local address (needed for NDP)"
        return None


def compile_patterns(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


DEFAULT_PATTERNS = compile_patterns(DEFAULT_EXCLUDED)


@dataclass(frozen=True)
class Selection:
    interfaces: tuple[str, ...]  # sorted names
    missing: tuple[str, ...] = ()  # named by an L2Advertisement but absent on this node
    unusable: tuple[tuple[str, str], ...] = ()  # (name, why) named but unable to announce


def select_interfaces(
    available: Sequence[Interface],
    version: int,
    named: Iterable[str] | None,
    excluded: Sequence[re.Pattern[str]] = DEFAULT_PATTERNS,
) -> Selection:
    """Interfaces to announce an IP of ``version`` on. ``named`` None means "all" (default patterns apply);
    otherwise exactly those names, whatever the patterns say."""
    by_name = {i.name: i for i in available}
    if named is None:
        chosen = [
            i.name
            for i in available
            if i.problem(version) is None and not any(p.search(i.name) for p in excluded)
        ]
        return Selection(tuple(sorted(chosen)))
    wanted = sorted(set(named))
    missing = tuple(n for n in wanted if n not in by_name)
    unusable: list[tuple[str, str]] = []
    chosen = []
    for name in wanted:
        interface = by_name.get(name)
        if interface is None:
            continue
        problem = interface.problem(version)
        if problem is None:
            chosen.append(name)
        else:
            unusable.append((name, problem))
    return Selection(tuple(chosen), missing, tuple(unusable))
