"""A stand-in for kube-scheduler for pods created without a node (`kubectl run`, bare Pod manifests).

Picks a node with scheduling.py and binds the pod: through the pods/binding subresource when the API server
has it, else by setting spec.nodeName (the embedded server allows that; a real one only takes the binding).
Deployment pods are left alone: the Deployment controller schedules (and if need be replaces) its own.
"""

from __future__ import annotations

import logging
import time

from k8s.client import ApiError, Client
from k8s.events import EventRecorder
from k8s.informer import Informer
from k8s.meta import JSON, resource_path
from lab.controllers import podstate, scheduling

log = logging.getLogger("lab.controllers.binder")

SCHEDULER_NAMES = ("", "default-scheduler")


def needs_binding(pod: JSON) -> bool:
    spec = pod.get("spec") or {}
    if spec.get("nodeName") or not podstate.is_active(pod):
        return False
    if (spec.get("schedulerName") or "") not in SCHEDULER_NAMES:
        return False
    owners = pod["metadata"].get("ownerReferences") or []
    return not any(ref.get("controller") and ref.get("kind") == "Deployment" for ref in owners)


class PodBinder:
    def __init__(self, kube: Client, pods: Informer, nodes: Informer, recorder: EventRecorder) -> None:
        self.kube = kube
        self.recorder = recorder
        self.pods = pods
        self.nodes = nodes
        self.binding_supported = True
        self.reported_unschedulable: set[str] = set()
        # Pods just bound, by uid, until their new nodeName is surely in the cache (never bind twice).
        self.recently_bound: dict[str, float] = {}

    def sync_all(self) -> bool:
        pods = self.pods.list()
        now = time.monotonic()
        self.recently_bound = {uid: t for uid, t in self.recently_bound.items() if t > now}
        waiting = [
            p for p in pods if needs_binding(p) and p["metadata"].get("uid") not in self.recently_bound
        ]
        if not waiting:
            return False
        nodes = self.nodes.list()
        counts = scheduling.pods_per_node(pods)
        again = False
        for pod in sorted(waiting, key=lambda p: str(p["metadata"].get("creationTimestamp") or "")):
            meta = pod["metadata"]
            namespace, name, uid = (
                str(meta.get("namespace") or "default"),
                str(meta["name"]),
                str(meta.get("uid")),
            )
            [node] = scheduling.spread(1, scheduling.candidate_nodes(nodes, pod.get("spec") or {}), counts)
            if node is None:
                if uid not in self.reported_unschedulable:
                    self.reported_unschedulable.add(uid)
                    message = f"0/{len(nodes)} nodes are available: no Ready node fits the pod."
                    log.warning("event=unschedulable pod=%s/%s nodes=%d", namespace, name, len(nodes))
                    self.event(pod, "Warning", "FailedScheduling", message)
                continue
            try:
                self.bind(namespace, name, node)
            except ApiError as exc:
                log.warning("event=bind_failed pod=%s/%s node=%s error=%s", namespace, name, node, exc)
                again = True
                continue
            counts[node] = counts.get(node, 0) + 1
            self.recently_bound[uid] = now + 10.0
            self.reported_unschedulable.discard(uid)
            log.info("event=pod_bound pod=%s/%s node=%s", namespace, name, node)
            self.event(pod, "Normal", "Scheduled", f"Successfully assigned {namespace}/{name} to {node}")
        return again

    def bind(self, namespace: str, name: str, node: str) -> None:
        if self.binding_supported:
            binding = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name, "namespace": namespace},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            }
            try:
                self.kube.create(resource_path("v1", "pods", namespace, name, "binding"), binding)
                return
            except ApiError as exc:
                if exc.status not in (404, 405):
                    raise
                self.binding_supported = False
                log.info("event=no_binding_subresource fallback=spec.nodeName")
        self.kube.merge_patch(resource_path("v1", "pods", namespace, name), {"spec": {"nodeName": node}})

    def event(self, pod: JSON, kind: str, reason: str, message: str) -> None:
        self.recorder.event(pod, kind, reason, message, default_kind="Pod")
