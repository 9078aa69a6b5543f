"""reconcile_service's whole answer for each kind of Service change: every write, event (type, reason, text),
flag and log action, compared at once, so that no part of an Outcome can drift unnoticed."""

from __future__ import annotations

import ipaddress

from controller.allocator import Allocator, Assignment, PoolStats
from controller.reconcile import UNCHANGED, Event, Outcome, pool_status, reconcile_service
from tests.unit.controller.helpers import config, ip, pool
from tests.unit.controller.helpers import lb_service as svc

KEY = "ns/web"
POOL_OUT = "metallb.io/ip-allocated-from-pool"


def vip(*ips: str) -> list[dict[str, str]]:
    return [{"ip": i, "ipMode": "VIP"} for i in ips]


def allocator() -> Allocator:
    return Allocator(config(pool("p", "10.0.0.0/31")))


def holding() -> tuple[Allocator, Assignment]:
    alloc = allocator()
    outcome = reconcile_service(KEY, svc(), {}, alloc, None)
    assert outcome.assignment is not None
    return alloc, outcome.assignment


HELD = Assignment(KEY, (ip("10.0.0.0"),), "p")
ASSIGNED = Event("Normal", "IPAllocated", 'Assigned IP ["10.0.0.0"]')


def test_a_new_service() -> None:
    assert reconcile_service(KEY, svc(), {}, allocator(), None) == Outcome(
        ingress=vip("10.0.0.0"), pool_annotation="p", events=[ASSIGNED], assignment=HELD, action="assigned"
    )


def test_a_service_already_right_needs_nothing() -> None:
    alloc, _ = holding()
    body = svc(ingress=["10.0.0.0"], annotations={POOL_OUT: "p"})
    assert reconcile_service(KEY, body, {}, alloc, None) == Outcome(assignment=HELD)


def test_the_pool_annotation_alone_is_written_when_missing() -> None:
    alloc, _ = holding()
    assert reconcile_service(KEY, svc(ingress=["10.0.0.0"]), {}, alloc, None) == Outcome(
        pool_annotation="p", assignment=HELD
    )


def test_deletion() -> None:
    alloc, _ = holding()
    assert reconcile_service(KEY, None, {}, alloc, None) == Outcome(released=True, action="released_deleted")
    assert alloc.assignment(KEY) is None
    assert reconcile_service(KEY, None, {}, alloc, None) == Outcome()


def test_type_change_with_our_ip_in_status() -> None:
    alloc, _ = holding()
    body = svc(ingress=["10.0.0.0"], annotations={POOL_OUT: "p"}, type_="ClusterIP")
    text = 'clearing assignment ["10.0.0.0"]: service type is ClusterIP, not LoadBalancer'
    clear = Event("Normal", "ClearAssignment", text)
    assert reconcile_service(KEY, body, {}, alloc, None) == Outcome(
        ingress=[], pool_annotation=None, events=[clear], released=True, action="cleared"
    )


def test_type_change_after_the_api_server_cleared_the_status() -> None:
    alloc, _ = holding()
    body = svc(annotations={POOL_OUT: "p"}, type_="NodePort")
    text = 'clearing assignment ["10.0.0.0"]: service type is NodePort, not LoadBalancer'
    clear = Event("Normal", "ClearAssignment", text)
    assert reconcile_service(KEY, body, {}, alloc, None) == Outcome(
        pool_annotation=None, events=[clear], released=True, action="cleared"
    )


def test_a_service_that_was_never_ours_is_left_alone() -> None:
    body = svc(ingress=["192.0.2.1"], annotations={POOL_OUT: "theirs"}, loadBalancerClass="other")
    assert reconcile_service(KEY, body, {}, allocator(), None) == Outcome()
    assert reconcile_service(KEY, svc(type_="ClusterIP"), {}, allocator(), None) == Outcome()


def test_a_malformed_request() -> None:
    body = svc(annotations={"metallb.io/loadBalancerIPs": "10.0.0.x"})
    failure = 'invalid metadata.annotations[metallb.io/loadBalancerIPs]: "10.0.0.x" is not an IP address'
    message = (
        'Failed to allocate IP for "ns/web": metadata.annotations[metallb.io/loadBalancerIPs]: '
        '"10.0.0.x" is not an IP address'
    )
    assert reconcile_service(KEY, body, {}, allocator(), None) == Outcome(
        events=[Event("Warning", "AllocationFailed", message)],
        pending=True,
        failure=failure,
        action="invalid_request",
    )


