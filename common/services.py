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


# The longest value of one of MetalLB's annotations that is kept; a longer one is cut to one character more,
# so that it can never pass for a valid request (parse_service refuses it) and never costs more memory.
MAX_ANNOTATION_VALUE = 1024

_KEPT_METADATA = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "generation")
_KEPT_SPEC = (
    "type",
    "loadBalancerClass",
    "loadBalancerIP",
    "selector",
    "externalTrafficPolicy",
    "ipFamilies",
    "ipFamilyPolicy",
)


def project_service(service: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a Service the controller reads, and nothing else.

    What a tenant may make large is dropped or bounded: every annotation but MetalLB's (values cut past
    MAX_ANNOTATION_VALUE), managedFields, and for a Service that is not of type LoadBalancer its labels,
    selector and ports too. What stays of a LoadBalancer Service (labels, selector, ports) is what pools'
    serviceSelectors and the sharing rules read; a ResourceQuota on services.loadbalancers bounds how many
    there are.
    """
    metadata = _mapping(service.get("metadata"))
    spec = _mapping(service.get("spec"))
    load_balancer = spec.get("type") == "LoadBalancer"
    kept_metadata = {key: metadata[key] for key in _KEPT_METADATA if key in metadata}
    annotations = _mapping(metadata.get("annotations"))
    ours = {
        name: value[: MAX_ANNOTATION_VALUE + 1] if isinstance(value, str) else value
        for name, value in annotations.items()
        if name.startswith(PREFIXES) and (load_balancer or name == POOL_ANNOTATION_OUT)
    }
    if ours:
        kept_metadata["annotations"] = ours
    if load_balancer and "labels" in metadata:
        kept_metadata["labels"] = metadata["labels"]
    if load_balancer:
        kept_spec = {key: spec[key] for key in _KEPT_SPEC if key in spec}
        if spec.get("externalTrafficPolicy") != "Local":
            kept_spec.pop("selector", None)  # compared only between Local Services sharing an IP
        ports = spec.get("ports")
        if isinstance(ports, list):
            kept_spec["ports"] = [_project_port(port) for port in ports]
    else:
        kept_spec = {key: spec[key] for key in ("type", "loadBalancerClass") if key in spec}
    projection: dict[str, Any] = {"metadata": kept_metadata, "spec": kept_spec}
    ingress = _mapping(_mapping(service.get("status")).get("loadBalancer")).get("ingress")
    entries = ingress if isinstance(ingress, list) else []
    ips = [{"ip": entry["ip"]} for entry in entries if isinstance(entry, Mapping) and "ip" in entry]
    if ips:
        projection["status"] = {"loadBalancer": {"ingress": ips}}
    return projection


def _project_port(port: Any) -> Any:
    if not isinstance(port, Mapping):
        return port  # malformed: parse_service names the field
    return {key: port[key] for key in ("port", "protocol") if key in port}
