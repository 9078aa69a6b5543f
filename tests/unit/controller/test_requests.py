"""Service requests: annotations under both prefixes, spec fields, families, and their errors."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from common.errors import RequestError
from common.services import MAX_ANNOTATION_VALUE
from controller.requests import FamilyMismatch, holding_request, parse_service

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


def service(annotations: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "labels": {"app": "web"},
            "annotations": annotations or {},
        },
        "spec": {"type": "LoadBalancer", **spec},
    }


def request_error(svc: dict[str, Any]) -> str:
    with pytest.raises(RequestError) as info:
        parse_service(svc, {})
    return str(info.value)


def test_defaults() -> None:
    request = parse_service(service(ports=[{"port": 80}], selector={"app": "web"}), {"team": "a"})
    assert request.key == "shop/web"
    assert request.namespace == "shop"
    assert request.labels == (("app", "web"),)
    assert request.namespace_labels == (("team", "a"),)
    assert request.requested_ips == ()
    assert request.pool is None
    assert request.sharing_key is None
    assert request.ports == ((80, "TCP"),)
    assert request.external_traffic_policy == "Cluster"
    assert request.selector == (("app", "web"),)
    assert request.families == (4,)
    assert request.require_all_families is False


@pytest.mark.parametrize("prefix", ["metallb.io/", "metallb.universe.tf/"])
def test_annotations_under_both_prefixes(prefix: str) -> None:
    request = parse_service(
        service(
            {
                f"{prefix}loadBalancerIPs": " 10.0.0.5 ,  fd00::5 ",
                f"{prefix}address-pool": "premium",
                f"{prefix}allow-shared-ip": "dns",
            },
            ipFamilyPolicy="RequireDualStack",
            ipFamilies=["IPv4", "IPv6"],
        ),
        {},
    )
    assert request.requested_ips == (V4("10.0.0.5"), V6("fd00::5"))
    assert request.pool == "premium"
    assert request.sharing_key == "dns"
    assert request.families == (4, 6)
    assert request.require_all_families is True


def test_same_value_under_both_prefixes_is_fine() -> None:
    request = parse_service(
        service({"metallb.io/address-pool": "a", "metallb.universe.tf/address-pool": " a "}), {}
    )
    assert request.pool == "a"


@pytest.mark.parametrize("suffix", ["loadBalancerIPs", "address-pool", "allow-shared-ip"])
def test_conflicting_prefixes(suffix: str) -> None:
    value_a, value_b = ("10.0.0.1", "10.0.0.2") if suffix == "loadBalancerIPs" else ("a", "b")
    message = request_error(
        service({f"metallb.io/{suffix}": value_a, f"metallb.universe.tf/{suffix}": value_b})
    )
    assert message.startswith(f"metadata.annotations[metallb.io/{suffix}]: ")
    assert f"conflicts with metallb.universe.tf/{suffix}" in message
    if suffix == "allow-shared-ip":  # sharing keys are secrets: never quoted
        assert '"a"' not in message and '"b"' not in message, message


@pytest.mark.parametrize("suffix", ["loadBalancerIPs", "address-pool", "allow-shared-ip"])
def test_annotations_are_bounded(suffix: str) -> None:
    message = request_error(service({f"metallb.io/{suffix}": "x" * (MAX_ANNOTATION_VALUE + 1)}))
    assert message == f"metadata.annotations[metallb.io/{suffix}]: is longer than 1024 characters"
    long_ips = "10.0.0.1," + "y" * 1000
    assert len(request_error(service({"metallb.io/loadBalancerIPs": long_ips}))) < 200


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.1,10.0.0.2", "at most one IPv4 and one IPv6 address"),
        ("fd00::1, fd00::2", "at most one IPv4 and one IPv6 address"),
        ("garbage", '"garbage" is not an IP address'),
        ("10.0.0.1,,fd00::1", "empty entry"),
        ("10.0.0.0/24", '"10.0.0.0/24" is not an IP address'),
    ],
)
def test_bad_load_balancer_ips(value: str, expected: str) -> None:
    message = request_error(service({"metallb.io/loadBalancerIPs": value}))
    assert message.startswith("metadata.annotations[metallb.io/loadBalancerIPs]: ")
    assert expected in message


def test_empty_annotation_counts_as_unset() -> None:
    request = parse_service(service({"metallb.io/loadBalancerIPs": "  ", "metallb.io/address-pool": ""}), {})
    assert request.requested_ips == () and request.pool is None


def test_spec_load_balancer_ip() -> None:
    assert parse_service(service(loadBalancerIP="10.0.0.9"), {}).requested_ips == (V4("10.0.0.9"),)
    assert parse_service(service(loadBalancerIP=""), {}).requested_ips == ()
    same = service({"metallb.io/loadBalancerIPs": "10.0.0.9"}, loadBalancerIP="10.0.0.9")
    assert parse_service(same, {}).requested_ips == (V4("10.0.0.9"),)
    message = request_error(service({"metallb.io/loadBalancerIPs": "10.0.0.8"}, loadBalancerIP="10.0.0.9"))
    assert (
        message.startswith("spec.loadBalancerIP: ") and "conflicts with metallb.io/loadBalancerIPs" in message
    )
    assert request_error(service(loadBalancerIP="nope")) == 'spec.loadBalancerIP: "nope" is not an IP address'


@pytest.mark.parametrize(
    ("spec", "families", "require_all"),
    [
        ({}, (4,), False),
        ({"ipFamilies": ["IPv6"]}, (6,), False),
        ({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]}, (6,), False),
        ({"ipFamilyPolicy": "PreferDualStack"}, (4, 6), False),
        # Filled by a single-stack API server: followed, as MetalLB does.
        ({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6"]}, (6,), False),
        ({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"]}, (6, 4), False),
        ({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6"]}, (6, 4), True),
        ({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]}, (6, 4), True),
        ({"ipFamilyPolicy": "RequireDualStack"}, (4, 6), True),
    ],
)
def test_families(spec: dict[str, Any], families: tuple[int, ...], require_all: bool) -> None:
    request = parse_service(service(**spec), {})
    assert request.families == families
    assert request.require_all_families is require_all


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"ipFamilyPolicy": "Sometimes"}, "spec.ipFamilyPolicy: unknown policy"),
        ({"ipFamilies": ["IPv5"]}, "spec.ipFamilies[0]: unknown family"),
        (
            {"ipFamilies": ["IPv4", "IPv4"], "ipFamilyPolicy": "PreferDualStack"},
            "spec.ipFamilies[1]: duplicate",
        ),
        ({"ipFamilies": ["IPv4", "IPv6"]}, "spec.ipFamilies: SingleStack allows only one family"),
        ({"ports": [{"port": 0}]}, "spec.ports[0].port: must be an integer 1-65535"),
        ({"ports": [{"port": "80"}]}, "spec.ports[0].port: must be an integer 1-65535"),
        ({"ports": [{"port": 80, "protocol": "ICMP"}]}, "spec.ports[0].protocol: unknown protocol"),
        ({"externalTrafficPolicy": "Global"}, "spec.externalTrafficPolicy: must be Cluster or Local"),
    ],
)
def test_spec_errors(spec: dict[str, Any], expected: str) -> None:
    assert expected in request_error(service(**spec))


def test_requested_ips_must_match_families() -> None:
    message = request_error(service({"metallb.io/loadBalancerIPs": "fd00::1"}))
    assert message.startswith("metadata.annotations[metallb.io/loadBalancerIPs]: ")
    assert "does not match the Service's IP families IPv4" in message
    # RequireDualStack with one IP: MetalLB refuses too.
    one = service({"metallb.io/loadBalancerIPs": "10.0.0.1"}, ipFamilyPolicy="RequireDualStack")
    assert "does not match" in request_error(one)
    # An API server that filled both families: the request must name both.
    filled = service(
        {"metallb.io/loadBalancerIPs": "10.0.0.1"},
        ipFamilyPolicy="PreferDualStack",
        ipFamilies=["IPv4", "IPv6"],
    )
    assert "does not match" in request_error(filled)
    # PreferDualStack with only the primary family known: the request narrows it.
    prefer = service({"metallb.io/loadBalancerIPs": "fd00::1"}, ipFamilyPolicy="PreferDualStack")
    assert parse_service(prefer, {}).families == (6,)


def test_requested_ips_follow_family_order() -> None:
    svc = service(
        {"metallb.io/loadBalancerIPs": "10.0.0.1,fd00::1"},
        ipFamilyPolicy="PreferDualStack",
        ipFamilies=["IPv6", "IPv4"],
    )
    request = parse_service(svc, {})
    assert request.families == (6, 4)
    assert request.requested_ips == (V6("fd00::1"), V4("10.0.0.1"))


def test_ports_etp_selector() -> None:
    request = parse_service(
        service(
            ports=[{"port": 53, "protocol": "UDP"}, {"port": 53}],
            externalTrafficPolicy="Local",
            selector={"b": "2", "a": "1"},
        ),
        {},
    )
    assert request.ports == ((53, "UDP"), (53, "TCP"))
    assert request.external_traffic_policy == "Local"
    assert request.selector == (("a", "1"), ("b", "2"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2001:db8::3%eth0", '"2001:db8::3%eth0": zone "%eth0" is not allowed'),
        ("10.0.0.1,2001:db8::3%eth1", 'zone "%eth1" is not allowed'),
        ("::ffff:10.0.0.1", '"::ffff:10.0.0.1": IPv4-mapped IPv6 addresses are not allowed'),
    ],
)
def test_addresses_the_api_server_rejects_are_malformed_requests(value: str, expected: str) -> None:
    message = request_error(service({"metallb.io/loadBalancerIPs": value}, ipFamilyPolicy="PreferDualStack"))
    assert message.startswith("metadata.annotations[metallb.io/loadBalancerIPs]: ") and expected in message
    message = request_error(service(loadBalancerIP=value.split(",")[-1], ipFamilyPolicy="PreferDualStack"))
    assert message.startswith("spec.loadBalancerIP: ") and expected.split(": ", 1)[-1] in message


def test_wrong_family_is_a_well_formed_request_that_cannot_be_met() -> None:
    with pytest.raises(FamilyMismatch) as info:
        parse_service(service({"metallb.io/loadBalancerIPs": "2001:db8:2::e"}, ipFamilies=["IPv4"]), {})
    field = "metadata.annotations[metallb.io/loadBalancerIPs]"
    assert str(info.value).startswith(f"{field}: requested 2001:db8:2::e")
    with pytest.raises(RequestError) as malformed:
        parse_service(service({"metallb.io/loadBalancerIPs": "not-an-ip"}), {})
    assert not isinstance(malformed.value, FamilyMismatch)


def test_holding_request_reads_what_it_can() -> None:
    ips = (V4("10.0.0.1"), V6("fd00::1"))
    body = service(
        {
            "metallb.io/loadBalancerIPs": "nope",
            "metallb.io/allow-shared-ip": "k",
            "metallb.io/address-pool": "p",
        },
        ports=[{"port": 80}],
        selector={"app": "web"},
    )
    held = holding_request(body, {"team": "a"}, ips)
    assert (held.key, held.families, held.requested_ips, held.pool) == ("shop/web", (4, 6), (), None)
    assert (held.sharing_key, held.ports, held.selector) == ("k", ((80, "TCP"),), (("app", "web"),))
    # Sharing needs the ports: without them the IP is held unshared.
    bad_ports = service({"metallb.io/allow-shared-ip": "k"}, ports=[{"port": "eighty"}])
    assert holding_request(bad_ports, {}, ips[:1]).sharing_key is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            service(ipFamilyPolicy="Sometimes"),
            "spec.ipFamilyPolicy: unknown policy 'Sometimes': must be one of SingleStack, PreferDualStack, "
            "RequireDualStack",
        ),
        (service(ipFamilies="IPv4"), "spec.ipFamilies: must be a list"),
        (service(ipFamilies=["IPv5"]), "spec.ipFamilies[0]: unknown family 'IPv5': must be IPv4 or IPv6"),
        (service(ports="80"), "spec.ports: must be a list"),
        (service(ports=[{"port": True}]), "spec.ports[0].port: must be an integer 1-65535, got True"),
        (service(ports=[{"port": 65536}]), "spec.ports[0].port: must be an integer 1-65535, got 65536"),
        (
            service(ports=[{"port": 80, "protocol": "sctp"}]),
            "spec.ports[0].protocol: unknown protocol 'sctp'",
        ),
        (
            service(externalTrafficPolicy="Global"),
            "spec.externalTrafficPolicy: must be Cluster or Local, got 'Global'",
        ),
        (service(loadBalancerIP=5), "spec.loadBalancerIP: must be a string, got 5"),
        (service(selector="app=web"), "spec.selector: must be a mapping"),
        (
            service({"metallb.io/address-pool": 5}),
            "metadata.annotations[metallb.io/address-pool]: must be a string, got 5",
        ),
        (
            service(
                {"metallb.io/loadBalancerIPs": "10.0.0.1", "metallb.universe.tf/loadBalancerIPs": "10.0.0.2"}
            ),
            'metadata.annotations[metallb.io/loadBalancerIPs]: "10.0.0.1" conflicts with '
            'metallb.universe.tf/loadBalancerIPs "10.0.0.2"; set only one',
        ),
        (
            service({"metallb.io/allow-shared-ip": "a", "metallb.universe.tf/allow-shared-ip": "b"}),
            "metadata.annotations[metallb.io/allow-shared-ip]: conflicts with "
            "metallb.universe.tf/allow-shared-ip; set only one",
        ),
        (
            service({"metallb.io/loadBalancerIPs": "10.0.0.8"}, loadBalancerIP="10.0.0.9"),
            'spec.loadBalancerIP: "10.0.0.9" conflicts with metallb.io/loadBalancerIPs "10.0.0.8"; '
            "set only one",
        ),
        (
            service({"metallb.io/loadBalancerIPs": "10.0.0.1"}, ipFamilyPolicy="RequireDualStack"),
            "metadata.annotations[metallb.io/loadBalancerIPs]: requested 10.0.0.1 does not match the "
            "Service's IP families IPv4/IPv6",
        ),
        (
            service({"metallb.io/loadBalancerIPs": "10.0.0.1,fd00::1"}),
            "metadata.annotations[metallb.io/loadBalancerIPs]: requested 10.0.0.1, fd00::1 does not match "
            "the Service's IP families IPv4",
        ),
        (
            service(loadBalancerIP="fd00::1"),
            "spec.loadBalancerIP: requested fd00::1 does not match the Service's IP families IPv4",
        ),
    ],
)
def test_request_errors_in_full(body: dict[str, Any], expected: str) -> None:
    """The whole message: the field it names and the words are what a user reads in the event."""
    assert request_error(body) == expected


def test_labels_that_are_not_a_mapping_are_named() -> None:
    body = service()
    body["metadata"]["labels"] = ["app"]
    assert request_error(body) == "metadata.labels: must be a mapping"


def test_the_longest_allowed_annotation_and_sctp_are_accepted() -> None:
    request = parse_service(
        service(
            {"metallb.io/address-pool": "p" * MAX_ANNOTATION_VALUE}, ports=[{"port": 9, "protocol": "SCTP"}]
        ),
        {},
    )
    assert request.pool == "p" * MAX_ANNOTATION_VALUE and request.ports == ((9, "SCTP"),)


def test_require_dual_stack_listing_ipv4_adds_ipv6() -> None:
    request = parse_service(service(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv4"]), {})
    assert (request.families, request.require_all_families) == ((4, 6), True)


def test_missing_namespace_and_name() -> None:
    body = service()
    del body["metadata"]["namespace"], body["metadata"]["name"]
    request = parse_service(body, {})
    assert (request.key, request.namespace) == ("default/", "default")
    held = holding_request(body, {}, (V4("10.0.0.1"),))
    assert (held.key, held.namespace) == ("default/", "default")
