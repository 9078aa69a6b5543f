"""Controller failover: how long after SIGKILL of the leader the standby serves, with the default Lease
timing.

A fresh embedded API server (request log at DEBUG, to count Lease traffic), a ConfigMap pool, and two replicas
of `python -m controller` with no Lease flags (the defaults). Each trial: the leader is killed with SIGKILL
(t0, wall clock); a Service is created at once; then

* `acquired`: the standby's `event=leader_acquired` log line;
* `serving`: its `event=started` line (Lease held, config and Services listed, IPs restored, workers running);
* `first_ip`: the new Service's status shows an IP (polled every 20 ms through the API).

The killed replica is started again as the next standby. Before the first kill, an idle window counts the
Lease requests the API server receives per second (the cost of the defaults).

Usage: python -m bench.controller_takeover_bench [--trials 10] [--controller-args "..."] [--json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.controller_lab import CONTROLLER_TREE, controller_env
from k8s.client import Client
from lab.apiserver.process import ApiServerProcess

REPO = Path(__file__).resolve().parents[1]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
POOLS = """apiVersion: v1
kind: ConfigMap
metadata: {name: config, namespace: metallb-system}
data:
  config: |
    address-pools: [{name: bench, protocol: layer2, addresses: [10.201.0.0/16]}]
"""


class Replica:
    def __init__(self, kubeconfig: Path, directory: Path, identity: str, extra: list[str]) -> None:
        self.identity = identity
        self.log_file = directory / f"controller-{identity}.log"
        self.offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "controller", "--kubeconfig", str(kubeconfig), "--identity", identity,
                 "--metrics-port", "0", "--log-level", "info", *extra],
                stdout=log, stderr=subprocess.STDOUT, cwd=CONTROLLER_TREE, env=controller_env(),
            )  # fmt: skip

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[self.offset :]

    def wait_for(self, marker: str, timeout: float = 60.0) -> float:
        """Wall-clock time (from the log line) of the first line containing `marker`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log().splitlines():
                if marker in line:
                    stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
                    return stamp.timestamp()
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.identity} exited:\n{self.log()[-2000:]}")
            time.sleep(0.02)
        raise TimeoutError(f"{self.identity}: no {marker!r}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def lease_requests_per_second(log_file: Path, seconds: float) -> dict[str, float]:
    start = log_file.stat().st_size
    time.sleep(seconds)
    text = log_file.read_text(errors="replace")[start:]
    lines = [line for line in text.splitlines() if "event=request " in line and "/leases" in line]
    methods: dict[str, int] = {}
    for line in lines:
        method = line.split("method=", 1)[1].split()[0]
        methods[method] = methods.get(method, 0) + 1
    return {method: round(count / seconds, 2) for method, count in sorted(methods.items())}


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_s": round(statistics.median(samples), 2),
        "max_s": round(max(samples), 2),
        "min_s": round(min(samples), 2),
    }


def run(trials: int, extra: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ilbt-takeover-") as tmp:
        directory = Path(tmp)
        server = ApiServerProcess(directory / "apiserver", extra_args=["--log-level", "DEBUG"]).start()
        replicas: list[Replica] = []
        try:
            kubeconfig = server.kubeconfig
            for manifest in (str(REPO / "config" / "namespace.yaml"), "-"):
                subprocess.run(
                    [str(KUBECTL), "--kubeconfig", str(kubeconfig), "apply", "-f", manifest],
                    input=POOLS, text=True, check=True, capture_output=True,
                )  # fmt: skip
            api = Client.load(str(kubeconfig))

            leader = Replica(kubeconfig, directory, "r0", extra)
            replicas.append(leader)
            leader.wait_for("event=started")
            standby = Replica(kubeconfig, directory, "r1", extra)
            replicas.append(standby)
            standby.wait_for("event=leader_waiting")
            assert server.log_file is not None
            cost = lease_requests_per_second(server.log_file, 10.0)

            results: dict[str, list[float]] = {"acquired": [], "serving": [], "first_ip": []}
            for trial in range(trials):
                name = f"takeover-{trial}"
                body = {
                    "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                    "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": name}},
                }  # fmt: skip
                killed_at = time.time()
                leader.kill()
                api.create("/api/v1/namespaces/default/services", body)
                path = f"/api/v1/namespaces/default/services/{name}"
                while not ((api.get(path).get("status") or {}).get("loadBalancer") or {}).get("ingress"):
                    time.sleep(0.02)
                served_at = time.time()
                results["first_ip"].append(served_at - killed_at)
                results["acquired"].append(standby.wait_for("event=leader_acquired") - killed_at)
                results["serving"].append(standby.wait_for("event=started") - killed_at)
                # The killed replica comes back as the next standby.
                replacement = Replica(kubeconfig, directory, leader.identity, extra)
                replicas.append(replacement)
                replacement.wait_for("event=leader_waiting")
                leader, standby = standby, replacement
                print(f"trial {trial + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in results.items()),
                      file=sys.stderr)  # fmt: skip
        finally:
            for replica in replicas:
                replica.kill()
            server.stop()
    return {
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        },
        "trials": trials,
        "controller_args": extra or "defaults",
        "takeover": {measure: summary(samples) for measure, samples in results.items()},
        "lease_requests_per_second_idle": cost,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument(
        "--controller-args",
        default="",
        help='extra controller flags, e.g. "--lease-duration 15 --renew-deadline 10 --retry-period 2"',
    )
    args = parser.parse_args()
    result = run(args.trials, args.controller_args.split())
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
