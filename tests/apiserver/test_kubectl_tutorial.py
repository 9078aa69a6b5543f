"""The users' tutorial (docs: kubernetes-service-tutorial.md), driven with the real kubectl against the
embedded API server: apply with validation on, `kubectl get` columns, status patches, apply merges, errors."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.conftest import Kubectl
from tests.tutorial import (
    EXTERNAL_NAME,
    HEADLESS,
    METALLB_CONFIG,
    METALLB_NAMESPACE,
    NGINX_APP,
    NGINX_METALLB,
    NGINX_SVC,
)

CLUSTER_IP = re.compile(r"^10\.(9[6-9]|10[0-9]|11[01])\.\d+\.\d+$")  # inside 10.96.0.0/12


def table(output: str) -> tuple[list[str], dict[str, list[str]]]:
    """Split `kubectl get` output into its header cells and rows keyed by their first cell."""
    lines = [line for line in output.splitlines() if line.strip()]
    split = [re.split(r"\s{2,}", line.strip()) for line in lines]
    return split[0], {row[0]: row for row in split[1:]}


def apply(kubectl: Kubectl, manifest: str) -> str:
    return kubectl("apply", "-f", "-", input=manifest).stdout


def test_tutorial_apply_then_get_svc_prints_the_real_columns(kubectl: Kubectl) -> None:
    out = apply(kubectl, NGINX_APP)
    assert out.splitlines() == ["deployment.apps/nginx-app created", "service/nginx-app created"]
    for manifest in (NGINX_METALLB, HEADLESS, EXTERNAL_NAME, NGINX_SVC):
        assert "created" in apply(kubectl, manifest)
    raw = kubectl("get", "svc").stdout
    header, rows = table(raw)
    assert header == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert re.match(r"^NAME +TYPE +CLUSTER-IP +EXTERNAL-IP +PORT\(S\) +AGE$", raw.splitlines()[0])
    assert sorted(rows) == [
        "headless-service",
        "kubernetes",
        "my-externalname",
        "nginx-app",
        "nginx-metallb",
        "nginx-svc",
    ]
    assert rows["kubernetes"][:5] == ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
    assert rows["headless-service"][:5] == ["headless-service", "ClusterIP", "None", "<none>", "80/TCP"]
    assert rows["my-externalname"][:5] == [
        "my-externalname",
        "ExternalName",
        "<none>",
        "www.example.com",
        "<none>",
    ]
    _, kind, cluster_ip, external, ports, age = rows["nginx-app"]
    assert (kind, external, ports) == ("NodePort", "<none>", "8060:30001/TCP")
    assert CLUSTER_IP.match(cluster_ip) and cluster_ip != "10.96.0.1"
    assert re.match(r"^\d+s$", age)
    _, kind, lb_ip, external, ports, _ = rows["nginx-metallb"]
    assert (kind, external) == ("LoadBalancer", "<pending>")
    assert CLUSTER_IP.match(lb_ip)
    node_port = int(re.fullmatch(r"8090:(\d+)/TCP", ports).group(1))  # type: ignore[union-attr]
    assert 30000 <= node_port <= 32767 and node_port != 30001
    assert rows["nginx-svc"][1:5] == ["ClusterIP", rows["nginx-svc"][2], "<none>", "80/TCP"]
    assert len({cluster_ip, lb_ip, rows["nginx-svc"][2]}) == 3
    wide_header, wide_rows = table(kubectl("get", "svc", "-o", "wide").stdout)
    assert wide_header[-1] == "SELECTOR"
    assert wide_rows["nginx-app"][-1] == "app=nginx-app" and wide_rows["kubernetes"][-1] == "<none>"

    svc = json.loads(kubectl("get", "svc", "nginx-app", "-o", "json").stdout)
    spec = svc["spec"]
    assert spec["sessionAffinity"] == "None" and spec["externalTrafficPolicy"] == "Cluster"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
    assert "allocateLoadBalancerNodePorts" not in spec
    lb = json.loads(kubectl("get", "svc", "nginx-metallb", "-o", "json").stdout)
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True


def test_status_patch_makes_external_ip_appear_with_ip_mode(kubectl: Kubectl) -> None:
    apply(kubectl, NGINX_METALLB)
    assert table(kubectl("get", "svc", "nginx-metallb").stdout)[1]["nginx-metallb"][3] == "<pending>"
    out = kubectl(
        "patch",
        "svc",
        "nginx-metallb",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"loadBalancer":{"ingress":[{"ip":"192.168.10.90"}]}}}',
    ).stdout
    assert out.strip() == "service/nginx-metallb patched"
    assert table(kubectl("get", "svc", "nginx-metallb").stdout)[1]["nginx-metallb"][3] == "192.168.10.90"
    status = kubectl("get", "svc", "nginx-metallb", "-o", "jsonpath={.status}").stdout
    assert json.loads(status) == {"loadBalancer": {"ingress": [{"ip": "192.168.10.90", "ipMode": "VIP"}]}}


def test_node_port_clashes_fail_with_the_exact_messages(kubectl: Kubectl) -> None:
    apply(kubectl, NGINX_APP)
    dup = kubectl("create", "service", "nodeport", "dup", "--tcp=80:80", "--node-port=30001", check=False)
    assert dup.returncode != 0
    assert dup.stderr.strip() == (
        'error: failed to create NodePort service: Service "dup" is invalid: spec.ports[0].nodePort: '
        "Invalid value: 30001: provided port is already allocated"
    )
    low = kubectl("create", "service", "nodeport", "low", "--tcp=80:80", "--node-port=29999", check=False)
    assert low.returncode != 0
    assert low.stderr.strip() == (
        'error: failed to create NodePort service: Service "low" is invalid: spec.ports[0].nodePort: '
        "Invalid value: 29999: provided port is not in the valid range. "
        "The range of valid ports is 30000-32767"
    )
    assert kubectl("get", "svc", "dup", check=False).returncode != 0
    ok = kubectl("create", "service", "nodeport", "fine", "--tcp=80:80", "--node-port=30002")
    assert ok.stdout.strip() == "service/fine created"
    kubectl("delete", "svc", "nginx-app")
    again = kubectl("create", "service", "nodeport", "dup", "--tcp=80:80", "--node-port=30001")
    assert again.stdout.strip() == "service/dup created", "a deleted Service's nodePort is free again"


def test_apply_of_a_changed_manifest_merges_as_on_a_real_cluster(kubectl: Kubectl) -> None:
    apply(kubectl, NGINX_APP)
    apply(kubectl, NGINX_METALLB)
    lb_before = json.loads(kubectl("get", "svc", "nginx-metallb", "-o", "json").stdout)
    # Changes made by others, which a later apply must keep.
    kubectl("label", "svc", "nginx-app", "owner=someone-else")
    kubectl("annotate", "deploy", "nginx-app", "example.com/note=kept")
    kubectl(
        "patch",
        "deploy",
        "nginx-app",
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"}]}}}}',
    )
    changed = (
        NGINX_APP.replace("  replicas: 2", "  replicas: 3")
        .replace("image: nginx:1.15-alpine", "image: nginx:1.16-alpine")
        .replace("        ports:\n        - containerPort: 80\n", "")
        .replace(
            "    app: nginx-app\nspec:\n  replicas", "    app: nginx-app\n    tier: web\nspec:\n  replicas"
        )
        .replace(
            "  - protocol: TCP\n    nodePort: 30001\n    port: 8060\n    targetPort: 80\n",
            "  - protocol: TCP\n    name: http\n    nodePort: 30001\n    port: 8060\n    targetPort: 80\n"
            "  - protocol: UDP\n    name: stats\n    port: 8125\n",
        )
    )
    out = apply(kubectl, changed)
    assert out.splitlines() == ["deployment.apps/nginx-app configured", "service/nginx-app configured"]
    dep = json.loads(kubectl("get", "deploy", "nginx-app", "-o", "json").stdout)
    assert dep["metadata"]["labels"] == {"app": "nginx-app", "tier": "web"}
    assert dep["metadata"]["annotations"]["example.com/note"] == "kept"
    assert dep["spec"]["replicas"] == 3
    containers = {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"c1", "sidecar"}, "the container added by someone else stays"
    assert containers["c1"]["image"] == "nginx:1.16-alpine"
    assert "ports" not in containers["c1"], "the containerPort removed from the manifest is removed"
    svc = json.loads(kubectl("get", "svc", "nginx-app", "-o", "json").stdout)
    assert svc["metadata"]["labels"] == {"owner": "someone-else"}
    ports = {p["port"]: p for p in svc["spec"]["ports"]}
    assert ports[8060]["nodePort"] == 30001 and ports[8060]["name"] == "http"
    assert ports[8125]["protocol"] == "UDP" and 30000 <= ports[8125]["nodePort"] <= 32767
    assert ports[8125]["targetPort"] == 8125
    rows = table(kubectl("get", "svc", "nginx-app").stdout)[1]
    assert rows["nginx-app"][4] == f"8060:30001/TCP,8125:{ports[8125]['nodePort']}/UDP"

    # The LoadBalancer's manifest never had a nodePort: re-applying it with a change keeps the allocated one.
    apply(kubectl, NGINX_METALLB.replace("targetPort: 80\n  selector", "targetPort: 8080\n  selector"))
    lb_after = json.loads(kubectl("get", "svc", "nginx-metallb", "-o", "json").stdout)
    assert lb_after["spec"]["ports"][0]["targetPort"] == 8080
    assert lb_after["spec"]["ports"][0]["nodePort"] == lb_before["spec"]["ports"][0]["nodePort"]
    assert lb_after["spec"]["clusterIP"] == lb_before["spec"]["clusterIP"]

    # Removing the second port again releases its nodePort.
    apply(kubectl, changed.replace("  - protocol: UDP\n    name: stats\n    port: 8125\n", ""))
    svc = json.loads(kubectl("get", "svc", "nginx-app", "-o", "json").stdout)
    assert [p["port"] for p in svc["spec"]["ports"]] == [8060]
    freed = kubectl(
        "create", "service", "nodeport", "reuse", "--tcp=1:1", f"--node-port={ports[8125]['nodePort']}"
    )
    assert "created" in freed.stdout


def test_apply_rejects_invalid_objects_with_the_servers_message(kubectl: Kubectl) -> None:
    bad = HEADLESS.replace("  type: ClusterIP ", "  type: NodePort ")
    result = kubectl("apply", "-f", "-", input=bad, check=False)
    assert result.returncode != 0
    assert 'Service "headless-service" is invalid' in result.stderr
    assert "may not be set to 'None' for NodePort services" in result.stderr
    two_ports = EXTERNAL_NAME.replace("type: ExternalName", "type: ClusterIP").replace(
        "  externalName: www.example.com\n",
        "  ports:\n  - port: 80\n  - port: 81\n",
    )
    result = kubectl("apply", "-f", "-", input=two_ports, check=False)
    assert result.returncode != 0
    assert "spec.ports[0].name: Required value" in result.stderr


def _status(kubectl: Kubectl, resource: str, name: str, status: dict[str, Any], *ns: str) -> None:
    kubectl(
        "patch",
        resource,
        name,
        *ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


@pytest.mark.timeout(120)
def test_get_prints_the_real_columns_for_other_kinds(kubectl: Kubectl) -> None:
    apply(kubectl, NGINX_APP)
    apply(kubectl, METALLB_NAMESPACE + "\n---\n" + METALLB_CONFIG)
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "worker1", "labels": {"node-role.kubernetes.io/worker": ""}},
    }
    kubectl("apply", "-f", "-", input=json.dumps(node))
    _status(
        kubectl,
        "node",
        "worker1",
        {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.10.12"}],
            "nodeInfo": {
                "kubeletVersion": "v1.37.0",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "kernelVersion": "6.1.0",
                "containerRuntimeVersion": "ironlb://0.1",
                "architecture": "amd64",
                "bootID": "",
                "kubeProxyVersion": "",
                "machineID": "",
                "operatingSystem": "linux",
                "systemUUID": "",
            },
        },
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nginx-app-ffd5ccc78-cnwbx", "labels": {"app": "nginx-app"}},
        "spec": {"nodeName": "worker1", "containers": [{"name": "c1", "image": "nginx:1.15-alpine"}]},
    }
    kubectl("apply", "-f", "-", input=json.dumps(pod))
    header, rows = table(kubectl("get", "pods").stdout)
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert rows["nginx-app-ffd5ccc78-cnwbx"][1:4] == ["0/1", "Pending", "0"]
    _status(
        kubectl,
        "pod",
        "nginx-app-ffd5ccc78-cnwbx",
        {
            "phase": "Running",
            "podIP": "172.16.1.24",
            "podIPs": [{"ip": "172.16.1.24"}],
            "containerStatuses": [
                {
                    "name": "c1",
                    "ready": True,
                    "restartCount": 0,
                    "image": "nginx:1.15-alpine",
                    "imageID": "",
                    "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                }
            ],
        },
    )
    header, rows = table(kubectl("get", "pods", "-o", "wide").stdout)
    assert header == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    ]
    row = rows["nginx-app-ffd5ccc78-cnwbx"]
    assert row[1:4] == ["1/1", "Running", "0"] and row[5:] == ["172.16.1.24", "worker1", "<none>", "<none>"]
    assert table(kubectl("get", "pods", "-l", "app=nginx-app").stdout)[1].keys() == {
        "nginx-app-ffd5ccc78-cnwbx"
    }

    header, rows = table(kubectl("get", "nodes").stdout)
    assert header == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert [rows["worker1"][i] for i in (1, 2, 4)] == ["Ready", "worker", "v1.37.0"]
    header, rows = table(kubectl("get", "nodes", "-o", "wide").stdout)
    assert header[5:] == ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    assert rows["worker1"][5:] == [
        "192.168.10.12",
        "<none>",
        "Debian GNU/Linux 12 (bookworm)",
        "6.1.0",
        "ironlb://0.1",
    ]

    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "nginx-app"},
        "subsets": [
            {
                "addresses": [{"ip": f"172.16.{i}.20"} for i in range(1, 6)],
                "ports": [{"port": 80, "protocol": "TCP"}],
            }
        ],
    }
    kubectl("apply", "-f", "-", input=json.dumps(endpoints))
    header, rows = table(kubectl("get", "endpoints").stdout)
    assert header == ["NAME", "ENDPOINTS", "AGE"]
    assert rows["nginx-app"][1] == "172.16.1.20:80,172.16.2.20:80,172.16.3.20:80 + 2 more..."

    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "nginx-app-abcde", "labels": {"kubernetes.io/service-name": "nginx-app"}},
        "addressType": "IPv4",
        "ports": [{"name": "", "port": 80, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["172.16.1.24"], "conditions": {"ready": True}, "nodeName": "worker1"}],
    }
    kubectl("apply", "-f", "-", input=json.dumps(slice_))
    header, rows = table(kubectl("get", "endpointslices").stdout)
    assert header == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert rows["nginx-app-abcde"][1:4] == ["IPv4", "80", "172.16.1.24"]

    header, rows = table(kubectl("get", "configmaps", "-n", "metallb-system").stdout)
    assert header == ["NAME", "DATA", "AGE"]
    assert rows["config"][1] == "1"

    header, rows = table(kubectl("get", "ns").stdout)
    assert header == ["NAME", "STATUS", "AGE"]
    assert {"default", "kube-node-lease", "kube-public", "kube-system", "metallb-system"} <= rows.keys()
    assert rows["metallb-system"][1] == "Active"

    header, rows = table(kubectl("get", "deployment.apps").stdout)
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert rows["nginx-app"][1:4] == ["0/2", "0", "0"]
    header, rows = table(kubectl("get", "deploy", "-o", "wide").stdout)
    assert header[5:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    assert rows["nginx-app"][5:] == ["c1", "nginx:1.15-alpine", "app=nginx-app"]


def test_apply_with_validation_on_reports_misspelt_fields(kubectl: Kubectl) -> None:
    misspelt = NGINX_APP.replace("imagePullPolicy:", "imagePullPolcy:").replace(
        "  ports:\n  - protocol", "  prots:\n  - protocol"
    )
    result = kubectl("apply", "-f", "-", input=misspelt, check=False)
    assert result.returncode != 0
    assert (
        'Error from server (BadRequest): error when creating "STDIN": Deployment in version "v1" cannot be '
        'handled as a Deployment: strict decoding error: unknown field "spec.template.spec.containers[0].'
        'imagePullPolcy"'
    ) in result.stderr
    assert (
        'Service in version "v1" cannot be handled as a Service: strict decoding error: '
        'unknown field "spec.prots"'
    ) in result.stderr
    assert kubectl("get", "deploy,svc", "-o", "name").stdout.split() == ["service/kubernetes"]
    # --validate=false asks the server to ignore unknown fields (fieldValidation=Ignore).
    lax = kubectl(
        "apply", "--validate=false", "-f", "-", input=NGINX_APP.replace("imagePullPolicy:", "imagePullPolcy:")
    )
    assert "deployment.apps/nginx-app created" in lax.stdout
