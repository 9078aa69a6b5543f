"""Configuration parsing: both sources, every rule, with the exact object and field in each error."""

from __future__ import annotations

import ipaddress
import tracemalloc
from typing import Any

import pytest

from common.config import (
    MAX_CONFIG_CHARACTERS,
    ConfigProblem,
    build_config,
    parse_address_range,
    parse_configmap,
    parse_ip_address_pool,
    parse_l2_advertisement,
    rebuild_config,
)
from common.errors import ConfigError
from common.pools import AddressRange, Pool

CM = "ConfigMap metallb-system/config"

TUTORIAL = """\
address-pools:
- name: default
  protocol: layer2
  addresses:
  - 192.168.10.90-192.168.10.100
"""


def cm(text: str) -> dict[str, str]:
    return {"config": text}


def pool_yaml(addresses: str, extra: str = "", name: str = "a") -> str:
    return f"address-pools:\n- name: {name}\n  protocol: layer2\n  addresses: {addresses}\n{extra}"


def cm_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_configmap(cm(text), CM)
    assert info.value.source == CM
    return str(info.value)


def ipap(name: str, spec: Any, namespace: str = "metallb-system", labels: Any = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels is not None:
        metadata["labels"] = labels
    return {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": metadata, "spec": spec}


def test_tutorial_configmap() -> None:
    (pool,) = parse_configmap(cm(TUTORIAL), CM)
    assert pool.name == "default"
    assert pool.protocol == "layer2"
    assert pool.auto_assign is True
    assert pool.avoid_buggy_ips is False
    assert pool.source == CM
    assert pool.ranges == (
        AddressRange(ipaddress.IPv4Address("192.168.10.90"), ipaddress.IPv4Address("192.168.10.100")),
    )
    assert pool.size() == 11


def test_missing_or_empty_config_means_no_pools() -> None:
    assert parse_configmap(None, CM) == ()
    assert parse_configmap({}, CM) == ()
    assert parse_configmap(cm(""), CM) == ()
    assert parse_configmap(cm("address-pools: []"), CM) == ()


def test_flags_and_ipv6() -> None:
    text = pool_yaml("[fd00::/120, 10.0.0.0/24]", "  auto-assign: false\n  avoid-buggy-ips: true\n")
    (pool,) = parse_configmap(cm(text), CM)
    assert pool.auto_assign is False
    assert pool.avoid_buggy_ips is True
    assert [r.version for r in pool.ranges] == [6, 4]
    # avoid-buggy-ips: .0 and .255 of the /24 are not assignable.
    assert pool.size(4) == 254
    assert pool.size(6) == 256


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "{{{",
            "config: invalid YAML at line 1, column 4: expected the node content, but found '<stream end>'",
        ),
        ("- a\n- b", "config: must be a YAML mapping, got list"),
        ("address-pools: 5", "address-pools: must be a list, got integer"),
        (
            "adress-pools: []",
            'adress-pools: unknown field "adress-pools" (expected one of address-pools, peers, '
            "bgp-communities, bfd-profiles)",
        ),
        (
            pool_yaml("[10.0.0.0/24]", "  auto-asign: true\n"),
            'address-pools[0].auto-asign: unknown field "auto-asign" in an address pool',
        ),
        (
            pool_yaml("[10.0.0.0/24]", "  auto-assign: maybe\n"),
            "address-pools[0].auto-assign: must be a boolean, got string 'maybe'",
        ),
        (
            pool_yaml("[10.0.0.0/24]", "  avoid-buggy-ips: 1\n"),
            "address-pools[0].avoid-buggy-ips: must be a boolean, got integer 1",
        ),
        (pool_yaml("10.0.0.0/24"), "address-pools[0].addresses: must be a list, got string"),
        (pool_yaml("[]"), "address-pools[0].addresses: pool has no addresses"),
        (pool_yaml("[10.0.0.0/24, 5]"), "address-pools[0].addresses[1]: must be a string, got integer 5"),
        (
            pool_yaml("[10.0.0.0/24, 10.0.0.9-10.0.0.1]"),
            'address-pools[0].addresses[1]: invalid range "10.0.0.9-10.0.0.1": first > last',
        ),
        (
            pool_yaml("[10.0.0.1/24]"),
            'address-pools[0].addresses[0]: invalid CIDR "10.0.0.1/24": host bits set (did you mean '
            '"10.0.0.0/24"?)',
        ),
        (
            pool_yaml("[10.0.0.0/33]"),
            "address-pools[0].addresses[0]: invalid CIDR \"10.0.0.0/33\": '10.0.0.0/33' does not appear to "
            "be an IPv4 or IPv6 interface",
        ),
        (
            pool_yaml("[10.0.0.256/24]"),
            'address-pools[0].addresses[0]: invalid CIDR "10.0.0.256/24": not an IP address',
        ),
        (
            pool_yaml("[10.0.0.1]"),
            'address-pools[0].addresses[0]: invalid CIDR "10.0.0.1": expected address/prefix-length or a '
            '"first-last" range',
        ),
        (
            pool_yaml("[10.0.0.1-fd00::1]"),
            'address-pools[0].addresses[0]: invalid range "10.0.0.1-fd00::1": first and last are of '
            "different address families",
        ),
        (
            pool_yaml("[10.0.0.x-10.0.0.9]"),
            'address-pools[0].addresses[0]: invalid range "10.0.0.x-10.0.0.9": invalid first address '
            '"10.0.0.x": not an IP address',
        ),
        (
            "address-pools:\n- protocol: layer2\n  addresses: [10.0.0.0/24]\n",
            "address-pools[0].name: missing pool name",
        ),
        (
            "address-pools:\n- name: a\n  addresses: [10.0.0.0/24]\n",
            'address-pools[0].protocol: missing protocol in pool "a"',
        ),
        (
            "address-pools:\n- name: a\n  protocol: bgp\n  addresses: [10.0.0.0/24]\n",
            'address-pools[0].protocol: protocol "bgp" is not supported: ironlb serves layer2 only',
        ),
        (
            "address-pools:\n- name: a\n  protocol: layer3\n  addresses: [10.0.0.0/24]\n",
            'address-pools[0].protocol: unknown protocol "layer3" (supported: layer2)',
        ),
        (
            "address-pools:\n- name: a\n  protocol: 5\n  addresses: [10.0.0.0/24]\n",
            "address-pools[0].protocol: must be a string, got integer 5",
        ),
        (
            pool_yaml("[10.0.0.0/24]", "  bgp-advertisements: [{aggregation-length: 32}]\n"),
            "address-pools[0].bgp-advertisements: bgp-advertisements are only valid for bgp pools",
        ),
        (
            pool_yaml("[10.0.0.0/24]") + "- name: a\n  protocol: layer2\n  addresses: [10.1.0.0/24]\n",
            'address-pools[1].name: duplicate definition of pool "a" (first at address-pools[0])',
        ),
        ("address-pools: [5]", "address-pools[0]: must be a mapping, got integer"),
    ],
)
def test_configmap_errors_name_the_field(text: str, expected: str) -> None:
    assert cm_error(text) == f"{CM}: {expected}"


