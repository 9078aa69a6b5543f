"""The Deployment controller's shell: applies deployment_plan.plan() to the API for every Deployment."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from k8s.client import ApiError, Client
from k8s.informer import Informer
from k8s.meta import JSON, resource_path
from lab.controllers import deployment_plan, podstate, scheduling
from lab.controllers.expectations import Expectations
from lab.controllers.workload_status import write_status

log = logging.getLogger("lab.controllers.deployments")


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return (str(meta.get("namespace") or "default"), str(meta["name"]))


class DeploymentController:
    def __init__(self, kube: Client, deployments: Informer, pods: Informer, nodes: Informer) -> None:
        self.kube = kube
        self.deployments = deployments
        self.pods = pods
        self.nodes = nodes
        self.expectations = Expectations()
        self.reported: dict[
            str, str
        ] = {}  # deployment uid -> last spec error logged (log once, not every pass)

    def sync_all(self) -> bool:
        """One pass over every Deployment; True when something is still settling (run again soon)."""
        now = datetime.now(UTC)
        all_pods = self.pods.list()
        nodes = self.nodes.list()
        counts = scheduling.pods_per_node(all_pods)
        owned: dict[str, list[JSON]] = {}
        for pod in all_pods:
            uid = podstate.controller_uid(pod)
            if uid:
                owned.setdefault(uid, []).append(pod)
        again = False
        live_uids = set()
        for deploy in self.deployments.list():
            uid = str(deploy["metadata"].get("uid") or "")
            live_uids.add(uid)
            key = _key(deploy)
            if not self.expectations.satisfied(key, lambda k: self.pods.get(*k), time.monotonic()):
                again = True
                continue
            try:
                again |= self.sync(deploy, owned.get(uid, []), nodes, counts, now)
            except deployment_plan.DeploymentSpecError as exc:
                if self.reported.get(uid) != str(exc):
                    self.reported[uid] = str(exc)
                    log.error("event=bad_deployment deployment=%s/%s error=%s", *key, exc)
            except ApiError as exc:
                log.warning("event=sync_failed deployment=%s/%s error=%s", *key, exc)
                again = True
        self.collect_orphans(all_pods, live_uids)
        return again

    def sync(
        self, deploy: JSON, pods: list[JSON], nodes: list[JSON], counts: dict[str, int], now: datetime
    ) -> bool:
        key = _key(deploy)
        namespace = key[0]
        plan = deployment_plan.plan(deploy, pods, nodes, counts, now)
        for manifest in plan.create:
            name = manifest["metadata"]["name"]
            try:
                created = self.kube.create(resource_path("v1", "pods", namespace), manifest)
            except ApiError as exc:
                if exc.status == 409:  # name collision on the random suffix: the next pass picks another
                    continue
                raise
            node = manifest["spec"].get("nodeName")
            if node:
                counts[node] = counts.get(node, 0) + 1
            self.expectations.expect(
                key, (namespace, name), created["metadata"]["resourceVersion"], time.monotonic()
            )
            log.info("event=pod_created deployment=%s/%s pod=%s node=%s", *key, name, node or "")
        for name in plan.delete:
            self.kube.delete(resource_path("v1", "pods", namespace, name))
            self.expectations.expect(key, (namespace, name), None, time.monotonic())
            log.info("event=pod_deleted deployment=%s/%s pod=%s", *key, name)
        if deployment_plan.status_changed(deploy.get("status"), plan.status):
            write_status(self.kube, "deployments", namespace, key[1], plan.status)
        return bool(plan.create or plan.delete)

    def collect_orphans(self, pods: list[JSON], live_uids: set[str]) -> None:
        """Delete pods whose owning Deployment is gone (the garbage collector's job in a real cluster)."""
        if not self.deployments.has_synced():
            return
        for pod in pods:
            for ref in pod["metadata"].get("ownerReferences") or []:
                if (
                    ref.get("controller")
                    and ref.get("kind") == "Deployment"
                    and ref.get("uid") not in live_uids
                ):
                    if podstate.is_terminating(pod):
                        continue
                    namespace, name = _key(pod)
                    try:
                        self.kube.delete(resource_path("v1", "pods", namespace, name))
                        log.info("event=orphan_deleted pod=%s/%s", namespace, name)
                    except ApiError as exc:
                        log.warning("event=orphan_delete_failed pod=%s/%s error=%s", namespace, name, exc)
