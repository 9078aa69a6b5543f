"""The pool model at its edges: inclusive ranges, families, avoid-buggy-ips counting and membership, sizes,
and which Services a serviceAllocation admits."""

from __future__ import annotations

import ipaddress

import pytest

from common.pools import AddressRange, Config, Pool, ServiceAllocation, buggy_count, is_buggy_ip
from common.selectors import LabelSelector

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


def rng(first: str, last: str) -> AddressRange:
    return AddressRange(ipaddress.ip_address(first), ipaddress.ip_address(last))


def test_buggy_count_agrees_with_counting_one_by_one() -> None:
    for first in [*range(0, 10), *range(250, 262), *range(500, 520, 3), 65535, 65536]:
        for length in [0, 1, 2, 5, 254, 255, 256, 257, 511, 512, 513, 1000]:
            last = first + length
            expected = sum(1 for value in range(first, last + 1) if value % 256 in (0, 255))
            assert buggy_count(first, last) == expected, (first, last)


def test_is_buggy_ip_only_for_ipv4_dot_zero_and_dot_255() -> None:
    assert is_buggy_ip(V4("10.0.1.0")) and is_buggy_ip(V4("10.0.0.255"))
    assert not is_buggy_ip(V4("10.0.0.1")) and not is_buggy_ip(V4("10.0.0.254"))
    assert not is_buggy_ip(V6("fd00::")) and not is_buggy_ip(V6("fd00::ff"))


def test_address_range_is_inclusive_and_of_one_family() -> None:
    r = rng("10.0.0.10", "10.0.0.20")
    assert (r.size, r.version) == (11, 4)
    assert V4("10.0.0.10") in r and V4("10.0.0.20") in r
    assert V4("10.0.0.9") not in r and V4("10.0.0.21") not in r
    assert V6("::a00:a") not in r, "an IPv6 address with the same integer is not in an IPv4 range"
    assert "10.0.0.15" not in r, "only address objects are members"
    single = rng("fd00::1", "fd00::1")
    assert (single.size, single.version) == (1, 6) and V6("fd00::1") in single


def test_address_range_refuses_mixed_families_and_reversed_bounds() -> None:
    with pytest.raises(ValueError) as mixed:
        rng("10.0.0.1", "fd00::1")
    assert str(mixed.value) == "10.0.0.1 and fd00::1 are of different address families"
    with pytest.raises(ValueError) as reversed_:
        rng("10.0.0.2", "10.0.0.1")
    assert str(reversed_.value) == "10.0.0.2 is after 10.0.0.1"


def test_address_range_prints_as_a_cidr_when_it_is_one() -> None:
    assert str(rng("10.0.0.0", "10.0.0.255")) == "10.0.0.0/24"
    assert str(rng("10.0.0.1", "10.0.0.1")) == "10.0.0.1/32"
    assert str(rng("10.0.0.1", "10.0.0.2")) == "10.0.0.1-10.0.0.2"


def test_pool_membership_and_size_with_and_without_avoid_buggy_ips() -> None:
    ranges = (rng("10.0.0.254", "10.0.1.1"), rng("10.0.2.0", "10.0.2.0"), rng("fd00::ff", "fd00::100"))
    plain = Pool("p", ranges)
    careful = Pool("p", ranges, avoid_buggy_ips=True)
    for ip in ("10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1", "10.0.2.0", "fd00::ff", "fd00::100"):
        assert plain.contains(ipaddress.ip_address(ip)), ip
    assert [careful.contains(V4(ip)) for ip in ("10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1")] == [
        True,
        False,
        False,
        True,
    ]
    assert not careful.contains(V4("10.0.2.0"))
    assert careful.contains(V6("fd00::ff")) and careful.contains(V6("fd00::100"))
    assert not plain.contains(V4("10.0.3.1"))
    assert (plain.size(), plain.size(4), plain.size(6)) == (7, 5, 2)
    assert (careful.size(), careful.size(4), careful.size(6)) == (4, 2, 2)
    assert plain.versions() == (4, 6) and Pool("v6", (ranges[2],)).versions() == (6,)


def test_config_finds_pools_by_name() -> None:
    a, b = Pool("a", (rng("10.0.0.0", "10.0.0.1"),)), Pool("b", (rng("10.0.1.0", "10.0.1.1"),))
    config = Config(pools=(a, b))
    assert config.pool("b") is b and config.pool("a") is a and config.pool("c") is None


def test_service_allocation_needs_every_criterion_that_is_set() -> None:
    team = LabelSelector(match_labels=(("team", "a"),))
    other_team = LabelSelector(match_labels=(("team", "b"),))
    web = LabelSelector(match_labels=(("tier", "web"),))
    everyone = ServiceAllocation(priority=5)
    assert everyone.admits("any", {}, {})
    by_name = ServiceAllocation(namespaces=("ns1", "ns2"))
    assert by_name.admits("ns2", {}, {}) and not by_name.admits("ns3", {}, {})
    by_labels = ServiceAllocation(namespace_selectors=(other_team, team))  # any one selector is enough
    assert by_labels.admits("x", {"team": "a"}, {}) and not by_labels.admits("x", {"team": "c"}, {})
    by_service = ServiceAllocation(service_selectors=(web,))
    assert by_service.admits("x", {}, {"tier": "web"}) and not by_service.admits("x", {}, {"tier": "db"})
    all_three = ServiceAllocation(namespaces=("ns1",), namespace_selectors=(team,), service_selectors=(web,))
    assert all_three.admits("ns1", {"team": "a"}, {"tier": "web"})
    assert not all_three.admits("ns2", {"team": "a"}, {"tier": "web"})
    assert not all_three.admits("ns1", {"team": "b"}, {"tier": "web"})
    assert not all_three.admits("ns1", {"team": "a"}, {"tier": "db"})
