"""The speaker runs with exactly the RBAC (config/speaker-rbac.yaml) and the Linux capabilities
(config/speaker.yaml) we ship, and nothing else (root).

The lab's network (namespaces only) and an API server enforcing RBAC on the lab's management gateway; the
speaker of node1 runs in node1's namespace, in-cluster, with its service account's token. The admin plays the
controller and the endpoint controller. The speaker must do all its writes (its Lease: create, renew,
delete on SIGTERM; a ServiceL2Status: create, status patch, delete; Events) without one 403, and with one
rule removed the same run sees the 403, so the test can fail. Its process holds only the capabilities the
DaemonSet adds (a bounding set of NET_RAW, no new privileges), so answering ARP proves that is enough.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.apiserver.process import ApiServerProcess
from lab.runner import Lab
from tests.conftest import Kubectl, make_kubectl
from tests.controller.helpers import (
    CONFIG,
    MOUNT_AND_EXEC,
    SERVICE_ACCOUNT_DIR,
    apply,
    get_json,
    stop_process,
    wait_event,
    wait_for,
)
from tests.lab.conftest import LabFactory, ns_run
from tests.speaker.helpers import KEY, REPLY, REPO
from tests.tutorial import TUTORIAL_DIR

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

SPEAKER_USER = "system:serviceaccount:ironlb-speaker:ironlb-speaker"
SPEAKER_TOKEN = "ilbt-speaker-token-9d2e7a41c0"
SHIPPED_RBAC = CONFIG / "speaker-rbac.yaml"
SHIPPED_DAEMONSET = CONFIG / "speaker.yaml"


@dataclass
class RbacLab:
    lab: Lab
    server: ApiServerProcess
    kubectl: Kubectl
    directory: Path

    def denials(self) -> list[str]:
        assert self.server.log_file is not None
        text = self.server.log_file.read_text() if self.server.log_file.exists() else ""
        return [
            line
            for line in text.splitlines()
            if "event=forbidden" in line and f"user={SPEAKER_USER} " in line
        ]


@pytest.fixture
def rbac_lab(lab_factory: LabFactory, tmp_path: Path) -> Iterator[RbacLab]:
    lab = lab_factory.up("default", network_only=True)
    gateway = str(lab.plan.mgmt_gateway4.ip)
    tokens = tmp_path / "tokens.csv"
    groups = "system:serviceaccounts,system:serviceaccounts:ironlb-speaker"
    tokens.write_text(f'{SPEAKER_TOKEN},{SPEAKER_USER},ilbt-uid,"{groups}"\n')
    server = ApiServerProcess(
        data_dir=tmp_path / "apiserver",
        extra_args=[
            "--authorization-mode",
            "RBAC",
            "--token-auth-file",
            str(tokens),
            "--bind-address",
            "127.0.0.1",
            "--bind-address",
            gateway,
            "--tls-san",
            gateway,
        ],
    )
    server.start()
    try:
        kubectl = make_kubectl(server.kubeconfig)
        apply(kubectl, CONFIG / "namespace.yaml")
        apply(kubectl, CONFIG / "speaker-namespace.yaml")
        apply(kubectl, CONFIG / "crd")
        wait_for(
            "metallb.io CRDs served",
            lambda: kubectl("get", "servicel2statuses,l2advertisements", "-A", check=False).returncode == 0,
        )
        yield RbacLab(lab, server, kubectl, tmp_path)
    finally:
        server.stop()
        server.cleanup()


def cluster_objects(kubectl: Kubectl) -> None:
    """What a controller, a kubelet and the endpoint controller would have written for the tutorial."""
    apply(kubectl, TUTORIAL_DIR / "metallb-config.yaml")
    labels = {"kubernetes.io/hostname": "node1"}
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1", "labels": labels}}
    kubectl("apply", "-f", "-", input=json.dumps(node))
    status = {
        "status": {
            "addresses": [{"type": "InternalIP", "address": "192.168.10.11"}],
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    }
    kubectl("patch", "node", "node1", "--subresource=status", "--type=merge", "-p", json.dumps(status))
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "nginx-metallb", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "selector": {"app": "nginx"}, "ports": [{"port": 8090}]},
    }
    kubectl("apply", "-f", "-", input=json.dumps(service))
    ingress = {"status": {"loadBalancer": {"ingress": [{"ip": "192.168.10.90", "ipMode": "VIP"}]}}}
    kubectl(
        "patch", "service", "nginx-metallb", "--subresource=status", "--type=merge", "-p", json.dumps(ingress)
    )
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "nginx-metallb-x",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "nginx-metallb"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.1.2"], "conditions": {"ready": True}, "nodeName": "node1"}],
        "ports": [{"port": 80, "protocol": "TCP"}],
    }
    kubectl("apply", "-f", "-", input=json.dumps(endpoints))


def shipped_capabilities() -> list[str]:
    """The capabilities the speaker's container keeps: it drops ALL and adds these."""
    daemonset = next(
        doc for doc in yaml.safe_load_all(SHIPPED_DAEMONSET.read_text()) if doc and doc["kind"] == "DaemonSet"
    )
    container = next(c for c in daemonset["spec"]["template"]["spec"]["containers"] if c["name"] == "speaker")
    capabilities = container["securityContext"]["capabilities"]
    assert capabilities["drop"] == ["ALL"], capabilities
    return [str(name) for name in capabilities["add"]]


