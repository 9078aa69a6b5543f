"""The controller runs with exactly the RBAC we ship (config/controller-rbac.yaml) and nothing else (root).

An API server enforcing RBAC knows the controller's service account by a static token; the admin applies the
namespace, the CRDs and the shipped RBAC as they are, and the controller runs in-cluster with that token. The
whole tutorial flow must work without one 403 for the controller; and with one rule removed the same test
sees the 403 and the Service left pending, so it can fail. The controller may not update or patch Services
(only their status): the pool annotation rides on the status write, as MetalLB's does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.controller.conftest import InClusterController, RbacCluster
from tests.controller.helpers import (
    CONFIG,
    apply,
    events,
    get_json,
    service_ips,
    wait_event,
    wait_for,
    wait_ips,
)
from tests.tutorial import TUTORIAL_DIR

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

SHIPPED_RBAC = CONFIG / "controller-rbac.yaml"


def shipped_rbac() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(SHIPPED_RBAC.read_text()) if doc]


def test_controller_works_with_exactly_the_shipped_rbac(
    rbac_cluster: RbacCluster, in_cluster_controller: Callable[..., InClusterController]
) -> None:
    service_verbs = {
        verb
        for doc in shipped_rbac()
        for rule in doc.get("rules") or []
        if "services" in rule["resources"]
        for verb in rule["verbs"]
    }
    assert service_verbs == {"list", "watch"}, "the controller must not be able to rewrite Services"
    kubectl = rbac_cluster.kubectl
    apply(kubectl, SHIPPED_RBAC)
    apply(kubectl, TUTORIAL_DIR / "metallb-config.yaml")
    controller = in_cluster_controller()
    apply(kubectl, TUTORIAL_DIR / "nginx-metallb.yaml", namespace="default")

    assert wait_ips(kubectl, "nginx-metallb", timeout=30) == ["192.168.10.90"], controller.log()[-3000:]
    wait_for(
        "the ip-allocated-from-pool annotation",
        lambda: (
            (get_json(kubectl, "service", "nginx-metallb") or {})
            .get("metadata", {})
            .get("annotations", {})
            .get("metallb.io/ip-allocated-from-pool")
            == "default"
        ),
    )
    wait_event(kubectl, "nginx-metallb", "IPAllocated", contains="192.168.10.90")
    # The same Event again (away from LoadBalancer and back: the same IP): the recorder counts it on the Event
    # already posted, as client-go's does, which takes `patch events`.
    for type_, has_ip in (("ClusterIP", False), ("LoadBalancer", True)):
        change = json.dumps({"spec": {"type": type_}})
        kubectl("patch", "service", "nginx-metallb", "--type=merge", "-p", change)
        wait_for(type_, lambda want=has_ip: bool(service_ips(kubectl, "nginx-metallb")) == want)  # type: ignore[misc]
    wait_for(
        "the IPAllocated event counted twice",
        lambda: [e for e in events(kubectl, "nginx-metallb", reason="IPAllocated") if e.get("count") == 2],
        timeout=30,
    )

    # A pool written as a metallb.io resource gets its status from the controller (ipaddresspools/status).
    apply(kubectl, CONFIG / "examples" / "ipaddresspool.yaml")
    status = wait_for(
        "IPAddressPool metallb-system/more status",
        lambda: (get_json(kubectl, "ipaddresspool", "more", "-n", "metallb-system") or {}).get("status"),
        timeout=15,
    )
    assert status["availableIPv4"] == 11, status

    lease = get_json(kubectl, "lease", "ironlb-controller", "-n", "metallb-system")
    assert lease is not None and lease["spec"].get("holderIdentity"), lease

    assert controller.alive(), controller.log()[-3000:]
    # test_one_missing_rule_is_caught shows these log lines do appear when the controller is denied.
    assert rbac_cluster.denials() == [], "\n".join(rbac_cluster.denials())


def test_one_missing_rule_is_caught(
    rbac_cluster: RbacCluster, in_cluster_controller: Callable[..., InClusterController]
) -> None:
    """Without `patch services/status` the controller is denied, and the Service stays pending."""
    docs = shipped_rbac()
    cluster_role = next(d for d in docs if d["kind"] == "ClusterRole")
    before = len(cluster_role["rules"])
    cluster_role["rules"] = [r for r in cluster_role["rules"] if r["resources"] != ["services/status"]]
    assert len(cluster_role["rules"]) == before - 1, "the shipped ClusterRole no longer has that rule"
    kubectl = rbac_cluster.kubectl
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    apply(kubectl, TUTORIAL_DIR / "metallb-config.yaml")
    controller = in_cluster_controller()
    apply(kubectl, TUTORIAL_DIR / "nginx-metallb.yaml", namespace="default")

    denied = wait_for(
        "a 403 for the controller patching services/status",
        lambda: [line for line in rbac_cluster.denials() if "verb=patch resource=services/status " in line],
        timeout=30,
    )
    assert "namespace=default name=nginx-metallb" in denied[0], denied[0]
    # The server logs the 403 before the controller has read the answer: wait for the controller's line.
    wait_for("the controller logging the 403", lambda: "403 Forbidden" in controller.log(), timeout=30)
    assert "event=write_failed" in controller.log()
    # The write is retried and denied again: nothing gets through.
    wait_for(
        "a retried write denied too",
        lambda: sum("verb=patch resource=services/status " in line for line in rbac_cluster.denials()) >= 2,
        timeout=30,
    )
    assert service_ips(kubectl, "nginx-metallb") == []
    assert controller.alive(), controller.log()[-3000:]
