"""Each IPAddressPool's status (assigned and available IPv4/IPv6 counts, as MetalLB writes it) and the pool
metrics, written at most twice a second however busy the controller is; a failed write backs off."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from common.pools import Config
from controller import metrics
from controller.allocator import Allocator
from controller.api import Api
from controller.caches import Caches
from controller.reconcile import pool_status
from k8s.client import REQUEST_ERRORS, ApiError
from k8s.events import EventRecorder

log = logging.getLogger("controller")

RETRY_FIRST = 1.0
RETRY_MAX = 300.0
MIN_INTERVAL = 0.5  # seconds between two flushes


class PoolStatusWriter:
    def __init__(
        self,
        allocator: Allocator,
        config: Callable[[], Config | None],
        caches: Caches,
        api: Api,
        recorder: EventRecorder,
    ) -> None:
        self._allocator = allocator
        self._config = config
        self._caches = caches
        self._api = api
        self._recorder = recorder
        self._changed = asyncio.Event()
        self._warned: dict[str, str] = {}  # pool -> the 4xx answer already reported

    def changed(self) -> None:
        """The allocator's use of some pool may have changed: write the statuses soon."""
        self._changed.set()

    async def run(self) -> None:
        failures = 0
        while True:
            await self._changed.wait()
            self._changed.clear()
            try:
                await self._flush()
            except REQUEST_ERRORS as e:
                failures = min(failures + 1, 20)
                delay = min(RETRY_MAX, RETRY_FIRST * 2 ** (failures - 1))
                log.warning("event=pool_status_failed error=%r retry_in=%.0fs", str(e), delay)
                self._changed.set()
                await asyncio.sleep(delay)
                continue
            failures = 0
            await asyncio.sleep(MIN_INTERVAL)

    async def _flush(self) -> None:
        stats = self._allocator.pool_stats()
        metrics.set_pool_stats({name: (s.total, s.in_use) for name, s in stats.items()})
        config = self._config()
        if config is None:
            return
        for pool in config.pools:
            obj = self._caches.pool(pool.name)
            if obj is None or not pool.source.startswith("IPAddressPool"):
                continue
            pool_stats = stats.get(pool.name)
            if pool_stats is None:
                continue
            status = pool_status(pool_stats)
            if obj.get("status") == status:
                continue
            namespace = self._caches.namespace
            path = f"/apis/metallb.io/v1beta1/namespaces/{namespace}/ipaddresspools/{pool.name}/status"
            try:
                updated = await self._api.write(self._api.client.merge_patch, path, {"status": status})
            except ApiError as e:
                if e.status == 404:
                    continue
                answer = f"{e.status} {e.reason}: {e.message}"
                if 400 <= e.status < 500 and self._warned.get(pool.name) != answer:
                    self._warned[pool.name] = answer
                    pool_obj = {**obj, "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool"}
                    message = f"cannot write the status: {answer}; retrying with backoff"
                    self._recorder.event(pool_obj, "Warning", "UpdateStatusFailed", message)
                raise
            self._warned.pop(pool.name, None)
            self._caches.pools.remember(updated)
