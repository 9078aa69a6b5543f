"""Facts about a Service every component needs: is it ours, which IPs its status shows, which annotations
carry MetalLB's requests. Pure functions over the Service's JSON."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from common.pools import IPAddress

# MetalLB reads its Service annotations under both prefixes (the old one still works).
PREFIXES = ("metallb.io/", "metallb.universe.tf/")
# Where the controller writes the pool an IP came from.
POOL_ANNOTATION_OUT = "metallb.io/ip-allocated-from-pool"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def service_key(service: Mapping[str, Any]) -> str:
    """``namespace/name``."""
    metadata = _mapping(service.get("metadata"))
    return f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"


def is_handled(service: Mapping[str, Any], load_balancer_class: str | None) -> bool:
    """Type LoadBalancer, and no spec.loadBalancerClass (without our class flag) or exactly our class."""
    spec = _mapping(service.get("spec"))
    if spec.get("type") != "LoadBalancer":
        return False
    service_class = spec.get("loadBalancerClass") or None
    return service_class == load_balancer_class


def ingress_for(ips: Sequence[IPAddress]) -> list[dict[str, str]]:
    """status.loadBalancer.ingress for ``ips``; ipMode VIP: traffic to the IP is handled on the node."""
    return [{"ip": str(ip), "ipMode": "VIP"} for ip in ips]


def assigned_ips(service: Mapping[str, Any]) -> tuple[IPAddress, ...]:
    """The valid IPs in status.loadBalancer.ingress (hostnames and garbage skipped, duplicates dropped)."""
    status = _mapping(service.get("status"))
    ingress = _mapping(status.get("loadBalancer")).get("ingress")
    if not isinstance(ingress, list):
        return ()
    ips: list[IPAddress] = []
    for entry in ingress:
        text = _mapping(entry).get("ip")
        if not isinstance(text, str):
            continue
        try:
            ip = ipaddress.ip_address(text.strip())
        except ValueError:
            continue
        if ip not in ips:
            ips.append(ip)
    return tuple(ips)