def test_a_malformed_request_keeps_the_ip_the_service_holds() -> None:
    alloc, _ = holding()
    body = svc(ingress=["10.0.0.0"], annotations={"metallb.io/loadBalancerIPs": "10.0.0.x", POOL_OUT: "p"})
    outcome = reconcile_service(KEY, body, {}, alloc, None)
    assert (outcome.ingress, outcome.pool_annotation, outcome.released) == (None, UNCHANGED, False)
    assert [e.reason for e in outcome.events] == ["AllocationFailed"]
    assert alloc.assignment(KEY) == HELD


def test_a_malformed_request_clears_a_status_ip_it_does_not_hold() -> None:
    body = svc(ingress=["10.0.0.1"], annotations={"metallb.io/loadBalancerIPs": "10.0.0.x", POOL_OUT: "p"})
    outcome = reconcile_service(KEY, body, {}, allocator(), None)
    assert outcome.ingress == [] and outcome.pool_annotation is None
    assert outcome.events[1:] == [
        Event("Normal", "ClearAssignment", 'clearing assignment ["10.0.0.1"]: not held by this Service')
    ]


def test_a_request_of_the_wrong_family_gives_up_the_ip() -> None:
    alloc, _ = holding()
    body = svc(ingress=["10.0.0.0"], annotations={"metallb.io/loadBalancerIPs": "fd00::1", POOL_OUT: "p"})
    reason = (
        "metadata.annotations[metallb.io/loadBalancerIPs]: requested fd00::1 does not match the Service's "
        "IP families IPv4"
    )
    assert reconcile_service(KEY, body, {}, alloc, None) == Outcome(
        ingress=[],
        pool_annotation=None,
        events=[
            Event("Warning", "AllocationFailed", f'Failed to allocate IP for "ns/web": {reason}'),
            Event("Normal", "ClearAssignment", f'clearing assignment ["10.0.0.0"]: {reason}'),
        ],
        pending=True,
        failure=reason,
        released=True,
        action="allocation_failed",
    )
    assert alloc.assignment(KEY) is None


def test_no_room() -> None:
    alloc = allocator()
    for name in ("a", "b"):
        other = {**svc(), "metadata": {"name": name, "namespace": "ns"}}
        reconcile_service(f"ns/{name}", other, {}, alloc, None)
    reason = 'no available IPs in pool "p"'
    assert reconcile_service(KEY, svc(), {}, alloc, None) == Outcome(
        events=[Event("Warning", "AllocationFailed", f'Failed to allocate IP for "ns/web": {reason}')],
        pending=True,
        failure=reason,
        waiting_on=("p",),
        action="allocation_failed",
    )


def test_withdrawn_then_assigned_again() -> None:
    withdrawn = (ipaddress.ip_address("10.9.0.1"),)
    clear = Event("Normal", "ClearAssignment", 'current IP ["10.9.0.1"] not allowed by config, clearing')
    body = svc(ingress=["10.9.0.1"], annotations={POOL_OUT: "gone"})
    assert reconcile_service(KEY, body, {}, allocator(), None, withdrawn) == Outcome(
        ingress=vip("10.0.0.0"),
        pool_annotation="p",
        events=[clear, ASSIGNED],
        released=True,
        assignment=HELD,
        action="assigned",
    )


def test_withdrawn_from_a_deleted_service() -> None:
    withdrawn = (ipaddress.ip_address("10.9.0.1"),)
    clear = Event("Normal", "ClearAssignment", 'current IP ["10.9.0.1"] not allowed by config, clearing')
    outcome = reconcile_service(KEY, None, {}, allocator(), None, withdrawn)
    assert outcome == Outcome(events=[clear], released=True)


def test_pool_status_of_a_full_pool_and_an_overfull_count() -> None:
    full = PoolStats(total=6, in_use=6, ipv4_total=4, ipv4_in_use=4, ipv6_total=2, ipv6_in_use=2)
    assert pool_status(full) == {"assignedIPv4": 4, "assignedIPv6": 2, "availableIPv4": 0, "availableIPv6": 0}
    # In use beyond the total (a pool that shrank under its holders) never shows a negative availability.
    shrunk = PoolStats(total=2, in_use=5, ipv4_total=1, ipv4_in_use=3, ipv6_total=1, ipv6_in_use=2)
    assert pool_status(shrunk) == {
        "assignedIPv4": 3,
        "assignedIPv6": 2,
        "availableIPv4": 0,
        "availableIPv6": 0,
    }
