"""The shell's pure decisions (controller/reconcile.py): which writes and events one reconciliation needs, and
which object a config problem is blamed on. No API server."""

from __future__ import annotations

import ipaddress
from typing import Any

from common.config import rebuild_config
from common.pools import Config
from controller.allocator import Allocator, PoolStats
from controller.reconcile import UNCHANGED, format_ips, pool_status, reconcile_service, restore_assignments

CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "config", "namespace": "metallb-system"},
    "data": {"config": "address-pools: [{name: default, protocol: layer2, addresses: [10.0.0.1-10.0.0.2]}]"},
}


def config() -> Config:
    return rebuild_config(CONFIGMAP, [], [])


def svc(
    name: str = "web",
    type_: str = "LoadBalancer",
    ingress: list[str] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "ns", "annotations": annotations or {}},
        "spec": {"type": type_, "ports": [{"port": 80, "protocol": "TCP"}], **spec},
    }
    if ingress:
        body["status"] = {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"} for ip in ingress]}}
    return body


def test_new_service_gets_status_annotation_and_event() -> None:
    allocator = Allocator(config())
    outcome = reconcile_service("ns/web", svc(), {}, allocator, None)
    assert outcome.ingress == [{"ip": "10.0.0.1", "ipMode": "VIP"}]
    assert outcome.pool_annotation == "default"
    assert [(e.type, e.reason, e.message) for e in outcome.events] == [
        ("Normal", "IPAllocated", 'Assigned IP ["10.0.0.1"]')
    ]
    assert not outcome.pending


def test_service_already_showing_its_ip_needs_no_write() -> None:
    allocator = Allocator(config())
    body = svc(ingress=["10.0.0.1"], annotations={"metallb.io/ip-allocated-from-pool": "default"})
    outcome = reconcile_service("ns/web", body, {}, allocator, None)
    assert outcome.ingress is None and outcome.pool_annotation is UNCHANGED and outcome.events == []


def test_exhausted_pool_is_pending_with_a_warning() -> None:
    allocator = Allocator(config())
    reconcile_service("ns/a", svc("a"), {}, allocator, None)
    reconcile_service("ns/b", svc("b"), {}, allocator, None)
    outcome = reconcile_service("ns/c", svc("c"), {}, allocator, None)
    assert outcome.pending and outcome.ingress is None
    [event] = outcome.events
    assert (event.type, event.reason) == ("Warning", "AllocationFailed")
    assert event.message.startswith('Failed to allocate IP for "ns/c": no available IPs')


def test_malformed_annotation_names_it_and_keeps_the_current_ip() -> None:
    allocator = Allocator(config())
    reconcile_service("ns/web", svc(), {}, allocator, None)
    body = svc(ingress=["10.0.0.1"], annotations={"metallb.io/loadBalancerIPs": "nope"})
    outcome = reconcile_service("ns/web", body, {}, allocator, None)
    assert outcome.pending and outcome.ingress is None
    assert "metallb.io/loadBalancerIPs" in outcome.events[0].message
    assert allocator.assignment("ns/web") is not None


def test_unsatisfiable_change_clears_the_status() -> None:
    allocator = Allocator(config())
    reconcile_service("ns/web", svc(), {}, allocator, None)
    body = svc(ingress=["10.0.0.1"], loadBalancerIP="10.9.9.9")
    outcome = reconcile_service("ns/web", body, {}, allocator, None)
    assert outcome.pending and outcome.released and outcome.ingress == []
    assert {e.reason for e in outcome.events} == {"AllocationFailed", "ClearAssignment"}


def test_delete_releases() -> None:
    allocator = Allocator(config())
    reconcile_service("ns/web", svc(), {}, allocator, None)
    outcome = reconcile_service("ns/web", None, {}, allocator, None)
    assert outcome.released and allocator.assignment("ns/web") is None


def test_type_change_clears_status_and_annotation() -> None:
    allocator = Allocator(config())
    reconcile_service("ns/web", svc(), {}, allocator, None)
    annotations = {"metallb.io/ip-allocated-from-pool": "default"}
    body = svc(type_="ClusterIP", ingress=["10.0.0.1"], annotations=annotations)
    outcome = reconcile_service("ns/web", body, {}, allocator, None)
    assert outcome.released and outcome.ingress == [] and outcome.pool_annotation is None
    assert [e.reason for e in outcome.events] == ["ClearAssignment"]


def test_other_class_is_left_alone_unless_it_shows_our_ip() -> None:
    allocator = Allocator(config())
    foreign = svc(ingress=["192.0.2.1"], loadBalancerClass="other")
    outcome = reconcile_service("ns/web", foreign, {}, allocator, None)
    assert outcome.ingress is None and outcome.events == [] and allocator.assignment("ns/web") is None
    reconcile_service("ns/mine", svc("mine"), {}, allocator, None)
    now_foreign = svc("mine", ingress=["10.0.0.1"], loadBalancerClass="other")
    outcome = reconcile_service("ns/mine", now_foreign, {}, allocator, None)
    assert outcome.released and outcome.ingress == []


def test_withdrawn_service_is_told_and_reassigned() -> None:
    allocator = Allocator(config())
    withdrawn = (ipaddress.ip_address("10.0.0.9"),)
    body = svc(ingress=["10.0.0.9"])
    outcome = reconcile_service("ns/web", body, {}, allocator, None, withdrawn)
    assert [e.reason for e in outcome.events] == ["ClearAssignment", "IPAllocated"]
    assert "not allowed by config" in outcome.events[0].message
    assert outcome.ingress == [{"ip": "10.0.0.1", "ipMode": "VIP"}]


def test_format_ips_matches_metallb() -> None:
    ips = [ipaddress.ip_address("192.168.10.90"), ipaddress.ip_address("fc00::1")]
    assert format_ips(ips) == '["192.168.10.90" "fc00::1"]'


def test_pool_status_caps_huge_ipv6_pools() -> None:
    stats = PoolStats(total=2**64 + 4, in_use=1, ipv4_total=4, ipv4_in_use=1, ipv6_total=2**64, ipv6_in_use=0)
    assert pool_status(stats) == {
        "assignedIPv4": 1,
        "assignedIPv6": 0,
        "availableIPv4": 3,
        "availableIPv6": 2**63 - 1,
    }


def test_wrong_family_request_clears_the_ip_like_metallb() -> None:
    allocator = Allocator(config())
    reconcile_service("ns/web", svc(), {}, allocator, None)
    body = svc(ingress=["10.0.0.1"], annotations={"metallb.io/loadBalancerIPs": "2001:db8:2::e"})
    outcome = reconcile_service("ns/web", body, {}, allocator, None)
    assert outcome.pending and outcome.released and outcome.ingress == []
    assert allocator.assignment("ns/web") is None
    failed = [e for e in outcome.events if e.reason == "AllocationFailed"]
    assert failed and "does not match the Service's IP families IPv4" in failed[0].message
    assert "ClearAssignment" in {e.reason for e in outcome.events}


def test_malformed_request_never_leaves_status_showing_an_ip_it_does_not_hold() -> None:
    allocator = Allocator(config())
    reconcile_service("ns/other", svc("other"), {}, allocator, None)  # holds 10.0.0.1
    body = svc(ingress=["10.0.0.1"], annotations={"metallb.io/loadBalancerIPs": "nope"})
    outcome = reconcile_service("ns/web", body, {}, allocator, None)
    assert outcome.pending and outcome.ingress == []
    assert [e.reason for e in outcome.events] == ["AllocationFailed", "ClearAssignment"]


def test_restore_holds_status_ips_whatever_the_request_says() -> None:
    """Issue 7, case 1: an invalid request at start-up must not free the IP its status shows."""
    allocator = Allocator(config())
    held = svc("a", ingress=["10.0.0.1"], annotations={"metallb.io/loadBalancerIPs": "not-an-ip"})
    wants_other = svc("b", ingress=["10.0.0.2"], loadBalancerIP="10.0.0.9")  # valid, but not what it shows
    fresh = svc("c")
    report = restore_assignments(allocator, [held, wants_other, fresh], {}, None)
    assert [(r.key, r.held, r.exact) for r in report] == [("ns/a", True, False), ("ns/b", True, False)]
    assert allocator.assignment("ns/a").ips == (ipaddress.ip_address("10.0.0.1"),)  # type: ignore[union-attr]
    # A new Service gets neither IP: the pool is full.
    outcome = reconcile_service("ns/c", fresh, {}, allocator, None)
    assert outcome.pending and outcome.ingress is None
    # The invalid one keeps its IP and says why it is pending.
    outcome = reconcile_service("ns/a", held, {}, allocator, None)
    assert outcome.pending and outcome.ingress is None and outcome.events[0].reason == "AllocationFailed"
    # The one whose valid request differs is moved (here cleared: 10.0.0.9 is in no pool); its IP is freed.
    outcome = reconcile_service("ns/b", wants_other, {}, allocator, None)
    assert outcome.ingress == [] and outcome.released


def test_restore_keeps_the_older_of_two_services_showing_one_ip() -> None:
    allocator = Allocator(config())
    older = svc("older", ingress=["10.0.0.1"])
    older["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    newer = svc("newer", ingress=["10.0.0.1"])
    newer["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    report = restore_assignments(allocator, [newer, older], {}, None)
    assert [(r.key, r.held) for r in report] == [("ns/older", True), ("ns/newer", False)]
    outcome = reconcile_service("ns/newer", newer, {}, allocator, None)
    assert outcome.ingress == [{"ip": "10.0.0.2", "ipMode": "VIP"}]


def test_restore_holds_what_it_can_of_a_pair_it_may_no_longer_share() -> None:
    """Found by the property test: two Services shared 10.0.0.1; while the controller was down the older one's
    sharing key changed (and its request became malformed). The newer one loses 10.0.0.1 at restart, but its
    IPv6 address must still be held until it is reconciled."""
    text = "address-pools: [{name: d, protocol: layer2, addresses: [10.0.0.1-10.0.0.2, 'fd00::1-fd00::2']}]"
    allocator = Allocator(rebuild_config({**CONFIGMAP, "data": {"config": text}}, [], []))
    older = svc("older", ingress=["10.0.0.1"], annotations={
        "metallb.io/loadBalancerIPs": "fd00::1%eth0", "metallb.io/allow-shared-ip": "k2",
    })  # fmt: skip
    older["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    newer = svc("newer", ingress=["10.0.0.1", "fd00::1"], ipFamilyPolicy="PreferDualStack",
                ipFamilies=["IPv4", "IPv6"], ports=[{"port": 8080}],
                annotations={"metallb.io/allow-shared-ip": "k1"})  # fmt: skip
    newer["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    report = restore_assignments(allocator, [older, newer], {}, None)
    assert [(r.key, [str(ip) for ip in r.ips], r.held) for r in report] == [
        ("ns/older", ["10.0.0.1"], True),
        ("ns/newer", ["fd00::1"], True),
    ]
    assert allocator.holders(ipaddress.ip_address("fd00::1")) == {"ns/newer"}
