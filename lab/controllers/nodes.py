"""The node lifecycle controller's shell: applies nodelifecycle.py's decisions to Nodes and their Pods."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from k8s.client import ApiError, Client
from k8s.informer import Informer
from k8s.meta import resource_path
from lab.controllers import nodelifecycle
from lab.controllers.deployment_plan import format_time

log = logging.getLogger("lab.controllers.nodes")


class NodeLifecycleController:
    def __init__(
        self, kube: Client, nodes: Informer, leases: Informer, pods: Informer, grace_seconds: float
    ) -> None:
        self.kube = kube
        self.nodes = nodes
        self.leases = leases
        self.pods = pods
        self.grace = timedelta(seconds=grace_seconds)

    def sync_all(self) -> bool:
        now = datetime.now(UTC)
        stamp = format_time(now)
        again = False
        for node in self.nodes.list():
            name = str(node["metadata"]["name"])
            path = resource_path("v1", "nodes", name=name)
            try:
                if nodelifecycle.is_stale(node, self.leases.get("kube-node-lease", name), now, self.grace):
                    status = nodelifecycle.unreachable_status(node, stamp)
                    if status is not None:
                        self.kube.merge_patch(path + "/status", {"status": status})
                        log.warning("event=node_unreachable node=%s", name)
                    taints = nodelifecycle.taints_with_unreachable(node, stamp)
                    if taints is not None:
                        self.kube.merge_patch(path, {"spec": {"taints": taints}})
                    self.mark_pods_not_ready(name, stamp)
                else:
                    taints = nodelifecycle.taints_without_unreachable(node)
                    if taints is not None:
                        self.kube.merge_patch(path, {"spec": {"taints": taints or None}})
                        log.info("event=node_reachable node=%s", name)
            except ApiError as exc:
                log.warning("event=sync_failed node=%s error=%s", name, exc)
                again = True
        return again

    def mark_pods_not_ready(self, node: str, stamp: str) -> None:
        for pod in self.pods.list():
            if (pod.get("spec") or {}).get("nodeName") != node:
                continue
            conditions = nodelifecycle.pod_not_ready_conditions(pod, stamp)
            if conditions is None:
                continue
            meta = pod["metadata"]
            path = resource_path("v1", "pods", meta.get("namespace") or "default", meta["name"], "status")
            try:
                self.kube.merge_patch(path, {"status": {"conditions": conditions}})
                log.info(
                    "event=pod_marked_not_ready pod=%s/%s node=%s", meta.get("namespace"), meta["name"], node
                )
            except ApiError as exc:
                if exc.status != 404:
                    raise
