"""The manifests in config/ as `kubectl apply -k config/` renders them: Pod Security, probes on the real
health endpoints, metrics bound to the pod IP behind a NetworkPolicy, disruption budget and spread, an image
that can be pinned by digest. (tests/controller/test_config.py applies them to the API server.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import KUBECTL
from tests.controller.helpers import CONFIG

Obj = dict[str, Any]

# Pod Security Standards, "restricted" profile (which includes "baseline"), as the admission plugin checks it.
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim"}
ALLOWED_VOLUMES |= {"projected", "secret"}


def render(directory: Path = CONFIG) -> list[Obj]:
    output = subprocess.run(
        [str(KUBECTL), "kustomize", str(directory)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def restricted_violations(pod: Obj) -> list[str]:
    """Why a pod spec would be rejected in a namespace enforcing the restricted profile."""
    problems = []
    context = pod.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            problems.append(f"{field} is set")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            problems.append(f"volume {volume['name']} is {sorted(kinds)}")
    if (context.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        confined = ("RuntimeDefault", "Localhost")
        containers = [(c.get("securityContext") or {}).get("seccompProfile") or {} for c in pod["containers"]]
        if not all(profile.get("type") in confined for profile in containers):
            problems.append("seccompProfile is not RuntimeDefault or Localhost")
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        name = container["name"]
        security = container.get("securityContext") or {}
        if security.get("privileged"):
            problems.append(f"{name}: privileged")
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if not (security.get("runAsNonRoot") or context.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot is not true")
        if 0 in (security.get("runAsUser"), context.get("runAsUser")):
            problems.append(f"{name}: runs as UID 0")
        capabilities = security.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {capabilities['add']}")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            problems.append(f"{name}: uses a hostPort")
    return problems


def pod_templates(objects: list[Obj]) -> list[tuple[Obj, Obj]]:
    return [
        (obj, obj["spec"]["template"]["spec"])
        for obj in objects
        if obj["kind"] in ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job")
    ]


def controller_deployment(objects: list[Obj]) -> Obj:
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    return next(o for o in deployments if o["metadata"]["name"] == "ironlb-controller")


def test_every_pod_meets_its_namespaces_pod_security_level() -> None:
    objects = render()
    levels = {
        o["metadata"]["name"]: (o["metadata"].get("labels") or {}).get("pod-security.kubernetes.io/enforce")
        for o in objects
        if o["kind"] == "Namespace"
    }
    assert levels["metallb-system"] == "restricted"
    checked = 0
    for workload, pod in pod_templates(objects):
        if levels.get(workload["metadata"]["namespace"]) == "restricted":
            assert restricted_violations(pod) == [], workload["metadata"]["name"]
            checked += 1
    assert checked >= 1
    # The checker does catch what the profile forbids.
    loose = {"containers": [{"name": "c", "securityContext": {"capabilities": {"add": ["NET_RAW"]}}}]}
    assert len(restricted_violations({**loose, "hostNetwork": True})) == 6


def test_probes_metrics_address_disruption_budget_and_spread() -> None:
    objects = render()
    deployment = controller_deployment(objects)
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "monitoring"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "monitoring"}
    assert "--metrics-address=$(POD_IP)" in container["args"]
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in container["env"]
    labels = deployment["spec"]["selector"]["matchLabels"]
    [budget] = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert budget["spec"]["selector"]["matchLabels"] == labels
    assert 0 < budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert spread["kubernetes.io/hostname"]["labelSelector"]["matchLabels"] == labels
    [policy] = [o for o in objects if o["kind"] == "NetworkPolicy"]
    assert policy["spec"]["podSelector"]["matchLabels"] == labels
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "monitoring", "protocol": "TCP"}] and rule["from"]


def test_the_image_can_be_pinned_by_digest(tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["config"],
        "images": [{"name": "ironlb", "newName": "registry.example.com/ironlb", "digest": digest}],
    }
    site = tmp_path / "overlay"
    site.mkdir()
    (site / "config").symlink_to(CONFIG)  # kustomize reads resources below the overlay's own directory
    (site / "kustomization.yaml").write_text(json.dumps(overlay))
    [container] = controller_deployment(render(site))["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"registry.example.com/ironlb@{digest}"
