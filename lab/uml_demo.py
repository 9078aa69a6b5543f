"""`scripts/demo.sh --mode ipvs`: the README's main job with the dataplane in IPVS mode, for a kernel without
IPVS. The lab's network runs in a user-mode-linux guest (lab.uml_lab); the API server, the ironlb controller
and kubectl stay on the host. It shows what the tutorial's IPVS step looks like on ironlb: the Services as
IPVS virtual servers, every node holding the LoadBalancer IP on kube-ipvs0, strictARP set by the dataplane,
and only the elected speaker's node answering ARP for the IP. Then it powers the guest off and removes the
host side (a guest lives only as long as the process that started it).

    python -m lab.uml_demo
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from lab.runner import REPO_ROOT
from lab.topology import parse_topology
from lab.uml_agent import GuestProcess
from lab.uml_lab import GuestLab

TOPOLOGY = REPO_ROOT / "lab" / "topologies" / "default.clab.yml"
NODES = ("node1", "node2", "node3")
LB_IP = "192.168.10.90"
PRELOAD = ("dataplane.daemon", "dataplane.ipvs.backend", "speaker.daemon")
TUTORIAL = REPO_ROOT / "examples" / "tutorial"


def demo_topology() -> dict[str, Any]:
    """The default lab under its own name, prefix and management subnet, so it can run beside
    `scripts/demo.sh`'s own lab."""
    doc: dict[str, Any] = yaml.safe_load(TOPOLOGY.read_text())
    doc["name"], doc["prefix"] = "ironlb-ipvs", "ilbv"
    doc["mgmt"] = {
        "network": "ironlb-ipvs-mgmt",
        "ipv4-subnet": "172.20.31.0/24",
        "ipv6-subnet": "fd00:172:20:31::/64",
    }
    return doc


def show(title: str, result: subprocess.CompletedProcess[str]) -> None:
    print(f"\n\033[1m$ {title}\033[0m", flush=True)
    print((result.stdout + result.stderr).rstrip(), flush=True)


