"""The configuration in force: rebuilt from the cached ConfigMap and metallb.io objects whenever they change,
and handed to the assigner. An invalid configuration never replaces the last valid one: it is logged and
reported once per distinct problem as an InvalidConfig Warning on the object at fault. Without a complete
valid configuration since start-up, an invalid ConfigMap does not stop valid CRDs from being used
(`partial`)."""

from __future__ import annotations

import asyncio
import logging

from common.config import ConfigProblem, rebuild_config
from common.pools import Config
from controller import metrics
from controller.assigner import Assigner
from controller.caches import Caches
from controller.pool_status import PoolStatusWriter
from k8s.events import EventRecorder
from k8s.meta import JSON

log = logging.getLogger("controller")

SETTLE = 0.05  # seconds for a burst of config edits to land together


class ConfigLoader:
    def __init__(
        self,
        caches: Caches,
        assigner: Assigner,
        pool_status: PoolStatusWriter,
        recorder: EventRecorder,
        ip_sharing: str,
    ) -> None:
        self._caches = caches
        self._assigner = assigner
        self._pool_status = pool_status
        self._recorder = recorder
        self._ip_sharing = ip_sharing
        self.config: Config | None = None  # the last valid config
        # Why the config in force leaves the ConfigMap out (start-up with an invalid one), or None.
        self.partial: str | None = None
        self.last_problem: str | None = None
        self._changed = asyncio.Event()

    def changed(self) -> None:
        self._changed.set()

    async def run(self) -> None:
        while True:
            await self._changed.wait()
            self.rebuild()
            await asyncio.sleep(SETTLE)

    def rebuild(self) -> None:
        self._changed.clear()
        try:
            self._load()
        except Exception:
            # The parser only raises ConfigError (fuzzed), but nothing may end config processing or start-up.
            metrics.config_stale.set(1)
            metrics.update_errors.inc()
            log.exception("event=config_rebuild_crashed keeping=%s", "last-valid" if self.config else "none")

    def _load(self) -> None:
        partial = None
        pools = self._caches.pools.list()
        l2_advertisements = self._caches.l2_advertisements.list()
        try:
            config = rebuild_config(self._caches.configmap(), pools, l2_advertisements, self._ip_sharing)
        except ConfigProblem as problem:
            metrics.config_stale.set(1)
            metrics.update_errors.inc()
            text = str(problem)
            fallback = self._fallback(problem, pools, l2_advertisements)
            log.error(
                "event=config_invalid object=%s field=%r error=%r keeping=%s",
                "/".join(problem.target or ("?",)),
                problem.error.field,
                text,
                "crds" if fallback else "last-valid" if self.config is not None else "none",
            )
            if text != self.last_problem and problem.target is not None:
                self._warn(problem.target, text)
            self.last_problem = text
            if fallback is None:
                return
            config, partial = fallback, f"ConfigMap invalid: {problem.error.field}: {problem.error.message}"
        else:
            metrics.config_stale.set(0)
            self.last_problem = None
        metrics.updates.inc()
        metrics.config_loaded.set(1)
        leaving_partial = self.partial is not None and partial is None
        self.partial = self._assigner.config_partial = partial
        if config != self.config:
            self._apply(config, partial is not None)
        elif not leaving_partial:
            return
        if not self._assigner.restored:
            self._assigner.restore()
            return
        if leaving_partial:
            self._assigner.restore_deferred()
        self._assigner.retry_pending()

    def _apply(self, config: Config, partial: bool) -> None:
        released = self._assigner.allocator.set_config(config)
        self.config = config
        log.info(
            "event=config_loaded pools=%s l2advertisements=%d withdrawn=%d partial=%s",
            ",".join(p.name for p in config.pools) or "-",
            len(config.l2_advertisements),
            len(released),
            str(partial).lower(),
        )
        self._assigner.withdraw(released)
        self._pool_status.changed()

    def _fallback(
        self, problem: ConfigProblem, pools: list[JSON], l2_advertisements: list[JSON]
    ) -> Config | None:
        """Without a complete valid config since start-up, an invalid ConfigMap does not stop the metallb.io
        CRDs from being used, if they are valid on their own and define pools. After a complete valid config,
        the last valid config stays."""
        if problem.target is None or problem.target[0] != "ConfigMap":
            return None
        if self.config is not None and self.partial is None:
            return None
        try:
            config = rebuild_config(None, pools, l2_advertisements, self._ip_sharing)
        except ConfigProblem:
            return None
        if not config.pools:
            return None  # nothing to serve: stay without a config (nothing assigned, nothing cleared)
        if self.partial is None:
            log.warning(
                "event=config_fallback using=crds pools=%s reason=%r",
                ",".join(p.name for p in config.pools) or "-",
                "the ConfigMap is invalid and no valid configuration was loaded yet",
            )
        return config

    def _warn(self, target: tuple[str, str, str], message: str) -> None:
        kind, namespace, name = target
        api_version = "v1" if kind == "ConfigMap" else "metallb.io/v1beta1"
        metadata = {"namespace": namespace, "name": name}
        obj: JSON = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
        source = self._caches.configmap() if kind == "ConfigMap" else None
        if kind == "IPAddressPool":
            source = self._caches.pool(name)
        elif kind == "L2Advertisement":
            source = self._caches.l2_advertisement(name)
        if source is not None:
            obj["metadata"] = source.get("metadata") or obj["metadata"]
        self._recorder.event(obj, "Warning", "InvalidConfig", message)
