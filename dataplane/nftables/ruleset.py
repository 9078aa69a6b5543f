"""nftables mode: the ruleset, rendered from the snapshot as data (pure).

One table per family, `ip ironlb` and `ip6 ironlb`, holding everything this mode writes. Its shape is chosen
so that the number of chains does not grow with the number of Services (creating chains is what makes large
nftables rulesets slow to load; docs/benchmarks.md has the measurements):

- Dispatch is one lookup: `ip daddr . meta l4proto . th dport vmap @service-ips` (NodePorts:
  `meta l4proto . th dport vmap @service-nodeports` for local destinations). The verdict goes to one of a few
  fixed chains by kind of destination: `cluster-ip`, `external`, `external-local` (externalTrafficPolicy
  Local), `nodeport`, `nodeport-local`.
- Those chains masquerade what needs it, then choose the endpoint with a second lookup by the same key in a
  "pick" verdict map, whose verdict is `goto endpoints-N` (N endpoints). The chain `endpoints-N` and the map
  of the same name are shared by every destination with N endpoints: `dnat to ip daddr . meta l4proto . th
  dport . numgen random mod N map @endpoints-N`, where the map holds `<destination> . <index> : <endpoint
  address> . <port>`. (A map per N, made in the same transaction as its chain: nft 1.0.6 cannot add a rule
  that uses a `typeof ... : ip daddr . th dport` map it reads back from the kernel, so no rule is ever added
  to an existing one of these maps; see _clear in transaction.py.)
- Session affinity (rare) keeps kube-proxy's per-Service layout: a chain per service port and list
  (`service-...` for Cluster policy, `local-...` for Local) tries each endpoint's affinity set (a timed set
  of client addresses), else picks with numgen; a chain per endpoint records the client and DNATs.
- Filtering happens in the filter hooks, as in iptables mode: destinations without endpoints are REJECTed
  (or DROPped, for Local policies without local endpoints) from @no-endpoint-services (input, forward,
  output), @no-endpoint-external and @no-endpoint-nodeports (input, forward); loadBalancerSourceRanges
  drop new connections before DNAT (prerouting and output, priority dstnat - 10).
- Masquerading: packets marked by `mark-for-masquerade` (kube-proxy's 0x4000 bit), and hairpin traffic (a
  pod reaching itself through a Service: source . destination in @hairpin) in `masquerading` (postrouting).

A Service renders to a `Contribution`: the elements of each of its destinations, the chains and sets only it
owns (affinity), and references to shared objects (the `endpoints-N` chains, hairpin and health check port
elements), which exist while anyone references them. The writer (transaction.py) turns contributions into
nft transactions.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dataplane.backend import RenderConfig
from dataplane.model import Endpoint, ServiceInfo, ServicePort
from dataplane.selection import select

TABLE = "ironlb"
TABLE_COMMENT = "rules for ironlb's dataplane (nftables mode)"

# Fixed chains.
SERVICES = "services"
CLUSTER_IP = "cluster-ip"
EXTERNAL = "external"
EXTERNAL_LOCAL = "external-local"
NODEPORT = "nodeport"
NODEPORT_LOCAL = "nodeport-local"
MARK_FOR_MASQUERADE = "mark-for-masquerade"
MASQUERADING = "masquerading"
REJECT_CHAIN = "reject-chain"
NODEPORT_REJECT = "nodeport-reject"  # REJECT, DROP when the destination is a local address
NODEPORT_DROP = "nodeport-drop"
CLUSTER_CHECK = "cluster-check"
EXTERNAL_CHECK = "external-check"
FIREWALL_CHECK = "firewall-check"
FORWARD = "forward"

# Sets and maps with a fixed declaration.
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
PICK = "pick"
CLUSTER_PICK = "cluster-pick"
NODEPORT_PICK = "nodeport-pick"
NODEPORT_CLUSTER_PICK = "nodeport-cluster-pick"
# Kinds of endpoints-N chain and map: by kind of key (address or NodePort) and list (the destination's own
# policy, or Cluster for the short-circuits of externalTrafficPolicy Local).
ENDPOINTS = "endpoints"
CLUSTER_ENDPOINTS = "cluster-endpoints"
NODEPORT_ENDPOINTS = "nodeport-endpoints"
NODEPORT_CLUSTER_ENDPOINTS = "nodeport-cluster-endpoints"
ENDPOINT_KINDS = (ENDPOINTS, CLUSTER_ENDPOINTS, NODEPORT_ENDPOINTS, NODEPORT_CLUSTER_ENDPOINTS)
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_EXTERNAL = "no-endpoint-external"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
FIREWALL_IPS = "firewall-ips"
FIREWALL_ALLOW = "firewall-allow"
HAIRPIN = "hairpin"
HEALTH_CHECK_PORTS = "health-check-ports"
POD_CIDRS = "pod-cidrs"
NODEPORT_IPS = "nodeport-ips"


# Set and map names and element-name prefixes of objects a Service owns (affinity), as kube-proxy names them.
SERVICE_CHAIN_PREFIX = "service-"
LOCAL_CHAIN_PREFIX = "local-"
ENDPOINT_CHAIN_PREFIX = "endpoint-"
AFFINITY_SET_PREFIX = "affinity-"


def nft_family(config: RenderConfig) -> str:
    return "ip" if config.family == 4 else "ip6"


def addr_type(config: RenderConfig) -> str:
    return "ipv4_addr" if config.family == 4 else "ipv6_addr"


# A destination: ("ip", "<address> . <proto> . <port>") or ("nodeport", "<proto> . <port>"). Everything a
# Service renders for one destination goes or stays together: if two Services claim one destination (a
# conflicting external IP), the first in ServiceKey order owns it.
Destination = tuple[str, str]
ElementKey = tuple[str, str]  # (set or map, key text)
# The sets whose elements carry the name of their service port as a comment (one per destination).
COMMENTED = frozenset(
    {
        SERVICE_IPS,
        SERVICE_NODEPORTS,
        NO_ENDPOINT_SERVICES,
        NO_ENDPOINT_EXTERNAL,
        NO_ENDPOINT_NODEPORTS,
        FIREWALL_IPS,
    }
)


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one Service renders into one family's table."""

    # Per destination, its elements: (set, key) -> map value (None for set elements).
    destinations: Mapping[Destination, Mapping[ElementKey, str | None]] = field(default_factory=dict)
    comments: Mapping[Destination, str] = field(default_factory=dict)  # the service port of each destination
    # Chains and sets only this Service uses (affinity), with their rules / declarations.
    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sets: Mapping[str, str] = field(default_factory=dict)
    # Shared objects this Service needs: ("endpoints", name) for an endpoints-N chain and its map,
    # ("hairpin", ip), ("health-check", port).
    refs: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def empty(self) -> bool:
        return not (self.destinations or self.chains or self.sets or self.refs)


