"""The kernel side of a lab pod: its network namespace, veth into the node's pod bridge, addresses, routes,
and the echo server process inside it. Thin: every call is one `ip` command or one process operation."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lab.ipam import PodAddresses
from lab.network import netns_exists as netns_exists
from lab.network import netns_names
from lab.supervisor import cmdline, find_marked_processes, is_running, signal_and_wait

log = logging.getLogger("lab.pods")

REPO_ROOT = Path(__file__).resolve().parents[1]


class PodNetworkError(RuntimeError):
    """An `ip` command that failed while building a pod's network; the message has its stderr."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise PodNetworkError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


# The pods' netns by the start of their name (`<prefix>-p-<node>-...`).
list_netns = netns_names


@dataclass(frozen=True)
class PodNetwork:
    node_netns: str
    bridge: str
    netns: str
    host_veth: str
    addresses: PodAddresses
    gateway4: str
    gateway6: str | None


def setup_network(net: PodNetwork) -> None:
    """Build the pod's netns; on failure whatever was made is removed again."""
    try:
        ip("netns", "add", net.netns)
        ip(
            "-n",
            net.node_netns,
            "link",
            "add",
            net.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            net.netns,
        )
        ip("-n", net.node_netns, "link", "set", net.host_veth, "master", net.bridge, "up")
        # Hairpin, as the bridge CNI plugin's hairpinMode (and kubelet's hairpin-veth): a pod reaching its
        # own Service is DNATed back to itself, and with bridge netfilter that frame leaves by the port it
        # came in.
        ip("-n", net.node_netns, "link", "set", net.host_veth, "type", "bridge_slave", "hairpin", "on")
        ip("-n", net.netns, "link", "set", "lo", "up")
        ip("-n", net.netns, "addr", "add", f"{net.addresses.ipv4}/{net.addresses.prefix4}", "dev", "eth0")
        if net.addresses.ipv6 and net.gateway6:
            # nodad: the address is ours by allocation, and waiting for DAD would delay readiness by seconds.
            ip(
                "-n",
                net.netns,
                "addr",
                "add",
                f"{net.addresses.ipv6}/{net.addresses.prefix6}",
                "dev",
                "eth0",
                "nodad",
            )
        ip("-n", net.netns, "link", "set", "eth0", "up")
        ip("-n", net.netns, "route", "add", "default", "via", net.gateway4, "dev", "eth0")
        if net.addresses.ipv6 and net.gateway6:
            ip("-n", net.netns, "-6", "route", "add", "default", "via", net.gateway6, "dev", "eth0")
    except PodNetworkError:
        teardown_network(net.node_netns, net.netns, net.host_veth)
        raise


def teardown_network(node_netns: str, netns: str, veth: str) -> None:
    """Remove the pod's netns and veth (idempotent). Kill its processes first, or the netns lingers."""
    if netns_exists(node_netns):
        ip("-n", node_netns, "link", "del", veth, check=False)
    if netns_exists(netns):
        ip("netns", "del", netns, check=False)


def processes_with(marker: str) -> list[int]:
    """PIDs whose command line contains `marker` (the pod's netns name is on the echo server's)."""
    return find_marked_processes([marker])


def pid_alive(pid: int, marker: str) -> bool:
    """Whether `pid` still runs and is still our process (its cmdline has `marker`), not a zombie."""
    return is_running(pid) and marker in cmdline(pid)


def kill_processes(marker: str, timeout: float = 3.0) -> None:
    """SIGTERM the processes with `marker`, SIGKILL what is left after `timeout`."""
    signal_and_wait(processes_with(marker), timeout)


def start_echo_server(
    netns: str, pod_name: str, tcp: tuple[int, ...], udp: tuple[int, ...], ready_file: Path, log_file: Path
) -> subprocess.Popen[bytes]:
    ready_file.unlink(missing_ok=True)
    cmd = ["ip", "netns", "exec", netns, sys.executable, "-m", "lab.echoserver", "--name", pod_name]
    for port in tcp:
        cmd += ["--tcp", str(port)]
    for port in udp:
        cmd += ["--udp", str(port)]
    cmd += ["--ready-file", str(ready_file), "--pod-netns", netns]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        # Own session: a Ctrl-C on the kubelet's terminal must not kill pods behind its back.
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True
        )
