"""Strict address text: only the forms MetalLB and the API server accept name an IP."""

from __future__ import annotations

import ipaddress

import pytest

from common.addresses import parse_cidr, parse_ip


@pytest.mark.parametrize("text", ["10.0.0.1", "fd00::1", "2001:db8::3", "::", "255.255.255.255"])
def test_plain_addresses(text: str) -> None:
    assert parse_ip(text) == ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2001:db8::3%eth0", 'zone "%eth0" is not allowed'),
        ("fe80::1%1", 'zone "%1" is not allowed'),
        ("::ffff:198.51.100.7", "IPv4-mapped IPv6 addresses are not allowed"),
        ("10.0.0.1 ", "contains whitespace"),
        ("\t10.0.0.1", "contains whitespace"),
        ("10.0. 0.1", "contains whitespace"),
        ("10.0.0.01", "not an IP address"),
        ("10.0.0", "not an IP address"),
        ("", "not an IP address"),
    ],
)
def test_rejected_addresses(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_ip(text)
    assert str(info.value) == problem


def test_cidr() -> None:
    interface = parse_cidr("10.0.0.1/24")
    assert (str(interface.ip), str(interface.network)) == ("10.0.0.1", "10.0.0.0/24")
    assert str(parse_cidr("fd00::/120").network) == "fd00::/120"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("10.0.0.0/24\n", "contains whitespace"),
        ("10.0.0.0 /24", "contains whitespace"),
        ("10.0.0.0/255.255.255.0", "prefix length must be a number"),
        ("10.0.0.0/", "prefix length must be a number"),
        ("10.0.0.0/33", "10.0.0.0/33"),
        ("::ffff:10.0.0.0/120", "IPv4-mapped"),
        ("fe80::%eth0/64", "zone"),
        ("10.0.0.0", "expected address/prefix-length"),
    ],
)
def test_rejected_cidrs(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_cidr(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("10.0.0.0", "expected address/prefix-length"),
        ("10.0.0.0/24/24", 'prefix length must be a number, got "24/24"'),
        ("10.0.0.0/ 24", "contains whitespace"),
    ],
)
def test_rejected_cidrs_in_full(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_cidr(text)
    assert str(info.value) == problem


def test_an_ipv6_address_without_a_zone_or_ipv4_inside_is_fine() -> None:
    assert parse_ip("fd00::a") == ipaddress.IPv6Address("fd00::a")
    assert parse_cidr("fd00::/64") == ipaddress.IPv6Interface("fd00::/64")