def test_config_value_must_be_string() -> None:
    with pytest.raises(ConfigError) as info:
        parse_configmap({"config": 5}, CM)  # type: ignore[dict-item]
    assert str(info.value) == f"{CM}: config: must be a string, got integer"


def test_bgp_sections_alone_are_accepted_and_ignored() -> None:
    text = "peers: []\nbgp-communities: {}\n" + pool_yaml("[10.0.0.0/24]")
    assert [p.name for p in parse_configmap(cm(text), CM)] == ["a"]


@pytest.mark.parametrize(
    ("text", "first", "last"),
    [
        ("10.0.0.7/32", "10.0.0.7", "10.0.0.7"),
        ("fd00::7/128", "fd00::7", "fd00::7"),
        ("10.0.0.7-10.0.0.7", "10.0.0.7", "10.0.0.7"),
        ("10.0.0.1 - 10.0.0.5", "10.0.0.1", "10.0.0.5"),
        ("fd00::1-fd00::ff", "fd00::1", "fd00::ff"),
        ("10.0.0.0/24", "10.0.0.0", "10.0.0.255"),
    ],
)
def test_single_addresses_and_ranges(text: str, first: str, last: str) -> None:
    r = parse_address_range(text)
    assert (str(r.first), str(r.last)) == (first, last)


def test_range_rendering() -> None:
    assert str(parse_address_range("10.0.0.0/24")) == "10.0.0.0/24"
    assert str(parse_address_range("10.0.0.1-10.0.0.5")) == "10.0.0.1-10.0.0.5"


