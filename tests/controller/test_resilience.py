"""The API server goes away and comes back: the controller keeps its state, reconnects and carries on."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.apiserver.process import ApiServerProcess
from tests.conftest import make_kubectl
from tests.controller.helpers import (
    CONFIG,
    ControllerProcess,
    all_assigned,
    apply,
    configmap,
    service,
    wait_for,
    wait_ips,
)

pytestmark = pytest.mark.timeout(120)


def test_api_server_restart(tmp_path: Path):
    data = tmp_path / "apiserver"
    server = ApiServerProcess(data_dir=data).start()
    controller = ControllerProcess(server.kubeconfig, tmp_path / "controller.log", ["--standalone"])
    try:
        kubectl = make_kubectl(server.kubeconfig)
        apply(kubectl, CONFIG / "namespace.yaml")
        apply(kubectl, CONFIG / "crd")
        apply(kubectl, configmap("address-pools:\n- {name: p, protocol: layer2, addresses: [10.9.0.0/29]}"))
        controller.start()
        apply(kubectl, service("before"))
        assert wait_ips(kubectl, "before") == ["10.9.0.0"]

        port = server.port
        server.stop()
        # Restart only once the controller has seen the outage: its watches broke and a retry failed.
        wait_for("the controller noticing the outage", lambda: "event=watch_failed" in controller.log())
        server = ApiServerProcess(data_dir=data, port=port).start()

        apply(kubectl, service("after"))
        assert wait_ips(kubectl, "after", timeout=20) == ["10.9.0.1"]
        assert all_assigned(kubectl) == {"default/before": ["10.9.0.0"], "default/after": ["10.9.0.1"]}
        assert controller.alive()
    finally:
        controller.kill()
        server.stop()
        server.cleanup()
