"""IPVS mode: what a Service means in the kernel, rendered from the snapshot as data (pure).

As kube-proxy's IPVS proxier (pkg/proxy/ipvs/proxier.go), a service port becomes:

- one IPVS virtual server per address and port, in NAT (masquerade) mode: the cluster IP, each external IP
  and LoadBalancer IP, and every NodePort address of the node with the node port;
- its endpoints as real servers (weight 1);
- the Service's addresses bound on the dummy interface kube-ipvs0, so the node takes their packets in;
- entries in kube-proxy's ipsets, which a constant number of iptables rules (rules.py) match for masquerade,
  NodePorts, source ranges and the Local traffic policies.

A Service renders to a `ServiceObjects`; the writer (plan.py) keeps what each Service put in the kernel and
sends only the difference.

Where kube-proxy's IPVS mode and its iptables mode disagree, the behaviour of iptables mode is kept:
- internalTrafficPolicy Local with no local endpoint drops cluster-IP traffic (KUBE-NO-LOCAL-INTERNAL), where
  kube-proxy's IPVS mode falls back to every endpoint;
- externalTrafficPolicy Local with no local endpoint sends the node's and its pods' traffic to any endpoint
  (kube-proxy's IPVS mode does too) but drops traffic from outside (KUBE-NO-LOCAL-EXTERNAL), where kube-proxy
  forwards it unmasqueraded, so its replies are lost on the way back.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dataplane.model import Endpoint, ServiceInfo, ServicePort
from dataplane.selection import select

INTERFACE = "kube-ipvs0"
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "sh", "dh", "sed", "nq", "mh")
DEFAULT_SCHEDULER = "rr"
PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132}

# IP_VS_SVC_F_* (linux/ip_vs.h)
FLAG_PERSISTENT = 0x0001
FLAG_SCHED2 = 0x0010  # "mh-port" for the mh scheduler: hash the source port too (kube-proxy's FlagSourceHash)

# kube-proxy's ipsets (pkg/proxy/ipvs/ipset.go), then the two of ours.
LOOP_BACK = "KUBE-LOOP-BACK"
CLUSTER_IP = "KUBE-CLUSTER-IP"
EXTERNAL_IP = "KUBE-EXTERNAL-IP"
EXTERNAL_IP_LOCAL = "KUBE-EXTERNAL-IP-LOCAL"
LOAD_BALANCER = "KUBE-LOAD-BALANCER"
LOAD_BALANCER_LOCAL = "KUBE-LOAD-BALANCER-LOCAL"
LOAD_BALANCER_FW = "KUBE-LOAD-BALANCER-FW"
LOAD_BALANCER_SOURCE_IP = "KUBE-LOAD-BALANCER-SOURCE-IP"
LOAD_BALANCER_SOURCE_CIDR = "KUBE-LOAD-BALANCER-SOURCE-CIDR"
NODE_PORT_TCP = "KUBE-NODE-PORT-TCP"
NODE_PORT_LOCAL_TCP = "KUBE-NODE-PORT-LOCAL-TCP"
NODE_PORT_UDP = "KUBE-NODE-PORT-UDP"
NODE_PORT_LOCAL_UDP = "KUBE-NODE-PORT-LOCAL-UDP"
NODE_PORT_SCTP = "KUBE-NODE-PORT-SCTP-HASH"
NODE_PORT_LOCAL_SCTP = "KUBE-NODE-PORT-LOCAL-SCTP-HASH"
HEALTH_CHECK_NODE_PORT = "KUBE-HEALTH-CHECK-NODE-PORT"
IPVS_IPS = "KUBE-IPVS-IPS"
NO_LOCAL_INTERNAL = "KUBE-NO-LOCAL-INTERNAL"
NO_LOCAL_EXTERNAL = "KUBE-NO-LOCAL-EXTERNAL"


@dataclass(frozen=True, slots=True)
class SetSpec:
    name: str  # the IPv4 name; IPv6 sets are named by set_name()
    kind: str  # ipset type
    purpose: str


SETS: tuple[SetSpec, ...] = (
    SetSpec(LOOP_BACK, "hash:ip,port,ip", "endpoint ip:port and source ip: hairpin traffic to masquerade"),
    SetSpec(CLUSTER_IP, "hash:ip,port", "cluster IP and port: masquerade off-cluster traffic"),
    SetSpec(EXTERNAL_IP, "hash:ip,port", "external IP and port: masquerade"),
    SetSpec(EXTERNAL_IP_LOCAL, "hash:ip,port", "external IP and port with externalTrafficPolicy Local"),
    SetSpec(LOAD_BALANCER, "hash:ip,port", "LoadBalancer IP and port"),
    SetSpec(LOAD_BALANCER_LOCAL, "hash:ip,port", "LoadBalancer IP and port with externalTrafficPolicy Local"),
    SetSpec(LOAD_BALANCER_FW, "hash:ip,port", "LoadBalancer IP and port with loadBalancerSourceRanges"),
    SetSpec(LOAD_BALANCER_SOURCE_IP, "hash:ip,port,ip", "LoadBalancer IP, port and allowed source IP"),
    SetSpec(LOAD_BALANCER_SOURCE_CIDR, "hash:ip,port,net", "LoadBalancer IP, port and allowed source CIDR"),
    SetSpec(NODE_PORT_TCP, "bitmap:port", "TCP node ports: masquerade"),
    SetSpec(NODE_PORT_LOCAL_TCP, "bitmap:port", "TCP node ports with externalTrafficPolicy Local"),
    SetSpec(NODE_PORT_UDP, "bitmap:port", "UDP node ports: masquerade"),
    SetSpec(NODE_PORT_LOCAL_UDP, "bitmap:port", "UDP node ports with externalTrafficPolicy Local"),
    SetSpec(NODE_PORT_SCTP, "hash:ip,port", "SCTP node address and port: masquerade"),
    SetSpec(
        NODE_PORT_LOCAL_SCTP, "hash:ip,port", "SCTP node address and port with externalTrafficPolicy Local"
    ),
    SetSpec(HEALTH_CHECK_NODE_PORT, "bitmap:port", "healthCheckNodePorts"),
    SetSpec(IPVS_IPS, "hash:ip", "addresses bound on kube-ipvs0"),
    SetSpec(
        NO_LOCAL_INTERNAL, "hash:ip,port", "cluster IP and port: internalTrafficPolicy Local, none local"
    ),
    SetSpec(
        NO_LOCAL_EXTERNAL,
        "hash:ip,port",
        "external address and port: externalTrafficPolicy Local, none local",
    ),
)
NODE_PORT_SETS = {  # protocol -> (Cluster policy set, Local policy set)
    "TCP": (NODE_PORT_TCP, NODE_PORT_LOCAL_TCP),
    "UDP": (NODE_PORT_UDP, NODE_PORT_LOCAL_UDP),
    "SCTP": (NODE_PORT_SCTP, NODE_PORT_LOCAL_SCTP),
}
MAX_SET_NAME = 31  # IPSET_MAXNAMELEN - 1


def set_name(base: str, family: int) -> str:
    """kube-proxy's names: the IPv6 sets are KUBE-6-..., cut at ipset's 31 characters."""
    if family == 4:
        return base
    return base.replace("KUBE-", "KUBE-6-", 1)[:MAX_SET_NAME]


# Every set of both families: name -> (type, family).
SET_NAMES: dict[str, tuple[str, int]] = {
    set_name(spec.name, family): (spec.kind, family) for family in (4, 6) for spec in SETS
}


def node_ports(
    entries: Mapping[str, Iterable[str]], families: tuple[int, ...] = (4, 6)
) -> dict[tuple[int, str], set[int]]:
    """(family, protocol) -> the node ports in our ipsets' entries."""
    ports: dict[tuple[int, str], set[int]] = {}
    for family in families:
        for protocol, names in NODE_PORT_SETS.items():
            for base in names:
                for text in entries.get(set_name(base, family), ()):
                    ports.setdefault((family, protocol), set()).add(int(text.rsplit(":", 1)[-1]))
    return ports


