"""Issue 7, case 3: a status write the API server refuses (any 4xx) becomes a Warning event on the Service and
a retry with exponential backoff, never a retry every second for ever (root: the API server enforces RBAC).

The refusal here is a real one: the controller's ClusterRole lacks `patch services/status` (or its Role
lacks `patch ipaddresspools/status`), so every such write gets 403. (The lab's API server also answers 422
for ingress IPs a real one rejects, but the controller no longer produces those: they are refused when the
request or pool is parsed.)
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.controller.conftest import InClusterController, RbacCluster
from tests.controller.helpers import CONFIG, apply, events, wait_event, wait_for

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

POOL = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: config, namespace: metallb-system}
data:
  config: |
    address-pools: [{name: p, protocol: layer2, addresses: [10.64.0.0/30]}]
"""
POOL_CR = """\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: crd-pool, namespace: metallb-system}
spec: {addresses: [10.65.0.0/30]}
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: refused, namespace: default}
spec: {type: LoadBalancer, selector: {app: x}, ports: [{port: 80}]}
"""


def shipped_rbac() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((CONFIG / "controller-rbac.yaml").read_text()) if doc]


def write_failures(log: str) -> list[float]:
    """Seconds (since midnight) of each event=write_failed line of the controller."""
    times = []
    for line in log.splitlines():
        if "event=write_failed service=default/refused" in line:
            stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            times.append(stamp.hour * 3600 + stamp.minute * 60 + stamp.second + stamp.microsecond / 1e6)
    return times


def start_without(
    rbac_cluster: RbacCluster,
    in_cluster_controller: Callable[..., InClusterController],
    kind: str,
    resource: str,
    pool: str,
) -> InClusterController:
    """The shipped RBAC less one rule (`resource` in the ClusterRole or Role), a pool, and the controller."""
    docs = shipped_rbac()
    role = next(d for d in docs if d["kind"] == kind)
    role["rules"] = [r for r in role["rules"] if r["resources"] != [resource]]
    rbac_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    apply(rbac_cluster.kubectl, pool)
    return in_cluster_controller()


def test_a_refused_status_write_is_reported_and_backed_off(
    rbac_cluster: RbacCluster, in_cluster_controller: Callable[..., InClusterController]
) -> None:
    controller = start_without(rbac_cluster, in_cluster_controller, "ClusterRole", "services/status", POOL)
    kubectl = rbac_cluster.kubectl
    apply(kubectl, SERVICE)

    event = wait_event(kubectl, "refused", "UpdateStatusFailed", contains="403", timeout=30)
    assert event["type"] == "Warning" and "retrying with backoff" in event["message"], event
    # Four attempts: 1 s, 2 s and 4 s apart (a hot loop would have made eight by then).
    def four_failures() -> list[float] | None:
        times = write_failures(controller.log())
        return times if len(times) >= 4 else None

    times = wait_for("four refused writes", four_failures, timeout=40)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)][:3]
    assert all(gap >= 0.9 * expected for gap, expected in zip(gaps, (1, 2, 4), strict=True)), gaps
    assert "retry_in=8s" in controller.log()
    # Told once, not on every retry.
    assert len(events(kubectl, "refused", reason="UpdateStatusFailed")) == 1
    assert controller.alive(), controller.log()[-3000:]


def test_a_refused_pool_status_write_is_reported_and_backed_off(
    rbac_cluster: RbacCluster, in_cluster_controller: Callable[..., InClusterController]
) -> None:
    controller = start_without(rbac_cluster, in_cluster_controller, "Role", "ipaddresspools/status", POOL_CR)
    kubectl = rbac_cluster.kubectl

    event = wait_event(kubectl, "crd-pool", "UpdateStatusFailed", namespace="metallb-system", timeout=30)
    assert event["involvedObject"]["kind"] == "IPAddressPool" and "403" in event["message"], event

    def retries() -> list[str] | None:
        lines = [line for line in controller.log().splitlines() if "event=pool_status_failed" in line]
        return lines if len(lines) >= 4 else None

    lines = wait_for("four refused pool status writes", retries, timeout=40)
    assert [line.rsplit("retry_in=", 1)[1] for line in lines[:4]] == ["1s", "2s", "4s", "8s"], lines
    assert len(events(kubectl, "crd-pool", namespace="metallb-system", reason="UpdateStatusFailed")) == 1
    assert controller.alive(), controller.log()[-3000:]
