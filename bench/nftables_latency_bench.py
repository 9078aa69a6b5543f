"""First-packet latency to a ClusterIP behind 100 and behind 10,000 Services, in nftables and iptables mode.

Each new TCP connection's first packet walks the node's NAT rules (later packets follow conntrack), so the
time of `connect()` from a pod to a ClusterIP shows what the rules cost. Four "nodes" are built side by side
in fresh network namespaces (`nftl-<pid>-*`, made and removed by this script, veths created inside them):
nftables mode with 100 and with 10,000 Services, iptables mode (iptables-nft, the system's iptables) with 100
and with 10,000, 10 endpoints each; one Service in each leads to a real server. A client namespace reaches all
four, and connects to them in turn, so load from other jobs falls on all alike. Reported: median and p90 of
`connect()` per node, and per mode the ratio 10,000 / 100 of the medians.

The target Service is in the middle of the Service list: iptables mode's KUBE-SERVICES chain is walked
linearly, and half of it is its average.

Usage: python -m bench.nftables_latency_bench [--connections 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from bench.nftables_common import bench_services, cluster_ip
from dataplane.backend import RenderConfig
from dataplane.iptables.restore import full_restore
from dataplane.iptables.rules import JUMPS, render_service, render_static
from dataplane.model import Endpoint, ServiceInfo, ServiceKey
from dataplane.nftables.transaction import Record, plan_full

# node: (mode, Services, cluster IP /16, client-side /24, server-side /24)
NODES = {
    "nsmall": ("nftables", 100, "10.96", "10.250.1", "10.250.2"),
    "nbig": ("nftables", 10000, "10.97", "10.250.3", "10.250.4"),
    "ismall": ("iptables", 100, "10.98", "10.250.5", "10.250.6"),
    "ibig": ("iptables", 10000, "10.99", "10.250.7", "10.250.8"),
}
SERVER_PORT = 8080

SERVER = textwrap.dedent(
    """
    import socket
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 8080))
    server.listen(1024)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        conn.close()
    """
)

CLIENT = textwrap.dedent(
    """
    import json, socket, sys, time
    targets, count = json.loads(sys.argv[1]), int(sys.argv[2])
    samples = {name: [] for name in targets}
    for i in range(count):
        order = list(targets.items())
        for name, ip in order[i % len(order):] + order[:i % len(order)]:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00")
            start = time.perf_counter()
            sock.connect((ip, 80))
            samples[name].append(time.perf_counter() - start)
            sock.close()
    print(json.dumps(samples))
    """
)


def sh(netns: str, *argv: str, input: str | None = None) -> None:
    subprocess.run(["ip", "netns", "exec", netns, *argv], check=True, input=input, text=True)


@contextmanager
def lab() -> Iterator[dict[str, str]]:
    names = {role: f"nftl-{os.getpid()}-{role}" for role in ("client", "server", *NODES)}
    try:
        for name in names.values():
            subprocess.run(["ip", "netns", "add", name], check=True)
            sh(name, "ip", "link", "set", "lo", "up")
        for node_name, (_, _, _, client_net, server_net) in NODES.items():
            node = names[node_name]
            sh(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            for peer, net, side in ((names["client"], client_net, "c"), (names["server"], server_net, "v")):
                inner, outer = f"{node_name}{side}", f"{side}{node_name}"
                sh(node, "ip", "link", "add", inner, "type", "veth", "peer", "name", outer, "netns", peer)
                sh(node, "ip", "addr", "add", f"{net}.1/24", "dev", inner)
                sh(node, "ip", "link", "set", inner, "up")
                sh(peer, "ip", "addr", "add", f"{net}.2/24", "dev", outer)
                sh(peer, "ip", "link", "set", outer, "up")
        for _, _, prefix, client_net, server_net in NODES.values():
            sh(names["client"], "ip", "route", "add", f"{prefix}.0.0/16", "via", f"{client_net}.1")
            sh(names["server"], "ip", "route", "add", f"{client_net}.0/24", "via", f"{server_net}.1")
        yield names
    finally:
        for name in names.values():
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def services(node: str) -> tuple[dict[ServiceKey, ServiceInfo], str]:
    _, count, prefix, _, server_net = NODES[node]
    found = bench_services(count, prefix=prefix)
    target = count // 2
    key = ServiceKey("bench", f"svc-{target}")
    info = found[key]
    found[key] = replace(info, endpoints=((Endpoint(f"{server_net}.2", SERVER_PORT),),))
    return found, cluster_ip(target, prefix)


def load(node: str, netns: str) -> float:
    """Write the rules of `node` into its namespace; the seconds it took."""
    mode = NODES[node][0]
    snapshot, _ = services(node)
    started = time.monotonic()
    if mode == "nftables":
        text = plan_full(Record(), RenderConfig(family=4, comments=False), snapshot, None).text
        sh(netns, "nft", "-f", "-", input=text)
    else:
        config = RenderConfig(family=4, comments=False)
        rendered = {key: render_service(info, config) for key, info in snapshot.items()}
        # In transactions of 50 Services, as iptables mode writes with iptables-nft.
        text = full_restore(render_static(config), rendered, missing_jumps=JUMPS, services_per_transaction=50)
        sh(netns, "iptables-nft-restore", "--noflush", input=text)
    return time.monotonic() - started


def measure(connections: int) -> dict[str, Any]:
    with lab() as names:
        loads = {node: round(load(node, names[node]), 2) for node in NODES}
        server = subprocess.Popen(
            ["ip", "netns", "exec", names["server"], sys.executable, "-c", SERVER],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            targets = {node: services(node)[1] for node in NODES}
            client = ["ip", "netns", "exec", names["client"], sys.executable, "-c", CLIENT]
            output = subprocess.run(
                [*client, json.dumps(targets), str(connections)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        finally:
            server.kill()
            server.wait()
    samples = json.loads(output)
    result: dict[str, Any] = {"connections": connections, "load_seconds": loads}
    for node, values in samples.items():
        ordered = sorted(values)
        mode, count = NODES[node][:2]
        result.setdefault(mode, {})[count] = {
            "p50_us": round(statistics.median(ordered) * 1e6, 1),
            "p90_us": round(ordered[int(0.9 * (len(ordered) - 1))] * 1e6, 1),
        }
    for mode in ("nftables", "iptables"):
        result[mode]["ratio_p50"] = round(result[mode][10000]["p50_us"] / result[mode][100]["p50_us"], 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    args = parser.parse_args()
    result = measure(args.connections)
    result["loadavg"] = os.getloadavg()[0]
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
