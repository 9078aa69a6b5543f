"""Fixtures: one embedded API server per test module (CRDs from config/ applied), controllers on it; and an
RBAC-enforcing API server per test, with the controller's service account and two tenants, alice (namespace
tenant-a) and bob (tenant-b), who may manage Services and read Events only in their own namespace."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lab.apiserver.process import ApiServerProcess
from tests.conftest import Kubectl, make_kubectl
from tests.controller.helpers import (
    CONFIG,
    ControllerProcess,
    apply,
    start_in_cluster_controller,
    stop_process,
    wait_for,
)


@dataclass
class Cluster:
    server: ApiServerProcess
    kubectl: Kubectl
    directory: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("cluster")
    # A dual-stack service network, so that IPv6 and dual-stack Services are accepted.
    server = ApiServerProcess(
        data_dir=directory / "apiserver", extra_args=["--service-cluster-ip-range-v6", "fd00:10:96::/112"]
    )
    server.start()
    try:
        kubectl = make_kubectl(server.kubeconfig)
        apply(kubectl, CONFIG / "namespace.yaml")
        apply(kubectl, CONFIG / "crd")
        wait_for(
            "metallb.io CRDs served",
            lambda: kubectl("get", "ipaddresspools,l2advertisements", "-A", check=False).returncode == 0,
        )
        yield Cluster(server, kubectl, directory)
    finally:
        server.stop()
        server.cleanup()


StartController = Callable[..., ControllerProcess]


@pytest.fixture(scope="module")
def start_controller(cluster: Cluster) -> Iterator[StartController]:
    """start_controller(*args, wait_started=True, kubeconfig_from_env=False) -> a running replica (killed at
    module end); with kubeconfig_from_env it finds the API server through KUBECONFIG, not --kubeconfig."""
    started: list[ControllerProcess] = []

    def start(*args: str, wait_started: bool = True, kubeconfig_from_env: bool = False) -> ControllerProcess:
        log = cluster.directory / f"controller-{len(started)}.log"
        controller = ControllerProcess(cluster.server.kubeconfig, log, args, kubeconfig_from_env)
        started.append(controller)
        return controller.start(wait_started)

    try:
        yield start
    finally:
        for controller in started:
            controller.kill()


CONTROLLER_USER = "system:serviceaccount:metallb-system:ironlb-controller"
CONTROLLER_TOKEN = "ilbt-controller-token-6a1f0c2e9b"
TENANTS = {"alice": "tenant-a", "bob": "tenant-b"}  # user -> the one namespace they manage


def _tenant_token(user: str) -> str:
    return f"ilbt-{user}-token-0b7d4e"


def _tenant_rbac(user: str, namespace: str) -> str:
    """What a namespace admin typically gets: Services (not their status) and read-only Events, there only."""
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "tenant", "namespace": namespace},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["services"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                },
                {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "tenant", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    ]
    return "\n---\n".join(json.dumps(doc) for doc in docs)


@dataclass
class RbacCluster:
    server: ApiServerProcess
    kubectl: Kubectl  # the admin (system:masters)
    directory: Path

    def denials(self, user: str = CONTROLLER_USER) -> list[str]:
        """The server's `event=forbidden` log lines for `user`."""
        assert self.server.log_file is not None
        text = self.server.log_file.read_text() if self.server.log_file.exists() else ""
        return [line for line in text.splitlines() if "event=forbidden" in line and f"user={user} " in line]

    def tenant(self, user: str) -> Kubectl:
        """kubectl as `user`, authenticated by bearer token, in the user's namespace."""
        admin = yaml.safe_load(self.server.kubeconfig.read_text())
        cluster = admin["clusters"][0]["name"]
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": admin["clusters"],
            "users": [{"name": user, "user": {"token": _tenant_token(user)}}],
            "contexts": [
                {
                    "name": user,
                    "context": {"cluster": cluster, "user": user, "namespace": TENANTS[user]},
                }
            ],
            "current-context": user,
        }
        path = self.directory / f"kubeconfig-{user}"
        path.write_text(yaml.safe_dump(config))
        return make_kubectl(path)


@pytest.fixture
def rbac_cluster(tmp_path: Path) -> Iterator[RbacCluster]:
    tokens = tmp_path / "tokens.csv"
    groups = "system:serviceaccounts,system:serviceaccounts:metallb-system"
    lines = [f'{CONTROLLER_TOKEN},{CONTROLLER_USER},ilbt-uid,"{groups}"']
    lines += [f"{_tenant_token(user)},{user},ilbt-{user}" for user in TENANTS]
    tokens.write_text("\n".join(lines) + "\n")
    server = ApiServerProcess(
        data_dir=tmp_path / "apiserver",
        extra_args=["--authorization-mode", "RBAC", "--token-auth-file", str(tokens)],
    )
    server.start()
    try:
        kubectl = make_kubectl(server.kubeconfig)
        apply(kubectl, CONFIG / "namespace.yaml")
        apply(kubectl, CONFIG / "crd")
        for user, namespace in TENANTS.items():
            apply(kubectl, _tenant_rbac(user, namespace))
        wait_for(
            "metallb.io CRDs served",
            lambda: kubectl("get", "ipaddresspools,l2advertisements", "-A", check=False).returncode == 0,
        )
        yield RbacCluster(server, kubectl, tmp_path)
    finally:
        server.stop()
        server.cleanup()
        if server.log_file is not None and server.log_file.exists():
            print(f"--- API server log (tail) ---\n{server.log_file.read_text()[-3000:]}")


@dataclass
class InClusterController:
    log_file: Path
    alive: Callable[[], bool]

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


@pytest.fixture
def in_cluster_controller(rbac_cluster: RbacCluster) -> Iterator[Callable[..., InClusterController]]:
    """start(*args) -> the controller, in-cluster, authenticated by its service account's token; stopped at
    the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> InClusterController:
        server = rbac_cluster.server
        assert server.data_dir is not None
        log_file = rbac_cluster.directory / "controller.log"
        ca_file = server.data_dir / "pki" / "ca.crt"
        workdir = rbac_cluster.directory
        proc = start_in_cluster_controller(server.port, ca_file, CONTROLLER_TOKEN, workdir, log_file, *args)
        started.append(proc)
        return InClusterController(log_file, lambda: proc.poll() is None)

    try:
        yield start
    finally:
        for proc in started:
            stop_process(proc)
