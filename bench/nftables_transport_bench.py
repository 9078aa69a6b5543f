"""How to talk to nftables, and which ruleset shape to write: the measurements behind nftables mode's design.

Every measurement runs in a fresh network namespace (`nftb-<pid>-<n>`, deleted afterwards), in a child
process started with `ip netns exec`, so nothing touches the host's ruleset. N Services × 10 endpoints
(ClusterIP, TCP):

- **transport**: the full ruleset (as nftables mode renders it) loaded by an `nft -f` child and by
  libnftables in-process (Debian's python3-nftables); then a one-Service update (one endpoint replaced: a
  delete and an add in the endpoints map, one transaction) by each, 20 times; and pyroute2's nftables API,
  which cannot write this ruleset at all (no verdict maps, no map data, no concatenations, one transaction
  per call, and its set calls fail in 0.9): the round trip of one table command, the floor of any update
  through it.
- **shape**: kube-proxy's shape (a chain per Service with its endpoints inline, reached from a verdict map)
  against ours (a few shared chains, endpoints in one map), each loaded with `nft -f` into a fresh netns; and
  the cost of `nft -f` of a one-Service change with each shape loaded (nft fills its cache from the kernel
  first).

Usage: python -m bench.nftables_transport_bench [--services 1000,5000,10000] [--skip-kube-proxy-shape-above N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.nftables_common import ROOT, bench_services, fresh_netns
from dataplane.backend import RenderConfig
from dataplane.nftables.transaction import Record, plan_full

CONFIG = RenderConfig(family=4, local_cidrs=("10.244.0.0/16",), comments=False)


def full_text(services: int) -> str:
    return plan_full(Record(), CONFIG, bench_services(services), None).text


def kube_proxy_shape(services: int) -> str:
    """kube-proxy's nftables layout, reduced to ClusterIP dispatch: a chain per Service (numgen over
    endpoint chains would add 10 more chains per Service; endpoints are inline DNATs here, its best case)."""
    lines = ["table ip kpshape {"]
    elements = []
    chains = []
    for index, (key, info) in enumerate(sorted(bench_services(services).items())):
        port, endpoints = info.port_endpoints()[0]
        name = f"service-{index:05d}-{key.namespace}/{key.name}/tcp/http"
        choices = ", ".join(f"{i} : {ep.ip} . {ep.port}" for i, ep in enumerate(endpoints))
        rule = f"meta l4proto tcp dnat ip to numgen random mod {len(endpoints)} map {{ {choices} }}"
        chains.append(f"\tchain {name} {{\n\t\t{rule}\n\t}}")
        elements.append(f"{port.cluster_ip} . tcp . {port.port} : goto {name}")
    lines.append(
        "\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n"
        f"\t\telements = {{ {', '.join(elements)} }}\n\t}}"
    )
    lines += chains
    lines.append(
        "\tchain nat-output {\n\t\ttype nat hook output priority -100; policy accept;\n"
        "\t\tip daddr . meta l4proto . th dport vmap @service-ips\n\t}"
    )
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---- the child: runs inside the netns ------------------------------------------------------------------


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(action: Any) -> tuple[float, float]:
    cpu, start = _cpu(), time.perf_counter()
    action()
    return time.perf_counter() - start, _cpu() - cpu


def _nft_file(path: str) -> None:
    subprocess.run(["nft", "-f", path], check=True)


def _nft_stdin(text: str) -> None:
    subprocess.run(["nft", "-f", "-"], input=text, text=True, check=True)


def _update_texts(count: int) -> list[str]:
    """One endpoint of Service i replaced, as a partial sync of our shape sends it (delete + add in the
    endpoints map), for 20 different Services."""
    out = []
    for i in range(20):
        index = (i * 7919) % count
        cluster_ip = f"10.96.{index >> 8}.{index & 255}"
        out.append(
            f"delete element ip ironlb endpoints-10 {{ {cluster_ip} . tcp . 80 . 0 }}\n"
            f"add element ip ironlb endpoints-10 {{ {cluster_ip} . tcp . 80 . 0 : 10.127.{i}.1 . 8080 }}\n"
        )
    return out


def child_transport(services: int, transport: str, path: str) -> dict[str, Any]:
    text = Path(path).read_text()
    result: dict[str, Any] = {}
    if transport == "nft":
        result["full_s"], result["full_cpu_s"] = _timed(lambda: _nft_file(path))
        samples = [_timed(lambda t=t: _nft_stdin(t))[0] for t in _update_texts(services)]
    elif transport == "libnftables":
        import nftables

        nft = nftables.Nftables()

        def run(body: str) -> None:
            rc, _, error = nft.cmd(body)
            if rc:
                raise RuntimeError(error)

        result["full_s"], result["full_cpu_s"] = _timed(lambda: run(text))
        samples = [_timed(lambda t=t: run(t))[0] for t in _update_texts(services)]
    else:
        # pyroute2 0.9's nftables API: each call is its own transaction, it has no verdict maps, map data or
        # concatenations, and its set API fails (TypeError in NFTables.sets). What it can do is a table
        # command: its round trip (one transaction of one message) is the floor of any update through it.
        from pyroute2.nftables.main import NFTables

        nft = NFTables(nfgen_family=2)
        samples = []
        for _ in range(20):
            samples.append(_timed(lambda: nft.table("add", name="p2"))[0])
        nft.close()
    result["update_p50_ms"] = statistics.median(samples) * 1000
    result["update_max_ms"] = max(samples) * 1000
    return result


def child_shape(path: str, update: str) -> dict[str, Any]:
    full, cpu = _timed(lambda: _nft_file(path))
    samples = [_timed(lambda: _nft_stdin(update))[0] for _ in range(5)]
    return {"full_s": full, "full_cpu_s": cpu, "update_p50_ms": statistics.median(samples) * 1000}


# ---- the parent ----------------------------------------------------------------------------------------


def in_netns(args: list[str]) -> dict[str, Any]:
    with fresh_netns("nftb") as netns:
        output = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "bench.nftables_transport_bench", *args],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
    return dict(json.loads(output))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--services", default="1000,5000,10000")
    parser.add_argument("--skip-kube-proxy-shape-above", type=int, default=10000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "transport":
            result = child_transport(int(rest[0]), rest[1], rest[2])
        else:
            result = child_shape(rest[0], Path(rest[1]).read_text())
        print(json.dumps(result))
        return 0

    print(f"# machine: nproc={os.cpu_count()} {platform.machine()} kernel {platform.release()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="nftb-") as tmp:
        for count in [int(n) for n in args.services.split(",")]:
            ours = Path(tmp) / f"ours-{count}.nft"
            ours.write_text(full_text(count))
            load = os.getloadavg()[0]
            for transport in ("nft", "libnftables", "pyroute2"):
                row = in_netns(["--child", "transport", str(count), transport, str(ours)])
                row = {"services": count, "transport": transport, "load": load, **row}
                print(json.dumps(row), flush=True)
            update = Path(tmp) / "update.nft"
            update.write_text(_update_texts(count)[0])
            row = in_netns(["--child", "shape", str(ours), str(update)])
            print(json.dumps({"services": count, "shape": "ironlb", **row}), flush=True)
            if count <= args.skip_kube_proxy_shape_above:
                theirs = Path(tmp) / f"kp-{count}.nft"
                theirs.write_text(kube_proxy_shape(count))
                kp_update = Path(tmp) / "kp-update.nft"
                chain = "ip kpshape service-00000-bench/svc-0/tcp/http"
                kp_update.write_text(
                    f"flush chain {chain}\nadd rule {chain} meta l4proto tcp dnat ip to 10.127.0.1:8080\n"
                )
                row = in_netns(["--child", "shape", str(theirs), str(kp_update)])
                print(json.dumps({"services": count, "shape": "kube-proxy", **row}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