def test_ip_address_pool_full() -> None:
    pool = parse_ip_address_pool(
        ipap(
            "premium",
            {
                "addresses": ["10.0.0.0/28", "fd00::1-fd00::10"],
                "autoAssign": False,
                "avoidBuggyIPs": True,
                "serviceAllocation": {
                    "priority": 5,
                    "namespaces": ["prod"],
                    "namespaceSelectors": [{"matchLabels": {"team": "a"}}],
                    "serviceSelectors": [
                        {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["x"]}]}
                    ],
                },
                "someFutureField": 1,
            },
            labels={"zone": "east"},
        )
    )
    assert pool.name == "premium"
    assert pool.source == "IPAddressPool metallb-system/premium"
    assert pool.auto_assign is False
    assert pool.avoid_buggy_ips is True
    assert pool.labels == (("zone", "east"),)
    allocation = pool.service_allocation
    assert allocation is not None
    assert allocation.priority == 5
    assert allocation.namespaces == ("prod",)
    assert allocation.admits("prod", {"team": "a"}, {"tier": "x"})
    assert not allocation.admits("dev", {"team": "a"}, {"tier": "x"})
    assert not allocation.admits("prod", {"team": "b"}, {"tier": "x"})
    assert not allocation.admits("prod", {"team": "a"}, {"tier": "y"})


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, "spec.addresses: pool has no addresses"),
        ({"addresses": []}, "spec.addresses: pool has no addresses"),
        (
            {"addresses": ["10.0.0.0/24", "bogus"]},
            'spec.addresses[1]: invalid CIDR "bogus": expected address/prefix-length or a "first-last" range',
        ),
        (
            {"addresses": ["10.0.0.0/24"], "autoAssign": "yes"},
            "spec.autoAssign: must be a boolean, got string 'yes'",
        ),
        (
            {"addresses": ["10.0.0.0/24"], "avoidBuggyIPs": 0},
            "spec.avoidBuggyIPs: must be a boolean, got integer 0",
        ),
        (
            {"addresses": ["10.0.0.0/24"], "serviceAllocation": {"priority": "high"}},
            "spec.serviceAllocation.priority: must be an integer, got string 'high'",
        ),
        (
            {"addresses": ["10.0.0.0/24"], "serviceAllocation": {"priority": True}},
            "spec.serviceAllocation.priority: must be an integer, got boolean True",
        ),
        (
            {"addresses": ["10.0.0.0/24"], "serviceAllocation": {"priority": 1.5}},
            "spec.serviceAllocation.priority: must be an integer, got number 1.5",
        ),
        (
            {"addresses": ["10.0.0.0/24"], "serviceAllocation": {"namespaces": "prod"}},
            "spec.serviceAllocation.namespaces: must be a list, got string",
        ),
        (
            {"addresses": ["10.0.0.0/24"], "serviceAllocation": {"serviceSelectors": [{"matchLabel": {}}]}},
            "spec.serviceAllocation.serviceSelectors[0].matchLabel: unknown field 'matchLabel' (expected "
            "matchLabels, matchExpressions)",
        ),
        (
            {
                "addresses": ["10.0.0.0/24"],
                "serviceAllocation": {
                    "namespaceSelectors": [{"matchExpressions": [{"key": "a", "operator": "Near"}]}]
                },
            },
            "spec.serviceAllocation.namespaceSelectors[0].matchExpressions[0].operator: unknown operator "
            "'Near': must be one of In, NotIn, Exists, DoesNotExist",
        ),
        ("not a mapping", "spec: must be a mapping, got string"),
    ],
)
def test_ip_address_pool_errors(spec: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_ip_address_pool(ipap("p", spec))
    assert str(info.value) == f"IPAddressPool metallb-system/p: {expected}"


def test_ip_address_pool_without_name() -> None:
    with pytest.raises(ConfigError, match=r"^IPAddressPool: metadata.name: missing name$"):
        parse_ip_address_pool({"metadata": {}, "spec": {"addresses": ["10.0.0.0/24"]}})


def test_l2_advertisement() -> None:
    adv = parse_l2_advertisement(
        {
            "metadata": {"name": "l2", "namespace": "metallb-system"},
            "spec": {
                "ipAddressPools": ["a", "unknown-is-fine"],
                "ipAddressPoolSelectors": [{"matchLabels": {"zone": "east"}}],
                "nodeSelectors": [
                    {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "Exists"}]}
                ],
                "interfaces": ["eth1"],
            },
        }
    )
    assert adv.name == "l2"
    assert adv.source == "L2Advertisement metallb-system/l2"
    assert adv.ip_address_pools == ("a", "unknown-is-fine")
    assert adv.ip_address_pool_selectors[0].matches({"zone": "east"})
    assert adv.node_selectors[0].matches({"kubernetes.io/hostname": "n1"})
    assert not adv.node_selectors[0].matches({})
    assert adv.interfaces == ("eth1",)
    empty = parse_l2_advertisement({"metadata": {"name": "all", "namespace": "m"}})
    assert empty.ip_address_pools == () and empty.node_selectors == ()
    # Naming an unknown pool is allowed by build_config, as in MetalLB.
    assert build_config((), (adv,)).l2_advertisements == (adv,)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"ipAddressPools": "a"}, "spec.ipAddressPools: must be a list, got string"),
        ({"ipAddressPools": [1]}, "spec.ipAddressPools[0]: must be a string, got integer 1"),
        (
            {"nodeSelectors": [{"matchLabels": {"a": 1}}]},
            "spec.nodeSelectors[0].matchLabels[a]: must be a string, got integer",
        ),
        (
            {"nodeSelectors": [{"matchLabels": {"bad key!": "x"}}]},
            "spec.nodeSelectors[0].matchLabels: invalid label key 'bad key!': name must be 1-63 characters "
            "of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",
        ),
        ({"interfaces": [None]}, "spec.interfaces[0]: must be a string, got null None"),
    ],
)
def test_l2_advertisement_errors(spec: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_l2_advertisement({"metadata": {"name": "l2", "namespace": "m"}, "spec": spec})
    assert str(info.value) == f"L2Advertisement m/l2: {expected}"


def test_overlap_across_sources_names_the_later_pool() -> None:
    cm_pools = parse_configmap(cm(pool_yaml("[10.0.0.0/24]")), CM)
    crd = parse_ip_address_pool(ipap("b", {"addresses": ["192.168.0.0/24", "10.0.0.128/25"]}))
    with pytest.raises(ConfigError) as info:
        build_config((*cm_pools, crd), ())
    assert str(info.value) == (
        'IPAddressPool metallb-system/b: spec.addresses[1]: "10.0.0.128/25" in pool "b" overlaps with '
        f'"10.0.0.0/24" in pool "a" (defined by {CM})'
    )
    with pytest.raises(ConfigError) as info:
        build_config((crd, *cm_pools), ())
    assert str(info.value).startswith(
        f'{CM}: address-pools[0].addresses[0]: "10.0.0.0/24" in pool "a" overlaps'
    )


def test_overlap_within_configmap_and_within_a_pool() -> None:
    text = (
        pool_yaml("[10.0.0.0/24]") + pool_yaml("[10.1.0.0/24, 10.0.0.5-10.0.0.6]", name="b").split("\n", 1)[1]
    )
    with pytest.raises(
        ConfigError, match=r"address-pools\[1\]\.addresses\[1\]: \"10.0.0.5-10.0.0.6\" in pool"
    ):
        build_config(parse_configmap(cm(text), CM), ())
    with pytest.raises(
        ConfigError, match=r"address-pools\[0\]\.addresses\[1\]: \"10.0.0.7/32\" in pool \"a\""
    ):
        build_config(parse_configmap(cm(pool_yaml("[10.0.0.0/24, 10.0.0.7/32]")), CM), ())


def test_overlap_detected_behind_a_long_range() -> None:
    # The sweep must compare with the furthest end so far, not only the previous range.
    a = parse_ip_address_pool(ipap("a", {"addresses": ["10.0.0.0/16"]}))
    b = parse_ip_address_pool(ipap("b", {"addresses": ["10.0.1.0/24"]}))
    c = parse_ip_address_pool(ipap("c", {"addresses": ["10.0.200.0/24"]}))
    with pytest.raises(ConfigError, match=r'pool "c" overlaps with "10\.0\.0\.0/16" in pool "a"'):
        build_config((a, c), ())
    with pytest.raises(ConfigError, match='in pool "b" overlaps'):
        build_config((a, b, c), ())


def test_adjacent_and_cross_family_pools_do_not_overlap() -> None:
    a = parse_ip_address_pool(ipap("a", {"addresses": ["10.0.0.0/25", "fd00::/64"]}))
    b = parse_ip_address_pool(ipap("b", {"addresses": ["10.0.0.128/25", "fd00:0:0:1::/64"]}))
    config = build_config((a, b), ())
    assert config.pool("b") is b
    assert config.pool("zzz") is None


def test_duplicate_names_across_sources() -> None:
    cm_pools = parse_configmap(cm(pool_yaml("[10.0.0.0/24]")), CM)
    crd = parse_ip_address_pool(ipap("a", {"addresses": ["10.1.0.0/24"]}))
    with pytest.raises(ConfigError) as info:
        build_config((*cm_pools, crd), ())
    assert str(info.value) == (
        "IPAddressPool metallb-system/a: metadata.name: "
        f'duplicate definition of pool "a" (also defined by {CM})'
    )


def test_duplicate_yaml_keys_are_rejected_like_go_strict_unmarshal() -> None:
    text = pool_yaml("[10.0.0.0/24]", "  addresses: [10.1.0.0/24]\n")
    assert "config: invalid YAML at line 5, column 3: duplicate key 'addresses'" in cm_error(text)


def test_numeric_pool_name_is_a_string_as_in_go() -> None:
    (pool,) = parse_configmap(cm(pool_yaml("[10.0.0.0/24]", name="2024")), CM)
    assert pool.name == "2024"


CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "config", "namespace": "metallb-system"},
    "data": {"config": "address-pools: [{name: default, protocol: layer2, addresses: [10.0.0.1-10.0.0.2]}]"},
}


