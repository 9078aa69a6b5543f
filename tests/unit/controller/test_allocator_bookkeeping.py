"""The allocator's bookkeeping, seen from outside: the sharing index forgets released IPs, a re-adoption frees
what it replaces, the self-check notices each kind of corruption, and the reasons it gives are exact."""

from __future__ import annotations

import pytest

from common.pools import ServiceAllocation
from controller.allocator import AllocationError, Allocator, Assignment
from tests.unit.controller.helpers import config, ip, pool, request


def reason(allocator: Allocator, req: object) -> str:
    with pytest.raises(AllocationError) as info:
        allocator.assign(req)  # type: ignore[arg-type]
    return info.value.reason


# ---- the sharing index ----------------------------------------------------------------------------------


def test_a_released_shared_ip_is_not_offered_for_sharing_any_more() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/24")))
    allocator.assign(request("ns/a", sharing_key="k", requested=("10.0.0.5",)))
    allocator.assign(request("ns/b", sharing_key="k", requested=("10.0.0.5",), ports=((443, "TCP"),)))
    allocator.release("ns/a")
    allocator.release("ns/b")
    # 10.0.0.5 is simply free now: a newcomer with the same key gets the lowest free address.
    assert allocator.assign(request("ns/c", sharing_key="k")).ips == (ip("10.0.0.0"),)
    assert allocator.consistency_problems() == []


def test_the_sharing_index_survives_a_config_change() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/24")))
    allocator.assign(request("ns/a", sharing_key="k", requested=("10.0.0.5",)))
    assert allocator.set_config(config(pool("p", "10.0.0.0/24"), pool("q", "10.1.0.0/24"))) == []
    shared = allocator.assign(request("ns/b", sharing_key="k", ports=((443, "TCP"),)))
    assert shared.ips == (ip("10.0.0.5"),)
    allocator.release("ns/a")
    allocator.release("ns/b")
    assert allocator.assign(request("ns/c", sharing_key="k")).ips == (ip("10.0.0.0"),)


def test_releasing_a_dual_stack_assignment_frees_both_addresses() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/30", "fd00::/126")))
    allocator.assign(request("ns/d", families=(4, 6)))
    allocator.release("ns/d")
    assert allocator.holders(ip("10.0.0.0")) == frozenset() and allocator.holders(ip("fd00::")) == frozenset()
    stats = allocator.pool_stats()["p"]
    assert (stats.ipv4_in_use, stats.ipv6_in_use) == (0, 0)
    assert allocator.assign(request("ns/e", families=(6, 4))).ips == (ip("fd00::"), ip("10.0.0.0"))


def test_releasing_one_sharer_keeps_the_ip_for_the_other() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/30", "fd00::/126")))
    allocator.assign(request("ns/a", sharing_key="k", families=(4, 6)))
    allocator.assign(request("ns/b", sharing_key="k", families=(4, 6), ports=((443, "TCP"),)))
    allocator.release("ns/a")
    assert allocator.holders(ip("10.0.0.0")) == {"ns/b"} and allocator.holders(ip("fd00::")) == {"ns/b"}
    assert allocator.pool_stats()["p"].in_use == 2
    assert allocator.consistency_problems() == []


# ---- restore --------------------------------------------------------------------------------------------


def test_restore_with_other_ips_moves_the_service_and_frees_the_first_ones() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/29")))
    assert allocator.restore(request("ns/s"), [ip("10.0.0.3")]) == Assignment("ns/s", (ip("10.0.0.3"),), "p")
    assert allocator.restore(request("ns/s"), [ip("10.0.0.5")]) == Assignment("ns/s", (ip("10.0.0.5"),), "p")
    assert allocator.holders(ip("10.0.0.3")) == frozenset()
    assert allocator.pool_stats()["p"].in_use == 1
    assert allocator.consistency_problems() == []


def test_restore_checks_the_ip_against_every_other_holder() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/29")))
    allocator.restore(request("ns/a", sharing_key="k"), [ip("10.0.0.1")])
    allocator.restore(request("ns/b", sharing_key="k", ports=((443, "TCP"),)), [ip("10.0.0.1")])
    # ns/a now asks for port 443 too: it may no longer share with ns/b (its own holding is no excuse).
    changed = request("ns/a", sharing_key="k", ports=((443, "TCP"),))
    assert allocator.restore(changed, [ip("10.0.0.1")]) is None


def test_restore_refuses_what_is_not_one_address_per_family() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/29", "fd00::/125")))
    assert allocator.restore(request("ns/s", families=(4, 6)), [ip("10.0.0.1"), ip("10.0.0.2")]) is None
    assert allocator.restore(request("ns/s"), [ip("10.0.0.1"), ip("10.0.0.1")]) is None
    assert allocator.restore(request("ns/s"), []) is None
    assert allocator.assignments() == {}


# ---- queries --------------------------------------------------------------------------------------------


def test_holders_of_an_address_nobody_holds() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/29")))
    assert allocator.holders(ip("10.0.0.1")) == frozenset()
    assert allocator.holders(ip("192.0.2.1")) == frozenset()


