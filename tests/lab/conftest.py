"""Fixtures for tests that build real netns labs (root).

Every lab a test builds is a copy of a shipped topology with its own name, prefix `ilbt<4 hex>` and mgmt
subnets, and a state root under tmp_path, so tests never touch a lab someone runs by hand and two tests' labs
never collide. `lab_factory` tears every lab it made down in `finally`, whatever the test did. A test that
asks for a cluster gets, when IRONLB_TEST_CONTAINERLAB is set, the topology deployed with containerlab
instead (tests/lab/deployed.py, docs/containerlab.md).
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import network
from lab.runner import Lab
from lab.supervisor import find_marked_processes
from lab.topology import load_topology
from tests.lab.deployed import deployed_lab

REPO = Path(__file__).resolve().parents[2]
TOPOLOGIES = REPO / "lab" / "topologies"


def ns_run(
    netns: str, *cmd: str, check: bool = False, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *cmd], capture_output=True, text=True, check=check, timeout=timeout
    )


def pings(netns: str, address: str) -> bool:
    return ns_run(netns, "ping", "-c", "1", "-W", "2", address).returncode == 0


def lab_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def _mgmt_octet(token: str) -> int:
    return int(token, 16) % 250 + 1


def _free_token() -> str:
    """A token whose mgmt subnet no lab on this machine routes yet: labs of other test runs (CI beside a
    developer's session) coexist, and a random pick alone collides often with a few labs up."""
    routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True).stdout
    taken = {line.split()[0] for line in routes.splitlines() if line.startswith("172.29.")}
    for _ in range(100):
        token = secrets.token_hex(2)
        if f"172.29.{_mgmt_octet(token)}.0/24" not in taken:
            return token
    return secrets.token_hex(2)


def topology_copy(tmp_path: Path, base: str = "default", token: str | None = None) -> tuple[Path, str]:
    """A copy of a shipped topology with a unique name, prefix and mgmt subnets; returns (file, prefix)."""
    token = token or _free_token()
    doc: dict[str, Any] = yaml.safe_load((TOPOLOGIES / f"{base}.clab.yml").read_text())
    octet = _mgmt_octet(token)
    doc["name"] = f"ilbt-{base}-{token}"
    doc["prefix"] = f"ilbt{token}"
    doc["mgmt"] = {
        "ipv4-subnet": f"172.29.{octet}.0/24",
        "ipv6-subnet": f"fd00:29:{token}::/64",
    }
    path = tmp_path / f"{doc['name']}.clab.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path, doc["prefix"]


def lab_leftovers(lab: Lab) -> list[str]:
    """Every trace of a lab on this machine: netns, host links, state dir, processes."""
    found = network.list_netns(lab.plan.prefix) + network.list_host_links(lab.plan.prefix)
    if lab.paths.state_dir.exists():
        found.append(str(lab.paths.state_dir))
    found += [f"pid {pid}" for pid in find_marked_processes([str(lab.paths.state_dir)])]
    return found


class LabFactory:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.state_root = tmp_path / "labstate"
        self.labs: list[Lab] = []

    def make(self, base: str = "default") -> Lab:
        """A Lab object (not built yet) that this factory will tear down."""
        path, _ = topology_copy(self.tmp_path, base)
        lab = Lab(load_topology(path), state_root=self.state_root)
        self.labs.append(lab)
        return lab

    def up(self, base: str = "default", network_only: bool = True, timeout: float = 60) -> Lab:
        """A lab built from a copy of `base`; or, for a cluster, the containerlab deployment that
        IRONLB_TEST_CONTAINERLAB names (tests/lab/deployed.py), which this factory never tears down."""
        if not network_only and (deployed := deployed_lab()) is not None:
            return deployed
        lab = self.make(base)
        lab.up(network_only=network_only, timeout=timeout)
        return lab

    def teardown(self) -> None:
        errors: list[str] = []
        for lab in reversed(self.labs):
            try:
                lab.down()
            except Exception as exc:  # keep tearing the other labs down, report at the end
                errors.append(f"{lab.plan.name}: {exc}")
        if errors:
            raise RuntimeError("lab teardown failed: " + "; ".join(errors))


@pytest.fixture
def lab_factory(tmp_path: Path) -> Iterator[LabFactory]:
    factory = LabFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.teardown()


@pytest.fixture
def lab_network(lab_factory: LabFactory) -> Lab:
    """The default topology, network only (namespaces, links, addresses, routes)."""
    return lab_factory.up("default", network_only=True)
