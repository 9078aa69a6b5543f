"""Benchmark of the embedded API server (a script, not a test).

    python bench/apiserver_bench.py [--services 5000] [--status-patches 2000] [--watch-events 1000] [--memory]

Measures, against a fresh server with a data dir (journal on) and --service-node-port-range 20000-32767
(the default range holds only 2,768 nodePorts): start-up time; latency p50/p99 of creating
Services of type NodePort (clusterIP + nodePort allocation), of listing them, of merge-patching their status,
and of delivering a watch event (from sending the write to a watcher reading it, and from the write's
acknowledgement to the watcher reading it); the server's peak RSS (VmHWM). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.apiserver.process import ApiServerProcess


class Client:
    """One keep-alive HTTPS connection with the kubeconfig's client certificate (low client overhead)."""

    def __init__(self, kubeconfig: Path, tmp: Path) -> None:
        cfg = yaml.safe_load(kubeconfig.read_text())
        cluster, user = cfg["clusters"][0]["cluster"], cfg["users"][0]["user"]
        (tmp / "ca.crt").write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        (tmp / "tls.crt").write_bytes(base64.b64decode(user["client-certificate-data"]))
        (tmp / "tls.key").write_bytes(base64.b64decode(user["client-key-data"]))
        self.ctx = ssl.create_default_context(cafile=str(tmp / "ca.crt"))
        self.ctx.load_cert_chain(str(tmp / "tls.crt"), str(tmp / "tls.key"))
        host_port = cluster["server"].removeprefix("https://")
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        self.conn = self.connect()

    def connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=60)

    def call(self, method: str, path: str, body: Any = None, ctype: str = "application/json") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=data, headers={"Content-Type": ctype})
        resp = self.conn.getresponse()
        raw = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {raw[:300]!r}")
        return json.loads(raw)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    return f"{pct(values, 50) * 1000:.2f} / {pct(values, 99) * 1000:.2f}"


def service(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"bench-{i:05d}", "labels": {"bench": "yes"}},
        "spec": {
            "type": "NodePort",
            "selector": {"app": f"a{i}"},
            "ports": [{"port": 80, "targetPort": 8080}],
        },
    }


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ilbt-bench-") as tmpdir:
        tmp = Path(tmpdir)
        # 5,000 NodePort Services need more than the default 2,768 ports of 30000-32767.
        server = ApiServerProcess(
            None if args.memory else tmp / "data", extra_args=["--service-node-port-range", "20000-32767"]
        )
        began = time.monotonic()
        server.start()
        results["startup_s"] = time.monotonic() - began
        try:
            client = Client(server.kubeconfig, tmp)
            ns = "/api/v1/namespaces/default/services"

            create: list[float] = []
            for i in range(args.services):
                t0 = time.perf_counter()
                client.call("POST", ns, service(i))
                create.append(time.perf_counter() - t0)
            results["create"] = create

            t0 = time.perf_counter()
            listed = client.call("GET", ns + "?labelSelector=bench%3Dyes")
            results["list_s"] = time.perf_counter() - t0
            results["listed"] = len(listed["items"])

            status: list[float] = []
            for i in range(min(args.status_patches, args.services)):
                body = {"status": {"loadBalancer": {"ingress": [{"ip": f"192.0.2.{i % 250 + 1}"}]}}}
                t0 = time.perf_counter()
                client.call("PATCH", f"{ns}/bench-{i:05d}/status", body, "application/merge-patch+json")
                status.append(time.perf_counter() - t0)
            results["status"] = status

            results.update(measure_watch(server, tmp, client, args.watch_events))
        finally:
            results["peak_rss_mb"] = peak_rss_mb(server.pid)
            server.stop()
            server.cleanup()
    return results


def measure_watch(server: ApiServerProcess, tmp: Path, client: Client, count: int) -> dict[str, Any]:
    """Write ConfigMaps one by one; a watcher on its own connection timestamps each event it reads."""
    watcher = Client(server.kubeconfig, tmp)
    start_rv = client.call("GET", "/api/v1/namespaces/default/configmaps")["metadata"]["resourceVersion"]
    conn = watcher.conn
    conn.request("GET", f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={start_rv}")
    resp = conn.getresponse()
    received: dict[str, float] = {}
    done = threading.Event()

    def read() -> None:
        while len(received) < count:
            line = resp.readline()
            if not line:
                break
            event = json.loads(line)
            received[event["object"]["metadata"]["name"]] = time.perf_counter()
        done.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    for i in range(count):
        name = f"w-{i:05d}"
        sent[name] = time.perf_counter()
        client.call(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"i": str(i)}},
        )
        acked[name] = time.perf_counter()
        # Pace the writes so each latency is measured on an idle watcher, not a backlog.
        deadline = time.perf_counter() + 1.0
        while name not in received and time.perf_counter() < deadline:
            time.sleep(0.0002)
    done.wait(30)
    from_send = [received[n] - sent[n] for n in sent if n in received]
    from_ack = [max(0.0, received[n] - acked[n]) for n in sent if n in received]
    return {"watch_from_send": from_send, "watch_from_ack": from_ack, "watch_received": len(received)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--services", type=int, default=5000)
    p.add_argument("--status-patches", type=int, default=2000)
    p.add_argument("--watch-events", type=int, default=1000)
    p.add_argument("--memory", action="store_true", help="no data dir (no journal)")
    p.add_argument("--json", action="store_true", help="print raw numbers as JSON too")
    args = p.parse_args()
    r = run(args)
    create, status = r["create"], r["status"]
    print(f"machine: nproc={os.cpu_count()} cpu={cpu_model()!r} python={platform.python_version()}")
    print(
        f"command: python bench/apiserver_bench.py --services {args.services} "
        f"--status-patches {args.status_patches} --watch-events {args.watch_events}"
        + (" --memory" if args.memory else "")
    )
    print()
    print("| measure | count | p50 / p99 (ms) | other |")
    print("|---|---|---|---|")
    print(f"| start-up to ready line | 1 | | {r['startup_s'] * 1000:.0f} ms |")
    print(
        f"| create NodePort Service | {len(create)} | {ms(create)} | total {sum(create):.1f} s, "
        f"mean {statistics.mean(create) * 1000:.2f} ms |"
    )
    print(f"| list {r['listed']} Services (label selector) | 1 | | {r['list_s'] * 1000:.0f} ms |")
    print(f"| merge-patch status (ingress ip) | {len(status)} | {ms(status)} | |")
    sent, acked = r["watch_from_send"], r["watch_from_ack"]
    print(f"| watch event, write sent -> watcher read | {len(sent)} | {ms(sent)} | |")
    print(
        f"| watch event, write acked -> watcher read | {len(acked)} | {ms(acked)} | "
        "negative clamped to 0 (the event can arrive before the ack) |"
    )
    print(f"| server peak RSS (VmHWM) | | | {r['peak_rss_mb']:.0f} MB |")
    if args.json:
        print(json.dumps({k: v for k, v in r.items() if not isinstance(v, list)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
