"""The dataplane runs with exactly the RBAC config/dataplane ships, and nothing else (root).

Inside a scratch network namespace (the dataplane never runs in the host's): an API server enforcing RBAC
that knows the dataplane's service account by a static token, the shipped RBAC applied as it is, a Service
with endpoints, and the dataplane authenticated by that token: it syncs the Service without one 403. With the
EndpointSlice rule removed, the same check sees the 403, so it can fail.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.apiserver.process import ApiServerProcess
from tests.conftest import make_kubectl
from tests.dataplane.conftest import REPO
from tests.dataplane.netns import in_netns, scratch_netns

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

SHIPPED = REPO / "config" / "dataplane" / "dataplane-rbac.yaml"
USER = "system:serviceaccount:kube-system:ironlb-dataplane"
TOKEN = "ilbt-dataplane-token"
OBJECTS = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints: [{addresses: [10.244.1.5], conditions: {ready: true}, nodeName: node1}]
"""


def scenario(directory: Path, rbac: str) -> dict[str, Any]:
    """Runs inside the scratch namespace: API server, RBAC, objects, the dataplane as its service account."""
    tokens = directory / "tokens.csv"
    tokens.write_text(
        f'{TOKEN},{USER},ilbt-uid,"system:serviceaccounts,system:serviceaccounts:kube-system"\n'
    )
    server = ApiServerProcess(
        data_dir=directory / "apiserver",
        extra_args=["--authorization-mode", "RBAC", "--token-auth-file", str(tokens)],
    )
    server.start()
    dataplane: subprocess.Popen[bytes] | None = None
    log = directory / "dataplane.log"
    try:
        kubectl = make_kubectl(server.kubeconfig)
        kubectl("apply", "-f", "-", input=rbac)
        kubectl("apply", "-f", "-", input=OBJECTS)
        admin = yaml.safe_load(server.kubeconfig.read_text())
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": admin["clusters"],
            "users": [{"name": "dataplane", "user": {"token": TOKEN}}],
            "contexts": [
                {
                    "name": "dataplane",
                    "context": {"cluster": admin["clusters"][0]["name"], "user": "dataplane"},
                }
            ],
            "current-context": "dataplane",
        }
        kubeconfig = directory / "kubeconfig-dataplane"
        kubeconfig.write_text(yaml.safe_dump(config))
        with log.open("wb") as out:
            dataplane = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dataplane",
                    "--node",
                    "node1",
                    "--kubeconfig",
                    str(kubeconfig),
                    "--ip-families",
                    "4",
                    "--health-port",
                    "0",
                    "--min-sync-period",
                    "0.1",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        assert server.log_file is not None
        server_log = server.log_file

        def denials() -> list[str]:
            lines = server_log.read_text().splitlines()
            return [line for line in lines if "event=forbidden" in line and f"user={USER} " in line]

        # Until the Service's rules are there, or the API server refused the dataplane something.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "default/web:http cluster IP" not in _rules() and not denials():
            time.sleep(0.2)

        # "No denial" is final only once every informer's first list is done (each logs informer_synced) or
        # one of them was refused.
        def settled() -> bool:
            text = log.read_text()
            sources = ("node", "services", "endpointslices")
            return bool(denials()) or all(f"event=informer_synced source={s} " in text for s in sources)

        while time.monotonic() < deadline and not settled():
            time.sleep(0.2)
        return {"rules": _rules(), "denials": denials(), "log": log.read_text()[-3000:]}
    finally:
        if dataplane is not None:
            dataplane.terminate()
            dataplane.wait(15)
        server.stop()
        server.cleanup()


def _rules() -> str:
    return subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout


def test_the_shipped_rbac_is_enough(tmp_path: Path) -> None:
    with scratch_netns() as netns:
        result = in_netns(netns, scenario, tmp_path, SHIPPED.read_text())
    assert "default/web:http cluster IP" in result["rules"], result["log"]
    assert result["denials"] == []


def test_a_missing_rule_is_caught(tmp_path: Path) -> None:
    trimmed = SHIPPED.read_text().replace(
        '- apiGroups: ["discovery.k8s.io"]\n  resources: ["endpointslices"]\n  verbs: ["list", "watch"]\n', ""
    )
    assert trimmed != SHIPPED.read_text()
    with scratch_netns() as netns:
        result = in_netns(netns, scenario, tmp_path, trimmed)
    assert "default/web:http cluster IP" not in result["rules"]
    assert any("endpointslices" in line for line in result["denials"]), result["denials"]