@dataclass(frozen=True, slots=True, order=True)
class VirtualServer:
    """An IPVS service: protocol, address and port (what ipvsadm -Ln shows as `TCP 10.96.0.1:443`)."""

    family: int
    protocol: str
    address: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if self.family == 6 else self.address
        return f"{self.protocol} {host}:{self.port}"


@dataclass(frozen=True, slots=True)
class VirtualServerConfig:
    scheduler: str = DEFAULT_SCHEDULER
    timeout: int = 0  # persistence (sessionAffinity ClientIP) in seconds; 0: none
    flags: int = 0  # IP_VS_SVC_F_*

    @property
    def persistent(self) -> bool:
        return bool(self.flags & FLAG_PERSISTENT)


@dataclass(frozen=True, slots=True, order=True)
class RealServer:
    ip: str
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServiceObjects:
    """What one Service puts in the kernel (every family programmed)."""

    virtual_servers: Mapping[VirtualServer, VirtualServerConfig] = field(default_factory=dict)
    real_servers: Mapping[VirtualServer, frozenset[RealServer]] = field(default_factory=dict)
    addresses: frozenset[str] = frozenset()  # bound on kube-ipvs0
    # ipset name -> entry (ipset's own text, e.g. `10.96.0.10,tcp:80`) -> comment (the service port's name)
    entries: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.virtual_servers and not self.addresses and not self.entries


