"""IPVS mode's iptables rules: a constant number of them, matching the ipsets render.py fills (pure).

kube-proxy's layout (pkg/proxy/ipvs/proxier.go, writeIptablesRules), so `iptables-save` reads the same; the
number of rules depends on the node (its pod CIDRs), never on the Services. They are written whole by every
full sync and never touched by a partial one: a Service changes only ipset entries and IPVS objects.

 nat:    PREROUTING, OUTPUT -> KUBE-SERVICES      masquerade marks by set, then KUBE-NODE-PORT for local dsts
         POSTROUTING -> KUBE-POSTROUTING          hairpin (KUBE-LOOP-BACK) and marked traffic: MASQUERADE
 filter: INPUT -> KUBE-PROXY-FIREWALL             loadBalancerSourceRanges (KUBE-SOURCE-RANGES-FIREWALL)
         INPUT -> KUBE-NODE-PORT                  healthCheckNodePorts: ACCEPT
         INPUT -> KUBE-IPVS-FILTER                Local policies without a local endpoint: DROP; other ports
                                                  of a Service IP: REJECT
         FORWARD -> KUBE-FORWARD                  marked and established traffic: ACCEPT
 mangle, nat, filter: KUBE-PROXY-CANARY           empty; gone means someone flushed the tables
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dataplane.ipvs.render import (
    CLUSTER_IP,
    EXTERNAL_IP,
    EXTERNAL_IP_LOCAL,
    HEALTH_CHECK_NODE_PORT,
    IPVS_IPS,
    LOAD_BALANCER,
    LOAD_BALANCER_FW,
    LOAD_BALANCER_LOCAL,
    LOAD_BALANCER_SOURCE_CIDR,
    LOAD_BALANCER_SOURCE_IP,
    LOOP_BACK,
    NO_LOCAL_EXTERNAL,
    NO_LOCAL_INTERNAL,
    NODE_PORT_SETS,
    set_name,
)

NAT = "nat"
FILTER = "filter"
MANGLE = "mangle"

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_NODE_PORT = "KUBE-NODE-PORT"
KUBE_LOAD_BALANCER = "KUBE-LOAD-BALANCER"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_SOURCE_RANGES_FIREWALL = "KUBE-SOURCE-RANGES-FIREWALL"
KUBE_IPVS_FILTER = "KUBE-IPVS-FILTER"
KUBE_IPVS_NO_LOCAL = "KUBE-IPVS-NO-LOCAL"  # ours: drops external traffic for Local policies with none local
KUBE_PROXY_CANARY = "KUBE-PROXY-CANARY"

# Every chain IPVS mode writes, by table (the canary included).
CHAINS: dict[str, tuple[str, ...]] = {
    NAT: (
        KUBE_SERVICES,
        KUBE_POSTROUTING,
        KUBE_MARK_MASQ,
        KUBE_NODE_PORT,
        KUBE_LOAD_BALANCER,
        KUBE_PROXY_CANARY,
    ),
    FILTER: (
        KUBE_FORWARD,
        KUBE_NODE_PORT,
        KUBE_PROXY_FIREWALL,
        KUBE_SOURCE_RANGES_FIREWALL,
        KUBE_IPVS_FILTER,
        KUBE_IPVS_NO_LOCAL,
        KUBE_PROXY_CANARY,
    ),
    MANGLE: (KUBE_PROXY_CANARY,),
}


@dataclass(frozen=True, slots=True)
class Jump:
    """A rule in a built-in chain that leads into ours (kube-proxy's iptablesJumpChain)."""

    table: str
    chain: str
    target: str
    comment: str

    @property
    def spec(self) -> str:
        return f'-m comment --comment "{self.comment}" -j {self.target}'


JUMPS: tuple[Jump, ...] = (
    Jump(NAT, "OUTPUT", KUBE_SERVICES, "kubernetes service portals"),
    Jump(NAT, "PREROUTING", KUBE_SERVICES, "kubernetes service portals"),
    Jump(NAT, "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules"),
    Jump(FILTER, "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules"),
    Jump(FILTER, "INPUT", KUBE_NODE_PORT, "kubernetes health check rules"),
    Jump(FILTER, "INPUT", KUBE_PROXY_FIREWALL, "kube-proxy firewall rules"),
    Jump(FILTER, "FORWARD", KUBE_PROXY_FIREWALL, "kube-proxy firewall rules"),
    Jump(FILTER, "INPUT", KUBE_IPVS_FILTER, "kubernetes ipvs access filter"),
)


@dataclass(frozen=True, slots=True)
class RulesConfig:
    family: int
    local_cidrs: tuple[str, ...] = ()  # where pod traffic comes from (this family)
    masquerade_mark: int = 0x4000
    random_fully: bool = True

    @property
    def mark(self) -> str:
        return f"{self.masquerade_mark:#x}"


def _match(base: str, family: int, direction: str) -> str:
    return f"-m set --match-set {set_name(base, family)} {direction}"


def render_rules(config: RulesConfig) -> dict[str, dict[str, list[str]]]:
    """table -> our chain -> its rules (`-A` specs without the chain name)."""
    family, mark = config.family, config.mark
    loopback = "127.0.0.0/8" if family == 4 else "::1/128"

    def m(base: str, direction: str = "dst,dst") -> str:
        return _match(base, family, direction)

    services = [f"-s {loopback} -j RETURN"]
    services.append(
        f'-m comment --comment "Kubernetes service lb portal" {m(LOAD_BALANCER)} -j {KUBE_LOAD_BALANCER}'
    )
    note = '-m comment --comment "Kubernetes service cluster ip + port for masquerade purpose"'
    if config.local_cidrs:
        # Off-cluster traffic to a cluster IP (a route to the Service range via this node, or the node itself)
        # may be answered from another node: masquerade it so that the replies come back here.
        services += [f"{note} {m(CLUSTER_IP)} ! -s {cidr} -j {KUBE_MARK_MASQ}" for cidr in config.local_cidrs]
    else:
        # Without pod CIDRs, masquerade what the node sends from a Service IP (kube-proxy's rule).
        services.append(f"{note} {m(CLUSTER_IP, 'src,dst')} -j {KUBE_MARK_MASQ}")
    services.append(
        f'-m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose"'
        f" {m(EXTERNAL_IP)} -j {KUBE_MARK_MASQ}"
    )
    services.append(
        f'-m comment --comment "the node\'s own traffic to Local external IPs" {m(EXTERNAL_IP_LOCAL)}'
        f" -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}"
    )
    services.append(f"-m addrtype --dst-type LOCAL -j {KUBE_NODE_PORT}")
    services.append(f"{m(CLUSTER_IP)} -j ACCEPT")
    services.append(f"{m(LOAD_BALANCER)} -j ACCEPT")

    node_port: list[str] = []
    for protocol, (cluster_set, local_set) in NODE_PORT_SETS.items():
        proto = protocol.lower()
        direction = "dst,dst" if protocol == "SCTP" else "dst"
        node_port.append(f"-p {proto} {m(local_set, direction)} -j RETURN")
        node_port.append(f"-p {proto} {m(cluster_set, direction)} -j {KUBE_MARK_MASQ}")

    load_balancer = [
        # The node's own requests to a Local VIP it holds leave with the VIP as their source: masquerade them,
        # or the endpoint's answer would go to whichever node it runs on.
        f"{m(LOAD_BALANCER_LOCAL)} -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}",
        f"{m(LOAD_BALANCER_LOCAL)} -j RETURN",
        f"-j {KUBE_MARK_MASQ}",
    ]
    masquerade = '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
    if config.random_fully:
        masquerade += " --random-fully"
    postrouting = [
        f'-m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"'
        f" {m(LOOP_BACK, 'dst,dst,src')} -j MASQUERADE",
        f"-m mark ! --mark {mark}/{mark} -j RETURN",
        f"-j MARK --xor-mark {mark}",
        masquerade,
    ]
    nat = {
        KUBE_SERVICES: services,
        KUBE_POSTROUTING: postrouting,
        KUBE_MARK_MASQ: [f"-j MARK --or-mark {mark}"],
        KUBE_NODE_PORT: node_port,
        KUBE_LOAD_BALANCER: load_balancer,
        KUBE_PROXY_CANARY: [],
    }

    no_local = [f"-s {cidr} -j RETURN" for cidr in config.local_cidrs]
    no_local += ["-m addrtype --src-type LOCAL -j RETURN", "-j DROP"]
    filter_chains = {
        KUBE_FORWARD: [
            f'-m comment --comment "kubernetes forwarding rules" -m mark --mark {mark}/{mark} -j ACCEPT',
            '-m comment --comment "kubernetes forwarding conntrack rule"'
            " -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        ],
        KUBE_NODE_PORT: [
            '-m comment --comment "Kubernetes health check node port"'
            f" {m(HEALTH_CHECK_NODE_PORT, 'dst')} -j ACCEPT"
        ],
        KUBE_PROXY_FIREWALL: [f"{m(LOAD_BALANCER_FW)} -j {KUBE_SOURCE_RANGES_FIREWALL}"],
        KUBE_SOURCE_RANGES_FIREWALL: [
            f"{m(LOAD_BALANCER_SOURCE_CIDR, 'dst,dst,src')} -j RETURN",
            f"{m(LOAD_BALANCER_SOURCE_IP, 'dst,dst,src')} -j RETURN",
            "-j DROP",
        ],
        KUBE_IPVS_FILTER: [
            f'-m comment --comment "internalTrafficPolicy Local without a local endpoint"'
            f" {m(NO_LOCAL_INTERNAL)} -j DROP",
            f'-m comment --comment "externalTrafficPolicy Local without a local endpoint"'
            f" {m(NO_LOCAL_EXTERNAL)} -j {KUBE_IPVS_NO_LOCAL}",
            f"{m(LOAD_BALANCER)} -j RETURN",
            f"{m(CLUSTER_IP)} -j RETURN",
            f"{m(EXTERNAL_IP)} -j RETURN",
            f"{m(EXTERNAL_IP_LOCAL)} -j RETURN",
            f"{m(HEALTH_CHECK_NODE_PORT, 'dst')} -j RETURN",
            f"-m conntrack --ctstate NEW {m(IPVS_IPS, 'dst')} -j REJECT",
        ],
        KUBE_IPVS_NO_LOCAL: no_local,
        KUBE_PROXY_CANARY: [],
    }
    return {NAT: nat, FILTER: filter_chains, MANGLE: {KUBE_PROXY_CANARY: []}}


def restore_input(
    rules: Mapping[str, Mapping[str, list[str]]], existing_jumps: Mapping[tuple[str, str], list[str]]
) -> str:
    """iptables-restore --noflush input that rewrites our chains and adds the jumps missing from the built-in
    chains (`existing_jumps`: their rules as `iptables -S` prints them)."""
    lines: list[str] = []
    for table, chains in rules.items():
        lines.append(f"*{table}")
        lines += [f":{chain} - [0:0]" for chain in chains]
        for jump in JUMPS:
            if jump.table != table:
                continue
            present = existing_jumps.get((jump.table, jump.chain), [])
            if not any(rule.endswith(f"-j {jump.target}") and jump.comment in rule for rule in present):
                lines.append(f"-I {jump.chain} {jump.spec}")
        for chain, specs in chains.items():
            lines += [f"-A {chain} {spec}" for spec in specs]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"
