"""Benchmark of the dataplane's modes (a script, not a test). Run as root.

    python -m bench.dataplane_bench [--mode iptables|nftables|ipvs] [--services 1000,5000,10000]
        [--endpoints 10] [--updates 5] [--json]

IPVS mode runs the whole benchmark inside a user-mode-linux guest (lab.uml) when this kernel has no IPVS:
the guest is slower than the host (one CPU, costly system calls), so compare its numbers with its floor only.

For each N, in fresh network namespaces made for the run (ilbtdb<hex>, deleted afterwards):

- an embedded API server (in memory) holding N ClusterIP Services and N EndpointSlices of `--endpoints`
  ready endpoints each, and the real daemon (`python -m dataplane --mode MODE`) watching it, all inside
  one namespace (the API server listens on that namespace's loopback);
- full sync: the daemon's first sync (its own `seconds=`: rendering and writing everything), and the floor
  beside it, in the same run (measured before and after the daemon; the mean is the floor): the same rules
  loaded from a file into another fresh namespace, by `iptables-restore` (one plain transaction per table)
  in iptables mode, by `nft -f` in nftables mode, by `ipvsadm-restore` of the same virtual and real servers in
  IPVS mode;
- one-Service update: the endpoints of one Service replaced through the API, `--updates` times: the partial
  sync's duration, and the time from the API write to the sync's log line;
- RSS: the daemon's VmRSS after the updates, and its peak (VmHWM);
- CPU: the floor's (its child's), and the full sync's where the mode logs it (`cpu=`: the sync thread's and
  its children's), since wall times on a shared machine follow the load.

Prints a Markdown table (and JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.apiserver_bench import Client, cpu_model  # noqa: E402
from dataplane.backend import RenderConfig  # noqa: E402
from dataplane.iptables.restore import full_restore  # noqa: E402
from dataplane.iptables.rules import JUMPS, render_service, render_static  # noqa: E402
from dataplane.ipvs import render as ipvs_render  # noqa: E402
from dataplane.nftables.transaction import Record, plan_full  # noqa: E402
from dataplane.tracker import ChangeTracker  # noqa: E402
from lab.apiserver.process import ApiServerProcess  # noqa: E402

NODE = "bench-node"
UML_MEM = "3G"  # 10,000 Services x 10 endpoints: the API server, the daemon and IPVS's own tables
SYNCED = re.compile(r"event=synced full=(\w+) services=(\d+) changed=(\d+) seconds=([\d.]+)[^\n]*")
CPU = re.compile(r" cpu=([\d.]+)")  # the CPU seconds of the sync, where the mode reports them


def service(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"svc-{i:05d}", "namespace": "default"},
        "spec": {"selector": {"app": f"a{i}"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def address(n: int) -> str:
    return f"10.{128 + n // 65536}.{(n // 256) % 256}.{n % 256}"


def endpoint_slice(i: int, endpoints: int, generation: int = 0) -> dict[str, Any]:
    base = (i * endpoints + generation * 7) % (1 << 20)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"svc-{i:05d}-x",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": f"svc-{i:05d}"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        "endpoints": [
            {
                "addresses": [address(base + k)],
                "conditions": {"ready": True},
                "nodeName": "other-node",
            }
            for k in range(endpoints)
        ],
    }


def node() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE},
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
    }


def status(pid: int) -> dict[str, float]:
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found


def rules_file(objects: list[dict[str, Any]], path: Path, mode: str) -> None:
    """The rules the daemon writes for these objects, as one plain input (the floor's)."""
    tracker = ChangeTracker(NODE)
    for obj in objects:
        (tracker.update_slice if obj["kind"] == "EndpointSlice" else tracker.update_service)(obj, 0.0)
    snapshot = tracker.take().snapshot
    if mode == "ipvs":
        path.write_text(ipvsadm_restore_input(snapshot.services.values()))
        return
    if mode == "nftables":
        nft = RenderConfig(family=4, local_cidrs=("10.244.1.0/24",), comments=False)
        path.write_text(plan_full(Record(), nft, snapshot.services, None).text)
        return
    config = RenderConfig(family=4, local_cidrs=("10.244.1.0/24",), comments=False)
    rendered = {key: render_service(info, config) for key, info in snapshot.services.items()}
    path.write_text(full_restore(render_static(config), rendered, missing_jumps=JUMPS))


def ipvsadm_restore_input(services: Any) -> str:
    """The virtual servers and real servers IPVS mode makes for these Services, as `ipvsadm-restore` input
    (NAT, weight 1; a ClusterIP Service has one virtual server per port)."""
    config = ipvs_render.IpvsConfig(families=(4,))
    flag = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}
    lines = []
    for info in services:
        objects = ipvs_render.render_service(info, config)
        for vs, vs_config in sorted(objects.virtual_servers.items()):
            lines.append(f"-A {flag[vs.protocol]} {vs.address}:{vs.port} -s {vs_config.scheduler}")
            for rs in sorted(objects.real_servers.get(vs, ()), key=str):
                lines.append(f"-a {flag[vs.protocol]} {vs.address}:{vs.port} -r {rs.ip}:{rs.port} -m -w 1")
    return "\n".join(lines) + "\n"


