"""Allocator rules: lowest free IP, requests, sharing, pools and priorities, dual stack, config changes,
restore, stats, and memory independent of the pool size."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace

import pytest

from common.config import parse_configmap
from common.pools import ServiceAllocation
from common.selectors import LabelSelector
from controller.allocator import AllocationError, Allocator, Assignment, PoolStats
from controller.requests import parse_service
from tests.unit.controller.helpers import config, ip, pool, request

TUTORIAL = {
    "config": "address-pools:\n- name: default\n  protocol: layer2\n"
    "  addresses:\n  - 192.168.10.90-192.168.10.100\n"
}


def checked(allocator: Allocator) -> Allocator:
    assert allocator.consistency_problems() == []
    return allocator


def error_of(allocator: Allocator, req: object) -> str:
    with pytest.raises(AllocationError) as info:
        allocator.assign(req)  # type: ignore[arg-type]
    assert str(info.value) == info.value.reason
    return info.value.reason


def test_tutorial_services_get_90_then_91() -> None:
    allocator = Allocator(config(*parse_configmap(TUTORIAL, "ConfigMap metallb-system/config")))
    nginx = parse_service(
        {
            "metadata": {"name": "nginx-metallb", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        },
        {},
    )
    second = parse_service(
        {
            "metadata": {"name": "second", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        },
        {},
    )
    assert allocator.assign(nginx) == Assignment("default/nginx-metallb", (ip("192.168.10.90"),), "default")
    assert allocator.assign(second).ips == (ip("192.168.10.91"),)
    # Idempotent: assigning again keeps the IP.
    assert allocator.assign(nginx).ips == (ip("192.168.10.90"),)
    assert allocator.assign(second).ips == (ip("192.168.10.91"),)
    checked(allocator)


def test_lowest_free_is_reused_after_release() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/29")))
    for n in range(4):
        assert allocator.assign(request(f"ns/s{n}")).ips == (ip(f"10.0.0.{n}"),)
    allocator.release("ns/s1")
    allocator.release("ns/s1")  # releasing twice is harmless
    assert allocator.assignment("ns/s1") is None
    assert allocator.assign(request("ns/new")).ips == (ip("10.0.0.1"),)
    assert allocator.assign(request("ns/next")).ips == (ip("10.0.0.4"),)
    checked(allocator)


def test_exhaustion_then_room_appears() -> None:
    allocator = Allocator(config(pool("small", "10.0.0.1-10.0.0.2")))
    allocator.assign(request("ns/a"))
    allocator.assign(request("ns/b"))
    assert error_of(allocator, request("ns/c")) == 'no available IPs in pool "small"'
    assert allocator.assignment("ns/c") is None
    allocator.release("ns/a")
    assert allocator.assign(request("ns/c")).ips == (ip("10.0.0.1"),)


def test_exhaustion_across_pools_names_them() -> None:
    allocator = Allocator(config(pool("a", "10.0.0.1/32"), pool("b", "10.0.1.1/32")))
    allocator.assign(request("ns/1"))
    allocator.assign(request("ns/2"))
    assert error_of(allocator, request("ns/3")) == 'no available IPs in pools "a", "b"'


def test_no_pool_at_all() -> None:
    assert "no pool available for Service ns/x" in error_of(Allocator(config()), request("ns/x"))
    v4_only = Allocator(config(pool("a", "10.0.0.0/24")))
    assert "IPv6" in error_of(v4_only, request("ns/x", families=(6,)))


def test_requested_ip() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/24")))
    assert allocator.assign(request("ns/a", requested=("10.0.0.77",))).ips == (ip("10.0.0.77"),)
    assert error_of(allocator, request("ns/b", requested=("10.9.9.9",))) == (
        'cannot assign 10.9.9.9: "10.9.9.9" is not in any pool'
    )
    reason = error_of(allocator, request("ns/b", requested=("10.0.0.77",)))
    assert '"10.0.0.77" is already in use by ns/a' in reason
    # Auto-assignment continues from the lowest free address, around the requested one.
    assert allocator.assign(request("ns/c")).ips == (ip("10.0.0.0"),)
    checked(allocator)


def test_requested_ip_in_auto_assign_false_pool_and_explicit_pool() -> None:
    allocator = Allocator(
        config(pool("auto", "10.0.0.0/30"), pool("manual", "10.0.1.0/30", auto_assign=False))
    )
    assert allocator.assign(request("ns/a")).pool == "auto"
    assert allocator.assign(request("ns/b", requested=("10.0.1.2",))) == Assignment(
        "ns/b", (ip("10.0.1.2"),), "manual"
    )
    assert allocator.assign(request("ns/c", pool="manual")).ips == (ip("10.0.1.0"),)
    # Auto-assignment never dips into the manual pool, even when the auto pool is full.
    for n in range(3):
        allocator.assign(request(f"ns/fill{n}"))
    assert error_of(allocator, request("ns/d")) == 'no available IPs in pool "auto"'
    assert error_of(allocator, request("ns/e", pool="nope")) == 'unknown pool "nope"'
    reason = error_of(allocator, request("ns/f", pool="auto", requested=("10.0.1.3",)))
    assert 'is in pool "manual", not in pool "auto"' in reason


def test_pool_order_by_name_without_service_allocation() -> None:
    allocator = Allocator(config(pool("zeta", "10.0.0.0/30"), pool("alpha", "10.9.0.0/30")))
    assert allocator.assign(request("ns/a")).pool == "alpha"


def test_service_allocation_priority_and_scoping() -> None:
    allocator = Allocator(
        config(
            pool("general", "10.0.0.0/30"),
            pool("low", "10.1.0.0/30", service_allocation=ServiceAllocation(priority=20)),
            pool("high", "10.2.0.0/32", service_allocation=ServiceAllocation(priority=10)),
            pool("unprioritised", "10.3.0.0/30", service_allocation=ServiceAllocation(namespaces=("prod",))),
            pool(
                "web-only",
                "10.4.0.0/30",
                service_allocation=ServiceAllocation(
                    priority=1, service_selectors=(LabelSelector(match_labels=(("tier", "web"),)),)
                ),
            ),
        )
    )
    assert allocator.assign(request("dev/a")).pool == "high"
    assert allocator.assign(request("dev/b")).pool == "low"  # high is full: next priority
    assert allocator.assign(request("dev/web", labels=(("tier", "web"),))).pool == "web-only"
    # Matching pools with a priority come before matching pools without one, then pools without allocation.
    allocator.assign(request("dev/c"))
    allocator.assign(request("dev/d"))
    allocator.assign(request("dev/e"))
    assert allocator.assign(request("dev/f")).pool == "general"
    assert allocator.assign(request("prod/g")).pool == "unprioritised"
    # A pool scoped to other Services refuses explicit requests too.
    assert "does not admit Service dev/h" in error_of(allocator, request("dev/h", pool="web-only"))
    assert "does not admit Service dev/i" in error_of(allocator, request("dev/i", requested=("10.3.0.3",)))
    checked(allocator)


def test_namespace_selector_scoping() -> None:
    team = ServiceAllocation(namespace_selectors=(LabelSelector(match_labels=(("team", "a"),)),))
    allocator = Allocator(config(pool("team-a", "10.0.0.0/30", service_allocation=team)))
    assert allocator.assign(request("x/s", namespace_labels=(("team", "a"),))).pool == "team-a"
    assert "no pool available" in error_of(allocator, request("y/s", namespace_labels=(("team", "b"),)))


def test_sharing_same_key_disjoint_ports() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/29")))
    dns_udp = request("ns/udp", sharing_key="dns", ports=((53, "UDP"),))
    dns_tcp = request("ns/tcp", sharing_key="dns", ports=((53, "TCP"),))
    assert allocator.assign(request("ns/other")).ips == (ip("10.0.0.0"),)
    shared = allocator.assign(dns_udp).ips
    assert shared == (ip("10.0.0.1"),)
    assert allocator.assign(dns_tcp).ips == shared
    assert allocator.holders(shared[0]) == {"ns/udp", "ns/tcp"}
    assert allocator.pool_stats()["p"].in_use == 2
    # Refcount: the IP stays taken until its last holder lets go.
    allocator.release("ns/udp")
    assert allocator.assign(request("ns/x")).ips == (ip("10.0.0.2"),)
    allocator.release("ns/tcp")
    assert allocator.assign(request("ns/y")).ips == (ip("10.0.0.1"),)
    checked(allocator)


@pytest.mark.parametrize(
    ("first", "second", "problem"),
    [
        ({"sharing_key": "k"}, {"sharing_key": None}, "allow-shared-ip is not set on both"),
        ({"sharing_key": "k"}, {"sharing_key": "j"}, "their allow-shared-ip keys differ"),
        ({"sharing_key": "k"}, {"sharing_key": "k", "ports": ((80, "TCP"),)}, "port 80/TCP is already"),
        (
            {"sharing_key": "k", "etp": "Cluster"},
            {"sharing_key": "k", "etp": "Local", "ports": ((81, "TCP"),)},
            "externalTrafficPolicy differs",
        ),
        (
            {"sharing_key": "k", "etp": "Local"},
            {"sharing_key": "k", "etp": "Local", "ports": ((81, "TCP"),), "selector": (("app", "y"),)},
            "identical pod selectors",
        ),
    ],
)
def test_sharing_refused(first: dict[str, object], second: dict[str, object], problem: str) -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/30")))
    allocator.assign(request("ns/a", **first))  # type: ignore[arg-type]
    reason = error_of(allocator, request("ns/b", requested=("10.0.0.0",), **second))  # type: ignore[arg-type]
    assert '"10.0.0.0" is already in use by ns/a' in reason and problem in reason
    # Without a requested IP the second Service simply gets another address.
    assert allocator.assign(request("ns/b", **second)).ips == (ip("10.0.0.1"),)  # type: ignore[arg-type]


def test_sharing_local_with_identical_selectors() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/30")))
    a = allocator.assign(request("ns/a", sharing_key="k", etp="Local"))
    b = allocator.assign(request("ns/b", sharing_key="k", etp="Local", ports=((443, "TCP"),)))
    assert a.ips == b.ips


def test_dual_stack() -> None:
    allocator = Allocator(
        config(pool("v4", "10.0.0.0/30"), pool("both", "10.1.0.0/30", "fd00::/126"), pool("v6", "fd01::/126"))
    )
    dual = allocator.assign(request("ns/d", families=(4, 6), require_all=True))
    assert dual == Assignment("ns/d", (ip("10.1.0.0"), ip("fd00::")), "both")
    reverse = allocator.assign(request("ns/r", families=(6, 4), require_all=True))
    assert reverse.ips == (ip("fd00::1"), ip("10.1.0.1"))
    assert allocator.assign(request("ns/six", families=(6,))).pool == "both"  # by name: "both" < "v6"
    # Requested dual-stack IPs must come from one pool.
    reason = error_of(
        allocator, request("ns/x", families=(4, 6), require_all=True, requested=("10.0.0.3", "fd01::3"))
    )
    assert "in different pools" in reason
    # Pool "both" runs out of IPv6: RequireDualStack fails, PreferDualStack settles for IPv4.
    allocator.assign(request("ns/fill", families=(6,), pool="both"))
    assert allocator.pool_stats()["both"].ipv6_in_use == 4
    assert error_of(allocator, request("ns/req", families=(4, 6), require_all=True, pool="both")) == (
        'no available IPs in pool "both"'
    )
    # No pool can give both families any more: the first pool by name giving one wins.
    prefer = allocator.assign(request("ns/pref", families=(4, 6)))
    assert prefer == Assignment("ns/pref", (ip("10.1.0.2"),), "both")
    assert 'pool "v4" has no IPv6 addresses' in error_of(
        allocator, request("ns/q", families=(4, 6), require_all=True, pool="v4")
    )
    checked(allocator)


def test_avoid_buggy_ips() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.253-10.0.1.2", avoid_buggy_ips=True)))
    got = [allocator.assign(request(f"ns/s{n}")).ips[0] for n in range(4)]
    assert got == [ip("10.0.0.253"), ip("10.0.0.254"), ip("10.0.1.1"), ip("10.0.1.2")]
    assert error_of(allocator, request("ns/more")) == 'no available IPs in pool "p"'
    assert allocator.pool_stats()["p"] == PoolStats(4, 4, 4, 4, 0, 0)
    reason = error_of(allocator, request("ns/buggy", requested=("10.0.0.255",)))
    assert 'ends in .0 or .255 and pool "p" has avoid-buggy-ips set' in reason
    # Released addresses come back, and .0/.255 still never do.
    allocator.release("ns/s1")
    assert allocator.assign(request("ns/again")).ips == (ip("10.0.0.254"),)
    checked(allocator)


def test_avoid_buggy_ips_large_pool_stays_compact() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/16", avoid_buggy_ips=True)))
    ips = [allocator.assign(request(f"ns/s{n}")).ips[0] for n in range(600)]
    assert all(int(a) & 0xFF not in (0, 255) for a in ips)
    assert ips[:2] == [ip("10.0.0.1"), ip("10.0.0.2")] and ips[254] == ip("10.0.1.1")
    assert len(set(ips)) == 600
    assert allocator.pool_stats()["p"].total == 65536 - 512
    checked(allocator)


def test_set_config_keeps_valid_and_withdraws_the_rest() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/29")))
    for n in range(6):
        allocator.assign(request(f"ns/s{n}"))
    withdrawn = allocator.set_config(config(pool("p", "10.0.0.0-10.0.0.3"), pool("q", "10.0.1.0/30")))
    assert withdrawn == ["ns/s4", "ns/s5"]
    assert allocator.assignment("ns/s4") is None
    assert [allocator.assignment(f"ns/s{n}") for n in range(4)] == [
        Assignment(f"ns/s{n}", (ip(f"10.0.0.{n}"),), "p") for n in range(4)
    ]
    assert allocator.assign(request("ns/s4")).ips == (ip("10.0.1.0"),)
    checked(allocator)


def test_set_config_avoid_buggy_turning_on_withdraws_dot_zero() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/30")))
    allocator.assign(request("ns/zero"))
    allocator.assign(request("ns/one"))
    assert allocator.set_config(config(pool("p", "10.0.0.0/30", avoid_buggy_ips=True))) == ["ns/zero"]
    assert allocator.assignment("ns/one") == Assignment("ns/one", (ip("10.0.0.1"),), "p")
    assert allocator.assign(request("ns/zero")).ips == (ip("10.0.0.2"),)
    checked(allocator)


def test_set_config_renamed_pool_and_scoping() -> None:
    allocator = Allocator(config(pool("old", "10.0.0.0/30")))
    allocator.assign(request("ns/auto"))
    allocator.assign(request("ns/pinned", pool="old"))
    allocator.assign(request("other/x"))
    scoped = ServiceAllocation(namespaces=("ns",))
    assert allocator.set_config(config(pool("new", "10.0.0.0/30", service_allocation=scoped))) == [
        "ns/pinned",
        "other/x",
    ]
    assert allocator.assignment("ns/auto") == Assignment("ns/auto", (ip("10.0.0.0"),), "new")
    checked(allocator)


def test_reassign_on_request_changes() -> None:
    allocator = Allocator(config(pool("a", "10.0.0.0/29"), pool("b", "10.0.1.0/29", "fd00::/125")))
    assert allocator.assign(request("ns/s")).ips == (ip("10.0.0.0"),)
    # Same IP when nothing relevant changed, even the ports.
    assert allocator.assign(request("ns/s", ports=((8080, "TCP"),))).ips == (ip("10.0.0.0"),)
    # Adding an address-pool annotation naming the current pool keeps the IP; another pool moves it.
    assert allocator.assign(request("ns/s", pool="a")).ips == (ip("10.0.0.0"),)
    assert allocator.assign(request("ns/s", pool="b")) == Assignment("ns/s", (ip("10.0.1.0"),), "b")
    # Requested IP change.
    assert allocator.assign(request("ns/s", requested=("10.0.1.5",))).ips == (ip("10.0.1.5"),)
    # Single -> PreferDualStack adds an IPv6 from the same pool and keeps the IPv4.
    both = allocator.assign(request("ns/s", pool="b", families=(4, 6)))
    assert both.ips == (ip("10.0.1.5"), ip("fd00::"))
    # Dual -> single keeps the remaining family's IP and frees the other.
    assert allocator.assign(request("ns/s", pool="b", families=(6,))).ips == (ip("fd00::"),)
    assert allocator.assign(request("ns/t", families=(4, 6), pool="b")).ips == (ip("10.0.1.0"), ip("fd00::1"))
    checked(allocator)


def test_reassign_when_sharing_breaks() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/29")))
    a = allocator.assign(request("ns/a", sharing_key="k"))
    assert allocator.assign(request("ns/b", sharing_key="k", ports=((81, "TCP"),))).ips == a.ips
    # b now clashes on port 80 with a: it moves, a keeps its IP.
    assert allocator.assign(request("ns/b", sharing_key="k", ports=((80, "TCP"),))).ips == (ip("10.0.0.1"),)
    assert allocator.assignment("ns/a") == a
    # A lone holder may change its sharing key in place.
    assert allocator.assign(request("ns/a", sharing_key="other")).ips == a.ips
    checked(allocator)


def test_failed_reassign_releases() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/30")))
    allocator.assign(request("ns/a"))
    error_of(allocator, request("ns/a", pool="gone"))
    assert allocator.assignment("ns/a") is None
    assert allocator.pool_stats()["p"].in_use == 0


def test_restore() -> None:
    cfg = config(pool("a", "10.0.0.0/29"), pool("b", "10.0.1.0/29", auto_assign=False))
    allocator = Allocator(cfg)
    kept = allocator.restore(request("ns/x"), [ip("10.0.0.5")])
    assert kept == Assignment("ns/x", (ip("10.0.0.5"),), "a")
    assert allocator.restore(request("ns/x"), [ip("10.0.0.5")]) == kept  # idempotent
    # A Service that got an autoAssign=false pool's IP through an annotation keeps it.
    assert allocator.restore(request("ns/y", pool="b"), [ip("10.0.1.1")]) is not None
    # Not adoptable: outside every pool, taken incompatibly, wrong pool, wrong family, not the requested IP.
    assert allocator.restore(request("ns/z"), [ip("10.9.0.1")]) is None
    assert allocator.restore(request("ns/z"), [ip("10.0.0.5")]) is None
    assert allocator.restore(request("ns/z", pool="b"), [ip("10.0.0.6")]) is None
    assert allocator.restore(request("ns/z", families=(6,)), [ip("10.0.0.6")]) is None
    assert allocator.restore(request("ns/z", requested=("10.0.0.7",)), [ip("10.0.0.6")]) is None
    assert allocator.restore(request("ns/z"), []) is None
    assert allocator.assignment("ns/z") is None
    # Sharers both come back onto one IP.
    assert allocator.restore(request("ns/s1", sharing_key="k"), [ip("10.0.0.2")]) is not None
    assert (
        allocator.restore(request("ns/s2", sharing_key="k", ports=((81, "TCP"),)), [ip("10.0.0.2")])
        is not None
    )
    # Restored IPs are not handed out again.
    assert allocator.assign(request("ns/new")).ips == (ip("10.0.0.0"),)
    assert allocator.assign(request("ns/new2")).ips == (ip("10.0.0.1"),)
    assert allocator.assign(request("ns/new3")).ips == (ip("10.0.0.3"),)
    checked(allocator)


def test_pool_stats() -> None:
    allocator = Allocator(config(pool("p", "10.0.0.0/24", "fd00::/64"), pool("empty", "10.1.0.0/30")))
    allocator.assign(request("ns/a", families=(4, 6)))
    allocator.assign(request("ns/b", pool="p"))
    allocator.assign(request("ns/shares", pool="p", sharing_key="k"))
    allocator.assign(request("ns/shares2", pool="p", sharing_key="k", ports=((81, "TCP"),)))
    stats = allocator.pool_stats()
    assert stats["p"] == PoolStats(
        total=256 + 2**64, in_use=4, ipv4_total=256, ipv4_in_use=3, ipv6_total=2**64, ipv6_in_use=1
    )
    assert stats["empty"] == PoolStats(4, 0, 4, 0, 0, 0)


def test_memory_independent_of_pool_size() -> None:
    def cost(addresses: str) -> int:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            allocator = Allocator(config(pool("p", addresses)))
            for n in range(20):
                allocator.assign(request(f"ns/s{n}", families=(int((addresses.count(":") and 6) or 4),)))
            after = tracemalloc.get_traced_memory()[0]
            assert allocator.consistency_problems() == []
            return after - before
        finally:
            tracemalloc.stop()

    small, huge = cost("10.0.0.0/27"), cost("fd00::/108")  # 2^5 vs 2^20 addresses
    # Big IPv6 integers cost a few bytes more per object; no per-address storage anywhere.
    assert huge < small * 1.5 + 4096, (small, huge)


def test_two_thousand_allocations_in_a_huge_pool_are_consecutive() -> None:
    # Cost per assign: test_policy_examples.py::test_assign_work_does_not_grow_with_addresses_in_use
    allocator = Allocator(config(pool("p", "10.0.0.0/8")))
    for n in range(2000):
        allocator.assign(request(f"ns/s{n}"))
    assert allocator.assignment("ns/s1999") == Assignment("ns/s1999", (ip("10.0.7.207"),), "p")
    assert allocator.pool_stats()["p"].in_use == 2000


def test_top_up_keeps_family_order() -> None:
    # Regression (found by the property test): a kept IPv4 plus a new IPv6 must follow the families' order.
    allocator = Allocator(config(pool("p", "10.0.0.0/30", "fd00::/126")))
    assert allocator.assign(request("ns/s")).ips == (ip("10.0.0.0"),)
    assert allocator.assign(request("ns/s", families=(6, 4))).ips == (ip("fd00::"), ip("10.0.0.0"))
    assert allocator.restore(request("ns/t", families=(6, 4)), [ip("10.0.0.1"), ip("fd00::1")]) == Assignment(
        "ns/t", (ip("fd00::1"), ip("10.0.0.1")), "p"
    )


FOREIGN = 'cannot assign 10.0.0.0: "10.0.0.0" is already in use by a Service in another namespace'


def test_a_refusal_never_names_another_namespace_or_any_key() -> None:
    """The reason becomes an Event in the requester's namespace (issue 8: tenant A read tenant B's Service
    name and sharing key in its own AllocationFailed event)."""
    allocator = Allocator(config(pool("p", "10.0.0.0/30")))
    allocator.assign(request("tenant-b/svc-b1", sharing_key="bob-secret-key"))
    for second in (
        request("tenant-a/svc-a1", requested=("10.0.0.0",), sharing_key="alice-key", ports=((443, "TCP"),)),
        request("tenant-a/svc-a1", requested=("10.0.0.0",), sharing_key="bob-secret-key"),  # ports clash
        request("tenant-a/svc-a1", requested=("10.0.0.0",)),
    ):
        reason = error_of(allocator, second)
        assert reason == FOREIGN
    # Within one namespace the holder may be named (its user can read it anyway), never the keys.
    reason = error_of(allocator, request("tenant-b/svc-b2", requested=("10.0.0.0",), sharing_key="other"))
    assert "tenant-b/svc-b1" in reason and "bob-secret-key" not in reason and "other" not in reason


def test_namespace_ip_sharing_keeps_keys_within_one_namespace() -> None:
    shared = pool("p", "10.0.0.0/30")
    allocator = Allocator(config(replace(shared, ip_sharing="namespace")))
    bob = allocator.assign(request("tenant-b/b1", sharing_key="k"))
    # Alice guessed the key: under MetalLB's rule she would share Bob's IP; here she gets her own.
    alice = allocator.assign(request("tenant-a/a1", sharing_key="k", ports=((443, "TCP"),)))
    assert alice.ips != bob.ips
    reason = error_of(allocator, request("tenant-a/a2", requested=(str(bob.ips[0]),), sharing_key="k"))
    assert reason.endswith('another namespace (pool "p" shares IPs only between Services of one namespace)')
    # Bob's own Services still share.
    assert allocator.assign(request("tenant-b/b2", sharing_key="k", ports=((443, "TCP"),))).ips == bob.ips
    checked(allocator)


def test_narrowing_ip_sharing_keeps_the_first_holder() -> None:
    shared = pool("p", "10.0.0.0/30")
    allocator = Allocator(config(shared))
    bob = allocator.assign(request("tenant-b/b1", sharing_key="k"))
    alice = allocator.assign(request("tenant-a/a1", sharing_key="k", ports=((443, "TCP"),)))
    assert alice.ips == bob.ips  # MetalLB's rule: the same key shares, whatever the namespace
    withdrawn = allocator.set_config(config(replace(shared, ip_sharing="namespace")))
    assert withdrawn == ["tenant-a/a1"]
    assert allocator.assignment("tenant-b/b1") == bob
    checked(allocator)
