"""A lab whose network lives in a user-mode-linux guest (a kernel with IPVS), its control plane on the host.

This machine's kernel has no IPVS; lab.uml's guest has. Everything that forwards packets (the nodes, the
pods, the client, the segment between them, and the programs acting on them: kubelets, dataplanes, probes)
runs inside the guest. What only talks to the API (the API server, the lab's controllers, the ironlb
controller, kubectl, the test itself) stays on the host, where starting a process costs ~20 times less:

    host                                          guest (linux.uml, one CPU)
    API server, lab controllers ── <p>-mgmt ── <p>-tap ═ eth0 ── <p>-mgmt ── node1..3, client (eth0: mgmt)
    (gateway address)              bridge      tuntap          bridge        pods, segment bridge, kubelets
    the test, kubectl, controller                                            agent (lab.uml_agent)

The guest's lab network is the one `python -m lab up` builds on the host (same names, addresses and
routes); only the management bridge is split, its two halves joined by the guest's network device. The
host reaches the guest through lab.uml_agent, listening on the guest's half of the management bridge.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from lab import network
from lab.runner import REPO_ROOT, Lab, kubelet_argv, kubelet_process_name
from lab.topology import (
    LabPlan,
    Topology,
    node_sysctls,
    render_host_batch,
    render_node_batch,
    render_switch_batch,
)
from lab.uml import UmlGuest
from lab.uml_agent import AgentClient, GuestProcess

log = logging.getLogger("lab.uml_lab")

AGENT_PORT = 7070
GUEST_NIC = "umlnet0"  # the guest's network device (the host's tap at the other end)
DEFAULT_MEM = "1536M"
# Imported once by the agent, so kubelets start as forks (lab.echoserver: the pods' server).
BASE_PRELOAD = ("lab.kubelet",)


def tap_name(plan: LabPlan) -> str:
    return f"{plan.prefix}-tap"


def agent_address(plan: LabPlan) -> str:
    """The guest's address on the management network: the subnet's last host address."""
    network_ = plan.mgmt_gateway4.network
    return str(network_.broadcast_address - 1)


def host_batch(plan: LabPlan) -> list[str]:
    """`ip -batch` lines in the host netns: the management bridge with the gateway, and the guest's tap."""
    tap = tap_name(plan)
    lines = [
        f"link add {plan.mgmt_bridge} type bridge",
        f"addr add {plan.mgmt_gateway4} dev {plan.mgmt_bridge}",
    ]
    if plan.mgmt_gateway6 is not None:
        lines.append(f"addr add {plan.mgmt_gateway6} dev {plan.mgmt_bridge} nodad")
    lines += [
        f"link set {plan.mgmt_bridge} up",
        f"tuntap add {tap} mode tap",
        f"link set {tap} master {plan.mgmt_bridge}",
        f"link set {tap} up",
    ]
    return lines


def guest_batch(plan: LabPlan) -> list[str]:
    """The host part of the lab's network (namespaces, veths to the management bridge) as built inside the
    guest, whose management bridge the prelude made: without the bridge itself and its gateway."""
    bridge = plan.mgmt_bridge
    own = (f"link add {bridge} ", f"link set {bridge} up")
    return [
        line
        for line in render_host_batch(plan)
        if not line.startswith(own) and not (line.startswith("addr add ") and f" dev {bridge}" in line)
    ]


def guest_prelude(plan: LabPlan) -> str:
    """Shell run first in the guest: the guest's half of the management bridge, joined to the host's by the
    guest's network device, with the agent's address."""
    bridge = plan.mgmt_bridge
    prefix = plan.mgmt_gateway4.network.prefixlen
    return "; ".join(
        [
            "set -e",
            # The lab's nodes have an eth0 of their own, made from the guest's root namespace.
            f"ip link set eth0 name {GUEST_NIC}",
            f"ip link add {bridge} type bridge",
            f"ip link set {GUEST_NIC} master {bridge}",
            f"ip link set {GUEST_NIC} up",
            f"ip link set {bridge} up",
            f"ip addr add {agent_address(plan)}/{prefix} dev {bridge}",
        ]
    )


