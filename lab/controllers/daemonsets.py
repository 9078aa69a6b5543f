"""The DaemonSet controller's shell: applies daemonset_plan.plan() to the API for every DaemonSet."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from k8s.client import ApiError, Client
from k8s.informer import Informer
from k8s.meta import JSON, resource_path
from lab.controllers import daemonset_plan, naming, podstate
from lab.controllers.expectations import Expectations
from lab.controllers.workload_status import write_status

log = logging.getLogger("lab.controllers.daemonsets")


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return (str(meta.get("namespace") or "default"), str(meta["name"]))


def _suffixes() -> Iterator[str]:
    while True:
        yield naming.random_suffix()


class DaemonSetController:
    def __init__(self, kube: Client, daemonsets: Informer, pods: Informer, nodes: Informer) -> None:
        self.kube = kube
        self.daemonsets = daemonsets
        self.pods = pods
        self.nodes = nodes
        self.expectations = Expectations()
        self.reported: dict[str, str] = {}  # daemonset uid -> last spec error logged

    def sync_all(self) -> bool:
        """One pass over every DaemonSet; True when something is still settling (run again soon)."""
        owned: dict[str, list[JSON]] = {}
        for pod in self.pods.list():
            uid = podstate.controller_uid(pod)
            if uid:
                owned.setdefault(uid, []).append(pod)
        nodes = self.nodes.list()
        again = False
        live: set[str] = set()
        for ds in self.daemonsets.list():
            uid = str(ds["metadata"].get("uid") or "")
            live.add(uid)
            key = _key(ds)
            if not self.expectations.satisfied(key, lambda k: self.pods.get(*k), time.monotonic()):
                again = True
                continue
            try:
                again |= self.sync(ds, owned.get(uid, []), nodes)
            except daemonset_plan.DaemonSetSpecError as exc:
                if self.reported.get(uid) != str(exc):
                    self.reported[uid] = str(exc)
                    log.error("event=bad_daemonset daemonset=%s/%s error=%s", *key, exc)
            except ApiError as exc:
                log.warning("event=sync_failed daemonset=%s/%s error=%s", *key, exc)
                again = True
        self.collect_orphans(owned, live)
        return again

    def sync(self, ds: JSON, pods: list[JSON], nodes: list[JSON]) -> bool:
        key = _key(ds)
        namespace = key[0]
        plan = daemonset_plan.plan(ds, pods, nodes, _suffixes())
        for name in dict.fromkeys(plan.delete):
            try:
                self.kube.delete(resource_path("v1", "pods", namespace, name))
            except ApiError as exc:
                if exc.status != 404:
                    raise
            self.expectations.expect(key, (namespace, name), None, time.monotonic())
            log.info("event=pod_deleted daemonset=%s/%s pod=%s", *key, name)
        for manifest in plan.create:
            name = manifest["metadata"]["name"]
            try:
                created = self.kube.create(resource_path("v1", "pods", namespace), manifest)
            except ApiError as exc:
                if exc.status == 409:  # the random suffix collided: the next pass picks another
                    continue
                raise
            self.expectations.expect(
                key, (namespace, name), created["metadata"]["resourceVersion"], time.monotonic()
            )
            log.info(
                "event=pod_created daemonset=%s/%s pod=%s node=%s", *key, name, manifest["spec"]["nodeName"]
            )
        if daemonset_plan.status_changed(ds.get("status"), plan.status):
            write_status(self.kube, "daemonsets", namespace, key[1], plan.status)
        return bool(plan.create or plan.delete)

    def collect_orphans(self, owned: dict[str, list[JSON]], live: set[str]) -> None:
        """Delete pods whose DaemonSet is gone (the garbage collector's job in a real cluster)."""
        if not self.daemonsets.has_synced():
            return
        for uid, pods in owned.items():
            if uid in live:
                continue
            for pod in pods:
                refs = pod["metadata"].get("ownerReferences") or []
                if not any(r.get("controller") and r.get("kind") == "DaemonSet" for r in refs):
                    continue
                if podstate.is_terminating(pod):
                    continue
                namespace, name = _key(pod)
                try:
                    self.kube.delete(resource_path("v1", "pods", namespace, name))
                    log.info("event=orphan_deleted pod=%s/%s", namespace, name)
                except ApiError as exc:
                    log.warning("event=orphan_delete_failed pod=%s/%s error=%s", namespace, name, exc)
