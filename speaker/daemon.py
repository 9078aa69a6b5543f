"""The speaker daemon: the Kubernetes shell (k8s/), the membership, the announcer, Leases, statuses and Events
around the pure election. One per node (a DaemonSet pod with hostNetwork, or a process in a lab node's netns).

Threads: one informer per collection (callbacks only note what changed and wake the sync loop), the sync loop
(elections and this node's plan, handed to the announcer), the membership thread, the packet thread, the
Lease renewer, the ServiceL2Status worker, the Event poster and the health server.
"""

from __future__ import annotations

import gc
import logging
import operator
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from common.config import ConfigProblem, parse_l2_advertisement, rebuild_config
from common.endpoints import ServingEndpoints, serving_endpoints, slice_service_key
from common.errors import ConfigError
from common.pools import Config, IPAddress, L2Advertisement
from k8s.client import REQUEST_ERRORS, ApiError, Client
from k8s.events import EventRecorder
from k8s.informer import Handlers, Informer
from k8s.meta import JSON, key_of, micro_time, resource_path
from k8s.serving import HealthServer
from k8s.workqueue import WorkQueue, run_worker
from speaker.announcer import Announcer, Conflict
from speaker.desired import NodePlan, Problem, node_plan
from speaker.election import Ranker, elect_all
from speaker.interfaces import DEFAULT_PATTERNS, Interface
from speaker.membership import ring_key
from speaker.metrics import Metrics
from speaker.model import NodeFacts, ServiceFacts, node_facts, service_facts
from speaker.packets import mac_bytes
from speaker.quorum import Standing, stale_members, standing
from speaker.status import (
    GROUP_VERSION,
    PLURAL,
    Create,
    Delete,
    PatchStatus,
    actions_for,
    service_of,
)
from speaker.transport import MembershipLoop
from speaker.wire import read_interfaces

log = logging.getLogger("speaker")

COMPONENT = "metallb-speaker"
LEASE_LABEL = {"app.kubernetes.io/name": "ironlb-speaker"}
MACS_ANNOTATION = "ironlb.io/macs"
CONFLICT_EVERY = 60.0  # seconds between two reports of one (IP, MAC) conflict


@dataclass
class Options:
    node: str
    namespace: str = "metallb-system"  # the configuration: ConfigMap, IPAddressPools, L2Advertisements
    own_namespace: str = ""  # this speaker's Leases and ServiceL2Statuses; "" = namespace
    configmap_name: str = "config"
    load_balancer_class: str | None = None
    keys: list[bytes] = field(default_factory=list)
    ml_bind: str = "::"
    ml_port: int = 7946
    excluded: tuple[re.Pattern[str], ...] = DEFAULT_PATTERNS
    metrics_address: str | None = None
    metrics_port: int = 7472
    pod_name: str = ""
    pod_uid: str = ""
    renew_min: float = 1.0  # Lease renewal: clamp(speakers / 100, renew_min, renew_max) seconds
    renew_max: float = 10.0


# --- informer transforms: keep only what the speaker reads (memory with 10,000 Services) -------------------


def _meta(obj: JSON, *extra: str) -> JSON:
    metadata = obj.get("metadata") or {}
    kept = {k: metadata[k] for k in ("name", "namespace", "uid", "resourceVersion", *extra) if k in metadata}
    return kept


def slim_node(obj: JSON) -> JSON:
    status = obj.get("status") or {}
    return {
        "metadata": _meta(obj, "labels"),
        "status": {
            "conditions": [
                c for c in status.get("conditions") or [] if c.get("type") == "NetworkUnavailable"
            ],
            "addresses": [a for a in status.get("addresses") or [] if a.get("type") == "InternalIP"],
        },
    }


def slim_service(obj: JSON) -> JSON:
    spec = obj.get("spec") or {}
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return {
        "metadata": _meta(obj),
        "spec": {k: spec[k] for k in ("type", "loadBalancerClass", "externalTrafficPolicy") if k in spec},
        "status": {"loadBalancer": {"ingress": [{"ip": i["ip"]} for i in ingress if "ip" in i]}},
    }


