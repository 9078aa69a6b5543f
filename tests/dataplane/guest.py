"""The dataplane behaviour suite's lab for IPVS mode: its network in a user-mode-linux guest (lab.uml_lab).

The host's kernel has no IPVS. The same tests run against a lab whose nodes, pods and client live in the
guest; the API server, the controller, kubectl and the test stay on the host. Only the ways the tests reach
into the network change: commands, probes and the dataplanes go through the guest's agent instead of
`ip netns exec` here, and the kernel state is read with the guest's tools (ipvsadm, ipset, iptables-legacy).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lab.topology import load_topology
from lab.uml_lab import GuestLab
from tests.conftest import make_kubectl
from tests.dataplane.conftest import NODES, REPO, TIME_SCALE, DataplaneLab, wait_for
from tests.lab.conftest import topology_copy

# What the agent imports once, so each probe and dataplane is a fork (docs/dataplane.md: the guest's costs).
PRELOAD = (
    "dataplane.daemon",
    "dataplane.ipvs.backend",
    "dataplane.cleanup",
    "speaker.daemon",
    "tests.dataplane.probe",
)


class GuestDataplaneLab(DataplaneLab):
    guest: GuestLab

    def run(self, netns: str, *argv: str, timeout: float = 60) -> Any:
        return self.guest.agent.run(argv, netns, timeout=timeout)

    def probe(self, netns: str, kind: str, host: str, port: int, *options: str) -> list[dict[str, Any]]:
        result = self.guest.agent.module("tests.dataplane.probe", [kind, host, str(port), *options], netns)
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    def popen_probe(self, netns: str, *args: str) -> Any:
        return self.guest.agent.stream("tests.dataplane.probe", args, netns)

    def start(self, node: str, *extra: str, mode: str | None = None) -> None:
        args = list(extra) if extra else self.args.get(node, [])
        self.args[node] = args
        self.modes[node] = mode or self.mode
        flags = [
            "--node", node,
            "--mode", self.modes[node],
            "--min-sync-period", "0.1",
            # The default period (kube-proxy's 30 s): each periodic check execs iptables-legacy twice, which
            # in the guest costs ~0.3 s of its one CPU; three nodes every 2 s would keep it saturated.
            "--sync-period", "30",
            "--health-address", "127.0.0.1",
            # The guest kernel has no nf_tables: its nodes' iptables is the legacy one.
            "--iptables-backend", "legacy",
        ]  # fmt: skip
        self.processes[node] = self.guest.agent.spawn(
            self.directory / f"dataplane-{node}.log",
            module="dataplane",
            args=[*flags, *args],
            netns=self.netns(node),
            env={"PYTHONPATH": str(REPO), "KUBECONFIG": str(self.lab.paths.node_kubeconfig)},
            cwd=str(REPO),
        )

    def start_speaker(self, node: str, key_file: Path) -> Any:
        self.speakers[node] = self.guest.agent.spawn(
            self.directory / f"speaker-{node}.log",
            module="speaker",
            args=self.speaker_args(node, key_file),
            netns=self.netns(node),
            env={"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
            cwd=str(REPO),
        )
        return self.speakers[node]

    def rules(self, node: str, mode: str | None = None) -> str:
        mode = mode or self.mode
        netns = self.netns(node)
        # IPVS mode's own objects are its virtual servers and its ipsets (whose entries carry the Service's
        # name); its iptables rules are constant, and shared with iptables mode.
        if mode == "ipvs":
            tools = [["ipvsadm", "-Ln"], ["ipset", "list"]]
        elif mode == "iptables":
            tools = [["iptables-legacy-save"], ["ip6tables-legacy-save"]]
        else:
            raise NotImplementedError(f"rules() for mode {mode} in the guest")
        return "\n".join(self.run(netns, *tool).stdout for tool in tools)


def guest_dplab(
    directory: Path, mode: str = "ipvs", preload: tuple[str, ...] = PRELOAD
) -> Iterator[GuestDataplaneLab]:
    topology, _ = topology_copy(directory, "default")
    guest = GuestLab(load_topology(topology), state_root=directory / "state", preload=preload)
    env = GuestDataplaneLab(guest.lab, make_kubectl(guest.paths.kubeconfig), mode, directory)
    env.guest = guest
    TIME_SCALE["value"] = 3.0
    try:
        guest.up()
        for node in NODES:
            env.start(node)
        for node in NODES:
            wait_for(f"the first sync on {node}", lambda: env.synced(node) > 0, 120)  # noqa: B023
        yield env
    finally:
        env.stop_speakers()
        for node in list(env.processes):
            env.stop(node)
        print(f"--- guest (tail) ---\n{guest.guest_output()[-2000:]}", file=sys.stderr)
        guest.down()
        TIME_SCALE["value"] = 1.0