@dataclass(frozen=True, slots=True)
class IpvsConfig:
    families: tuple[int, ...] = (4, 6)
    scheduler: str = DEFAULT_SCHEDULER
    # The addresses NodePort virtual servers are made on: --nodeport-addresses, else every local address
    # but kube-ipvs0's (both families).
    nodeport_addresses: tuple[str, ...] = ()
    node_ips: tuple[str, ...] = ()  # the node's own addresses (source ranges that admit the node itself)
    local_addresses: tuple[str, ...] = ()  # on the node's interfaces: never bound again on kube-ipvs0


def _entry(ip: str, protocol: str, port: int, *rest: str) -> str:
    return ",".join((ip, f"{protocol.lower()}:{port}", *rest))


def _family(address: str) -> int:
    return ipaddress.ip_address(address).version


class _Collector:
    def __init__(self, config: IpvsConfig) -> None:
        self.config = config
        self.virtual_servers: dict[VirtualServer, VirtualServerConfig] = {}
        self.real_servers: dict[VirtualServer, frozenset[RealServer]] = {}
        self.addresses: set[str] = set()
        self.entries: dict[str, dict[str, str]] = {}

    def entry(self, base: str, family: int, text: str, comment: str) -> None:
        self.entries.setdefault(set_name(base, family), {}).setdefault(text, comment)

    def virtual_server(
        self,
        port: ServicePort,
        address: str,
        number: int,
        endpoints: Iterable[Endpoint],
        bind: bool,
    ) -> None:
        vs = VirtualServer(port.family, port.protocol, address, number)
        flags = FLAG_SCHED2 if self.config.scheduler == "mh" else 0
        if port.affinity_timeout:
            flags |= FLAG_PERSISTENT
        self.virtual_servers[vs] = VirtualServerConfig(self.config.scheduler, port.affinity_timeout, flags)
        self.real_servers[vs] = frozenset(RealServer(ep.ip, ep.port) for ep in endpoints)
        if bind:
            self.addresses.add(address)
            self.entry(IPVS_IPS, port.family, address, port.name)

    def result(self) -> ServiceObjects:
        return ServiceObjects(
            dict(self.virtual_servers),
            dict(self.real_servers),
            frozenset(self.addresses),
            {name: dict(entries) for name, entries in self.entries.items()},
        )


