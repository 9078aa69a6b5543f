"""What the speaker needs of Nodes and Services, as plain frozen data parsed from their JSON."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common.pools import IPAddress
from common.services import assigned_ips, is_handled, service_key

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class NodeFacts:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False, compare=True)
    network_unavailable: bool = False
    addresses: tuple[IPAddress, ...] = ()  # InternalIPs, in the order the kubelet lists them

    @property
    def excluded(self) -> bool:
        """Labelled out of external load balancers (any value counts, as in Kubernetes)."""
        return EXCLUDE_LABEL in self.labels

    @property
    def eligible(self) -> bool:
        """May announce LoadBalancer IPs at all: network available and not labelled out."""
        return not self.network_unavailable and not self.excluded


def node_facts(node: Mapping[str, Any]) -> NodeFacts:
    metadata = _mapping(node.get("metadata"))
    labels = {str(k): str(v) for k, v in _mapping(metadata.get("labels")).items()}
    status = _mapping(node.get("status"))
    unavailable = False
    conditions = status.get("conditions")
    for condition in conditions if isinstance(conditions, list) else ():
        condition = _mapping(condition)
        if condition.get("type") == "NetworkUnavailable" and condition.get("status") == "True":
            unavailable = True
    addresses: list[IPAddress] = []
    raw_addresses = status.get("addresses")
    for entry in raw_addresses if isinstance(raw_addresses, list) else ():
        entry = _mapping(entry)
        if entry.get("type") != "InternalIP":
            continue
        try:
            addresses.append(ipaddress.ip_address(str(entry.get("address", "")).strip()))
        except ValueError:
            continue
    return NodeFacts(
        name=str(metadata.get("name", "")),
        labels=labels,
        network_unavailable=unavailable,
        addresses=tuple(addresses),
    )


@dataclass(frozen=True)
class ServiceFacts:
    key: str  # namespace/name
    ips: tuple[IPAddress, ...]
    local: bool  # externalTrafficPolicy: Local

    @property
    def namespace(self) -> str:
        return self.key.partition("/")[0]

    @property
    def name(self) -> str:
        return self.key.partition("/")[2]


def service_facts(service: Mapping[str, Any], load_balancer_class: str | None) -> ServiceFacts | None:
    """The facts of a Service the speaker announces for, or None (not ours, or no IP assigned yet)."""
    if not is_handled(service, load_balancer_class):
        return None
    ips = assigned_ips(service)
    if not ips:
        return None
    policy = _mapping(service.get("spec")).get("externalTrafficPolicy")
    return ServiceFacts(key=service_key(service), ips=ips, local=policy == "Local")
