"""Released IPs go to the oldest waiting Service, without retrying every waiting Service on every release
(issue 8: 1,000 pending Services and 10 releases made 10,070 log lines; bench/controller_pending_bench.py
measures that case)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.controller.conftest import Cluster, StartController
from tests.controller.helpers import (
    ControllerProcess,
    apply,
    configmap,
    events,
    service,
    wait_event,
    wait_for,
    wait_ips,
)

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
    controller.kill()  # the next test's controller must be the only one posting events
    assert retried == 1, f"{retried - 1} waiting Services were retried for nothing"


def test_unrelated_annotation_edits_do_not_repeat_the_failure_event(
    cluster: Cluster, start_controller: StartController
) -> None:
    """Issue 8: five unrelated edits (each copying a large annotation) made 1.44 MB of Events."""
    kubectl = cluster.kubectl
    controller = start_controller("--standalone")
    asks = {"metallb.io/address-pool": "nowhere"}
    apply(kubectl, service("lonely", namespace="default", annotations=asks))
    wait_event(kubectl, "lonely", "AllocationFailed", contains='unknown pool "nowhere"')
    for edit in range(5):
        kubectl("annotate", "service", "lonely", f"notes.example/edit={edit}{'x' * 20000}", "--overwrite")
    # A change of what the Service asks for is a new failure: its event comes after whatever the edits caused.
    kubectl("annotate", "service", "lonely", "metallb.io/address-pool=elsewhere", "--overwrite")
    wait_event(kubectl, "lonely", "AllocationFailed", contains='unknown pool "elsewhere"')
    failures = events(kubectl, "lonely", reason="AllocationFailed")
    assert len(failures) == 2, [e["message"] for e in failures]
    # The recorder folds an identical repeat into its Event's count: a repeat from an edit would show there.
    assert [e.get("count", 1) for e in failures] == [1, 1], failures
    assert all(len(e["message"]) < 200 for e in failures)
    assert controller.alive()
