"""Issue 7, case 1: an IP a Service shows is never given to another Service, even when that Service's request
turned invalid before a crash; a well-formed request of the wrong family clears the IP, as in MetalLB."""

from __future__ import annotations

import pytest

from tests.controller.conftest import Cluster, StartController
from tests.controller.helpers import (
    ControllerProcess,
    all_assigned,
    apply,
    configmap,
    service,
    service_ips,
    wait_event,
    wait_for,
    wait_ips,
)

pytestmark = pytest.mark.timeout(120)

POOL = "address-pools:\n- {name: p, protocol: layer2, addresses: [10.77.0.0/30]}\n"


@pytest.fixture(scope="module")
def controller(cluster: Cluster, start_controller: StartController) -> ControllerProcess:
    apply(cluster.kubectl, configmap(POOL))
    return start_controller()


def test_wrong_family_request_clears_the_ip(cluster: Cluster, controller: ControllerProcess):
    kubectl = cluster.kubectl
    apply(kubectl, service("v4", ports=((81, "TCP"),)))
    [ip] = wait_ips(kubectl, "v4")
    kubectl("annotate", "service", "v4", "metallb.io/loadBalancerIPs=2001:db8:2::e")
    wait_event(kubectl, "v4", "AllocationFailed", contains="does not match the Service's IP families IPv4")
    wait_for("v4 cleared", lambda: service_ips(kubectl, "v4") == [])
    wait_event(kubectl, "v4", "ClearAssignment", contains=ip)
    kubectl("delete", "service", "v4")


def test_invalid_request_across_a_crash_keeps_its_ip(
    cluster: Cluster, controller: ControllerProcess, start_controller: StartController
):
    kubectl = cluster.kubectl
    apply(kubectl, service("a"))
    held = wait_ips(kubectl, "a")
    kubectl("annotate", "service", "a", "metallb.universe.tf/loadBalancerIPs=not-an-ip")
    wait_event(kubectl, "a", "AllocationFailed", contains="not-an-ip")
    controller.kill()  # SIGKILL: no clean shutdown

    second = start_controller()
    apply(kubectl, service("b", ports=((443, "TCP"),)))
    wait_for("b served", lambda: service_ips(kubectl, "b"))
    assigned = all_assigned(kubectl)
    assert assigned["default/a"] == held, assigned
    assert assigned["default/b"] != held, f"{held} given twice: {assigned}"
    assert "event=restore_skipped" not in second.log()
    # Fixing the request moves a where it asks, and only then is its old IP free for someone else.
    kubectl("annotate", "service", "a", "--overwrite", "metallb.universe.tf/loadBalancerIPs=10.77.0.3")
    wait_for("a moved", lambda: service_ips(kubectl, "a") == ["10.77.0.3"])
    apply(kubectl, service("c", ports=((8080, "TCP"),)))
    assert wait_ips(kubectl, "c") == held
