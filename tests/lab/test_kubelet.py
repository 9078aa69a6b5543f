"""The lab kubelet against the real API server and real network namespaces (root)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from lab import pods as podnet
from lab.apiserver.process import ApiServerProcess
from tests.lab.kubelet_fixtures import (
    NetnsLab,
    StartKubelet,
    curl_in,
    get_json,
    sh,
    start_kubelet_fixture,  # noqa: F401  (fixture)
    test_lab_fixture,  # noqa: F401  (fixture)
    wait_for,
)

pytestmark = pytest.mark.root

POD = """
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: echo}}
spec:
  nodeName: {node}
  containers:
  - name: c1
    image: nginx:1.15-alpine
    ports:
{ports}
"""


def pod_yaml(name: str, node: str = "node1", ports: str = "    - containerPort: 80") -> str:
    return POD.format(name=name, node=node, ports=ports)


def running_pod(kubectl, name: str) -> dict[str, Any] | None:
    pod: dict[str, Any] | None = get_json(kubectl, "pod", name)
    if not pod or pod.get("status", {}).get("phase") != "Running":
        return None
    ready = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    if ready.get("Ready") != "True" or not pod["status"].get("podIP"):
        return None
    return pod


def test_node_registration_and_pod_lifecycle(
    apiserver: ApiServerProcess, kubectl, test_lab: NetnsLab, start_kubelet: StartKubelet
) -> None:
    node = test_lab.add_node(1)
    kubelet = start_kubelet(node)

    registered = wait_for("node Ready", lambda: _ready_node(kubectl, "node1"))
    labels = registered["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "node1"
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"]
    assert labels["ironlb.io/test"] == test_lab.prefix
    assert registered["spec"]["podCIDR"] == "10.244.1.0/24"
    assert registered["spec"]["podCIDRs"] == ["10.244.1.0/24", "fd00:244:1::/64"]
    addresses = {(a["type"], a["address"]) for a in registered["status"]["addresses"]}
    assert addresses == {
        ("InternalIP", "192.168.10.11"),
        ("InternalIP", "fd00:10::11"),
        ("Hostname", "node1"),
    }
    assert registered["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.")
    lease = wait_for("lease", lambda: get_json(kubectl, "lease", "-n", "kube-node-lease", "node1"))
    assert lease["spec"]["holderIdentity"] == "node1" and lease["spec"]["renewTime"]

    two_ports = "    - containerPort: 80\n    - containerPort: 8080"
    kubectl("create", "--validate=false", "-f", "-", input=pod_yaml("web1", ports=two_ports))
    pod = wait_for("web1 Running and Ready", lambda: running_pod(kubectl, "web1"))
    status = pod["status"]
    ip4, ip6 = (entry["ip"] for entry in status["podIPs"])
    assert ip4 == status["podIP"] and ip4.startswith("10.244.1.") and ip6.startswith("fd00:244:1::")
    assert status["hostIP"] == "192.168.10.11"
    assert [h["ip"] for h in status["hostIPs"]] == ["192.168.10.11", "fd00:10::11"]
    assert {c["type"] for c in status["conditions"] if c["status"] == "True"} >= {
        "PodScheduled", "Initialized", "ContainersReady", "Ready",
    }  # fmt: skip
    [container] = status["containerStatuses"]
    assert container["ready"] is True and container["restartCount"] == 0 and container["started"] is True
    assert "running" in container["state"] and container["image"] == "nginx:1.15-alpine"

    # The pod answers from the node netns with its name, on both ports and over IPv6.
    for url in (f"http://{ip4}:80/", f"http://{ip4}:8080/", f"http://[{ip6}]:80/"):
        body = curl_in(node.netns, url)
        assert body.startswith("web1 "), f"{url} -> {body!r}"
    assert (
        curl_in(node.netns, f"http://{ip4}/").split(" ")[1].startswith("10.244.1.1:")
    )  # node's bridge address

    table = kubectl("get", "pods", "-o", "wide").stdout
    # A pod marked for deletion (held by a finalizer) is torn down by the kubelet, which confirms the delete.
    kubectl("create", "--validate=false", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "held", "finalizers": ["ironlb.io/test"]},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]},
    }))  # fmt: skip
    wait_for("held Running", lambda: running_pod(kubectl, "held"))
    assert len(podnet.list_netns(f"{test_lab.prefix}-p-node1-")) == 2
    kubectl("delete", "pod", "held", "--wait=false")
    wait_for("held torn down", lambda: len(podnet.list_netns(f"{test_lab.prefix}-p-node1-")) == 1)
    held = get_json(kubectl, "pod", "held")
    assert held is not None and held["metadata"].get("deletionTimestamp")
    kubectl("patch", "pod", "held", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    wait_for("held gone", lambda: get_json(kubectl, "pod", "held") is None)

    netns = podnet.list_netns(f"{test_lab.prefix}-p-node1-")
    assert len(netns) == 1
    kubectl("delete", "pod", "web1", "--wait=true", "--timeout=20s")
    wait_for("netns removed", lambda: not podnet.list_netns(f"{test_lab.prefix}-p-node1-"))
    assert curl_in(node.netns, f"http://{ip4}/") == ""
    assert not podnet.processes_with(netns[0])

    assert kubelet.stop() == 0
    assert "Traceback" not in kubelet.text(), kubelet.text()
    # kubectl's table (served by the API server) shows what the kubelet reported.
    assert "web1" in table and "1/1" in table and "Running" in table and ip4 in table, table


def _ready_node(kubectl, name: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = get_json(kubectl, "node", name)
    if not node:
        return None
    conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
    return node if conditions.get("Ready") == "True" else None


def test_udp_ports_restart_and_bad_specs(
    apiserver: ApiServerProcess, kubectl, test_lab: NetnsLab, start_kubelet: StartKubelet
) -> None:
    node = test_lab.add_node(2)
    kubelet = start_kubelet(node)
    wait_for("node Ready", lambda: _ready_node(kubectl, "node2"))
    ports = "    - containerPort: 5353\n      protocol: UDP\n    - containerPort: 9000"
    kubectl("create", "--validate=false", "-f", "-", input=pod_yaml("dns", node="node2", ports=ports))
    pod = wait_for("dns Running", lambda: running_pod(kubectl, "dns"))
    ip4 = pod["status"]["podIP"]
    udp = sh(
        "ip", "netns", "exec", node.netns, sys.executable, "-c",
        "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(3);"
        f"s.sendto(b'q',('{ip4}',5353));print(s.recv(100).decode(),end='')",
    ).stdout  # fmt: skip
    assert udp.startswith("dns 10.244.2.1:")
    assert curl_in(node.netns, f"http://{ip4}:9000/").startswith("dns ")

    # Kill the echo server: the kubelet restarts it and counts the restart.
    netns = podnet.list_netns(f"{test_lab.prefix}-p-node2-")[0]
    [pid] = podnet.processes_with(f"--pod-netns {netns}")
    os.kill(pid, signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        current = running_pod(kubectl, "dns")
        if not current or current["status"]["containerStatuses"][0]["restartCount"] != 1:
            return None
        return current

    after = wait_for("restartCount 1", restarted)
    last = after["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 137
    assert after["status"]["podIP"] == ip4
    wait_for("echo answers again", lambda: curl_in(node.netns, f"http://{ip4}:9000/").startswith("dns "))

    # Bad specs give an Event and a waiting container, and the kubelet keeps going. (A real API server rejects
    # port 70000 itself; if ours lets it through, the kubelet must catch it.)
    bad_yaml = pod_yaml("badport", node="node2", ports="    - containerPort: 70000")
    badport = kubectl("create", "--validate=false", "-f", "-", input=bad_yaml, check=False)
    kubectl("create", "--validate=false", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hostnet"},
        "spec": {"nodeName": "node2", "hostNetwork": True, "containers": [{"name": "c", "image": "x"}]},
    }))  # fmt: skip

    def failed_event(name: str, text: str) -> bool:
        events = get_json(kubectl, "events", "--field-selector", f"involvedObject.name={name}")
        return bool(events and any(text in e.get("message", "") for e in events["items"]))

    wait_for("Warning event for hostnet", lambda: failed_event("hostnet", "spec.hostNetwork"))
    bad = get_json(kubectl, "pod", "hostnet")
    waiting = bad["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "CreateContainerConfigError" and "spec.hostNetwork" in waiting["message"]
    assert bad["status"]["phase"] == "Pending"
    if badport.returncode == 0:
        wait_for("Warning event for badport", lambda: failed_event("badport", "containerPort: 70000"))
    else:
        assert "70000" in badport.stderr
    assert running_pod(kubectl, "dns") is not None
    assert "bad_pod_spec" in kubelet.text()

    assert kubelet.stop() == 0
    assert not podnet.list_netns(f"{test_lab.prefix}-p-"), "SIGTERM must tear every pod down"
    assert not podnet.processes_with(f"--pod-netns {test_lab.prefix}")


def test_restart_adopts_running_pods_and_cleans_stale_ones(
    apiserver: ApiServerProcess, kubectl, test_lab: NetnsLab, start_kubelet: StartKubelet, tmp_path: Path
) -> None:
    node = test_lab.add_node(3)
    first = start_kubelet(node)
    wait_for("node Ready", lambda: _ready_node(kubectl, "node3"))
    for name in ("keep", "gone"):
        kubectl("create", "--validate=false", "-f", "-", input=pod_yaml(name, node="node3"))
    keep = wait_for("keep Running", lambda: running_pod(kubectl, "keep"))
    wait_for("gone Running", lambda: running_pod(kubectl, "gone"))
    keep_pid = podnet.processes_with("--name keep ")
    assert len(keep_pid) == 1

    first.kill()  # SIGKILL: no cleanup, pods keep running
    kubectl("delete", "pod", "gone", "--wait=false")
    second = start_kubelet(node)
    wait_for("gone cleaned up", lambda: len(podnet.list_netns(f"{test_lab.prefix}-p-node3-")) == 1)
    # `keep` was adopted: same process, same IP, still answering.
    assert podnet.processes_with("--name keep ") == keep_pid
    assert curl_in(node.netns, f"http://{keep['status']['podIP']}/").startswith("keep ")
    wait_for("adopted log", lambda: "pod_adopted" in second.text())
    assert second.stop() == 0
    assert not podnet.list_netns(f"{test_lab.prefix}-p-")
