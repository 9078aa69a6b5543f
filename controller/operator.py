"""The controller as a kopf operator: kopf watches Services and Namespaces, our own tasks do the rest.

Flow: kopf's startup handler waits for the leader Lease, lists the config objects and every Service,
rebuilds the allocator from the IPs Services already show (restore) and only then starts the reconcile
workers. kopf's event handlers just refresh the cache and queue the Service's key; workers take keys one at
a time per key (a classic controller work queue), call the pure `reconcile_service` and apply its writes.
Only raw event handlers are used, so kopf keeps no progress annotations or finalizers on Services.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import kopf

from common.config import ConfigProblem, rebuild_config
from common.errors import shorten
from common.events import event_body
from common.pools import IP_SHARING_CLUSTER, Config
from common.services import POOL_ANNOTATION_OUT, PREFIXES, assigned_ips, is_handled, project_service
from controller import metrics
from controller.allocator import Allocator, Assignment
from controller.health import Health
from controller.informer import Informer
from controller.kube import JSON, ApiError, KubeClient, WatchExpired, bearer_token, rv_newer_or_equal
from controller.leader import LeaderElector
from controller.reconcile import (
    UNCHANGED,
    Event,
    IPAddress,
    creation_order,
    pool_status,
    reconcile_service,
    restore_assignments,
)

log = logging.getLogger("controller")

COMPONENT = "ironlb-controller"
# Event messages are cut here (events.k8s.io/v1 caps its note at 1 KiB): whatever a user wrote, an Event
# stays small.
MAX_EVENT_MESSAGE = 1024
# A status write that failed is retried after 1 s, then 2, 4, ... up to 5 minutes.
WRITE_RETRY_FIRST = 1.0
WRITE_RETRY_MAX = 300.0


@dataclass(frozen=True)
class Options:
    kubeconfig: str | None = None
    configmap_namespace: str = "metallb-system"
    configmap_name: str = "config"
    load_balancer_class: str | None = None
    namespace: str = "metallb-system"
    leader_elect: bool = True
    lease_name: str = "ironlb-controller"
    # Takeover within ~3.5 s of a crash (at most lease_duration + 2 retry periods + start-up); see
    # docs/controller.md for what the renewals cost.
    lease_duration: int = 3
    renew_deadline: float = 2.0
    retry_period: float = 0.5
    identity: str = ""
    workers: int = 16
    resync_period: float = 300.0
    ip_sharing: str = IP_SHARING_CLUSTER


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"


def _labels(obj: Mapping[str, Any] | None) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get("labels") or {})


def _config_part(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a pool or advertisement the config is built from: spec, labels (pool selectors) and
    annotations (ironlb.io/ip-sharing); not status, which we write ourselves."""
    metadata = obj.get("metadata") or {}
    return obj.get("spec"), metadata.get("labels"), metadata.get("annotations")


