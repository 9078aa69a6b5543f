"""What the Deployment controller must do for one Deployment, pure.

Given the Deployment, the pods it controls, the nodes and the cluster's per-node pod counts, `plan`
returns the pods to create (complete manifests, already scheduled), the pods to delete and the status to
write. Simplified from the real controller: pods are owned by the Deployment directly (no ReplicaSet
objects), and a template change rolls out by surge: new pods are created at once and old ones are deleted
as new ones become ready (strategy Recreate deletes the old ones first).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from lab.controllers import naming, podstate, scheduling

HASH_LABEL = "pod-template-hash"


class DeploymentSpecError(ValueError):
    """A Deployment the controller cannot act on; the message names the field."""


@dataclass
class DeploymentPlan:
    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def desired_replicas(deploy: Mapping[str, Any]) -> int:
    replicas = (deploy.get("spec") or {}).get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise DeploymentSpecError(f"spec.replicas: {replicas!r} is not a non-negative integer")
    return replicas


def resolve_percent(value: Any, total: int, round_up: bool, field_name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, value)
    if isinstance(value, str) and value.endswith("%"):
        try:
            percent = int(value[:-1])
        except ValueError:
            raise DeploymentSpecError(f"{field_name}: {value!r} is not an integer or percentage") from None
        amount = percent * total / 100
        return max(0, math.ceil(amount) if round_up else math.floor(amount))
    raise DeploymentSpecError(f"{field_name}: {value!r} is not an integer or percentage")


def max_unavailable(deploy: Mapping[str, Any], replicas: int) -> int:
    strategy = (deploy.get("spec") or {}).get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return replicas
    rolling = strategy.get("rollingUpdate") or {}
    value = rolling.get("maxUnavailable", "25%")
    amount = resolve_percent(value, replicas, False, "spec.strategy.rollingUpdate.maxUnavailable")
    return min(replicas, amount)


def template_hash(deploy: Mapping[str, Any]) -> str:
    template = (deploy.get("spec") or {}).get("template")
    if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
        raise DeploymentSpecError("spec.template.spec: required")
    containers = template["spec"].get("containers")
    if not isinstance(containers, list) or not containers:
        raise DeploymentSpecError("spec.template.spec.containers: at least one container is required")
    collisions = (deploy.get("status") or {}).get("collisionCount") or 0
    return naming.pod_template_hash(template, int(collisions))


def pod_manifest(deploy: Mapping[str, Any], tmpl_hash: str, node: str | None, suffix: str) -> dict[str, Any]:
    meta = deploy["metadata"]
    template = copy.deepcopy(deploy["spec"]["template"])
    tmeta = template.get("metadata") or {}
    prefix = naming.replica_set_name(meta["name"], tmpl_hash) + "-"
    labels = dict(tmeta.get("labels") or {})
    labels[HASH_LABEL] = tmpl_hash
    pod_meta: dict[str, Any] = {
        "name": naming.generate_name(prefix, suffix),
        "generateName": prefix,
        "namespace": meta.get("namespace", "default"),
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    spec = template["spec"]
    if node is not None:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}


def is_available(pod: Mapping[str, Any], min_ready_seconds: int, now: datetime) -> bool:
    if not podstate.is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    cond = podstate.condition(pod, "Ready") or {}
    since = parse_time(cond.get("lastTransitionTime"))
    return since is not None and since + timedelta(seconds=min_ready_seconds) <= now


def deletion_rank(pod: Mapping[str, Any], node_counts: Mapping[str, int]) -> tuple[int, int, int, float, str]:
    """Sort key: pods deleted first come first (unscheduled, not ready, on busy nodes, newest)."""
    node = (pod.get("spec") or {}).get("nodeName")
    created = parse_time(pod["metadata"].get("creationTimestamp"))
    age_key = -created.timestamp() if created is not None else float("-inf")
    return (
        0 if not node else 1,
        1 if podstate.is_ready(pod) else 0,
        -node_counts.get(node or "", 0),
        age_key,
        str(pod["metadata"]["name"]),
    )


def merge_condition(
    old: Sequence[Mapping[str, Any]], kind: str, status: str, reason: str, message: str, now: str
) -> dict[str, Any]:
    for cond in old:
        if cond.get("type") == kind:
            same_status = cond.get("status") == status
            unchanged = same_status and cond.get("reason") == reason and cond.get("message") == message
            return {
                "type": kind,
                "status": status,
                "lastUpdateTime": cond.get("lastUpdateTime", now) if unchanged else now,
                "lastTransitionTime": cond.get("lastTransitionTime", now) if same_status else now,
                "reason": reason,
                "message": message,
            }
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def plan(
    deploy: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    nodes: Sequence[Mapping[str, Any]],
    node_counts: Mapping[str, int],
    now: datetime,
    suffix: Callable[[], str] = naming.random_suffix,
) -> DeploymentPlan:
    """The actions for `deploy`; `pods` are the pods it controls, `node_counts` live pods per node."""
    spec = deploy.get("spec") or {}
    replicas = desired_replicas(deploy)
    tmpl_hash = template_hash(deploy)
    result = DeploymentPlan()
    counts = dict(node_counts)

    def current(pod: Mapping[str, Any]) -> bool:
        return (pod["metadata"].get("labels") or {}).get(HASH_LABEL) == tmpl_hash

    candidates = scheduling.candidate_nodes(nodes, spec["template"]["spec"])
    active = [p for p in pods if podstate.is_active(p)]
    finished = [p for p in pods if podstate.is_finished(p) and not podstate.is_terminating(p)]
    result.delete.extend(p["metadata"]["name"] for p in finished)
    if candidates and not spec.get("paused"):
        # Pods made while no node was Ready: there is no binding step in the lab, so replace them by
        # scheduled ones now that a node fits.
        unscheduled = [p for p in active if not (p.get("spec") or {}).get("nodeName")]
        result.delete.extend(p["metadata"]["name"] for p in unscheduled)
        active = [p for p in active if p not in unscheduled]
    new = [p for p in active if current(p)]
    old = [p for p in active if not current(p)]
    recreate = (spec.get("strategy") or {}).get("type") == "Recreate"

    if not spec.get("paused"):
        old_still_there = any(not current(p) and not podstate.is_finished(p) for p in pods)
        if recreate and old_still_there:
            result.delete.extend(p["metadata"]["name"] for p in old)
        else:
            if len(new) < replicas:
                nodes_for = scheduling.spread(replicas - len(new), candidates, counts)
                for node in nodes_for:
                    result.create.append(pod_manifest(deploy, tmpl_hash, node, suffix()))
                    if node:
                        counts[node] = counts.get(node, 0) + 1
            elif len(new) > replicas:
                surplus = sorted(new, key=lambda p: deletion_rank(p, counts))[: len(new) - replicas]
                result.delete.extend(p["metadata"]["name"] for p in surplus)
            keep_old = max(0, replicas - sum(1 for p in new if podstate.is_ready(p)))
            if len(old) > keep_old:
                doomed = sorted(old, key=lambda p: deletion_rank(p, counts))[: len(old) - keep_old]
                result.delete.extend(p["metadata"]["name"] for p in doomed)

    result.status = status(deploy, active, new, replicas, tmpl_hash, now)
    return result


def status(
    deploy: Mapping[str, Any],
    active: Sequence[Mapping[str, Any]],
    new: Sequence[Mapping[str, Any]],
    replicas: int,
    tmpl_hash: str,
    now: datetime,
) -> dict[str, Any]:
    spec = deploy.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    ready = sum(1 for p in active if podstate.is_ready(p))
    available = sum(1 for p in active if is_available(p, min_ready, now))
    updated = len(new)
    stamp = format_time(now)
    old_conditions = (deploy.get("status") or {}).get("conditions") or []
    rs_name = naming.replica_set_name(deploy["metadata"]["name"], tmpl_hash)
    if available >= replicas - max_unavailable(deploy, replicas):
        available_cond = merge_condition(
            old_conditions,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            stamp,
        )
    else:
        available_cond = merge_condition(
            old_conditions,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            stamp,
        )
    if updated == replicas and len(active) == replicas and available == replicas:
        progressing = merge_condition(
            old_conditions,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            f'ReplicaSet "{rs_name}" has successfully progressed.',
            stamp,
        )
    else:
        progressing = merge_condition(
            old_conditions,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            f'ReplicaSet "{rs_name}" is progressing.',
            stamp,
        )
    result: dict[str, Any] = {
        "observedGeneration": deploy["metadata"].get("generation", 1),
        "replicas": len(active),
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": max(0, replicas - available),
        "conditions": [available_cond, progressing],
    }
    collisions = (deploy.get("status") or {}).get("collisionCount")
    if collisions:
        result["collisionCount"] = collisions
    # The real controller omits zero counters (omitempty), and so do we.
    return {key: value for key, value in result.items() if value != 0 or key == "observedGeneration"}


def status_changed(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether writing `desired` changes anything beyond heartbeat-like timestamps."""

    def strip(status: Mapping[str, Any] | None) -> dict[str, Any]:
        status = dict(status or {})
        status["conditions"] = sorted(
            (
                {k: v for k, v in cond.items() if k not in ("lastUpdateTime", "lastTransitionTime")}
                for cond in status.get("conditions") or []
            ),
            key=lambda cond: str(cond.get("type")),
        )
        return status

    return strip(current) != strip(desired)
