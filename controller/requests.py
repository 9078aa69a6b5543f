"""What a Service asks the allocator for: parsed from its annotations and spec, with field-precise errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from common.addresses import parse_ip
from common.errors import RequestError, preview, shorten
from common.pools import IPAddress
from common.services import MAX_ANNOTATION_VALUE, PREFIXES

__all__ = [
    "FamilyMismatch",
    "RequestError",
    "ServiceRequest",
    "holding_request",
    "parse_service",
]

_FAMILY_NAMES = {"IPv4": 4, "IPv6": 6}
_POLICIES = ("SingleStack", "PreferDualStack", "RequireDualStack")


@dataclass(frozen=True)
class ServiceRequest:
    key: str  # "namespace/name"
    namespace: str
    labels: tuple[tuple[str, str], ...]
    namespace_labels: tuple[tuple[str, str], ...]
    requested_ips: tuple[IPAddress, ...]  # loadBalancerIPs annotation or spec.loadBalancerIP
    pool: str | None  # the address-pool annotation
    sharing_key: str | None  # the allow-shared-ip annotation
    ports: tuple[tuple[int, str], ...]  # (port, protocol)
    external_traffic_policy: str  # "Cluster" | "Local"
    selector: tuple[tuple[str, str], ...]
    families: tuple[int, ...]  # IP versions wanted, in order: (4,), (6,), (4, 6) or (6, 4)
    require_all_families: bool  # RequireDualStack: all or nothing; otherwise as many as possible


class FamilyMismatch(RequestError):
    """Well-formed requested IPs of a family the Service does not have. Unlike a malformed request (the
    current IP stays until it is fixed), this one cannot be met: MetalLB clears the IP and reports
    AllocationFailed."""


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _annotation_field(name: str) -> str:
    return f"metadata.annotations[{name}]"


def _annotation(annotations: Mapping[str, Any], suffix: str) -> tuple[str, str] | None:
    """(annotation name, stripped value) under either prefix; both set with different values is an error.

    An empty value counts as unset.
    """
    found: list[tuple[str, str]] = []
    for prefix in PREFIXES:
        name = prefix + suffix
        value = annotations.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise RequestError(_annotation_field(name), f"must be a string, got {preview(value)}")
        if len(value) > MAX_ANNOTATION_VALUE:
            raise RequestError(_annotation_field(name), f"is longer than {MAX_ANNOTATION_VALUE} characters")
        if value.strip():
            found.append((name, value.strip()))
    if len(found) == 2 and _normalise(suffix, found[0][1]) != _normalise(suffix, found[1][1]):
        (name_a, value_a), (name_b, value_b) = found
        if suffix == "allow-shared-ip":  # a sharing key is a secret: never in an event or a log
            message = f"conflicts with {name_b}; set only one"
        else:
            message = f'"{shorten(value_a)}" conflicts with {name_b} "{shorten(value_b)}"; set only one'
        raise RequestError(_annotation_field(name_a), message)
    return found[0] if found else None


def _normalise(suffix: str, value: str) -> object:
    if suffix == "loadBalancerIPs":
        return tuple(sorted(item.strip() for item in value.split(",")))
    return value


def _parse_requested_ip(text: str, field: str) -> IPAddress:
    try:
        return parse_ip(text)
    except ValueError as exc:
        problem = str(exc)
    if problem == "not an IP address":
        raise RequestError(field, f'"{shorten(text)}" is not an IP address')
    raise RequestError(field, f'"{shorten(text)}": {shorten(problem)}')


def _parse_ip_list(value: str, field: str) -> tuple[IPAddress, ...]:
    ips: list[IPAddress] = []
    for item in value.split(","):
        text = item.strip()
        if not text:
            raise RequestError(field, f'empty entry in "{shorten(value)}"')
        ip = _parse_requested_ip(text, field)
        if any(existing.version == ip.version for existing in ips):
            raise RequestError(field, f'"{shorten(value)}": at most one IPv4 and one IPv6 address')
        ips.append(ip)
    return tuple(ips)


def _parse_ports(spec: Mapping[str, Any]) -> tuple[tuple[int, str], ...]:
    raw = spec.get("ports")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RequestError("spec.ports", "must be a list")
    ports: list[tuple[int, str]] = []
    for index, item in enumerate(raw):
        entry = _mapping(item)
        port = entry.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            problem = f"must be an integer 1-65535, got {preview(port)}"
            raise RequestError(f"spec.ports[{index}].port", problem)
        protocol = entry.get("protocol") or "TCP"
        if protocol not in ("TCP", "UDP", "SCTP"):
            raise RequestError(f"spec.ports[{index}].protocol", f"unknown protocol {preview(protocol)}")
        ports.append((port, protocol))
    return tuple(ports)


def _string_map(value: Any, field: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise RequestError(field, "must be a mapping")
    return tuple(sorted((str(k), str(v)) for k, v in value.items()))


def _families(spec: Mapping[str, Any]) -> tuple[tuple[int, ...], bool, bool]:
    """(families, require_all, explicit_dual): from spec.ipFamilies and spec.ipFamilyPolicy.

    The API server fills ipFamilies with the families the cluster gives the Service (PreferDualStack in a
    single-stack cluster lists one), so when present it is followed, as MetalLB does. Without it (an object
    not written by an API server) a Service is IPv4, and dual-stack policies ask for IPv4 and IPv6.
    RequireDualStack listing one family gets the other added (an API server would have rejected it).
    """
    policy = spec.get("ipFamilyPolicy") or "SingleStack"
    if policy not in _POLICIES:
        choices = ", ".join(_POLICIES)
        problem = f"unknown policy {preview(policy)}: must be one of {choices}"
        raise RequestError("spec.ipFamilyPolicy", problem)
    raw = spec.get("ipFamilies")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise RequestError("spec.ipFamilies", "must be a list")
    listed: list[int] = []
    for index, name in enumerate(raw):
        if name not in _FAMILY_NAMES:
            problem = f"unknown family {preview(name)}: must be IPv4 or IPv6"
            raise RequestError(f"spec.ipFamilies[{index}]", problem)
        if _FAMILY_NAMES[name] in listed:
            raise RequestError(f"spec.ipFamilies[{index}]", f"duplicate family {name}")
        listed.append(_FAMILY_NAMES[name])
    if policy == "SingleStack":
        if len(listed) > 1:
            raise RequestError("spec.ipFamilies", "SingleStack allows only one family")
        return (tuple(listed) or (4,)), False, False
    explicit_dual = len(listed) == 2
    if not listed:
        listed = [4, 6]
    elif len(listed) == 1 and policy == "RequireDualStack":
        listed.append(6 if listed[0] == 4 else 4)
    return tuple(listed), policy == "RequireDualStack", explicit_dual


def parse_service(service: Mapping[str, Any], namespace_labels: Mapping[str, str]) -> ServiceRequest:
    """The allocation request of a Service; raises RequestError naming the field for malformed input."""
    metadata = _mapping(service.get("metadata"))
    spec = _mapping(service.get("spec"))
    namespace = metadata.get("namespace") or "default"
    name = metadata.get("name") or ""
    annotations = _mapping(metadata.get("annotations"))

    families, require_all, explicit_dual = _families(spec)

    requested: tuple[IPAddress, ...] = ()
    ips_annotation = _annotation(annotations, "loadBalancerIPs")
    if ips_annotation is not None:
        requested = _parse_ip_list(ips_annotation[1], _annotation_field(ips_annotation[0]))
    spec_ip = spec.get("loadBalancerIP")
    if spec_ip is not None and not isinstance(spec_ip, str):
        raise RequestError("spec.loadBalancerIP", f"must be a string, got {preview(spec_ip)}")
    if spec_ip and spec_ip.strip():
        single = _parse_requested_ip(spec_ip.strip(), "spec.loadBalancerIP")
        if ips_annotation is not None and requested != (single,):
            raise RequestError(
                "spec.loadBalancerIP",
                f'"{shorten(spec_ip)}" conflicts with {ips_annotation[0]} "{shorten(ips_annotation[1])}"; '
                "set only one",
            )
        requested = (single,)
    requested_field = _annotation_field(ips_annotation[0]) if ips_annotation else "spec.loadBalancerIP"

    if requested:
        wanted = {ip.version for ip in requested}
        if not wanted <= set(families) or ((require_all or explicit_dual) and wanted != set(families)):
            names = "/".join(f"IPv{v}" for v in families)
            raise FamilyMismatch(
                requested_field,
                f"requested {', '.join(str(ip) for ip in requested)} does not match the Service's "
                f"IP families {names}",
            )
        # Ask for exactly the requested families, in the Service's family order.
        families = tuple(v for v in families if v in wanted)
        requested = tuple(sorted(requested, key=lambda ip: families.index(ip.version)))

    pool_annotation = _annotation(annotations, "address-pool")
    sharing_annotation = _annotation(annotations, "allow-shared-ip")

    policy = spec.get("externalTrafficPolicy") or "Cluster"
    if policy not in ("Cluster", "Local"):
        raise RequestError("spec.externalTrafficPolicy", f"must be Cluster or Local, got {preview(policy)}")

    return ServiceRequest(
        key=f"{namespace}/{name}",
        namespace=namespace,
        labels=_string_map(metadata.get("labels"), "metadata.labels"),
        namespace_labels=tuple(sorted(namespace_labels.items())),
        requested_ips=requested,
        pool=pool_annotation[1] if pool_annotation else None,
        sharing_key=sharing_annotation[1] if sharing_annotation else None,
        ports=_parse_ports(spec),
        external_traffic_policy=policy,
        selector=_string_map(spec.get("selector"), "spec.selector"),
        families=families,
        require_all_families=require_all,
    )


def holding_request(
    service: Mapping[str, Any], namespace_labels: Mapping[str, str], ips: Sequence[IPAddress]
) -> ServiceRequest:
    """What a Service that shows ``ips`` in its status holds them under at start-up when its own request
    cannot be used (malformed, or asking for something else): exactly those IPs, no pool or IP constraint,
    and the sharing rules as far as they can be read. Never raises.

    Like MetalLB, which puts an IP in status back into its allocator before it looks at the request, so that
    the IP is never handed to another Service; reconciling the Service afterwards moves or clears it. Sharing
    needs a readable sharing key, ports and traffic policy; otherwise the IPs are held unshared.
    """
    metadata = _mapping(service.get("metadata"))
    spec = _mapping(service.get("spec"))
    namespace = metadata.get("namespace") or "default"
    annotations = _mapping(metadata.get("annotations"))
    sharing_key: str | None
    try:
        sharing = _annotation(annotations, "allow-shared-ip")
        ports = _parse_ports(spec)
        selector = _string_map(spec.get("selector"), "spec.selector")
        sharing_key = sharing[1] if sharing else None
    except RequestError:
        sharing_key, ports, selector = None, (), ()
    policy = spec.get("externalTrafficPolicy") or "Cluster"
    if policy not in ("Cluster", "Local"):
        sharing_key, policy = None, "Cluster"
    try:
        labels = _string_map(metadata.get("labels"), "metadata.labels")
    except RequestError:
        labels = ()
    return ServiceRequest(
        key=f"{namespace}/{metadata.get('name') or ''}",
        namespace=namespace,
        labels=labels,
        namespace_labels=tuple(sorted(namespace_labels.items())),
        requested_ips=(),
        pool=None,
        sharing_key=sharing_key,
        ports=ports,
        external_traffic_policy=policy,
        selector=selector,
        families=tuple(ip.version for ip in ips),
        require_all_families=False,
    )
