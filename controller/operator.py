"""The controller as a kopf operator: kopf watches Namespaces and runs the start-up and cleanup; the shared
Kubernetes shell (k8s/) does the rest.

Start-up: wait for the leader Lease (controller/leadership.py), fill the caches (controller/caches.py:
Services and the config objects, listed and watched by k8s informers), build the configuration
(controller/configuration.py), which restores the IPs Services already show into the allocator, and only then
start the reconcile workers (controller/assigner.py over the work queue in controller/workers.py) and the pool
status writer (controller/pool_status.py). Only raw event handlers are used, so kopf keeps no progress
annotations or finalizers on any object.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import kopf

from common.pools import IP_SHARING_CLUSTER
from controller import metrics
from controller.api import Api
from controller.assigner import Assigner
from controller.caches import Caches, labels_of
from controller.configuration import ConfigLoader
from controller.leadership import Leadership
from controller.pool_status import PoolStatusWriter
from controller.supervision import Health, Supervisor
from k8s.client import Client, bearer_token
from k8s.events import EventRecorder

log = logging.getLogger("controller")

COMPONENT = "ironlb-controller"
# Threads for API calls beyond one per worker: the Lease, the caches' first sync, Namespace reads.
EXTRA_THREADS = 8
# Events waiting to be posted: a burst of thousands of Services assigned at once each gets its IPAllocated.
EVENT_QUEUE = 20_000


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


class RetryForever:
    """kopf's API retry delays: a few quick ones, then every 10 s for as long as the API server is away
    (kopf's default gives up after ~1 minute and stops the operator). Iterable afresh for every request."""

    def __iter__(self) -> Iterator[float]:
        return itertools.chain((1.0, 1.0, 2.0, 3.0, 5.0), itertools.repeat(10.0))


class Controller:
    """The controller's parts, wired together; every method runs on kopf's event loop."""

    def __init__(self, options: Options, configuration: Any, health: Health | None = None) -> None:
        self.options = options
        self.configuration = configuration
        self.identity = options.identity or default_identity()
        self.health = health or Health()
        self.stop_flag: asyncio.Event | None = None
        self.supervisor = Supervisor(self.health, self._task_died)
        # As many connections as requests in flight: one per worker, plus the few others.
        configuration.connection_pool_maxsize = options.workers + EXTRA_THREADS
        self.client = Client(configuration, user_agent=COMPONENT)
        self.leadership: Leadership | None = None
        if options.leader_elect:
            o = options
            self.leadership = Leadership(
                self.client, o.namespace, o.lease_name, self.identity, o.lease_duration, o.renew_deadline,
                o.retry_period,
            )  # fmt: skip
        self.api = Api(self.client, self.leadership.may_write if self.leadership else None)
        self.recorder = EventRecorder(
            self.client,
            COMPONENT,
            instance=self.identity,
            may_post=self.api.fence,
            queue_size=EVENT_QUEUE,
        )
        self.caches = Caches(
            self.client,
            configmap_namespace=options.configmap_namespace,
            configmap_name=options.configmap_name,
            namespace=options.namespace,
            resync_period=options.resync_period,
        )
        self.assigner = Assigner(
            self.caches, self.api, self.recorder, options.load_balancer_class, self._pools_changed
        )
        self.pool_status = PoolStatusWriter(
            self.assigner.allocator, lambda: self.config.config, self.caches, self.api, self.recorder
        )
        self.config = ConfigLoader(
            self.caches, self.assigner, self.pool_status, self.recorder, options.ip_sharing
        )

    async def run(self) -> int:
        """Run the operator until a signal, or until one of our tasks dies; the process's exit status."""
        self.stop_flag = asyncio.Event()
        # asyncio.to_thread runs our API calls here: one thread per request in flight.
        threads = ThreadPoolExecutor(self.options.workers + EXTRA_THREADS, "controller-api")
        asyncio.get_running_loop().set_default_executor(threads)
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
        # Namespaces always exist: no need to watch CRDs (and no RBAC for it).
        settings.scanning.disabled = True
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.error_backoffs = RetryForever()
        metrics.config_loaded.set(0)
        metrics.config_stale.set(0)
        self.supervisor.start_heartbeat()
        if self.leadership is not None:
            self.health.ready = True  # a healthy standby: ready to take over
            try:
                await self.leadership.acquire()
            except asyncio.CancelledError:
                await self._shut_down()  # stopped while standing by: kopf runs no cleanup then
                raise
            self.health.ready = False
            self.supervisor.spawn(self.leadership.keep(self._leadership_lost), "lease")
        self.caches.start(
            asyncio.get_running_loop(),
            on_service=self.assigner.service_changed,
            on_config=self.config.changed,
            on_own_status=self.pool_status.changed,
        )
        await self.caches.wait_synced()
        self.config.rebuild()  # restores the IPs Services show, once the config is valid
        for index in range(self.options.workers):
            self.supervisor.spawn(self.assigner.workers.run(), f"worker-{index}")
        self.supervisor.spawn(self.config.run(), "config")
        self.supervisor.spawn(self.pool_status.run(), "stats")
        self.health.ready = True
        log.info("event=started identity=%s services=%d", self.identity, len(self.caches.services))

    async def cleanup(self, **_: Any) -> None:
        await self._shut_down()

    async def on_namespace_event(self, event: Mapping[str, Any], **_: Any) -> None:
        body = event.get("object") or {}
        name = str((body.get("metadata") or {}).get("name") or "")
        known = self.caches.namespace_labels
        old = known.get(name)
        if event.get("type") == "DELETED":
            known.pop(name, None)
            return
        labels = known[name] = labels_of(body)
        self.assigner.namespace_seen(name, labels_changed=old != labels)

    # ---- life cycle ---------------------------------------------------------------------------------------

    async def _shut_down(self) -> None:
        """Stop our tasks, post the Events still queued (as the leader, for at most a second), hand the Lease
        back so a standby takes over at once, stop the caches."""
        await self.supervisor.stop()
        await asyncio.to_thread(self.recorder.stop, 1.0)
        if self.leadership is not None:
            await self.leadership.stop()
        await asyncio.to_thread(self.caches.stop)
        self.client.close()

    def _pools_changed(self) -> None:
        self.pool_status.changed()

    def _leadership_lost(self) -> None:
        # Another replica may take over any moment now: stop writing at once; the Deployment restarts us.
        logging.shutdown()
        os._exit(1)

    def _task_died(self) -> None:
        """Liveness fails already; stop the operator (releasing the Lease): the pod restarts."""
        if self.stop_flag is not None:
            self.stop_flag.set()


def build_registry(controller: Controller) -> kopf.OperatorRegistry:
    """kopf handlers bound to one Controller (no module-level state, so tests and embedding stay simple)."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(controller.login)
    kopf.on.startup(registry=registry)(controller.startup)
    kopf.on.cleanup(registry=registry)(controller.cleanup)
    kopf.on.event("v1", "namespaces", registry=registry)(controller.on_namespace_event)
    return registry
