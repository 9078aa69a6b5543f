"""What a Service can ask for: loadBalancerIP, both annotation prefixes, sharing, IPv6 and dual stack,
loadBalancerClass, and what happens when the request changes or is malformed."""

from __future__ import annotations

import ipaddress
import json

import pytest

from tests.controller.conftest import Cluster, StartController
from tests.controller.helpers import (
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

POOLS = """
address-pools:
- name: default
  protocol: layer2
  addresses:
  - 192.168.1.10-192.168.1.19
- name: dual
  protocol: layer2
  addresses:
  - 192.168.2.10-192.168.2.19
  - fc00:2::10-fc00:2::1f
- name: manual
  protocol: layer2
  auto-assign: false
  addresses:
  - 192.168.3.0/29
"""

OTHER_POOLS = """
address-pools:
- name: other
  protocol: layer2
  addresses: [192.168.9.0/29]
"""


def in_network(ip: str, network: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(network)


@pytest.fixture(scope="module")
def controller(cluster: Cluster, start_controller: StartController) -> ControllerProcess:
    apply(cluster.kubectl, configmap(POOLS))
    return start_controller()


def test_load_balancer_ip(cluster: Cluster, controller: ControllerProcess):
    apply(cluster.kubectl, service("fixed", loadBalancerIP="192.168.1.15"))
    assert wait_ips(cluster.kubectl, "fixed") == ["192.168.1.15"]


@pytest.mark.parametrize("prefix", ["metallb.io", "metallb.universe.tf"])
def test_load_balancer_ips_annotation_both_prefixes(
    cluster: Cluster, controller: ControllerProcess, prefix: str
):
    wanted = "192.168.3.3" if prefix == "metallb.io" else "192.168.3.4"
    name = f"ips-{prefix.replace('.', '-')}"
    apply(cluster.kubectl, service(name, annotations={f"{prefix}/loadBalancerIPs": wanted}))
    # The manual pool has autoAssign false: an explicit request may still use it.
    assert wait_ips(cluster.kubectl, name) == [wanted]
    svc = get_json(cluster.kubectl, "service", name)
    assert svc["metadata"]["annotations"]["metallb.io/ip-allocated-from-pool"] == "manual"


@pytest.mark.parametrize("prefix", ["metallb.io", "metallb.universe.tf"])
def test_address_pool_annotation_both_prefixes(cluster: Cluster, controller: ControllerProcess, prefix: str):
    name = f"pool-{prefix.replace('.', '-')}"
    apply(cluster.kubectl, service(name, annotations={f"{prefix}/address-pool": "manual"}))
    [ip] = wait_ips(cluster.kubectl, name)
    assert in_network(ip, "192.168.3.0/29")


def test_auto_assign_false_pool_serves_only_explicit_requests(
    cluster: Cluster, controller: ControllerProcess
):
    apply(cluster.kubectl, service("plain"))
    [ip] = wait_ips(cluster.kubectl, "plain")
    assert not in_network(ip, "192.168.3.0/29")


def test_sharing_allowed_and_refused(cluster: Cluster, controller: ControllerProcess):
    kubectl = cluster.kubectl
    shared = {"metallb.io/allow-shared-ip": "web"}
    ip = "192.168.1.18"
    apply(kubectl, service("web-http", annotations=shared, ports=[(80, "TCP")], loadBalancerIP=ip))
    old_prefix = {"metallb.universe.tf/allow-shared-ip": "web"}  # the same key under the older prefix
    apply(kubectl, service("web-https", annotations=old_prefix, ports=[(443, "TCP")], loadBalancerIP=ip))
    assert wait_ips(kubectl, "web-http") == ["192.168.1.18"]
    assert wait_ips(kubectl, "web-https") == ["192.168.1.18"]

    # Same key but port 80/TCP is taken on that IP.
    apply(kubectl, service("web-clash", annotations=shared, ports=[(80, "TCP")], loadBalancerIP=ip))
    event = wait_event(kubectl, "web-clash", "AllocationFailed")
    assert "192.168.1.18" in event["message"] and "in use" in event["message"]
    # No sharing key at all.
    apply(kubectl, service("web-nokey", ports=[(8080, "TCP")], loadBalancerIP="192.168.1.18"))
    event = wait_event(kubectl, "web-nokey", "AllocationFailed")
    assert "allow-shared-ip" in event["message"]
    assert service_ips(kubectl, "web-clash") == [] and service_ips(kubectl, "web-nokey") == []


def test_ipv6_single_stack(cluster: Cluster, controller: ControllerProcess):
    apply(cluster.kubectl, service("v6", ipFamilies=["IPv6"], ipFamilyPolicy="SingleStack"))
    [ip] = wait_ips(cluster.kubectl, "v6")
    assert ipaddress.ip_address(ip).version == 6
    assert in_network(ip, "fc00:2::/64")


def test_dual_stack_from_one_pool(cluster: Cluster, controller: ControllerProcess):
    apply(
        cluster.kubectl,
        service("both", ipFamilies=["IPv4", "IPv6"], ipFamilyPolicy="RequireDualStack"),
    )
    ips = wait_ips(cluster.kubectl, "both")
    assert len(ips) == 2
    assert in_network(ips[0], "192.168.2.0/24") and in_network(ips[1], "fc00:2::/64")
    event = wait_event(cluster.kubectl, "both", "IPAllocated")
    assert event["message"] == f'Assigned IP ["{ips[0]}" "{ips[1]}"]'


def test_annotation_change_moves_the_ip_and_frees_the_old_one(
    cluster: Cluster, controller: ControllerProcess
):
    kubectl = cluster.kubectl
    apply(kubectl, service("mover", annotations={"metallb.io/address-pool": "manual"}))
    [old] = wait_ips(kubectl, "mover")
    assert in_network(old, "192.168.3.0/29")
    kubectl(
        "annotate",
        "service",
        "mover",
        "--overwrite",
        "metallb.io/address-pool=dual",
    )
    wait_for("mover moved to dual", lambda: [ip for ip in service_ips(kubectl, "mover") if ip != old])
    [new] = service_ips(kubectl, "mover")
    assert in_network(new, "192.168.2.0/24")
    wait_for(
        "pool annotation updated",
        lambda: (
            get_json(kubectl, "service", "mover")["metadata"]["annotations"].get(
                "metallb.io/ip-allocated-from-pool"
            )
            == "dual"
        ),
    )
    # The old IP is free again: someone else can ask for it.
    apply(kubectl, service("taker", annotations={"metallb.io/loadBalancerIPs": old}))
    assert wait_ips(kubectl, "taker") == [old]


def test_malformed_and_impossible_requests_stay_pending_with_a_reason(
    cluster: Cluster, controller: ControllerProcess
):
    kubectl = cluster.kubectl
    apply(kubectl, service("bad-ip", annotations={"metallb.io/loadBalancerIPs": "192.168.1.x"}))
    event = wait_event(kubectl, "bad-ip", "AllocationFailed")
    assert "metallb.io/loadBalancerIPs" in event["message"]
    apply(kubectl, service("outside", loadBalancerIP="10.1.2.3"))
    event = wait_event(kubectl, "outside", "AllocationFailed")
    assert "not in any pool" in event["message"]
    apply(kubectl, service("nopool", annotations={"metallb.io/address-pool": "nonexistent"}))
    wait_event(kubectl, "nopool", "AllocationFailed", contains='unknown pool "nonexistent"')
    for name in ("bad-ip", "outside", "nopool"):
        assert service_ips(kubectl, name) == []
    # A pending Service is not re-announced on every retry.
    assert len(events(kubectl, "bad-ip", reason="AllocationFailed")) == 1
    # Fixing the request lets it through.
    kubectl("annotate", "service", "bad-ip", "--overwrite", "metallb.io/loadBalancerIPs=192.168.1.11")
    assert wait_ips(kubectl, "bad-ip") == ["192.168.1.11"]
    assert controller.alive()


def test_load_balancer_class(
    cluster: Cluster, controller: ControllerProcess, start_controller: StartController
):
    kubectl = cluster.kubectl
    apply(kubectl, service("classy", loadBalancerClass="example.com/other-lb"))
    # A second controller for that class, with its own config, Lease and CRD namespace.
    apply(kubectl, json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other-lb"}}))
    apply(kubectl, configmap(OTHER_POOLS, "other-config"))
    other = start_controller(
        "--load-balancer-class",
        "example.com/other-lb",
        "--configmap-name",
        "other-config",
        "--namespace",
        "other-lb",
    )
    [ip] = wait_ips(kubectl, "classy")
    assert in_network(ip, "192.168.9.0/29")
    # Ours leaves it alone; the other one leaves unclassed Services alone.
    reporters = {e.get("reportingInstance") for e in events(kubectl, "classy")}
    assert reporters == {other_identity(other)}
    apply(kubectl, service("unclassed-late"))
    [plain_ip] = wait_ips(kubectl, "unclassed-late")
    assert not in_network(plain_ip, "192.168.9.0/29")
    kubectl("patch", "service", "classy", "--type=merge", "-p", json.dumps({"spec": {"type": "ClusterIP"}}))
    wait_for("classy cleared", lambda: service_ips(kubectl, "classy") == [])


def other_identity(controller: ControllerProcess) -> str:
    for line in controller.log().splitlines():
        if "event=started identity=" in line:
            return line.split("identity=", 1)[1].split()[0]
    raise AssertionError("no start line")