def slim_slice(obj: JSON) -> JSON:
    metadata = _meta(obj)
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if "kubernetes.io/service-name" in labels:
        metadata["labels"] = {"kubernetes.io/service-name": labels["kubernetes.io/service-name"]}
    endpoints = []
    for endpoint in obj.get("endpoints") or []:
        kept = {"addresses": (endpoint.get("addresses") or [])[:1], "conditions": endpoint.get("conditions")}
        if endpoint.get("nodeName"):
            kept["nodeName"] = endpoint["nodeName"]
        endpoints.append(kept)
    return {"metadata": metadata, "addressType": obj.get("addressType"), "endpoints": endpoints}


def slim_lease(obj: JSON) -> JSON:
    spec = obj.get("spec") or {}
    return {
        "metadata": _meta(obj, "annotations"),
        "spec": {k: spec[k] for k in ("holderIdentity", "renewTime") if k in spec},
    }


def slim_status(obj: JSON) -> JSON:
    return {"metadata": _meta(obj, "labels"), "status": obj.get("status") or {}}


def lease_name(node: str) -> str:
    name = f"ironlb-speaker-{node}"
    if len(name) > 253:  # a Node name may be 253 characters long
        name = f"ironlb-speaker-{ring_key(node):016x}"
    return name


class Speaker:
    def __init__(self, client: Client, options: Options, registry: CollectorRegistry = REGISTRY) -> None:
        self.client = client
        self.options = options
        self.me = options.node
        self.metrics = Metrics(registry)
        self.recorder = EventRecorder(client, COMPONENT, host=self.me)
        self.stop_event = threading.Event()
        self._wake = threading.Event()
        self._config_dirty = True
        self._lock = threading.Lock()
        ns = options.namespace
        self.home = options.own_namespace or ns
        self.nodes = self._informer("/api/v1/nodes", slim_node)
        self.services = self._informer("/api/v1/services", slim_service)
        self.slices = self._informer(resource_path("discovery.k8s.io/v1", "endpointslices"), slim_slice)
        self.configmaps = self._informer(
            resource_path("v1", "configmaps", ns),
            None,
            query={"fieldSelector": f"metadata.name={options.configmap_name}"},
            config=True,
        )
        self.pools = self._informer(
            resource_path("metallb.io/v1beta1", "ipaddresspools", ns), None, config=True
        )
        self.advertisements = self._informer(
            resource_path("metallb.io/v1beta1", "l2advertisements", ns), None, config=True
        )
        self.leases = Informer(
            client,
            resource_path("coordination.k8s.io/v1", "leases", self.home),
            Handlers(on_add=self._lease_added, on_update=self._lease_updated, on_delete=self._lease_deleted),
            query={"labelSelector": ",".join(f"{k}={v}" for k, v in LEASE_LABEL.items())},
            transform=slim_lease,
        )
        self.statuses = Informer(
            client,
            resource_path(GROUP_VERSION, PLURAL, self.home),
            Handlers.by_type(self._status_changed),
            transform=slim_status,
        )
        self.membership = MembershipLoop(
            self.me, options.keys, bind=options.ml_bind, port=options.ml_port, on_change=self._wake.set
        )
        self.announcer = Announcer(self.metrics, self._conflict, self._speaker_macs)
        self.status_queue: WorkQueue[str] = WorkQueue("servicel2status")
        # State of the sync loop (read by the other threads under self._lock).
        self._interfaces: list[Interface] = []
        self._universe: dict[str, str] = {}
        self._config = Config()
        self._config_ok = False
        self._good_advertisements: dict[str, L2Advertisement] = {}
        self._announced: dict[str, tuple[str, ...]] = {}  # Service -> interfaces, as this node announces it
        self._owners: dict[str, frozenset[str]] = {}  # Service -> the nodes announcing it (the election)
        self._ip_services: dict[IPAddress, tuple[str, ...]] = {}
        self._gauges: set[tuple[str, str]] = set()
        self._problems: set[Problem] = set()
        self._standing = Standing(False, "starting")
        self._summary: tuple[int, int, int, tuple[tuple[str, int], ...]] = (0, 0, 0, ())
        self._signature: tuple[object, ...] = ()
        self._ranker = Ranker()
        self._facts_cache: dict[str, tuple[JSON, ServiceFacts | None]] = {}
        self._endpoints_cache: dict[str, tuple[tuple[JSON, ...], ServingEndpoints]] = {}
        self._renewed: dict[str, float] = {}  # node -> when its Lease was last seen renewed
        self._lease_macs: dict[str, frozenset[bytes]] = {}
        self._own_renewed: float | None = None
        self._conflicts: dict[tuple[IPAddress, str], float] = {}
        self._status_index: dict[str, dict[str, JSON]] = {}  # Service -> {object name: object}
        self._last_sync = time.monotonic()
        self._threads: list[threading.Thread] = []

    def _informer(
        self,
        path: str,
        transform: Any,
        *,
        query: Mapping[str, str] | None = None,
        config: bool = False,
    ) -> Informer:
        def changed(kind: str, obj: JSON) -> None:
            if config:
                self._config_dirty = True
            self._wake.set()

        return Informer(self.client, path, Handlers.by_type(changed), query=query, transform=transform)

    # --- life cycle ----------------------------------------------------------------------------------------

    def start(self, sync_timeout: float = 60.0) -> None:
        informers = self._all_informers()
        for informer in informers:
            informer.start()
        deadline = time.monotonic() + sync_timeout
        for informer in informers:
            if not informer.wait_for_sync(max(0.0, deadline - time.monotonic())):
                log.warning("event=cache_not_synced path=%s", informer.path)
        self._interfaces = self._read_interfaces()
        self._update_universe()
        self.membership.start()
        self.announcer.start()
        for target, name in (
            (self._sync_loop, "sync"),
            (self._lease_loop, "lease"),
            # A few writers: a node taking over thousands of Services writes their statuses in parallel.
            *[(lambda: run_worker(self.status_queue, self._sync_status), f"status-{i}") for i in range(4)],
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        # The caches just filled hold most of the objects this process will ever have: move them out of the
        # cyclic collector's sight, so a full collection does not stall the packet thread for long.
        gc.collect()
        gc.freeze()
        log.info(
            "event=started node=%s namespace=%s speaker_namespace=%s membership_port=%d interfaces=%s",
            self.me,
            self.options.namespace,
            self.home,
            self.membership.port,
            ",".join(i.name for i in self._interfaces),
        )

    def _all_informers(self) -> list[Informer]:
        return [
            self.nodes,
            self.services,
            self.slices,
            self.configmaps,
            self.pools,
            self.advertisements,
            self.leases,
            self.statuses,
        ]

    def stop(self) -> None:
        """SIGTERM: stop answering at once, say goodbye so the others take over now, drop our Lease."""
        log.info("event=stopping node=%s", self.me)
        self.stop_event.set()
        self.announcer.update({}, self._interfaces)
        self.announcer.stop()
        self.membership.leave()
        try:
            self.client.delete(self._lease_path())
        except REQUEST_ERRORS as exc:
            log.warning("event=lease_delete_failed error=%r", str(exc))
        self._wake.set()
        self.status_queue.shutdown()
        for thread in self._threads:
            thread.join(2)
        self.recorder.stop(2)
        for informer in self._all_informers():
            informer.stop(1)
        log.info("event=stopped node=%s", self.me)

    def health(self, server: HealthServer) -> None:
        server.add_check(
            "caches", lambda: None if all(i.has_synced() for i in self._all_informers()) else "syncing"
        )
        server.add_check("membership", lambda: None if self.membership.status()[3] else "joining")
        server.add_check(
            "sync-loop",
            lambda: None if time.monotonic() - self._last_sync < 30 else "the sync loop is stuck",
            liveness=True,
        )

    # --- the sync loop --------------------------------------------------------------------------------------

    def _sync_loop(self) -> None:
        while not self.stop_event.is_set():
            woken = self._wake.wait(1.0)  # at least once a second: interfaces, stale Leases
            self._wake.clear()
            if self.stop_event.is_set():
                return
            try:
                self.sync(force=woken)
            except Exception:
                log.exception("event=sync_failed")
            self._last_sync = time.monotonic()

    def sync(self, force: bool = True) -> None:
        """Elect and hand this node's plan to the announcer. Woken by a change (``force``), or by the clock:
        then only when the interfaces, the stale Leases or the standing changed, since with 10,000 Services
        an election round costs a few hundred milliseconds of CPU."""
        now = time.monotonic()
        interfaces = self._read_interfaces()
        alive, isolated, reachable, joined = self.membership.status()
        renewed = dict(self._renewed)  # a snapshot: the Lease informer's thread updates it
        stale = stale_members(renewed, now, 3 * self._renew_interval(), self._own_renewed)
        self.membership.set_stale(stale)
        now_standing = standing(
            self.me, alive, set(renewed), stale, joined=joined, isolated=isolated, reachable=reachable
        )
        signature = (tuple(interfaces), stale, now_standing, alive)
        if not force and signature == self._signature:
            return
        self._signature = signature
        nodes = {facts.name: facts for facts in (node_facts(n) for n in self.nodes.list())}
        self._update_universe(nodes)
        config = self._current_config()
        if now_standing != self._standing:
            log_at = logging.INFO if now_standing.announce else logging.WARNING
            announce = str(now_standing.announce).lower()
            log.log(
                log_at,
                "event=standing announce=%s reason=%r alive=%d",
                announce,
                now_standing.reason,
                len(alive),
            )
            self._standing = now_standing
        self.metrics.announcing.set(1 if now_standing.announce else 0)
        self.metrics.members.set(len(alive))
        services = self._service_facts()
        plan = NodePlan({})
        owners: dict[str, set[str]] = {}
        if now_standing.announce:
            endpoints = self._endpoints({s.key for s in services})
            elections = elect_all(services, config, nodes, alive, endpoints, self._ranker)
            plan = node_plan(self.me, elections, config, nodes, interfaces, self.options.excluded)
            reasons: dict[str, int] = {}
            for election in elections.values():
                if election.owner is None:
                    reasons[election.reason] = reasons.get(election.reason, 0) + 1
                for service in election.services:
                    if election.owner is not None:
                        owners.setdefault(service, set()).add(election.owner)
            summary = (len(services), len(elections), len(plan.announcements), tuple(sorted(reasons.items())))
            if summary != self._summary:
                self._summary = summary
                log.info(
                    "event=plan services=%d ips=%d announced_here=%d not_announced=%s slices=%d took_ms=%.0f",
                    summary[0],
                    summary[1],
                    summary[2],
                    ",".join(f"{count}:{why.replace(' ', '_')}" for why, count in summary[3]) or "0",
                    len(self.slices),
                    (time.monotonic() - now) * 1000,
                )
        with self._lock:
            self._owners = {service: frozenset(nodes) for service, nodes in owners.items()}
            # Before the announcer sees the plan: a conflict found by its first probe names the Services.
            self._ip_services = {a.ip: a.services for a in plan.announcements.values()}
        self.announcer.update(plan.announcements, interfaces)
        self._after_plan(plan, {s.key for s in services}, alive, now_standing)

    def _after_plan(
        self, plan: NodePlan, existing: set[str], alive: frozenset[str], now_standing: Standing
    ) -> None:
        announced: dict[str, set[str]] = {}
        gauges: set[tuple[str, str]] = set()
        for announcement in plan.announcements.values():
            for service in announcement.services:
                announced.setdefault(service, set()).update(announcement.interfaces)
                gauges.add((str(announcement.ip), service))
        wanted = {service: tuple(sorted(names)) for service, names in announced.items()}
        with self._lock:
            before = self._announced
            self._announced = wanted
        for service in sorted(set(before) | set(wanted)):
            if before.get(service) != wanted.get(service):
                self.status_queue.add(service)
            if service in wanted and service not in before:
                self._service_event(
                    service,
                    "Normal",
                    "nodeAssigned",
                    f'announcing from node "{self.me}" with protocol "layer2"',
                )
                log.info(
                    "event=service_announced service=%s interfaces=%s", service, ",".join(wanted[service])
                )
            elif service in before and service not in wanted:
                log.info("event=service_withdrawn service=%s", service)
        for ip, service in gauges - self._gauges:
            self.metrics.announced.labels(ip, self.me, "layer2", service).set(1)
        for ip, service in self._gauges - gauges:
            self.metrics.announced.remove(ip, self.me, "layer2", service)
        self._gauges = gauges
        problems = set(plan.problems)
        for problem in sorted(problems - self._problems, key=lambda p: (p.kind, p.name, p.message)):
            log.warning(
                "event=problem kind=%s object=%s/%s reason=%s message=%r",
                problem.kind,
                problem.namespace,
                problem.name,
                problem.reason,
                problem.message,
            )
            self._object_event(
                problem.kind, problem.namespace, problem.name, "Warning", problem.reason, problem.message
            )
        self._problems = problems
        # The janitor (the first live speaker in ring order) removes statuses nobody else will.
        if now_standing.announce and alive and min(alive, key=ring_key) == self.me:
            with self._lock:
                indexed = list(self._status_index.items())
            for service, objects in indexed:
                if service not in existing or any(
                    str(((o.get("metadata") or {}).get("labels") or {}).get("metallb.io/node")) not in alive
                    for o in objects.values()
                ):
                    self.status_queue.add(service)

    def _service_facts(self) -> list[ServiceFacts]:
        """Facts of every Service we announce for. Parsed again only when its cached object changed (the
        informer replaces the object on every update): a sync with 10,000 Services re-parses what moved."""
        cache: dict[str, tuple[JSON, ServiceFacts | None]] = {}
        facts = []
        for obj in self.services.list():
            key = key_of(obj)
            hit = self._facts_cache.get(key)
            if hit is not None and hit[0] is obj:
                value = hit[1]
            else:
                value = service_facts(obj, self.options.load_balancer_class)
            cache[key] = (obj, value)
            if value is not None:
                facts.append(value)
        self._facts_cache = cache
        return facts

    def _endpoints(self, wanted: set[str]) -> dict[str, ServingEndpoints]:
        by_service: dict[str, list[JSON]] = {}
        for endpoint_slice in self.slices.list():
            key = slice_service_key(endpoint_slice)
            if key in wanted:
                by_service.setdefault(key, []).append(endpoint_slice)
        cache: dict[str, tuple[tuple[JSON, ...], ServingEndpoints]] = {}
        # The cache holds the slice objects themselves (not their ids, which a new object may reuse): the
        # identity check stays sound.
        for key, slices in by_service.items():
            hit = self._endpoints_cache.get(key)
            if hit is not None and len(hit[0]) == len(slices) and all(map(operator.is_, hit[0], slices)):
                cache[key] = hit
            else:
                cache[key] = (tuple(slices), serving_endpoints(slices))
        self._endpoints_cache = cache
        return {key: value for key, (_, value) in cache.items()}

    def _read_interfaces(self) -> list[Interface]:
        try:
            interfaces = read_interfaces()
        except OSError as exc:
            log.warning("event=interfaces_unreadable error=%r", str(exc))
            return self._interfaces
        before = {i.name: i for i in self._interfaces}
        after = {i.name: i for i in interfaces}
        if self._interfaces and set(before) != set(after):
            log.warning(
                "event=interfaces_changed added=%s removed=%s",
                ",".join(sorted(set(after) - set(before))) or "-",
                ",".join(sorted(set(before) - set(after))) or "-",
            )
        for name in sorted(set(before) & set(after)):
            if before[name].up != after[name].up:
                log.warning("event=interface_state interface=%s up=%s", name, str(after[name].up).lower())
        self._interfaces = interfaces
        return interfaces

    def _update_universe(self, nodes: Mapping[str, NodeFacts] | None = None) -> None:
        if nodes is None:
            nodes = {facts.name: facts for facts in (node_facts(n) for n in self.nodes.list())}
        universe = {name: str(facts.addresses[0]) for name, facts in nodes.items() if facts.addresses}
        if universe != self._universe:
            self._universe = universe
            self.membership.set_universe(universe)

    # --- configuration: the same parsers as the controller ---------------------------------------------

    def _current_config(self) -> Config:
        if not self._config_dirty:
            return self._config
        self._config_dirty = False
        configmap = next(iter(self.configmaps.list()), None)
        advertisements = self._advertisements()
        try:
            config = rebuild_config(configmap, self.pools.list(), [])
        except ConfigProblem as problem:
            if self._config_ok:
                log.warning("event=config_invalid error=%r action=keep_last_good", str(problem.error))
            else:
                log.warning("event=config_invalid error=%r action=announce_nothing_yet", str(problem.error))
            return self._config
        self._config = Config(pools=config.pools, l2_advertisements=advertisements)
        self._config_ok = True
        log.info("event=config_loaded pools=%d l2advertisements=%d", len(config.pools), len(advertisements))
        return self._config

    def _advertisements(self) -> tuple[L2Advertisement, ...]:
        """Each L2Advertisement on its own: a bad one is reported and its last good version kept (or it is
        left out); the others keep working."""
        kept: list[L2Advertisement] = []
        seen: set[str] = set()
        for obj in sorted(
            self.advertisements.list(), key=lambda o: (o.get("metadata") or {}).get("name", "")
        ):
            metadata = obj.get("metadata") or {}
            uid = str(metadata.get("uid") or metadata.get("name"))
            seen.add(uid)
            try:
                parsed = parse_l2_advertisement(obj)
            except ConfigError as exc:
                previous = self._good_advertisements.get(uid)
                action = "keep_last_good" if previous else "ignore_it"
                log.warning(
                    "event=invalid_l2advertisement object=%s/%s error=%r action=%s",
                    metadata.get("namespace"),
                    metadata.get("name"),
                    str(exc),
                    action,
                )
                self.recorder.event(
                    obj,
                    "Warning",
                    "InvalidConfig",
                    f"{exc} (the speaker {self.me!r} "
                    + ("keeps its last valid version)" if previous else "ignores it)"),
                    default_kind="L2Advertisement",
                    default_api_version=GROUP_VERSION,
                )
                if previous is not None:
                    kept.append(previous)
                continue
            self._good_advertisements[uid] = parsed
            kept.append(parsed)
        for uid in set(self._good_advertisements) - seen:
            del self._good_advertisements[uid]
        return tuple(kept)

    # --- Events -------------------------------------------------------------------------------------------

    def _service_event(self, service: str, event_type: str, reason: str, message: str) -> None:
        namespace, _, name = service.partition("/")
        self._object_event("Service", namespace, name, event_type, reason, message)

    def _object_event(
        self, kind: str, namespace: str, name: str, event_type: str, reason: str, msg: str
    ) -> None:
        obj: JSON | None = None
        if kind == "Service":
            obj = self.services.get(namespace, name)
            api_version = "v1"
        else:
            obj = self.advertisements.get(namespace, name)
            api_version = GROUP_VERSION
        if obj is None:
            obj = {"metadata": {"namespace": namespace, "name": name}}
        self.recorder.event(obj, event_type, reason, msg, default_kind=kind, default_api_version=api_version)

    def _conflict(self, conflict: Conflict) -> None:
        """From the packet thread: report (rate-limited), and go on announcing: the pool owner decided."""
        now = time.monotonic()
        key = (conflict.ip, conflict.mac)
        if now - self._conflicts.get(key, -CONFLICT_EVERY) < CONFLICT_EVERY:
            return
        if len(self._conflicts) > 1000:
            self._conflicts = {k: t for k, t in self._conflicts.items() if now - t < CONFLICT_EVERY}
        self._conflicts[key] = now
        with self._lock:
            services = self._ip_services.get(conflict.ip, ())
        log.warning(
            "event=ip_conflict ip=%s mac=%s interface=%s services=%s",
            conflict.ip,
            conflict.mac,
            conflict.interface,
            ",".join(services),
        )
        for service in services:
            self._service_event(
                service,
                "Warning",
                "IPConflict",
                f"{conflict.ip} is also claimed by {conflict.mac} (not a speaker) on {conflict.interface} of "
                f"node {self.me!r}: another host uses this address. It stays announced from {self.me!r}.",
            )

    # --- ServiceL2Status -----------------------------------------------------------------------------

    def _status_changed(self, kind: str, obj: JSON) -> None:
        service = service_of(obj)
        if service is None:
            return
        name = str((obj.get("metadata") or {}).get("name", ""))
        with self._lock:
            objects = self._status_index.setdefault(service, {})
            if kind == "DELETED":
                objects.pop(name, None)
                if not objects:
                    del self._status_index[service]
            else:
                objects[name] = obj
        self.status_queue.add(service)

    def _sync_status(self, service: str) -> None:
        if self.stop_event.is_set():
            return
        with self._lock:
            wanted = self._announced.get(service)
            owners = self._owners.get(service, frozenset())
            existing = list(self._status_index.get(service, {}).values())
        if wanted is None and not existing:
            return
        alive = self.membership.alive()
        owner = None
        if self.options.pod_name and self.options.pod_uid:
            owner = {"name": self.options.pod_name, "uid": self.options.pod_uid}
        namespace, _, name = service.partition("/")
        actions = actions_for(
            service,
            self.me,
            wanted,
            existing,
            namespace=self.home,
            owners=owners,
            janitor=self._standing.announce and bool(alive) and min(alive, key=ring_key) == self.me,
            alive=alive,
            service_exists=self.services.get(namespace, name) is not None,
            owner=owner,
        )
        collection = resource_path(GROUP_VERSION, PLURAL, self.home)
        for action in actions:
            if isinstance(action, Delete):
                try:
                    self.client.delete(f"{collection}/{action.name}", uid=action.uid or None)
                except ApiError as exc:
                    if exc.status != 409:  # 409: a newer object by that name; not ours to delete
                        raise
                log.info("event=status_deleted service=%s object=%s why=%r", service, action.name, action.why)
            elif isinstance(action, Create):
                created = self.client.create(collection, action.body)
                object_name = str(created["metadata"]["name"])
                self.client.merge_patch(f"{collection}/{object_name}/status", {"status": action.status})
                log.info("event=status_created service=%s object=%s node=%s", service, object_name, self.me)
            elif isinstance(action, PatchStatus):
                self.client.merge_patch(f"{collection}/{action.name}/status", {"status": action.status})

    # --- this speaker's Lease: who exists, and the MACs of every speaker -----------------------------------

    def _lease_path(self) -> str:
        return resource_path("coordination.k8s.io/v1", "leases", self.home, lease_name(self.me))

    def _renew_interval(self) -> float:
        speakers = max(len(self._renewed), 1)
        return min(max(speakers / 100, self.options.renew_min), self.options.renew_max)

    def _lease_loop(self) -> None:
        while not self.stop_event.is_set():
            interval = self._renew_interval()
            try:
                self._renew()
                self._own_renewed = time.monotonic()
            except REQUEST_ERRORS as exc:
                log.warning("event=lease_renew_failed error=%r", str(exc))
            self.stop_event.wait(interval)

    def _renew(self) -> None:
        macs = ",".join(sorted({i.mac for i in self._interfaces if i.mac and i.mac != "00:00:00:00:00:00"}))
        duration = max(1, round(3 * self._renew_interval()))
        now = micro_time()
        patch: JSON = {
            "metadata": {"annotations": {MACS_ANNOTATION: macs}},
            "spec": {"holderIdentity": self.me, "renewTime": now, "leaseDurationSeconds": duration},
        }
        try:
            self.client.merge_patch(self._lease_path(), patch)
            return
        except ApiError as exc:
            if exc.status != 404:
                raise
        body: JSON = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": lease_name(self.me),
                "namespace": self.home,
                "labels": dict(LEASE_LABEL),
                "annotations": {MACS_ANNOTATION: macs},
            },
            "spec": {**patch["spec"], "acquireTime": now},
        }
        node = self.nodes.get("", self.me)
        uid = ((node or {}).get("metadata") or {}).get("uid")
        if uid:  # deleting the Node garbage-collects its speaker's Lease
            body["metadata"]["ownerReferences"] = [
                {"apiVersion": "v1", "kind": "Node", "name": self.me, "uid": uid}
            ]
        self.client.create(resource_path("coordination.k8s.io/v1", "leases", self.home), body)
        log.info("event=lease_created name=%s", lease_name(self.me))

    def _lease_added(self, obj: JSON) -> None:
        self._lease_seen(obj)

    def _lease_updated(self, old: JSON, new: JSON) -> None:
        # Only a changed renewTime is a renewal (a resync delivers the same object again).
        if (old.get("spec") or {}).get("renewTime") != (new.get("spec") or {}).get("renewTime"):
            self._lease_seen(new)

    def _lease_seen(self, obj: JSON) -> None:
        holder = str((obj.get("spec") or {}).get("holderIdentity") or "")
        if not holder:
            return
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        macs: set[bytes] = set()
        for text in str(annotations.get(MACS_ANNOTATION, "")).split(","):
            try:
                macs.add(mac_bytes(text.strip()))
            except ValueError:
                continue
        new = holder not in self._renewed
        self._renewed[holder] = time.monotonic()
        self._lease_macs[holder] = frozenset(macs)
        if new:
            self._wake.set()

    def _lease_deleted(self, obj: JSON) -> None:
        holder = str((obj.get("spec") or {}).get("holderIdentity") or "")
        self._renewed.pop(holder, None)
        self._lease_macs.pop(holder, None)
        self._wake.set()

    def _speaker_macs(self) -> frozenset[bytes]:
        macs: set[bytes] = set()
        for known in list(self._lease_macs.values()):
            macs |= known
        return frozenset(macs)
