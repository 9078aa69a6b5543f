"""What happens the second time round: an unchanged failure is not reported again, a withdrawal is announced
once, and an IP another Service leaves goes to the Service waiting for it.

A test that an event is posted once must first see the second attempt happen (the Service's log lines or the
error counter grow), then see a later event on the same object (posted after any duplicate would have been),
and only then count.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.controller.conftest import Cluster, StartController
from tests.controller.helpers import (
    ControllerProcess,
    apply,
    configmap,
    events,
    service,
    service_ips,
    wait_event,
    wait_for,
    wait_ips,
)

pytestmark = pytest.mark.timeout(120)

BASE = "address-pools:\n- {name: base, protocol: layer2, addresses: [10.70.0.0/29]}"


def ip_address_pool(name: str, addresses: list[str], labels: dict[str, str] | None = None) -> str:
    metadata: dict[str, Any] = {"name": name, "namespace": "metallb-system", "labels": labels or {}}
    body = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": metadata}
    return json.dumps({**body, "spec": {"addresses": addresses}})


@pytest.fixture(scope="module")
def controller(cluster: Cluster, start_controller: StartController) -> ControllerProcess:
    apply(cluster.kubectl, configmap(BASE))
    return start_controller()


def log_lines(controller: ControllerProcess, key: str) -> int:
    return sum(f"service={key} " in line for line in controller.log().splitlines())


def errors(controller: ControllerProcess) -> float:
    return controller.metrics()["metallb_k8s_client_update_errors_total"]


def test_allocation_failed_is_reported_once_across_attempts(cluster: Cluster, controller: ControllerProcess):
    kubectl = cluster.kubectl
    apply(kubectl, service("bad", annotations={"metallb.io/loadBalancerIPs": "10.70.0.x"}))
    event = wait_event(kubectl, "bad", "AllocationFailed", contains="10.70.0.x")
    wait_for("the first attempt's log line", lambda: log_lines(controller, "default/bad") >= 1)
    before = log_lines(controller, "default/bad")
    # A change that does not touch the request: the Service is reconciled again and fails the same way.
    kubectl("label", "service", "bad", "touched=yes")
    wait_for("a second attempt", lambda: log_lines(controller, "default/bad") > before)
    # Fixed: IPAllocated is posted after anything the second attempt posted.
    kubectl("annotate", "service", "bad", "--overwrite", "metallb.io/loadBalancerIPs=10.70.0.5")
    assert wait_ips(kubectl, "bad") == ["10.70.0.5"]
    wait_event(kubectl, "bad", "IPAllocated", contains="10.70.0.5")
    failed = events(kubectl, "bad", reason="AllocationFailed")
    assert len(failed) == 1, [e["message"] for e in failed]
    assert failed[0].get("count", 1) == 1 and failed[0]["message"] == event["message"]


def test_invalid_config_is_reported_once_per_problem(cluster: Cluster, controller: ControllerProcess):
    kubectl = cluster.kubectl
    errors_before = errors(controller)
    apply(kubectl, ip_address_pool("broken", ["10.71.0.0/33"]))
    first = wait_event(kubectl, "broken", "InvalidConfig", namespace="metallb-system", contains="/33")
    wait_for("the failed rebuild counted", lambda: errors(controller) > errors_before)
    counted = errors(controller)
    # Relabelling makes the controller rebuild the config, which fails the same way.
    kubectl("label", "ipaddresspool", "broken", "-n", "metallb-system", "touched=yes")
    wait_for("a second failed rebuild", lambda: errors(controller) > counted)
    # The last valid config still serves: this Service's event comes after anything the rebuild posted.
    apply(kubectl, service("sentinel"))
    [ip] = wait_ips(kubectl, "sentinel")
    wait_event(kubectl, "sentinel", "IPAllocated", contains=ip)
    reported = events(kubectl, "broken", "metallb-system", "InvalidConfig")
    assert [e["message"] for e in reported] == [first["message"]]

    # A different problem on the same object is reported too.
    apply(kubectl, ip_address_pool("broken", ["10.71.0.0-10.70.255.255"]))
    second = wait_event(
        kubectl, "broken", "InvalidConfig", namespace="metallb-system", contains="first > last"
    )
    assert second["message"] != first["message"]
    kubectl("delete", "ipaddresspool", "broken", "-n", "metallb-system")
    wait_for("stale cleared", lambda: controller.metrics()["metallb_k8s_client_config_stale_bool"] == 0)


def test_a_pending_service_gets_the_ip_another_service_left(cluster: Cluster, controller: ControllerProcess):
    kubectl = cluster.kubectl
    apply(kubectl, ip_address_pool("one", ["10.72.0.0/32"]))
    apply(kubectl, ip_address_pool("two", ["10.72.1.0/30"]))
    apply(kubectl, service("mover", annotations={"metallb.io/address-pool": "one"}))
    assert wait_ips(kubectl, "mover", timeout=20) == ["10.72.0.0"]
    apply(kubectl, service("waiter", annotations={"metallb.io/address-pool": "one"}))
    wait_event(kubectl, "waiter", "AllocationFailed", contains='no available IPs in pool "one"')
    # mover leaves for pool two; nothing else happens that could make the waiting Service look again.
    kubectl("annotate", "service", "mover", "--overwrite", "metallb.io/address-pool=two")
    assert wait_ips(kubectl, "waiter") == ["10.72.0.0"]
    assert service_ips(kubectl, "mover") == ["10.72.1.0"]


def test_a_withdrawal_is_announced_once(cluster: Cluster, controller: ControllerProcess):
    kubectl = cluster.kubectl
    apply(kubectl, ip_address_pool("leaving", ["10.73.0.0/32"]))
    apply(kubectl, service("tenant", annotations={"metallb.io/address-pool": "leaving"}))
    assert wait_ips(kubectl, "tenant", timeout=20) == ["10.73.0.0"]
    kubectl("delete", "ipaddresspool", "leaving", "-n", "metallb-system")
    wait_for("tenant withdrawn", lambda: service_ips(kubectl, "tenant") == [])
    wait_event(kubectl, "tenant", "ClearAssignment", contains="not allowed by config")
    wait_event(kubectl, "tenant", "AllocationFailed", contains='unknown pool "leaving"')
    before = log_lines(controller, "default/tenant")
    kubectl("label", "service", "tenant", "touched=yes")
    wait_for("a second attempt", lambda: log_lines(controller, "default/tenant") > before)
    # The pool comes back: IPAllocated is posted after anything the second attempt posted.
    apply(kubectl, ip_address_pool("leaving", ["10.73.0.0/32"]))
    assert wait_ips(kubectl, "tenant", timeout=20) == ["10.73.0.0"]
    wait_event(kubectl, "tenant", "IPAllocated", contains="10.73.0.0")
    cleared = events(kubectl, "tenant", reason="ClearAssignment")
    assert [e["message"] for e in cleared] == ['current IP ["10.73.0.0"] not allowed by config, clearing']
    failed = events(kubectl, "tenant", reason="AllocationFailed")
    assert [e["message"] for e in failed] == [
        'Failed to allocate IP for "default/tenant": unknown pool "leaving"'
    ]
