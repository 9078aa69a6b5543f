"""The election: MetalLB's ordering, every rule that removes a candidate, and its invariants as properties."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speaker.election import Ranker, elect, elect_all, elect_ip, ranking
from speaker.model import EXCLUDE_LABEL, ServiceFacts
from tests.unit.speaker.helpers import (
    THREE,
    config,
    configmap,
    ip_pool,
    l2adv,
    node,
    nodes,
    serving,
    svc,
)

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
CLUSTER = nodes(*(node(n) for n in THREE))
TUTORIAL = config(configmap())
LIVE = frozenset(THREE)
TWO = (node("node1"), node("node2"))


def test_metallb_order() -> None:
    # Orders computed independently: printf 'node#ip' | sha256sum.
    assert ranking(V4("192.168.10.90"), THREE) == ["node3", "node2", "node1"]
    assert ranking(V6("fd00:10::90"), THREE) == ["node2", "node3", "node1"]
    assert elect(V4("192.168.10.90"), ["node1", "node2"]) == "node2"
    assert elect(V4("192.168.10.90"), []) is None


def case(**overrides: Any) -> Any:
    """The election of 192.168.10.90 for one Service, with any input overridden."""
    inputs: dict[str, Any] = {
        "services": [svc("default/web", "192.168.10.90")],
        "config": config(configmap()),
        "nodes": CLUSTER,
        "live": LIVE,
        "endpoints": {"default/web": serving("node1")},
    }
    inputs.update(overrides)
    ip = V4("192.168.10.90")
    return elect_ip(
        ip, inputs["services"], inputs["config"], inputs["nodes"], inputs["live"], inputs["endpoints"]
    )


@pytest.mark.parametrize(
    ("overrides", "owner", "reason"),
    [
        ({}, "node3", ""),
        ({"live": frozenset({"node1", "node2"})}, "node2", ""),
        # A node whose speaker is live but whose Node object is unknown cannot be checked: not a candidate.
        ({"nodes": nodes(node("node1"), node("node2"))}, "node2", ""),
        ({"nodes": nodes(*TWO, node("node3", network_unavailable=True))}, "node2", ""),
        ({"nodes": nodes(*TWO, node("node3", {EXCLUDE_LABEL: ""}))}, "node2", ""),
        ({"live": frozenset()}, None, "no eligible node with a live speaker"),
        ({"endpoints": {}}, None, "no serving endpoint"),
        # externalTrafficPolicy Local: only nodes with a serving endpoint.
        ({"services": [svc("default/web", "192.168.10.90", local=True)]}, "node1", ""),
        (
            {"services": [svc("default/web", "192.168.10.90", local=True)],
             "endpoints": {"default/web": serving("node1", "node2")}},
            "node2", "",
        ),
        (
            {"services": [svc("default/web", "192.168.10.90", local=True)],
             "endpoints": {"default/web": serving(v6=["node3"])}},
            None, "no eligible node with a live speaker",
        ),
        (
            {"services": [svc("default/web", "192.168.10.90", local=True)],
             "live": frozenset({"node2", "node3"})},
            None, "no eligible node with a live speaker",
        ),
        ({"config": config(configmap("address-pools: []"))}, None, "the IP is in no address pool"),
    ],
)  # fmt: skip
def test_candidates(overrides: dict[str, Any], owner: str | None, reason: str) -> None:
    result = case(**overrides)
    assert (result.owner, result.reason) == (owner, reason)


def test_crd_pool_needs_an_l2advertisement_and_its_node_selectors() -> None:
    pool = ip_pool("lab", "192.168.10.80-192.168.10.99", labels={"tier": "edge"})
    assert case(config=config(pools=[pool])).reason == 'no L2Advertisement selects pool "lab"'
    everything = config(pools=[pool], advertisements=[l2adv("all")])
    assert case(config=everything).owner == "node3"
    only_12 = l2adv(
        "12",
        nodeSelectors=[
            {
                "matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node1", "node2"]}
                ]
            }
        ],
    )
    assert case(config=config(pools=[pool], advertisements=[only_12])).owner == "node2"
    other_pool = l2adv("other", ipAddressPools=["elsewhere"])
    assert case(config=config(pools=[pool], advertisements=[other_pool])).owner is None
    by_label = l2adv(
        "edge",
        ipAddressPoolSelectors=[{"matchLabels": {"tier": "edge"}}],
        nodeSelectors=[{"matchLabels": {"kubernetes.io/hostname": "node1"}}],
    )
    assert case(config=config(pools=[pool], advertisements=[by_label, other_pool])).owner == "node1"
    # Two advertisements for the pool: a node selected by either is a candidate.
    assert case(config=config(pools=[pool], advertisements=[by_label, only_12])).owner == "node2"


def test_configmap_pool_is_announced_everywhere_without_an_l2advertisement() -> None:
    result = case()
    assert (result.pool, result.services) == ("default", ("default/web",))


def test_shared_ip_lands_on_one_node_with_every_service() -> None:
    services = [svc("b/web", "192.168.10.90"), svc("a/dns", "192.168.10.90", "fd00:10::90")]
    endpoints = {"b/web": serving("node1"), "a/dns": serving("node1", v6=["node1"])}
    result = elect_all(services, config(configmap()), CLUSTER, LIVE, endpoints)
    assert result[V4("192.168.10.90")].owner == "node3"
    assert result[V4("192.168.10.90")].services == ("a/dns", "b/web")
    # Keyed by IP: the dual-stack Service's IPv6 address has its own order (node2 first).
    assert result[V6("fd00:10::90")].owner == "node2"


def test_shared_ip_with_one_service_idle() -> None:
    # The idle Service asks for nothing; the other still gets the IP announced.
    services = [svc("a/web", "192.168.10.90"), svc("a/idle", "192.168.10.90", local=True)]
    result = elect_all(services, config(configmap()), CLUSTER, LIVE, {"a/web": serving("node1")})
    assert result[V4("192.168.10.90")].owner == "node3"


def test_shared_local_services_that_disagree_prefer_a_node_serving_both() -> None:
    services = [svc("a/one", "192.168.10.90", local=True), svc("a/two", "192.168.10.90", local=True)]
    endpoints = {"a/one": serving("node1", "node2"), "a/two": serving("node2", "node3")}
    assert (
        elect_all(services, config(configmap()), CLUSTER, LIVE, endpoints)[V4("192.168.10.90")].owner
        == "node2"
    )
    disjoint = {"a/one": serving("node1"), "a/two": serving("node3")}
    owner = elect_all(services, config(configmap()), CLUSTER, LIVE, disjoint)[V4("192.168.10.90")].owner
    assert owner in ("node1", "node3")


# --- properties --------------------------------------------------------------------------------------------

names = st.lists(
    st.text("abcdefgh0123456789-", min_size=1, max_size=10).map(lambda s: "n" + s),
    min_size=1,
    max_size=12,
    unique=True,
)
v4 = st.integers(min_value=int(V4("192.168.10.90")), max_value=int(V4("192.168.10.100"))).map(V4)


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[str], frozenset[str], list[ServiceFacts], dict[str, Any]]:
    all_nodes = draw(names)
    live = frozenset(draw(st.sets(st.sampled_from(all_nodes))))
    services = []
    endpoints: dict[str, Any] = {}
    for index in range(draw(st.integers(1, 6))):
        key = f"ns/s{index}"
        ips = draw(st.lists(v4, min_size=1, max_size=2, unique=True))
        services.append(ServiceFacts(key, tuple(ips), draw(st.booleans())))
        endpoints[key] = serving(*draw(st.sets(st.sampled_from(all_nodes), min_size=1)))
    return all_nodes, live, services, endpoints


@settings(max_examples=100, deadline=None)
@given(clusters(), st.randoms(use_true_random=False))
def test_every_speaker_computes_the_same_owner(cluster: Any, rng: random.Random) -> None:
    """Speakers see the same objects in different orders (informer caches, sets): same result."""
    all_nodes, live, services, endpoints = cluster
    cfg = TUTORIAL
    reference = elect_all(services, cfg, nodes(*(node(n) for n in all_nodes)), live, endpoints)
    for _ in range(3):
        shuffled_nodes = list(all_nodes)
        rng.shuffle(shuffled_nodes)
        shuffled_services = list(services)
        rng.shuffle(shuffled_services)
        other = elect_all(
            shuffled_services, cfg, nodes(*(node(n) for n in shuffled_nodes)), set(live), endpoints
        )
        assert other == reference
    for ip, result in reference.items():
        users = [s for s in services if ip in s.ips]
        assert result.services == tuple(sorted(s.key for s in users))
        if result.owner is not None:
            assert result.owner in live
            for user in users:
                if user.local:
                    assert result.owner in endpoints[user.key].nodes(4) or len(users) > 1


@settings(max_examples=100, deadline=None)
@given(clusters(), st.data())
def test_removing_a_non_owner_never_moves_an_ip(cluster: Any, data: st.DataObject) -> None:
    all_nodes, live, services, _ = cluster
    cfg = TUTORIAL
    cluster_nodes = nodes(*(node(n) for n in all_nodes))
    everywhere = {s.key: serving(*all_nodes) for s in services}  # policy Local never narrows the choice here
    before = elect_all(services, cfg, cluster_nodes, live, everywhere)
    owners = {r.owner for r in before.values()}
    bystanders = sorted(live - owners)
    if not bystanders:
        return
    gone = data.draw(st.sampled_from(bystanders))
    after = elect_all(services, cfg, cluster_nodes, live - {gone}, everywhere)
    assert {ip: r.owner for ip, r in after.items()} == {ip: r.owner for ip, r in before.items()}
    # And a node that comes (back) takes only IPs it wins outright: every other IP keeps its owner.
    again = elect_all(services, cfg, cluster_nodes, live, everywhere)
    assert again == before


@settings(max_examples=100, deadline=None)
@given(names, st.lists(v4, min_size=1, max_size=8, unique=True), st.data())
def test_a_joining_node_only_takes_ips(all_nodes: list[str], ips: list[V4], data: st.DataObject) -> None:
    newcomer = "new-" + data.draw(st.text("xyz", min_size=1, max_size=5))
    for ip in ips:
        before = elect(ip, all_nodes)
        after = elect(ip, [*all_nodes, newcomer])
        assert after in (before, newcomer)


@settings(max_examples=100, deadline=None)
@given(clusters(), st.data())
def test_the_cached_ranking_elects_what_the_plain_election_does(cluster: Any, data: st.DataObject) -> None:
    """The daemon keeps a Ranker between syncs: through live sets and node sets changing, same owners."""
    all_nodes, _, services, endpoints = cluster
    ranker = Ranker(top=2)  # small, so the fall-back past the cached top is exercised too
    for _ in range(4):
        known = data.draw(st.sets(st.sampled_from(all_nodes), min_size=1))
        now_live = frozenset(data.draw(st.sets(st.sampled_from(all_nodes))))
        cluster_nodes = nodes(*(node(n) for n in known))
        cached = elect_all(services, TUTORIAL, cluster_nodes, now_live, endpoints, ranker)
        assert cached == elect_all(services, TUTORIAL, cluster_nodes, now_live, endpoints)
