"""Host-local pod IPAM: reserved addresses, pairing of IPv4/IPv6, no immediate reuse, restore, exhaustion."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.ipam import IpamError, PodIpam


def test_first_pod_gets_second_host_and_paired_ipv6() -> None:
    ipam = PodIpam("10.244.1.0/24", "fd00:244:1::/64")
    assert ipam.gateway4 == "10.244.1.1"
    assert ipam.gateway6 == "fd00:244:1::1"
    first = ipam.allocate("default/a")
    assert (first.ipv4, first.ipv6, first.prefix4, first.prefix6) == ("10.244.1.2", "fd00:244:1::2", 24, 64)
    assert first.ips == ["10.244.1.2", "fd00:244:1::2"]
    assert ipam.allocate("default/a") == first  # idempotent
    assert ipam.allocate("default/b").ipv4 == "10.244.1.3"


def test_released_address_is_not_reused_at_once() -> None:
    ipam = PodIpam("10.244.2.0/24")
    a = ipam.allocate("a")
    ipam.release("a")
    b = ipam.allocate("b")
    assert b.ipv4 != a.ipv4
    assert b.ipv6 is None and b.ips == [b.ipv4]
    assert ipam.owner_of(b.ipv4) == "b" and ipam.owner_of(a.ipv4) is None


def test_exhaustion_and_wraparound() -> None:
    ipam = PodIpam("10.0.0.0/29")  # .2-.6 usable: network, gateway and broadcast are reserved
    got = [ipam.allocate(str(i)).ipv4 for i in range(5)]
    assert got == [f"10.0.0.{n}" for n in range(2, 7)]
    with pytest.raises(IpamError, match="exhausted"):
        ipam.allocate("more")
    ipam.release("2")
    assert ipam.allocate("again").ipv4 == "10.0.0.4"


def test_restore_records_existing_addresses() -> None:
    ipam = PodIpam("10.244.1.0/24", "fd00:244:1::/64")
    assert ipam.restore("a", "10.244.1.9").ipv6 == "fd00:244:1::9"
    assert ipam.allocate("a").ipv4 == "10.244.1.9"
    with pytest.raises(IpamError, match="already belongs to a"):
        ipam.restore("b", "10.244.1.9")
    with pytest.raises(IpamError, match="outside"):
        ipam.restore("c", "10.9.9.9")
    with pytest.raises(IpamError, match="reserved"):
        ipam.restore("d", "10.244.1.1")
    with pytest.raises(IpamError, match="not an IPv4"):
        ipam.restore("e", "bogus")


@pytest.mark.parametrize(
    ("cidr", "cidr6", "message"),
    [
        ("10.244.1.1/24", None, "not a valid network"),
        ("fd00::/64", None, "not an IPv4 network"),
        ("10.0.0.0/30", None, "too small"),
        ("10.0.0.0/24", "10.1.0.0/24", "not an IPv6 network"),
        ("10.0.0.0/24", "fd00::/126", "too small"),
    ],
)
def test_bad_cidrs(cidr: str, cidr6: str | None, message: str) -> None:
    with pytest.raises(IpamError, match=message):
        PodIpam(cidr, cidr6)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=120))
def test_never_hands_out_a_taken_or_reserved_address(ops: list[tuple[bool, int]]) -> None:
    ipam = PodIpam("10.1.0.0/26")
    held: dict[str, str] = {}
    for allocate, n in ops:
        key = f"pod{n}"
        if allocate:
            try:
                ip = ipam.allocate(key).ipv4
            except IpamError:
                assert len(held) == ipam.capacity
                continue
            assert ip == held.get(key, ip)
            assert ip not in {v for k, v in held.items() if k != key}
            addr = ipaddress.IPv4Address(ip)
            assert addr in ipam.net4 and str(addr) not in ("10.1.0.0", "10.1.0.1", "10.1.0.63")
            held[key] = ip
        else:
            ipam.release(key)
            held.pop(key, None)
        assert len(ipam) == len(held)
