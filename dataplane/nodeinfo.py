"""What the dataplane knows of its node: the Node object's addresses and pod CIDRs, and which local addresses
--nodeport-addresses selects (pure; the daemon reads the interfaces)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dataplane.backend import NodeNetwork

NODE_ADDRESS_TYPES = ("InternalIP", "ExternalIP")


def parse_cidrs(text: str) -> tuple[str, ...]:
    """A comma-separated CIDR list (a flag's value); raises ValueError naming the bad entry."""
    cidrs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            cidrs.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not a CIDR") from exc
    return tuple(cidrs)


def node_network(
    name: str,
    node: Mapping[str, Any] | None,
    local_addresses: Iterable[str],
    nodeport_cidrs: Sequence[str] | None,
    cluster_cidrs: Sequence[str],
    keep_local_addresses: bool = False,
) -> NodeNetwork:
    """The NodeNetwork for `name`, from its Node object (may be None while unknown) and the interfaces
    (`keep_local_addresses`: all of them, for a mode that needs them)."""
    node = node or {}
    status = node.get("status") or {}
    spec = node.get("spec") or {}
    addresses = []
    for entry in status.get("addresses") or []:
        if isinstance(entry, Mapping) and entry.get("type") in NODE_ADDRESS_TYPES:
            try:
                text = str(ipaddress.ip_address(str(entry.get("address"))))
            except ValueError:
                continue
            if text not in addresses:
                addresses.append(text)
    pod_cidrs = list(cluster_cidrs)
    if not pod_cidrs:
        raw = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
        for cidr in raw:
            try:
                pod_cidrs.append(str(ipaddress.ip_network(str(cidr), strict=False)))
            except ValueError:
                continue
    local_addresses = list(local_addresses)
    nodeport_addresses = None
    if nodeport_cidrs:
        networks = [ipaddress.ip_network(c) for c in nodeport_cidrs]
        nodeport_addresses = tuple(
            _sorted({a for a in local_addresses if any(ipaddress.ip_address(a) in n for n in networks)})
        )
    return NodeNetwork(
        name=name,
        addresses=tuple(addresses),
        nodeport_addresses=nodeport_addresses,
        pod_cidrs=tuple(pod_cidrs),
        local_addresses=tuple(_sorted(local_addresses)) if keep_local_addresses else (),
    )


def _sorted(addresses: Iterable[str]) -> list[str]:
    def key(address: str) -> tuple[int, int]:
        ip = ipaddress.ip_address(address)
        return ip.version, int(ip)

    return sorted(set(addresses), key=key)
