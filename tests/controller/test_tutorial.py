"""The issue's Done-when with the tutorial's own objects, and the life of an IP in its eleven-address pool:
exhaustion, release on delete and on type change, restart without churn, metrics."""

from __future__ import annotations

import json

import pytest

from tests.controller.conftest import Cluster, StartController
from tests.controller.helpers import (
    ControllerProcess,
    all_assigned,
    apply,
    events,
    external_ip_column,
    get_json,
    service,
    service_ips,
    wait_event,
    wait_for,
    wait_ips,
)
from tests.tutorial import TUTORIAL_DIR

pytestmark = pytest.mark.timeout(120)

POOL = [f"192.168.10.{n}" for n in range(90, 101)]


@pytest.fixture(scope="module")
def controller(cluster: Cluster, start_controller: StartController) -> ControllerProcess:
    apply(cluster.kubectl, TUTORIAL_DIR / "metallb-config.yaml")
    return start_controller()


def test_tutorial_service_gets_first_address_and_second_the_next(
    cluster: Cluster, controller: ControllerProcess
):
    kubectl = cluster.kubectl
    apply(kubectl, TUTORIAL_DIR / "nginx-metallb.yaml")
    assert wait_ips(kubectl, "nginx-metallb") == ["192.168.10.90"]
    apply(kubectl, service("second"))
    assert wait_ips(kubectl, "second") == ["192.168.10.91"]
    # What the tutorial's reader sees.
    assert external_ip_column(kubectl, "nginx-metallb") == "192.168.10.90"
    assert external_ip_column(kubectl, "second") == "192.168.10.91"

    svc = get_json(kubectl, "service", "nginx-metallb")
    assert svc["metadata"]["annotations"]["metallb.io/ip-allocated-from-pool"] == "default"
    assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": "192.168.10.90", "ipMode": "VIP"}]
    event = wait_event(kubectl, "nginx-metallb", "IPAllocated")
    assert event["message"] == 'Assigned IP ["192.168.10.90"]'
    assert event["type"] == "Normal"
    assert event["involvedObject"]["kind"] == "Service"
    assert event["involvedObject"]["uid"] == svc["metadata"]["uid"]
    described = kubectl("describe", "service", "nginx-metallb").stdout
    assert "IPAllocated" in described and 'Assigned IP ["192.168.10.90"]' in described
    # kopf keeps no progress state or finalizers on the Services it watches.
    assert not svc["metadata"].get("finalizers")
    assert not [a for a in svc["metadata"]["annotations"] if "kopf" in a]


def test_exhausted_pool_leaves_service_pending_until_an_ip_is_freed(
    cluster: Cluster, controller: ControllerProcess
):
    kubectl = cluster.kubectl
    for index in range(9):
        apply(kubectl, service(f"fill-{index}"))
    wait_for(
        "pool full",
        lambda: sorted(ip for ips in all_assigned(kubectl).values() for ip in ips) == sorted(POOL),
        timeout=15,
    )

    apply(kubectl, service("waiting"))
    event = wait_event(kubectl, "waiting", "AllocationFailed")
    assert event["type"] == "Warning"
    assert 'no available IPs in pool "default"' in event["message"]
    assert service_ips(kubectl, "waiting") == []

    freed = service_ips(kubectl, "fill-3")
    kubectl("delete", "service", "fill-3")
    assert wait_ips(kubectl, "waiting") == freed
    wait_event(kubectl, "waiting", "IPAllocated", contains=freed[0])


def test_type_change_away_from_load_balancer_clears_and_frees(
    cluster: Cluster, controller: ControllerProcess
):
    kubectl = cluster.kubectl
    apply(kubectl, service("waiting-2"))
    wait_event(kubectl, "waiting-2", "AllocationFailed")
    freed = service_ips(kubectl, "fill-4")
    assert freed
    kubectl("patch", "service", "fill-4", "--type=merge", "-p", json.dumps({"spec": {"type": "ClusterIP"}}))
    wait_for("fill-4 status cleared", lambda: service_ips(kubectl, "fill-4") == [])
    wait_event(kubectl, "fill-4", "ClearAssignment", contains=freed[0])
    wait_for(
        "pool annotation removed",
        lambda: (
            "metallb.io/ip-allocated-from-pool"
            not in (get_json(kubectl, "service", "fill-4")["metadata"].get("annotations") or {})
        ),
    )
    assert wait_ips(kubectl, "waiting-2") == freed


def test_metrics(cluster: Cluster, controller: ControllerProcess):
    def current() -> dict[str, float] | None:
        samples = controller.metrics()
        in_use = samples.get('metallb_allocator_addresses_in_use_total{pool="default"}')
        return samples if in_use == 11 else None

    samples = wait_for("metrics show the full pool", current)
    assert samples['metallb_allocator_addresses_total{pool="default"}'] == 11
    assert samples["metallb_k8s_client_config_loaded_bool"] == 1
    assert samples["metallb_k8s_client_config_stale_bool"] == 0
    assert samples["metallb_k8s_client_updates_total"] > 0
    assert samples["metallb_k8s_client_update_errors_total"] == 0  # test_second_attempts counts some


def test_restart_keeps_every_ip_without_churn(
    cluster: Cluster, controller: ControllerProcess, start_controller: StartController
):
    kubectl = cluster.kubectl
    before = all_assigned(kubectl)
    listing = get_json(kubectl, "services", "-A")
    versions = {
        f"{s['metadata']['namespace']}/{s['metadata']['name']}": s["metadata"]["resourceVersion"]
        for s in listing["items"]
    }
    allocated_events = len(events(kubectl, "nginx-metallb", reason="IPAllocated"))

    controller.kill()
    # While it is down: one Service goes away, another arrives and a waiting one stays.
    freed = before.pop("default/fill-5")
    kubectl("delete", "service", "fill-5")
    apply(kubectl, service("while-down"))

    replacement = start_controller()
    assert wait_ips(kubectl, "while-down", timeout=15) == freed
    after = all_assigned(kubectl)
    assert after.pop("default/while-down") == freed
    assert after == before
    listing = get_json(kubectl, "services", "-A")
    for svc in listing["items"]:
        key = f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"
        if key in before:
            assert svc["metadata"]["resourceVersion"] == versions[key], f"{key} was rewritten after restart"
    assert len(events(kubectl, "nginx-metallb", reason="IPAllocated")) == allocated_events
    assert "event=restored adopted=" in replacement.log()
    assert replacement.alive()
