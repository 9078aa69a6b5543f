"""The controller's type-change path against what a real API server does: kube-apiserver clears
status.loadBalancer itself when a Service stops being type LoadBalancer (dropTypeDependentFields in
pkg/registry/core/service/strategy.go), so the controller sees the change with the status already empty.
It must still free the IP and say so with ClearAssignment. Pure: reconcile_service over plain data."""

from __future__ import annotations

from typing import Any

from common.config import rebuild_config
from controller.allocator import Allocator
from controller.reconcile import reconcile_service

CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "config", "namespace": "metallb-system"},
    "data": {"config": "address-pools: [{name: default, protocol: layer2, addresses: [10.0.0.1/32]}]"},
}


def service(name: str, type_: str, ingress: list[str]) -> dict[str, Any]:
    lb: dict[str, Any] = {"ingress": [{"ip": ip, "ipMode": "VIP"} for ip in ingress]} if ingress else {}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "annotations": {"metallb.io/ip-allocated-from-pool": "default"} if ingress else {},
        },
        "spec": {"type": type_, "ports": [{"port": 80, "protocol": "TCP"}]},
        "status": {"loadBalancer": lb},
    }


def test_server_cleared_status_still_frees_the_ip_and_emits_clear_assignment() -> None:
    allocator = Allocator(rebuild_config(CONFIGMAP, [], []))
    first = reconcile_service("ns/web", service("web", "LoadBalancer", []), {}, allocator, None)
    assert first.ingress == [{"ip": "10.0.0.1", "ipMode": "VIP"}]
    waiting = reconcile_service("ns/next", service("next", "LoadBalancer", []), {}, allocator, None)
    assert waiting.pending

    # What the server hands over after `kubectl patch svc web -p '{"spec":{"type":"ClusterIP"}}'`: the status
    # is already {"loadBalancer": {}}; the pool annotation is still there.
    changed = service("web", "ClusterIP", [])
    changed["metadata"]["annotations"] = {"metallb.io/ip-allocated-from-pool": "default"}
    outcome = reconcile_service("ns/web", changed, {}, allocator, None)

    assert outcome.released and allocator.assignment("ns/web") is None
    assert [(e.type, e.reason, e.message) for e in outcome.events] == [
        (
            "Normal",
            "ClearAssignment",
            'clearing assignment ["10.0.0.1"]: service type is ClusterIP, not LoadBalancer',
        )
    ]
    assert outcome.ingress is None  # nothing left to clear: no status write the server would refuse
    assert outcome.pool_annotation is None
    # The freed IP goes to the Service that was waiting for it.
    retry = reconcile_service("ns/next", service("next", "LoadBalancer", []), {}, allocator, None)
    assert retry.ingress == [{"ip": "10.0.0.1", "ipMode": "VIP"}]
    # Seen again (a resync), the ClusterIP Service causes no second event.
    again = reconcile_service("ns/web", service("web", "ClusterIP", []), {}, allocator, None)
    assert again.events == [] and not again.released
