"""`python -m lab.controllers --kubeconfig K`: the lab's controller-manager (Deployments, DaemonSets, slices,
Nodes).

Informers keep caches of Deployments, DaemonSets, Pods, Services, Nodes, Leases, EndpointSlices and Endpoints;
any relevant change wakes the main loop, which runs the controllers over the whole (small) lab.
Level-triggered: every pass recomputes the desired state from the caches, so a missed or repeated event cannot
leave things wrong.
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from k8s.client import Client
from k8s.events import EventRecorder
from k8s.informer import Handlers, Informer
from k8s.meta import JSON
from lab.controllers import scheduling
from lab.controllers.binder import PodBinder
from lab.controllers.daemonsets import DaemonSetController
from lab.controllers.deployments import DeploymentController
from lab.controllers.endpointslices import EndpointSliceController
from lab.controllers.nodes import NodeLifecycleController
from lab.logsetup import configure_logging

log = logging.getLogger("lab.controllers")

RESYNC_SECONDS = 10.0
SETTLE_SECONDS = 0.5
COALESCE_SECONDS = 0.05
# Watches end and resume every minute, as they did before the shared shell (k8s.informer defaults to five).
# The embedded API server drops what is still queued for a watch when it times out, and its closing bookmark
# skips past it; shorter watches leave less queued at that moment.
WATCH_TIMEOUT = 60


def node_fingerprint(node: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a Node matters to the controllers; heartbeats alone must not wake them."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    return (
        scheduling.node_is_ready(node),
        bool(spec.get("unschedulable")),
        repr(spec.get("taints") or []),
        repr(sorted((meta.get("labels") or {}).items())),
    )


class ControllerManager:
    def __init__(self, kube: Client, node_grace_seconds: float = 50.0) -> None:
        self.kube = kube
        self.resync_seconds = min(RESYNC_SECONDS, max(node_grace_seconds / 2, 0.5))
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self._node_prints: dict[str, tuple[Any, ...]] = {}
        informer = functools.partial(Informer, kube, watch_timeout=WATCH_TIMEOUT)
        self.deployments = informer("/apis/apps/v1/deployments", Handlers.by_type(self._changed))
        self.daemonsets = informer("/apis/apps/v1/daemonsets", Handlers.by_type(self._changed))
        self.pods = informer("/api/v1/pods", Handlers.by_type(self._noting("pods")))
        self.services = informer("/api/v1/services", Handlers.by_type(self._noting("services")))
        self.nodes = informer("/api/v1/nodes", Handlers.by_type(self._node_changed))
        self.endpoint_slices = informer(
            "/apis/discovery.k8s.io/v1/endpointslices", Handlers.by_type(self._noting("endpointslices"))
        )
        self.endpoints = informer("/api/v1/endpoints", Handlers.by_type(self._noting("endpoints")))
        # Lease renewals only feed the cache: the periodic pass judges their age, they need not wake anyone.
        self.leases = informer("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")
        self.informers = [
            self.deployments, self.daemonsets, self.pods, self.services, self.nodes, self.endpoint_slices,
            self.endpoints, self.leases,
        ]  # fmt: skip
        self.deployment_controller = DeploymentController(kube, self.deployments, self.pods, self.nodes)
        self.slice_controller = EndpointSliceController(
            kube, self.services, self.pods, self.nodes, self.endpoint_slices, self.endpoints
        )
        self.daemonset_controller = DaemonSetController(kube, self.daemonsets, self.pods, self.nodes)
        self.recorder = EventRecorder(kube, "default-scheduler")
        self.binder = PodBinder(kube, self.pods, self.nodes, self.recorder)
        self.node_controller = NodeLifecycleController(
            kube, self.nodes, self.leases, self.pods, node_grace_seconds
        )

    def _changed(self, kind: str, obj: JSON) -> None:
        self.wake.set()

    def _noting(self, resource: str) -> Callable[[str, JSON], None]:
        def changed(kind: str, obj: JSON) -> None:
            self.slice_controller.note(resource, obj)
            self.wake.set()

        return changed

    def _node_changed(self, kind: str, obj: JSON) -> None:
        name = str(obj["metadata"]["name"])
        fingerprint = None if kind == "DELETED" else node_fingerprint(obj)
        if self._node_prints.get(name) != fingerprint:
            if fingerprint is None:
                self._node_prints.pop(name, None)
            else:
                self._node_prints[name] = fingerprint
            self.slice_controller.note("nodes", obj)
            self.wake.set()

    def _stop(self, *_: object) -> None:
        self.stopping.set()
        self.wake.set()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        for informer in self.informers:
            informer.start()
        for informer in self.informers:
            while not informer.wait_for_sync(0.5):
                if self.stopping.is_set():
                    return 0
        log.info("event=started")
        again = True
        while not self.stopping.is_set():
            woken = self.wake.wait(SETTLE_SECONDS if again else self.resync_seconds)
            if not woken and not again:
                self.slice_controller.mark_all()  # periodic resync: everything, not just what changed
            if self.stopping.is_set():
                break
            # Let a burst of related events land first (a Service and its slices deleted together), so a pass
            # does not act on half of it.
            self.stopping.wait(COALESCE_SECONDS)
            self.wake.clear()
            again = False
            controllers = (
                ("nodes", self.node_controller),
                ("binder", self.binder),
                ("deployments", self.deployment_controller),
                ("daemonsets", self.daemonset_controller),
                ("endpointslices", self.slice_controller),
            )
            for name, controller in controllers:
                try:
                    again |= controller.sync_all()
                except Exception as exc:  # a bug or an API outage must not end the controller-manager
                    log.exception("event=pass_failed controller=%s error=%r", name, exc)
                    self.slice_controller.mark_all()
                    again = True
        for informer in self.informers:
            informer.stop()
        self.recorder.stop()
        log.info("event=stopped")
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.controllers", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--node-monitor-grace-period",
        type=float,
        default=50.0,  # kube-controller-manager's default since Kubernetes 1.32 (40 s before)
        metavar="SECONDS",
        help="a node whose kubelet is silent this long becomes NotReady (Unknown)",
    )
    args = parser.parse_args(argv)
    if args.node_monitor_grace_period <= 0:
        parser.error("--node-monitor-grace-period must be positive")
    configure_logging(args.log_level)
    kube = Client.open_or_report(args.kubeconfig, user_agent="ironlb-lab")
    if kube is None:
        return 2
    try:
        return ControllerManager(kube, args.node_monitor_grace_period).run()
    finally:
        kube.close()


if __name__ == "__main__":
    sys.exit(main())
