"""The allocator's policy, one small example per rule, each with the one answer MetalLB's rules give.

Every example here was chosen so that a plausible slip in the rule (a flipped sort key, a dropped condition,
an off-by-one bound, an unordered set) gives a different answer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from common.errors import RequestError
from common.pools import ServiceAllocation
from controller.allocator import AllocationError, Allocator, Assignment
from controller.requests import parse_service
from tests.unit.controller.helpers import config, ip, pool, request


def reason(allocator: Allocator, req: object) -> str:
    with pytest.raises(AllocationError) as info:
        allocator.assign(req)  # type: ignore[arg-type]
    return info.value.reason


# ---- pool order -----------------------------------------------------------------------------------------


def test_pool_without_priority_ranks_after_prioritised_pools_whatever_their_names() -> None:
    # By name "aaa" would come first; its serviceAllocation has no priority, so "zzz" (priority 50) wins.
    allocator = Allocator(
        config(
            pool("aaa", "10.0.0.0/30", service_allocation=ServiceAllocation(namespaces=("ns",))),
            pool("zzz", "10.9.0.0/30", service_allocation=ServiceAllocation(priority=50)),
        )
    )
    assert allocator.assign(request("ns/first")).pool == "zzz"


def test_priority_zero_is_a_priority_not_a_missing_one() -> None:
    allocator = Allocator(
        config(
            pool("aaa", "10.0.0.0/30", service_allocation=ServiceAllocation(namespaces=("ns",))),
            pool("zzz", "10.9.0.0/30", service_allocation=ServiceAllocation(priority=0)),
        )
    )
    assert allocator.assign(request("ns/first")).pool == "zzz"


def test_lower_priority_number_first_then_name() -> None:
    allocator = Allocator(
        config(
            pool("b-ten", "10.1.0.0/32", service_allocation=ServiceAllocation(priority=10)),
            pool("a-twenty", "10.2.0.0/32", service_allocation=ServiceAllocation(priority=20)),
            pool("c-ten", "10.3.0.0/32", service_allocation=ServiceAllocation(priority=10)),
            pool("a-plain", "10.4.0.0/32"),
        )
    )
    got = [allocator.assign(request(f"ns/s{n}")).pool for n in range(4)]
    assert got == ["b-ten", "c-ten", "a-twenty", "a-plain"]


def test_pool_not_admitting_the_service_is_skipped_even_with_the_best_priority() -> None:
    allocator = Allocator(
        config(
            pool("other", "10.1.0.0/30", service_allocation=ServiceAllocation(priority=1, namespaces=("x",))),
            pool("mine", "10.2.0.0/30", service_allocation=ServiceAllocation(priority=9, namespaces=("ns",))),
        )
    )
    assert allocator.assign(request("ns/s")).pool == "mine"


# ---- families -------------------------------------------------------------------------------------------


def test_require_dual_stack_fails_when_no_pool_gives_both_families() -> None:
    allocator = Allocator(config(pool("v4", "10.0.0.0/30"), pool("v6", "fd00::/126")))
    assert reason(allocator, request("ns/d", families=(4, 6), require_all=True)) == (
        'no available IPs in pools "v4", "v6"'
    )
    assert allocator.assignment("ns/d") is None
    assert allocator.pool_stats()["v4"].in_use == 0 and allocator.pool_stats()["v6"].in_use == 0
    # The same Service asking PreferDualStack settles for the first pool by name.
    assert allocator.assign(request("ns/d", families=(4, 6))) == Assignment("ns/d", (ip("10.0.0.0"),), "v4")


def test_prefer_dual_stack_takes_the_pool_giving_both_over_an_earlier_one_giving_one() -> None:
    allocator = Allocator(config(pool("a-v4", "10.0.0.0/30"), pool("b-both", "10.1.0.0/30", "fd00::/126")))
    assert allocator.assign(request("ns/d", families=(6, 4))) == Assignment(
        "ns/d", (ip("fd00::"), ip("10.1.0.0")), "b-both"
    )


# ---- which address --------------------------------------------------------------------------------------


def test_the_lowest_shareable_ip_is_chosen() -> None:
    # Set iteration order follows the addresses' (per-process) hashes: several trials with different
    # addresses make an unsorted pick show up whatever the hash seed.
    for trial in range(6):
        allocator = Allocator(config(pool("p", "10.0.0.0/24")))
        held = [f"10.0.0.{10 + trial + 7 * n}" for n in range(8)]
        for n, address in enumerate(reversed(held)):
            allocator.assign(request(f"ns/holder{n}", sharing_key="k", requested=(address,)))
        # A lower free address exists (10.0.0.0): sharing wins over it, and the lowest shared IP wins.
        got = allocator.assign(request("ns/new", sharing_key="k", ports=((443, "TCP"),)))
        assert got.ips == (ip(held[0]),), trial


def test_a_shared_ip_the_service_may_not_join_is_passed_over_for_the_next_one() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/24")))
    allocator.assign(request("ns/a", sharing_key="k", requested=("10.0.0.5",), ports=((443, "TCP"),)))
    allocator.assign(request("ns/b", sharing_key="k", requested=("10.0.0.9",)))
    # 10.0.0.5 already serves 443/TCP: the next shareable one is taken.
    assert allocator.assign(request("ns/c", sharing_key="k", ports=((443, "TCP"),))).ips == (ip("10.0.0.9"),)


def test_the_lowest_free_ip_after_holes_open() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/29")))
    for n in range(6):
        allocator.assign(request(f"ns/s{n}"))
    allocator.release("ns/s4")
    allocator.release("ns/s2")
    assert [allocator.assign(request(f"ns/new{n}")).ips[0] for n in range(3)] == [
        ip("10.0.0.2"),
        ip("10.0.0.4"),
        ip("10.0.0.6"),
    ]


# ---- requests -------------------------------------------------------------------------------------------


def lb_service(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "ns", "annotations": annotations or {}},
        "spec": {"type": "LoadBalancer", **spec},
    }


@pytest.mark.parametrize("port", [1, 65535])
def test_port_bounds_are_accepted(port: int) -> None:
    assert parse_service(lb_service(ports=[{"port": port}]), {}).ports == ((port, "TCP"),)


@pytest.mark.parametrize("port", [0, 65536])
def test_ports_outside_the_bounds_are_refused(port: int) -> None:
    with pytest.raises(RequestError) as info:
        parse_service(lb_service(ports=[{"port": port}]), {})
    assert str(info.value) == f"spec.ports[0].port: must be an integer 1-65535, got {port}"


def test_both_prefixes_listing_the_same_ips_in_another_order_agree() -> None:
    annotations = {
        "metallb.io/loadBalancerIPs": "10.0.0.1,fd00::1",
        "metallb.universe.tf/loadBalancerIPs": "fd00::1, 10.0.0.1",
    }
    request_ = parse_service(lb_service(annotations, ipFamilyPolicy="RequireDualStack"), {})
    assert request_.requested_ips == (ip("10.0.0.1"), ip("fd00::1"))


def test_both_prefixes_listing_different_ips_conflict() -> None:
    annotations = {
        "metallb.io/loadBalancerIPs": "10.0.0.1,fd00::1",
        "metallb.universe.tf/loadBalancerIPs": "fd00::1,10.0.0.2",
    }
    with pytest.raises(RequestError) as info:
        parse_service(lb_service(annotations, ipFamilyPolicy="RequireDualStack"), {})
    assert info.value.field == "metadata.annotations[metallb.io/loadBalancerIPs]"
    assert "conflicts with metallb.universe.tf/loadBalancerIPs" in info.value.message


# ---- cost -----------------------------------------------------------------------------------------------


def lines_run(call: Callable[[], object]) -> int:
    """Python lines executed by `call()`: a count of work that no machine load can disturb."""
    count = 0

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        call()
    finally:
        sys.settrace(previous)
    return count


def test_assign_work_does_not_grow_with_addresses_in_use() -> None:
    """O(log n): the bisections run in C, so the Python lines one assign() executes stay the same whether 10
    or 4,000 addresses are taken, and however fragmented the free space is. A scan would add lines per
    address it passes over."""
    allocator = Allocator(config(pool("p", "10.0.0.0/8")))
    for n in range(10):
        allocator.assign(request(f"ns/s{n}"))
    few = lines_run(lambda: allocator.assign(request("ns/probe-few")))
    for n in range(10, 4_000):
        allocator.assign(request(f"ns/s{n}"))
    many = lines_run(lambda: allocator.assign(request("ns/probe-many")))
    for n in range(0, 4_000, 2):
        allocator.release(f"ns/s{n}")  # 2,000 one-address holes
    allocator.assign(request("ns/fill-first-hole"))
    fragmented = lines_run(lambda: allocator.assign(request("ns/probe-fragmented")))
    assert allocator.assignment("ns/probe-fragmented") == Assignment(
        "ns/probe-fragmented", (ip("10.0.0.2"),), "p"
    )
    assert many <= few + 5 and fragmented <= few + 5, (few, many, fragmented)
