"""What the controller reads, kept current by k8s/ informers: Services, the MetalLB ConfigMap, IPAddressPools
and L2Advertisements; and the Namespaces' labels, which kopf's Namespace watch feeds.

Each informer lists (paginated, each item projected as it is decoded) and watches in a thread of its own, and
hands its changes to the event loop (`Handlers.on_loop`). Services are cached as projections
(common.services.project_service) in compact JSON: a tenant's large annotations never stay in memory. The
Service list is taken again every `resync_period` and whatever vanished meanwhile is reported deleted (a
DELETED event lost in a watch gap must not hold its IP forever). A metallb.io resource that is not installed
counts as empty: the ConfigMap alone still works, and the CRDs are picked up when they appear.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from common.services import project_service
from k8s.client import REQUEST_ERRORS, Client
from k8s.informer import Handlers, Informer
from k8s.meta import JSON, key_of
from k8s.store import EncodedStore

log = logging.getLogger("controller")

# Objects per list page. A page is held whole while its items are decoded one by one: 50 Services at the
# real API server's 256 KiB annotation limit are ~13 MB.
SERVICE_PAGE_SIZE = 50


def labels_of(obj: Mapping[str, Any] | None) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get("labels") or {})


def config_part(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a pool or advertisement the config is built from: spec, labels (pool selectors) and
    annotations (ironlb.io/ip-sharing); not status, which we write ourselves."""
    metadata = obj.get("metadata") or {}
    return obj.get("spec"), metadata.get("labels"), metadata.get("annotations")


class Caches:
    def __init__(
        self,
        client: Client,
        *,
        configmap_namespace: str,
        configmap_name: str,
        namespace: str,
        resync_period: float,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.namespace_labels: dict[str, dict[str, str]] = {}
        self.services = Informer(
            client,
            "/api/v1/services",
            transform=project_service,
            store=EncodedStore,
            relist_period=resync_period,
            page_size=SERVICE_PAGE_SIZE,
            backoff_initial=1.0,
            backoff_max=30.0,
        )
        self.configmaps = _config_informer(
            client,
            f"/api/v1/namespaces/{configmap_namespace}/configmaps",
            {"fieldSelector": f"metadata.name={configmap_name}"},
        )
        crds = f"/apis/metallb.io/v1beta1/namespaces/{namespace}"
        self.pools = _config_informer(client, f"{crds}/ipaddresspools")
        self.l2_advertisements = _config_informer(client, f"{crds}/l2advertisements")

    def start(
        self,
        loop: asyncio.AbstractEventLoop,
        on_service: Callable[[str], None],
        on_config: Callable[[], None],
        on_own_status: Callable[[], None],
    ) -> None:
        """Start every informer; callbacks run on `loop`: `on_service(key)` for any Service change,
        `on_config()` when what the config is built from changed, `on_own_status()` when only a pool's status
        changed (our own write, seen back)."""

        def config_changed(old: JSON, new: JSON) -> None:
            (on_own_status if config_part(old) == config_part(new) else on_config)()

        self.services.handlers = Handlers(
            on_add=lambda obj: on_service(key_of(obj)),
            on_update=lambda old, new: on_service(key_of(new)),
            on_delete=lambda obj: on_service(key_of(obj)),
        ).on_loop(loop)
        self.configmaps.handlers = Handlers.by_type(lambda kind, obj: on_config()).on_loop(loop)
        for informer in (self.pools, self.l2_advertisements):
            informer.handlers = Handlers(
                on_add=lambda obj: on_config(), on_update=config_changed, on_delete=lambda obj: on_config()
            ).on_loop(loop)
        for informer in self._informers():
            informer.start()

    async def wait_synced(self) -> None:
        """Until every cache holds a complete list; the config objects before the Services, and the
        Namespaces' labels after them (every listed Service's namespace is then known)."""
        for informer in self._informers():
            await asyncio.to_thread(informer.wait_for_sync)
        await self._list_namespaces()

    async def _list_namespaces(self) -> None:
        failures = 0
        while True:
            try:
                listed = await asyncio.to_thread(lambda: list(self.client.list("/api/v1/namespaces")))
                break
            except REQUEST_ERRORS as e:
                failures += 1
                log.warning("event=list_failed path=/api/v1/namespaces error=%r", str(e))
                await asyncio.sleep(min(10.0, float(failures)))
        self.namespace_labels = {str(n["metadata"]["name"]): labels_of(n) for n in listed}

    def stop(self) -> None:
        for informer in self._informers():
            informer.stop(timeout=1.0)

    def _informers(self) -> tuple[Informer, ...]:
        return (self.configmaps, self.pools, self.l2_advertisements, self.services)

    # ---- reads (from the event loop) ---------------------------------------------------------------------

    def service(self, key: str) -> JSON | None:
        return self.services.get_by_key(key)

    def configmap(self) -> JSON | None:
        found = self.configmaps.list()
        return found[0] if found else None

    def pool(self, name: str) -> JSON | None:
        return self.pools.get(self.namespace, name)

    def l2_advertisement(self, name: str) -> JSON | None:
        return self.l2_advertisements.get(self.namespace, name)

    def remember_service(self, key: str, body: JSON) -> None:
        """Our own status write's answer: cached (unless deleted meanwhile) without being reported."""
        if body.get("kind") == "Service" and self.services.get_by_key(key) is not None:
            self.services.remember(body)


def _config_informer(client: Client, path: str, query: dict[str, str] | None = None) -> Informer:
    """Few small objects, relisted 1 s after a failure (at most 10 s), and every 10 s while not installed."""
    return Informer(client, path, query=query, backoff_initial=1.0, backoff_max=10.0, missing_ok=True)
