"""Conformance: EndpointSlice defaulting and validation as kube-apiserver 1.36 does them, over the REST API.

Sources: SetDefaults_EndpointPort (pkg/apis/discovery/v1/defaults.go), ValidateEndpointSlice
(pkg/apis/discovery/validation/validation.go), ValidateEndpointIP (pkg/apis/core/validation).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.apiserver.rest import Rest

SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"


def slice_(name: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.1.5"]}],
        "ports": [{"port": 8080}],
    }
    body.update(fields)
    return body


def invalid_message(live: Rest, body: dict[str, Any]) -> str:
    resp = live.request("POST", SLICES, body)
    assert resp.status_code == 422, resp.text
    return str(resp.json()["message"])


def test_unnamed_port_reads_name_empty_and_conditions_are_present(live: Rest) -> None:
    # EndpointPort.Name is a *string defaulted to "" and EndpointConditions is a struct, not a pointer: a
    # dataplane matching the Service's unnamed port "" to the slice's port name sees "" on both sides.
    out = live.ok("POST", SLICES, slice_("es-defaults"))
    assert out["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]
    assert out["endpoints"] == [{"addresses": ["10.244.1.5"], "conditions": {}}]


def test_port_zero_and_a_port_without_number_are_accepted(live: Rest) -> None:
    # validatePorts checks names, protocol and appProtocol only: the number is not range-checked.
    out = live.ok("POST", SLICES, slice_("es-port-zero", ports=[{"name": "a", "port": 0}, {"name": "b"}]))
    assert [p.get("port") for p in out["ports"]] == [0, None]


@pytest.mark.parametrize(
    ("ports", "detail"),
    [
        (
            [{"name": "Http", "port": 80}],
            'ports[0].name: Invalid value: "Http": a lowercase RFC 1123 label must consist of lower case '
            "alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. "
            "'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ),
        (
            [{"name": "http", "port": 80}, {"name": "http", "port": 81}],
            'ports[1].name: Duplicate value: "http"',
        ),
        (
            [{"port": 80}, {"port": 81, "protocol": "UDP"}],
            'ports[1].name: Duplicate value: ""',
        ),
    ],
)
def test_bad_or_duplicate_port_names_are_rejected(live: Rest, ports: list[Any], detail: str) -> None:
    message = invalid_message(live, slice_("es-ports", ports=ports))
    assert message == f'EndpointSlice.discovery.k8s.io "es-ports" is invalid: {detail}'


def test_a_bad_node_name_is_rejected(live: Rest) -> None:
    # ValidateNodeName is NameIsDNSSubdomain.
    body = slice_("es-node", endpoints=[{"addresses": ["10.244.1.5"], "nodeName": "Node_1"}])
    assert invalid_message(live, body) == (
        'EndpointSlice.discovery.k8s.io "es-node" is invalid: endpoints[0].nodeName: '
        'Invalid value: "Node_1": '
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
        "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation "
        "is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )


@pytest.mark.parametrize(
    ("address_type", "address", "detail"),
    [
        ("IPv4", "127.0.0.1", "may not be in the loopback range (127.0.0.0/8, ::1/128)"),
        ("IPv6", "::1", "may not be in the loopback range (127.0.0.0/8, ::1/128)"),
        ("IPv4", "169.254.1.1", "may not be in the link-local range (169.254.0.0/16, fe80::/10)"),
        ("IPv4", "0.0.0.0", "may not be unspecified (0.0.0.0)"),
        ("IPv4", "224.0.0.5", "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"),
        ("IPv4", "fd00::5", "must be a valid IPv4 address"),
    ],
)
def test_loopback_and_other_special_addresses_are_rejected(
    live: Rest, address_type: str, address: str, detail: str
) -> None:
    body = slice_("es-addr", addressType=address_type, endpoints=[{"addresses": [address]}])
    assert invalid_message(live, body) == (
        f'EndpointSlice.discovery.k8s.io "es-addr" is invalid: endpoints[0].addresses[0]: '
        f'Invalid value: "{address}": {detail}'
    )


def test_address_type_is_immutable(live: Rest) -> None:
    # ValidateEndpointSliceUpdate: ValidateImmutableField(addressType).
    out = live.ok("POST", SLICES, slice_("es-immutable"))
    out["addressType"] = "IPv6"
    out["endpoints"] = [{"addresses": ["fd00::5"]}]
    resp = live.request("PUT", f"{SLICES}/es-immutable", out)
    assert resp.status_code == 422
    assert resp.json()["message"] == (
        'EndpointSlice.discovery.k8s.io "es-immutable" is invalid: addressType: Invalid value: "IPv6": '
        "field is immutable"
    )