@dataclass(frozen=True, slots=True)
class SetSpec:
    name: str
    declaration: str  # the body between braces, without elements


@dataclass(frozen=True, slots=True)
class Static:
    """Everything that does not depend on any Service: sets, maps and chains, and their fixed elements."""

    sets: tuple[SetSpec, ...]
    chains: Mapping[str, tuple[str, ...]]  # name -> rules; base chains start with their `type ... ;` line
    elements: Mapping[str, tuple[str, ...]]  # fixed elements (pod CIDRs, NodePort addresses)


def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:8]


def _port_path(port: ServicePort) -> str:
    """kube-proxy's nftables naming: `namespace/name/protocol/portname`, after a hash of itself."""
    path = f"{port.service.namespace}/{port.service.name}/{port.protocol.lower()}/{port.port_name}"
    return f"{_hash(path)}-{path}"


def _endpoint_path(port: ServicePort, endpoint: Endpoint, salt: str = "") -> str:
    path = (
        f"{port.service.namespace}/{port.service.name}/{port.protocol.lower()}/{port.port_name}"
        f"__{endpoint.ip.replace(':', '.')}/{endpoint.port}"
    )
    return f"{_hash(path + salt)}-{path}"


def policy_chain(port: ServicePort, local: bool) -> str:
    return (LOCAL_CHAIN_PREFIX if local else SERVICE_CHAIN_PREFIX) + _port_path(port)


