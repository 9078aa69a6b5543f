"""The layer-2 tests' way into a containerlab deployment (tests/lab/deployed.py): containerlab's names, and a
cluster lab that is attached to, never built or removed. A netns lab stands in for the deployment, its node
namespaces also named as containerlab names them (containerlab links /run/netns/<container> the same way)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lab.runner import LabError
from tests.lab.conftest import LabFactory, ns_run
from tests.lab.deployed import (
    KUBECONFIG_ENV,
    NODE_KUBECONFIG_ENV,
    TOPOLOGY_ENV,
    DeployedLab,
    container_name,
    deployed_lab,
)

NETNS_DIR = Path("/run/netns")


def test_container_names_follow_containerlabs_prefix_rules() -> None:
    assert container_name({"name": "ironlb", "prefix": "ilb"}, "node1") == "ilb-ironlb-node1"
    assert container_name({"name": "ironlb"}, "node1") == "clab-ironlb-node1"
    assert container_name({"name": "ironlb", "prefix": "__lab-name"}, "node1") == "ironlb-node1"
    assert container_name({"name": "ironlb", "prefix": ""}, "node1") == "node1"


def test_a_deployment_needs_its_clusters_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOPOLOGY_ENV, raising=False)
    assert deployed_lab() is None
    monkeypatch.setenv(TOPOLOGY_ENV, "lab/topologies/default.clab.yml")
    monkeypatch.delenv(KUBECONFIG_ENV, raising=False)
    with pytest.raises(LabError, match=KUBECONFIG_ENV):
        deployed_lab()


def eth1_mac(netns: str) -> str:
    return str(json.loads(ns_run(netns, "ip", "-j", "link", "show", "eth1", check=True).stdout)[0]["address"])


@pytest.mark.root
def test_a_cluster_lab_is_the_deployment_reached_by_containerlabs_names(
    lab_factory: LabFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = lab_factory.up("default", network_only=True)
    topology = next(tmp_path.glob("*.clab.yml"))
    document = yaml.safe_load(topology.read_text())
    links = []
    try:
        for node in built.plan.nodes:
            link = NETNS_DIR / container_name(document, node.name)
            link.symlink_to(NETNS_DIR / node.netns)
            links.append(link)
        monkeypatch.setenv(TOPOLOGY_ENV, str(topology))
        monkeypatch.setenv(KUBECONFIG_ENV, str(tmp_path / "kubeconfig"))
        monkeypatch.setenv(NODE_KUBECONFIG_ENV, str(tmp_path / "kubeconfig.node"))

        attached = lab_factory.up("default", network_only=False)

        assert isinstance(attached, DeployedLab)
        assert attached.paths.kubeconfig == tmp_path / "kubeconfig"
        assert attached.paths.node_kubeconfig == tmp_path / "kubeconfig.node"
        for node in built.plan.nodes:
            name = f"{document['prefix']}-{document['name']}-{node.name}"
            assert attached.plan.node(node.name).netns == name
            assert eth1_mac(name) == eth1_mac(node.netns)
        # The k8s node names reach the same nodes, as the tests use them.
        assert attached.plan.node("node1").netns == container_name(document, "node1")
        # Never built, never removed here: the deployment belongs to whoever made it.
        with pytest.raises(LabError, match="containerlab"):
            attached.up()
        assert attached.down() == []
        assert attached not in lab_factory.labs
        assert all(link.exists() for link in links) and (NETNS_DIR / built.plan.node("node1").netns).exists()
    finally:
        for link in links:
            link.unlink(missing_ok=True)
