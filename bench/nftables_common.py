"""Shared by the nftables benchmarks: synthetic Services and fresh network namespaces."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from dataplane.model import Endpoint, ServiceInfo, ServiceKey, ServicePort

ROOT = Path(__file__).resolve().parents[1]
_counter = itertools.count()


def cluster_ip(index: int, prefix: str = "10.96") -> str:
    return f"{prefix}.{index >> 8}.{index & 255}"


def bench_services(
    count: int, endpoints: int = 10, start: int = 0, prefix: str = "10.96"
) -> dict[ServiceKey, ServiceInfo]:
    """`count` ClusterIP Services (TCP 80, cluster IPs in `prefix`/16) with `endpoints` ready endpoints
    each, all on other nodes."""
    services = {}
    for index in range(start, start + count):
        key = ServiceKey("bench", f"svc-{index}")
        port = ServicePort(key, "http", "TCP", 4, cluster_ip(index, prefix), 80)
        eps = []
        for j in range(endpoints):
            n = index * endpoints + j
            eps.append(Endpoint(f"10.{128 + (n >> 16)}.{(n >> 8) & 255}.{n & 255}", 8080))
        services[key] = ServiceInfo(key, (port,), (tuple(eps),))
    return services


@contextlib.contextmanager
def fresh_netns(prefix: str) -> Iterator[str]:
    """A new, empty network namespace named `<prefix>-<pid>-<n>`, deleted on exit."""
    name = f"{prefix}-{os.getpid()}-{next(_counter)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
