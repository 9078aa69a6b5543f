"""EndpointSlice facts: which Service a slice belongs to, and where its serving endpoints are."""

from __future__ import annotations

from typing import Any

from common.endpoints import ServingEndpoints, can_serve, serving_endpoints, slice_service_key


def endpoint_slice(address_type: str, *endpoints: dict[str, Any], service: str = "web") -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "shop",
            "name": f"{service}-x",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": address_type,
        "endpoints": list(endpoints),
    }


def ep(node: str | None, ready: bool | None = True, serving: bool | None = None, addr: str = "10.0.0.1"):
    conditions: dict[str, Any] = {}
    if ready is not None:
        conditions["ready"] = ready
    if serving is not None:
        conditions["serving"] = serving
    body: dict[str, Any] = {"addresses": [addr], "conditions": conditions}
    if node is not None:
        body["nodeName"] = node
    return body


def test_slice_service_key() -> None:
    assert slice_service_key(endpoint_slice("IPv4")) == "shop/web"
    assert slice_service_key({"metadata": {"name": "orphan"}}) is None
    assert slice_service_key({}) is None


def test_can_serve_follows_the_api_documentation() -> None:
    assert can_serve({}) and can_serve(None) and can_serve({"ready": True})
    assert not can_serve({"ready": False})
    assert can_serve({"ready": False, "serving": True, "terminating": True})
    assert not can_serve({"ready": False, "serving": False})


def test_serving_endpoints_per_family() -> None:
    facts = serving_endpoints([
        endpoint_slice("IPv4", ep("node1"), ep("node2", ready=False), ep("node3", ready=False, serving=True)),
        endpoint_slice("IPv6", ep("node2", addr="fd00::1")),
        endpoint_slice("FQDN", ep("node9", addr="example.com")),
    ])  # fmt: skip
    assert facts.any_serving
    assert facts.nodes(4) == {"node1", "node3"}
    assert facts.nodes(6) == {"node2"}


def test_no_serving_endpoint() -> None:
    facts = serving_endpoints([endpoint_slice("IPv4", ep("node1", ready=False)), endpoint_slice("IPv4")])
    assert facts == ServingEndpoints()
    assert not facts.any_serving and facts.nodes(4) == frozenset()
    placeholder = {"addressType": "IPv4", "endpoints": None}
    assert serving_endpoints([placeholder]) == ServingEndpoints()


def test_endpoint_without_node_or_address() -> None:
    facts = serving_endpoints([endpoint_slice("IPv4", ep(None), {"conditions": {"ready": True}})])
    assert facts.any_serving and facts.nodes(4) == frozenset()
