"""Facts about EndpointSlices that every component needs: which Service a slice belongs to, which endpoints
it lists, whether each is ready, serving or terminating, and where it runs. Pure functions over the
EndpointSlice's JSON (discovery.k8s.io/v1).

The dataplane turns these into forwarding rules; the speaker asks where endpoints that can serve run
(externalTrafficPolicy Local). Conditions follow the API's rules for unset values (kube-proxy reads them the
same way): an unset `ready` means true, an unset `serving` means the value of `ready`, an unset `terminating`
means false. Like kube-proxy, only an endpoint's first address is used (the API allows one per endpoint for
IP address types).
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from common.errors import FieldProblem, preview

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")
PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True, slots=True)
class SlicePort:
    name: str  # "" for an unnamed port
    protocol: str  # TCP, UDP or SCTP
    port: int


@dataclass(frozen=True, slots=True)
class SliceEndpoint:
    address: str  # normalised (ipaddress' text form) for IP address types
    ready: bool
    serving: bool
    terminating: bool
    node_name: str  # "" when the slice does not say
    zone: str  # "" when the slice does not say


@dataclass(frozen=True, slots=True)
class EndpointSliceFacts:
    namespace: str
    name: str
    service: str  # from the kubernetes.io/service-name label; "" when absent
    address_type: str  # IPv4, IPv6 or FQDN
    ports: tuple[SlicePort, ...]
    endpoints: tuple[SliceEndpoint, ...]
    trigger_time: str  # the last-change-trigger-time annotation (RFC 3339), "" when absent
    problems: tuple[FieldProblem, ...] = ()

    @property
    def family(self) -> int:
        """4 or 6 for IP slices, 0 for FQDN slices (which carry no routable addresses)."""
        return {"IPv4": 4, "IPv6": 6}.get(self.address_type, 0)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _condition(conditions: Mapping[str, Any], key: str, default: bool) -> bool:
    value = conditions.get(key)
    return value if isinstance(value, bool) else default


def _ports(raw: Any, problems: list[FieldProblem]) -> tuple[SlicePort, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(FieldProblem("ports", "must be a list"))
        return ()
    ports: list[SlicePort] = []
    for index, entry in enumerate(raw):
        item = _mapping(entry)
        field = f"ports[{index}]"
        port = item.get("port")
        protocol = item.get("protocol", "TCP")
        name = item.get("name") or ""
        if port is None:
            # An unset port means "all ports" in the API; no proxy can use it (kube-proxy skips it too).
            problems.append(FieldProblem(f"{field}.port", "unset (all ports) cannot be proxied"))
            continue
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            problems.append(FieldProblem(f"{field}.port", f"{preview(port)} is not a port number (1-65535)"))
            continue
        if protocol not in PROTOCOLS:
            problems.append(
                FieldProblem(f"{field}.protocol", f"{preview(protocol)} is not one of {', '.join(PROTOCOLS)}")
            )
            continue
        if not isinstance(name, str):
            problems.append(FieldProblem(f"{field}.name", f"{preview(name)} is not a string"))
            continue
        ports.append(SlicePort(name, protocol, port))
    return tuple(ports)


def _address(raw: Any, address_type: str) -> str | None:
    if not isinstance(raw, str):
        return None
    if address_type == "FQDN":
        return raw
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return None
    if address.version != (4 if address_type == "IPv4" else 6):
        return None
    return str(address)


def _endpoints(raw: Any, address_type: str, problems: list[FieldProblem]) -> tuple[SliceEndpoint, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(FieldProblem("endpoints", "must be a list"))
        return ()
    endpoints: list[SliceEndpoint] = []
    for index, entry in enumerate(raw):
        item = _mapping(entry)
        addresses = item.get("addresses")
        if not isinstance(addresses, list) or not addresses:
            problems.append(FieldProblem(f"endpoints[{index}].addresses", "must list at least one address"))
            continue
        address = _address(addresses[0], address_type)
        if address is None:
            problems.append(
                FieldProblem(
                    f"endpoints[{index}].addresses[0]",
                    f"{preview(addresses[0])} is not an {address_type} address",
                )
            )
            continue
        conditions = _mapping(item.get("conditions"))
        ready = _condition(conditions, "ready", True)
        node_name = item.get("nodeName")
        zone = item.get("zone")
        endpoints.append(
            SliceEndpoint(
                address=address,
                ready=ready,
                serving=_condition(conditions, "serving", ready),
                terminating=_condition(conditions, "terminating", False),
                # Interned: thousands of endpoints share a few node and zone names.
                node_name=sys.intern(node_name) if isinstance(node_name, str) else "",
                zone=sys.intern(zone) if isinstance(zone, str) else "",
            )
        )
    return tuple(endpoints)


def slice_facts(obj: Mapping[str, Any]) -> EndpointSliceFacts:
    """The usable content of an EndpointSlice. Malformed ports and endpoints are skipped and reported in
    `problems` (each naming its field), so one bad entry never hides the good ones."""
    metadata = _mapping(obj.get("metadata"))
    labels = _mapping(metadata.get("labels"))
    annotations = _mapping(metadata.get("annotations"))
    problems: list[FieldProblem] = []
    address_type = obj.get("addressType")
    if address_type not in ADDRESS_TYPES:
        problems.append(
            FieldProblem("addressType", f"{preview(address_type)} is not one of {', '.join(ADDRESS_TYPES)}")
        )
        address_type = "FQDN"  # nothing routable: the slice contributes no endpoints
        endpoints: tuple[SliceEndpoint, ...] = ()
    else:
        endpoints = _endpoints(obj.get("endpoints"), str(address_type), problems)
    service = labels.get(SERVICE_NAME_LABEL)
    trigger = annotations.get(TRIGGER_TIME_ANNOTATION)
    return EndpointSliceFacts(
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        service=service if isinstance(service, str) else "",
        address_type=str(address_type),
        ports=_ports(obj.get("ports"), problems),
        endpoints=endpoints,
        trigger_time=trigger if isinstance(trigger, str) else "",
        problems=tuple(problems),
    )


def slice_service_key(endpoint_slice: Mapping[str, Any]) -> str | None:
    """``namespace/name`` of the Service a slice belongs to (label kubernetes.io/service-name), or None."""
    metadata = _mapping(endpoint_slice.get("metadata"))
    name = _mapping(metadata.get("labels")).get(SERVICE_NAME_LABEL)
    if not isinstance(name, str) or not name:
        return None
    return f"{metadata.get('namespace', '')}/{name}"


def can_serve(conditions: Any) -> bool:
    """Ready, or serving while terminating (KEP-1669). A missing ``ready`` means ready (the API says so)."""
    conditions = _mapping(conditions)
    ready = _condition(conditions, "ready", True)
    return ready or _condition(conditions, "serving", ready)


@dataclass(frozen=True)
class ServingEndpoints:
    """Where a Service's endpoints that can serve are: per IP version, the nodes hosting at least one."""

    any_serving: bool = False
    nodes_by_version: tuple[tuple[int, frozenset[str]], ...] = ()

    def nodes(self, version: int) -> frozenset[str]:
        for known, nodes in self.nodes_by_version:
            if known == version:
                return nodes
        return frozenset()


def serving_endpoints(slices: Iterable[Mapping[str, Any]]) -> ServingEndpoints:
    """Fold a Service's slices; endpoints without a nodeName count for ``any_serving`` only."""
    any_serving = False
    nodes: dict[int, set[str]] = {}
    for endpoint_slice in slices:
        facts = slice_facts(endpoint_slice)
        if not facts.family:
            continue
        for endpoint in facts.endpoints:
            if not (endpoint.ready or endpoint.serving):
                continue
            any_serving = True
            if endpoint.node_name:
                nodes.setdefault(facts.family, set()).add(endpoint.node_name)
    return ServingEndpoints(
        any_serving=any_serving,
        nodes_by_version=tuple(sorted((v, frozenset(n)) for v, n in nodes.items())),
    )
