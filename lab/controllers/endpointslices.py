"""The EndpointSlice (and legacy Endpoints) controller's shell: applies slices.py's rendering to the API."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from k8s.client import ApiError, Client
from k8s.informer import Informer
from k8s.meta import JSON, resource_path
from lab.controllers import slices
from lab.controllers.expectations import Expectations

log = logging.getLogger("lab.controllers.endpointslices")

# Set on the Endpoints objects this controller writes (as the real endpoints controller does since v1.33), so
# it only ever deletes its own when their Service goes away.
ENDPOINTS_MANAGED_BY_LABEL = "endpoints.kubernetes.io/managed-by"
ENDPOINTS_MANAGED_BY = "endpoint-controller"
SLICES = "discovery.k8s.io/v1"


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return (str(meta.get("namespace") or "default"), str(meta["name"]))


class EndpointSliceController:
    def __init__(
        self,
        kube: Client,
        services: Informer,
        pods: Informer,
        nodes: Informer,
        endpoint_slices: Informer,
        endpoints: Informer,
    ) -> None:
        self.kube = kube
        self.services = services
        self.pods = pods
        self.nodes = nodes
        self.endpoint_slices = endpoint_slices
        self.endpoints = endpoints
        self.expectations = Expectations()
        # What changed since the last pass, noted from the informer threads, so a pass only renders the
        # Services concerned (thousands of Services must not be re-rendered for every pod update).
        self._lock = threading.Lock()
        self._all_dirty = True
        self._dirty_services: set[tuple[str, str]] = set()
        self._dirty_namespaces: set[str] = set()
        self._retry: set[tuple[str, str]] = set()

    def note(self, resource: str, obj: JSON) -> None:
        """Record a change seen by an informer (called from its thread)."""
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        with self._lock:
            if resource in ("services", "endpoints"):
                self._dirty_services.add((namespace, str(meta.get("name"))))
            elif resource == "endpointslices":
                service = (meta.get("labels") or {}).get(slices.SERVICE_NAME_LABEL)
                if service:
                    self._dirty_services.add((namespace, str(service)))
            elif resource == "pods":
                self._dirty_namespaces.add(namespace)
            else:
                self._all_dirty = True

    def mark_all(self) -> None:
        with self._lock:
            self._all_dirty = True

    def _take_dirty(self) -> tuple[bool, set[tuple[str, str]], set[str]]:
        with self._lock:
            taken = (self._all_dirty, self._dirty_services | self._retry, self._dirty_namespaces)
            self._all_dirty, self._dirty_services, self._dirty_namespaces, self._retry = (
                False,
                set(),
                set(),
                set(),
            )
        return taken

    def _lookup(self, key: tuple[str, str]) -> JSON | None:
        # Keys of slices and Endpoints cannot clash: slice names carry a generated suffix. Endpoints keys are
        # stored with a leading "ep/" marker in the namespace slot to keep them apart anyway.
        if key[0].startswith("ep/"):
            return self.endpoints.get(key[0][3:], key[1])
        return self.endpoint_slices.get(*key)

    def sync_all(self) -> bool:
        """One pass over the Services that changed (all of them after a node change or on resync); True when
        something is still settling (run again soon)."""
        full, dirty, namespaces = self._take_dirty()
        nodes = {str(n["metadata"]["name"]): n for n in self.nodes.list()}
        pods_by_ns: dict[str, list[JSON]] = {}
        for pod in self.pods.list():
            pods_by_ns.setdefault(str(pod["metadata"].get("namespace") or "default"), []).append(pod)
        managed_slices: dict[tuple[str, str], list[JSON]] = {}
        for es in self.endpoint_slices.list():
            labels = es["metadata"].get("labels") or {}
            if labels.get(slices.MANAGED_BY_LABEL) == slices.MANAGED_BY and labels.get(
                slices.SERVICE_NAME_LABEL
            ):
                owner = (
                    str(es["metadata"].get("namespace") or "default"),
                    str(labels[slices.SERVICE_NAME_LABEL]),
                )
                managed_slices.setdefault(owner, []).append(es)
        again = False
        services = {_key(s): s for s in self.services.list()}
        now = time.monotonic()
        for key, svc in services.items():
            if not (full or key in dirty or key[0] in namespaces):
                continue
            if not self.expectations.satisfied(key, self._lookup, now):
                self._retry.add(key)
                again = True
                continue
            try:
                if slices.manages(svc):
                    self.sync(svc, pods_by_ns.get(key[0], []), nodes, managed_slices.get(key, []))
                else:
                    self.delete_slices(key, managed_slices.get(key, []))
            except ApiError as exc:
                log.warning("event=sync_failed service=%s/%s error=%s", *key, exc)
                self._retry.add(key)
                again = True
        if self.services.has_synced():
            for key, leftovers in managed_slices.items():
                if key not in services and (full or key in dirty):
                    self.delete_slices(key, leftovers)
            for ep in self.endpoints.list():
                labels = ep["metadata"].get("labels") or {}
                if (
                    labels.get(ENDPOINTS_MANAGED_BY_LABEL) == ENDPOINTS_MANAGED_BY
                    and _key(ep) not in services
                    and (full or _key(ep) in dirty)
                ):
                    self._delete(resource_path("v1", "endpoints", *_key(ep)), _key(ep), "endpoints")
        return again

    def sync(self, svc: JSON, pods: list[JSON], nodes: dict[str, JSON], existing: list[JSON]) -> None:
        key = _key(svc)
        namespace = key[0]
        changes = slices.reconcile_slices(slices.render_slices(svc, pods, nodes), existing)
        now = time.monotonic()
        for obj in changes.create:
            created = self.kube.create(resource_path(SLICES, "endpointslices", namespace), obj)
            name = str(created["metadata"]["name"])
            self.expectations.expect(key, (namespace, name), str(created["metadata"]["resourceVersion"]), now)
            log.info(
                "event=slice_created service=%s/%s slice=%s endpoints=%d", *key, name, len(obj["endpoints"])
            )
        for obj in changes.update:
            name = str(obj["metadata"]["name"])
            try:
                updated = self.kube.replace(resource_path(SLICES, "endpointslices", namespace, name), obj)
            except ApiError as exc:
                if exc.status in (
                    404,
                    409,
                ):  # changed or gone under us: the watch brings the news, then retry
                    continue
                raise
            self.expectations.expect(key, (namespace, name), str(updated["metadata"]["resourceVersion"]), now)
            log.info(
                "event=slice_updated service=%s/%s slice=%s endpoints=%d", *key, name, len(obj["endpoints"])
            )
        for name in changes.delete:
            self._delete(
                resource_path(SLICES, "endpointslices", namespace, name), key, "slice", (namespace, name)
            )
        self.sync_endpoints(svc, pods, nodes)

    def sync_endpoints(self, svc: JSON, pods: list[JSON], nodes: dict[str, JSON]) -> None:
        key = _key(svc)
        desired = slices.render_endpoints(svc, pods, nodes)
        desired["metadata"].setdefault("labels", {})[ENDPOINTS_MANAGED_BY_LABEL] = ENDPOINTS_MANAGED_BY
        current = self.endpoints.get(*key)
        if not slices.endpoints_changed(current, desired):
            return
        try:
            if current is None:
                written = self.kube.create(resource_path("v1", "endpoints", key[0]), desired)
            else:
                desired["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
                written = self.kube.replace(resource_path("v1", "endpoints", *key), desired)
        except ApiError as exc:
            if exc.status == 409:  # exists already / stale: the watch brings the current one, then retry
                return
            raise
        version = str(written["metadata"]["resourceVersion"])
        self.expectations.expect(key, ("ep/" + key[0], key[1]), version, time.monotonic())
        count = sum(len(s.get("addresses") or []) for s in desired.get("subsets") or [])
        log.info("event=endpoints_written service=%s/%s ready_addresses=%d", *key, count)

    def delete_slices(self, key: tuple[str, str], existing: list[JSON]) -> None:
        for es in existing:
            self._delete(resource_path(SLICES, "endpointslices", *_key(es)), key, "slice", _key(es))

    def _delete(
        self, path: str, owner: tuple[str, str], what: str, obj: tuple[str, str] | None = None
    ) -> None:
        try:
            self.kube.delete(path)
        except ApiError as exc:
            log.warning("event=delete_failed %s=%s error=%s", what, path, exc)
            return
        if obj is not None:
            self.expectations.expect(owner, obj, None, time.monotonic())
        log.info("event=%s_deleted service=%s/%s path=%s", what, *owner, path)
