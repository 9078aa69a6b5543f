"""Desired EndpointSlices and Endpoints of a Service, and the changes that get there from what exists;
pure.

Follows the real EndpointSlice controller (pkg/controller/endpointslice): a Service with a selector gets
slices labelled kubernetes.io/service-name and endpointslice.kubernetes.io/managed-by, one set per
address family, endpoints grouped by their resolved ports (a named targetPort is looked up in each pod's
containerPorts, so pods may differ), at most 100 endpoints per slice, a placeholder slice when there are
none. Each endpoint carries conditions ready/serving/terminating, nodeName, zone and a targetRef.
Terminating pods stay in slices (ready false) but leave the legacy Endpoints object, where not-ready pods
go to notReadyAddresses.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.controllers import podstate

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
ZONE_LABEL = "topology.kubernetes.io/zone"
MAX_ENDPOINTS_PER_SLICE = 100

PortKey = tuple[tuple[str, str, int, str], ...]


def manages(service: Mapping[str, Any]) -> bool:
    """Whether endpoints of this Service come from its selector (selector-less Services are user-managed)."""
    spec = service.get("spec") or {}
    return bool(spec.get("selector")) and spec.get("type") != "ExternalName"


def families(service: Mapping[str, Any]) -> list[str]:
    found = [f for f in (service.get("spec") or {}).get("ipFamilies") or [] if f in ("IPv4", "IPv6")]
    return found or ["IPv4"]


def pod_ip(pod: Mapping[str, Any], family: str) -> str | None:
    status = pod.get("status") or {}
    ips = [str(entry.get("ip")) for entry in status.get("podIPs") or [] if entry.get("ip")]
    if not ips and status.get("podIP"):
        ips = [str(status["podIP"])]
    for ip in ips:
        if (":" in ip) == (family == "IPv6"):
            return ip
    return None


def resolve_target_port(service_port: Mapping[str, Any], pod: Mapping[str, Any]) -> int | None:
    """The pod port a Service port sends to; None when a named targetPort is not a containerPort."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                number = port.get("containerPort")
                return int(number) if isinstance(number, int) else None
    return None


