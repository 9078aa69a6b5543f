"""The kubelet's pure side: ports a pod asks for, kernel object names, pod and node statuses."""

from __future__ import annotations

from typing import Any

import pytest

from lab import podspec
from lab.ipam import PodAddresses


def pod(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "default", "uid": "u-1"},
        "spec": {"containers": containers, **spec},
    }


def test_ports_union_dedupe_and_default() -> None:
    first = {"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]}
    second = {
        "name": "b",
        "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 9, "protocol": "SCTP"}],
    }
    ports = podspec.pod_ports(pod([first, second]))
    assert (ports.tcp, ports.udp) == ((80,), (53,))
    assert ports.warnings == (
        "spec.containers[1].ports[1].protocol: SCTP is not served by the lab echo server",
    )
    assert podspec.pod_ports(pod([{"name": "a"}])).tcp == (80,)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (pod([{"name": "a", "ports": [{"containerPort": 0}]}]), "spec.containers[0].ports[0].containerPort"),
        (
            pod([{"name": "a", "ports": [{"containerPort": "80"}]}]),
            "spec.containers[0].ports[0].containerPort",
        ),
        (pod([{"name": "a", "ports": "80"}]), "spec.containers[0].ports"),
        (pod([]), "spec.containers"),
        (pod([{"name": "a"}], hostNetwork=True), "spec.hostNetwork"),
    ],
)
def test_bad_specs_name_the_field(bad: dict[str, Any], field: str) -> None:
    with pytest.raises(podspec.PodSpecError, match=field.replace("[", r"\[").replace("]", r"\]")):
        podspec.pod_ports(bad)


def test_names_carry_prefix_and_fit_ifnamsiz() -> None:
    assert podspec.pod_netns("ilb", "node1", "uid").startswith("ilb-p-node1-")
    assert podspec.pod_netns("ilb", "node1", "uid").startswith(podspec.netns_prefix("ilb", "node1"))
    veth = podspec.host_veth("ilbt-ab12", "uid")
    assert len(veth) == 15 and veth.startswith("ilbt-ab12-")
    assert podspec.host_veth("ilb", "uid-1") != podspec.host_veth("ilb", "uid-2")
    with pytest.raises(podspec.PodSpecError, match="too long"):
        podspec.host_veth("a-very-long-lab", "uid")