def _render_port(out: _Collector, port: ServicePort, endpoints: tuple[Endpoint, ...]) -> None:
    config = out.config
    family = port.family
    sel = select(port, endpoints)
    name = port.name
    node_addresses = set(config.nodeport_addresses) | set(config.node_ips) | set(config.local_addresses)

    # Cluster IP: Cluster or Local endpoints by internalTrafficPolicy; none at all makes IPVS answer with an
    # ICMP port unreachable (REJECT), none local while some exist is dropped in the filter table.
    internal = sel.local if port.internal_policy_local else sel.cluster
    out.virtual_server(port, port.cluster_ip, port.port, internal, bind=True)
    cluster_entry = _entry(port.cluster_ip, port.protocol, port.port)
    out.entry(CLUSTER_IP, family, cluster_entry, name)
    if sel.has_any and not sel.has_internal:
        out.entry(NO_LOCAL_INTERNAL, family, cluster_entry, name)
    for ep in sel.reachable:
        if ep.local:
            out.entry(LOOP_BACK, family, _entry(ep.ip, port.protocol, ep.port, ep.ip), name)

    # External destinations: Local endpoints by externalTrafficPolicy. With none local, the node and its pods
    # still reach any endpoint (as if through the load balancer) and traffic from outside is dropped.
    external: tuple[Endpoint, ...] = sel.cluster
    no_local = port.external_policy_local and sel.has_any and not sel.local
    if port.external_policy_local:
        external = sel.local or sel.cluster

    for ip in port.external_ips:
        out.virtual_server(port, ip, port.port, external, bind=ip not in node_addresses)
        text = _entry(ip, port.protocol, port.port)
        out.entry(EXTERNAL_IP_LOCAL if port.external_policy_local else EXTERNAL_IP, family, text, name)
        if no_local:
            out.entry(NO_LOCAL_EXTERNAL, family, text, name)

    node_ips = [ipaddress.ip_address(ip) for ip in config.node_ips if _family(ip) == family]
    for ip in port.load_balancer_ips:
        out.virtual_server(port, ip, port.port, external, bind=ip not in node_addresses)
        text = _entry(ip, port.protocol, port.port)
        out.entry(LOAD_BALANCER, family, text, name)
        if port.external_policy_local:
            out.entry(LOAD_BALANCER_LOCAL, family, text, name)
        if no_local:
            out.entry(NO_LOCAL_EXTERNAL, family, text, name)
        if port.firewalled and sel.has_any:
            out.entry(LOAD_BALANCER_FW, family, text, name)
            admits_node = False
            for cidr in port.source_ranges:
                out.entry(LOAD_BALANCER_SOURCE_CIDR, family, _entry(ip, port.protocol, port.port, cidr), name)
                network = ipaddress.ip_network(cidr)
                admits_node = admits_node or any(node in network for node in node_ips)
            if admits_node:
                # The node's own requests to a VIP it holds leave with the VIP as their source.
                out.entry(LOAD_BALANCER_SOURCE_IP, family, _entry(ip, port.protocol, port.port, ip), name)

    if port.node_port:
        cluster_set, local_set = NODE_PORT_SETS[port.protocol]
        addresses = [a for a in config.nodeport_addresses if _family(a) == family]
        for address in addresses:
            out.virtual_server(port, address, port.node_port, external, bind=False)
            text = _entry(address, port.protocol, port.node_port)
            if no_local:
                out.entry(NO_LOCAL_EXTERNAL, family, text, name)
        # TCP and UDP node ports are bitmaps of ports; SCTP's are address and port, as kube-proxy's.
        texts = (
            [_entry(a, port.protocol, port.node_port) for a in addresses]
            if port.protocol == "SCTP"
            else [str(port.node_port)]
        )
        for text in texts:
            out.entry(cluster_set, family, text, name)
            if port.external_policy_local:
                out.entry(local_set, family, text, name)

    if port.health_check_node_port:
        out.entry(HEALTH_CHECK_NODE_PORT, family, str(port.health_check_node_port), name)


def render_service(info: ServiceInfo, config: IpvsConfig) -> ServiceObjects:
    """The kernel objects of one Service, in the families `config` programs."""
    out = _Collector(config)
    for port, endpoints in info.port_endpoints():
        if port.family in config.families:
            _render_port(out, port, endpoints)
    return out.result()