def test_config_problems_name_the_object_to_blame() -> None:
    garbage = {**CONFIGMAP, "data": {"config": "address-pools: ["}}
    with pytest.raises(ConfigProblem) as problem:
        rebuild_config(garbage, [], [])
    assert problem.value.target == ("ConfigMap", "metallb-system", "config")

    pool = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "p", "namespace": "metallb-system"},
        "spec": {"addresses": ["10.0.0.2/32"]},
    }
    with pytest.raises(ConfigProblem) as problem:
        rebuild_config(CONFIGMAP, [pool], [])
    # The pool defined later (CRDs come after the ConfigMap) is blamed, as docs/controller.md says.
    assert problem.value.target == ("IPAddressPool", "metallb-system", "p")
    assert str(problem.value) == (
        'IPAddressPool metallb-system/p: spec.addresses[0]: "10.0.0.2/32" in pool "p" overlaps with '
        '"10.0.0.1-10.0.0.2" in pool "default" (defined by ConfigMap metallb-system/config)'
    )

    bad = {**pool, "spec": {"addresses": ["10.1.0.0/99"]}}
    with pytest.raises(ConfigProblem) as problem:
        rebuild_config(None, [bad], [])
    assert problem.value.target == ("IPAddressPool", "metallb-system", "p")
    assert "spec.addresses[0]" in str(problem.value)

    # An object without a namespace is named the same way where it is parsed and where it is blamed.
    loose = {**pool, "metadata": {"name": "pool"}, "spec": {"addresses": ["10.0.0.2/32"]}}
    with pytest.raises(ConfigProblem) as problem:
        rebuild_config(None, [pool, loose], [])
    assert str(problem.value).startswith('IPAddressPool pool: spec.addresses[0]: "10.0.0.2/32"')
    assert problem.value.target == ("IPAddressPool", "", "pool")


