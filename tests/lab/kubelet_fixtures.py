"""Fixtures for the kubelet and controllers tests: a node netns with a pod bridge, kubelet and controllers
processes against the real API server. All carry an `ilbt-<random>` prefix and are removed in finally.

Import the fixture functions (`*_fixture`) into a test module to use them under their short names."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab import pods as podnet
from lab.apiserver.process import ApiServerProcess

ROOT = Path(__file__).resolve().parents[2]


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {result.stderr}")
    return result


@dataclass
class LabNode:
    name: str
    netns: str
    bridge: str
    pod_cidr: str
    pod_cidr6: str
    internal_ip: str
    internal_ip6: str


@dataclass
class NetnsLab:
    prefix: str
    nodes: list[LabNode] = field(default_factory=list)

    def add_node(self, index: int) -> LabNode:
        node = LabNode(
            name=f"node{index}",
            netns=f"{self.prefix}-node{index}",
            bridge="cbr0",
            pod_cidr=f"10.244.{index}.0/24",
            pod_cidr6=f"fd00:244:{index}::/64",
            internal_ip=f"192.168.10.{10 + index}",
            internal_ip6=f"fd00:10::{10 + index}",
        )
        ns = node.netns
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "add", node.bridge, "type", "bridge")
        sh("ip", "-n", ns, "addr", "add", f"10.244.{index}.1/24", "dev", node.bridge)
        sh("ip", "-n", ns, "addr", "add", f"fd00:244:{index}::1/64", "dev", node.bridge, "nodad")
        sh("ip", "-n", ns, "link", "set", node.bridge, "up")
        self.nodes.append(node)
        return node

    def cleanup(self) -> None:
        # Everything this lab started has the prefix on its command line (kubelets, echo servers).
        podnet.kill_processes(self.prefix)
        for netns in podnet.list_netns(self.prefix + "-"):
            sh("ip", "netns", "del", netns, check=False)


@pytest.fixture(name="test_lab")
def test_lab_fixture() -> Iterator[NetnsLab]:
    lab = NetnsLab(prefix=f"ilbt-{secrets.token_hex(2)}")
    try:
        yield lab
    finally:
        lab.cleanup()
        assert not podnet.list_netns(lab.prefix + "-"), "netns left behind"


class Proc:
    """A lab process (kubelet or controllers) with its log, stopped by SIGTERM at the end."""

    def __init__(self, cmd: list[str], log: Path) -> None:
        self.log = log
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=out)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"did not stop on SIGTERM:\n{self.text()}") from None
        return int(self.proc.returncode)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def kubelet_command(apiserver: ApiServerProcess, lab: NetnsLab, node: LabNode, state_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "lab.kubelet",
        "--kubeconfig", str(apiserver.kubeconfig),
        "--node-name", node.name,
        "--netns", node.netns,
        "--pod-bridge", node.bridge,
        "--pod-cidr", node.pod_cidr,
        "--pod-cidr6", node.pod_cidr6,
        "--internal-ip", node.internal_ip,
        "--internal-ip6", node.internal_ip6,
        "--prefix", lab.prefix,
        "--labels", f"ironlb.io/test={lab.prefix}",
        "--state-dir", str(state_dir),
    ]  # fmt: skip


StartKubelet = Callable[..., Proc]  # (node, *extra_args) -> Proc


@pytest.fixture(name="start_kubelet")
def start_kubelet_fixture(
    apiserver: ApiServerProcess, test_lab: NetnsLab, tmp_path: Path
) -> Iterator[StartKubelet]:
    started: list[Proc] = []

    def start(node: LabNode, *extra: str) -> Proc:
        state = tmp_path / f"kubelet-{node.name}"
        cmd = kubelet_command(apiserver, test_lab, node, state) + list(extra)
        proc = Proc(cmd, tmp_path / f"kubelet-{node.name}.log")
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            try:
                proc.stop()
            except AssertionError:
                pass


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def get_json(kubectl: Callable[..., subprocess.CompletedProcess[str]], *args: str) -> Any:
    result = kubectl("get", *args, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)


def curl_in(netns: str, url: str) -> str:
    result = sh("ip", "netns", "exec", netns, "curl", "-sS", "--max-time", "3", url, check=False)
    return result.stdout if result.returncode == 0 else ""
