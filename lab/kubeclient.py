"""A small JSON client and informer for the lab's processes (kubelet, controllers), on the kubernetes client.

The kubernetes package loads the kubeconfig and owns the TLS connection pool; requests and watches here speak
plain JSON dicts, which is what the pure cores take. An Informer keeps a cache of one collection up to date
(list, then watch from its resourceVersion; re-list on 410 Gone or a broken stream) and reports each change.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import kubernetes
import urllib3

log = logging.getLogger("lab.kubeclient")

Obj = dict[str, Any]


class ApiError(Exception):
    """A non-2xx answer; `status` is the HTTP code, `reason` the Status reason (NotFound, Conflict...)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def resource_path(
    group_version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    sub: str | None = None,
) -> str:
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    parts = [base]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name:
        parts.append(name)
    if sub:
        parts.append(sub)
    return "/".join(parts)


class Kube:
    def __init__(self, kubeconfig: str) -> None:
        config = kubernetes.client.Configuration()
        # The kubernetes package is only partly typed: its untyped corners are reached through Any.
        loader: Any = kubernetes.config
        loader.load_kube_config(config_file=kubeconfig, client_configuration=config)
        self._api_client: Any = kubernetes.client.ApiClient(config)
        self._pool: urllib3.PoolManager = self._api_client.rest_client.pool_manager
        self.host = str(config.host).rstrip("/")
        self._headers: dict[str, str] = {"Accept": "application/json", "User-Agent": "ironlb-lab"}
        auth: dict[str, Any] = dict(config.auth_settings())
        for setting in auth.values():
            self._headers[str(setting["key"])] = str(setting["value"])

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Obj:
        url = self.host + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        headers = dict(self._headers)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        resp = self._pool.request(
            method, url, body=data, headers=headers, timeout=urllib3.Timeout(total=timeout), retries=False
        )
        payload = resp.data
        if resp.status >= 400:
            raise _error(resp.status, payload)
        return json.loads(payload) if payload else {}

    def get(self, path: str, **query: Any) -> Obj:
        return self.request("GET", path, query=query or None)

    def get_or_none(self, path: str) -> Obj | None:
        try:
            return self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, path: str, obj: Mapping[str, Any]) -> Obj:
        return self.request("POST", path, body=obj)

    def replace(self, path: str, obj: Mapping[str, Any]) -> Obj:
        return self.request("PUT", path, body=obj)

    def merge_patch(self, path: str, patch: Mapping[str, Any]) -> Obj:
        return self.request("PATCH", path, body=patch, content_type="application/merge-patch+json")

    def delete(self, path: str, grace_period: int | None = None, uid: str | None = None) -> bool:
        """Delete; False when it was already gone."""
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace_period is not None:
            options["gracePeriodSeconds"] = grace_period
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", path, body=options)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def watch(self, path: str, resource_version: str, timeout_seconds: int, **query: Any) -> Iterator[Obj]:
        """Watch events (dicts with type and object) until the server ends the stream."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
            **query,
        }
        url = self.host + path + "?" + urllib.parse.urlencode(params)
        resp = self._pool.request(
            "GET",
            url,
            headers=self._headers,
            preload_content=False,
            timeout=urllib3.Timeout(connect=10, read=timeout_seconds + 15),
            retries=False,
        )
        try:
            if resp.status >= 400:
                raise _error(resp.status, resp.read())
            buffer = b""
            for chunk in resp.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
            if buffer.strip():
                yield json.loads(buffer)
        finally:
            resp.release_conn()

    def close(self) -> None:
        self._api_client.close()

    @classmethod
    def open_or_report(cls, kubeconfig: str) -> Kube | None:
        """A client, or None after one log line naming the kubeconfig that is missing or broken."""
        try:
            return cls(kubeconfig)
        except Exception as exc:  # any loader failure: the user needs the path and the reason, no traceback
            log.error("event=bad_kubeconfig path=%s error=%s", kubeconfig, exc)
            return None

    def post_event(self, event: Mapping[str, Any]) -> None:
        """Create a core/v1 Event. Events are advisory: a failure is logged, never raised."""
        namespace = str(event["metadata"]["namespace"])
        involved = event["involvedObject"]
        try:
            self.create(resource_path("v1", "events", namespace), event)
        except (ApiError, OSError, urllib3.exceptions.HTTPError) as exc:
            log.warning(
                "event=event_failed object=%s/%s reason=%s error=%s",
                namespace, involved.get("name"), event.get("reason"), exc,
            )  # fmt: skip


def _error(status: int, payload: bytes) -> ApiError:
    try:
        body = json.loads(payload)
        return ApiError(status, str(body.get("reason") or ""), str(body.get("message") or payload[:200]))
    except (ValueError, AttributeError):
        return ApiError(status, "", payload[:200].decode(errors="replace"))


def key_of(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta["name"]))


class Informer:
    """A cache of one collection, kept current by list + watch in a daemon thread.

    `on_event(type, obj)` runs in the informer thread for ADDED, MODIFIED and DELETED. After a re-list,
    objects that vanished meanwhile are reported DELETED and the others ADDED/MODIFIED: no change is missed.
    """

    def __init__(
        self,
        kube: Kube,
        path: str,
        on_event: Callable[[str, Obj], None],
        query: Mapping[str, str] | None = None,
        watch_timeout: int = 60,
    ) -> None:
        self.kube = kube
        self.path = path
        self.on_event = on_event
        self.query = dict(query or {})
        self.watch_timeout = watch_timeout
        self.synced = threading.Event()
        self._cache: dict[tuple[str, str], Obj] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"informer {path}", daemon=True)

    def start(self) -> Informer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def list(self) -> list[Obj]:
        with self._lock:
            return list(self._cache.values())

    def get(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._cache.get((namespace, name))

    def _relist(self) -> str:
        listing = self.kube.get(self.path, **self.query)
        fresh = {key_of(item): item for item in listing.get("items") or []}
        with self._lock:
            old = self._cache
            self._cache = dict(fresh)
        for key, obj in old.items():
            if key not in fresh:
                self.on_event("DELETED", obj)
        for key, obj in fresh.items():
            previous = old.get(key)
            if previous is None:
                self.on_event("ADDED", obj)
            elif previous["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self.on_event("MODIFIED", obj)
        self.synced.set()
        return str((listing.get("metadata") or {}).get("resourceVersion") or "")

    def _run(self) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    version = self._relist()
                for event in self.kube.watch(self.path, version, self.watch_timeout, **self.query):
                    if self._stop.is_set():
                        return
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        log.info("event=watch_expired path=%s status=%s", self.path, obj.get("code"))
                        version = ""
                        break
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if kind == "BOOKMARK":
                        continue
                    with self._lock:
                        if kind == "DELETED":
                            self._cache.pop(key_of(obj), None)
                        else:
                            self._cache[key_of(obj)] = obj
                    self.on_event(str(kind), obj)
            except ApiError as exc:
                if exc.status == 410:
                    version = ""
                    continue
                log.warning("event=watch_failed path=%s error=%r", self.path, exc)
                version = ""
                self._stop.wait(1.0)
            except Exception as exc:  # network errors, server restarts: re-list and go on
                log.warning("event=watch_failed path=%s error=%r", self.path, exc)
                version = ""
                self._stop.wait(1.0)


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