def test_consistency_problems_notice_each_kind_of_corruption() -> None:
    def fresh() -> Allocator:
        allocator = Allocator(config(pool("p", "10.0.0.0/30")))
        allocator.assign(request("ns/a"))
        allocator.assign(request("ns/b"))
        assert allocator.consistency_problems() == []
        return allocator

    broken = fresh()
    del broken._requests["ns/a"]
    assert broken.consistency_problems() == ["ns/a: assignment without request"]

    broken = fresh()
    broken._holders[ip("10.0.0.1")].discard("ns/b")
    assert broken.consistency_problems() == [
        "ns/b: 10.0.0.1 not recorded as held",
        "10.0.0.1: stale holders []",
    ]

    broken = fresh()
    del broken._holders[ip("10.0.0.1")]
    assert broken.consistency_problems() == ["ns/b: 10.0.0.1 not recorded as held"]

    broken = fresh()
    broken._holders[ip("10.0.0.3")] = {"ns/a"}
    assert broken.consistency_problems() == ["10.0.0.3: stale holders ['ns/a']"]

    broken = fresh()
    broken._pools["p"].in_use[4] = 3
    assert broken.consistency_problems() == ["p: in_use[4]=3, held 2"]

    broken = fresh()
    broken._pools["p"].free[4].add(int(ip("10.0.0.0")))
    assert broken.consistency_problems() == [
        "p: a held IPv4 address is also free",
        "p: more free and held IPv4 addresses than the pool has",
    ]

    broken = fresh()
    broken._pools["p"].free[4].add(int(ip("10.0.0.9")))
    assert broken.consistency_problems() == [
        f"p: free interval {int(ip('10.0.0.9'))}-{int(ip('10.0.0.9'))} outside the pool",
        "p: more free and held IPv4 addresses than the pool has",
    ]


# ---- reasons --------------------------------------------------------------------------------------------


def test_the_last_address_of_an_avoid_buggy_range_is_named_as_such() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/24", avoid_buggy_ips=True)))
    assert reason(allocator, request("ns/s", requested=("10.0.0.255",))) == (
        'cannot assign 10.0.0.255: "10.0.0.255" ends in .0 or .255 and pool "p" has avoid-buggy-ips set'
    )
    assert reason(allocator, request("ns/s", requested=("10.0.1.0",))) == (
        'cannot assign 10.0.1.0: "10.0.1.0" is not in any pool'
    )


def test_reasons_for_requested_ips_that_cannot_be_held() -> None:
    allocator = Allocator(config(pool("a", "10.0.0.0/29", "fd00::/125"), pool("b", "10.0.1.0/29")))
    dual = request("ns/s", families=(4, 6), require_all=True, requested=("10.0.0.1", "fd00::1"))
    assert allocator.assign(dual).ips == (ip("10.0.0.1"), ip("fd00::1"))
    assert reason(allocator, request("ns/t", families=(4, 6), requested=("10.0.0.2", "10.0.1.2"))) == (
        "cannot assign 10.0.0.2, 10.0.1.2: more than one IP of a family"
    )
    assert reason(allocator, request("ns/t", families=(4,), requested=("fd00::2",))) == (
        "cannot assign fd00::2: an IP of a family the Service does not ask for"
    )
    assert reason(allocator, request("ns/t", families=(4, 6), require_all=True, requested=("10.0.0.2",))) == (
        "cannot assign 10.0.0.2: RequireDualStack needs an IP of each family"
    )
    assert reason(allocator, request("ns/t", families=(4, 6), requested=("10.0.1.2", "fd00::2"))) == (
        'cannot assign 10.0.1.2, fd00::2: the IPs 10.0.1.2, fd00::2 are in different pools ("a", "b"); '
        "one pool must hold them all"
    )
    wrong_pool = request("ns/t", families=(4, 6), pool="b", requested=("10.0.0.2", "fd00::2"))
    assert reason(allocator, wrong_pool) == (
        'cannot assign 10.0.0.2, fd00::2: 10.0.0.2, fd00::2 is in pool "a", not in pool "b"'
    )


def test_reasons_for_pools_without_the_families_asked_for() -> None:
    allocator = Allocator(config(pool("v4", "10.0.0.0/30"), pool("v6", "fd00::/126")))
    assert reason(allocator, request("ns/t", families=(4, 6), require_all=True, pool="v6")) == (
        'pool "v6" has no IPv4 addresses'
    )
    assert reason(allocator, request("ns/t", families=(6,), pool="v4")) == 'pool "v4" has no IPv6 addresses'
    # PreferDualStack with a named single-family pool settles for its family.
    assert allocator.assign(request("ns/t", families=(6, 4), pool="v4")).ips == (ip("10.0.0.0"),)
    none_for_both = Allocator(config(pool("v4", "10.0.0.0/30", auto_assign=False)))
    assert reason(none_for_both, request("ns/u", families=(6, 4))) == (
        "no pool available for Service ns/u: no auto-assign pool with IPv6/IPv4 addresses admits it"
    )


def test_a_named_pool_too_full_for_a_dual_stack_service() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/32", "fd00::/127")))
    allocator.assign(request("ns/v4", pool="p"))
    assert reason(allocator, request("ns/d", families=(4, 6), require_all=True, pool="p")) == (
        'no available IPs in pool "p"'
    )
    assert allocator.assign(request("ns/d", families=(4, 6), pool="p")).ips == (ip("fd00::"),)


def test_priority_zero_comes_before_priority_one() -> None:
    allocator = Allocator(
        config(
            pool("a-one", "10.1.0.0/30", service_allocation=ServiceAllocation(priority=1)),
            pool("b-zero", "10.2.0.0/30", service_allocation=ServiceAllocation(priority=0)),
        )
    )
    assert allocator.assign(request("ns/s")).pool == "b-zero"
