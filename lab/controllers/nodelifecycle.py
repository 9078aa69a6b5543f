"""Node health from kubelet heartbeats, pure (what kube-controller-manager's node lifecycle controller does).

A kubelet renews its Lease in kube-node-lease every 10 s. When neither the Lease nor the Node's Ready
heartbeat moved for the grace period, the node is unreachable: its Ready condition becomes Unknown
(NodeStatusUnknown), it gets the `node.kubernetes.io/unreachable:NoSchedule` taint so no new pods land there,
and its pods are marked not Ready, so EndpointSlices stop sending traffic to them. When the kubelet is back,
it reports Ready itself; the taint is then removed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from lab.controllers.deployment_plan import parse_time

UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
UNKNOWN_REASON = "NodeStatusUnknown"
UNKNOWN_MESSAGE = "Kubelet stopped posting node status."


def last_heartbeat(node: Mapping[str, Any], lease: Mapping[str, Any] | None) -> datetime | None:
    """The latest sign of life: the Lease's renewTime or the Ready condition's lastHeartbeatTime."""
    times = []
    if lease is not None:
        renew = parse_time(str((lease.get("spec") or {}).get("renewTime") or ""))
        if renew is not None:
            times.append(renew)
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            beat = parse_time(str(cond.get("lastHeartbeatTime") or ""))
            if beat is not None:
                times.append(beat)
    return max(times) if times else None


def is_stale(
    node: Mapping[str, Any], lease: Mapping[str, Any] | None, now: datetime, grace: timedelta
) -> bool:
    beat = last_heartbeat(node, lease)
    if beat is None:
        created = parse_time(str((node.get("metadata") or {}).get("creationTimestamp") or ""))
        return created is not None and created + grace < now
    return beat + grace < now


def _ready(node: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return dict(cond)
    return None


def _has_taint(node: Mapping[str, Any]) -> bool:
    return any(t.get("key") == UNREACHABLE_TAINT for t in (node.get("spec") or {}).get("taints") or [])


def unreachable_status(node: Mapping[str, Any], now: str) -> dict[str, Any] | None:
    """The conditions to write for an unreachable node, or None when they already say Unknown."""
    conditions = list((node.get("status") or {}).get("conditions") or [])
    ready = _ready(node)
    if ready is not None and ready.get("status") == "Unknown":
        return None
    out = []
    for cond in conditions:
        cond = dict(cond)
        if cond.get("type") in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"):
            cond.update(
                status="Unknown", reason=UNKNOWN_REASON, message=UNKNOWN_MESSAGE, lastTransitionTime=now
            )
        out.append(cond)
    if ready is None:
        out.append(
            {
                "type": "Ready",
                "status": "Unknown",
                "reason": UNKNOWN_REASON,
                "message": UNKNOWN_MESSAGE,
                "lastTransitionTime": now,
            }
        )
    return {"conditions": out}


def taints_with_unreachable(node: Mapping[str, Any], now: str) -> list[dict[str, Any]] | None:
    """The node's taints plus the unreachable NoSchedule taint, or None when it is already there."""
    if _has_taint(node):
        return None
    taints = [dict(t) for t in (node.get("spec") or {}).get("taints") or []]
    taints.append({"key": UNREACHABLE_TAINT, "effect": "NoSchedule", "timeAdded": now})
    return taints


def taints_without_unreachable(node: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The node's taints minus ours once it is Ready again, or None when there is nothing to remove."""
    ready = _ready(node)
    if not _has_taint(node) or ready is None or ready.get("status") != "True":
        return None
    return [
        dict(t) for t in (node.get("spec") or {}).get("taints") or [] if t.get("key") != UNREACHABLE_TAINT
    ]


def pod_not_ready_conditions(pod: Mapping[str, Any], now: str) -> list[dict[str, Any]] | None:
    """The pod's conditions with Ready False, or None when it is not Ready anyway."""
    conditions = [dict(c) for c in (pod.get("status") or {}).get("conditions") or []]
    changed = False
    for cond in conditions:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            cond.update(status="False", lastTransitionTime=now, reason="NodeNotReady")
            changed = True
    return conditions if changed else None
