"""Which node a new pod goes to, pure: Ready, schedulable nodes that fit the pod, fewest pods first.

A stand-in for kube-scheduler good enough for the lab: it honours spec.unschedulable, the Ready condition,
NoSchedule/NoExecute taints (with the pod's tolerations) and the pod's nodeSelector, then spreads replicas by
picking the node with the fewest pods (ties broken by name, so the outcome is deterministic).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def node_is_ready(node: Mapping[str, Any]) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def tolerates(taint: Mapping[str, Any], tolerations: Iterable[Mapping[str, Any]]) -> bool:
    for tol in tolerations:
        effect = tol.get("effect") or ""
        if effect and effect != taint.get("effect"):
            continue
        key = tol.get("key") or ""
        if tol.get("operator") == "Exists":
            if not key or key == taint.get("key"):
                return True
        elif key == taint.get("key") and (tol.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def node_fits(node: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> bool:
    if not node_is_ready(node):
        return False
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return False
    tolerations = pod_spec.get("tolerations") or []
    for taint in spec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(taint, tolerations):
            return False
    labels = (node.get("metadata") or {}).get("labels") or {}
    return all(labels.get(key) == value for key, value in (pod_spec.get("nodeSelector") or {}).items())


def candidate_nodes(nodes: Iterable[Mapping[str, Any]], pod_spec: Mapping[str, Any]) -> list[str]:
    return sorted(str(node["metadata"]["name"]) for node in nodes if node_fits(node, pod_spec))


def pods_per_node(pods: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Live pods (not finished, not being deleted) per node name."""
    counts: dict[str, int] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if node and phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp"):
            counts[node] = counts.get(node, 0) + 1
    return counts


def spread(count: int, candidates: Iterable[str], counts: Mapping[str, int]) -> list[str | None]:
    """Nodes for `count` new pods, each to the least loaded candidate; None when no node fits."""
    names = list(candidates)
    load = {name: counts.get(name, 0) for name in names}
    chosen: list[str | None] = []
    for _ in range(count):
        if not names:
            chosen.append(None)
            continue
        best = min(names, key=lambda name: (load[name], name))
        load[best] += 1
        chosen.append(best)
    return chosen