def netns(prefix: str = "ilbtdb") -> str:
    name = f"{prefix}{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    return name


FLOOR_TOOLS = {"iptables": ["iptables-restore"], "nftables": ["nft", "-f", "-"], "ipvs": ["ipvsadm-restore"]}
# The daemon's flags per mode beyond the common ones (a UML guest has no nf_tables: legacy iptables there).
MODE_FLAGS = {"ipvs": ["--iptables-backend", "legacy"]}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def floor(path: Path, mode: str) -> tuple[float, float]:
    """Seconds and CPU seconds of a plain load of `path` into a fresh namespace (iptables-restore, or
    nft -f)."""
    name = netns()
    try:
        with path.open() as rules:
            started, cpu = time.monotonic(), children_cpu()
            subprocess.run(["ip", "netns", "exec", name, *FLOOR_TOOLS[mode]], stdin=rules, check=True)
            return time.monotonic() - started, children_cpu() - cpu
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def wait_line(log: Path, after: int, pattern: re.Pattern[str], timeout: float) -> tuple[re.Match[str], float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text()[after:]
        match = pattern.search(text)
        if match:
            return match, time.monotonic()
        time.sleep(0.02)
    raise RuntimeError(f"no {pattern.pattern!r} in {log} within {timeout}s")


def inside(args: argparse.Namespace) -> dict[str, Any]:
    """Runs inside the benchmark's namespace: API server, objects, daemon, measurements."""
    n, endpoints = args.services, args.endpoints
    results: dict[str, Any] = {"mode": args.mode, "services": n, "endpoints": endpoints}
    with tempfile.TemporaryDirectory(prefix="ilbt-dpbench-") as tmpdir:
        tmp = Path(tmpdir)
        server = ApiServerProcess(None, log_file=tmp / "apiserver.log")
        server.start()
        daemon: subprocess.Popen[bytes] | None = None
        try:
            client = Client(server.kubeconfig, tmp)
            client.call("POST", "/api/v1/nodes", node())
            objects: list[dict[str, Any]] = []
            started = time.monotonic()
            for i in range(n):
                objects.append(client.call("POST", "/api/v1/namespaces/default/services", service(i)))
                objects.append(
                    client.call(
                        "POST",
                        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
                        endpoint_slice(i, endpoints),
                    )
                )
            results["populate_s"] = time.monotonic() - started
            rules = tmp / "rules.txt"
            rules_file(objects, rules, args.mode)
            results["rules_lines"] = len(rules.read_text().splitlines())
            floors = [floor(rules, args.mode)]
            log = tmp / "dataplane.log"
            env = dict(os.environ, PYTHONPATH=str(REPO))
            started = time.monotonic()
            with log.open("wb") as out:
                daemon = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "dataplane",
                        "--node",
                        NODE,
                        "--mode",
                        args.mode,
                        "--kubeconfig",
                        str(server.kubeconfig),
                        "--ip-families",
                        "4",
                        "--min-sync-period",
                        "0",
                        "--health-port",
                        "0",
                        *MODE_FLAGS.get(args.mode, []),
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=REPO,
                )
            match, seen = wait_line(log, 0, SYNCED, timeout=3600)
            results["full_sync_s"] = float(match.group(4))
            cpu = CPU.search(match.group(0))
            if cpu:
                results["full_sync_cpu_s"] = float(cpu.group(1))
            results["start_to_first_sync_s"] = seen - started
            results["synced_services"] = int(match.group(2))
            floors.append(floor(rules, args.mode))
            results["floor_s"] = statistics.mean(seconds for seconds, _ in floors)
            results["floor_cpu_s"] = statistics.mean(cpu for _, cpu in floors)
            results["floors_s"] = [seconds for seconds, _ in floors]
            updates, latencies, update_cpu = [], [], []
            target = n // 2
            for generation in range(1, args.updates + 1):
                offset = len(log.read_text())
                body = endpoint_slice(target, endpoints, generation)
                path = f"/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/svc-{target:05d}-x"
                current = client.call("GET", path)
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                written = time.monotonic()
                client.call("PUT", path, body)
                match, seen = wait_line(log, offset, SYNCED, timeout=120)
                updates.append(float(match.group(4)))
                latencies.append(seen - written)
                cpu = CPU.search(match.group(0))
                if cpu:
                    update_cpu.append(float(cpu.group(1)))
                time.sleep(0.2)
            results["update_s"] = updates
            results["update_latency_s"] = latencies
            if update_cpu:
                results["update_cpu_s"] = update_cpu
            results.update(status(daemon.pid))
        finally:
            if daemon is not None:
                daemon.terminate()
                daemon.wait(30)
            server.stop()
            server.cleanup()
    return results