def start_speaker(rbac_lab: RbacLab) -> subprocess.Popen[bytes]:
    """`python -m speaker --node node1` as its pod runs it: in node1's netns, no kubeconfig anywhere, the
    service account's token, CA and namespace mounted in a private mount namespace, with only the container's
    capabilities (root keeps nothing outside the bounding set: setpriv narrows it, as the runtime does)."""
    account = rbac_lab.directory / "serviceaccount"
    account.mkdir(exist_ok=True)
    (account / "token").write_text(SPEAKER_TOKEN)
    assert rbac_lab.server.data_dir is not None
    shutil.copy(rbac_lab.server.data_dir / "pki" / "ca.crt", account / "ca.crt")
    (account / "namespace").write_text("ironlb-speaker")
    key = rbac_lab.directory / "key"
    key.write_text(KEY)
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env.update(
        HOME=str(rbac_lab.directory),
        PYTHONPATH=str(REPO),
        KUBERNETES_SERVICE_HOST=str(rbac_lab.lab.plan.mgmt_gateway4.ip),
        KUBERNETES_SERVICE_PORT=str(rbac_lab.server.port),
        POD_NAMESPACE="ironlb-speaker",  # as the DaemonSet's downward API sets it
    )
    command = [
        "ip",
        "netns",
        "exec",
        rbac_lab.lab.plan.node("node1").netns,
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        MOUNT_AND_EXEC,
        str(account),
        SERVICE_ACCOUNT_DIR,
        "setpriv",
        "--bounding-set",
        ",".join(["-all", *(f"+{name.lower()}" for name in shipped_capabilities())]),
        "--no-new-privs",
        sys.executable,
        "-m",
        "speaker",
        "--node",
        "node1",
        "--ml-secret-key-path",
        str(key),
        "--exclude-interfaces",
        "^eth0$",
    ]
    log = (rbac_lab.directory / "speaker.log").open("wb")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)


CAP_NET_RAW = 13


def capabilities_of(launcher: subprocess.Popen[bytes]) -> int:
    """The effective capabilities of the speaker: ip netns exec, unshare (no --fork), sh and setpriv each exec
    the next, so the Python process has the launcher's PID."""
    status = Path(f"/proc/{launcher.pid}/status").read_text()
    assert b"speaker" in Path(f"/proc/{launcher.pid}/cmdline").read_bytes(), "not the speaker's process"
    return int(status.split("CapEff:")[1].split()[0], 16)


