"""This node's announcements: which IPs on which interfaces, and the problems it reports."""

from __future__ import annotations

import ipaddress

from speaker.desired import Announcement, Problem, node_plan
from speaker.election import elect_all
from speaker.interfaces import DEFAULT_PATTERNS, Interface, compile_patterns, select_interfaces
from tests.unit.speaker.helpers import THREE, config, configmap, ip_pool, l2adv, node, nodes, serving, svc

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address

# A lab node: loopback, management, the segment, the pod bridge and a pod's veth on it.
LAB = [
    Interface("lo", 1, "00:00:00:00:00:00", broadcast=False),
    Interface("eth0", 2, "02:00:00:00:00:02", link_local="fe80::2"),
    Interface("eth1", 3, "02:00:00:00:00:03", link_local="fe80::3"),
    Interface("cbr0", 4, "02:00:00:00:00:04", link_local="fe80::4"),
    Interface("ilbt1-0a1b2c3d", 5, "02:00:00:00:00:05", enslaved=True, link_local="fe80::5"),
    Interface("veth9", 6, "02:00:00:00:00:06"),
    Interface("bond0", 7, "02:00:00:00:00:07"),  # no link-local: IPv4 only
    Interface("eth2", 8, "02:00:00:00:00:08", up=False, link_local="fe80::8"),
]


def test_default_selection_skips_virtual_enslaved_and_down_interfaces() -> None:
    assert select_interfaces(LAB, 4, None).interfaces == ("bond0", "eth0", "eth1")
    assert select_interfaces(LAB, 6, None).interfaces == ("eth0", "eth1")
    extra = (*DEFAULT_PATTERNS, *compile_patterns([r"^eth0$"]))
    assert select_interfaces(LAB, 4, None, extra).interfaces == ("bond0", "eth1")


def test_named_interfaces_override_the_patterns_and_report_the_rest() -> None:
    selection = select_interfaces(LAB, 6, ["cbr0", "eth9", "eth2", "bond0", "ilbt1-0a1b2c3d"])
    assert selection.interfaces == ("cbr0",)
    assert selection.missing == ("eth9",)
    assert dict(selection.unusable) == {
        "eth2": "is down",
        "bond0": "has no IPv6 link-local address (needed for NDP)",
        "ilbt1-0a1b2c3d": "is a port of a bridge or bond (announce on its master)",
    }


CLUSTER = nodes(*(node(n, {"rack": "a" if n != "node1" else "b"}) for n in THREE))
LIVE = frozenset(THREE)


def plan(me: str, cfg, services, endpoints=None, interfaces=LAB):
    endpoints = endpoints or {s.key: serving(*THREE, v6=THREE) for s in services}
    elections = elect_all(services, cfg, CLUSTER, LIVE, endpoints)
    return node_plan(me, elections, cfg, CLUSTER, interfaces)


def test_the_owner_announces_on_the_default_interfaces_and_nobody_else_does() -> None:
    services = [svc("default/web", "192.168.10.90", "fd00:10::90"), svc("default/dns", "192.168.10.90")]
    cfg = config(configmap())
    node3 = plan("node3", cfg, services)
    assert node3.announcements == {
        V4("192.168.10.90"): Announcement(V4("192.168.10.90"), ("bond0", "eth0", "eth1"),
                                          ("default/dns", "default/web")),
    }  # fmt: skip
    node2 = plan("node2", cfg, services)
    assert node2.announcements == {
        V6("fd00:10::90"): Announcement(V6("fd00:10::90"), ("eth0", "eth1"), ("default/web",)),
    }
    assert plan("node1", cfg, services).announcements == {}
    assert not node3.problems and not node2.problems


def test_advertisement_interfaces_union_and_unknown_ones_reported() -> None:
    pool = ip_pool("lab", "192.168.10.80-192.168.10.99")
    a = l2adv("a", interfaces=["eth1", "eth7"])
    b = l2adv("b", interfaces=["cbr0"], nodeSelectors=[{"matchLabels": {"rack": "a"}}])
    services = [svc("default/web", "192.168.10.90")]
    result = plan("node3", config(pools=[pool], advertisements=[a, b]), services)
    assert result.announcements[V4("192.168.10.90")].interfaces == ("cbr0", "eth1")
    assert result.problems == (
        Problem("L2Advertisement", "metallb-system", "a", "InterfaceNotFound",
                "spec.interfaces: interface 'eth7' does not exist on node 'node3'"),
    )  # fmt: skip
    # An advertisement without a list means every interface, whatever the others name.
    c = l2adv("c")
    result = plan("node3", config(pools=[pool], advertisements=[a, c]), services)
    assert result.announcements[V4("192.168.10.90")].interfaces == ("bond0", "eth0", "eth1")


def test_owner_without_a_usable_interface_reports_on_the_service() -> None:
    pool = ip_pool("lab", "192.168.10.80-192.168.10.99")
    only_missing = l2adv("a", interfaces=["eth7"])
    result = plan(
        "node3", config(pools=[pool], advertisements=[only_missing]), [svc("shop/web", "192.168.10.90")]
    )
    assert result.announcements == {}
    assert [(p.kind, p.namespace, p.name, p.reason) for p in result.problems] == [
        ("L2Advertisement", "metallb-system", "a", "InterfaceNotFound"),
        ("Service", "shop", "web", "announceFailed"),
    ]
    # An interface removed later: the same plan, computed again, says so; nothing else changes.
    gone = [i for i in LAB if i.name != "eth1"]
    result = plan("node3", config(configmap()), [svc("shop/web", "192.168.10.90")], interfaces=gone)
    assert result.announcements[V4("192.168.10.90")].interfaces == ("bond0", "eth0")


def test_unknown_node_announces_nothing() -> None:
    services = [svc("default/web", "192.168.10.90")]
    assert plan("node9", config(configmap()), services).announcements == {}
