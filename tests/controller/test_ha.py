"""Two replicas: one Lease holder assigns, the other waits and takes over; never a double assignment."""

from __future__ import annotations

import datetime
import json
import time

import pytest

from tests.controller.conftest import Cluster, StartController
from tests.controller.helpers import (
    ControllerProcess,
    all_assigned,
    apply,
    configmap,
    get_json,
    service,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)

POOLS = """
address-pools:
- name: ha
  protocol: layer2
  addresses: [192.168.80.0/26]
"""


def log_time(log: str, marker: str) -> datetime.datetime:
    """When the first log line containing `marker` was written (both replicas log the same clock)."""
    for line in log.splitlines():
        if marker in line:
            return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    raise AssertionError(f"no {marker!r} in log:\n{log[-2000:]}")


def no_duplicates(assigned: dict[str, list[str]]) -> None:
    ips = [ip for ips in assigned.values() for ip in ips]
    assert len(ips) == len(set(ips)), f"an IP was given twice: {assigned}"


def served(cluster: Cluster, at_least: int) -> dict[str, list[str]] | None:
    assigned = all_assigned(cluster.kubectl)
    return assigned if len(assigned) >= at_least else None


def reporters(cluster: Cluster) -> set[str]:
    listing = get_json(cluster.kubectl, "events", "-n", "default") or {"items": []}
    return {e.get("reportingInstance") for e in listing["items"] if e.get("reason") == "IPAllocated"}


def test_two_replicas_never_double_assign_and_fail_over(cluster: Cluster, start_controller: StartController):
    kubectl = cluster.kubectl
    apply(kubectl, configmap(POOLS))
    # Both race for the Lease from the start. A start-up takes up to ~10 s on a loaded 2-core machine (the
    # imports alone): wait as long as ControllerProcess.wait_started does.
    first = start_controller("--identity", "replica-a", wait_started=False)
    second = start_controller("--identity", "replica-b", wait_started=False)
    try:
        wait_for("a leader", lambda: "event=started" in first.log() + second.log(), timeout=30)
        serve_and_fail_over(cluster, first, second)
    finally:
        # Not left to the module's teardown: a replica still holding the Lease would stall the next test.
        first.kill()
        second.kill()


def serve_and_fail_over(cluster: Cluster, first: ControllerProcess, second: ControllerProcess) -> None:
    kubectl = cluster.kubectl
    leader, standby = (first, second) if "event=started" in first.log() else (second, first)
    leader_id = "replica-a" if leader is first else "replica-b"
    standby_id = "replica-b" if leader is first else "replica-a"

    for index in range(20):
        apply(kubectl, service(f"ha-{index}"))
    assigned = wait_for("20 Services served", lambda: served(cluster, 20))
    no_duplicates(assigned)
    assert "event=started" not in standby.log()
    assert "event=leader_waiting" in standby.log()
    wait_for("events posted", lambda: reporters(cluster) == {leader_id})

    leader.kill()  # no clean hand-over: the standby must wait for the lease to expire
    killed_at = time.monotonic()
    standby.wait_started()
    took_over = time.monotonic() - killed_at
    assert took_over < 10, f"takeover took {took_over:.1f}s"
    for index in range(20, 25):
        apply(kubectl, service(f"ha-{index}"))
    after = wait_for("25 Services served", lambda: served(cluster, 25))
    no_duplicates(after)
    assert {key: after[key] for key in assigned} == assigned, "the new leader moved an IP"
    wait_for("new leader's events", lambda: standby_id in reporters(cluster))
    standby.stop()


def test_clean_shutdown_hands_the_lease_over_at_once(cluster: Cluster, start_controller: StartController):
    kubectl = cluster.kubectl
    # A long lease: taking over on expiry would need 10 s, a release is seen at the next retry (0.3 s).
    lease = ("--lease-duration", "10", "--renew-deadline", "8")
    leader = start_controller("--identity", "replica-c", *lease)
    # This one finds the API server through KUBECONFIG alone.
    standby = start_controller(
        "--identity", "replica-d", *lease, wait_started=False, kubeconfig_from_env=True
    )
    wait_for("standby waiting", lambda: "event=leader_waiting" in standby.log())
    before = all_assigned(kubectl)
    leader.stop()  # SIGTERM: kopf's cleanup releases the Lease
    standby.wait_started()
    released = log_time(leader.log(), "event=leader_released")
    acquired = log_time(standby.log(), "event=leader_acquired")
    handover = (acquired - released).total_seconds()
    assert 0 <= handover < 5, f"released at {released}, acquired at {acquired}"
    apply(kubectl, service("after-handover"))
    after = wait_for("after-handover served", lambda: served(cluster, len(before) + 1))
    no_duplicates(after)
    assert {key: after[key] for key in before} == before


def test_leader_that_cannot_renew_stops_at_once(cluster: Cluster, start_controller: StartController):
    # Its own Lease and class, so that it does not compete with the replicas of the other tests.
    leader = start_controller(
        "--identity", "replica-e", "--lease-name", "steal-me", "--load-balancer-class", "example.com/steal"
    )
    # Someone else now holds the lease (as after a network partition that outlived the lease).
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    patch = {"spec": {"holderIdentity": "intruder", "renewTime": now, "leaseDurationSeconds": 60}}
    cluster.kubectl(
        "patch", "lease", "steal-me", "-n", "metallb-system", "--type=merge", "-p", json.dumps(patch)
    )
    assert leader.proc is not None
    lost_at = time.monotonic()
    assert leader.proc.wait(10) == 1
    # Renew deadline 2 s, retry period 0.3 s.
    assert time.monotonic() - lost_at < 5
    assert "event=leader_lost" in leader.log()
