"""The lab's EndpointSlice controller under many Services: time until each has its slice and Endpoints.

Starts a fresh embedded API server and `python -m lab.controllers`, creates N Services with a selector (no
pods, so each gets a placeholder EndpointSlice and an empty Endpoints, as on a real cluster), and waits until
all 2N objects exist. Reports the wall time, the controllers' CPU time and peak RSS.

Usage: python -m bench.lab_controllers_bench [--services 5000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from k8s.client import Client
from lab.apiserver.process import ApiServerProcess

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ilb-bench-") as tmp, ApiServerProcess() as server:
        log = (Path(tmp) / "controllers.log").open("w")
        controllers = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lab.controllers",
                "--kubeconfig",
                str(server.kubeconfig),
                "--log-level",
                "WARNING",
            ],
            stdout=log,
            stderr=log,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        try:
            kube = Client.load(str(server.kubeconfig))
            time.sleep(1.5)  # informers synced
            began = time.monotonic()
            for i in range(args.services):
                service = {
                    "metadata": {"name": f"bench-{i}"},
                    "spec": {"selector": {"app": f"bench-{i}"}, "ports": [{"port": 80}]},
                }
                kube.create("/api/v1/namespaces/default/services", service)
            created = time.monotonic()
            while True:
                slices = kube.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices")["items"]
                endpoints = kube.get("/api/v1/namespaces/default/endpoints")["items"]
                if len(slices) >= args.services and len(endpoints) >= args.services:
                    break
                time.sleep(0.2)
            done = time.monotonic()
            print(
                f"services={args.services} create={created - began:.1f}s "
                f"all_slices_and_endpoints={done - began:.1f}s "
                f"controllers_cpu={cpu_seconds(controllers.pid):.1f}s "
                f"controllers_peak_rss={peak_rss_kb(controllers.pid) // 1024}MiB"
            )
        finally:
            controllers.terminate()
            controllers.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