def speaker_log(rbac_lab: RbacLab) -> str:
    path = rbac_lab.directory / "speaker.log"
    return path.read_text(errors="replace") if path.exists() else ""


def shipped_rbac() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(SHIPPED_RBAC.read_text()) if doc]


def test_speaker_works_with_exactly_the_shipped_rbac(rbac_lab: RbacLab) -> None:
    kubectl = rbac_lab.kubectl
    apply(kubectl, SHIPPED_RBAC)
    cluster_objects(kubectl)
    speaker = start_speaker(rbac_lab)
    try:

        def listed() -> str:
            # The row can be listed before the speaker has filled in its node: wait for the whole row.
            rows = kubectl("get", "servicel2status", "-A", "--no-headers").stdout
            return rows if "node1" in rows and "nginx-metallb" in rows else ""

        try:
            wait_for("a ServiceL2Status naming node1 and nginx-metallb", listed, timeout=60)
        except AssertionError as timeout:
            raise AssertionError(f"{timeout}\n{speaker_log(rbac_lab)}") from None
        assert shipped_capabilities() == ["NET_RAW"]
        effective = capabilities_of(speaker)
        assert effective == 1 << CAP_NET_RAW, f"the speaker runs with capabilities {effective:#x}"
        client = rbac_lab.lab.plan.node("client").netns
        answer = ns_run(client, "arping", "-c", "1", "-w", "3", "-I", "eth1", "192.168.10.90").stdout
        assert REPLY.search(answer), answer
        wait_event(kubectl, "nginx-metallb", "nodeAssigned")
        lease = "lease/ironlb-speaker-node1"
        version = wait_for("the Lease renewed", lambda: get_json(kubectl, lease, "-n", "ironlb-speaker"))
        renewed = version["spec"]["renewTime"]

        def renewal() -> bool:
            return bool(get_json(kubectl, lease, "-n", "ironlb-speaker")["spec"]["renewTime"] != renewed)

        wait_for("a renewal", renewal)
        # Not announced any more (the endpoint goes): the speaker deletes its ServiceL2Status.
        kubectl("delete", "endpointslice", "nginx-metallb-x")
        wait_for("the status deleted", lambda: not listed())
        assert speaker.poll() is None, speaker_log(rbac_lab)
        speaker.send_signal(signal.SIGTERM)
        assert speaker.wait(15) == 0, speaker_log(rbac_lab)
        assert get_json(kubectl, lease, "-n", "ironlb-speaker") is None, "SIGTERM deletes the Lease"
    finally:
        stop_process(speaker)
    # test_one_missing_rule_is_caught shows these log lines do appear when the speaker is denied.
    assert rbac_lab.denials() == [], "\n".join(rbac_lab.denials())
    assert "403" not in speaker_log(rbac_lab)


def test_one_missing_rule_is_caught(rbac_lab: RbacLab) -> None:
    """Without `patch servicel2statuses/status` the speaker is denied, and says so."""
    docs = shipped_rbac()
    role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "ironlb-speaker")
    before = len(role["rules"])
    role["rules"] = [r for r in role["rules"] if r["resources"] != ["servicel2statuses/status"]]
    assert len(role["rules"]) == before - 1, "the shipped Role no longer has that rule"
    kubectl = rbac_lab.kubectl
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    cluster_objects(kubectl)
    speaker = start_speaker(rbac_lab)
    try:
        denied = wait_for(
            "a 403 for the speaker patching servicel2statuses/status",
            lambda: [line for line in rbac_lab.denials() if "resource=servicel2statuses/status " in line],
            timeout=40,
        )
        assert "verb=patch" in denied[0], denied[0]
        wait_for("the failure in the speaker's log", lambda: "403" in speaker_log(rbac_lab))
        assert speaker.poll() is None, speaker_log(rbac_lab)
    finally:
        stop_process(speaker)