def endpoint_chain(port: ServicePort, endpoint: Endpoint) -> str:
    return ENDPOINT_CHAIN_PREFIX + _endpoint_path(port, endpoint)


def affinity_set(port: ServicePort, endpoint: Endpoint) -> str:
    # The timeout is part of the set's declaration, which the kernel cannot change in place: a new timeout
    # makes a new set.
    return AFFINITY_SET_PREFIX + _endpoint_path(port, endpoint, f"/{port.affinity_timeout}")


def endpoints_name(kind: str, count: int) -> str:
    """The shared chain and map choosing among `count` endpoints for one kind of key and list."""
    return f"{kind}-{count}"


def is_endpoints_name(name: str) -> bool:
    kind, _, count = name.rpartition("-")
    return kind in ENDPOINT_KINDS and count.isdigit()


def collapse(cidrs: Iterable[str]) -> tuple[str, ...]:
    """CIDRs as interval set elements: an interval set refuses overlapping elements, so merge them (a single
    address stays an address)."""
    networks = [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs]
    v4 = ipaddress.collapse_addresses(n for n in networks if isinstance(n, ipaddress.IPv4Network))
    v6 = ipaddress.collapse_addresses(n for n in networks if isinstance(n, ipaddress.IPv6Network))
    merged: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [*v4, *v6]
    return tuple(str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n) for n in merged)


