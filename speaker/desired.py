"""What this node announces: the IPs it won, each on the interfaces its L2Advertisements select here, and
the problems worth an Event (an interface an advertisement names that this node lacks, an IP with nowhere to
go)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from common.pools import Config, IPAddress, L2Advertisement
from speaker.election import IPElection, advertisements_for, selects_node
from speaker.interfaces import DEFAULT_PATTERNS, Interface, Selection, select_interfaces
from speaker.model import NodeFacts


@dataclass(frozen=True)
class Announcement:
    ip: IPAddress
    interfaces: tuple[str, ...]
    services: tuple[str, ...]


@dataclass(frozen=True)
class Problem:
    """Something to report as a Warning Event on an object (and a log line)."""

    kind: str  # "Service" or "L2Advertisement"
    namespace: str
    name: str
    reason: str
    message: str


@dataclass(frozen=True)
class NodePlan:
    announcements: Mapping[IPAddress, Announcement]
    problems: tuple[Problem, ...] = ()


def _object_of(advertisement: L2Advertisement) -> tuple[str, str]:
    """(namespace, name) of an L2Advertisement from its source, "L2Advertisement ns/name"."""
    _, _, where = advertisement.source.partition(" ")
    namespace, _, name = where.partition("/")
    return namespace, name or advertisement.name


def _named(advertisements: Sequence[L2Advertisement]) -> set[str] | None:
    """The interfaces these advertisements name together; None when one names none (every interface)."""
    named: set[str] = set()
    for advertisement in advertisements:
        if not advertisement.interfaces:
            return None
        named.update(advertisement.interfaces)
    return named


def _interface_problems(
    me: str, selection: Selection, advertisements: Sequence[L2Advertisement]
) -> set[Problem]:
    problems: set[Problem] = set()
    for advertisement in advertisements:
        namespace, name = _object_of(advertisement)
        for missing in sorted(set(advertisement.interfaces) & set(selection.missing)):
            problems.add(
                Problem(
                    "L2Advertisement",
                    namespace,
                    name,
                    "InterfaceNotFound",
                    f"spec.interfaces: interface {missing!r} does not exist on node {me!r}",
                )
            )
        for unusable, why in selection.unusable:
            if unusable in advertisement.interfaces:
                problems.add(
                    Problem(
                        "L2Advertisement",
                        namespace,
                        name,
                        "InterfaceUnusable",
                        f"spec.interfaces: interface {unusable!r} on node {me!r} {why}",
                    )
                )
    return problems


def node_plan(
    me: str,
    elections: Mapping[IPAddress, IPElection],
    config: Config,
    nodes: Mapping[str, NodeFacts],
    interfaces: Sequence[Interface],
    excluded: Sequence[re.Pattern[str]] = DEFAULT_PATTERNS,
) -> NodePlan:
    node = nodes.get(me)
    announcements: dict[IPAddress, Announcement] = {}
    problems: set[Problem] = set()
    if node is None:
        return NodePlan({})
    # Per pool and per IP family, the interfaces are the same for every IP: work them out once.
    per_pool: dict[tuple[str, int], tuple[Selection, list[L2Advertisement]]] = {}
    for ip, election in sorted(elections.items(), key=lambda item: (item[0].version, int(item[0]))):
        if election.owner != me or election.pool is None:
            continue
        cached = per_pool.get((election.pool, ip.version))
        if cached is None:
            pool = config.pool(election.pool)
            if pool is None:
                continue
            mine = [a for a in advertisements_for(pool, config.l2_advertisements) if selects_node(a, node)]
            cached = per_pool[(election.pool, ip.version)] = (
                select_interfaces(interfaces, ip.version, _named(mine), excluded),
                mine,
            )
            problems.update(_interface_problems(me, *cached))
        selection = cached[0]
        if not selection.interfaces:
            for key in election.services:
                namespace, _, name = key.partition("/")
                problems.add(
                    Problem(
                        "Service",
                        namespace,
                        name,
                        "announceFailed",
                        f"node {me!r} won {ip} but has no usable interface to announce it on",
                    )
                )
            continue
        announcements[ip] = Announcement(ip, selection.interfaces, election.services)
    return NodePlan(
        announcements, tuple(sorted(problems, key=lambda p: (p.kind, p.namespace, p.name, p.message)))
    )
