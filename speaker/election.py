"""Who announces each LoadBalancer IP: a pure function of inputs every speaker shares.

MetalLB's rule: order the candidate nodes by sha256(node + "#" + ip) and take the first. It is rendezvous
hashing, so every speaker that sees the same candidates picks the same owner without talking to the others,
the Services sharing one IP land on one node (the key is the IP), and a node leaving moves only its own IPs.

Candidates for an IP: nodes with a live speaker, that have a Node object, without the NetworkUnavailable
condition or the exclude-from-external-load-balancers label, and selected by an L2Advertisement of the IP's
pool. A Service with externalTrafficPolicy Local further needs a node with one of its serving endpoints of the
IP's family. A Service without any serving endpoint asks for nothing (MetalLB does not announce it either).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass

from common.endpoints import ServingEndpoints
from common.pools import Config, IPAddress, L2Advertisement, Pool
from speaker.model import NodeFacts, ServiceFacts


def election_key(node: str, ip: IPAddress) -> bytes:
    return hashlib.sha256(f"{node}#{ip}".encode()).digest()


def ranking(ip: IPAddress, nodes: Iterable[str]) -> list[str]:
    """``nodes`` in election order for ``ip`` (the name breaks a tie, which sha256 never produces)."""
    return sorted(set(nodes), key=lambda node: (election_key(node, ip), node))


def elect(ip: IPAddress, candidates: Iterable[str]) -> str | None:
    best: tuple[bytes, str] | None = None
    for node in candidates:
        key = (election_key(node, ip), node)
        if best is None or key < best:
            best = key
    return None if best is None else best[1]


class Ranker:
    """Election orders per IP, cached. Hashing is what an election costs, and an IP's order over all nodes
    changes only when Nodes come or go, whatever the live set: a failover then costs a walk down a short
    list per IP, not a sha256 per IP and candidate. Keeps each IP's first ``top`` nodes; when none of them is
    a candidate (a mass failure), it elects over the candidates from scratch."""

    def __init__(self, top: int = 16) -> None:
        self.top = top
        self._nodes: frozenset[str] = frozenset()
        self._orders: dict[IPAddress, list[str]] = {}

    def set_nodes(self, nodes: Iterable[str]) -> None:
        nodes = frozenset(nodes)
        if nodes != self._nodes:
            self._nodes = nodes
            self._orders.clear()

    def forget_except(self, ips: Set[IPAddress]) -> None:
        for ip in [ip for ip in self._orders if ip not in ips]:
            del self._orders[ip]

    def owner(self, ip: IPAddress, candidates: Set[str]) -> str | None:
        """The first of ``candidates`` (a subset of the nodes) in ``ip``'s order."""
        order = self._orders.get(ip)
        if order is None:
            order = self._orders[ip] = ranking(ip, self._nodes)[: self.top]
        for node in order:
            if node in candidates:
                return node
        return elect(ip, candidates)


def is_config_map_pool(pool: Pool) -> bool:
    return pool.source.startswith("ConfigMap")


def advertisements_for(pool: Pool, advertisements: Iterable[L2Advertisement]) -> tuple[L2Advertisement, ...]:
    """The L2Advertisements announcing ``pool``. A layer2 pool from MetalLB's ConfigMap (v0.12 format, which
    has no L2Advertisement) is announced from every node on every interface, as MetalLB 0.12 did."""
    if is_config_map_pool(pool):
        return (L2Advertisement(name="", source=pool.source),) if pool.protocol == "layer2" else ()
    labels = dict(pool.labels)
    chosen = []
    for advertisement in advertisements:
        selects_all = not advertisement.ip_address_pools and not advertisement.ip_address_pool_selectors
        if (
            selects_all
            or pool.name in advertisement.ip_address_pools
            or any(selector.matches(labels) for selector in advertisement.ip_address_pool_selectors)
        ):
            chosen.append(advertisement)
    return tuple(chosen)


def selects_node(advertisement: L2Advertisement, node: NodeFacts) -> bool:
    """No nodeSelectors: every node; else any selector matching the node's labels."""
    if not advertisement.node_selectors:
        return True
    return any(selector.matches(node.labels) for selector in advertisement.node_selectors)