def _quote(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def _ip_key(port: ServicePort, ip: str) -> str:
    return f"{ip} . {port.protocol.lower()} . {port.port}"


def _nodeport_key(port: ServicePort) -> str:
    return f"{port.protocol.lower()} . {port.node_port}"


def render_static(config: RenderConfig) -> Static:
    ip, addr = nft_family(config), addr_type(config)
    mark = config.mark
    dest = f"{ip} daddr . meta l4proto . th dport"
    src = f"{ip} saddr"
    key_type = f"{addr} . inet_proto . inet_service"
    np_type = "inet_proto . inet_service"
    sets = [
        SetSpec(
            SERVICE_IPS,
            f"type {key_type} : verdict; comment {_quote('cluster, external and LoadBalancer IP traffic')}",
        ),
        SetSpec(SERVICE_NODEPORTS, f"type {np_type} : verdict; comment {_quote('NodePort traffic')}"),
    ]
    for pick in (PICK, CLUSTER_PICK):
        sets.append(SetSpec(pick, f"type {key_type} : verdict"))
    for pick in (NODEPORT_PICK, NODEPORT_CLUSTER_PICK):
        sets.append(SetSpec(pick, f"type {np_type} : verdict"))
    sets += [
        SetSpec(
            NO_ENDPOINT_SERVICES,
            f"type {key_type} : verdict; comment {_quote('cluster IPs without endpoints')}",
        ),
        SetSpec(
            NO_ENDPOINT_EXTERNAL,
            f"type {key_type} : verdict; comment {_quote('external and LoadBalancer IPs without endpoints')}",
        ),
        SetSpec(
            NO_ENDPOINT_NODEPORTS,
            f"type {np_type} : verdict; comment {_quote('NodePorts without endpoints')}",
        ),
        SetSpec(
            FIREWALL_IPS, f"type {key_type}; comment {_quote('destinations with loadBalancerSourceRanges')}"
        ),
        SetSpec(
            FIREWALL_ALLOW, f"type {addr} . {key_type}; flags interval; comment {_quote('sources allowed')}"
        ),
        SetSpec(HAIRPIN, f"type {addr} . {addr}; comment {_quote('endpoints reaching themselves')}"),
        SetSpec(HEALTH_CHECK_PORTS, "type inet_service"),
    ]
    elements: dict[str, tuple[str, ...]] = {}
    if config.local_cidrs:
        sets.append(SetSpec(POD_CIDRS, f"type {addr}; flags interval"))
        elements[POD_CIDRS] = collapse(config.local_cidrs)
    if config.nodeport_ips is not None:
        sets.append(SetSpec(NODEPORT_IPS, f"type {addr}"))
        elements[NODEPORT_IPS] = tuple(dict.fromkeys(config.nodeport_ips))

    # NodePorts answer on local addresses (not loopback), or on --nodeport-addresses. The address is checked
    # after the port matched (in the chain the verdict leads to): a fib lookup costs more than a map lookup,
    # and most packets are for no NodePort.
    loopback = "127.0.0.0/8" if config.family == 4 else "::1"
    not_nodeport: tuple[str, ...]
    if config.nodeport_ips is None:
        not_nodeport = ("fib daddr type != local return", f"{ip} daddr {loopback} return")
    else:
        not_nodeport = (f"{ip} daddr != @{NODEPORT_IPS} return",)
    pods = f"{src} @{POD_CIDRS}"
    chains: dict[str, tuple[str, ...]] = {
        # Base chains: kube-proxy's hooks and priorities; filtering sees addresses after DNAT, as in iptables
        # mode, except the source-range firewall, which must see them before.
        "filter-prerouting": (
            "type filter hook prerouting priority dstnat - 10; policy accept;",
            f"ct state new jump {FIREWALL_CHECK}",
        ),
        "filter-input": (
            "type filter hook input priority filter; policy accept;",
            f"ct state new jump {EXTERNAL_CHECK}",
            f"tcp dport @{HEALTH_CHECK_PORTS} accept",
        ),
        "filter-forward": (
            "type filter hook forward priority filter; policy accept;",
            f"ct state new jump {EXTERNAL_CHECK}",
            f"ct state new jump {CLUSTER_CHECK}",
            f"jump {FORWARD}",
        ),
        "filter-output": (
            "type filter hook output priority filter; policy accept;",
            f"ct state new jump {CLUSTER_CHECK}",
        ),
        "filter-output-firewall": (
            "type filter hook output priority -110; policy accept;",
            f"ct state new jump {FIREWALL_CHECK}",
        ),
        "nat-prerouting": ("type nat hook prerouting priority dstnat; policy accept;", f"jump {SERVICES}"),
        "nat-output": ("type nat hook output priority -100; policy accept;", f"jump {SERVICES}"),
        "nat-postrouting": (
            "type nat hook postrouting priority srcnat; policy accept;",
            f"jump {MASQUERADING}",
        ),
        SERVICES: (
            f"{dest} vmap @{SERVICE_IPS}",
            f"meta l4proto . th dport vmap @{SERVICE_NODEPORTS}",
        ),
        CLUSTER_IP: (
            # Traffic to a cluster IP from outside the pod network may be answered from another node:
            # masquerade it so replies come back through here.
            *((f"{src} != @{POD_CIDRS} jump {MARK_FOR_MASQUERADE}",) if config.local_cidrs else ()),
            f"{dest} vmap @{PICK}",
        ),
        EXTERNAL: (f"jump {MARK_FOR_MASQUERADE}", f"{dest} vmap @{PICK}"),
        EXTERNAL_LOCAL: _local_policy(pods if config.local_cidrs else "", dest, PICK, CLUSTER_PICK),
        NODEPORT: (
            *not_nodeport,
            f"jump {MARK_FOR_MASQUERADE}",
            f"meta l4proto . th dport vmap @{NODEPORT_PICK}",
        ),
        NODEPORT_LOCAL: (
            *not_nodeport,
            *_local_policy(
                pods if config.local_cidrs else "",
                "meta l4proto . th dport",
                NODEPORT_PICK,
                NODEPORT_CLUSTER_PICK,
            ),
        ),
        MARK_FOR_MASQUERADE: (f"meta mark set meta mark or {mark}",),
        MASQUERADING: (
            f"ct status dnat {src} . {ip} daddr @{HAIRPIN} jump {MARK_FOR_MASQUERADE}",
            f"meta mark & {mark} == 0 return",
            f"meta mark set meta mark xor {mark}",
            "masquerade fully-random" if config.random_fully else "masquerade",
        ),
        REJECT_CHAIN: ("reject",),
        NODEPORT_REJECT: (f"fib daddr type local goto {REJECT_CHAIN}",),
        NODEPORT_DROP: ("fib daddr type local drop",),
        CLUSTER_CHECK: (f"{dest} vmap @{NO_ENDPOINT_SERVICES}",),
        EXTERNAL_CHECK: (
            f"{dest} vmap @{NO_ENDPOINT_EXTERNAL}",
            f"meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}",
        ),
        FIREWALL_CHECK: (f"{dest} @{FIREWALL_IPS} {src} . {dest} != @{FIREWALL_ALLOW} drop",),
        FORWARD: (
            *(("ct state invalid drop",) if config.drop_invalid else ()),
            f"meta mark & {mark} == {mark} accept",
            "ct state related,established accept",
        ),
    }
    return Static(tuple(sets), chains, elements)


def _local_policy(pods: str, key: str, pick: str, cluster_pick: str) -> tuple[str, ...]:
    """externalTrafficPolicy Local: pods and the node itself reach the Service as if through the load
    balancer (any endpoint; the node's own traffic masqueraded, its source being the external address);
    everyone else gets a local endpoint with the client address kept, or nothing."""
    rules = [f"{pods} {key} vmap @{cluster_pick}"] if pods else []
    rules += [
        f"fib saddr type local jump {MARK_FOR_MASQUERADE}",
        f"fib saddr type local {key} vmap @{cluster_pick}",
        f"{key} vmap @{pick}",
    ]
    return tuple(rules)


def _endpoints_key(kind: str, config: RenderConfig) -> str:
    if kind in (NODEPORT_ENDPOINTS, NODEPORT_CLUSTER_ENDPOINTS):
        return "meta l4proto . th dport"
    return f"{nft_family(config)} daddr . meta l4proto . th dport"


def endpoints_objects(name: str, config: RenderConfig) -> tuple[str, tuple[str, ...]]:
    """A shared endpoints-N object pair: the map's declaration and the chain's rules."""
    kind, _, count = name.rpartition("-")
    ip = nft_family(config)
    key = f"{_endpoints_key(kind, config)} . numgen random mod {count}"
    # numgen's value has no datatype of its own, so only `typeof` declares this map. `th dport` in the data
    # keeps the DNAT free of a protocol (`tcp dport` would make nft add `meta l4proto tcp` to the rule).
    declaration = f"typeof {key} : {ip} daddr . th dport"
    return declaration, (f"dnat {ip} to {key} map @{name}",)


class _Writer:
    """Collects one Service's contribution; one instance per render_service call."""

    def __init__(self, config: RenderConfig) -> None:
        self.config = config
        self.destinations: dict[Destination, dict[ElementKey, str | None]] = {}
        self.chains: dict[str, tuple[str, ...]] = {}
        self.sets: dict[str, str] = {}
        self.refs: Counter[tuple[str, str]] = Counter()
        self.comments: dict[Destination, str] = {}
        self._claimed_here: set[Destination] = set()

    def claim(self, destination: Destination, port_name: str) -> dict[ElementKey, str | None] | None:
        """The element dict of a destination new to this Service; None if one of its ports took it already."""
        if destination in self._claimed_here:
            return None
        self._claimed_here.add(destination)
        self.comments[destination] = port_name
        return self.destinations.setdefault(destination, {})

    def result(self) -> Contribution:
        destinations = {d: elements for d, elements in self.destinations.items() if elements}
        comments = {d: self.comments[d] for d in destinations}
        return Contribution(destinations, comments, dict(self.chains), dict(self.sets), self.refs)


def _pick(
    out: _Writer,
    port: ServicePort,
    elements: dict[ElementKey, str | None],
    key: str,
    pick_map: str,
    kind: str,
    endpoints: tuple[Endpoint, ...],
    local: bool,
) -> None:
    """Elements choosing among `endpoints` for one destination key: a verdict in `pick_map` and, without
    affinity, the endpoints under the same key in the endpoints-N map of `kind`."""
    if port.affinity_timeout:
        elements[(pick_map, key)] = f"goto {policy_chain(port, local)}"
        return
    name = endpoints_name(kind, len(endpoints))
    out.refs[("endpoints", name)] += 1
    elements[(pick_map, key)] = f"goto {name}"
    for index, endpoint in enumerate(endpoints):
        elements[(name, f"{key} . {index}")] = f"{endpoint.ip} . {endpoint.port}"


def _affinity_chains(out: _Writer, port: ServicePort, endpoints: tuple[Endpoint, ...], local: bool) -> None:
    """kube-proxy's layout for session affinity: known clients go to their endpoint, others are spread."""
    ip = nft_family(out.config)
    rules = [f"{ip} saddr @{affinity_set(port, ep)} goto {endpoint_chain(port, ep)}" for ep in endpoints]
    choices = ", ".join(f"{index} : goto {endpoint_chain(port, ep)}" for index, ep in enumerate(endpoints))
    rules.append(f"numgen random mod {len(endpoints)} vmap {{ {choices} }}")
    out.chains[policy_chain(port, local)] = tuple(rules)
    for ep in endpoints:
        name = affinity_set(port, ep)
        out.sets[name] = (
            f"type {addr_type(out.config)}; flags dynamic,timeout; timeout {port.affinity_timeout}s;"
        )
        target = f"[{ep.ip}]:{ep.port}" if port.family == 6 else f"{ep.ip}:{ep.port}"
        out.chains[endpoint_chain(port, ep)] = (
            f"update @{name} {{ {ip} saddr }}",
            f"meta l4proto {port.protocol.lower()} dnat {ip} to {target}",
        )


def _external_picks(
    out: _Writer,
    port: ServicePort,
    elements: dict[ElementKey, str | None],
    key: str,
    cluster: tuple[Endpoint, ...],
    local: tuple[Endpoint, ...] | None,
    nodeport: bool = False,
) -> None:
    """The choices of an external destination (`local` None: external traffic has no endpoint here): its own
    policy's list, and with externalTrafficPolicy Local the Cluster list for pods and the node itself."""
    pick, cluster_pick = (NODEPORT_PICK, NODEPORT_CLUSTER_PICK) if nodeport else (PICK, CLUSTER_PICK)
    own, short_circuit = (
        (NODEPORT_ENDPOINTS, NODEPORT_CLUSTER_ENDPOINTS) if nodeport else (ENDPOINTS, CLUSTER_ENDPOINTS)
    )
    policy_local = port.external_policy_local
    if local is not None:
        _pick(out, port, elements, key, pick, own, local if policy_local else cluster, policy_local)
    if policy_local:
        _pick(out, port, elements, key, cluster_pick, short_circuit, cluster, False)


def _render_port(out: _Writer, port: ServicePort, endpoints: tuple[Endpoint, ...]) -> None:
    config = out.config
    sel = select(port, endpoints)
    cluster_list, local_list = sel.cluster, sel.local
    # The list each kind of destination uses (kube-proxy's internal and external policy chains).
    internal = local_list if port.internal_policy_local else cluster_list
    external_local = port.external_policy_local

    if not sel.has_any:
        internal_verdict = external_verdict = f"goto {REJECT_CHAIN}"
    else:
        internal_verdict = "" if sel.has_internal else "drop"
        external_verdict = "" if sel.has_external else "drop"

    elements = out.claim(("ip", _ip_key(port, port.cluster_ip)), port.name)
    if elements is not None:
        key = _ip_key(port, port.cluster_ip)
        if sel.has_internal:
            elements[(SERVICE_IPS, key)] = f"goto {CLUSTER_IP}"
            _pick(out, port, elements, key, PICK, ENDPOINTS, internal, port.internal_policy_local)
        else:
            elements[(NO_ENDPOINT_SERVICES, key)] = internal_verdict

    firewalled = sel.has_any and bool(port.load_balancer_ips) and port.firewalled
    kind = EXTERNAL_LOCAL if external_local else EXTERNAL
    node_ips = [ipaddress.ip_address(ip) for ip in config.node_ips]
    allow_node = firewalled and any(
        ip in ipaddress.ip_network(cidr) for cidr in port.source_ranges for ip in node_ips
    )
    for ip, is_lb in [(ip, False) for ip in port.external_ips] + [
        (ip, True) for ip in port.load_balancer_ips
    ]:
        key = _ip_key(port, ip)
        elements = out.claim(("ip", key), port.name)
        if elements is None:
            continue
        if sel.has_any:
            elements[(SERVICE_IPS, key)] = f"goto {kind}"
            _external_picks(out, port, elements, key, sel.cluster, sel.local if sel.has_external else None)
        if not sel.has_external:
            elements[(NO_ENDPOINT_EXTERNAL, key)] = external_verdict
        if is_lb and firewalled:
            elements[(FIREWALL_IPS, key)] = None
            sources = list(port.source_ranges)
            if allow_node:
                # A VIP the node holds itself: the node's own requests arrive with the VIP as source.
                sources.append(ip)
            for source in collapse(sources):
                elements[(FIREWALL_ALLOW, f"{source} . {key}")] = None

    if port.node_port:
        key = _nodeport_key(port)
        elements = out.claim(("nodeport", key), port.name)
        if elements is not None:
            if sel.has_any:
                np_kind = NODEPORT_LOCAL if external_local else NODEPORT
                elements[(SERVICE_NODEPORTS, key)] = f"goto {np_kind}"
                local = sel.local if sel.has_external else None
                _external_picks(out, port, elements, key, sel.cluster, local, nodeport=True)
            if not sel.has_external:
                verdict = f"goto {NODEPORT_DROP if sel.has_any else NODEPORT_REJECT}"
                elements[(NO_ENDPOINT_NODEPORTS, key)] = verdict

    if port.health_check_node_port:
        out.refs[("health-check", str(port.health_check_node_port))] += 1

    if port.affinity_timeout:
        if port.uses_cluster_endpoints and cluster_list:
            _affinity_chains(out, port, cluster_list, local=False)
        if port.uses_local_endpoints and local_list:
            _affinity_chains(out, port, local_list, local=True)

    for ep in sel.reachable:
        # Only a pod on this node reaches itself through this node's rules: other nodes DNAT their own pods'
        # traffic.
        if ep.local:
            out.refs[("hairpin", ep.ip)] += 1


def render_service(info: ServiceInfo, config: RenderConfig) -> Contribution:
    """What one Service contributes to `config.family`'s table (empty when it has no port of that family)."""
    out = _Writer(config)
    for port, endpoints in info.port_endpoints():
        if port.family == config.family:
            _render_port(out, port, endpoints)
    return out.result()


def shared_element(ref: tuple[str, str]) -> tuple[str, str] | None:
    """The (set, key) element a shared reference stands for; None for chains."""
    kind, value = ref
    if kind == "hairpin":
        return (HAIRPIN, f"{value} . {value}")
    if kind == "health-check":
        return (HEALTH_CHECK_PORTS, value)
    return None


def count_endpoints(services: Iterable[ServiceInfo]) -> int:
    return sum(len(eps) for info in services for eps in info.endpoints)
