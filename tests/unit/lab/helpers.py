"""Plain Kubernetes objects for the pure controller tests."""

from __future__ import annotations

from typing import Any


def node(name: str, ready: bool = True, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": name, "labels": extra.pop("labels", {"kubernetes.io/hostname": name})},
        "spec": extra.pop("spec", {}),
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }
    return obj


def pod(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    node_name: str | None = "node1",
    ips: list[str] | None = None,
    ready: bool = True,
    terminating: bool = False,
    phase: str = "Running",
    ports: list[dict[str, Any]] | None = None,
    owner_uid: str | None = None,
    created: str = "2026-01-01T00:00:00Z",
    namespace: str = "default",
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{name}",
        "labels": labels if labels is not None else {"app": "nginx"},
        "creationTimestamp": created,
    }
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    if owner_uid:
        meta["ownerReferences"] = [{"kind": "Deployment", "name": "d", "uid": owner_uid, "controller": True}]
    spec: dict[str, Any] = {"containers": [{"name": "c1", "image": "nginx", "ports": ports or []}]}
    if node_name:
        spec["nodeName"] = node_name
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if ips:
        status["podIP"] = ips[0]
        status["podIPs"] = [{"ip": ip} for ip in ips]
    return {"metadata": meta, "spec": spec, "status": status}


def service(name: str = "nginx-svc", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "selector": {"app": "nginx"},
        "ports": [{"protocol": "TCP", "port": 80, "targetPort": 80}],
        "clusterIP": "10.96.0.50",
        "ipFamilies": ["IPv4"],
    }
    base.update(spec)
    return {"metadata": {"name": name, "namespace": "default", "uid": "svc-uid"}, "spec": base}
