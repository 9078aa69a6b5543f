"""A lab with the dataplane on every node, shared by a test module, once per mode.

The lab is a copy of the default topology (3 nodes, a client) with its own prefix; the dataplane runs inside
each node's network namespace (`ip netns exec`), never in the host's. Everything is torn down in `finally`.
Modes: the behaviour suite runs once per entry of MODES. IPVS mode's lab has its network in a user-mode-linux
guest, as this kernel has no IPVS (tests/dataplane/guest.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lab import podspec
from lab.runner import Lab
from lab.topology import load_topology
from tests.conftest import Kubectl, make_kubectl
from tests.lab.conftest import topology_copy

REPO = Path(__file__).resolve().parents[2]
MODES = ["iptables", "nftables", "ipvs"]
NODES = ("node1", "node2", "node3")
NODE_IPS = {"node1": "192.168.10.11", "node2": "192.168.10.12", "node3": "192.168.10.13"}
NODE_IPS6 = {"node1": "fd00:10::11", "node2": "fd00:10::12", "node3": "fd00:10::13"}
CLIENT_IP = "192.168.10.200"
T = TypeVar("T")


# Every wait_for timeout is multiplied by this: the IPVS lab's guest has one CPU, where starting a process
# costs ~20 times more, so the same conditions take longer to come true there (tests/dataplane/guest.py).
TIME_SCALE = {"value": 1.0}


def wait_for(what: str, probe: Callable[[], T], timeout: float = 30.0, interval: float = 0.2) -> T:
    timeout *= TIME_SCALE["value"]
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def pod_names(results: list[dict[str, Any]]) -> list[str]:
    return [r["reply"].split()[0] for r in results if r.get("ok")]


@dataclass
class DataplaneLab:
    lab: Lab
    kubectl: Kubectl
    mode: str
    directory: Path
    processes: dict[str, Any] = field(default_factory=dict)  # Popen, or its look-alike in a guest
    args: dict[str, list[str]] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)  # the mode each node's dataplane runs in
    speakers: dict[str, Any] = field(default_factory=dict)  # node -> its speaker (Popen or look-alike)

    # ---- namespaces ----------------------------------------------------------------------------------

    def netns(self, node: str) -> str:
        return self.lab.plan.node(node).netns

    def mac(self, node: str) -> str:
        """The MAC of the node's interface on the lab's segment."""
        link = json.loads(self.run(self.netns(node), "ip", "-j", "link", "show", "eth1").stdout)
        return str(link[0]["address"]).lower()

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return self.get("pod", name, namespace)

    def pod_netns(self, name: str, namespace: str = "default") -> str:
        pod = self.pod(name, namespace)
        return podspec.pod_netns(self.lab.plan.prefix, pod["spec"]["nodeName"], pod["metadata"]["uid"])

    def pods(self, selector: str, namespace: str = "default") -> list[dict[str, Any]]:
        listing = self.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout
        return list(json.loads(listing)["items"])

    def run(self, netns: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, timeout=timeout
        )

    # ---- traffic ---------------------------------------------------------------------------------------

    def probe(self, netns: str, kind: str, host: str, port: int, *options: str) -> list[dict[str, Any]]:
        result = self.run(
            netns, sys.executable, "-m", "tests.dataplane.probe", kind, host, str(port), *options
        )
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    def popen_probe(self, netns: str, *args: str) -> Any:
        """A probe left running (`hold`, `sctp-listen`): its stdin and stdout are the test's to use."""
        return subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.dataplane.probe", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )

    def tcp(
        self, netns: str, host: str, port: int, count: int = 1, timeout: float = 2.0
    ) -> list[dict[str, Any]]:
        return self.probe(netns, "tcp", host, port, "--count", str(count), "--timeout", str(timeout))

    def answers(self, netns: str, host: str, port: int, count: int = 1) -> list[str]:
        """The pods that answered `count` TCP connections (failures left out)."""
        return pod_names(self.tcp(netns, host, port, count))

    def wait_answer(self, netns: str, host: str, port: int, timeout: float = 30.0) -> str:
        """Poll until a TCP connection is answered; the pod that answered."""
        return wait_for(
            f"an answer from {host}:{port} in {netns}",
            lambda: next(iter(self.answers(netns, host, port)), ""),
            timeout,
        )

    # ---- the API ---------------------------------------------------------------------------------------

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", input=manifest)

    def get(self, kind: str, name: str, namespace: str = "default") -> dict[str, Any]:
        found: dict[str, Any] = json.loads(
            self.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
        )
        return found

    def cluster_ip(self, service: str, namespace: str = "default", family: int = 4) -> str:
        ips: list[str] = self.get("service", service, namespace)["spec"]["clusterIPs"]
        return next(ip for ip in ips if (":" in ip) == (family == 6))

    def node_port(self, service: str, namespace: str = "default") -> int:
        return int(self.get("service", service, namespace)["spec"]["ports"][0]["nodePort"])

    def endpoint_conditions(self, service: str, namespace: str = "default") -> dict[str, dict[str, bool]]:
        """Pod name -> the conditions its endpoint has in the Service's EndpointSlices."""
        listing = self.kubectl(
            "get",
            "endpointslices",
            "-n",
            namespace,
            "-l",
            f"kubernetes.io/service-name={service}",
            "-o",
            "json",
        ).stdout
        found = {}
        for item in json.loads(listing)["items"]:
            for endpoint in item.get("endpoints") or []:
                name = (endpoint.get("targetRef") or {}).get("name", "")
                found[name] = {k: bool(v) for k, v in (endpoint.get("conditions") or {}).items()}
        return found

    def ready_pods(self, selector: str, count: int, namespace: str = "default") -> list[dict[str, Any]]:
        def ready() -> list[dict[str, Any]]:
            pods = [
                p
                for p in self.pods(selector, namespace)
                if not p["metadata"].get("deletionTimestamp")
                and any(
                    c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])
                )
            ]
            return pods if len(pods) == count else []

        return wait_for(f"{count} ready pods {selector}", ready, timeout=60)

    # ---- the dataplane ----------------------------------------------------------------------------------

    def start(self, node: str, *extra: str, mode: str | None = None) -> None:
        """Start the node's dataplane (again), with `extra` arguments (default: the last ones) in `mode`
        (default: the lab's)."""
        args = list(extra) if extra else self.args.get(node, [])
        self.args[node] = args
        self.modes[node] = mode or self.mode
        log = (self.directory / f"dataplane-{node}.log").open("ab")
        env = dict(os.environ, PYTHONPATH=str(REPO), KUBECONFIG=str(self.lab.paths.node_kubeconfig))
        self.processes[node] = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.netns(node),
                sys.executable,
                "-m",
                "dataplane",
                "--node",
                node,
                "--mode",
                self.modes[node],
                "--min-sync-period",
                "0.1",
                "--sync-period",
                "2",
                "--health-address",
                "127.0.0.1",
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )

    def stop(self, node: str) -> None:
        proc = self.processes.pop(node, None)
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def start_speaker(self, node: str, key_file: Path) -> Any:
        """ironlb's speaker in the node's netns, announcing on the lab's segment only (eth0 is management)."""
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("KUBECONFIG", None)
        with (self.directory / f"speaker-{node}.log").open("ab") as log:
            self.speakers[node] = subprocess.Popen(
                ["ip", "netns", "exec", self.netns(node), sys.executable, "-m", "speaker",
                 *self.speaker_args(node, key_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
            )  # fmt: skip
        return self.speakers[node]

    def speaker_args(self, node: str, key_file: Path) -> list[str]:
        return [
            "--node", node,
            "--kubeconfig", str(self.lab.paths.node_kubeconfig),
            "--ml-secret-key-path", str(key_file),
            "--exclude-interfaces", "^eth0$",
        ]  # fmt: skip

    def stop_speakers(self) -> None:
        for node in list(self.speakers):
            proc = self.speakers.pop(node)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def speaker_log(self, node: str) -> str:
        path = self.directory / f"speaker-{node}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def rules(self, node: str, mode: str | None = None) -> str:
        """A mode's kernel state on a node (default: the lab's), as text (for "no rules for X" checks)."""
        mode = mode or self.mode
        if mode == "iptables":
            dumps = [self.run(self.netns(node), tool).stdout for tool in ("iptables-save", "ip6tables-save")]
            return "\n".join(dumps)
        if mode == "nftables":
            tables = [("ip", "ironlb"), ("ip6", "ironlb")]
            return "\n".join(self.run(self.netns(node), "nft", "list", "table", *t).stdout for t in tables)
        raise NotImplementedError(f"rules() for mode {mode}")

    def log(self, node: str) -> str:
        path = self.directory / f"dataplane-{node}.log"
        return path.read_text() if path.exists() else ""

    def synced(self, node: str) -> int:
        """How many successful syncs the node's dataplane logged so far (over restarts)."""
        return self.log(node).count("event=synced")


@pytest.fixture(scope="module", params=MODES)
def dplab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataplaneLab]:
    directory = tmp_path_factory.mktemp(f"dataplane-{request.param}")
    if request.param == "ipvs":
        from tests.dataplane.guest import guest_dplab

        yield from guest_dplab(directory)
        return
    topology, _ = topology_copy(directory, "default")
    lab = Lab(load_topology(topology), state_root=directory / "state")
    env = DataplaneLab(lab, make_kubectl(lab.paths.kubeconfig), request.param, directory)
    try:
        lab.up(timeout=90)
        for node in NODES:
            env.start(node)
        for node in NODES:
            wait_for(f"the first sync on {node}", lambda: env.synced(node) > 0, 60)  # noqa: B023
        yield env
    finally:
        env.stop_speakers()
        for node in list(env.processes):
            env.stop(node)
        try:
            lab.down()
        finally:
            failed = getattr(request.node, "dataplane_failed", False)
            if failed:
                for node in NODES:
                    print(f"--- dataplane-{node}.log (tail) ---\n{env.log(node)[-3000:]}")
