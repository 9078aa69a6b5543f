"""One Service moving between states, decided by reconcile_service: which writes and events follow, and
whether an IP went back to its pool (which is what makes the shell retry pending Services)."""

from __future__ import annotations

import ipaddress

from controller.allocator import Allocator, Assignment
from controller.reconcile import UNCHANGED, Outcome, reconcile_service
from tests.unit.controller.helpers import config, ip, pool
from tests.unit.controller.helpers import lb_service as svc

KEY = "ns/web"


def allocator_holding() -> Allocator:
    """Pools a and b; ns/web holds 10.0.0.0 from a."""
    allocator = Allocator(config(pool("a", "10.0.0.0/30"), pool("b", "10.1.0.0/30")))
    outcome = reconcile_service(KEY, svc(), {}, allocator, None)
    assert outcome.assignment == Assignment(KEY, (ip("10.0.0.0"),), "a")
    return allocator


def events(outcome: Outcome) -> list[tuple[str, str]]:
    return [(event.reason, event.message) for event in outcome.events]


# ---- leaving for another loadBalancerClass ------------------------------------------------------------


def test_class_change_with_the_other_controllers_ip_in_status_leaves_the_status_alone() -> None:
    allocator = allocator_holding()
    # The other class's controller was quicker and already wrote its own IP.
    moved = svc(ingress=["192.0.2.7"], loadBalancerClass="example.com/other")
    outcome = reconcile_service(KEY, moved, {}, allocator, None)
    assert outcome.ingress is None, "the other controller's IP must stay"
    assert outcome.events == []
    assert outcome.released and allocator.assignment(KEY) is None


def test_class_change_with_our_ip_still_in_status_clears_it() -> None:
    allocator = allocator_holding()
    moved = svc(ingress=["10.0.0.0"], loadBalancerClass="example.com/other")
    outcome = reconcile_service(KEY, moved, {}, allocator, None)
    assert outcome.ingress == []
    assert events(outcome) == [
        (
            "ClearAssignment",
            'clearing assignment ["10.0.0.0"]: service has loadBalancerClass example.com/other, not ours',
        )
    ]
    assert outcome.released


def test_class_change_of_a_service_we_never_served_touches_nothing() -> None:
    allocator = allocator_holding()
    foreign = svc(ingress=["10.0.0.1"], name="foreign", loadBalancerClass="example.com/other")
    outcome = reconcile_service("ns/foreign", foreign, {}, allocator, None)
    assert outcome.ingress is None and outcome.events == [] and not outcome.released
    assert allocator.assignment(KEY) is not None


# ---- IPs going back to the pool -------------------------------------------------------------------------


def test_moving_to_another_pool_releases_the_old_ip_for_pending_services() -> None:
    allocator = allocator_holding()
    outcome = reconcile_service(
        KEY, svc(ingress=["10.0.0.0"], annotations={"metallb.io/address-pool": "b"}), {}, allocator, None
    )
    assert outcome.assignment == Assignment(KEY, (ip("10.1.0.0"),), "b")
    assert outcome.released, "the shell retries pending Services only when told an IP came free"
    # The IP it left is the one the next Service gets.
    waiting_svc = svc(name="waiting", annotations={"metallb.io/address-pool": "a"})
    waiting = reconcile_service("ns/waiting", waiting_svc, {}, allocator, None)
    assert waiting.assignment == Assignment("ns/waiting", (ip("10.0.0.0"),), "a")


def test_keeping_the_same_ip_releases_nothing() -> None:
    allocator = allocator_holding()
    outcome = reconcile_service(KEY, svc(ingress=["10.0.0.0"], ports=[{"port": 443}]), {}, allocator, None)
    assert not outcome.released and outcome.ingress is None and outcome.events == []


def test_a_failed_reassignment_releases_and_clears() -> None:
    allocator = allocator_holding()
    outcome = reconcile_service(
        KEY, svc(ingress=["10.0.0.0"], annotations={"metallb.io/address-pool": "gone"}), {}, allocator, None
    )
    assert outcome.pending and outcome.released and outcome.ingress == []
    assert [reason for reason, _ in events(outcome)] == ["AllocationFailed", "ClearAssignment"]


