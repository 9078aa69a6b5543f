"""Configuration: invalid ConfigMaps and CRDs keep the last valid config, changes withdraw only what left,
IPAddressPool serviceAllocation / autoAssign, pool status."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from tests.controller.conftest import Cluster, StartController
from tests.controller.helpers import (
    CONFIG,
    ControllerProcess,
    apply,
    configmap,
    events,
    get_json,
    service,
    service_ips,
    wait_event,
    wait_for,
    wait_ips,
)

pytestmark = pytest.mark.timeout(120)

GOOD = """
address-pools:
- name: a
  protocol: layer2
  addresses: [192.168.50.10-192.168.50.19]
- name: b
  protocol: layer2
  addresses: [192.168.51.0/28]
"""
ONLY_A = """
address-pools:
- name: a
  protocol: layer2
  addresses: [192.168.50.10-192.168.50.19]
"""
GARBAGE = "address-pools: [ {name: a, protocol: layer2, addresses: [192.168.50.10-192.168.50.19]"
OVERLAP = (
    GOOD
    + """- name: c
  protocol: layer2
  addresses: [192.168.50.16/30]
"""
)
BAD_CIDR = """
address-pools:
- name: a
  protocol: layer2
  addresses: [192.168.50.0/33]
"""


def in_network(ip: str, network: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(network)


def ip_address_pool(name: str, addresses: list[str], **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": name, "namespace": "metallb-system"},
            "spec": {"addresses": addresses, **spec},
        }
    )


def namespace(name: str, labels: dict[str, str] | None = None) -> str:
    metadata = {"name": name, "labels": labels or {}}
    return json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})


@pytest.fixture(scope="module")
def controller(cluster: Cluster, start_controller: StartController) -> ControllerProcess:
    apply(cluster.kubectl, configmap(GOOD))
    controller = start_controller()
    apply(cluster.kubectl, service("in-a", annotations={"metallb.io/address-pool": "a"}))
    apply(cluster.kubectl, service("in-b", annotations={"metallb.io/address-pool": "b"}))
    wait_ips(cluster.kubectl, "in-a")
    wait_ips(cluster.kubectl, "in-b")
    return controller


def stale(controller: ControllerProcess) -> float:
    return controller.metrics()["metallb_k8s_client_config_stale_bool"]


@pytest.mark.parametrize(
    ("name", "config", "expected"),
    [
        ("garbage-yaml", GARBAGE, "invalid YAML"),
        ("overlap", OVERLAP, "overlap"),
        ("bad-cidr", BAD_CIDR, "address-pools[0].addresses[0]"),
    ],
)
def test_invalid_configmap_keeps_last_valid_config(
    cluster: Cluster, controller: ControllerProcess, name: str, config: str, expected: str
):
    kubectl = cluster.kubectl
    before = {svc: service_ips(kubectl, svc) for svc in ("in-a", "in-b")}
    apply(kubectl, configmap(config))
    event = wait_event(kubectl, "config", "InvalidConfig", namespace="metallb-system", contains=expected)
    assert event["type"] == "Warning"
    assert event["involvedObject"]["kind"] == "ConfigMap"
    wait_for("stale metric", lambda: stale(controller) == 1)
    assert "event=config_invalid object=ConfigMap/metallb-system/config" in controller.log()
    # The last valid config is still in force: old IPs stay, new Services are served from it.
    assert {svc: service_ips(kubectl, svc) for svc in before} == before
    apply(kubectl, service(f"after-{name}", annotations={"metallb.io/address-pool": "b"}))
    [ip] = wait_ips(kubectl, f"after-{name}")
    assert in_network(ip, "192.168.51.0/28")
    assert controller.alive()
    apply(kubectl, configmap(GOOD))
    wait_for("stale cleared", lambda: stale(controller) == 0)
    assert controller.metrics()["metallb_k8s_client_config_loaded_bool"] == 1


def test_config_change_withdraws_only_what_left(cluster: Cluster, controller: ControllerProcess):
    kubectl = cluster.kubectl
    kept = get_json(kubectl, "service", "in-a")
    [old_b] = service_ips(kubectl, "in-b")
    apply(kubectl, configmap(ONLY_A))
    wait_for("in-b withdrawn", lambda: service_ips(kubectl, "in-b") == [])
    wait_event(kubectl, "in-b", "ClearAssignment", contains=old_b)
    wait_event(kubectl, "in-b", "AllocationFailed", contains='unknown pool "b"')
    # in-a was not touched at all.
    now = get_json(kubectl, "service", "in-a")
    assert now["metadata"]["resourceVersion"] == kept["metadata"]["resourceVersion"]
    apply(kubectl, configmap(GOOD))
    [new_b] = wait_ips(kubectl, "in-b")
    assert in_network(new_b, "192.168.51.0/28")


def test_ip_address_pools_service_allocation(cluster: Cluster, controller: ControllerProcess):
    kubectl = cluster.kubectl
    apply(kubectl, namespace("team-a"))
    apply(kubectl, namespace("blue", {"team": "blue"}))
    apply(
        kubectl,
        ip_address_pool(
            "team-a-low", ["192.168.60.0/29"], serviceAllocation={"priority": 20, "namespaces": ["team-a"]}
        ),
    )
    apply(
        kubectl,
        ip_address_pool(
            "team-a-high", ["192.168.61.0/29"], serviceAllocation={"priority": 10, "namespaces": ["team-a"]}
        ),
    )
    apply(
        kubectl,
        ip_address_pool(
            "blue-only",
            ["192.168.62.0/29"],
            serviceAllocation={"namespaceSelectors": [{"matchLabels": {"team": "blue"}}]},
        ),
    )
    apply(
        kubectl,
        ip_address_pool(
            "labelled-svc",
            ["192.168.63.0/29"],
            serviceAllocation={
                "serviceSelectors": [
                    {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}]}
                ]
            },
        ),
    )
    apply(kubectl, service("svc", namespace="team-a"))
    [ip] = wait_ips(kubectl, "svc", "team-a")
    assert in_network(ip, "192.168.61.0/29"), "lower priority number wins"
    apply(kubectl, service("svc", namespace="blue"))
    [ip] = wait_ips(kubectl, "svc", "blue")
    assert in_network(ip, "192.168.62.0/29")
    gold = json.loads(service("gold"))
    gold["metadata"]["labels"] = {"tier": "gold"}
    apply(kubectl, json.dumps(gold))
    [ip] = wait_ips(kubectl, "gold")
    assert in_network(ip, "192.168.63.0/29")
    # Pools with a serviceAllocation serve nobody else.
    apply(kubectl, service("outsider"))
    [ip] = wait_ips(kubectl, "outsider")
    assert not any(
        in_network(ip, n)
        for n in ("192.168.60.0/24", "192.168.61.0/24", "192.168.62.0/24", "192.168.63.0/24")
    )


def test_auto_assign_false_ip_address_pool(cluster: Cluster, controller: ControllerProcess):
    kubectl = cluster.kubectl
    apply(kubectl, ip_address_pool("reserved", ["192.168.70.0/30"], autoAssign=False))
    apply(kubectl, service("reserved-user", annotations={"metallb.io/address-pool": "reserved"}))
    [ip] = wait_ips(kubectl, "reserved-user")
    assert in_network(ip, "192.168.70.0/30")
    for index in range(3):
        apply(kubectl, service(f"auto-{index}"))
    for index in range(3):
        [ip] = wait_ips(kubectl, f"auto-{index}")
        assert not in_network(ip, "192.168.70.0/30")


def test_pool_status(cluster: Cluster, controller: ControllerProcess):
    kubectl = cluster.kubectl

    def status() -> dict[str, int] | None:
        pool = get_json(kubectl, "ipaddresspool", "reserved", "-n", "metallb-system")
        return (pool or {}).get("status")

    wanted = {"assignedIPv4": 1, "availableIPv4": 3, "assignedIPv6": 0, "availableIPv6": 0}
    assert wait_for("reserved pool status", lambda: status() == wanted and status())
    kubectl("delete", "service", "reserved-user")
    wait_for("status after release", lambda: (status() or {}).get("assignedIPv4") == 0)
    assert status() == {"assignedIPv4": 0, "availableIPv4": 4, "assignedIPv6": 0, "availableIPv6": 0}


def test_invalid_ip_address_pool_and_l2_advertisement(cluster: Cluster, controller: ControllerProcess):
    kubectl = cluster.kubectl
    apply(kubectl, ip_address_pool("broken", ["not-an-address"]))
    event = wait_event(kubectl, "broken", "InvalidConfig", namespace="metallb-system")
    assert event["involvedObject"]["kind"] == "IPAddressPool"
    assert "spec.addresses[0]" in event["message"]
    wait_for("stale metric", lambda: stale(controller) == 1)
    # Still working from the last valid config.
    apply(kubectl, service("during-broken", annotations={"metallb.io/address-pool": "a"}))
    wait_ips(kubectl, "during-broken")
    kubectl("delete", "ipaddresspool", "broken", "-n", "metallb-system")
    wait_for("stale cleared", lambda: stale(controller) == 0)

    apply(
        kubectl,
        json.dumps(
            {
                "apiVersion": "metallb.io/v1beta1",
                "kind": "L2Advertisement",
                "metadata": {"name": "odd", "namespace": "metallb-system"},
                "spec": {
                    "ipAddressPoolSelectors": [{"matchExpressions": [{"key": "x", "operator": "Near"}]}]
                },
            }
        ),
    )
    event = wait_event(kubectl, "odd", "InvalidConfig", namespace="metallb-system")
    assert event["involvedObject"]["kind"] == "L2Advertisement"
    kubectl("delete", "l2advertisement", "odd", "-n", "metallb-system")
    wait_for("stale cleared", lambda: stale(controller) == 0)
    # Each problem was reported once, not on every rebuild.
    assert len(events(kubectl, "broken", "metallb-system", "InvalidConfig")) == 1


def test_large_configmap_arrives_through_the_watch(cluster: Cluster, controller: ControllerProcess):
    kubectl = cluster.kubectl
    big = json.loads(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "config", "namespace": "metallb-system"},
                "data": {
                    "config": GOOD + "- name: big\n  protocol: layer2\n  addresses: [192.168.90.0/30]\n",
                    # Other keys are ignored, but they make the watch event one 300 KiB line.
                    "notes": "x" * 300_000,
                },
            }
        )
    )
    # replace, not apply: apply would copy 300 KiB into the last-applied annotation.
    kubectl("replace", "-f", "-", input=json.dumps(big))
    apply(kubectl, service("in-big", annotations={"metallb.io/address-pool": "big"}))
    [ip] = wait_ips(kubectl, "in-big")
    assert in_network(ip, "192.168.90.0/30")
    assert controller.alive()


def test_shipped_manifests_install_and_examples_load(cluster: Cluster, controller: ControllerProcess):
    kubectl = cluster.kubectl
    kubectl("apply", "-k", str(CONFIG))  # namespace, CRDs, RBAC, Deployment: accepted as they are
    kubectl("apply", "-f", str(CONFIG / "examples" / "ipaddresspool.yaml"))
    wait_for(
        "the example pool in the config",
        lambda: controller.metrics().get('metallb_allocator_addresses_total{pool="more"}') == 11,
    )
    assert stale(controller) == 0
    apply(kubectl, service("in-more", annotations={"metallb.io/address-pool": "more"}))
    assert wait_ips(kubectl, "in-more") == ["192.168.10.110"]


def test_labelling_a_namespace_admits_its_pending_service(cluster: Cluster, controller: ControllerProcess):
    kubectl = cluster.kubectl
    apply(
        kubectl,
        ip_address_pool(
            "late-label",
            ["192.168.95.0/30"],
            serviceAllocation={"namespaceSelectors": [{"matchLabels": {"team": "late"}}]},
        ),
    )
    apply(kubectl, namespace("late"))
    apply(kubectl, service("svc", namespace="late", annotations={"metallb.io/address-pool": "late-label"}))
    wait_event(kubectl, "svc", "AllocationFailed", namespace="late", contains="does not admit")
    kubectl("label", "namespace", "late", "team=late")
    [ip] = wait_ips(kubectl, "svc", "late")
    assert in_network(ip, "192.168.95.0/30")