def endpoint_ports(service: Mapping[str, Any], pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    ports = []
    for sp in (service.get("spec") or {}).get("ports") or []:
        number = resolve_target_port(sp, pod)
        if number is None:
            continue
        port: dict[str, Any] = {
            "name": sp.get("name") or "",
            "port": number,
            "protocol": sp.get("protocol") or "TCP",
        }
        if sp.get("appProtocol"):
            port["appProtocol"] = sp["appProtocol"]
        ports.append(port)
    return ports


def port_key(ports: Sequence[Mapping[str, Any]]) -> PortKey:
    return tuple(
        sorted(
            (
                str(p.get("name") or ""),
                str(p.get("protocol") or "TCP"),
                int(p["port"]),
                str(p.get("appProtocol") or ""),
            )
            for p in ports
        )
    )


def target_ref(pod: Mapping[str, Any]) -> dict[str, Any]:
    meta = pod["metadata"]
    return {
        "kind": "Pod",
        "namespace": meta.get("namespace", "default"),
        "name": meta["name"],
        "uid": meta.get("uid", ""),
    }


def selected_pods(
    service: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], nodes: Mapping[str, Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Pods in the Service's endpoints at all: selected, not finished, with an IP, on a known node."""
    selector = (service.get("spec") or {}).get("selector") or {}
    namespace = service["metadata"].get("namespace", "default")
    chosen = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("namespace", "default") != namespace or not podstate.labels_match(
            selector, meta.get("labels")
        ):
            continue
        if podstate.is_finished(pod) or not (pod_ip(pod, "IPv4") or pod_ip(pod, "IPv6")):
            continue
        node = (pod.get("spec") or {}).get("nodeName")
        if node and node not in nodes:
            # The real controller skips a pod whose Node it cannot find (it needs the node for topology).
            continue
        chosen.append(pod)
    return sorted(chosen, key=lambda p: str(p["metadata"]["name"]))


def slice_endpoint(
    service: Mapping[str, Any], pod: Mapping[str, Any], ip: str, nodes: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    serving = podstate.is_ready(pod)
    terminating = podstate.is_terminating(pod)
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    endpoint: dict[str, Any] = {
        "addresses": [ip],
        "conditions": {
            "ready": publish or (serving and not terminating),
            "serving": serving,
            "terminating": terminating,
        },
        "targetRef": target_ref(pod),
    }
    spec = pod.get("spec") or {}
    if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"]:
        endpoint["hostname"] = spec["hostname"]
    node = spec.get("nodeName")
    if node:
        endpoint["nodeName"] = node
        zone = ((nodes.get(node) or {}).get("metadata") or {}).get("labels", {}).get(ZONE_LABEL)
        if zone:
            endpoint["zone"] = zone
    return endpoint


def slice_labels(service: Mapping[str, Any]) -> dict[str, str]:
    labels = {k: v for k, v in ((service["metadata"].get("labels")) or {}).items() if k != HEADLESS_LABEL}
    labels[SERVICE_NAME_LABEL] = service["metadata"]["name"]
    labels[MANAGED_BY_LABEL] = MANAGED_BY
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels


def owner_reference(service: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "name": service["metadata"]["name"],
        "uid": service["metadata"].get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def new_slice(
    service: Mapping[str, Any],
    family: str,
    ports: Sequence[Mapping[str, Any]],
    endpoints: list[dict[str, Any]],
) -> dict[str, Any]:
    meta = service["metadata"]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": meta["name"] + "-",
            "namespace": meta.get("namespace", "default"),
            "labels": slice_labels(service),
            "ownerReferences": [owner_reference(service)],
        },
        "addressType": family,
        "endpoints": endpoints,
        "ports": [dict(p) for p in ports],
    }


def render_slices(
    service: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], nodes: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The EndpointSlices the Service should have (names left to generateName)."""
    slices: list[dict[str, Any]] = []
    chosen = selected_pods(service, pods, nodes)
    for family in families(service):
        groups: dict[PortKey, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
        for pod in chosen:
            ip = pod_ip(pod, family)
            if ip is None:
                continue
            ports = endpoint_ports(service, pod)
            key = port_key(ports)
            groups.setdefault(key, (ports, []))[1].append(slice_endpoint(service, pod, ip, nodes))
        if not groups:
            slices.append(new_slice(service, family, [], []))
            continue
        for key in sorted(groups):
            ports, endpoints = groups[key]
            for start in range(0, len(endpoints), MAX_ENDPOINTS_PER_SLICE):
                slices.append(
                    new_slice(service, family, ports, endpoints[start : start + MAX_ENDPOINTS_PER_SLICE])
                )
    return slices


@dataclass
class SliceChanges:
    create: list[dict[str, Any]] = field(default_factory=list)
    update: list[dict[str, Any]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.create or self.update or self.delete)


def _content(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    meta = obj.get("metadata") or {}
    return (
        obj.get("addressType"),
        port_key(obj.get("ports") or []),
        sorted(obj.get("ports") or [], key=lambda p: str(p.get("name") or "")),
        obj.get("endpoints") or [],
        meta.get("labels") or {},
        [
            {k: r.get(k) for k in ("kind", "name", "uid", "controller")}
            for r in meta.get("ownerReferences") or []
        ],
    )


def reconcile_slices(
    desired: Sequence[Mapping[str, Any]], existing: Sequence[Mapping[str, Any]]
) -> SliceChanges:
    """Creates, in-place updates (existing name and resourceVersion kept) and deletes that turn existing into
    desired. Existing slices are reused for the same address type and ports first, then for any of the same
    address type, so a port change updates slices instead of replacing them."""
    changes = SliceChanges()
    pool = sorted(existing, key=lambda s: str(s["metadata"]["name"]))
    used: set[str] = set()
    unmatched: list[Mapping[str, Any]] = []
    for want in desired:
        match = next(
            (
                s
                for s in pool
                if s["metadata"]["name"] not in used
                and s.get("addressType") == want["addressType"]
                and port_key(s.get("ports") or []) == port_key(want.get("ports") or [])
            ),
            None,
        )
        if match is None:
            unmatched.append(want)
            continue
        used.add(match["metadata"]["name"])
        if _content(match) != _content(want):
            changes.update.append(_updated(match, want))
    for want in unmatched:
        match = next(
            (
                s
                for s in pool
                if s["metadata"]["name"] not in used and s.get("addressType") == want["addressType"]
            ),
            None,
        )
        if match is None:
            changes.create.append(copy.deepcopy(dict(want)))
        else:
            used.add(match["metadata"]["name"])
            changes.update.append(_updated(match, want))
    changes.delete = [s["metadata"]["name"] for s in pool if s["metadata"]["name"] not in used]
    return changes


def _updated(current: Mapping[str, Any], want: Mapping[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(dict(want))
    meta = result["metadata"]
    meta.pop("generateName", None)
    meta["name"] = current["metadata"]["name"]
    if current["metadata"].get("resourceVersion"):
        meta["resourceVersion"] = current["metadata"]["resourceVersion"]
    return result


def render_endpoints(
    service: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], nodes: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The legacy v1 Endpoints object of the Service (primary address family only, as the real controller)."""
    meta = service["metadata"]
    family = families(service)[0]
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    subsets: dict[PortKey, dict[str, Any]] = {}
    for pod in selected_pods(service, pods, nodes):
        ip = pod_ip(pod, family)
        if ip is None or (podstate.is_terminating(pod) and not publish):
            continue
        ports = endpoint_ports(service, pod)
        subset = subsets.setdefault(
            port_key(ports), {"addresses": [], "notReadyAddresses": [], "ports": ports}
        )
        address: dict[str, Any] = {"ip": ip, "targetRef": target_ref(pod)}
        spec = pod.get("spec") or {}
        if spec.get("nodeName"):
            address["nodeName"] = spec["nodeName"]
        if spec.get("hostname") and spec.get("subdomain") == meta["name"]:
            address["hostname"] = spec["hostname"]
        ready = publish or podstate.is_ready(pod)
        subset["addresses" if ready else "notReadyAddresses"].append(address)
    rendered = []
    for key in sorted(subsets):
        subset = subsets[key]
        out: dict[str, Any] = {}
        for kind in ("addresses", "notReadyAddresses"):
            if subset[kind]:
                out[kind] = sorted(subset[kind], key=lambda a: str(a["ip"]))
        ports = [{k: v for k, v in p.items() if v != "" or k != "name"} for p in subset["ports"]]
        if ports:
            out["ports"] = ports
        rendered.append(out)
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != HEADLESS_LABEL}
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    endpoints: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": meta["name"], "namespace": meta.get("namespace", "default")},
    }
    if labels:
        endpoints["metadata"]["labels"] = labels
    if rendered:
        endpoints["subsets"] = rendered
    return endpoints


def endpoints_changed(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    if current is None:
        return True
    return bool(
        (current.get("subsets") or []) != (desired.get("subsets") or [])
        or ((current.get("metadata") or {}).get("labels") or {}) != (desired["metadata"].get("labels") or {})
    )
