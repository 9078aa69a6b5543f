"""A topology deployed with real containerlab, and its cluster, seen as a `Lab` (docs/containerlab.md).

The layer-2 tests reach nodes only through a lab's `plan.node(name).netns` and its kubeconfigs. containerlab
names each node's network namespace (in `ip netns`) after the node's container, `<prefix>-<lab name>-<node>`,
so those tests run unchanged against such a deployment: `LabFactory.up` (tests/lab/conftest.py) returns this
instead of building a netns lab when IRONLB_TEST_CONTAINERLAB names the deployed topology file. It is never
built or removed here: the deployment and its cluster belong to whoever made them.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from lab.runner import Lab, LabError, LabPaths
from lab.topology import load_topology

TOPOLOGY_ENV = "IRONLB_TEST_CONTAINERLAB"  # the deployed topology file
KUBECONFIG_ENV = "IRONLB_TEST_KUBECONFIG"  # its cluster's kubeconfig, for the host
NODE_KUBECONFIG_ENV = "IRONLB_TEST_NODE_KUBECONFIG"  # the cluster seen from inside a node (default: the same)

# containerlab's container names: `<prefix>-<lab name>-<node>`, prefix `clab` when the file has none; the
# magic prefix `__lab-name` gives `<lab name>-<node>` and an empty one `<node>` (containerlab.dev, topology
# file).
DEFAULT_PREFIX = "clab"
LAB_NAME_PREFIX = "__lab-name"


def container_name(document: dict[str, Any], node: str) -> str:
    """The name containerlab gives `node`'s container, and its network namespace in `ip netns`."""
    name = str(document["name"])
    prefix = document.get("prefix", DEFAULT_PREFIX)
    if prefix == "":
        return node
    if prefix == LAB_NAME_PREFIX:
        return f"{name}-{node}"
    return f"{prefix}-{name}-{node}"


@dataclasses.dataclass(frozen=True)
class DeployedPaths(LabPaths):
    admin_kubeconfig: Path = Path()
    in_node_kubeconfig: Path = Path()

    @property
    def kubeconfig(self) -> Path:
        return self.admin_kubeconfig

    @property
    def node_kubeconfig(self) -> Path:
        return self.in_node_kubeconfig


class DeployedLab(Lab):
    """The nodes of a containerlab deployment, by their containers' network namespaces."""

    def __init__(self, topology_file: Path, kubeconfig: Path, node_kubeconfig: Path) -> None:
        super().__init__(load_topology(topology_file))
        document = yaml.safe_load(topology_file.read_text())
        nodes = tuple(
            dataclasses.replace(node, netns=container_name(document, node.name)) for node in self.plan.nodes
        )
        self.plan = dataclasses.replace(self.plan, nodes=nodes)
        self.paths = DeployedPaths(
            self.paths.state_dir, admin_kubeconfig=kubeconfig, in_node_kubeconfig=node_kubeconfig
        )

    def up(self, network_only: bool = False, timeout: float = 60.0) -> str:
        raise LabError(f"lab {self.plan.name} is deployed by containerlab: it is not built here")

    def down(self, grace: float = 8.0) -> list[str]:
        return []  # not ours


def deployed_lab() -> DeployedLab | None:
    """The containerlab deployment the environment names, or None (the tests build their own labs)."""
    topology = os.environ.get(TOPOLOGY_ENV)
    if not topology:
        return None
    kubeconfig = os.environ.get(KUBECONFIG_ENV)
    if not kubeconfig:
        raise LabError(f"{TOPOLOGY_ENV} is set: {KUBECONFIG_ENV} must name the cluster's kubeconfig")
    node_kubeconfig = os.environ.get(NODE_KUBECONFIG_ENV) or kubeconfig
    return DeployedLab(Path(topology), Path(kubeconfig), Path(node_kubeconfig))
