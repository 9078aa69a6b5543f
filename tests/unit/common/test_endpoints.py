"""EndpointSlice facts: which Service a slice belongs to, and where its serving endpoints are."""

from __future__ import annotations

from typing import Any

from common.endpoints import ServingEndpoints, can_serve, serving_endpoints, slice_facts, slice_service_key


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


def make_slice(
    endpoints: list[Any],
    ports: list[Any] | None = None,
    address_type: str = "IPv4",
    name: str = "web-abc",
    service: str = "web",
    **meta: Any,
) -> dict[str, Any]:
    metadata = {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": service}}
    metadata.update(meta)
    return {
        "metadata": metadata,
        "addressType": address_type,
        "ports": ports if ports is not None else [{"name": "http", "protocol": "TCP", "port": 8080}],
        "endpoints": endpoints,
    }


def test_conditions_follow_the_api_defaults():
    facts = slice_facts(
        make_slice(
            [
                {"addresses": ["10.0.0.1"]},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
                {
                    "addresses": ["10.0.0.3"],
                    "conditions": {"ready": False, "serving": True, "terminating": True},
                },
            ]
        )
    )
    first, second, third = facts.endpoints
    assert (first.ready, first.serving, first.terminating) == (True, True, False)
    assert (second.ready, second.serving, second.terminating) == (False, False, False)
    assert (third.ready, third.serving, third.terminating) == (False, True, True)
    assert facts.service == "web" and facts.family == 4 and facts.problems == ()


def test_node_zone_and_trigger_time_are_read():
    obj = make_slice(
        [{"addresses": ["fd00::5"], "nodeName": "node2", "zone": "z1"}],
        address_type="IPv6",
        annotations={"endpoints.kubernetes.io/last-change-trigger-time": "2026-01-02T03:04:05Z"},
    )
    facts = slice_facts(obj)
    assert facts.endpoints[0].node_name == "node2" and facts.endpoints[0].zone == "z1"
    assert facts.family == 6 and facts.trigger_time == "2026-01-02T03:04:05Z"


def test_bad_entries_are_skipped_and_named():
    facts = slice_facts(
        make_slice(
            [
                {"addresses": ["10.0.0.1"]},
                {"addresses": ["not-an-ip"]},
                {"addresses": ["fd00::1"]},  # wrong family for an IPv4 slice
                {"addresses": []},
            ],
            ports=[
                {"name": "http", "protocol": "TCP", "port": 8080},
                {"name": "bad", "protocol": "TCP", "port": 70000},
                {"name": "all", "protocol": "TCP"},
                {"name": "x", "protocol": "ICMP", "port": 1},
            ],
        )
    )
    assert [ep.address for ep in facts.endpoints] == ["10.0.0.1"]
    assert [p.name for p in facts.ports] == ["http"]
    fields = [p.field for p in facts.problems]
    assert fields == [
        "endpoints[1].addresses[0]",
        "endpoints[2].addresses[0]",
        "endpoints[3].addresses",
        "ports[1].port",
        "ports[2].port",
        "ports[3].protocol",
    ]
    assert "70000" in str(facts.problems[3])


def test_unknown_address_type_contributes_nothing():
    facts = slice_facts(make_slice([{"addresses": ["10.0.0.1"]}], address_type="IPv5"))
    assert facts.endpoints == () and facts.family == 0
    assert facts.problems[0].field == "addressType"


def test_garbage_is_never_a_crash():
    for garbage in ({}, {"metadata": None, "endpoints": "x", "ports": 3}, {"endpoints": [None, 1, "x"]}):
        facts = slice_facts(garbage)
        assert facts.endpoints == ()


def test_every_skipped_entry_is_reported_in_full_and_the_next_one_still_read():
    """Each bad entry is followed by a good one: skipping must go on to the next entry, not stop."""
    facts = slice_facts(
        make_slice(
            [
                {"addresses": []},
                {"addresses": ["10.0.0.1"]},
                {"addresses": [7]},
                {"addresses": ["10.0.0.2"], "zone": 3, "nodeName": 4},
            ],
            ports=[
                {"name": "all", "protocol": "TCP"},
                {"name": "a", "port": 1},
                {"name": "flag", "protocol": "TCP", "port": True},
                {"name": "b", "protocol": "UDP", "port": 65535},
                {"name": "big", "protocol": "TCP", "port": 65536},
                {"protocol": "SCTP", "port": 2},
                {"name": "x", "protocol": "tcp", "port": 3},
                {"name": 5, "protocol": "TCP", "port": 4},
                {"name": "", "protocol": "TCP", "port": 5},
            ],
        )
    )
    assert [str(p) for p in facts.problems] == [
        "endpoints[0].addresses: must list at least one address",
        "endpoints[2].addresses[0]: 7 is not an IPv4 address",
        "ports[0].port: unset (all ports) cannot be proxied",
        "ports[2].port: True is not a port number (1-65535)",
        "ports[4].port: 65536 is not a port number (1-65535)",
        "ports[6].protocol: 'tcp' is not one of TCP, UDP, SCTP",
        "ports[7].name: 5 is not a string",
    ]
    assert [(e.address, e.node_name, e.zone) for e in facts.endpoints] == [
        ("10.0.0.1", "", ""),
        ("10.0.0.2", "", ""),
    ]
    # An unset protocol is TCP and an unset name is "", as the API defaults them.
    assert [(p.name, p.protocol, p.port) for p in facts.ports] == [
        ("a", "TCP", 1),
        ("b", "UDP", 65535),
        ("", "SCTP", 2),
        ("", "TCP", 5),
    ]


def test_lists_that_are_not_lists_are_reported():
    facts = slice_facts(make_slice("x", ports={"port": 80}))  # type: ignore[arg-type]
    assert [str(p) for p in facts.problems] == ["endpoints: must be a list", "ports: must be a list"]


def test_fqdn_slices_keep_their_names_and_an_unknown_type_is_named():
    facts = slice_facts(make_slice([{"addresses": ["db.example"]}], address_type="FQDN"))
    assert [e.address for e in facts.endpoints] == ["db.example"] and facts.problems == ()
    facts = slice_facts(make_slice([{"addresses": ["10.0.0.1"]}], address_type="ipv4"))
    assert facts.address_type == "FQDN" and facts.endpoints == ()
    assert [str(p) for p in facts.problems] == ["addressType: 'ipv4' is not one of IPv4, IPv6, FQDN"]


def test_metadata_that_is_missing_or_not_text_reads_as_empty():
    facts = slice_facts({"addressType": "IPv4", "endpoints": []})
    assert (facts.namespace, facts.name, facts.service, facts.trigger_time) == ("", "", "", "")
    odd = make_slice([], service="web", annotations={"endpoints.kubernetes.io/last-change-trigger-time": 5})
    odd["metadata"]["labels"]["kubernetes.io/service-name"] = ["web"]
    facts = slice_facts(odd)
    assert (facts.namespace, facts.name, facts.service, facts.trigger_time) == ("default", "web-abc", "", "")


def test_a_slice_without_a_namespace_keys_to_the_empty_namespace():
    assert slice_service_key({"metadata": {"labels": {"kubernetes.io/service-name": "web"}}}) == "/web"


def test_can_serve_is_a_bool():
    assert can_serve({"ready": False}) is False
    assert can_serve({"ready": False, "serving": True}) is True


def test_a_slice_without_addresses_does_not_stop_the_fold():
    facts = serving_endpoints([endpoint_slice("FQDN", ep("node9", addr="a.example")),
                               endpoint_slice("IPv4", ep("node1", ready=False), ep("node2"))])  # fmt: skip
    assert facts.nodes(4) == {"node2"}
