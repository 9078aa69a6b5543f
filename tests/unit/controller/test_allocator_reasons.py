"""The allocator's refusals word for word (they are the AllocationFailed events users read), the pools a
refused Service waits on, and the bookkeeping checker catching what it is there to catch (issue 9)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller.allocator import AllocationError, Allocator, Assignment
from controller.ipset import IntervalSet
from controller.requests import ServiceRequest
from tests.unit.controller.helpers import config, ip, pool, request


def refusal(allocator: Allocator, wanted: ServiceRequest) -> AllocationError:
    with pytest.raises(AllocationError) as info:
        allocator.assign(wanted)
    return info.value


def holding(first: ServiceRequest) -> Allocator:
    allocator = Allocator(config(pool("p", "10.0.0.1-10.0.0.3")))
    assert allocator.assign(first).ips == (ip("10.0.0.1"),)
    return allocator


@pytest.mark.parametrize(
    ("first", "second", "why"),
    [
        (request("ns/a"), request("ns/b"), "allow-shared-ip is not set on both Services"),
        (request("ns/a", sharing_key="k"), request("ns/b"), "allow-shared-ip is not set on both Services"),
        (
            request("ns/a", sharing_key="k"),
            request("ns/b", sharing_key="other"),
            "their allow-shared-ip keys differ",
        ),
        (
            request("ns/a", sharing_key="k", ports=((53, "UDP"), (80, "TCP"), (443, "TCP"))),
            request("ns/b", sharing_key="k", ports=((443, "TCP"), (80, "TCP"))),
            "port 80/TCP, 443/TCP is already in use",
        ),
        (
            request("ns/a", sharing_key="k"),
            request("ns/b", sharing_key="k", ports=((81, "TCP"),), etp="Local"),
            "externalTrafficPolicy differs (Cluster and Local cannot share an IP)",
        ),
        (
            request("ns/a", sharing_key="k", etp="Local"),
            request("ns/b", sharing_key="k", ports=((81, "TCP"),), etp="Local", selector=(("app", "y"),)),
            "externalTrafficPolicy Local needs identical pod selectors to share an IP",
        ),
    ],
)
def test_why_a_requested_ip_cannot_be_shared(first: ServiceRequest, second: ServiceRequest, why: str) -> None:
    allocator = holding(first)
    wanted = replace(second, requested_ips=(ip("10.0.0.1"),))
    error = refusal(allocator, wanted)
    assert error.reason == f'cannot assign 10.0.0.1: "10.0.0.1" is already in use by ns/a: {why}'
    assert error.waiting_on == ("p",)  # the holder may let go


def test_a_requested_ip_refused_for_a_reason_no_release_fixes_waits_on_nothing() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.1-10.0.0.3"), pool("q", "10.1.0.1-10.1.0.3")))
    error = refusal(allocator, request("ns/a", requested=("10.0.0.2",), pool="q"))
    assert error.reason == 'cannot assign 10.0.0.2: 10.0.0.2 is in pool "p", not in pool "q"'
    assert error.waiting_on == ()
    assert refusal(allocator, request("ns/a", requested=("10.9.0.1",))).waiting_on == ()


def test_a_service_whose_new_ports_clash_with_its_co_holder_moves_to_another_ip() -> None:
    """The check skips the Service's own hold on its IP, and must go on to the other holders after it."""
    allocator = holding(request("ns/a", sharing_key="k", ports=((80, "TCP"),)))
    assert allocator.assign(request("ns/b", sharing_key="k", ports=((81, "TCP"),))).ips == (ip("10.0.0.1"),)
    moved = allocator.assign(request("ns/a", sharing_key="k", ports=((81, "TCP"),)))
    assert moved.ips == (ip("10.0.0.2"),)
    assert allocator.holders(ip("10.0.0.1")) == {"ns/b"}
    assert allocator.consistency_problems() == []


def test_hold_takes_one_ip_per_family_and_lets_go_of_what_the_key_held() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.1-10.0.0.3")))
    assert allocator.hold(request("ns/a"), (ip("10.0.0.1"), ip("10.0.0.2"))) is None
    assert allocator.holders(ip("10.0.0.1")) == frozenset()
    assert allocator.hold(request("ns/a"), (ip("10.0.0.1"),)) is not None
    assert allocator.hold(request("ns/a"), (ip("10.0.0.2"),)) is not None
    assert allocator.holders(ip("10.0.0.1")) == frozenset()
    assert allocator.pool_stats()["p"].in_use == 1
    assert allocator.consistency_problems() == []


def test_restore_refuses_the_same_ip_twice() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.1-10.0.0.3")))
    assert allocator.restore(request("ns/a"), (ip("10.0.0.1"), ip("10.0.0.1"))) is None
    assert allocator.assignment("ns/a") is None


