"""The controllers with kubelets on two netns nodes, driven by the tutorial's YAML via real kubectl (root)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import pods as podnet
from lab.apiserver.process import ApiServerProcess
from tests.lab.kubelet_fixtures import (
    NetnsLab,
    Proc,
    StartKubelet,
    curl_in,
    get_json,
    start_kubelet_fixture,  # noqa: F401  (fixture)
    test_lab_fixture,  # noqa: F401  (fixture)
    wait_for,
)
from tests.tutorial import NGINX_APP, NGINX_SVC, NS1

pytestmark = pytest.mark.root


@pytest.fixture
def start_controllers(apiserver: ApiServerProcess, tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    started: list[Proc] = []

    def start(*extra: str) -> Proc:
        cmd = [sys.executable, "-m", "lab.controllers", "--kubeconfig", str(apiserver.kubeconfig), *extra]
        proc = Proc(cmd, tmp_path / f"controllers-{len(started)}.log")
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            try:
                proc.stop()
            except AssertionError:
                pass


@pytest.fixture
def controllers(start_controllers: Callable[..., Proc]) -> Proc:
    return start_controllers()


def ready_pods(kubectl, count: int) -> list[dict[str, Any]] | None:
    pods = get_json(kubectl, "pods", "-l", "app=nginx")
    if not pods:
        return None
    items = [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]
    ready = [
        p for p in items
        if p.get("status", {}).get("podIP")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]  # fmt: skip
    return ready if len(items) == count and len(ready) == count else None


def slice_of(kubectl, service: str) -> list[dict[str, Any]]:
    slices = get_json(kubectl, "endpointslices", "-l", f"kubernetes.io/service-name={service}")
    return slices["items"] if slices else []


def slice_ips(kubectl, service: str) -> set[str]:
    return {
        e["addresses"][0]
        for s in slice_of(kubectl, service)
        for e in s.get("endpoints") or []
        if e["conditions"].get("ready")
    }


def endpoints_ips(kubectl, service: str) -> set[str]:
    ep = get_json(kubectl, "endpoints", service)
    if not ep:
        return set()
    return {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}


def test_tutorial_deployment_and_service(
    apiserver: ApiServerProcess, kubectl, test_lab: NetnsLab, start_kubelet: StartKubelet, controllers: Proc
) -> None:
    nodes = {n.name: n for n in (test_lab.add_node(1), test_lab.add_node(2))}
    for node in nodes.values():
        start_kubelet(node)
    wait_for("both nodes Ready", lambda: _ready_nodes(kubectl) == set(nodes))
    kubectl("apply", "-f", "-", input=NGINX_SVC)

    pods = wait_for("2 nginx pods Ready", lambda: ready_pods(kubectl, 2), timeout=30)
    template_hash = pods[0]["metadata"]["labels"]["pod-template-hash"]
    for pod in pods:
        assert re.fullmatch(rf"nginx-server1-{template_hash}-[a-z0-9]{{5}}", pod["metadata"]["name"])
        ref = pod["metadata"]["ownerReferences"][0]
        assert ref["kind"] == "Deployment" and ref["name"] == "nginx-server1" and ref["controller"] is True
    assert {p["spec"]["nodeName"] for p in pods} == {"node1", "node2"}, "replicas spread over both nodes"
    for pod in pods:
        answer = curl_in(nodes[pod["spec"]["nodeName"]].netns, f"http://{pod['status']['podIP']}:80")
        assert answer.startswith(pod["metadata"]["name"] + " "), answer
    pod_ips = {p["status"]["podIP"] for p in pods}

    deploy = wait_for(
        "deployment 2/2",
        lambda: (
            (d := get_json(kubectl, "deployment", "nginx-server1"))
            and d.get("status", {}).get("availableReplicas") == 2
            and d
        ),
    )
    status = deploy["status"]
    assert status["replicas"] == status["readyReplicas"] == status["updatedReplicas"] == 2
    assert status["observedGeneration"] == deploy["metadata"]["generation"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Available"] == "True"
    rollout = kubectl("rollout", "status", "deployment/nginx-server1", "--timeout=20s").stdout
    assert "successfully rolled out" in rollout, rollout
    table = kubectl("get", "deployment.apps").stdout
    assert re.search(r"nginx-server1\s+2/2\s+2\s+2", table), table

    wait_for("slice lists both pods", lambda: slice_ips(kubectl, "nginx-svc") == pod_ips)
    [es] = slice_of(kubectl, "nginx-svc")
    assert es["addressType"] == "IPv4"
    managed_by = es["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"]
    assert managed_by == "endpointslice-controller.k8s.io"
    assert es["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert es["ports"] == [{"name": "", "port": 80, "protocol": "TCP"}]
    for endpoint in es["endpoints"]:
        assert endpoint["conditions"] == {"ready": True, "serving": True, "terminating": False}
        assert endpoint["nodeName"] in nodes and endpoint["targetRef"]["kind"] == "Pod"
    wait_for("Endpoints list both pods", lambda: endpoints_ips(kubectl, "nginx-svc") == pod_ips)
    eps = kubectl("get", "endpoints", "nginx-svc").stdout
    assert all(f"{ip}:80" in eps for ip in pod_ips), eps

    # kubectl expose, as in the tutorial, gets its own endpoints too.
    kubectl("expose", "deployment.apps", "nginx-server1", "--type=ClusterIP", "--target-port=80", "--port=80")
    wait_for("exposed Service's slice", lambda: slice_ips(kubectl, "nginx-server1") == pod_ips)

    # A deleted pod is replaced (the tutorial's namespace section relies on it).
    victim = pods[0]["metadata"]["name"]
    kubectl("delete", "pod", victim)

    def replaced_pod() -> list[dict[str, Any]] | None:
        current = ready_pods(kubectl, 2)
        return current if current and victim not in {p["metadata"]["name"] for p in current} else None

    pods = wait_for("deleted pod replaced", replaced_pod, timeout=30)
    pod_ips = {p["status"]["podIP"] for p in pods}
    wait_for("slice follows the replacement", lambda: slice_ips(kubectl, "nginx-svc") == pod_ips)

    kubectl("scale", "deployment", "nginx-server1", "--replicas=3")
    three = wait_for("3 pods Ready", lambda: ready_pods(kubectl, 3), timeout=30)
    three_ips = {p["status"]["podIP"] for p in three}
    assert pod_ips < three_ips
    wait_for("slice lists 3", lambda: slice_ips(kubectl, "nginx-svc") == three_ips)
    wait_for("Endpoints list 3", lambda: endpoints_ips(kubectl, "nginx-svc") == three_ips)

    kubectl("scale", "deployment", "nginx-server1", "--replicas=1")
    one = wait_for("1 pod left", lambda: ready_pods(kubectl, 1), timeout=30)
    wait_for("slice lists 1", lambda: slice_ips(kubectl, "nginx-svc") == {one[0]["status"]["podIP"]})
    wait_for("Endpoints list 1", lambda: endpoints_ips(kubectl, "nginx-svc") == {one[0]["status"]["podIP"]})
    wait_for(
        "deployment 1/1",
        lambda: (d := get_json(kubectl, "deployment", "nginx-server1")) and d["status"].get("replicas") == 1,
    )

    # A template change replaces the pod with one of the new template.
    kubectl("set", "image", "deployment/nginx-server1", "nginx-smart=nginx:1.16-alpine")

    def replaced() -> list[dict[str, Any]] | None:
        current = ready_pods(kubectl, 1)
        if current and current[0]["metadata"]["labels"]["pod-template-hash"] != template_hash:
            return current
        return None

    [new_pod] = wait_for("pod of the new template", replaced, timeout=30)
    assert new_pod["spec"]["containers"][0]["image"] == "nginx:1.16-alpine"
    wait_for("slice follows", lambda: slice_ips(kubectl, "nginx-svc") == {new_pod["status"]["podIP"]})

    # A bare pod (kubectl run) gets a node from the binder and runs there.
    kubectl("run", "bare", "--image=busybox", "--port=8080", "--labels=app=bare")

    def bare_running() -> dict[str, Any] | None:
        pod = get_json(kubectl, "pod", "bare")
        ok = pod and pod["spec"].get("nodeName") in nodes and pod.get("status", {}).get("phase") == "Running"
        return pod if ok else None

    bare = wait_for("bare pod bound and Running", bare_running, timeout=30)
    answer = curl_in(nodes[bare["spec"]["nodeName"]].netns, f"http://{bare['status']['podIP']}:8080/")
    assert answer.startswith("bare "), answer
    events = get_json(kubectl, "events", "--field-selector", "involvedObject.name=bare")
    assert any(e["reason"] == "Scheduled" for e in events["items"]), events
    kubectl("delete", "pod", "bare")

    kubectl("delete", "service", "nginx-svc")
    wait_for("slices deleted with the Service", lambda: not slice_of(kubectl, "nginx-svc"))
    wait_for("Endpoints gone with the Service", lambda: get_json(kubectl, "endpoints", "nginx-svc") is None)
    kubectl("delete", "deployment", "nginx-server1")
    wait_for("pods deleted with the Deployment", lambda: ready_pods(kubectl, 0) is not None)
    wait_for("pod netns gone", lambda: not _pod_netns(test_lab))
    assert "Traceback" not in controllers.text(), controllers.text()


def _ready_nodes(kubectl) -> set[str]:
    listing = get_json(kubectl, "nodes")
    return {
        n["metadata"]["name"]
        for n in (listing or {}).get("items", [])
        for c in n.get("status", {}).get("conditions", [])
        if c["type"] == "Ready" and c["status"] == "True"
    }


def _pod_netns(test_lab: NetnsLab) -> list[str]:
    return podnet.list_netns(f"{test_lab.prefix}-p-")


def test_silent_kubelet_makes_node_unreachable_and_its_endpoints_not_ready(
    apiserver: ApiServerProcess, kubectl, test_lab: NetnsLab, start_kubelet: StartKubelet, start_controllers
) -> None:
    node = test_lab.add_node(4)
    kubelet = start_kubelet(node, "--heartbeat-interval", "0.5")
    controllers = start_controllers("--node-monitor-grace-period", "3")
    wait_for("node Ready", lambda: _ready_nodes(kubectl) == {"node4"})
    kubectl("apply", "-f", "-", input=NGINX_SVC.replace("replicas: 2", "replicas: 1"))
    [pod] = wait_for("pod Ready", lambda: ready_pods(kubectl, 1), timeout=30)
    ip = pod["status"]["podIP"]
    wait_for("ready endpoint", lambda: slice_ips(kubectl, "nginx-svc") == {ip})

    kubelet.kill()  # the node goes silent (its pods keep running, as on a real partitioned node)

    def unreachable() -> dict[str, Any] | None:
        current = get_json(kubectl, "node", "node4")
        conds = {c["type"]: c for c in current["status"]["conditions"]}
        taints = {t["key"] for t in current["spec"].get("taints") or []}
        ok = conds["Ready"]["status"] == "Unknown" and "node.kubernetes.io/unreachable" in taints
        return current if ok else None

    wait_for("node Unknown and tainted", unreachable, timeout=15)
    wait_for("endpoint not ready", lambda: slice_ips(kubectl, "nginx-svc") == set())
    [es] = slice_of(kubectl, "nginx-svc")
    assert es["endpoints"][0]["conditions"]["ready"] is False
    wait_for("Endpoints moved it to notReadyAddresses", lambda: endpoints_ips(kubectl, "nginx-svc") == set())

    start_kubelet(node, "--heartbeat-interval", "0.5")  # back: adopts its pod, reports Ready again
    wait_for("node Ready again", lambda: _ready_nodes(kubectl) == {"node4"}, timeout=15)
    wait_for(
        "taint removed",
        lambda: not (get_json(kubectl, "node", "node4")["spec"].get("taints") or []),
    )
    wait_for("endpoint ready again", lambda: slice_ips(kubectl, "nginx-svc") == {ip}, timeout=15)
    assert "node_unreachable" in controllers.text() and "Traceback" not in controllers.text()


def test_tutorial_nodeport_headless_and_externalname(
    apiserver: ApiServerProcess, kubectl, test_lab: NetnsLab, start_kubelet: StartKubelet, controllers: Proc
) -> None:
    node = test_lab.add_node(5)
    start_kubelet(node)
    wait_for("node Ready", lambda: _ready_nodes(kubectl) == {"node5"})
    kubectl("apply", "-f", "-", input=NGINX_APP + "\n---\n" + NS1)

    app = wait_for("nginx-app pods", lambda: _ready_in(kubectl, "default", "app=nginx-app", 2), timeout=30)
    app_ips = {p["status"]["podIP"] for p in app}
    wait_for("NodePort Service endpoints", lambda: endpoints_ips(kubectl, "nginx-app") == app_ips)
    eps = kubectl("get", "endpoints", "nginx-app").stdout
    assert all(f"{ip}:80" in eps for ip in app_ips), eps  # targetPort, not the Service port 8060
    assert re.search(r"nginx-app\s+2/2\s+2\s+2", kubectl("get", "deployment.apps").stdout)

    [ns1_pod] = wait_for("ns1 pod", lambda: _ready_in(kubectl, "ns1", "app=nginx", 1), timeout=30)
    assert ns1_pod["metadata"]["name"].startswith("deploy-nginx-")

    def headless_slice() -> dict[str, Any] | None:
        listing = get_json(kubectl, "endpointslices", "-n", "ns1", "-l", "kubernetes.io/service-name=svc1")
        items = (listing or {}).get("items") or []
        ready = [e for s in items for e in s.get("endpoints") or [] if e["conditions"]["ready"]]
        return items[0] if len(items) == 1 and len(ready) == 1 else None

    es = wait_for("headless slice in ns1", headless_slice)
    assert es["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert es["endpoints"][0]["addresses"] == [ns1_pod["status"]["podIP"]]
    # Namespaces stay apart: the default namespace's app=nginx-app pods are not in ns1's slice and vice versa.
    assert ns1_pod["status"]["podIP"] not in app_ips
    selector = "kubernetes.io/service-name=external-svc1"
    external = get_json(kubectl, "endpointslices", "-n", "ns1", "-l", selector)
    assert external is not None and external["items"] == []
    assert get_json(kubectl, "endpoints", "-n", "ns1", "external-svc1") is None
    assert "Traceback" not in controllers.text(), controllers.text()


def _ready_in(kubectl, namespace: str, selector: str, count: int) -> list[dict[str, Any]] | None:
    pods = get_json(kubectl, "pods", "-n", namespace, "-l", selector)
    items = (pods or {}).get("items") or []
    ready = [
        p for p in items
        if p.get("status", {}).get("podIP")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]  # fmt: skip
    return ready if len(items) == count and len(ready) == count else None
