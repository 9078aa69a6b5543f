"""What the DaemonSet controller must do for one DaemonSet, pure.

One pod per eligible node: the node matches the template's nodeSelector and its NoSchedule/NoExecute taints
are tolerated (plus the tolerations the real controller adds to every daemon pod: not-ready, unreachable,
disk/memory/pid pressure, unschedulable; a daemon runs on a cordoned or NotReady node too). Pods are named
`<daemonset>-<5 chars>`, labelled `controller-revision-hash` (the template's hash) and
`pod-template-generation`, owned by the DaemonSet, and bound to their node directly. RollingUpdate replaces
pods of an old template node by node, at most maxUnavailable nodes without a ready daemon at a time, deleting
the old pod first and creating the new one once it is gone (maxSurge 0, the default); OnDelete leaves old pods
until someone deletes them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.controllers import naming, podstate, scheduling
from lab.controllers.deployment_plan import resolve_percent

HASH_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"
# pkg/controller/daemon/util: AddOrUpdateDaemonPodTolerations.
DAEMON_TOLERATIONS = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
HOST_NETWORK_TOLERATION = {
    "key": "node.kubernetes.io/network-unavailable",
    "operator": "Exists",
    "effect": "NoSchedule",
}


class DaemonSetSpecError(ValueError):
    """A DaemonSet the controller cannot act on; the message names the field."""


@dataclass
class DaemonSetPlan:
    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)


def template_hash(ds: Mapping[str, Any]) -> str:
    template = (ds.get("spec") or {}).get("template") or {}
    collisions = int((ds.get("status") or {}).get("collisionCount") or 0)
    return naming.pod_template_hash(dict(template), collisions)


def daemon_tolerations(template_spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    tolerations = [dict(t) for t in template_spec.get("tolerations") or []]
    extra = list(DAEMON_TOLERATIONS) + ([HOST_NETWORK_TOLERATION] if template_spec.get("hostNetwork") else [])
    for toleration in extra:
        if toleration not in tolerations:
            tolerations.append(dict(toleration))
    return tolerations


def node_eligible(node: Mapping[str, Any], template_spec: Mapping[str, Any]) -> bool:
    """Whether a daemon pod belongs on `node`: its nodeSelector matches and its taints are tolerated. Unlike a
    Deployment's pod, readiness and cordoning do not matter."""
    tolerations = daemon_tolerations(template_spec)
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not scheduling.tolerates(
            taint, tolerations
        ):
            return False
    labels = (node.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in (template_spec.get("nodeSelector") or {}).items())


def pod_manifest(ds: Mapping[str, Any], node: str, hash_value: str, suffix: str) -> dict[str, Any]:
    meta = ds["metadata"]
    template = copy.deepcopy((ds.get("spec") or {}).get("template") or {})
    tmeta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    labels = dict(tmeta.get("labels") or {})
    labels[HASH_LABEL] = hash_value
    labels[GENERATION_LABEL] = str(meta.get("generation") or 1)
    spec["nodeName"] = node
    spec["tolerations"] = daemon_tolerations(spec)
    pod_meta: dict[str, Any] = {
        "name": naming.generate_name(f"{meta['name']}-", suffix),
        "namespace": meta.get("namespace") or "default",
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "name": meta["name"],
                "uid": meta.get("uid"),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}


def _max_unavailable(ds: Mapping[str, Any], desired: int) -> int:
    strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
    value = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1)
    try:
        return max(
            1, resolve_percent(value, desired, True, "spec.updateStrategy.rollingUpdate.maxUnavailable")
        )
    except ValueError as exc:
        raise DaemonSetSpecError(str(exc)) from exc


def plan(
    ds: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    nodes: Sequence[Mapping[str, Any]],
    suffixes: Any,
) -> DaemonSetPlan:
    """`suffixes`: an iterator of random name suffixes (naming.random_suffix), passed in to keep this pure."""
    spec = ds.get("spec") or {}
    template_spec = (spec.get("template") or {}).get("spec")
    if not isinstance(template_spec, dict) or not template_spec.get("containers"):
        raise DaemonSetSpecError("spec.template.spec.containers: at least one container is required")
    current = template_hash(ds)
    result = DaemonSetPlan()
    eligible = {str(n["metadata"]["name"]) for n in nodes if node_eligible(n, template_spec)}
    by_node: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        by_node.setdefault(str((pod.get("spec") or {}).get("nodeName") or ""), []).append(pod)
    desired = len(eligible)
    rolling = ((spec.get("updateStrategy") or {}).get("type") or "RollingUpdate") == "RollingUpdate"
    budget = _max_unavailable(ds, desired)
    unavailable = 0
    old_ready: list[tuple[str, str]] = []  # (node, pod name) of ready pods of an old template
    scheduled = ready = available = updated = misscheduled = 0
    for node_name in sorted(set(by_node) | eligible):
        node_pods = by_node.get(node_name, [])
        active = [p for p in node_pods if podstate.is_active(p)]
        if node_name not in eligible:
            misscheduled += len(active)
            result.delete += [str(p["metadata"]["name"]) for p in active]
            continue
        # A finished daemon pod is replaced, as the real controller does.
        result.delete += [str(p["metadata"]["name"]) for p in node_pods if podstate.is_finished(p)]
        if not node_pods or all(podstate.is_finished(p) for p in node_pods):
            result.create.append(pod_manifest(ds, node_name, current, next(suffixes)))
            unavailable += 1
            continue
        if not active:  # the old pod is terminating: its replacement waits until it is gone
            unavailable += 1
            continue
        scheduled += 1
        newest = sorted(active, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))
        keep, extra = newest[0], newest[1:]
        result.delete += [str(p["metadata"]["name"]) for p in extra]
        is_current = (keep["metadata"].get("labels") or {}).get(HASH_LABEL) == current
        updated += is_current
        if podstate.is_ready(keep):
            ready += 1
            available += 1
            if not is_current:
                old_ready.append((node_name, str(keep["metadata"]["name"])))
        else:
            unavailable += 1
            if not is_current and rolling:
                result.delete.append(str(keep["metadata"]["name"]))  # not ready anyway: replace it at once
    if rolling:
        room = max(0, budget - unavailable)
        result.delete += [name for _, name in old_ready[:room]]
    result.status = {
        "currentNumberScheduled": scheduled,
        "desiredNumberScheduled": desired,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "numberAvailable": available,
        "numberUnavailable": max(0, desired - available),
        "updatedNumberScheduled": updated,
        "observedGeneration": (ds.get("metadata") or {}).get("generation") or 1,
    }
    return result


def status_changed(current: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> bool:
    current = current or {}
    return any(current.get(k) != v for k, v in wanted.items())