class GuestLab:
    """`up()` builds it, `down()` removes everything (idempotent; also after a failed `up`)."""

    def __init__(
        self,
        topology: Topology,
        state_root: Path,
        preload: Sequence[str] = (),
        mem: str = DEFAULT_MEM,
    ) -> None:
        self.lab = Lab(topology, state_root=state_root)
        self.plan = self.lab.plan
        self.paths = self.lab.paths
        self.preload = tuple(dict.fromkeys((*BASE_PRELOAD, *preload)))
        self.mem = mem
        self.guest: UmlGuest | None = None
        self.agent = AgentClient((agent_address(self.plan), AGENT_PORT))
        self.kubelets: dict[str, GuestProcess] = {}

    # ---- life cycle ------------------------------------------------------------------------------------

    def up(self, timeout: float = 240.0) -> None:
        try:
            self._up(timeout)
        except BaseException:
            log.error("event=guest-lab-up-failed lab=%s", self.plan.name)
            self.down()
            raise

    def _up(self, timeout: float) -> None:
        network.preflight(self.plan)
        self.paths.state_dir.mkdir(parents=True, exist_ok=True)
        network.ip_batch(host_batch(self.plan))
        agent = [
            sys.executable, "-m", "lab.uml_agent",
            "--listen", f"{agent_address(self.plan)}:{AGENT_PORT}",
            "--preload", ",".join(self.preload),
        ]  # fmt: skip
        command = f"{guest_prelude(self.plan)}; exec {shlex.join(agent)}"
        self.guest = UmlGuest(
            ["sh", "-c", command],
            {"PYTHONPATH": str(REPO_ROOT)},
            cwd=REPO_ROOT,
            mem=self.mem,
            kernel_args=[f"eth0=tuntap,{tap_name(self.plan)}"],
        )
        self.guest.start()
        # The control plane starts on the host while the guest boots and imports.
        self.lab.start_control_plane(timeout)
        self.agent.wait_ready(timeout, alive=self.guest.running)
        self._build_network()
        for node in self.plan.k8s_nodes:
            self.start_kubelet(node.name)
        self.lab.wait_nodes_ready(timeout)
        log.info("event=guest-lab-up lab=%s", self.plan.name)

    def _build_network(self) -> None:
        self._batch(guest_batch(self.plan))
        self._batch(render_switch_batch(self.plan), self.plan.switch_netns)
        for node in self.plan.nodes:
            sysctls = [f"{key}={value}" for key, value in node_sysctls(node).items()]
            self.check(self.agent.run(["sysctl", "-q", "-w", *sysctls], node.netns))
            self._batch(render_node_batch(self.plan, node), node.netns)

    def _batch(self, lines: Sequence[str], netns: str | None = None) -> None:
        self.check(self.agent.run(["ip", "-batch", "-"], netns, input="\n".join(lines) + "\n"))

    @staticmethod
    def check(result: subprocess.CompletedProcess[str]) -> None:
        if result.returncode != 0:
            raise network.NetworkError(f"in the guest: {shlex.join(result.args)}: {result.stderr.strip()}")

    def start_kubelet(self, name: str) -> GuestProcess:
        node = self.plan.node(name)
        state_dir = self.paths.kubelet_dir(node)
        state_dir.mkdir(parents=True, exist_ok=True)
        argv = kubelet_argv(self.plan, node, self.paths.node_kubeconfig, state_dir)
        logs = self.paths.state_dir / "logs"
        logs.mkdir(exist_ok=True)
        process = self.agent.spawn(
            logs / f"{kubelet_process_name(node)}.log",
            module="lab.kubelet",
            args=argv[3:],  # after `python -m lab.kubelet`
            env={"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"},
            cwd=str(REPO_ROOT),
        )
        self.kubelets[name] = process
        return process

    def down(self) -> None:
        """Power the guest off (its namespaces and processes go with it), then the host side."""
        if self.guest is not None:
            with contextlib.suppress(Exception):
                self.guest.close()
            self.guest = None
        self.lab.down()

    def guest_output(self) -> str:
        """What the guest printed (its agent's output and the end of its console), for failure reports."""
        if self.guest is None or self.guest.job is None:
            return ""
        stdout, stderr, console = self.guest.output
        return f"{stdout}{stderr}{console[-3000:]}"