# ---- issue 7: input that used to escape the parser as something other than a ConfigError ------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("? [a, b]\n: c\n", "line 1, column 3: a mapping key must be a scalar, got a list"),
        ("{[a]: b}", "line 1, column 2: a mapping key must be a scalar, got a list"),
        ("? {a: b}\n: c\n", "line 1, column 3: a mapping key must be a scalar, got a mapping"),
        ("[" * 3000, "line 1, column 101: nested deeper than 100 levels"),
        ("a: " + "{b: " * 5000 + "1" + "}" * 5000, "line 1, column 397: nested deeper than 100 levels"),
        (  # a timestamp that is no date
            "address-pools: [2001-02-30]",
            "line 1, column 17: invalid timestamp value: day is out of range for month",
        ),
        ("address-pools: [!!bool maybe]", "line 1, column 17: invalid bool value: 'maybe'"),
        (
            "address-pools: [!!int x]",
            "line 1, column 17: invalid int value: invalid literal for int() with base 10: 'x'",
        ),
        (
            "address-pools: [!!float x]",
            "line 1, column 17: invalid float value: could not convert string to float: 'x'",
        ),
    ],
)
def test_hostile_yaml_is_a_config_error(text: str, expected: str) -> None:
    assert cm_error(text) == f"{CM}: config: invalid YAML at {expected}"


def test_reasonable_nesting_is_fine() -> None:
    # bgp sections are accepted and ignored, whatever their (reasonable) depth.
    text = "peers: " + "[" * 40 + "]" * 40 + "\n" + pool_yaml("[10.0.0.0/24]")
    assert [p.name for p in parse_configmap(cm(text), CM)] == ["a"]


def test_yaml_merge_keys_are_accepted_like_go() -> None:
    text = """\
address-pools:
- &base
  name: a
  protocol: layer2
  auto-assign: false
  addresses: [10.0.0.0/30]
- <<: *base
  name: b
  addresses: [10.0.1.0/30]
- <<: [*base]
  name: c
  auto-assign: true
  addresses: [10.0.2.0/30]
"""
    a, b, c = parse_configmap(cm(text), CM)
    assert (a.name, a.auto_assign) == ("a", False)
    assert (b.name, b.protocol, b.auto_assign, str(b.ranges[0])) == ("b", "layer2", False, "10.0.1.0/30")
    assert (c.name, c.auto_assign, str(c.ranges[0])) == ("c", True, "10.0.2.0/30")


def test_explicit_keys_repeated_next_to_a_merge_are_still_duplicates() -> None:
    text = "address-pools:\n- &b {name: a, protocol: layer2, addresses: [10.0.0.0/30]}\n"
    text += "- {<<: *b, name: x, name: y, addresses: [10.0.1.0/30]}\n"
    assert "duplicate key 'name'" in cm_error(text)


def test_merge_expansion_is_bounded() -> None:
    # One mapping of 200 keys merged 100 times: 20,000 keys from 30 KiB of text (PyYAML copies the merged
    # pairs at every reference, so a larger text makes it quadratic).
    big = "{" + ", ".join(f"k{i}: 1" for i in range(200)) + "}"
    text = f"peers:\n- &big {big}\n" + "".join("- {<<: *big}\n" for _ in range(100))
    assert (
        cm_error(text)
        == f"{CM}: config: invalid YAML at line 53, column 3: merge keys expand to more than 10000 keys"
    )
    # Exactly the limit is fine, and so are a few merges.
    text = f"peers:\n- &big {big}\n" + "".join("- {<<: *big}\n" for _ in range(50))
    assert parse_configmap(cm(text), CM) == ()
    text = f"peers:\n- &big {big}\n" + "".join("- {<<: *big}\n" for _ in range(10))
    assert parse_configmap(cm(text), CM) == ()


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("10.0.0.0/24 ", 'invalid CIDR "10.0.0.0/24 ": contains whitespace'),
        ("10.0.0.0/24\t", "contains whitespace"),
        (" 10.0.0.0/24", "contains whitespace"),
        ("10.0.0.0/24\\n", "contains whitespace"),  # a YAML escape: a real newline
        ("10.0.0.0/255.255.255.0", "prefix length must be a number"),
        ("::ffff:198.51.100.0/124", "IPv4-mapped IPv6 addresses are not allowed"),
        ("::ffff:198.51.100.1-::ffff:198.51.100.9", "IPv4-mapped IPv6 addresses are not allowed"),
        ("fe80::%eth0/64", 'zone "%eth0" is not allowed'),
        ("fd00::1%eth0-fd00::9", 'zone "%eth0" is not allowed'),
    ],
)
def test_addresses_metallb_rejects(entry: str, expected: str) -> None:
    message = cm_error(pool_yaml(f'["{entry}"]'))
    assert "address-pools[0].addresses[0]: " in message, message
    assert expected in message, message
    addresses = [entry.replace("\\n", "\n")]
    pool = {"metadata": {"name": "p", "namespace": "metallb-system"}, "spec": {"addresses": addresses}}
    with pytest.raises(ConfigError, match=r"spec\.addresses\[0\]"):
        parse_ip_address_pool(pool)


