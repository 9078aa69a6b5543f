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
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
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


def elect_ip(
    ip: IPAddress,
    services: Iterable[ServiceFacts],
    config: Config,
    nodes: Mapping[str, NodeFacts],
    live: AbstractSet[str],
    endpoints: Mapping[str, ServingEndpoints],
) -> IPElection:
    services = sorted(services, key=lambda s: s.key)
    keys = tuple(s.key for s in services)
    pool = pool_of(config, ip)
    if pool is None:
        return IPElection(ip, keys, None, None, "the IP is in no address pool")
    advertisements = advertisements_for(pool, config.l2_advertisements)
    if not advertisements:
        return IPElection(ip, keys, pool.name, None, f'no L2Advertisement selects pool "{pool.name}"')
    candidates = {
        name
        for name in live
        if (node := nodes.get(name)) is not None
        and node.eligible
        and any(selects_node(advertisement, node) for advertisement in advertisements)
    }
    active = [s for s in services if endpoints.get(s.key, ServingEndpoints()).any_serving]
    if not active:
        return IPElection(ip, keys, pool.name, None, "no serving endpoint")
    local_sets = [endpoints[s.key].nodes(ip.version) for s in active if s.local]
    if local_sets:
        # Services sharing an IP under policy Local have the same selector (the controller enforces it), so
        # their endpoint nodes agree; while they disagree, any node serving one of them beats none.
        both = candidates.intersection(*local_sets)
        candidates = both or candidates.intersection(set().union(*local_sets))
    if not candidates:
        return IPElection(ip, keys, pool.name, None, "no eligible node with a live speaker")
    return IPElection(ip, keys, pool.name, elect(ip, candidates))


def elect_all(
    services: Iterable[ServiceFacts],
    config: Config,
    nodes: Mapping[str, NodeFacts],
    live: AbstractSet[str],
    endpoints: Mapping[str, ServingEndpoints],
) -> dict[IPAddress, IPElection]:
    """Every LoadBalancer IP's election, keyed by IP."""
    by_ip: dict[IPAddress, list[ServiceFacts]] = {}
    for service in services:
        for ip in service.ips:
            by_ip.setdefault(ip, []).append(service)
    return {ip: elect_ip(ip, users, config, nodes, live, endpoints) for ip, users in by_ip.items()}
