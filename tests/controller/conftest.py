"""Fixtures: one embedded API server per test module (CRDs from config/ applied), controllers on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.apiserver.process import ApiServerProcess
from tests.conftest import Kubectl, make_kubectl
from tests.controller.helpers import CONFIG, ControllerProcess, apply, wait_for


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