def run_one(mode: str, n: int, endpoints: int, updates: int) -> dict[str, Any]:
    name = netns()
    try:
        result = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                name,
                sys.executable,
                "-m",
                "bench.dataplane_bench",
                "--inside",
                "--mode",
                mode,
                "--services",
                str(n),
                "--endpoints",
                str(endpoints),
                "--updates",
                str(updates),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-3000:])
        return dict(json.loads(result.stdout.splitlines()[-1]))
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| mode | Services × endpoints | full sync | floor | ratio | full sync CPU / floor CPU "
        "| one-Service update (median / max) | its CPU (median) | write → synced (median) | RSS (peak) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cpu = (
            f"{r['full_sync_cpu_s']:.2f} s / {r['floor_cpu_s']:.2f} s"
            if "full_sync_cpu_s" in r
            else f"- / {r['floor_cpu_s']:.2f} s"
        )
        update_cpu = f"{statistics.median(r['update_cpu_s']) * 1000:.0f} ms" if r.get("update_cpu_s") else "-"
        lines.append(
            f"| {r['mode']} | {r['services']:,} × {r['endpoints']} | {r['full_sync_s']:.2f} s "
            f"| {r['floor_s']:.2f} s | {r['full_sync_s'] / r['floor_s']:.2f}× | {cpu} "
            f"| {statistics.median(r['update_s']) * 1000:.0f} ms / {max(r['update_s']) * 1000:.0f} ms "
            f"| {update_cpu} | {statistics.median(r['update_latency_s']) * 1000:.0f} ms "
            f"| {r['VmRSS']:.0f} MB ({r['VmHWM']:.0f} MB) |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mode", default="iptables", choices=sorted(FLOOR_TOOLS))
    parser.add_argument("--services", default="1000,5000,10000")
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.inside:
        args.services = int(args.services)
        print(json.dumps(inside(args)))
        return 0
    if args.mode == "ipvs" and not Path("/proc/net/ip_vs").exists() and not os.environ.get("IRONLB_IN_UML"):
        return in_uml(sys.argv[1:])
    results = []
    for n in (int(x) for x in args.services.split(",")):
        results.append(run_one(args.mode, n, args.endpoints, args.updates))
        print(json.dumps(results[-1]), file=sys.stderr)
    load = os.getloadavg()[0]
    print(f"Machine: nproc={os.cpu_count()}, CPU {cpu_model()}, load average {load:.1f}")
    print(table(results))
    if args.json:
        print(json.dumps(results))
    return 0


def in_uml(argv: list[str]) -> int:
    """The same benchmark inside a user-mode-linux guest (this kernel has no IPVS)."""
    from lab.uml import UmlError, run_in_uml

    # Loading ip_vs creates /proc/net/ip_vs; the guest's kernel has it as a module.
    command = [sys.executable, "-m", "bench.dataplane_bench", *argv]
    print("Running inside a user-mode-linux guest (lab.uml): this kernel has no IPVS.", file=sys.stderr)
    try:
        result = run_in_uml(
            ["sh", "-c", f"modprobe ip_vs && exec {' '.join(map(shlex.quote, command))}"],
            cwd=REPO, mem=UML_MEM, timeout=3 * 3600, stream=True,
        )  # fmt: skip
    except UmlError as exc:
        print(f"bench.dataplane_bench: the guest failed: {exc}", file=sys.stderr)
        return 1
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
