"""A lab with the controller and one speaker per node, and what a client sees of it: arping, ndisc6, tcpdump,
its neighbour table, and `kubectl get servicel2status`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.runner import Lab
from tests.conftest import Kubectl, make_kubectl
from tests.controller.helpers import CONFIG, ControllerProcess, apply, get_json, wait_for
from tests.lab.conftest import LabFactory, ns_run

REPO = Path(__file__).resolve().parents[2]
NODES = ("node1", "node2", "node3")
KEY = "ilbt-speaker-test-key-3f9c1d"
REPLY = re.compile(r"reply from (\S+) \[([0-9A-Fa-f:]{17})\]")
TARGET = re.compile(r"Target link-layer address: ([0-9A-Fa-f:]{17})")


class SpeakerProcess:
    """`python -m speaker` inside a lab node's netns (as `python -m lab exec nodeN -- python -m speaker`),
    with the in-node kubeconfig; stopped by its PID only."""

    def __init__(self, lab: Lab, node: str, key_file: Path, log_file: Path) -> None:
        self.lab = lab
        self.node = node
        self.netns = lab.plan.node(node).netns
        self.key_file = key_file
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self, *extra: str, wait: bool = True) -> SpeakerProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("KUBECONFIG", None)
        command = [
            "ip", "netns", "exec", self.netns,
            sys.executable, "-m", "speaker", "--node", self.node,
            "--kubeconfig", str(self.lab.paths.node_kubeconfig),
            "--ml-secret-key-path", str(self.key_file),
            # The lab's eth0 is its management network, bridged to the host: announce on the segment only.
            "--exclude-interfaces", "^eth0$",
            *extra,
        ]  # fmt: skip
        self._offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        if wait:
            self.wait_started()
        return self

    def log(self) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return text[self._offset :]

    def wait_started(self, timeout: float = 40.0) -> None:
        def started() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"speaker {self.node} exited {self.proc.returncode}:\n{self.log()[-3000:]}"
                )
            return "event=started" in self.log()

        wait_for(f"speaker {self.node} started", started, timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def metrics(self) -> dict[str, float]:
        result = ns_run(self.netns, "curl", "-s", "-m", "5", "http://127.0.0.1:7472/metrics")
        samples = {}
        for line in result.stdout.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples


@dataclass
class SpeakerLab:
    lab: Lab
    kubectl: Kubectl
    directory: Path
    controller: ControllerProcess
    speakers: dict[str, SpeakerProcess] = field(default_factory=dict)

    @property
    def client(self) -> str:
        return self.lab.plan.node("client").netns

    def netns(self, node: str) -> str:
        return self.lab.plan.node(node).netns

    def mac(self, node: str) -> str:
        link = json.loads(ns_run(self.netns(node), "ip", "-j", "link", "show", "eth1", check=True).stdout)
        return str(link[0]["address"]).lower()

    def node_of(self, mac: str) -> str:
        return {self.mac(n): n for n in NODES}.get(mac.lower(), f"unknown {mac}")

    def arping(self, ip: str, count: int = 2) -> list[str]:
        """The MACs answering broadcast ARP requests for ``ip`` from the client (iputils arping)."""
        result = ns_run(self.client, "arping", "-b", "-c", str(count), "-w", str(count + 1), "-I", "eth1", ip)
        return sorted({mac.lower() for _, mac in REPLY.findall(result.stdout)})

    def ndisc6(self, ip: str) -> list[str]:
        """The MACs answering a Neighbor Solicitation for ``ip`` from the client (ndisc6, all answers)."""
        result = ns_run(self.client, "ndisc6", "-m", "-r", "2", "-w", "800", ip, "eth1")
        return sorted({mac.lower() for mac in TARGET.findall(result.stdout)})

    def neighbour(self, ip: str) -> str | None:
        """The client kernel's neighbour entry for ``ip`` (its MAC), if it has one with an address."""
        family = "-6" if ":" in ip else "-4"
        result = ns_run(self.client, "ip", "-j", family, "neigh", "show", ip, "dev", "eth1")
        for entry in json.loads(result.stdout or "[]"):
            if entry.get("lladdr"):
                return str(entry["lladdr"]).lower()
        return None

    def status_nodes(self, service: str, namespace: str = "default") -> list[str]:
        """Nodes `kubectl get servicel2status -A` shows for a Service (its Allocated Node column)."""
        result = self.kubectl("get", "servicel2status", "-A", "--no-headers", check=False)
        nodes = []
        for line in result.stdout.splitlines():
            columns = line.split()
            if len(columns) >= 5 and columns[3] == service and columns[4] == namespace:
                nodes.append(columns[2])
        return sorted(nodes)

    def wait_status(self, service: str, nodes: list[str], timeout: float = 20) -> None:
        wait_for(f"{service} shown on {nodes}", lambda: self.status_nodes(service) == nodes, timeout)

    def owner_by_arp(self, ip: str) -> str | None:
        macs = self.arping(ip)
        return self.node_of(macs[0]) if len(macs) == 1 else None

    def speaker_log(self) -> str:
        return "\n".join(f"--- {n} ---\n{s.log()[-2500:]}" for n, s in self.speakers.items())


def build(factory: LabFactory, directory: Path) -> Iterator[SpeakerLab]:
    """The default lab, CRDs and the tutorial's ConfigMap applied, the controller and three speakers."""
    lab = factory.up("default", network_only=False, timeout=90)
    kubectl = make_kubectl(lab.paths.kubeconfig)
    apply(kubectl, CONFIG / "namespace.yaml")
    apply(kubectl, CONFIG / "crd")
    wait_for(
        "metallb.io CRDs served",
        lambda: (
            kubectl("get", "ipaddresspools,l2advertisements,servicel2statuses", "-A", check=False).returncode
            == 0
        ),
        timeout=20,
    )
    key_file = directory / "memberlist-key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    controller = ControllerProcess(lab.paths.kubeconfig, directory / "controller.log", ["--standalone"])
    setup = SpeakerLab(lab, kubectl, directory, controller)
    try:
        controller.start()
        for node in NODES:
            setup.speakers[node] = SpeakerProcess(lab, node, key_file, directory / f"speaker-{node}.log")
            setup.speakers[node].start(wait=False)
        for speaker in setup.speakers.values():
            speaker.wait_started()
        yield setup
    finally:
        for speaker in setup.speakers.values():
            speaker.kill()
        controller.kill()


def deployment(name: str, replicas: int = 1, labels: dict[str, str] | None = None) -> str:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, **(labels or {})}},
                "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]},
            },
        },
    }
    return json.dumps(body)


def ready_endpoints(kubectl: Kubectl, service: str) -> list[str]:
    """Nodes of the Service's ready endpoints (IPv4 slices)."""
    listing = get_json(kubectl, "endpointslices", "-l", f"kubernetes.io/service-name={service}") or {}
    nodes = []
    for item in listing.get("items", []):
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") and endpoint.get("nodeName"):
                nodes.append(endpoint["nodeName"])
    return sorted(nodes)
