"""Released IPs go to the oldest waiting Service, without retrying every waiting Service on every release
(issue 8: 1,000 pending Services and 10 releases made 10,070 log lines; bench/controller_pending_bench.py
measures that case)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.controller.conftest import Cluster, StartController
from tests.controller.helpers import ControllerProcess, apply, configmap, service, wait_for, wait_ips

pytestmark = pytest.mark.timeout(120)

WAITERS = 30


def logged(controller: ControllerProcess, text: str) -> Callable[[], bool]:
    return lambda: text in controller.log()


def test_a_release_wakes_the_oldest_waiter_only(cluster: Cluster, start_controller: StartController) -> None:
    kubectl = cluster.kubectl
    pools = "address-pools:\n- {name: two, protocol: layer2, addresses: [10.80.0.1-10.80.0.2]}"
    apply(kubectl, configmap(pools))
    controller = start_controller("--standalone")
    apply(kubectl, service("holder-a"))
    apply(kubectl, service("holder-b"))
    assert sorted(wait_ips(kubectl, "holder-a") + wait_ips(kubectl, "holder-b")) == ["10.80.0.1", "10.80.0.2"]
    for index in range(WAITERS):  # one at a time: their order is the order they started waiting in
        apply(kubectl, service(f"waiter-{index:02d}"))
        wait_for(f"waiter-{index:02d} pending", logged(controller, f"service=default/waiter-{index:02d} "))
    before = controller.log().count("event=allocation_failed ")

    kubectl("delete", "service", "holder-a", "holder-b")
    taken = wait_ips(kubectl, "waiter-00") + wait_ips(kubectl, "waiter-01")
    assert sorted(taken) == ["10.80.0.1", "10.80.0.2"]
    # A Service created now fails after whatever the releases queued (the work queue is first in, first out).
    apply(kubectl, service("sentinel"))
    wait_for("the sentinel's failure", lambda: "service=default/sentinel " in controller.log())
    retried = controller.log().count("event=allocation_failed ") - before
    assert retried == 1, f"{retried - 1} waiting Services were retried for nothing"