def pool_of(config: Config, ip: IPAddress) -> Pool | None:
    for pool in config.pools:
        if pool.contains(ip):
            return pool
    return None


@dataclass(frozen=True)
class IPElection:
    """The outcome for one IP: its owner (None: nobody announces it, and ``reason`` says why)."""

    ip: IPAddress
    services: tuple[str, ...]  # namespace/name of every Service showing this IP, sorted
    pool: str | None
    owner: str | None
    reason: str = ""


def pool_candidates(
    pool: Pool, config: Config, nodes: Mapping[str, NodeFacts], live: Set[str]
) -> frozenset[str]:
    """Live, eligible nodes that an L2Advertisement of ``pool`` selects."""
    advertisements = advertisements_for(pool, config.l2_advertisements)
    return frozenset(
        name
        for name in live
        if (node := nodes.get(name)) is not None
        and node.eligible
        and any(selects_node(advertisement, node) for advertisement in advertisements)
    )


def elect_ip(
    ip: IPAddress,
    services: Iterable[ServiceFacts],
    config: Config,
    nodes: Mapping[str, NodeFacts],
    live: Set[str],
    endpoints: Mapping[str, ServingEndpoints],
    *,
    ranker: Ranker | None = None,
    by_pool: dict[str, tuple[bool, frozenset[str]]] | None = None,
) -> IPElection:
    """One IP's election. ``ranker`` and ``by_pool`` (candidates per pool) are caches ``elect_all`` shares
    between IPs; the result is the same without them."""
    services = sorted(services, key=lambda s: s.key)
    keys = tuple(s.key for s in services)
    pool = pool_of(config, ip)
    if pool is None:
        return IPElection(ip, keys, None, None, "the IP is in no address pool")
    if by_pool is None:
        by_pool = {}
    cached = by_pool.get(pool.name)
    if cached is None:
        advertised = bool(advertisements_for(pool, config.l2_advertisements))
        cached = by_pool[pool.name] = (advertised, pool_candidates(pool, config, nodes, live))
    if not cached[0]:
        return IPElection(ip, keys, pool.name, None, f'no L2Advertisement selects pool "{pool.name}"')
    candidates: Set[str] = cached[1]
    active = [s for s in services if endpoints.get(s.key, ServingEndpoints()).any_serving]
    if not active:
        return IPElection(ip, keys, pool.name, None, "no serving endpoint")
    local_sets = [endpoints[s.key].nodes(ip.version) for s in active if s.local]
    if local_sets:
        # Services sharing an IP under policy Local have the same selector (the controller enforces it), so
        # their endpoint nodes agree; while they disagree, any node serving one of them beats none.
        both = frozenset(candidates).intersection(*local_sets)
        candidates = both or frozenset(candidates).intersection(set().union(*local_sets))
    if not candidates:
        return IPElection(ip, keys, pool.name, None, "no eligible node with a live speaker")
    owner = ranker.owner(ip, candidates) if ranker is not None else elect(ip, candidates)
    return IPElection(ip, keys, pool.name, owner)


def elect_all(
    services: Iterable[ServiceFacts],
    config: Config,
    nodes: Mapping[str, NodeFacts],
    live: Set[str],
    endpoints: Mapping[str, ServingEndpoints],
    ranker: Ranker | None = None,
) -> dict[IPAddress, IPElection]:
    """Every LoadBalancer IP's election, keyed by IP. A ``ranker`` kept between calls makes it cheap."""
    by_ip: dict[IPAddress, list[ServiceFacts]] = {}
    for service in services:
        for ip in service.ips:
            by_ip.setdefault(ip, []).append(service)
    if ranker is not None:
        ranker.set_nodes(nodes)
        ranker.forget_except(by_ip.keys())
    by_pool: dict[str, tuple[bool, frozenset[str]]] = {}
    return {
        ip: elect_ip(ip, users, config, nodes, live, endpoints, ranker=ranker, by_pool=by_pool)
        for ip, users in by_ip.items()
    }
