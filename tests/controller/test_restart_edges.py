"""Restart and resync edge cases, end to end (docs/controller.md, "Restarts" and "Configuration"): a DELETED
event lost in a watch gap, the order in which restore adopts IPs, a stale status IP, a first configuration
that is invalid, and the metallb.io CRDs not installed. Each test has its own API server."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.apiserver.process import ApiServerProcess
from tests.conftest import Kubectl, make_kubectl
from tests.controller.helpers import (
    CONFIG,
    ControllerProcess,
    apply,
    configmap,
    get_json,
    service,
    service_ips,
    wait_event,
    wait_for,
    wait_ips,
)

pytestmark = pytest.mark.timeout(120)

POOL = "address-pools:\n- {name: p, protocol: layer2, addresses: [10.88.0.0/30]}"


@dataclass
class Setup:
    server: ApiServerProcess
    kubectl: Kubectl
    directory: Path
    start: Callable[..., ControllerProcess]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """An API server with the metallb-system namespace (CRDs only if a test applies them) and a way to start
    controllers on it; everything is stopped afterwards."""
    controllers: list[ControllerProcess] = []
    server = ApiServerProcess(data_dir=tmp_path / "apiserver").start()

    def start(*args: str) -> ControllerProcess:
        log = tmp_path / f"controller-{len(controllers)}.log"
        controller = ControllerProcess(server.kubeconfig, log, ["--standalone", *args])
        controllers.append(controller)
        return controller.start()

    state = Setup(server, make_kubectl(server.kubeconfig), tmp_path, start)
    try:
        apply(state.kubectl, CONFIG / "namespace.yaml")
        yield state
    finally:
        for controller in controllers:
            controller.kill()
        state.server.stop()  # a test may have restarted it


def install_crds(kubectl: Kubectl) -> None:
    apply(kubectl, CONFIG / "crd")
    wait_for(
        "metallb.io CRDs served",
        lambda: kubectl("get", "ipaddresspools,l2advertisements", "-A", check=False).returncode == 0,
    )


def show_in_status(kubectl: Kubectl, name: str, ip: str) -> None:
    """What a previous controller (or a user) left in the status."""
    patch = {"status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}}
    kubectl("patch", "service", name, "--subresource=status", "--type=merge", "-p", json.dumps(patch))
    assert service_ips(kubectl, name) == [ip]


def created_at(kubectl: Kubectl, name: str) -> datetime.datetime:
    stamp = get_json(kubectl, "service", name)["metadata"]["creationTimestamp"]
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def test_a_deleted_event_lost_in_a_watch_gap_is_recovered(setup: Setup) -> None:
    kubectl = setup.kubectl
    install_crds(kubectl)
    apply(kubectl, configmap("address-pools:\n- {name: p, protocol: layer2, addresses: [10.88.0.0/31]}"))
    controller = setup.start()
    apply(kubectl, service("ghost"))
    assert wait_ips(kubectl, "ghost") == ["10.88.0.0"]
    apply(kubectl, service("keeper"))
    assert wait_ips(kubectl, "keeper") == ["10.88.0.1"]
    apply(kubectl, service("heir"))
    wait_event(kubectl, "heir", "AllocationFailed", contains="no available IPs")

    # The deletion happens while the controller cannot see the server (the same data on another port), and
    # two later Service writes push it out of a one-event watch history: resuming the watch gets 410, and a
    # re-list shows what exists, never what went away.
    port = setup.server.port
    setup.server.stop()
    elsewhere = ApiServerProcess(data_dir=setup.server.data_dir).start()
    try:
        kubectl("delete", "service", "ghost")
        for name in ("filler-1", "filler-2"):
            apply(kubectl, service(name, type_="ClusterIP"))
    finally:
        elsewhere.stop()
    setup.server = ApiServerProcess(
        data_dir=setup.server.data_dir, port=port, extra_args=["--history-size", "1"]
    ).start()

    # ghost's IP went back to the pool, and the Service waiting for one gets it.
    assert wait_ips(kubectl, "heir", timeout=30) == ["10.88.0.0"], controller.log()[-3000:]
    assert service_ips(kubectl, "keeper") == ["10.88.0.1"]
    assert controller.alive()


def test_restore_adopts_the_oldest_service_first(setup: Setup) -> None:
    """Two Services show the same IP (no sharing key): the older keeps it, whatever the names' order."""
    kubectl = setup.kubectl
    install_crds(kubectl)
    apply(kubectl, configmap(POOL))
    apply(kubectl, service("zz-elder"))
    elder_born = created_at(kubectl, "zz-elder")
    # creationTimestamp has one-second resolution: the younger one must be born in a later second.
    next_second = elder_born + datetime.timedelta(seconds=1)
    wait_for("the next second", lambda: datetime.datetime.now(datetime.UTC) >= next_second)
    apply(kubectl, service("aa-younger"))
    assert created_at(kubectl, "aa-younger") > elder_born
    show_in_status(kubectl, "zz-elder", "10.88.0.1")
    show_in_status(kubectl, "aa-younger", "10.88.0.1")

    controller = setup.start()
    wait_for("aa-younger moved", lambda: service_ips(kubectl, "aa-younger") == ["10.88.0.0"], timeout=15)
    assert service_ips(kubectl, "zz-elder") == ["10.88.0.1"]
    wait_event(kubectl, "aa-younger", "IPAllocated", contains="10.88.0.0")
    assert "event=restored adopted=1 refused=1" in controller.log()