def test_a_pending_service_releases_nothing_when_it_fails_again() -> None:
    allocator = Allocator(config(pool("a", "10.0.0.0/32")))
    reconcile_service("ns/holder", svc(name="holder"), {}, allocator, None)
    first = reconcile_service(KEY, svc(), {}, allocator, None)
    again = reconcile_service(KEY, svc(), {}, allocator, None)
    assert first.pending and again.pending
    assert not first.released and not again.released, "a release would retry every pending Service again"


def test_type_change_releases_and_clears_what_it_held() -> None:
    allocator = allocator_holding()
    outcome = reconcile_service(KEY, svc(ingress=["10.0.0.0"], type_="ClusterIP"), {}, allocator, None)
    assert outcome.released and outcome.ingress == []
    assert events(outcome) == [
        ("ClearAssignment", 'clearing assignment ["10.0.0.0"]: service type is ClusterIP, not LoadBalancer')
    ]


# ---- withdrawn by a config change -----------------------------------------------------------------------


def test_exactly_one_clear_assignment_after_a_withdrawal_with_no_ip_left() -> None:
    allocator = Allocator(config(pool("a", "10.0.0.0/32")))
    reconcile_service("ns/holder", svc(name="holder"), {}, allocator, None)
    withdrawn = (ipaddress.ip_address("10.9.0.1"),)
    outcome = reconcile_service(KEY, svc(ingress=["10.9.0.1"]), {}, allocator, None, withdrawn)
    assert events(outcome) == [
        ("ClearAssignment", 'current IP ["10.9.0.1"] not allowed by config, clearing'),
        ("AllocationFailed", 'Failed to allocate IP for "ns/web": no available IPs in pool "a"'),
    ]
    assert outcome.ingress == [] and outcome.pending and outcome.released


def test_withdrawal_then_a_new_ip() -> None:
    allocator = Allocator(config(pool("a", "10.0.0.0/32")))
    withdrawn = (ipaddress.ip_address("10.9.0.1"),)
    outcome = reconcile_service(KEY, svc(ingress=["10.9.0.1"]), {}, allocator, None, withdrawn)
    assert events(outcome) == [
        ("ClearAssignment", 'current IP ["10.9.0.1"] not allowed by config, clearing'),
        ("IPAllocated", 'Assigned IP ["10.0.0.0"]'),
    ]
    assert outcome.ingress == [{"ip": "10.0.0.0", "ipMode": "VIP"}]


# ---- issue 9: decisions a mutation run showed untested ---------------------------------------------------


def test_a_family_mismatch_after_a_withdrawal_is_cleared_once() -> None:
    """The config change already announced the clearing (ClearAssignment with the withdrawn IP): the failed
    request that follows must not announce it again."""
    allocator = allocator_holding()
    allocator.release(KEY)  # what set_config did: 10.0.0.0 is withdrawn
    mismatch = svc(ingress=["10.0.0.0"], annotations={"metallb.io/loadBalancerIPs": "fd00::1"})
    outcome = reconcile_service(KEY, mismatch, {}, allocator, None, withdrawn=[ip("10.0.0.0")])
    assert [reason for reason, _ in events(outcome)] == ["ClearAssignment", "AllocationFailed"]
    assert outcome.ingress == []


def test_a_malformed_request_keeps_the_pool_annotation_of_the_ip_it_holds() -> None:
    allocator = allocator_holding()
    body = svc(
        ingress=["10.0.0.3"],
        annotations={"metallb.io/loadBalancerIPs": "nope", "metallb.io/ip-allocated-from-pool": "a"},
    )
    outcome = reconcile_service(KEY, body, {}, allocator, None)
    assert outcome.ingress == [{"ip": "10.0.0.0", "ipMode": "VIP"}]  # back to what it holds
    assert outcome.pool_annotation is UNCHANGED


def test_a_controller_with_a_class_serves_only_that_class() -> None:
    allocator = Allocator(config(pool("a", "10.0.0.0/30")))
    outcome = reconcile_service(KEY, svc(), {}, allocator, "example.com/ours")
    assert outcome.assignment is None and outcome.events == [] and allocator.assignments() == {}
    ours = reconcile_service(
        KEY, svc(loadBalancerClass="example.com/ours"), {}, allocator, "example.com/ours"
    )
    assert ours.assignment == Assignment(KEY, (ip("10.0.0.0"),), "a")