def test_releasing_the_last_sharer_frees_the_ip_for_anyone() -> None:
    allocator = holding(request("ns/a", sharing_key="k"))
    allocator.assign(request("ns/b", sharing_key="k", ports=((81, "TCP"),)))
    allocator.release("ns/a")
    assert allocator.pool_stats()["p"].in_use == 1
    allocator.release("ns/b")
    assert allocator.pool_stats()["p"].in_use == 0
    assert allocator.assign(request("ns/c")).ips == (ip("10.0.0.1"),)
    # The sharing key no longer points at the IP: a new sharer gets the lowest free IP like anyone.
    assert allocator.assign(request("ns/d", sharing_key="k")).ips == (ip("10.0.0.2"),)
    assert allocator.consistency_problems() == []


# ---- the checker the property tests rely on must see each kind of broken bookkeeping -----------------------


def test_consistency_problems_sees_an_ip_held_by_two_who_may_not_share() -> None:
    allocator = holding(request("ns/a"))
    allocator.assign(request("ns/b"))
    # Break it: b also holds a's IP, though neither sets allow-shared-ip.
    b = allocator._assignments["ns/b"]
    allocator._assignments["ns/b"] = Assignment(b.key, (ip("10.0.0.1"),), b.pool)
    allocator._holders[ip("10.0.0.1")].add("ns/b")
    problems = allocator.consistency_problems()
    assert (
        "10.0.0.1: held by ns/a and ns/b, who may not share: allow-shared-ip is not set on both Services"
        in problems
    )


def test_consistency_problems_checks_every_pair_of_holders() -> None:
    allocator = holding(request("ns/a", sharing_key="k", ports=((80, "TCP"),)))
    allocator.assign(request("ns/b", sharing_key="k", ports=((81, "TCP"),)))
    allocator.assign(request("ns/c", sharing_key="k", ports=((82, "TCP"),)))
    assert allocator.holders(ip("10.0.0.1")) == {"ns/a", "ns/b", "ns/c"}
    assert allocator.consistency_problems() == []
    # Only b and c clash (a is fine with both): found only if the second holder is compared with the third.
    allocator._requests["ns/c"] = replace(allocator._requests["ns/c"], ports=((81, "TCP"),))
    assert allocator.consistency_problems() == [
        "10.0.0.1: held by ns/b and ns/c, who may not share: port 81/TCP is already in use"
    ]


def test_interval_set_joins_in_the_middle() -> None:
    s = IntervalSet.from_ranges([(0, 0), (2, 2), (4, 4), (6, 6)])
    assert s.add(3)
    assert list(s.intervals()) == [(0, 0), (2, 4), (6, 6)]
    assert s.add(1)
    assert list(s.intervals()) == [(0, 4), (6, 6)] and s.count == 6


def test_require_dual_stack_from_a_named_pool_that_has_both() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.1-10.0.0.2", "fd00::1-fd00::2")))
    wanted = request("ns/a", pool="p", families=(4, 6), require_all=True)
    assert allocator.assign(wanted).ips == (ip("10.0.0.1"), ip("fd00::1"))


def test_full_pools_are_the_ones_waited_on() -> None:
    allocator = Allocator(config(pool("a", "10.0.0.1/32"), pool("b", "10.1.0.1/32")))
    allocator.assign(request("ns/x"))
    allocator.assign(request("ns/y"))
    named = refusal(allocator, request("ns/z", pool="a"))
    assert (named.reason, named.waiting_on) == ('no available IPs in pool "a"', ("a",))
    anywhere = refusal(allocator, request("ns/z"))
    assert (anywhere.reason, anywhere.waiting_on) == ('no available IPs in pools "a", "b"', ("a", "b"))


def test_a_sharing_key_still_finds_its_other_ips_after_one_is_freed() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.1-10.0.0.4")))
    for name in ("a", "b", "c"):  # same key, same port: each needs its own IP
        allocator.assign(request(f"ns/{name}", sharing_key="k"))
    allocator.release("ns/a")  # 10.0.0.1 is free again; 10.0.0.2 and .3 are still shared under "k"
    joined = allocator.assign(request("ns/d", sharing_key="k", ports=((81, "TCP"),)))
    assert joined.ips == (ip("10.0.0.2"),)
    assert allocator.consistency_problems() == []


def test_interval_set_joins_on_one_side() -> None:
    s = IntervalSet.from_ranges([(0, 0), (5, 5)])
    assert s.add(1) and list(s.intervals()) == [(0, 1), (5, 5)]
    assert s.add(4) and list(s.intervals()) == [(0, 1), (4, 5)]
    assert 1 in s and 2 not in s and s.count == 4


def test_a_requester_is_checked_against_every_holder_not_only_the_first_it_may_share_with() -> None:
    allocator = holding(request("ns/a", sharing_key="k", ports=((80, "TCP"),)))
    allocator.assign(request("ns/b", sharing_key="k", ports=((81, "TCP"),)))
    # c may share with a (ports differ) but not with b (81/TCP again).
    wanted = request("ns/c", sharing_key="k", ports=((81, "TCP"),), requested=("10.0.0.1",))
    error = refusal(allocator, wanted)
    assert (
        error.reason
        == 'cannot assign 10.0.0.1: "10.0.0.1" is already in use by ns/b: port 81/TCP is already in use'
    )
