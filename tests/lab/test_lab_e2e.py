"""The lab issue's Done-when, end to end (root): `python -m lab up` gives 3 nodes and a client; the tutorial's
nginx Deployment (2 replicas) and Service give 2 Ready pods with IPs, EndpointSlices listing them, and
`curl <podIP>:80` from every node answers with the pod's name; `python -m lab down` leaves nothing."""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab.runner import Lab
from lab.topology import load_topology
from tests.conftest import make_kubectl
from tests.controller.helpers import wait_for as poll_until
from tests.tutorial import NGINX_SVC

from .conftest import REPO, LabFactory, lab_cli, lab_leftovers, ns_run, topology_copy

pytestmark = pytest.mark.root

# The tutorial's 02_create_deployment_app_nginx_with_service.yaml, verbatim (odd indentation included).


def wait_for(what: str, probe: Any, timeout: float = 60.0) -> Any:
    """The shared poll (tests.controller.helpers), with this module's longer default for a whole lab."""
    return poll_until(what, probe, timeout, interval=0.3)


def test_tutorial_nginx_on_the_lab(tmp_path: Path, lab_factory: LabFactory):
    topo, prefix = topology_copy(tmp_path, "default")
    state_root = tmp_path / "state"
    lab = Lab(load_topology(topo), state_root=state_root)
    lab_factory.labs.append(lab)
    common = ["--topology", str(topo), "--state-root", str(state_root)]

    up = lab_cli("up", *common, "--timeout", "60")
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"kubeconfig: {lab.paths.kubeconfig}" in up.stdout
    kubectl = make_kubectl(lab.paths.kubeconfig)

    nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["node1", "node2", "node3"]
    for node in nodes:
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True"
        internal = {a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"}
        planned = lab.plan.node(node["metadata"]["name"])
        assert str(planned.ipv4.ip) in internal  # type: ignore[union-attr]

    manifest = tmp_path / "02_create_deployment_app_nginx_with_service.yaml"
    manifest.write_text(NGINX_SVC)
    kubectl("apply", "-f", str(manifest))

    def ready_pods() -> list[dict[str, Any]]:
        items = json.loads(kubectl("get", "pods", "-l", "app=nginx", "-o", "json").stdout)["items"]
        ready = [
            p for p in items
            if p["status"].get("podIP")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        ]  # fmt: skip
        return ready if len(ready) == 2 and len(items) == 2 else []

    pods = wait_for("2 Ready nginx pods", ready_pods)
    pod_ips = {p["status"]["podIP"]: p["metadata"]["name"] for p in pods}
    for ip, name in pod_ips.items():
        node = lab.plan.node(next(p["spec"]["nodeName"] for p in pods if p["metadata"]["name"] == name))
        assert node.pod_cidr is not None and ip in {str(h) for h in node.pod_cidr.hosts()}

    def slice_addresses() -> dict[str, dict[str, Any]]:
        selector = "kubernetes.io/service-name=nginx-svc"
        out = kubectl("get", "endpointslices", "-l", selector, "-o", "json").stdout
        found = {}
        for item in json.loads(out)["items"]:
            for endpoint in item.get("endpoints") or []:
                for address in endpoint["addresses"]:
                    found[address] = endpoint
        return found if set(found) >= set(pod_ips) else {}

    endpoints = wait_for("EndpointSlices listing both pods", slice_addresses)
    for ip, name in pod_ips.items():
        assert endpoints[ip]["conditions"]["ready"] is True
        assert endpoints[ip]["targetRef"]["name"] == name
        assert endpoints[ip]["nodeName"] in {"node1", "node2", "node3"}

    for node in lab.plan.k8s_nodes:
        for ip, name in pod_ips.items():
            result = ns_run(node.netns, "curl", "-sS", "--max-time", "5", f"http://{ip}:80/")
            assert result.returncode == 0, f"{node.name} -> {ip}: {result.stderr}"
            assert result.stdout.split()[0] == name, f"{node.name} -> {ip}: {result.stdout!r}"

    # The lab is dual-stack end to end: every pod has an address of each family, and so does a Service that
    # requires both.
    for pod in pods:
        families = [ipaddress.ip_address(entry["ip"]).version for entry in pod["status"]["podIPs"]]
        assert families == [4, 6], pod["status"]
    dual = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "nginx-dual"},
        "spec": {"ipFamilyPolicy": "RequireDualStack", "selector": {"app": "nginx"}, "ports": [{"port": 80}]},
    }
    kubectl("apply", "-f", "-", input=json.dumps(dual))
    cluster_ips = json.loads(kubectl("get", "svc", "nginx-dual", "-o", "json").stdout)["spec"]["clusterIPs"]
    assert [ipaddress.ip_address(ip).version for ip in cluster_ips] == [4, 6]

    # The kubernetes Service's endpoint is the API server on the mgmt gateway, reachable from every node, and
    # the lab's EndpointSlice controller leaves that selector-less slice alone.
    endpoints = json.loads(kubectl("get", "endpointslice", "kubernetes", "-o", "json").stdout)["endpoints"]
    assert [e["addresses"] for e in endpoints] == [[str(lab.plan.mgmt_gateway4.ip)]]

    # Inside a node, `exec` points kubectl at the API server through the mgmt gateway.
    get_pods = ["kubectl", "get", "pods", "-l", "app=nginx", "-o", "name"]
    inside = lab_cli("exec", "node2", *common, "--", *get_pods)
    assert inside.returncode == 0, inside.stderr
    assert sorted(inside.stdout.split()) == sorted(f"pod/{n}" for n in pod_ips.values())

    down = lab_cli("down", *common)
    assert down.returncode == 0, down.stderr
    assert lab_leftovers(lab) == []
    assert not any(prefix in line for line in Path("/proc/self/mounts").read_text().splitlines())


def test_sigterm_while_the_cluster_starts_tears_everything_down(tmp_path: Path, lab_factory: LabFactory):
    topo, _ = topology_copy(tmp_path, "mini")
    state_root = tmp_path / "state"
    lab = Lab(load_topology(topo), state_root=state_root)
    lab_factory.labs.append(lab)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "up", "--topology", str(topo), "--state-root", str(state_root)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # Interrupt once the API server runs, i.e. in the middle of starting the cluster.
        api_log = lab.paths.state_dir / "logs" / "apiserver.log"
        wait_for("the API server's log", api_log.exists, 30)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, out + err
        assert "interrupted; the lab was torn down" in err
        assert lab_leftovers(lab) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