def test_a_stale_status_ip_is_refused_and_replaced(setup: Setup) -> None:
    kubectl = setup.kubectl
    install_crds(kubectl)
    apply(kubectl, configmap(POOL))
    apply(kubectl, service("stale"))
    show_in_status(kubectl, "stale", "10.99.9.9")  # outside every pool (the pools changed while it was down)
    apply(kubectl, service("fine"))  # younger than stale, so reconciled after it
    show_in_status(kubectl, "fine", "10.88.0.0")

    setup.start()
    # The stale IP is not adopted, so stale gets the lowest free address; 10.88.0.0 is not free because
    # fine's IP was adopted before anything was assigned.
    wait_for("stale replaced", lambda: service_ips(kubectl, "stale") == ["10.88.0.1"], timeout=15)
    wait_event(kubectl, "stale", "IPAllocated", contains="10.88.0.1")
    assert service_ips(kubectl, "fine") == ["10.88.0.0"]


def test_an_invalid_first_config_assigns_nothing_and_keeps_what_services_show(setup: Setup) -> None:
    kubectl = setup.kubectl
    install_crds(kubectl)
    apply(kubectl, configmap("address-pools:\n- {name: p, protocol: layer2, addresses: [10.88.0.0/33]}"))
    apply(kubectl, service("already"))
    show_in_status(kubectl, "already", "10.88.0.1")  # from a controller that ran before
    apply(kubectl, service("fresh"))

    controller = setup.start()
    event = wait_event(kubectl, "config", "InvalidConfig", namespace="metallb-system")
    assert "address-pools[0].addresses[0]" in event["message"]
    wait_for("stale metric", lambda: controller.metrics()["metallb_k8s_client_config_stale_bool"] == 1)
    assert controller.metrics()["metallb_k8s_client_config_loaded_bool"] == 0
    assert service_ips(kubectl, "fresh") == []
    assert service_ips(kubectl, "already") == ["10.88.0.1"], "an IP in status is kept until a config says no"

    apply(kubectl, configmap(POOL))
    assert wait_ips(kubectl, "fresh") == ["10.88.0.0"]
    assert service_ips(kubectl, "already") == ["10.88.0.1"]
    wait_for("loaded metric", lambda: controller.metrics()["metallb_k8s_client_config_loaded_bool"] == 1)


def test_without_the_crds_the_configmap_alone_works_and_the_crds_are_picked_up_later(setup: Setup) -> None:
    kubectl = setup.kubectl
    apply(kubectl, configmap(POOL))
    controller = setup.start()
    apply(kubectl, service("cm-only"))
    assert wait_ips(kubectl, "cm-only") == ["10.88.0.0"]
    assert controller.alive()

    install_crds(kubectl)
    apply(
        kubectl,
        json.dumps({
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "late", "namespace": "metallb-system"},
            "spec": {"addresses": ["10.89.0.0/30"]},
        }),
    )
    apply(kubectl, service("in-late", annotations={"metallb.io/address-pool": "late"}))
    # The controller looks for the CRDs every 10 s.
    assert wait_ips(kubectl, "in-late", timeout=40) == ["10.89.0.0"]
    assert service_ips(kubectl, "cm-only") == ["10.88.0.0"]
    assert controller.alive()