def _alias_bomb(levels: int = 9) -> str:
    """The classic "billion laughs": 9 aliases of 9 aliases ... in a section ironlb ignores, then used where
    the parser must report the value (a list where a boolean belongs): 428 bytes, 9^9 nodes expanded."""
    names = "abcdefghijklmnop"
    lines = ["peers:", '- &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"- &{names[i]} [" + ",".join([f"*{names[i - 1]}"] * 9) + "]" for i in range(1, levels)]
    pool = f"{{name: p, protocol: layer2, addresses: [10.0.0.0/24], auto-assign: *{names[levels - 1]}}}"
    lines += ["address-pools:", f"- {pool}"]
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_rejected_within_bounded_memory() -> None:
    """Before: the error message's repr of the value expanded it, a MemoryError at 1.4 GB."""
    text = _alias_bomb()
    assert len(text) < 600
    tracemalloc.start()
    try:
        message = cm_error(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    expected = "invalid YAML at line 1, column 1: aliases expand the document to more than 100000 nodes"
    assert message == f"{CM}: config: {expected}"
    assert peak < 5_000_000, f"{peak} bytes"


def test_aliases_that_stay_small_are_fine_and_errors_quote_little() -> None:
    text = _alias_bomb(levels=3)  # 9^3 nodes: accepted by the loader, then refused as a boolean
    message = cm_error(text)
    assert "address-pools[0].auto-assign: must be a boolean, got list" in message
    assert len(message) < 300, message
    assert cm_error("peers: &a [*a]\n") == (
        f"{CM}: config: invalid YAML at line 1, column 1: an alias refers to a node that contains it"
    )


def test_config_size_is_capped() -> None:
    padding = "#" + "x" * MAX_CONFIG_CHARACTERS + "\n"
    length = len(padding + TUTORIAL)
    assert cm_error(padding + TUTORIAL) == (
        f"{CM}: config: is {length} characters long, more than {MAX_CONFIG_CHARACTERS} accepted"
    )
    # Exactly the limit is fine.
    exact = "#" * (MAX_CONFIG_CHARACTERS - len(TUTORIAL) - 1) + "\n" + TUTORIAL
    assert len(exact) == MAX_CONFIG_CHARACTERS
    assert [p.name for p in parse_configmap(cm(exact), CM)] == ["default"]


LONG = "z" * 100_000
POOL = "address-pools:\n- name: a\n  protocol: layer2\n  addresses: [10.0.0.0/24]\n"


@pytest.mark.parametrize(
    "text",
    [
        f"{POOL}  ? {LONG}\n  : 1\n",  # an unknown field named by a 100,000-character key
        f"? {LONG}\n: 1\n",
        f"address-pools:\n- {{name: a, protocol: layer2, addresses: ['{LONG}']}}\n",
        f"{POOL}  auto-assign: {LONG}\n",
        f"{POOL}  avoid-buggy-ips: [{', '.join([LONG[:1000]] * 100)}]\n",
    ],
)
def test_errors_never_quote_a_whole_large_value(text: str) -> None:
    message = cm_error(text)
    assert len(message) < 400, message


def test_ip_sharing_annotation_and_default() -> None:
    spec = {"addresses": ["10.0.0.0/24"]}
    annotated = ipap("a", spec)
    annotated["metadata"]["annotations"] = {"ironlb.io/ip-sharing": "namespace"}
    assert parse_ip_address_pool(annotated).ip_sharing == "namespace"
    assert parse_ip_address_pool(ipap("a", spec)).ip_sharing == "cluster"
    assert parse_ip_address_pool(ipap("a", spec), "namespace").ip_sharing == "namespace"
    configmap = {"metadata": {"name": "config", "namespace": "metallb-system"}, "data": cm(TUTORIAL)}
    other = ipap("b", {"addresses": ["10.1.0.0/24"]})
    config = rebuild_config(configmap, [other], [], ip_sharing="namespace")
    assert [(p.name, p.ip_sharing) for p in config.pools] == [("default", "namespace"), ("b", "namespace")]
    annotated["metadata"]["annotations"] = {"ironlb.io/ip-sharing": "everyone"}
    with pytest.raises(ConfigError) as info:
        parse_ip_address_pool(annotated)
    assert str(info.value) == (
        "IPAddressPool metallb-system/a: metadata.annotations[ironlb.io/ip-sharing]: "
        'must be "cluster" or "namespace", got \'everyone\''
    )


# ---- issue 9: each rule below is checked to the word, so that a changed field or message fails -------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("address-pools:\n- null\n", "address-pools[0]: must be a mapping, got null"),
        (
            'address-pools:\n- {name: "", protocol: layer2, addresses: [10.0.0.0/24]}\n',
            "address-pools[0].name: missing pool name",
        ),
        (
            "address-pools:\n- {name: true, protocol: layer2, addresses: [10.0.0.0/24]}\n",
            "address-pools[0].name: must be a string, got boolean True",
        ),
        (
            "address-pools:\n- {name: [a], protocol: layer2, addresses: [10.0.0.0/24]}\n",
            "address-pools[0].name: must be a string, got list ['a']",
        ),
        (
            'address-pools:\n- {name: a, protocol: "", addresses: [10.0.0.0/24]}\n',
            'address-pools[0].protocol: missing protocol in pool "a"',
        ),
        (
            pool_yaml("[10.0.0.0/24]", "  bgp-advertisements: 5\n"),
            "address-pools[0].bgp-advertisements: must be a list, got integer",
        ),
        (
            "a: \x07",
            "config: invalid YAML: unacceptable character #x0007: special characters are not allowed in "
            '"<unicode string>", position 3',
        ),
    ],
)
def test_more_configmap_errors_in_full(text: str, expected: str) -> None:
    assert cm_error(text) == f"{CM}: {expected}"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"addresses": ["10.0.0.0/24"], "serviceAllocation": 5},
            "spec.serviceAllocation: must be a mapping, got integer",
        ),
        (
            {"addresses": ["10.0.0.0/24"], "serviceAllocation": {"serviceSelectors": "app=web"}},
            "spec.serviceAllocation.serviceSelectors: must be a list, got string",
        ),
    ],
)
def test_more_ip_address_pool_errors_in_full(spec: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_ip_address_pool(ipap("p", spec))
    assert str(info.value) == f"IPAddressPool metallb-system/p: {expected}"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("all", "spec: must be a mapping, got string"),
        (
            {"ipAddressPoolSelectors": {"matchLabels": {}}},
            "spec.ipAddressPoolSelectors: must be a list, got mapping",
        ),
        ({"nodeSelectors": "x"}, "spec.nodeSelectors: must be a list, got string"),
    ],
)
def test_more_l2_advertisement_errors_in_full(spec: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_l2_advertisement({"metadata": {"name": "l2", "namespace": "m"}, "spec": spec})
    assert str(info.value) == f"L2Advertisement m/l2: {expected}"


def test_cr_pool_flags_default_like_metallb() -> None:
    pool = parse_ip_address_pool(ipap("p", {"addresses": ["10.0.0.0/24"]}))
    assert (pool.auto_assign, pool.avoid_buggy_ips) == (True, False)
    flipped = parse_ip_address_pool(
        ipap("p", {"addresses": ["10.0.0.0/24"], "autoAssign": False, "avoidBuggyIPs": True})
    )
    assert (flipped.auto_assign, flipped.avoid_buggy_ips) == (False, True)


def test_a_custom_resource_needs_a_name_and_may_lack_a_namespace() -> None:
    for metadata in ({"name": 5, "namespace": "m"}, {"name": "", "namespace": "m"}, "p"):
        with pytest.raises(ConfigError) as info:
            parse_ip_address_pool({"metadata": metadata, "spec": {"addresses": ["10.0.0.0/24"]}})
        assert str(info.value) == "IPAddressPool: metadata.name: missing name"
    for namespace in (None, "", 5):
        pool = parse_ip_address_pool(
            {"metadata": {"name": "p", "namespace": namespace}, "spec": {"addresses": ["10.0.0.0/24"]}}
        )
        assert pool.source == "IPAddressPool p"
    assert parse_l2_advertisement({"metadata": {"name": "l2"}}).source == "L2Advertisement l2"


def test_address_entry_bounds() -> None:
    padded = "10.0.0.1" + " " * 111 + "-10.0.0.9"
    assert len(padded) == 128
    assert parse_address_range(padded) == AddressRange(
        ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("10.0.0.9")
    )
    with pytest.raises(ValueError) as info:
        parse_address_range(padded + " ")
    assert (
        str(info.value)
        == f'invalid address entry "{padded[:64]}...(+65 characters)": longer than any CIDR or range'
    )
    with pytest.raises(ValueError) as info:
        parse_address_range("10.0.0.1-10.0.0.5-10.0.0.9")
    assert str(info.value) == (
        'invalid range "10.0.0.1-10.0.0.5-10.0.0.9": invalid last address "10.0.0.5-10.0.0.9": '
        "not an IP address"
    )


def test_a_configmap_pool_named_again_by_a_later_source_is_blamed_there() -> None:
    """build_config blames the later definition, wherever each came from: a ConfigMap's field is its list
    entry's name, a custom resource's its metadata.name."""
    crd = parse_ip_address_pool(ipap("a", {"addresses": ["10.1.0.0/24"]}))
    cm_pools = parse_configmap(cm(pool_yaml("[10.0.0.0/24]")), CM)
    with pytest.raises(ConfigError) as info:
        build_config((crd, *cm_pools), ())
    assert str(info.value) == (
        f'{CM}: address-pools[0].name: duplicate definition of pool "a" (also defined by IPAddressPool '
        "metallb-system/a)"
    )


def test_config_problems_carry_the_error_and_blame_advertisements_too() -> None:
    garbage = {**CONFIGMAP, "data": {"config": "address-pools: 5"}}
    with pytest.raises(ConfigProblem) as problem:
        rebuild_config(garbage, [], [])
    assert problem.value.error.field == "address-pools" and problem.value.error.source == CM
    assert str(problem.value) == f"{CM}: address-pools: must be a list, got integer"
    advertisement = {
        "metadata": {"name": "l2", "namespace": "metallb-system"},
        "spec": {"interfaces": "eth0"},
    }
    with pytest.raises(ConfigProblem) as problem:
        rebuild_config(CONFIGMAP, [], [advertisement])
    assert problem.value.target == ("L2Advertisement", "metallb-system", "l2")
    assert (
        str(problem.value) == "L2Advertisement metallb-system/l2: spec.interfaces: must be a list, got string"
    )


def test_only_merged_keys_count_against_the_merge_limit() -> None:
    """12,000 keys written out (no merge key anywhere) are a plain large document, not a merge expansion."""
    text = "peers:\n" + "".join("- {a: 1, b: 2, c: 3, d: 4}\n" for _ in range(3000))
    assert parse_configmap(cm(text), CM) == ()


def test_the_pool_blamed_is_found_by_its_whole_name_not_a_prefix() -> None:
    """Pool "pool" overlaps pool "p": the event goes on "pool", although "IPAddressPool metallb-system/p" is a
    prefix of its source."""
    first = ipap("p", {"addresses": ["10.0.0.0/24"]})
    later = ipap("pool", {"addresses": ["10.0.0.128/25"]})
    with pytest.raises(ConfigProblem) as problem:
        rebuild_config(None, [first, later], [])
    assert problem.value.target == ("IPAddressPool", "metallb-system", "pool")


def test_expanded_size_limit_is_exact() -> None:
    """The root mapping, its key and the list are 3 nodes; each reference to the anchored list of 999 scalars
    counts its 1,000 nodes again; then plain scalars up to the limit."""

    def document(scalars: int) -> str:
        items = ["&a [" + ", ".join("1" * 999) + "]"] + ["*a"] * 98 + ["1"] * scalars
        return "peers: [" + ", ".join(items) + "]\n"

    assert parse_configmap(cm(document(997)), CM) == ()  # 3 + 99 * 1000 + 997 = 100,000 nodes
    assert "aliases expand the document to more than 100000 nodes" in cm_error(document(998))


def test_pools_without_a_source_name_no_source() -> None:
    """build_config on pools built by hand (no source object): messages say nothing about a source."""
    a = Pool(name="a", ranges=(parse_address_range("10.0.0.0/24"),))
    with pytest.raises(ConfigError) as info:
        build_config((a, Pool(name="a", ranges=(parse_address_range("10.1.0.0/24"),))), ())
    assert str(info.value) == 'address-pools[1].name: duplicate definition of pool "a"'
    with pytest.raises(ConfigError) as info:
        build_config((a, Pool(name="b", ranges=(parse_address_range("10.0.0.7/32"),))), ())
    assert str(info.value) == (
        'address-pools[1].addresses[0]: "10.0.0.7/32" in pool "b" overlaps with "10.0.0.0/24" in pool "a"'
    )
    # The later pool has a source, the earlier one none: still no "(defined by )".
    with pytest.raises(ConfigError) as info:
        build_config((a, parse_ip_address_pool(ipap("b", {"addresses": ["10.0.0.7/32"]}))), ())
    assert str(info.value) == (
        'IPAddressPool metallb-system/b: spec.addresses[0]: "10.0.0.7/32" in pool "b" overlaps with '
        '"10.0.0.0/24" in pool "a"'
    )


def test_overlap_within_one_source_names_no_source_twice() -> None:
    text = pool_yaml("[10.0.0.0/24]") + pool_yaml("[10.0.0.5-10.0.0.6]", name="b").split("\n", 1)[1]
    with pytest.raises(ConfigError) as info:
        build_config(parse_configmap(cm(text), CM), ())
    assert str(info.value) == (
        f'{CM}: address-pools[1].addresses[0]: "10.0.0.5-10.0.0.6" in pool "b" overlaps with '
        '"10.0.0.0/24" in pool "a"'
    )


def test_overlap_found_near_address_zero_after_many_pools() -> None:
    """The sweep keeps the furthest end seen by address: with many pools, small addresses must not be mixed
    up with pool positions."""
    far = [parse_ip_address_pool(ipap(f"p{i}", {"addresses": [f"10.{i}.0.0/24"]})) for i in range(4)]
    near = [
        parse_ip_address_pool(ipap(name, {"addresses": [entry]}))
        for name, entry in (("q", "0.0.0.0-0.0.0.1"), ("r", "0.0.0.2-0.0.0.3"), ("s", "0.0.0.3-0.0.0.5"))
    ]
    with pytest.raises(ConfigError) as info:
        build_config((*far, *near), ())
    assert str(info.value) == (
        'IPAddressPool metallb-system/s: spec.addresses[0]: "0.0.0.3-0.0.0.5" in pool "s" overlaps with '
        '"0.0.0.2/31" in pool "r" (defined by IPAddressPool metallb-system/r)'
    )
