"""The real kubectl against the server: typed creates (protobuf bodies), scale, server-side apply, watch
tables, describe, namespaces, and waiting for deletions."""

from __future__ import annotations

import json
import subprocess

from lab.apiserver.process import ApiServerProcess
from tests.conftest import KUBECTL
from tests.streams import LineReader


def test_kubectl_typed_creates_send_protobuf_and_work(kubectl) -> None:
    kubectl("create", "namespace", "ilbt-pb")
    kubectl("-n", "ilbt-pb", "create", "deployment", "web", "--image=nginx:1.27", "--port=80", "--replicas=3")
    kubectl("-n", "ilbt-pb", "create", "service", "nodeport", "web", "--tcp=80:8080", "--node-port=30123")
    kubectl("-n", "ilbt-pb", "create", "configmap", "cfg", "--from-literal=k=v")
    kubectl("-n", "ilbt-pb", "create", "secret", "generic", "sec", "--from-literal=p=q")
    kubectl("-n", "ilbt-pb", "create", "serviceaccount", "bot")
    kubectl("-n", "ilbt-pb", "create", "role", "r", "--verb=get,list", "--resource=pods")
    kubectl("-n", "ilbt-pb", "create", "rolebinding", "rb", "--role=r", "--serviceaccount=ilbt-pb:bot")
    deploy = json.loads(kubectl("-n", "ilbt-pb", "get", "deploy", "web", "-o", "json").stdout)
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert deploy["spec"]["replicas"] == 3
    assert container["image"] == "nginx:1.27" and container["ports"] == [
        {"containerPort": 80, "protocol": "TCP"}
    ]
    assert deploy["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    svc = json.loads(kubectl("-n", "ilbt-pb", "get", "svc", "web", "-o", "json").stdout)
    assert svc["spec"]["ports"] == [
        {"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30123}
    ]
    assert svc["spec"]["type"] == "NodePort"
    secret = json.loads(kubectl("-n", "ilbt-pb", "get", "secret", "sec", "-o", "json").stdout)
    assert secret["data"] == {"p": "cQ=="} and secret["type"] == "Opaque"
    binding = json.loads(kubectl("-n", "ilbt-pb", "get", "rolebinding", "rb", "-o", "json").stdout)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "bot", "namespace": "ilbt-pb"}]
    kubectl("create", "clusterrole", "ilbt-agg", "--aggregation-rule=ilbt.example/aggregate=true")
    aggregated = json.loads(kubectl("get", "clusterrole", "ilbt-agg", "-o", "json").stdout)
    assert aggregated["aggregationRule"] == {
        "clusterRoleSelectors": [{"matchLabels": {"ilbt.example/aggregate": "true"}}]
    }
    dup = kubectl(
        "-n",
        "ilbt-pb",
        "create",
        "service",
        "nodeport",
        "dup",
        "--tcp=80:80",
        "--node-port=30123",
        check=False,
    )
    assert dup.returncode != 0
    assert (
        'Service "dup" is invalid: spec.ports[0].nodePort: Invalid value: 30123: provided port is already '
        "allocated" in dup.stderr
    )
    kubectl("-n", "ilbt-pb", "scale", "deployment", "web", "--replicas=5")
    assert kubectl("-n", "ilbt-pb", "get", "deploy", "web", "-o", "jsonpath={.spec.replicas}").stdout == "5"
    kubectl("delete", "namespace", "ilbt-pb", "--wait=true", "--timeout=20s")
    assert kubectl("get", "namespace", "ilbt-pb", check=False).returncode != 0


def test_server_side_apply_owns_what_it_applies(kubectl) -> None:
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {%s}\n"
    kubectl("apply", "--server-side", "-f", "-", input=manifest % "a: '1'")
    # The same manager ("kubectl") applying without "a" removes it; another manager's field stays.
    kubectl("apply", "--server-side", "--field-manager=other", "-f", "-", input=manifest % "c: '3'")
    kubectl("apply", "--server-side", "-f", "-", input=manifest % "b: '2'")
    data = json.loads(kubectl("get", "cm", "ssa", "-o", "jsonpath={.data}").stdout)
    assert data == {"b": "2", "c": "3"}
    # Changing the other manager's field is a conflict until --force-conflicts.
    out = kubectl("apply", "--server-side", "-f", "-", input=manifest % "c: '9'", check=False)
    assert out.returncode != 0 and 'conflict with "other": .data.c' in out.stderr
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=manifest % "c: '9'")
    assert json.loads(kubectl("get", "cm", "ssa", "-o", "jsonpath={.data}").stdout) == {"c": "9"}


def test_get_watch_prints_table_rows(apiserver: ApiServerProcess, kubectl) -> None:
    # kubectl lists, then watches from the list's resourceVersion: once the listed row is printed, no later
    # change can be missed, however slowly the watch request follows.
    kubectl("create", "configmap", "listed")
    watcher = subprocess.Popen(
        [
            str(KUBECTL),
            "--kubeconfig",
            str(apiserver.kubeconfig),
            "get",
            "configmaps",
            "-w",
            "--request-timeout=60s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watcher.stdout is not None
    out = LineReader(watcher.stdout)
    try:
        out.wait_for("the listed row", lambda line: line.startswith("listed "))
        kubectl("create", "configmap", "watched", "--from-literal=a=b")
        kubectl("label", "configmap", "watched", "x=y")
        kubectl("create", "configmap", "sentinel")  # comes after every event about "watched"
        out.wait_for("the sentinel row", lambda line: line.startswith("sentinel "))
    finally:
        watcher.kill()
        watcher.wait()
    rows = [line.split()[0] for line in out.close() if line.strip()]
    assert rows[0] == "NAME", rows
    assert rows.count("watched") == 2, rows


def test_describe_and_wait_for_delete(apiserver: ApiServerProcess, kubectl) -> None:
    kubectl("create", "service", "clusterip", "desc", "--tcp=80:8080")
    described = kubectl("describe", "service", "desc").stdout
    assert "TargetPort:" in described and "8080/TCP" in described
    waiter = subprocess.Popen(
        [
            str(KUBECTL),
            "--kubeconfig",
            str(apiserver.kubeconfig),
            "wait",
            "--for=delete",
            "service/desc",
            "--timeout=30s",
            "-v=6",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert waiter.stderr is not None
    log = LineReader(waiter.stderr)
    try:
        # Only a deletion after the waiter has seen the Service proves it waits for one.
        log.wait_for("the waiter's informer synced", lambda line: "Caches populated" in line)
        kubectl("delete", "service", "desc")
        waiter.wait(timeout=30)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert waiter.stdout is not None
    out = waiter.stdout.read()
    assert waiter.returncode == 0, out + "\n".join(log.close())
    assert "service/desc condition met" in out


def test_apply_again_patches_a_kind_we_keep_no_schema_for(kubectl) -> None:
    """`kubectl apply` of an existing PodDisruptionBudget sends a strategic merge patch, as for any built-in
    kind (re-applying config/ failed with 415 UnsupportedMediaType)."""
    pdb = """
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: ilbt-pdb, namespace: default, labels: {first: "yes"}}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
"""
    kubectl("apply", "-f", "-", input=pdb)
    changed = pdb.replace('first: "yes"', 'second: "yes"').replace("minAvailable: 1", "minAvailable: 2")
    kubectl("apply", "-f", "-", input=changed)
    got = json.loads(kubectl("get", "pdb", "ilbt-pdb", "-o", "json").stdout)
    assert got["spec"]["minAvailable"] == 2
    assert got["metadata"]["labels"] == {"second": "yes"}
