"""Service semantics of kube-apiserver: defaults, validation, clusterIP and nodePort allocation.

Pure: `ServiceRegistry` holds the allocation state and transforms Service dicts; the server stores what it
returns. Allocations are made in a transaction that is rolled back on error or for dry runs, so a failed or
dry-run write never changes the allocation state.
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from lab.apiserver.errors import ApiError, Cause
from lab.apiserver.validation import (
    IANA_SVC_NAME,
    check_dns1123_label,
    check_dns1123_subdomain,
    check_label_map,
    check_legacy_ip,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    parse_ip,
    parse_ip_sloppy,
    raise_invalid,
    required,
)

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
PROTOCOLS = ("TCP", "UDP", "SCTP")
IPV4, IPV6 = "IPv4", "IPv6"
MAX_CLIENT_IP_TIMEOUT = 86400
MULTI_FAMILY_MSG = "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"
PORT_NAME_MSG = (
    "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-), be no more than 15 characters "
    "and contain at least one letter (a-z)"
)


class RangeAllocator:
    """Integers [first, first+size) minus reserved offsets; allocation is O(1) while the range is sparse.

    Like the real allocator, dynamic allocation starts at a random point above a low "static band" that is
    left for values users ask for explicitly, and only falls back to that band when the rest is full.
    """

    def __init__(
        self, first: int, size: int, reserved: set[int], static_band: int, rng: random.Random
    ) -> None:
        self.first = first
        self.size = size
        self.reserved = reserved
        self.static_band = min(static_band, size)
        self.rng = rng
        self.used: set[int] = set()
        self.capacity = size - len(reserved)

    def contains(self, value: int) -> bool:
        offset = value - self.first
        return 0 <= offset < self.size and offset not in self.reserved

    def is_free(self, value: int) -> bool:
        return self.contains(value) and value not in self.used

    def take(self, value: int) -> None:
        self.used.add(value)

    def release(self, value: int) -> None:
        self.used.discard(value)

    def next_free(self) -> int | None:
        if len(self.used) >= self.capacity:
            return None
        for low, high in ((self.static_band, self.size), (0, self.static_band)):
            if high <= low:
                continue
            start = self.rng.randrange(low, high)
            for offset in itertools.chain(range(start, high), range(low, start)):
                value: int = self.first + offset
                if offset not in self.reserved and value not in self.used:
                    return value
        return None


class IpRange:
    """A service CIDR and its allocator (addresses as ints)."""

    def __init__(self, cidr: str, rng: random.Random) -> None:
        self.network = ipaddress.ip_network(cidr, strict=True)
        self.family = IPV4 if self.network.version == 4 else IPV6
        size = min(self.network.num_addresses, 1 << 24)
        reserved = {0}
        if self.network.version == 4 and size > 2:
            reserved.add(size - 1)
        # Like kube-apiserver: a low band of min(max(16, size/16), 256) addresses is kept for static IPs.
        band = min(max(16, size // 16), 256)
        self.allocator = RangeAllocator(int(self.network.network_address), size, reserved, band, rng)

    def __str__(self) -> str:
        return str(self.network)


@dataclass
class Txn:
    """Allocations made for one write; undone unless committed, releases applied only on commit."""

    taken: list[tuple[RangeAllocator, int]] = field(default_factory=list)
    releases: list[tuple[RangeAllocator, int]] = field(default_factory=list)

    def take(self, allocator: RangeAllocator, value: int) -> None:
        allocator.take(value)
        self.taken.append((allocator, value))

    def rollback(self) -> None:
        for allocator, value in reversed(self.taken):
            allocator.release(value)
        self.taken.clear()
        self.releases.clear()

    def commit(self) -> None:
        for allocator, value in self.releases:
            allocator.release(value)
        self.taken.clear()
        self.releases.clear()


def _internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")


def needs_cluster_ip(spec: dict[str, Any]) -> bool:
    return bool(spec.get("type", "ClusterIP") != "ExternalName")


def needs_node_ports(spec: dict[str, Any]) -> bool:
    kind = spec.get("type", "ClusterIP")
    if kind == "NodePort":
        return True
    return kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True) is not False


def needs_health_check_port(spec: dict[str, Any]) -> bool:
    return bool(spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local")


def is_headless(spec: dict[str, Any]) -> bool:
    return spec.get("clusterIP") == "None"


def allocated_ips(spec: dict[str, Any]) -> list[str]:
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [ip for ip in ips if isinstance(ip, str) and ip not in ("", "None")]


def node_ports_of(spec: dict[str, Any]) -> set[int]:
    ports: set[int] = set()
    for port in spec.get("ports") or []:
        if isinstance(port, dict) and isinstance(port.get("nodePort"), int) and port["nodePort"]:
            ports.add(port["nodePort"])
    return ports


def health_port_of(spec: dict[str, Any]) -> int | None:
    value = spec.get("healthCheckNodePort")
    return value if isinstance(value, int) and value else None


def held_node_ports(spec: dict[str, Any]) -> set[int]:
    """Every port of the node port range a Service holds: its nodePorts and its healthCheckNodePort."""
    ports = node_ports_of(spec)
    hc = health_port_of(spec)
    if hc is not None:
        ports.add(hc)
    return ports


def add_ip_mode(obj: dict[str, Any]) -> None:
    """Set ipMode VIP on each load-balancer ingress with an ip but no ipMode (LoadBalancerIPMode defaults)."""
    status = obj.get("status")
    if not isinstance(status, dict):
        return
    lb = status.get("loadBalancer")
    if not isinstance(lb, dict):
        return
    for ingress in lb.get("ingress") or []:
        if isinstance(ingress, dict) and ingress.get("ip") and not ingress.get("ipMode"):
            ingress["ipMode"] = "VIP"


def normalized_status(status: Any) -> dict[str, Any]:
    """A ServiceStatus as the real server serializes it: `loadBalancer` is a struct, so it is always there
    (`{"loadBalancer": {}}` when empty), while empty `ingress` and `conditions` lists are omitted."""
    out = dict(status) if isinstance(status, dict) else {}
    lb = out.get("loadBalancer")
    lb = dict(lb) if isinstance(lb, dict) else {}
    if not lb.get("ingress"):
        lb.pop("ingress", None)
    out["loadBalancer"] = lb
    if not out.get("conditions"):
        out.pop("conditions", None)
    return out


LB_IP_MODES = ("Proxy", "VIP")


def validate_load_balancer_status(lb: dict[str, Any], old_lb: dict[str, Any], spec_type: Any) -> list[Cause]:
    """ValidateLoadBalancerStatus (pkg/apis/core/validation/validation.go), with the 1.36 feature gates:
    AllowServiceLBStatusOnNonLB off, LoadBalancerIPMode on (ipMode is defaulted before this runs),
    StrictIPCIDRValidation on (with the old object's IPs let through, as IsValidIPForLegacyField does)."""
    ingresses = lb.get("ingress") or []
    path = "status.loadBalancer.ingress"
    if not isinstance(ingresses, list):
        return [invalid(path, ingresses, "must be a list")]
    if ingresses and spec_type != "LoadBalancer":
        return [forbidden(path, "may only be used when `spec.type` is 'LoadBalancer'")]
    old_ips = {str(i["ip"]) for i in old_lb.get("ingress") or [] if isinstance(i, dict) and i.get("ip")}
    causes: list[Cause] = []
    for i, ingress in enumerate(ingresses):
        item = f"{path}[{i}]"
        if not isinstance(ingress, dict):
            causes.append(invalid(item, ingress, "must be an object"))
            continue
        ip = ingress.get("ip")
        if ip:
            causes += check_legacy_ip(item + ".ip", str(ip), old_ips)
        mode = ingress.get("ipMode")
        if mode is not None and not ip:
            causes.append(forbidden(item + ".ipMode", "may not be specified when `ip` is not set"))
        elif mode is not None and mode not in LB_IP_MODES:
            causes.append(not_supported(item + ".ipMode", mode, LB_IP_MODES))
        hostname = ingress.get("hostname")
        if hostname:
            causes += check_dns1123_subdomain(item + ".hostname", str(hostname))
            if parse_ip_sloppy(hostname)[0] is not None:
                causes.append(invalid(item + ".hostname", hostname, "must be a DNS name, not an IP address"))
    return causes


class ServiceRegistry:
    """The allocation state of every Service, and the transformation of Service writes."""

    def __init__(
        self,
        service_cidr: str = "10.96.0.0/12",
        node_port_range: tuple[int, int] = (30000, 32767),
        service_cidr_v6: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        primary = IpRange(service_cidr, self.rng)
        self.ranges: dict[str, IpRange] = {primary.family: primary}
        self.primary_family = primary.family
        if service_cidr_v6:
            secondary = IpRange(service_cidr_v6, self.rng)
            if secondary.family in self.ranges:
                raise ValueError(
                    f"service CIDRs {service_cidr} and {service_cidr_v6} are of the same IP family"
                )
            self.ranges[secondary.family] = secondary
        low, high = node_port_range
        if not 0 < low <= high <= 65535:
            raise ValueError(f"invalid node port range {low}-{high}")
        self.node_port_range = (low, high)
        size = high - low + 1
        # The node port range keeps a static band as well: min(max(16, size/32), 128) ports.
        band = min(max(16, size // 32), 128)
        self.node_ports = RangeAllocator(low, size, set(), band, self.rng)

    # ------------------------------------------------------------------------------------------ state

    def restore(self, svc: dict[str, Any]) -> None:
        """Record the allocations of a stored Service (at server start)."""
        spec = svc.get("spec") or {}
        for ip in allocated_ips(spec):
            rng = self._range_of(ip)
            if rng is not None:
                rng.allocator.take(int(ipaddress.ip_address(ip)))
        for port in held_node_ports(spec):
            if self.node_ports.contains(port):
                self.node_ports.take(port)

    def release(self, svc: dict[str, Any]) -> None:
        """Free everything a Service held (it was deleted, or the store refused its creation)."""
        spec = svc.get("spec") or {}
        for ip in allocated_ips(spec):
            rng = self._range_of(ip)
            if rng is not None:
                rng.allocator.release(int(ipaddress.ip_address(ip)))
        for port in held_node_ports(spec):
            self.node_ports.release(port)

    def _range_of(self, ip: str) -> IpRange | None:
        address = parse_ip(ip)
        if address is None:
            return None
        for rng in self.ranges.values():
            if address in rng.network:
                return rng
        return None

    # ------------------------------------------------------------------------------------------ writes

    def create(self, obj: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        svc = copy.deepcopy(obj)
        spec = svc.get("spec")
        if not isinstance(spec, dict):
            spec = svc["spec"] = {}
        name = str((svc.get("metadata") or {}).get("name") or "")
        apply_defaults(spec)
        causes = self._validate(svc, spec)
        raise_invalid("Service", "", name, causes)
        self._allocate(spec, name, None, dry_run)
        # PrepareForCreate (pkg/registry/core/service/strategy.go) wipes whatever status the client sent.
        svc["status"] = normalized_status(None)
        return svc

    def update(self, old: dict[str, Any], new: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        svc = copy.deepcopy(new)
        spec = svc.get("spec")
        if not isinstance(spec, dict):
            spec = svc["spec"] = {}
        old_spec: dict[str, Any] = old.get("spec") or {}
        name = str((svc.get("metadata") or {}).get("name") or "")
        apply_defaults(spec)
        _patch_allocated_values(old_spec, spec)
        _drop_type_dependent_fields(old_spec, spec)
        causes = self._validate(svc, spec)
        causes += _immutable_cluster_ip(old_spec, spec)
        raise_invalid("Service", "", name, causes)
        self._allocate(spec, name, old_spec, dry_run)
        status = normalized_status(svc.get("status"))
        if spec.get("type") != "LoadBalancer":
            # dropTypeDependentFields (pkg/registry/core/service/strategy.go): a Service that is no longer
            # of type LoadBalancer loses its load-balancer status at once.
            status["loadBalancer"] = {}
        svc["status"] = status
        return svc

    def _allocate(self, spec: dict[str, Any], name: str, old: dict[str, Any] | None, dry_run: bool) -> None:
        """Families, cluster IPs and nodePorts in one transaction: all or nothing, nothing on a dry run."""
        txn = Txn()
        try:
            self._assign_ip_families(spec, name, old=old)
            self._allocate_cluster_ips(spec, name, txn, old=old)
            self._allocate_node_ports(spec, name, txn, old=old)
        except BaseException:
            txn.rollback()
            raise
        if dry_run:
            txn.rollback()
        else:
            txn.commit()

    def update_status(self, old: dict[str, Any], new: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        """A write to services/status: defaults, then ValidateServiceStatusUpdate's load-balancer checks."""
        svc = copy.deepcopy(new)
        name = str((svc.get("metadata") or {}).get("name") or "")
        svc["status"] = normalized_status(svc.get("status"))
        add_ip_mode(svc)
        old_lb = normalized_status(old.get("status"))["loadBalancer"]
        spec_type = (svc.get("spec") or {}).get("type")
        causes = validate_load_balancer_status(svc["status"]["loadBalancer"], old_lb, spec_type)
        raise_invalid("Service", "", name, causes)
        return svc

    # -------------------------------------------------------------------------------------- validation

    def _validate(self, svc: dict[str, Any], spec: dict[str, Any]) -> list[Cause]:
        causes: list[Cause] = []
        name = (svc.get("metadata") or {}).get("name")
        if isinstance(name, str) and name:
            # NameIsDNSLabel since RelaxedServiceNameValidation went beta (1.35, on by default): a digit
            # may start a Service name.
            causes += check_dns1123_label("metadata.name", name)
        kind = spec.get("type")
        if kind not in SERVICE_TYPES:
            causes.append(not_supported("spec.type", kind, SERVICE_TYPES))
            return causes
        causes += _validate_ports(spec, kind)
        if kind == "ExternalName":
            external = spec.get("externalName")
            if not external:
                causes.append(required("spec.externalName"))
            elif not isinstance(external, str):
                causes.append(invalid("spec.externalName", external, "must be a string"))
            else:
                causes += check_dns1123_subdomain("spec.externalName", external.removesuffix("."))
            if spec.get("clusterIP") not in (None, ""):
                causes.append(forbidden("spec.clusterIP", "may not be set for ExternalName services"))
        elif not spec.get("ports"):
            causes.append(required("spec.ports"))
        if kind in ("NodePort", "LoadBalancer") and is_headless(spec):
            causes.append(
                invalid("spec.clusterIPs[0]", "None", f"may not be set to 'None' for {kind} services")
            )
        causes += check_label_map("spec.selector", spec.get("selector"))
        affinity = spec.get("sessionAffinity")
        if affinity not in ("None", "ClientIP"):
            causes.append(not_supported("spec.sessionAffinity", affinity, ("ClientIP", "None")))
        elif affinity == "ClientIP":
            timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
            if not isinstance(timeout, int) or not 0 < timeout <= MAX_CLIENT_IP_TIMEOUT:
                causes.append(
                    invalid(
                        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                        timeout,
                        f"must be greater than 0 and less than {MAX_CLIENT_IP_TIMEOUT}",
                    )
                )
        elif spec.get("sessionAffinityConfig"):
            causes.append(
                forbidden(
                    "spec.sessionAffinityConfig",
                    "must not be set when session affinity is None",
                )
            )
        etp = spec.get("externalTrafficPolicy")
        if etp is not None:
            if etp not in ("Cluster", "Local"):
                causes.append(not_supported("spec.externalTrafficPolicy", etp, ("Cluster", "Local")))
            elif kind not in ("NodePort", "LoadBalancer") and not spec.get("externalIPs"):
                causes.append(
                    invalid(
                        "spec.externalTrafficPolicy",
                        etp,
                        "may only be set for externally-accessible services",
                    )
                )
        itp = spec.get("internalTrafficPolicy")
        if itp is not None and itp not in ("Cluster", "Local"):
            causes.append(not_supported("spec.internalTrafficPolicy", itp, ("Cluster", "Local")))
        hc = spec.get("healthCheckNodePort")
        if hc and not needs_health_check_port(spec):
            causes.append(
                forbidden(
                    "spec.healthCheckNodePort",
                    "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
                )
            )
        if "allocateLoadBalancerNodePorts" in spec and kind != "LoadBalancer":
            causes.append(
                forbidden(
                    "spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'"
                )
            )
        if spec.get("loadBalancerClass") is not None and kind != "LoadBalancer":
            causes.append(
                forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'")
            )
        for i, ip in enumerate(spec.get("externalIPs") or []):
            if parse_ip(ip) is None:
                causes.append(invalid(f"spec.externalIPs[{i}]", ip, "must be a valid IP address"))
        for i, cidr in enumerate(spec.get("loadBalancerSourceRanges") or []):
            try:
                ipaddress.ip_network(str(cidr).strip(), strict=False)
            except ValueError:
                causes.append(invalid(f"spec.loadBalancerSourceRanges[{i}]", cidr, "must be a valid CIDR"))
        return causes

    # ------------------------------------------------------------------------------------ IP families

    def _assign_ip_families(self, spec: dict[str, Any], name: str, old: dict[str, Any] | None) -> None:
        if not needs_cluster_ip(spec):
            for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                spec.pop(key, None)
            return
        causes: list[Cause] = []
        ips = spec.get("clusterIPs")
        single = spec.get("clusterIP")
        if ips:
            if not isinstance(ips, list) or not all(isinstance(ip, str) for ip in ips):
                raise_invalid(
                    "Service", "", name, [invalid("spec.clusterIPs", ips, "must be a list of strings")]
                )
            if single and single != ips[0]:
                causes.append(invalid("spec.clusterIPs", ips, "element [0] must match clusterIP"))
        else:
            ips = [single] if single else []
        headless = "None" in ips
        if headless and ips != ["None"]:
            causes.append(invalid("spec.clusterIPs", ips, "'None' may only be the only value"))
        if len(ips) > 2:
            causes.append(invalid("spec.clusterIPs", ips, "may not have more than 2 IPs"))
        requested_families: list[str] = []
        for i, ip in enumerate(ips):
            if ip in ("", "None"):
                continue
            address = parse_ip(ip)
            if address is None:
                causes.append(
                    invalid(
                        f"spec.clusterIPs[{i}]",
                        ip,
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    )
                )
                continue
            requested_families.append(IPV4 if address.version == 4 else IPV6)
        raise_invalid("Service", "", name, causes)

        policy = spec.get("ipFamilyPolicy")
        families = spec.get("ipFamilies") or []
        if policy is not None and policy not in ("SingleStack", "PreferDualStack", "RequireDualStack"):
            causes.append(
                not_supported(
                    "spec.ipFamilyPolicy", policy, ("PreferDualStack", "RequireDualStack", "SingleStack")
                )
            )
        for i, family in enumerate(families):
            if family not in (IPV4, IPV6):
                causes.append(not_supported(f"spec.ipFamilies[{i}]", family, (IPV4, IPV6)))
            elif family not in self.ranges:
                causes.append(invalid(f"spec.ipFamilies[{i}]", family, "not configured on this cluster"))
            elif i < len(requested_families) and requested_families[i] != family:
                causes.append(
                    invalid(
                        f"spec.clusterIPs[{i}]",
                        ips[i],
                        f"expected an {family} value as indicated by `ipFamilies[{i}]`",
                    )
                )
        if len(families) > 2 or (len(families) == 2 and families[0] == families[1]):
            causes.append(duplicate("spec.ipFamilies[1]", families[-1]))
        raise_invalid("Service", "", name, causes)

        if policy is None:
            if headless and not spec.get("selector") and len(self.ranges) > 1:
                policy = "RequireDualStack"
            elif len(families) > 1 or len(requested_families) > 1:
                causes.append(
                    invalid(
                        "spec.ipFamilyPolicy",
                        "SingleStack",
                        MULTI_FAMILY_MSG,
                    )
                )
            else:
                policy = "SingleStack"
        elif policy == "SingleStack" and (len(families) > 1 or len(requested_families) > 1):
            causes.append(
                invalid(
                    "spec.ipFamilyPolicy",
                    policy,
                    MULTI_FAMILY_MSG,
                )
            )
        if policy == "RequireDualStack" and len(self.ranges) < 2:
            causes.append(
                invalid(
                    "spec.ipFamilyPolicy", policy, "this cluster is not configured for dual-stack services"
                )
            )
        for i, family in enumerate(requested_families):
            if family not in self.ranges:
                causes.append(invalid(f"spec.ipFamilies[{i}]", family, "not configured on this cluster"))
        raise_invalid("Service", "", name, causes)

        chosen = list(families) or list(requested_families) or [self.primary_family]
        if policy in ("PreferDualStack", "RequireDualStack") and len(self.ranges) > 1 and len(chosen) == 1:
            chosen.append(IPV6 if chosen[0] == IPV4 else IPV4)
        if policy == "SingleStack":
            chosen = chosen[:1]
        spec["ipFamilies"] = chosen
        spec["ipFamilyPolicy"] = policy
        spec["clusterIPs"] = ["None"] if headless else ips

    # ------------------------------------------------------------------------------------- cluster IPs

    def _allocate_cluster_ips(
        self, spec: dict[str, Any], name: str, txn: Txn, old: dict[str, Any] | None
    ) -> None:
        if not needs_cluster_ip(spec):
            self._release_old_ips(old, [], txn)
            return
        if is_headless(spec) or spec.get("clusterIPs") == ["None"]:
            spec["clusterIP"] = "None"
            spec["clusterIPs"] = ["None"]
            self._release_old_ips(old, [], txn)
            return
        held = set(allocated_ips(old)) if old else set()
        requested: list[str] = list(spec.get("clusterIPs") or [])
        result: list[str] = []
        for i, family in enumerate(spec["ipFamilies"]):
            rng = self.ranges[family]
            ip = requested[i] if i < len(requested) else ""
            if ip:
                address = ipaddress.ip_address(ip)
                canonical = str(address)
                if canonical not in held:
                    value = int(address)
                    path = f"spec.clusterIPs[{i}]"
                    if not rng.allocator.contains(value) or address not in rng.network:
                        raise_invalid(
                            "Service",
                            "",
                            name,
                            [
                                invalid(
                                    path,
                                    ip,
                                    f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid "
                                    f"range. The range of valid IPs is {rng}",
                                )
                            ],
                        )
                    if not rng.allocator.is_free(value):
                        raise_invalid(
                            "Service",
                            "",
                            name,
                            [
                                invalid(
                                    path, ip, f"failed to allocate IP {ip}: provided IP is already allocated"
                                )
                            ],
                        )
                    txn.take(rng.allocator, value)
                result.append(canonical)
            else:
                value_or_none = rng.allocator.next_free()
                if value_or_none is None:
                    raise _internal("failed to allocate a serviceIP: range is full")
                txn.take(rng.allocator, value_or_none)
                result.append(str(ipaddress.ip_address(value_or_none)))
        spec["clusterIP"] = result[0]
        spec["clusterIPs"] = result
        self._release_old_ips(old, result, txn)

    def _release_old_ips(self, old: dict[str, Any] | None, keep: list[str], txn: Txn) -> None:
        if not old:
            return
        for ip in allocated_ips(old):
            if ip not in keep:
                rng = self._range_of(ip)
                if rng is not None:
                    txn.releases.append((rng.allocator, int(ipaddress.ip_address(ip))))

    # -------------------------------------------------------------------------------------- node ports

    def _allocate_node_ports(
        self, spec: dict[str, Any], name: str, txn: Txn, old: dict[str, Any] | None
    ) -> None:
        held = held_node_ports(old) if old else set()
        kept: set[int] = set()
        low, high = self.node_port_range
        ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
        allocate = needs_node_ports(spec)
        # Ports with the same number (e.g. 53/TCP and 53/UDP) share one nodePort, as on the real server.
        by_number: dict[int, int] = {}

        def claim(path: str, value: int) -> None:
            if value in kept:
                return
            if value in held:
                kept.add(value)
                return
            if not low <= value <= high:
                raise_invalid(
                    "Service",
                    "",
                    name,
                    [
                        invalid(
                            path,
                            value,
                            "provided port is not in the valid range. The range of valid ports is "
                            f"{low}-{high}",
                        )
                    ],
                )
            if not self.node_ports.is_free(value):
                raise_invalid(
                    "Service", "", name, [invalid(path, value, "provided port is already allocated")]
                )
            txn.take(self.node_ports, value)
            kept.add(value)

        def next_port() -> int:
            value = self.node_ports.next_free()
            if value is None:
                raise _internal("failed to allocate a nodePort: range is full")
            txn.take(self.node_ports, value)
            kept.add(value)
            return value

        for i, port in enumerate(ports):
            node_port = port.get("nodePort")
            if isinstance(node_port, int) and node_port:
                claim(f"spec.ports[{i}].nodePort", node_port)
                by_number.setdefault(port.get("port", 0), node_port)
        if allocate:
            for port in ports:
                if not port.get("nodePort"):
                    number = port.get("port", 0)
                    if number in by_number:
                        port["nodePort"] = by_number[number]
                    else:
                        port["nodePort"] = by_number[number] = next_port()
        if needs_health_check_port(spec):
            hc = health_port_of(spec)
            if hc is not None:
                claim("spec.healthCheckNodePort", hc)
            else:
                spec["healthCheckNodePort"] = next_port()
        for value in held - kept:
            txn.releases.append((self.node_ports, value))


# ------------------------------------------------------------------------------------------------ helpers


def apply_defaults(spec: dict[str, Any]) -> None:
    """The v1 Service defaults (pkg/apis/core/v1/defaults.go) and the REST layer's policy defaults."""
    spec.setdefault("type", "ClusterIP")
    kind = spec["type"]
    spec.setdefault("sessionAffinity", "None")
    if spec["sessionAffinity"] == "ClientIP":
        config = spec.setdefault("sessionAffinityConfig", {})
        if isinstance(config, dict):
            client = config.setdefault("clientIP", {})
            if isinstance(client, dict):
                client.setdefault("timeoutSeconds", 10800)
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if port.get("targetPort") in (None, 0, "") and "port" in port:
                port["targetPort"] = port["port"]
    if kind in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if kind != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if kind == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)


def _validate_ports(spec: dict[str, Any], kind: str) -> list[Cause]:
    causes: list[Cause] = []
    ports = spec.get("ports")
    if ports is None:
        return causes
    if not isinstance(ports, list):
        return [invalid("spec.ports", ports, "must be a list")]
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    node_ports_seen: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        path = f"spec.ports[{i}]"
        if not isinstance(port, dict):
            causes.append(invalid(path, port, "must be an object"))
            continue
        pname = port.get("name", "")
        if len(ports) > 1 and not pname:
            causes.append(required(path + ".name"))
        elif pname:
            if not isinstance(pname, str):
                causes.append(invalid(path + ".name", pname, "must be a string"))
            else:
                causes += check_dns1123_label(path + ".name", pname)
                if pname in names:
                    causes.append(duplicate(path + ".name", pname))
                names.add(pname)
        number = port.get("port")
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 65535:
            causes.append(invalid(path + ".port", number, "must be between 1 and 65535, inclusive"))
        protocol = port.get("protocol")
        if protocol not in PROTOCOLS:
            causes.append(not_supported(path + ".protocol", protocol, PROTOCOLS))
        target = port.get("targetPort")
        if isinstance(target, bool) or not isinstance(target, (int, str)):
            causes.append(invalid(path + ".targetPort", target, "must be an integer or a port name"))
        elif isinstance(target, int):
            if not 1 <= target <= 65535:
                causes.append(invalid(path + ".targetPort", target, "must be between 1 and 65535, inclusive"))
        elif target.isdigit():
            if not 1 <= int(target) <= 65535:
                causes.append(invalid(path + ".targetPort", target, "must be between 1 and 65535, inclusive"))
        elif (
            len(target) > 15
            or not IANA_SVC_NAME.match(target)
            or "--" in target
            or not any(c.isalpha() for c in target)
        ):
            causes.append(
                invalid(
                    path + ".targetPort",
                    target,
                    PORT_NAME_MSG,
                )
            )
        key = (number, protocol)
        if key in seen:
            causes.append(duplicate(path, {"port": number, "protocol": protocol}))
        seen.add(key)
        node_port = port.get("nodePort")
        if node_port not in (None, 0):
            if kind in ("ClusterIP", "ExternalName"):
                causes.append(forbidden(path + ".nodePort", f"may not be used when `type` is '{kind}'"))
            elif isinstance(node_port, bool) or not isinstance(node_port, int):
                causes.append(invalid(path + ".nodePort", node_port, "must be an integer"))
            else:
                if (node_port, protocol) in node_ports_seen:
                    causes.append(duplicate(path + ".nodePort", node_port))
                node_ports_seen.add((node_port, protocol))
    return causes


def _immutable_cluster_ip(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    """clusterIP(s) may not change while the Service keeps needing one (ExternalName in between frees it)."""
    if not needs_cluster_ip(old) or not needs_cluster_ip(new):
        return []
    old_ips = old.get("clusterIPs") or ([old["clusterIP"]] if old.get("clusterIP") else [])
    if not old_ips:
        return []
    new_ips = new.get("clusterIPs") or ([new["clusterIP"]] if new.get("clusterIP") else [])
    if new.get("clusterIP") not in (None, "", old_ips[0]) or (new_ips and new_ips[0] != old_ips[0]):
        return [invalid("spec.clusterIPs[0]", new_ips or [new.get("clusterIP")], "may not change once set")]
    return []


def _patch_allocated_values(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Keep what the server allocated when an update omits it (kubectl apply/replace of a plain manifest)."""
    if needs_cluster_ip(old) and needs_cluster_ip(new):
        if not new.get("clusterIP") and old.get("clusterIP"):
            new["clusterIP"] = old["clusterIP"]
        if (
            not new.get("clusterIPs")
            and new.get("clusterIP") == old.get("clusterIP")
            and old.get("clusterIPs")
        ):
            new["clusterIPs"] = list(old["clusterIPs"])
        if new.get("ipFamilyPolicy") is None and old.get("ipFamilyPolicy") is not None:
            new["ipFamilyPolicy"] = old["ipFamilyPolicy"]
        if not new.get("ipFamilies") and old.get("ipFamilies"):
            new["ipFamilies"] = list(old["ipFamilies"])
    if needs_node_ports(old) and needs_node_ports(new):
        used = node_ports_of(old) & node_ports_of(new)
        by_name = {
            str(p.get("name", "")): p.get("nodePort")
            for p in old.get("ports") or []
            if isinstance(p, dict) and p.get("nodePort")
        }
        for port in new.get("ports") or []:
            if not isinstance(port, dict) or port.get("nodePort"):
                continue
            candidate = by_name.get(str(port.get("name", "")))
            if isinstance(candidate, int) and candidate not in used:
                port["nodePort"] = candidate
                used.add(candidate)
    if (
        needs_health_check_port(old)
        and needs_health_check_port(new)
        and not new.get("healthCheckNodePort")
        and old.get("healthCheckNodePort")
    ):
        new["healthCheckNodePort"] = old["healthCheckNodePort"]


def _drop_type_dependent_fields(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Clear allocated fields the new type does not use, when the client left them as they were."""

    def same(key: str) -> bool:
        return old.get(key) == new.get(key)

    if needs_cluster_ip(old) and not needs_cluster_ip(new):
        if same("clusterIP") or not new.get("clusterIP"):
            new.pop("clusterIP", None)
            new.pop("clusterIPs", None)
        if same("ipFamilies"):
            new.pop("ipFamilies", None)
        if same("ipFamilyPolicy"):
            new.pop("ipFamilyPolicy", None)
    if needs_node_ports(old) and not needs_node_ports(new):
        old_ports = {
            (p.get("port"), p.get("nodePort")) for p in old.get("ports") or [] if isinstance(p, dict)
        }
        for port in new.get("ports") or []:
            if isinstance(port, dict) and (port.get("port"), port.get("nodePort")) in old_ports:
                port.pop("nodePort", None)
    if needs_health_check_port(old) and not needs_health_check_port(new) and same("healthCheckNodePort"):
        new.pop("healthCheckNodePort", None)
    if new.get("type") != "LoadBalancer":
        if same("allocateLoadBalancerNodePorts"):
            new.pop("allocateLoadBalancerNodePorts", None)
        if same("loadBalancerClass"):
            new.pop("loadBalancerClass", None)
    if new.get("type") not in ("NodePort", "LoadBalancer") and same("externalTrafficPolicy"):
        new.pop("externalTrafficPolicy", None)
    if new.get("type") == "ExternalName" and same("internalTrafficPolicy"):
        new.pop("internalTrafficPolicy", None)
    # Dropping `sessionAffinity: ClientIP` from an applied manifest leaves the defaulted config behind.
    if (
        new.get("sessionAffinity") == "None"
        and old.get("sessionAffinity") == "ClientIP"
        and same("sessionAffinityConfig")
    ):
        new.pop("sessionAffinityConfig", None)
