"""The dataplane's model of what to forward: service ports and their endpoints, one address family at a time.

Built from Service and EndpointSlice JSON by pure functions (kube-proxy's ServicePort and Endpoint, in
pkg/proxy/serviceport.go and endpoint.go). Every mode renders its rules from these objects, never from the
API's JSON, so the three modes agree on what a Service means.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common.endpoints import PROTOCOLS
from common.errors import FieldProblem, preview

DEFAULT_AFFINITY_TIMEOUT = (
    10800  # seconds: the API's default for sessionAffinityConfig.clientIP.timeoutSeconds
)
MAX_AFFINITY_TIMEOUT = 86400


@dataclass(frozen=True, slots=True, order=True)
class ServiceKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One port of one Service in one address family: what every mode forwards."""

    service: ServiceKey
    port_name: str  # spec.ports[].name, "" when unnamed
    protocol: str  # TCP, UDP or SCTP
    family: int  # 4 or 6
    cluster_ip: str
    port: int
    node_port: int = 0  # 0: none
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    # loadBalancerSourceRanges of this family. `firewalled` says the Service set any at all: a family with
    # none of them then admits nobody, rather than everybody.
    source_ranges: tuple[str, ...] = ()
    firewalled: bool = False
    affinity_timeout: int = 0  # sessionAffinity ClientIP timeout in seconds; 0: no affinity
    external_policy_local: bool = False  # externalTrafficPolicy Local (only when externally accessible)
    internal_policy_local: bool = False  # internalTrafficPolicy Local
    health_check_node_port: int = 0

    @property
    def name(self) -> str:
        """kube-proxy's ServicePortName: `namespace/name:port`, or `namespace/name` for an unnamed port."""
        suffix = f":{self.port_name}" if self.port_name else ""
        return f"{self.service}{suffix}"

    @property
    def externally_accessible(self) -> bool:
        return bool(self.node_port or self.external_ips or self.load_balancer_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        # Even with externalTrafficPolicy Local, traffic from pods and from the node itself to an external
        # address short-circuits to the Cluster endpoints (as if it went out to the load balancer and back).
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (self.externally_accessible and self.external_policy_local)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One backend of one service port, as seen from this node."""

    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    local: bool = False  # runs on this node
    zone: str = ""

    @property
    def address(self) -> str:
        """`ip:port`, bracketed for IPv6 (Go's net.JoinHostPort, which kube-proxy hashes into chain names)."""
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """Everything one Service means to this node: its ports (both families) and each port's endpoints.

    The unit of change: the change tracker reports Services, and a partial sync rewrites Services.
    `endpoints` is keyed like `ports` (same order) so modes can zip them."""

    key: ServiceKey
    ports: tuple[ServicePort, ...]
    endpoints: tuple[tuple[Endpoint, ...], ...]

    def port_endpoints(self) -> list[tuple[ServicePort, tuple[Endpoint, ...]]]:
        return list(zip(self.ports, self.endpoints, strict=True))


@dataclass(frozen=True, slots=True)
class ParsedService:
    """What the dataplane reads from a Service: its ports per family (empty when nothing is proxied) and the
    parts it had to skip."""

    key: ServiceKey
    ports: tuple[ServicePort, ...]
    problems: tuple[FieldProblem, ...] = field(default=())


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _ip(text: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(text, str):
        return None
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _ips_by_family(values: list[Any], field_name: str, problems: list[FieldProblem]) -> dict[int, list[str]]:
    by_family: dict[int, list[str]] = {4: [], 6: []}
    for index, value in enumerate(values):
        ip = _ip(value)
        if ip is None:
            problems.append(FieldProblem(f"{field_name}[{index}]", f"{preview(value)} is not an IP address"))
            continue
        text = str(ip)
        if text not in by_family[ip.version]:
            by_family[ip.version].append(text)
    return by_family


def _source_ranges(values: list[Any], problems: list[FieldProblem]) -> dict[int, list[str]]:
    by_family: dict[int, list[str]] = {4: [], 6: []}
    for index, value in enumerate(values):
        try:
            network = ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError:
            problems.append(
                FieldProblem(f"spec.loadBalancerSourceRanges[{index}]", f"{preview(value)} is not a CIDR")
            )
            continue
        if str(network) not in by_family[network.version]:
            by_family[network.version].append(str(network))
    return by_family


def _affinity_timeout(spec: Mapping[str, Any], problems: list[FieldProblem]) -> int:
    if spec.get("sessionAffinity") != "ClientIP":
        return 0
    client_ip = _mapping(_mapping(spec.get("sessionAffinityConfig")).get("clientIP"))
    timeout = client_ip.get("timeoutSeconds", DEFAULT_AFFINITY_TIMEOUT)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= MAX_AFFINITY_TIMEOUT:
        problems.append(
            FieldProblem(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                f"{preview(timeout)} is not 1-{MAX_AFFINITY_TIMEOUT}; using {DEFAULT_AFFINITY_TIMEOUT}",
            )
        )
        return DEFAULT_AFFINITY_TIMEOUT
    return timeout


def _port_number(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return value
    return None


def parse_service(obj: Mapping[str, Any]) -> ParsedService:
    """The service ports the dataplane proxies for this Service, in both families.

    Headless Services (clusterIP None), ExternalName Services and Services without a cluster IP get no ports:
    nothing is proxied for them, as in kube-proxy. Malformed parts (a bad external IP, a port number out of
    range, a source range that is not a CIDR) are skipped and reported, never fatal.
    """
    metadata = _mapping(obj.get("metadata"))
    key = ServiceKey(str(metadata.get("namespace") or "default"), str(metadata.get("name") or ""))
    spec = _mapping(obj.get("spec"))
    problems: list[FieldProblem] = []
    service_type = spec.get("type") or "ClusterIP"
    if service_type == "ExternalName":
        return ParsedService(key, ())
    cluster_ips = [ip for ip in _list(spec.get("clusterIPs")) if isinstance(ip, str)]
    if not cluster_ips and isinstance(spec.get("clusterIP"), str):
        cluster_ips = [spec["clusterIP"]]
    if not cluster_ips or cluster_ips[0] in ("None", ""):
        return ParsedService(key, ())
    cluster_by_family: dict[int, str] = {}
    for index, text in enumerate(cluster_ips):
        ip = _ip(text)
        if ip is None:
            problems.append(
                FieldProblem(f"spec.clusterIPs[{index}]", f"{preview(text)} is not an IP address")
            )
        elif ip.version not in cluster_by_family:
            cluster_by_family[ip.version] = str(ip)
    external_ips = _ips_by_family(_list(spec.get("externalIPs")), "spec.externalIPs", problems)
    lb_ips: dict[int, list[str]] = {4: [], 6: []}
    if service_type == "LoadBalancer":
        ingress = _list(_mapping(_mapping(obj.get("status")).get("loadBalancer")).get("ingress"))
        for index, entry in enumerate(ingress):
            item = _mapping(entry)
            if "ip" not in item:
                continue  # hostname-only ingress: nothing to capture on the node
            # ipMode Proxy: the load balancer delivers to the node itself, so traffic is not captured by IP.
            if item.get("ipMode", "VIP") == "Proxy":
                continue
            ip = _ip(item["ip"])
            if ip is None:
                problems.append(
                    FieldProblem(
                        f"status.loadBalancer.ingress[{index}].ip",
                        f"{preview(item['ip'])} is not an IP address",
                    )
                )
            elif str(ip) not in lb_ips[ip.version]:
                lb_ips[ip.version].append(str(ip))
    raw_ranges = _list(spec.get("loadBalancerSourceRanges"))
    ranges = _source_ranges(raw_ranges, problems)
    affinity = _affinity_timeout(spec, problems)
    externally_reachable = service_type in ("NodePort", "LoadBalancer") or bool(
        _list(spec.get("externalIPs"))
    )
    external_local = externally_reachable and spec.get("externalTrafficPolicy") == "Local"
    internal_local = spec.get("internalTrafficPolicy") == "Local"
    health_check_port = 0
    if service_type == "LoadBalancer" and external_local:
        health_check_port = _port_number(spec.get("healthCheckNodePort")) or 0
    ports: list[ServicePort] = []
    seen: set[tuple[str, str]] = set()
    for index, entry in enumerate(_list(spec.get("ports"))):
        item = _mapping(entry)
        field_name = f"spec.ports[{index}]"
        port = _port_number(item.get("port"))
        protocol = item.get("protocol", "TCP")
        port_name = item.get("name") or ""
        if port is None:
            problems.append(
                FieldProblem(f"{field_name}.port", f"{preview(item.get('port'))} is not a port number")
            )
            continue
        if protocol not in PROTOCOLS:
            problems.append(
                FieldProblem(f"{field_name}.protocol", f"{preview(protocol)} is not TCP, UDP or SCTP")
            )
            continue
        if not isinstance(port_name, str) or (port_name, protocol) in seen:
            problems.append(
                FieldProblem(f"{field_name}.name", f"{preview(port_name)} is not a unique port name")
            )
            continue
        seen.add((port_name, protocol))
        node_port = 0
        if service_type in ("NodePort", "LoadBalancer") and item.get("nodePort") is not None:
            node_port = _port_number(item.get("nodePort")) or 0
            if not node_port:
                problems.append(
                    FieldProblem(
                        f"{field_name}.nodePort", f"{preview(item.get('nodePort'))} is not a port number"
                    )
                )
        for family, cluster_ip in sorted(cluster_by_family.items()):
            ports.append(
                ServicePort(
                    service=key,
                    port_name=port_name,
                    protocol=protocol,
                    family=family,
                    cluster_ip=cluster_ip,
                    port=port,
                    node_port=node_port,
                    external_ips=tuple(external_ips[family]),
                    load_balancer_ips=tuple(lb_ips[family]),
                    source_ranges=tuple(ranges[family]),
                    firewalled=bool(raw_ranges),
                    affinity_timeout=affinity,
                    external_policy_local=external_local,
                    internal_policy_local=internal_local,
                    health_check_node_port=health_check_port,
                )
            )
    return ParsedService(key, tuple(ports), tuple(problems))
