"""Facts about EndpointSlices every component needs: which Service a slice belongs to, and which endpoints can
serve. Pure functions over the slices' JSON."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# discovery.k8s.io/v1 addressType -> IP version (FQDN slices carry no addresses the network layer uses).
ADDRESS_TYPES = {"IPv4": 4, "IPv6": 6}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def slice_service_key(endpoint_slice: Mapping[str, Any]) -> str | None:
    """``namespace/name`` of the Service a slice belongs to (label kubernetes.io/service-name), or None."""
    metadata = _mapping(endpoint_slice.get("metadata"))
    name = _mapping(metadata.get("labels")).get(SERVICE_NAME_LABEL)
    if not isinstance(name, str) or not name:
        return None
    return f"{metadata.get('namespace', '')}/{name}"


def can_serve(conditions: Any) -> bool:
    """Ready, or serving while terminating. A missing ``ready`` means ready, as the API documents."""
    conditions = _mapping(conditions)
    ready = conditions.get("ready")
    if ready is None or ready is True:
        return True
    return conditions.get("serving") is True


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
        version = ADDRESS_TYPES.get(str(endpoint_slice.get("addressType")))
        endpoints = endpoint_slice.get("endpoints")
        if version is None or not isinstance(endpoints, list):
            continue
        for endpoint in endpoints:
            endpoint = _mapping(endpoint)
            if not endpoint.get("addresses") or not can_serve(endpoint.get("conditions")):
                continue
            any_serving = True
            node = endpoint.get("nodeName")
            if isinstance(node, str) and node:
                nodes.setdefault(version, set()).add(node)
    return ServingEndpoints(
        any_serving=any_serving,
        nodes_by_version=tuple(sorted((v, frozenset(n)) for v, n in nodes.items())),
    )