def test_running_status_like_a_kubelet() -> None:
    addresses = PodAddresses("10.244.1.2", "fd00:244:1::2", 24, 64)
    state = podspec.RunState(addresses, "2026-01-01T00:00:00Z", ready=True)
    p = pod([{"name": "c1", "image": "nginx:1.15-alpine"}])
    status = podspec.pod_status(p, state, ["192.168.10.11", "fd00:10::11"], "2026-01-01T00:00:01Z")
    assert status["phase"] == "Running"
    assert status["podIP"] == "10.244.1.2"
    assert status["podIPs"] == [{"ip": "10.244.1.2"}, {"ip": "fd00:244:1::2"}]
    assert status["hostIP"] == "192.168.10.11" and len(status["hostIPs"]) == 2
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
        "ContainersReady": "True", "PodScheduled": "True",
    }  # fmt: skip
    [cs] = status["containerStatuses"]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
    assert cs["state"] == {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    assert cs["containerID"].startswith("ironlb-lab://") and status["qosClass"] == "BestEffort"
    # Same state later: nothing to write.
    again = podspec.pod_status({**p, "status": status}, state, ["192.168.10.11"], "2026-01-01T00:09:00Z")
    assert not podspec.status_differs(
        status, {**again, "hostIPs": status["hostIPs"], "hostIP": status["hostIP"]}
    )
    assert again["conditions"][2]["lastTransitionTime"] == "2026-01-01T00:00:01Z"
    # A restart shows in the count and lastState.
    restarted = podspec.RunState(addresses, "2026-01-01T00:10:00Z", True, restarts=1, last_exit_code=137)
    after = podspec.pod_status(p, restarted, ["192.168.10.11"], "2026-01-01T00:10:00Z")
    assert after["containerStatuses"][0]["restartCount"] == 1
    assert after["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 137
    assert podspec.status_differs(status, after)


def test_crash_loop_keeps_phase_running_but_not_ready() -> None:
    addresses = PodAddresses("10.244.1.2", None, 24, None)
    state = podspec.RunState(
        addresses, "T0", False, restarts=2, last_exit_code=1, waiting_reason="CrashLoopBackOff"
    )
    status = podspec.pod_status(pod([{"name": "c", "image": "i"}]), state, ["10.0.0.1"], "T1")
    assert status["phase"] == "Running" and status["podIP"] == "10.244.1.2"
    [cs] = status["containerStatuses"]
    assert cs["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}
    assert not cs["ready"] and not cs["started"]
    assert cs["lastState"]["terminated"]["reason"] == "Error"


def test_waiting_status_for_a_bad_spec() -> None:
    state = podspec.RunState(
        None, None, False, waiting_reason="CreateContainerConfigError", waiting_message="x"
    )
    status = podspec.pod_status(
        pod([{"name": "c", "image": "i"}]), state, ["10.0.0.1"], "2026-01-01T00:00:00Z"
    )
    assert status["phase"] == "Pending" and "podIP" not in status
    assert status["containerStatuses"][0]["state"] == {
        "waiting": {"reason": "CreateContainerConfigError", "message": "x"}
    }
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "False"


def test_qos_classes() -> None:
    assert podspec.qos_class(pod([{"name": "a", "resources": {"requests": {"cpu": "1"}}}])) == "Burstable"
    limits = {"cpu": "1", "memory": "1Gi"}
    assert podspec.qos_class(pod([{"name": "a", "resources": {"limits": limits}}])) == "Guaranteed"


def test_node_object_and_status() -> None:
    node = podspec.node_object(
        "node1", {"ironlb.io/role": "k8s-node"}, ["10.244.1.0/24", "fd00:244:1::/64"], "amd64"
    )
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "node1" and labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] == "amd64" and labels["ironlb.io/role"] == "k8s-node"
    assert node["spec"] == {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:244:1::/64"]}
    status = podspec.node_status(
        "node1", ["192.168.10.11", "fd00:10::11"], None, "T1", {"kernelVersion": "6.1"}
    )
    assert status["addresses"] == [
        {"type": "InternalIP", "address": "192.168.10.11"},
        {"type": "InternalIP", "address": "fd00:10::11"},
        {"type": "Hostname", "address": "node1"},
    ]
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
    assert (
        status["nodeInfo"]["kubeletVersion"].startswith("v1.")
        and status["nodeInfo"]["kernelVersion"] == "6.1"
    )
    later = podspec.node_status("node1", ["192.168.10.11"], status, "T2", {})
    later_ready = {c["type"]: c for c in later["conditions"]}["Ready"]
    assert later_ready["lastHeartbeatTime"] == "T2" and later_ready["lastTransitionTime"] == "T1"
    stopping = podspec.node_status("node1", [], later, "T3", {}, ready=False)
    assert {c["type"]: c for c in stopping["conditions"]}["Ready"]["lastTransitionTime"] == "T3"
    # A condition the kubelet does not own (the network plugin's) survives its heartbeats.
    unavailable = {"type": "NetworkUnavailable", "status": "True", "reason": "NoRouteCreated"}
    marked = {**later, "conditions": [*later["conditions"], unavailable]}
    again = podspec.node_status("node1", ["192.168.10.11"], marked, "T4", {})
    assert {c["type"]: c for c in again["conditions"]}["NetworkUnavailable"] == unavailable
    assert [c["type"] for c in again["conditions"]].count("Ready") == 1


def test_parse_labels() -> None:
    assert podspec.parse_labels("a=1, b=x=y,,c=") == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(ValueError, match="'oops' is not key=value"):
        podspec.parse_labels("a=1,oops")


def test_readiness_gates_hold_ready_until_their_condition_is_true() -> None:
    state = podspec.RunState(PodAddresses("10.244.1.5", None, 24, None), "T0", True)
    gated = pod([{"name": "c", "image": "i"}], readinessGates=[{"conditionType": "example.com/switch"}])
    status = podspec.pod_status(gated, state, ["10.0.0.1"], "T1")
    ready = {c["type"]: c for c in status["conditions"]}
    assert ready["Ready"]["status"] == "False" and ready["Ready"]["reason"] == "ReadinessGatesNotReady"
    assert ready["ContainersReady"]["status"] == "True"
    # Whoever owns the gate sets its condition; the kubelet keeps it and turns Ready on.
    gate = {"type": "example.com/switch", "status": "True"}
    opened = {**gated, "status": {**status, "conditions": [*status["conditions"], gate]}}
    again = podspec.pod_status(opened, state, ["10.0.0.1"], "T2")
    conditions = {c["type"]: c for c in again["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["example.com/switch"]["status"] == "True"


@pytest.mark.parametrize(
    ("lifecycle", "grace", "seconds"),
    [
        ({"preStop": {"sleep": {"seconds": 5}}}, None, 5.0),
        ({"preStop": {"exec": {"command": ["sleep", "7"]}}}, None, 7.0),
        ({"preStop": {"sleep": {"seconds": 60}}}, 10, 10.0),
        ({"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 5"]}}}, None, 0.0),
        (None, None, 0.0),
    ],
)
def test_prestop_seconds(lifecycle: Any, grace: int | None, seconds: float) -> None:
    container: dict[str, Any] = {"name": "c"}
    if lifecycle is not None:
        container["lifecycle"] = lifecycle
    body = pod([container])
    if grace is not None:
        body["metadata"]["deletionGracePeriodSeconds"] = grace
    assert podspec.prestop_seconds(body) == seconds
