"""ironlb installed by its manifests into an RBAC-enforcing lab (root), with no component started by hand.

`kubectl apply -k lab/manifests` (config/ plus the dataplane component) is all this test does to install
ironlb; the lab's DaemonSet and Deployment controllers and kubelets run the controller, the speakers and the
dataplanes with their own service accounts, RBAC, probes, args and capabilities. Then the tutorial's
LoadBalancer Service must answer the client on its EXTERNAL-IP.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_kubectl
from tests.controller.helpers import wait_for as poll_until
from tests.lab.conftest import LabFactory, lab_factory, ns_run

__all__ = ["lab_factory"]

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "examples" / "tutorial"

pytestmark = [pytest.mark.root, pytest.mark.timeout(240)]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """The shared poll (tests.controller.helpers), with this module's longer default for a whole lab."""
    return poll_until(what, check, timeout, interval=0.3)


def test_the_manifests_run_ironlb_and_the_external_ip_answers(lab_factory: LabFactory) -> None:
    lab = lab_factory.up("default", network_only=False)
    kubectl = make_kubectl(lab.paths.kubeconfig)

    def pods(namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(
            kubectl("get", "pods", "-n", namespace, "-o", "json").stdout
        )["items"]
        return items

    def logs_on_failure() -> str:
        listing = kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout
        events = kubectl("get", "events", "-A", check=False).stdout[-3000:]
        return f"{listing}\n{events}"

    # What docs/migration.md has a cluster without kube-proxy do: the API server's real address for the
    # dataplane (its DaemonSet reads this ConfigMap, optional, over the kubelet's Service variables).
    endpoint = json.loads(kubectl("get", "endpointslice", "kubernetes", "-n", "default", "-o", "json").stdout)
    kubectl(
        "create",
        "configmap",
        "-n",
        "kube-system",
        "kubernetes-services-endpoint",
        f"--from-literal=KUBERNETES_SERVICE_HOST={endpoint['endpoints'][0]['addresses'][0]}",
        f"--from-literal=KUBERNETES_SERVICE_PORT={endpoint['ports'][0]['port']}",
    )
    kubectl("apply", "-k", str(REPO / "lab" / "manifests"))
    # Until its memberlist Secret exists, a speaker waits for its volume, and says why.
    wait_for(
        "the speakers waiting for the memberlist Secret",
        lambda: "FailedMount" in kubectl("get", "events", "-n", "ironlb-speaker").stdout,
    )
    waiting = pods("ironlb-speaker")[0]["status"]["containerStatuses"][0]["state"]
    assert waiting["waiting"]["reason"] == "ContainerCreating", waiting
    kubectl(
        "create",
        "secret",
        "generic",
        "-n",
        "ironlb-speaker",
        "memberlist",
        "--from-literal=secretkey=lab-key",
    )
    # A crashing ironlb pod shows it, and its logs say why (a speaker with no node name).
    kubectl("run", "crasher", "--image=ironlb:0.1.0", "--command", "--", "python", "-m", "speaker")

    for namespace, kind in (
        ("metallb-system", "deployment/ironlb-controller"),
        ("ironlb-speaker", "daemonset/ironlb-speaker"),
        ("kube-system", "daemonset/ironlb-dataplane"),
    ):
        done = kubectl("rollout", "status", "-n", namespace, kind, "--timeout=120s", check=False)
        assert done.returncode == 0, done.stdout + done.stderr + logs_on_failure()
    controllers, speakers, dataplanes = pods("metallb-system"), pods("ironlb-speaker"), pods("kube-system")
    assert len(controllers) == 2 and len(speakers) == 3 and len(dataplanes) == 3, logs_on_failure()
    host_ips = {"192.168.10.11", "192.168.10.12", "192.168.10.13"}
    assert {p["status"]["podIP"] for p in speakers} == host_ips  # hostNetwork: the node's own address
    assert all(p["status"]["podIP"].startswith("10.244.") for p in controllers)  # the pod network

    # They act with their service accounts: the speakers' Leases, the controller's Lease held by a pod.
    assert len(kubectl("get", "leases", "-n", "ironlb-speaker", "-o", "name").stdout.split()) == 3
    holder = wait_for(
        "the controller's leader",
        lambda: kubectl(
            "get", "lease", "-n", "metallb-system", "ironlb-controller",
            "-o", "jsonpath={.spec.holderIdentity}", check=False,
        ).stdout,
    )  # fmt: skip
    assert holder in {p["metadata"]["name"] for p in controllers}

    kubectl("apply", "-f", str(TUTORIAL / "metallb-config.yaml"), "-f", str(TUTORIAL / "nginx-metallb.yaml"))
    wait_for(
        "the EXTERNAL-IP",
        lambda: (
            kubectl(
                "get", "svc", "nginx-metallb", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"
            ).stdout
            == "192.168.10.90"
        ),
    )
    client = lab.plan.node("client").netns

    def curl() -> str:
        result = ns_run(client, "curl", "-s", "-m", "2", "http://192.168.10.90:8090/")
        return result.stdout if result.returncode == 0 else ""

    answer = wait_for("the client's curl to 192.168.10.90:8090", curl, timeout=60)
    assert re.fullmatch(r"nginx-metallb-\S+ 192\.168\.10\.1[123]:\d+\n", answer), answer

    # `kubectl logs` for the components and the crash of the bad one.
    assert "event=started" in kubectl("logs", "-n", "ironlb-speaker", speakers[0]["metadata"]["name"]).stdout
    crashed = wait_for(
        "the crasher's restart",
        lambda: [p for p in pods("default") if p["status"]["containerStatuses"][0]["restartCount"] >= 1],
    )[0]
    # Between two runs (the back-off), `kubectl get pods` shows it waiting, with its restarts.
    wait_for(
        "crasher in CrashLoopBackOff",
        lambda: re.search(r"crasher +0/1 +CrashLoopBackOff +[1-9]", kubectl("get", "pod", "crasher").stdout),
    )
    assert crashed["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 2
    previous = kubectl("logs", "crasher", "--previous").stdout
    assert "--node is required" in previous, previous