def _request_revision(service: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a Service's request depends on that its user may change: its spec (generation) and MetalLB's
    annotations (not the one we write). Edits to anything else do not repeat a failure event."""
    metadata = service.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    ours = sorted(
        (name, str(value))
        for name, value in annotations.items()
        if name.startswith(PREFIXES) and name != POOL_ANNOTATION_OUT
    )
    return metadata.get("generation"), tuple(ours)


class RetryForever:
    """kopf's API retry delays: a few quick ones, then every 10 s for as long as the API server is away
    (kopf's default gives up after ~1 minute and stops the operator). Iterable afresh for every request."""

    def __iter__(self) -> Iterator[float]:
        return itertools.chain((1.0, 1.0, 2.0, 3.0, 5.0), itertools.repeat(10.0))


class Controller:
    """The reconciliation state and the tasks that act on it (all on kopf's event loop)."""

    def __init__(self, options: Options, configuration: Any, health: Health | None = None) -> None:
        self.options = options
        self.configuration = configuration
        self.identity = options.identity or default_identity()
        self.health = health or Health()
        self.client = KubeClient(configuration)
        self.allocator = Allocator(Config())
        self.config: Config | None = None  # the last valid config
        # Why the config in force leaves the ConfigMap out (start-up with an invalid one), or None.
        self.config_partial: str | None = None
        self._deferred: set[str] = set()  # Services left alone meanwhile: their IPs lie in no known pool
        self.restored = False
        # Services as projections (common.services.project_service): only the fields reconciliation reads.
        self.service_informer = Informer(
            self.client,
            "/api/v1/services",
            project_service,
            self.enqueue,
            resync_period=options.resync_period,
        )
        self.services = self.service_informer.store
        self.namespace_labels: dict[str, dict[str, str]] = {}
        self.configmap: JSON | None = None
        self.ip_address_pools: dict[str, JSON] = {}
        self.l2_advertisements: dict[str, JSON] = {}
        self.assignments: dict[str, Assignment] = {}
        self.pending: dict[str, None] = {}  # insertion-ordered: the oldest pending Service is retried first
        # Pending Service -> the pools where a released IP may let it through (none: it waits for a change).
        self.waiting: dict[str, tuple[str, ...]] = {}
        self._woken: dict[str, str] = {}  # pending Service retried because an IP of this pool was released
        self.withdrawn: dict[str, tuple[IPAddress, ...]] = {}
        self.failure_signatures: dict[str, tuple[Any, ...]] = {}
        # Status writes that failed: the next delay, the 4xx answer already reported (per Service key, or
        # "IPAddressPool <name>"), the retry timer.
        self._write_delays: dict[str, float] = {}
        self._write_warnings: dict[str, str] = {}
        self._write_timers: dict[str, asyncio.TimerHandle] = {}
        self._namespace_failures: dict[str, int] = {}
        self.last_config_problem: str | None = None
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        self._events: asyncio.Queue[tuple[JSON, Event]] = asyncio.Queue()
        self._config_changed = asyncio.Event()
        self._stats_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self.stop_flag: asyncio.Event | None = None
        self.elector: LeaderElector | None = None

    async def run(self) -> int:
        """Run the operator until a signal, or until one of our tasks dies; the process's exit status."""
        self.stop_flag = asyncio.Event()
        await kopf.operator(
            registry=build_registry(self), clusterwide=True, standalone=True, stop_flag=self.stop_flag
        )
        return 1 if self.health.failure is not None else 0

    # ---- kopf entry points --------------------------------------------------------------------------------

    def login(self, **_: Any) -> kopf.ConnectionInfo:
        configuration = self.configuration
        scheme, token = bearer_token(configuration)
        return kopf.ConnectionInfo(
            server=configuration.host,
            ca_path=configuration.ssl_ca_cert,
            insecure=not configuration.verify_ssl,
            scheme=scheme,
            token=token,
            certificate_path=configuration.cert_file,
            private_key_path=configuration.key_file,
        )

    async def startup(self, settings: kopf.OperatorSettings, **_: Any) -> None:
        # Our own events only; kopf's per-handler events would be noise on every Service.
        settings.posting.enabled = False
        # Services and Namespaces always exist: no need to watch CRDs (and no RBAC for it).
        settings.scanning.disabled = True
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.error_backoffs = RetryForever()
        metrics.config_loaded.set(0)
        metrics.config_stale.set(0)
        self._spawn(self._heartbeat(), "heartbeat")
        if self.options.leader_elect:
            o = self.options
            self.elector = LeaderElector(
                self.client, o.namespace, o.lease_name, self.identity, o.lease_duration, o.renew_deadline,
                o.retry_period,
            )
            self.health.ready = True  # a healthy standby: ready to take over
            try:
                await self.elector.acquire()
            except asyncio.CancelledError:
                await self._stop_tasks()  # stopped while standing by: kopf runs no cleanup then
                await self.client.close()
                raise
            self.health.ready = False
            self._spawn(self.elector.keep(self._leadership_lost), "lease")
        await self._initial_sync()
        for index in range(self.options.workers):
            self._spawn(self._worker(), f"worker-{index}")
        for index in range(4):
            self._spawn(self._event_poster(), f"events-{index}")
        self._spawn(self._config_rebuilder(), "config")
        self._spawn(self._stats_flusher(), "stats")
        self._spawn(self.service_informer.run(), "services")
        self.health.ready = True
        log.info("event=started identity=%s services=%d", self.identity, len(self.services))

    async def cleanup(self, **_: Any) -> None:
        await self._stop_tasks()
        if self.elector is not None:
            await self.elector.release()
        await self.client.close()

    async def _stop_tasks(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def on_namespace_event(self, event: Mapping[str, Any], **_: Any) -> None:
        body = event.get("object") or {}
        name = str((body.get("metadata") or {}).get("name") or "")
        old = self.namespace_labels.get(name)
        if event.get("type") == "DELETED":
            self.namespace_labels.pop(name, None)
            return
        labels = _labels(body)
        self.namespace_labels[name] = labels
        self._namespace_failures.pop(name, None)
        if old != labels:
            # Pools' namespace selectors may match now: retry what waits there. Assigned IPs stay.
            for key in list(self.pending):
                if key.startswith(f"{name}/"):
                    self.enqueue(key)

    # ---- start-up -----------------------------------------------------------------------------------------

    async def _initial_sync(self) -> None:
        config_watches = []
        for path, params, apply in self._config_sources():
            listing = await self._list_forever(path, **params)
            apply(None, listing.get("items") or [])
            resource_version = str((listing.get("metadata") or {}).get("resourceVersion") or "")
            config_watches.append((path, params, apply, resource_version))
        await self._retry_forever("/api/v1/services", self.service_informer.list)
        # Namespaces after Services: every listed Service's namespace is then known.
        namespaces = await self._list_forever("/api/v1/namespaces")
        self.namespace_labels = {str(n["metadata"]["name"]): _labels(n) for n in namespaces["items"]}
        self._rebuild_config()
        for path, params, apply, resource_version in config_watches:
            self._spawn(self._watch_loop(path, params, apply, resource_version), f"watch {path}")

    async def _retry_forever(self, what: str, attempt: Callable[[], Awaitable[None]]) -> None:
        failures = 0
        while True:
            try:
                await attempt()
                return
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as e:
                failures += 1
                log.warning("event=list_failed path=%s error=%r", what, str(e))
            await asyncio.sleep(min(10.0, float(failures)))

    async def _list_forever(self, path: str, **params: str) -> JSON:
        while True:
            try:
                return await self.client.list(path, **params)
            except ApiError as e:
                if e.status == 404:
                    # A resource that is not installed (the metallb.io CRDs): the ConfigMap alone still works.
                    log.warning("event=resource_missing path=%s", path)
                    return {"items": [], "metadata": {"resourceVersion": ""}}
                log.warning("event=list_failed path=%s error=%r", path, str(e))
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                log.warning("event=list_failed path=%s error=%r", path, str(e))
            await asyncio.sleep(1)

    def _restore(self) -> None:
        """Put the IPs Services already show back into the allocator before anything new is assigned."""
        report = restore_assignments(
            self.allocator, self.services.values(), self.namespace_labels, self.options.load_balancer_class
        )
        for restored in report:
            ips = ",".join(map(str, restored.ips))
            assignment = self.allocator.assignment(restored.key)
            if restored.held and assignment is not None:
                self.assignments[restored.key] = assignment
            if not restored.exact:
                # Held (or not) until its reconciliation moves or clears it.
                log.warning(
                    "event=restore_held service=%s ips=%s held=%s reason=%r",
                    restored.key, ips, str(restored.held).lower(), restored.reason,
                )  # fmt: skip
        self.restored = True
        adopted = sum(1 for r in report if r.exact)
        held = sum(1 for r in report if r.held and not r.exact)
        log.info("event=restored adopted=%d refused=%d held=%d", adopted, len(report) - adopted - held, held)
        for key in sorted(self.services, key=lambda k: creation_order(self.services[k])):
            self.enqueue(key)
        self._stats_changed.set()

    # ---- configuration ------------------------------------------------------------------------------------

    def _config_sources(self) -> list[tuple[str, dict[str, str], Callable[[str | None, Any], None]]]:
        o = self.options
        return [
            (
                f"/api/v1/namespaces/{o.configmap_namespace}/configmaps",
                {"fieldSelector": f"metadata.name={o.configmap_name}"},
                self._apply_configmap,
            ),
            (f"/apis/metallb.io/v1beta1/namespaces/{o.namespace}/ipaddresspools", {}, self._apply_pool),
            (f"/apis/metallb.io/v1beta1/namespaces/{o.namespace}/l2advertisements", {}, self._apply_l2),
        ]

    def _apply_configmap(self, event_type: str | None, obj: Any) -> None:
        if event_type is None:  # a full listing
            self.configmap = obj[0] if obj else None
        elif event_type == "DELETED":
            self.configmap = None
        else:
            self.configmap = obj
        self._config_changed.set()

    def _apply_pool(self, event_type: str | None, obj: Any) -> None:
        self._apply_named(self.ip_address_pools, event_type, obj)

    def _apply_l2(self, event_type: str | None, obj: Any) -> None:
        self._apply_named(self.l2_advertisements, event_type, obj)

    def _apply_named(self, cache: dict[str, JSON], event_type: str | None, obj: Any) -> None:
        if event_type is None:
            cache.clear()
            cache.update({str(item["metadata"]["name"]): item for item in obj})
        elif event_type == "DELETED":
            cache.pop(str(obj["metadata"]["name"]), None)
        else:
            name = str(obj["metadata"]["name"])
            old = cache.get(name)
            cache[name] = obj
            if old is not None and _config_part(old) == _config_part(obj):
                self._stats_changed.set()  # only our own status write came back
                return
        self._config_changed.set()

    async def _watch_loop(
        self,
        path: str,
        params: dict[str, str],
        apply: Callable[[str | None, Any], None],
        resource_version: str,
    ) -> None:
        while True:
            try:
                if not resource_version:
                    listing = await self._list_forever(path, **params)
                    if not listing.get("metadata", {}).get("resourceVersion"):
                        await asyncio.sleep(10)  # the CRD is not installed yet
                        continue
                    apply(None, listing.get("items") or [])
                    resource_version = str(listing["metadata"]["resourceVersion"])
                async for event in self.client.watch(path, resource_version, timeoutSeconds="300", **params):
                    obj = event.get("object") or {}
                    metadata = obj.get("metadata") or {}
                    resource_version = str(metadata.get("resourceVersion") or resource_version)
                    if event.get("type") != "BOOKMARK":
                        apply(str(event.get("type")), obj)
            except WatchExpired:
                resource_version = ""
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as e:
                log.warning("event=watch_failed path=%s error=%r", path, str(e))
                resource_version = ""
                await asyncio.sleep(1)

    async def _config_rebuilder(self) -> None:
        while True:
            await self._config_changed.wait()
            self._config_changed.clear()
            self._rebuild_config()
            await asyncio.sleep(0.05)  # let a burst of config edits land together

    def _rebuild_config(self) -> None:
        self._config_changed.clear()
        try:
            self._load_config()
        except Exception:
            # The parser only raises ConfigError (fuzzed), but nothing may end config processing or start-up.
            metrics.config_stale.set(1)
            metrics.update_errors.inc()
            log.exception("event=config_rebuild_crashed keeping=%s", "last-valid" if self.config else "none")

    def _load_config(self) -> None:
        partial = None
        try:
            config = rebuild_config(
                self.configmap,
                self.ip_address_pools.values(),
                self.l2_advertisements.values(),
                self.options.ip_sharing,
            )
        except ConfigProblem as problem:
            metrics.config_stale.set(1)
            metrics.update_errors.inc()
            text = str(problem)
            fallback = self._fallback_config(problem)
            log.error(
                "event=config_invalid object=%s field=%r error=%r keeping=%s",
                "/".join(problem.target or ("?",)),
                problem.error.field,
                text,
                "crds" if fallback else "last-valid" if self.config is not None else "none",
            )
            if text != self.last_config_problem and problem.target is not None:
                self._post_config_warning(problem.target, text)
            self.last_config_problem = text
            if fallback is None:
                return
            config, partial = fallback, f"ConfigMap invalid: {problem.error.field}: {problem.error.message}"
        else:
            metrics.config_stale.set(0)
            self.last_config_problem = None
        metrics.updates.inc()
        metrics.config_loaded.set(1)
        leaving_partial = self.config_partial is not None and partial is None
        self.config_partial = partial
        if config != self.config:
            self._apply_config(config, partial is not None)
        elif not leaving_partial:
            return
        if not self.restored:
            self._restore()
            return
        if leaving_partial and self._deferred:
            # The ConfigMap's pools are known again: the Services left alone take their IPs back first.
            deferred = [self.services[k] for k in sorted(self._deferred) if k in self.services]
            self._deferred.clear()
            for restored in restore_assignments(
                self.allocator, deferred, self.namespace_labels, self.options.load_balancer_class
            ):
                log.info(
                    "event=restore_deferred service=%s ips=%s held=%s",
                    restored.key, ",".join(map(str, restored.ips)), str(restored.held).lower(),
                )  # fmt: skip
        self._retry_pending()

    def _apply_config(self, config: Config, partial: bool) -> None:
        released = self.allocator.set_config(config)
        self.config = config
        log.info(
            "event=config_loaded pools=%s l2advertisements=%d withdrawn=%d partial=%s",
            ",".join(p.name for p in config.pools) or "-",
            len(config.l2_advertisements),
            len(released),
            str(partial).lower(),
        )
        for key in released:
            old = self.assignments.pop(key, None)
            self.withdrawn[key] = tuple(old.ips) if old is not None else ()
            log.info("event=withdrawn service=%s ips=%s", key, ",".join(map(str, self.withdrawn[key])))
            self.enqueue(key)
        self._stats_changed.set()

    def _fallback_config(self, problem: ConfigProblem) -> Config | None:
        """Without a complete valid config since start-up, an invalid ConfigMap does not stop the metallb.io
        CRDs from being used, if they are valid on their own and define pools. After a complete valid config,
        the last valid config stays."""
        if problem.target is None or problem.target[0] != "ConfigMap":
            return None
        if self.config is not None and self.config_partial is None:
            return None
        try:
            config = rebuild_config(None, self.ip_address_pools.values(), self.l2_advertisements.values())
        except ConfigProblem:
            return None
        if not config.pools:
            return None  # nothing to serve: stay without a config (nothing assigned, nothing cleared)
        if self.config_partial is None:
            log.warning(
                "event=config_fallback using=crds pools=%s reason=%r",
                ",".join(p.name for p in config.pools) or "-",
                "the ConfigMap is invalid and no valid configuration was loaded yet",
            )
        return config

    def _defer(self, key: str, service: JSON) -> bool:
        """While the ConfigMap is left out, leave alone a Service whose IPs lie in no pool we know: they most
        likely come from the ConfigMap's pools, and moving them would renumber the Service for a typo."""
        ips = assigned_ips(service)
        if (
            self.config_partial is None
            or not ips
            or not is_handled(service, self.options.load_balancer_class)
            or self.allocator.assignment(key) is not None
            or any(self.allocator.pool_for(ip) is not None for ip in ips)
        ):
            return False
        if key not in self._deferred:
            log.warning(
                "event=deferred service=%s ips=%s reason=%r",
                key, ",".join(map(str, ips)), self.config_partial,
            )  # fmt: skip
        self._deferred.add(key)
        self.pending.setdefault(key, None)
        return True

    def _post_config_warning(self, target: tuple[str, str, str], message: str) -> None:
        kind, namespace, name = target
        api_version = "v1" if kind == "ConfigMap" else "metallb.io/v1beta1"
        obj = {"apiVersion": api_version, "kind": kind, "metadata": {"namespace": namespace, "name": name}}
        source = self.configmap if kind == "ConfigMap" else None
        if kind == "IPAddressPool":
            source = self.ip_address_pools.get(name)
        elif kind == "L2Advertisement":
            source = self.l2_advertisements.get(name)
        if source is not None:
            obj["metadata"] = source.get("metadata") or obj["metadata"]
        self._events.put_nowait((obj, Event("Warning", "InvalidConfig", message)))

    # ---- the work queue -----------------------------------------------------------------------------------

    def enqueue(self, key: str) -> None:
        if key in self._queued:
            return
        if key in self._processing:
            self._dirty.add(key)
            return
        self._queued.add(key)
        self._queue.put_nowait(key)

    def _retry_pending(self, but: str | None = None) -> None:
        for key in list(self.pending):
            if key != but:
                self.enqueue(key)

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._processing.add(key)
            try:
                await self._reconcile(key)
            except Exception:
                metrics.update_errors.inc()
                log.exception("event=reconcile_crashed service=%s", key)
                asyncio.get_running_loop().call_later(2.0, self.enqueue, key)
            finally:
                self._processing.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.enqueue(key)

    async def _reconcile(self, key: str) -> None:
        woken_by = self._woken.pop(key, None)
        released_from = self.allocator.assignment(key)
        try:
            await self._reconcile_one(key)
        finally:
            after = self.allocator.assignment(key)
            if released_from is not None and (after is None or after.ips != released_from.ips):
                self._wake(released_from.pool)
            if woken_by is not None and after is None:
                self._wake(woken_by, after=key)  # it could not use the IP: the next one in line may

    def _wake(self, pool: str, after: str | None = None) -> None:
        """An IP of `pool` was released: retry the oldest pending Service that waits on that pool (after
        `after`, when the one before could not use it), not every pending Service. 1,000 pending Services
        and 10 releases used to mean 10,000 reconciliations (and log lines); now about 10."""
        passed = after is None
        for key in self.pending:
            if not passed:
                passed = key == after
                continue
            if pool in self.waiting.get(key, ()) and key not in self._woken:
                self._woken[key] = pool
                self.enqueue(key)
                return

    async def _reconcile_one(self, key: str) -> None:
        service = self.services.get(key)
        if not self.restored:
            self.pending[key] = None
            return
        namespace, _, name = key.partition("/")
        if service is not None and namespace not in self.namespace_labels:
            # A namespace created after start-up whose watch event has not arrived yet: its labels may decide
            # the pool (serviceAllocation.namespaceSelectors), so read them now rather than guess.
            await self._load_namespace(namespace)
            service = self.services.get(key)
            if service is not None and namespace not in self.namespace_labels:
                self._namespace_unknown(key, service, namespace)
                return
        if service is not None and self._defer(key, service):
            return
        withdrawn = self.withdrawn.pop(key, ())
        outcome = reconcile_service(
            key,
            service,
            self.namespace_labels.get(namespace, {}),
            self.allocator,
            self.options.load_balancer_class,
            withdrawn,
        )
        metrics.updates.inc()
        assignment = self.allocator.assignment(key)
        if assignment is None:
            self.assignments.pop(key, None)
        else:
            self.assignments[key] = assignment
        if outcome.pending and service is not None:
            self.pending.setdefault(key, None)
            self.waiting[key] = outcome.waiting_on
        else:
            self.pending.pop(key, None)
            self.waiting.pop(key, None)
        if outcome.released or outcome.assignment is not None or service is None:
            self._stats_changed.set()
        events = list(outcome.events)
        if outcome.pending and service is not None:
            signature = (outcome.failure, *_request_revision(service))
            if self.failure_signatures.get(key) == signature:
                events = [e for e in events if e.reason != "AllocationFailed"]  # said it already
            self.failure_signatures[key] = signature
        else:
            self.failure_signatures.pop(key, None)
        if outcome.action != "none" or outcome.pending:
            log.info(
                "event=%s service=%s ips=%s pool=%s reason=%r",
                outcome.action,
                key,
                ",".join(str(ip) for ip in (assignment.ips if assignment else ())) or "-",
                assignment.pool if assignment else "-",
                outcome.failure or "",
            )
        if service is None:
            self._write_settled(key)
            return
        # One write through the status subresource carries the pool annotation too: the Service status
        # strategy resets only spec, so the controller needs no right to update Services themselves (a
        # compromised controller could otherwise rewrite any Service's selector or externalIPs).
        patch: JSON = {}
        if outcome.ingress is not None:
            patch["status"] = {"loadBalancer": {"ingress": outcome.ingress or None}}
        if outcome.pool_annotation is not UNCHANGED:
            patch["metadata"] = {"annotations": {POOL_ANNOTATION_OUT: outcome.pool_annotation}}
        try:
            if patch:
                path = f"/api/v1/namespaces/{namespace}/services/{name}/status"
                await self._fence()
                self._remember(key, await self.client.merge_patch(path, patch))
        except ApiError as e:
            if e.status == 404:
                self._write_settled(key)
                return  # deleted meanwhile; its DELETED event releases the IP
            self._write_failed(key, service, e)
            return
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            self._write_failed(key, service, e)
            return
        self._write_settled(key)
        for event in events:
            self._events.put_nowait((service, event))

    async def _load_namespace(self, name: str) -> None:
        try:
            body = await self.client.get(f"/api/v1/namespaces/{name}")
        except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as e:
            log.warning("event=namespace_read_failed namespace=%s error=%r", name, str(e))
            return
        if body is not None and name not in self.namespace_labels:
            self.namespace_labels[name] = _labels(body)
            self._namespace_failures.pop(name, None)

    def _namespace_unknown(self, key: str, service: JSON, namespace: str) -> None:
        """Fail closed: without the namespace's labels no pool decision is safe (a NotIn or DoesNotExist
        namespace selector would admit the Service), so the Service waits and is retried with backoff."""
        self.pending.setdefault(key, None)
        failures = self._namespace_failures[namespace] = self._namespace_failures.get(namespace, 0) + 1
        delay = min(30.0, 2.0 ** min(failures, 5))
        signature = ("namespace-unknown", *_request_revision(service))
        if self.failure_signatures.get(key) != signature:
            self.failure_signatures[key] = signature
            message = (
                f'Failed to allocate IP for "{key}": cannot read the labels of namespace "{namespace}", '
                "which address pools may select on; retrying"
            )
            self._events.put_nowait((service, Event("Warning", "AllocationFailed", message)))
        log.info("event=namespace_unknown service=%s namespace=%s retry_in=%.0fs", key, namespace, delay)
        asyncio.get_running_loop().call_later(delay, self.enqueue, key)

    def _write_failed(self, key: str, service: JSON, error: Exception) -> None:
        """Retry with exponential backoff (never a hot loop against a server that keeps saying no); a 4xx is
        the server refusing what we wrote, so the Service's user is told once per distinct answer."""
        metrics.update_errors.inc()
        previous = self._write_delays.get(key)
        delay = WRITE_RETRY_FIRST if previous is None else min(WRITE_RETRY_MAX, 2 * previous)
        self._write_delays[key] = delay
        log.warning("event=write_failed service=%s error=%r retry_in=%.0fs", key, str(error), delay)
        if isinstance(error, ApiError) and 400 <= error.status < 500:
            answer = f"{error.status} {error.reason}: {error.message}"
            if self._write_warnings.get(key) != answer:
                self._write_warnings[key] = answer
                message = (
                    f"cannot write the status: {answer}; retrying with backoff "
                    f"(now {delay:.0f}s, at most {WRITE_RETRY_MAX:.0f}s)"
                )
                self._events.put_nowait((service, Event("Warning", "UpdateStatusFailed", message)))
        timer = self._write_timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._write_timers[key] = asyncio.get_running_loop().call_later(delay, self._retry_write, key)

    def _retry_write(self, key: str) -> None:
        self._write_timers.pop(key, None)
        self.enqueue(key)

    def _write_settled(self, key: str) -> None:
        """The status is as it should be (or the Service is gone): forget the backoff."""
        self._write_delays.pop(key, None)
        self._write_warnings.pop(key, None)
        timer = self._write_timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _remember(self, key: str, body: JSON) -> None:
        if key in self.services and body.get("kind") == "Service":
            self.service_informer.remember(project_service(body), notify=False)

    # ---- events, pool status, metrics, leadership ---------------------------------------------------------

    async def _event_poster(self) -> None:
        while True:
            obj, event = await self._events.get()
            try:
                await self._post_event(obj, event)
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as e:
                log.warning("event=event_post_failed reason=%s error=%r", event.reason, str(e))

    async def _post_event(self, obj: Mapping[str, Any], event: Event) -> None:
        namespace = str((obj.get("metadata") or {}).get("namespace") or "default")
        body = event_body(
            obj,
            event_type=event.type,
            reason=event.reason,
            message=shorten(event.message, MAX_EVENT_MESSAGE),
            component=COMPONENT,
            now=datetime.datetime.now(datetime.UTC),
            instance=self.identity,
            default_kind="Service",
        )
        await self._fence()
        await self.client.create(f"/api/v1/namespaces/{namespace}/events", body)

    async def _stats_flusher(self) -> None:
        failures = 0
        while True:
            await self._stats_changed.wait()
            self._stats_changed.clear()
            try:
                await self._flush_stats()
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as e:
                failures = min(failures + 1, 20)
                delay = min(WRITE_RETRY_MAX, WRITE_RETRY_FIRST * 2 ** (failures - 1))
                log.warning("event=pool_status_failed error=%r retry_in=%.0fs", str(e), delay)
                self._stats_changed.set()
                await asyncio.sleep(delay)
                continue
            failures = 0
            await asyncio.sleep(0.5)  # at most two status writes per pool per second, however busy

    async def _flush_stats(self) -> None:
        stats = self.allocator.pool_stats()
        metrics.set_pool_stats({name: (s.total, s.in_use) for name, s in stats.items()})
        if self.config is None:
            return
        for pool in self.config.pools:
            obj = self.ip_address_pools.get(pool.name)
            if obj is None or not pool.source.startswith("IPAddressPool"):
                continue
            pool_stats = stats.get(pool.name)
            if pool_stats is None:
                continue
            status = pool_status(pool_stats)
            if obj.get("status") == status:
                continue
            namespace = self.options.namespace
            path = f"/apis/metallb.io/v1beta1/namespaces/{namespace}/ipaddresspools/{pool.name}/status"
            try:
                await self._fence()
                updated = await self.client.merge_patch(path, {"status": status})
            except ApiError as e:
                if e.status == 404:
                    continue
                answer = f"{e.status} {e.reason}: {e.message}"
                if 400 <= e.status < 500 and self._write_warnings.get(f"IPAddressPool {pool.name}") != answer:
                    self._write_warnings[f"IPAddressPool {pool.name}"] = answer
                    pool_obj = {**obj, "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool"}
                    message = f"cannot write the status: {answer}; retrying with backoff"
                    self._events.put_nowait((pool_obj, Event("Warning", "UpdateStatusFailed", message)))
                raise
            self._write_warnings.pop(f"IPAddressPool {pool.name}", None)
            current = self.ip_address_pools.get(pool.name)
            if current is not None and rv_newer_or_equal(
                (updated.get("metadata") or {}).get("resourceVersion"),
                (current.get("metadata") or {}).get("resourceVersion"),
            ):
                self.ip_address_pools[pool.name] = updated

    async def _fence(self) -> None:
        """Call right before each write (nothing awaited in between): a leader past its renew deadline, such
        as one resumed after a pause, writes nothing until it has renewed, or exits when it cannot."""
        if self.elector is None:
            return
        while not self.elector.may_write():
            await asyncio.sleep(0.05)

    def _leadership_lost(self) -> None:
        # Another replica may take over any moment now: stop writing at once; the Deployment restarts us.
        logging.shutdown()
        os._exit(1)

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        task.add_done_callback(self._task_ended)
        self._tasks.append(task)

    def _task_ended(self, task: asyncio.Task[Any]) -> None:
        """Every task we spawn runs until cleanup: one that ends before is a bug or an unforeseen failure.
        Liveness fails at once and the operator stops (releasing the Lease): the pod restarts."""
        if self._stopping:
            return
        error = None if task.cancelled() else task.exception()
        why = "cancelled" if task.cancelled() else repr(error) if error is not None else "returned"
        log.error("event=task_died task=%s error=%s action=stopping", task.get_name(), why, exc_info=error)
        self.health.fail(f"task {task.get_name()} died: {why}")
        if self.stop_flag is not None:
            self.stop_flag.set()

    async def _heartbeat(self) -> None:
        while True:
            self.health.beat()
            await asyncio.sleep(1.0)


def build_registry(controller: Controller) -> kopf.OperatorRegistry:
    """kopf handlers bound to one Controller (no module-level state, so tests and embedding stay simple)."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(controller.login)
    kopf.on.startup(registry=registry)(controller.startup)
    kopf.on.cleanup(registry=registry)(controller.cleanup)
    kopf.on.event("v1", "namespaces", registry=registry)(controller.on_namespace_event)
    return registry