def wait(what: str, probe: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")


class Demo:
    def __init__(self, state_root: Path) -> None:
        self.guest = GuestLab(parse_topology(demo_topology()), state_root=state_root, preload=PRELOAD)
        self.paths = self.guest.paths
        self.logs = self.paths.state_dir / "logs"
        self.processes: list[GuestProcess] = []
        self.controller: subprocess.Popen[bytes] | None = None
        self.env = dict(os.environ, KUBECONFIG=str(self.paths.kubeconfig), PYTHONPATH=str(REPO_ROOT))

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["kubectl", *args], capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"kubectl {shlex.join(args)}: {done.stderr.strip()}")
        return done

    def node(self, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.guest.agent.run(argv, self.guest.plan.node(name).netns)

    def spawn(self, node: str, module: str, args: Sequence[str]) -> None:
        self.processes.append(
            self.guest.agent.spawn(
                self.logs / f"{module}-{node}.log",
                module=module,
                args=args,
                netns=self.guest.plan.node(node).netns,
                env={"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"},
                cwd=str(REPO_ROOT),
            )
        )

    def run(self) -> None:
        print(
            "Booting a user-mode-linux guest with the lab's nodes, pods and client (about a minute) ...",
            flush=True,
        )
        self.guest.up()
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / "controller.log").open("ab") as log:
            self.controller = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "controller",
                    "--kubeconfig",
                    str(self.paths.kubeconfig),
                    "--metrics-address",
                    "127.0.0.1",
                    "--metrics-port",
                    "0",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=REPO_ROOT,
            )
        key = self.paths.state_dir / "memberlist-key"
        key.write_text(secrets.token_hex(16) + "\n")
        key.chmod(0o600)
        node_kubeconfig = str(self.paths.node_kubeconfig)
        for node in NODES:
            self.spawn(
                node,
                "dataplane",
                [
                    "--node",
                    node,
                    "--mode",
                    "ipvs",
                    "--kubeconfig",
                    node_kubeconfig,
                    "--iptables-backend",
                    "legacy",
                    "--health-address",
                    "127.0.0.1",
                ],
            )
        self.kubectl(
            "apply",
            "-f",
            str(REPO_ROOT / "config" / "namespace.yaml"),
            "-f",
            str(REPO_ROOT / "config" / "crd"),
        )
        self.kubectl("apply", "-f", str(TUTORIAL / "metallb-config.yaml"))
        self.kubectl(
            "apply",
            "-f",
            str(TUTORIAL / "05-nodeport-service.yaml"),
            "-f",
            str(TUTORIAL / "nginx-metallb.yaml"),
        )
        print("waiting for the pods, the EXTERNAL-IP and the IPVS virtual servers ...", flush=True)
        self.kubectl(
            "wait",
            "--for=condition=Available",
            "deployment/nginx-app",
            "deployment/nginx-metallb",
            "--timeout=300s",
            timeout=320,
        )
        # The speakers start once the pods run: the guest has one CPU, and the kubelets start the pods.
        for node in NODES:
            speaker = ["--node", node, "--kubeconfig", node_kubeconfig, "--ml-secret-key-path", str(key)]
            self.spawn(node, "speaker", [*speaker, "--exclude-interfaces", "^eth0$"])
        wait(
            "the EXTERNAL-IP",
            lambda: LB_IP in self.kubectl("get", "svc", "nginx-metallb", "-o", "json").stdout,
            60,
        )
        wait(
            "the LoadBalancer IP on every node's kube-ipvs0",
            lambda: all(
                LB_IP in self.node(n, "ip", "addr", "show", "dev", "kube-ipvs0").stdout for n in NODES
            ),
            120,
        )
        show("kubectl get svc", self.kubectl("get", "svc"))
        show("node1# ipvsadm -Ln", self.node("node1", "ipvsadm", "-Ln"))
        for node in NODES:
            show(
                f"{node}# ip -br addr show kube-ipvs0",
                self.node(node, "ip", "-br", "addr", "show", "kube-ipvs0"),
            )
        show(
            "node1# sysctl net.ipv4.conf.all.arp_ignore net.ipv4.conf.all.arp_announce (set by ironlb)",
            self.node("node1", "sysctl", "net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.all.arp_announce"),
        )
        logged = [
            line
            for line in (self.logs / "dataplane-node1.log").read_text().splitlines()
            if "strict_arp" in line
        ]
        print("\n".join(logged), flush=True)
        show("kubectl get servicel2status -A", wait("the announcing node", self._status, 60))
        show(
            f"client$ arping -c 3 -I eth1 {LB_IP}   (one node answers, though every node holds the IP)",
            wait(
                "an ARP answer",
                lambda: self._ok(self.node("client", "arping", "-c", "3", "-I", "eth1", LB_IP)),
                60,
            ),
        )
        show(
            f"client$ curl -s http://{LB_IP}:8090/",
            self.node("client", "curl", "-s", "-m", "5", f"http://{LB_IP}:8090/"),
        )
        show(
            "client$ curl -s http://192.168.10.12:30001/  (a NodePort)",
            self.node("client", "curl", "-s", "-m", "5", "http://192.168.10.12:30001/"),
        )

    def _status(self) -> subprocess.CompletedProcess[str] | None:
        result = self.kubectl("get", "servicel2status", "-A", check=False)
        return result if "nginx-metallb" in result.stdout else None

    @staticmethod
    def _ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str] | None:
        return result if result.returncode == 0 else None

    def down(self) -> None:
        for process in self.processes:
            process.terminate()
        if self.controller is not None:
            self.controller.terminate()
            try:
                self.controller.wait(15)
            except subprocess.TimeoutExpired:
                self.controller.kill()
                self.controller.wait()
        self.guest.down()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.uml_demo", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--keep-logs", help="copy the lab's logs here before removing it")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ilbv-demo-") as state_root:
        demo = Demo(Path(state_root))
        try:
            demo.run()
            print("\nIPVS mode works: removing the lab (the guest powers off).", flush=True)
            return 0
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            print(f"lab.uml_demo: {exc}", file=sys.stderr)
            print(json.dumps({"guest": demo.guest.guest_output()[-2000:]}), file=sys.stderr)
            return 1
        finally:
            if args.keep_logs:
                subprocess.run(["cp", "-r", str(demo.logs), args.keep_logs], check=False)
            demo.down()


if __name__ == "__main__":
    sys.exit(main())
