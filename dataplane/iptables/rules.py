"""iptables mode: kube-proxy's rule layout, rendered from the snapshot as data (pure).

Chains, as in kube-proxy's pkg/proxy/iptables/proxier.go, so `iptables-save` reads the same:

- nat: KUBE-SERVICES (from PREROUTING and OUTPUT; its last rule jumps to KUBE-NODEPORTS), KUBE-NODEPORTS,
  KUBE-POSTROUTING (masquerades packets marked 0x4000), KUBE-MARK-MASQ; per service port KUBE-SVC-<hash>
  (Cluster policy), KUBE-SVL-<hash> (Local policy), KUBE-EXT-<hash> (external destinations), KUBE-FW-<hash>
  (loadBalancerSourceRanges); per endpoint KUBE-SEP-<hash> (hairpin masquerade, then DNAT).
- filter: KUBE-SERVICES and KUBE-EXTERNAL-SERVICES (REJECT/DROP for ports without endpoints), KUBE-NODEPORTS
  (health check ports), KUBE-PROXY-FIREWALL (source ranges), KUBE-FORWARD.
- KUBE-PROXY-CANARY in mangle, nat and filter: an empty chain whose disappearance means someone flushed.

A Service renders to a `ServiceRules`: the chains it owns and the rules it adds to the shared chains. The
writer (restore.py) keeps what it wrote per Service and rewrites only the Services that changed.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dataplane.backend import RenderConfig
from dataplane.model import Endpoint, ServiceInfo, ServicePort
from dataplane.selection import select

NAT = "nat"
FILTER = "filter"
MANGLE = "mangle"

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_PROXY_CANARY = "KUBE-PROXY-CANARY"

SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")
# Chains kube-proxy's older versions made; --cleanup removes them too.
LEGACY_CHAIN_PREFIXES = ("KUBE-XLB-",)

# Shared chains: every Service may add rules to them, so the writer edits them rule by rule.
SHARED_CHAINS: tuple[tuple[str, str], ...] = (
    (FILTER, KUBE_SERVICES),
    (FILTER, KUBE_EXTERNAL_SERVICES),
    (FILTER, KUBE_NODEPORTS),
    (FILTER, KUBE_PROXY_FIREWALL),
    (NAT, KUBE_SERVICES),
    (NAT, KUBE_NODEPORTS),
)
TOP_CHAINS: dict[str, tuple[str, ...]] = {
    FILTER: (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL),
    NAT: (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ),
}
CANARY_TABLES = (MANGLE, NAT, FILTER)

NODEPORTS_COMMENT = "kubernetes service nodeports; NOTE: this must be the last rule in this chain"


@dataclass(frozen=True, slots=True)
class Jump:
    """A rule in a built-in chain that leads into ours (kube-proxy's iptablesJumpChains)."""

    table: str
    chain: str  # the built-in chain (PREROUTING, INPUT...)
    target: str  # our chain
    comment: str
    new_only: bool = False  # -m conntrack --ctstate NEW

    @property
    def spec(self) -> str:
        state = "-m conntrack --ctstate NEW " if self.new_only else ""
        return f'{state}-m comment --comment "{self.comment}" -j {self.target}'


JUMPS: tuple[Jump, ...] = (
    Jump(FILTER, "INPUT", KUBE_EXTERNAL_SERVICES, "kubernetes externally-visible service portals", True),
    Jump(FILTER, "FORWARD", KUBE_EXTERNAL_SERVICES, "kubernetes externally-visible service portals", True),
    Jump(FILTER, "INPUT", KUBE_NODEPORTS, "kubernetes health check service ports"),
    Jump(FILTER, "FORWARD", KUBE_SERVICES, "kubernetes service portals", True),
    Jump(FILTER, "OUTPUT", KUBE_SERVICES, "kubernetes service portals", True),
    Jump(FILTER, "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules"),
    Jump(FILTER, "INPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", True),
    Jump(FILTER, "OUTPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", True),
    Jump(FILTER, "FORWARD", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", True),
    Jump(NAT, "OUTPUT", KUBE_SERVICES, "kubernetes service portals"),
    Jump(NAT, "PREROUTING", KUBE_SERVICES, "kubernetes service portals"),
    Jump(NAT, "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules"),
)


@dataclass(frozen=True, slots=True)
class ServiceRules:
    """What one Service contributes to one family's tables.

    `chains`: the nat chains it owns with their rules, in an order where every chain comes after the chains it
    jumps to (endpoints first). `shared`: the rules it adds to each shared chain."""

    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    shared: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StaticRules:
    """The rules that do not depend on any Service (plus the last rule of nat KUBE-SERVICES)."""

    chains: Mapping[tuple[str, str], tuple[str, ...]]  # our top-level chains with their fixed rules
    services_tail: tuple[str, ...]  # the rules that end nat KUBE-SERVICES (the jump to KUBE-NODEPORTS)


def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def chain_base(port: ServicePort) -> str:
    """kube-proxy's portProtoHash: base32(sha256(servicePortName + protocol))[:16]."""
    return _hash(port.name + port.protocol.lower())


def endpoint_chain(port: ServicePort, endpoint: Endpoint) -> str:
    return "KUBE-SEP-" + _hash(port.name + port.protocol.lower() + endpoint.address)


def probability(n: int) -> str:
    return f"{1.0 / n:.10f}"


def _quote(text: str) -> str:
    return f'"{text}"' if " " in text else text


def _comment(text: str) -> str:
    return f"-m comment --comment {_quote(text)}"


def _net(ip: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(ip)


def render_static(config: RenderConfig) -> StaticRules:
    mark = config.mark
    masquerade = '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
    if config.random_fully:
        masquerade += " --random-fully"
    forward: list[str] = []
    if config.drop_invalid:
        forward.append("-m conntrack --ctstate INVALID -j DROP")
    forward += [
        f'-m comment --comment "kubernetes forwarding rules" -m mark --mark {mark}/{mark} -j ACCEPT',
        '-m comment --comment "kubernetes forwarding conntrack rule"'
        " -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    chains: dict[tuple[str, str], tuple[str, ...]] = {
        (table, c): () for table in TOP_CHAINS for c in TOP_CHAINS[table]
    }
    chains[(NAT, KUBE_POSTROUTING)] = (
        f"-m mark ! --mark {mark}/{mark} -j RETURN",
        f"-j MARK --xor-mark {mark}",
        masquerade,
    )
    chains[(NAT, KUBE_MARK_MASQ)] = (f"-j MARK --or-mark {mark}",)
    chains[(FILTER, KUBE_FORWARD)] = tuple(forward)
    comment = _comment(NODEPORTS_COMMENT)
    if config.nodeport_ips is None:
        loopback = "127.0.0.0/8" if config.family == 4 else "::1/128"
        tail: tuple[str, ...] = (
            f"{comment} -m addrtype --dst-type LOCAL ! -d {loopback} -j {KUBE_NODEPORTS}",
        )
    else:
        tail = tuple(f"{comment} -d {ip} -j {KUBE_NODEPORTS}" for ip in config.nodeport_ips)
    return StaticRules(chains, tail)


class _ServiceWriter:
    """Collects one Service's rules; one instance per render_service call."""

    def __init__(self, config: RenderConfig) -> None:
        self.config = config
        self.chains: dict[str, list[str]] = {}
        self.shared: dict[tuple[str, str], list[str]] = {}

    def chain(self, name: str) -> list[str]:
        return self.chains.setdefault(name, [])

    def add_shared(self, table: str, chain: str, spec: str) -> None:
        self.shared.setdefault((table, chain), []).append(spec)

    def result(self) -> ServiceRules:
        # Endpoint chains first, then policy chains, then EXT and FW: each after the chains it jumps to.
        order = {"KUBE-SEP-": 0, "KUBE-SVC-": 1, "KUBE-SVL-": 1, "KUBE-EXT-": 2, "KUBE-FW-": 3}
        names = sorted(self.chains, key=lambda n: (order[n[: n.index("-", 5) + 1]], n))
        return ServiceRules(
            {name: tuple(self.chains[name]) for name in names},
            {ref: tuple(rules) for ref, rules in self.shared.items()},
        )


def _endpoint_dispatch(
    out: _ServiceWriter, port: ServicePort, chain: str, endpoints: tuple[Endpoint, ...]
) -> None:
    rules = out.chain(chain)
    comments = out.config.comments
    if port.affinity_timeout:
        for ep in endpoints:
            sep = endpoint_chain(port, ep)
            note = f"{_comment(f'{port.name} -> {ep.address}')} " if comments else ""
            rules.append(
                f"{note}-m recent --name {sep} --rcheck --seconds {port.affinity_timeout} --reap -j {sep}"
            )
    count = len(endpoints)
    for index, ep in enumerate(endpoints):
        note = f"{_comment(f'{port.name} -> {ep.address}')} " if comments else ""
        chance = (
            f"-m statistic --mode random --probability {probability(count - index)} "
            if index < count - 1
            else ""
        )
        rules.append(f"{note}{chance}-j {endpoint_chain(port, ep)}")


def _render_port(out: _ServiceWriter, port: ServicePort, endpoints: tuple[Endpoint, ...]) -> None:
    config = out.config
    sel = select(port, endpoints)
    proto = port.protocol.lower()
    match = f"-m {proto} -p {proto}"
    base = chain_base(port)
    cluster_chain, local_chain = f"KUBE-SVC-{base}", f"KUBE-SVL-{base}"
    ext_chain, fw_chain = f"KUBE-EXT-{base}", f"KUBE-FW-{base}"
    uses_cluster_chain = bool(sel.cluster) and port.uses_cluster_endpoints
    uses_local_chain = bool(sel.local) and port.uses_local_endpoints
    internal_chain = local_chain if port.internal_policy_local else cluster_chain
    external_policy_chain = local_chain if port.external_policy_local else cluster_chain
    uses_ext_chain = sel.has_any and port.externally_accessible
    uses_fw_chain = sel.has_any and bool(port.load_balancer_ips) and port.firewalled
    lb_chain = fw_chain if uses_fw_chain else ext_chain
    name = port.name

    internal_target = external_target = ""
    internal_note = external_note = ""
    if not sel.has_any:
        internal_target = external_target = "REJECT"
        internal_note = external_note = _comment(f"{name} has no endpoints")
    else:
        if not sel.has_internal:
            internal_target, internal_note = "DROP", _comment(f"{name} has no local endpoints")
        if not sel.has_external:
            external_target, external_note = "DROP", _comment(f"{name} has no local endpoints")

    dest = f"-d {port.cluster_ip} --dport {port.port}"
    if sel.has_internal:
        out.add_shared(
            NAT, KUBE_SERVICES, f"{_comment(f'{name} cluster IP')} {match} {dest} -j {internal_chain}"
        )
    else:
        out.add_shared(FILTER, KUBE_SERVICES, f"{internal_note} {match} {dest} -j {internal_target}")

    for ip in port.external_ips:
        dest = f"-d {ip} --dport {port.port}"
        if sel.has_any:
            out.add_shared(
                NAT, KUBE_SERVICES, f"{_comment(f'{name} external IP')} {match} {dest} -j {ext_chain}"
            )
        if not sel.has_external:
            out.add_shared(
                FILTER, KUBE_EXTERNAL_SERVICES, f"{external_note} {match} {dest} -j {external_target}"
            )

    for ip in port.load_balancer_ips:
        dest = f"-d {ip} --dport {port.port}"
        if sel.has_any:
            out.add_shared(
                NAT, KUBE_SERVICES, f"{_comment(f'{name} loadbalancer IP')} {match} {dest} -j {lb_chain}"
            )
        if uses_fw_chain:
            note = _comment(f"{name} traffic not accepted by {fw_chain}")
            out.add_shared(FILTER, KUBE_PROXY_FIREWALL, f"{note} {match} {dest} -j DROP")
    if not sel.has_external:
        for ip in port.load_balancer_ips:
            dest = f"-d {ip} --dport {port.port}"
            out.add_shared(
                FILTER, KUBE_EXTERNAL_SERVICES, f"{external_note} {match} {dest} -j {external_target}"
            )

    if port.node_port:
        if sel.has_any:
            out.add_shared(
                NAT, KUBE_NODEPORTS, f"{_comment(name)} {match} --dport {port.node_port} -j {ext_chain}"
            )
        if not sel.has_external:
            out.add_shared(
                FILTER,
                KUBE_EXTERNAL_SERVICES,
                f"{external_note} -m addrtype --dst-type LOCAL {match} --dport {port.node_port}"
                f" -j {external_target}",
            )

    if port.health_check_node_port:
        out.add_shared(
            FILTER,
            KUBE_NODEPORTS,
            f"{_comment(f'{name} health check node port')} -m tcp -p tcp"
            f" --dport {port.health_check_node_port} -j ACCEPT",
        )

    if sel.has_internal and config.local_cidrs:
        # Traffic to the cluster IP from outside the pod network (another node, a routed client) may be
        # answered from another node: masquerade it so replies come back through here.
        rules = out.chain(internal_chain)
        for cidr in config.local_cidrs:
            rules.append(
                f"{_comment(f'{name} cluster IP')} {match} -d {port.cluster_ip} --dport {port.port}"
                f" ! -s {cidr} -j {KUBE_MARK_MASQ}"
            )

    if uses_ext_chain:
        rules = out.chain(ext_chain)
        if not port.external_policy_local:
            rules.append(
                f"{_comment(f'masquerade traffic for {name} external destinations')} -j {KUBE_MARK_MASQ}"
            )
        else:
            # Pods and the node itself reach external addresses as if through the load balancer: any endpoint.
            for cidr in config.local_cidrs:
                note = _comment(f"pod traffic for {name} external destinations")
                rules.append(f"{note} -s {cidr} -j {cluster_chain}")
            note = _comment(f"masquerade LOCAL traffic for {name} external destinations")
            rules.append(f"{note} -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}")
            note = _comment(f"route LOCAL traffic for {name} external destinations")
            rules.append(f"{note} -m addrtype --src-type LOCAL -j {cluster_chain}")
        if sel.has_external:
            rules.append(f"-j {external_policy_chain}")

    if uses_fw_chain:
        rules = out.chain(fw_chain)
        note = _comment(f"{name} loadbalancer IP")
        allow_node = False
        node_ips = [ipaddress.ip_address(ip) for ip in config.node_ips]
        for cidr in port.source_ranges:
            rules.append(f"{note} -s {cidr} -j {ext_chain}")
            allow_node = allow_node or any(ip in _net(cidr) for ip in node_ips if ip.version == port.family)
        if allow_node:
            # A VIP the node holds itself: the node's own requests arrive with the VIP as source.
            for ip in port.load_balancer_ips:
                rules.append(f"{note} -s {ip} -j {ext_chain}")
        rules.append(_comment(f"other traffic to {name} will be dropped by {KUBE_PROXY_FIREWALL}"))

    if uses_cluster_chain:
        _endpoint_dispatch(out, port, cluster_chain, sel.cluster)
    if uses_local_chain:
        _endpoint_dispatch(out, port, local_chain, sel.local)

    for ep in sel.reachable:
        sep = endpoint_chain(port, ep)
        note = f"{_comment(name)} " if config.comments else ""
        rules = out.chain(sep)
        rules.append(f"{note}-s {ep.ip} -j {KUBE_MARK_MASQ}")
        affinity = f"-m recent --name {sep} --set " if port.affinity_timeout else ""
        rules.append(f"{note}{affinity}{match} -j DNAT --to-destination {ep.address}")


def render_service(info: ServiceInfo, config: RenderConfig) -> ServiceRules:
    """The rules of one Service in `config.family` (empty when it has no port of that family)."""
    out = _ServiceWriter(config)
    for port, endpoints in info.port_endpoints():
        if port.family == config.family:
            _render_port(out, port, endpoints)
    return out.result()


def count_endpoints(services: Iterable[ServiceInfo]) -> int:
    return sum(len(eps) for info in services for eps in info.endpoints)
