"""Issue 7, case 2: no ConfigMap text stops config processing, and a bad config at start-up never stops the
controller from starting: it runs on the metallb.io CRDs alone (or on nothing) and says so."""

from __future__ import annotations

import json

import pytest

from tests.controller.conftest import Cluster, StartController
from tests.controller.helpers import (
    ControllerProcess,
    apply,
    service,
    service_ips,
    wait_event,
    wait_for,
    wait_ips,
)

pytestmark = pytest.mark.timeout(180)

HOSTILE = [
    ("list-key", "? [a, b]\n: c", "a mapping key must be a scalar, got a list"),
    ("flow-map-key", "{[a]: b}", "a mapping key must be a scalar, got a list"),
    ("deep-list", "[" * 3000, "nested deeper than 100 levels"),
    ("deep-map", "a: " + "{b: " * 5000 + "1" + "}" * 5000, "nested deeper than 100 levels"),
    ("not-a-date", "address-pools: [2001-02-30]", "invalid timestamp value"),
]


def pools(name: str, cidr: str) -> str:
    return f"address-pools:\n- {{name: {name}, protocol: layer2, addresses: [{cidr}]}}\n"


def ip_address_pool(name: str, addresses: list[str]) -> str:
    return json.dumps({
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": "metallb-system"},
        "spec": {"addresses": addresses},
    })


def replace_configmap(cluster: Cluster, text: str) -> None:
    # replace, not apply: a 20 KiB text would also be copied into the last-applied annotation.
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "config", "namespace": "metallb-system"},
        "data": {"config": text},
    }
    found = cluster.kubectl("get", "configmap", "config", "-n", "metallb-system", check=False)
    exists = found.returncode == 0
    cluster.kubectl("replace" if exists else "create", "-f", "-", input=json.dumps(body))


def stale(controller: ControllerProcess) -> float:
    return controller.metrics()["metallb_k8s_client_config_stale_bool"]


def show_in_status(cluster: Cluster, name: str, ip: str) -> None:
    """What a previous controller left in the status."""
    patch = {"status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}}
    cluster.kubectl("patch", "service", name, "--subresource=status", "--type=merge", "-p", json.dumps(patch))


@pytest.fixture(scope="module")
def controller(cluster: Cluster, start_controller: StartController) -> ControllerProcess:
    replace_configmap(cluster, pools("first", "10.63.0.0/30"))
    return start_controller()


@pytest.mark.parametrize(("name", "text", "expected"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_configmaps_never_stop_config_processing(
    cluster: Cluster, controller: ControllerProcess, name: str, text: str, expected: str
):
    kubectl = cluster.kubectl
    replace_configmap(cluster, text)
    wait_event(kubectl, "config", "InvalidConfig", namespace="metallb-system", contains=expected)
    wait_for("stale metric", lambda: stale(controller) == 1)
    assert "event=config_invalid object=ConfigMap/metallb-system/config" in controller.log()
    # The next config is processed: a new pool is served.
    replace_configmap(cluster, pools(f"after-{name}", f"10.62.{HOSTILE.index((name, text, expected))}.0/30"))
    apply(kubectl, service(f"after-{name}", ports=((90, "TCP"),),
                           annotations={"metallb.io/address-pool": f"after-{name}"}))  # fmt: skip
    [ip] = wait_ips(kubectl, f"after-{name}")
    assert ip.startswith("10.62.")
    assert stale(controller) == 0 and controller.alive()


def test_start_up_with_a_bad_configmap_runs_on_the_crds_and_says_so(
    cluster: Cluster, controller: ControllerProcess, start_controller: StartController
):
    kubectl = cluster.kubectl
    controller.kill()
    replace_configmap(cluster, "{[a]: b}")
    apply(kubectl, ip_address_pool("from-crd", ["10.61.0.0/30"]))
    # A Service a previous controller gave an IP from the (now unreadable) ConfigMap's pool.
    apply(kubectl, service("keeper"))
    show_in_status(cluster, "keeper", "10.60.0.1")

    # A multi-tenant set-up: the CRD pools it falls back on must keep --ip-sharing too.
    controller = start_controller("--ip-sharing", "namespace")  # kopf's start-up completes (wait_started)
    event = wait_event(kubectl, "config", "InvalidConfig", namespace="metallb-system", contains="mapping key")
    assert event["type"] == "Warning"
    log = controller.log()
    assert "event=config_invalid object=ConfigMap/metallb-system/config" in log
    assert "event=config_fallback using=crds" in log
    apply(kubectl, service("new", ports=((81, "TCP"),)))
    assert wait_ips(kubectl, "new") == ["10.61.0.0"]
    # One sharing key in two namespaces: with --ip-sharing=namespace they do not share an IP.
    kubectl("create", "namespace", "other-tenant")
    shared = {"metallb.io/allow-shared-ip": "k"}
    apply(kubectl, service("share-1", annotations=shared, ports=((84, "TCP"),)))
    assert wait_ips(kubectl, "share-1") == ["10.61.0.1"]
    apply(kubectl, service("share-2", "other-tenant", annotations=shared, ports=((85, "TCP"),)))
    assert wait_ips(kubectl, "share-2", "other-tenant") == ["10.61.0.2"]
    # keeper's IP lies in no pool the controller can read: it is left alone, not moved to the CRD pool.
    wait_for("keeper deferred", lambda: "event=deferred service=default/keeper" in controller.log())
    assert service_ips(kubectl, "keeper") == ["10.60.0.1"]
    assert stale(controller) == 1

    # The fixed ConfigMap is merged in; keeper keeps its IP, which is not handed to anyone else.
    replace_configmap(cluster, pools("from-cm", "10.60.0.0/31"))
    wait_for("config complete", lambda: stale(controller) == 0)
    in_cm = {"metallb.io/address-pool": "from-cm"}
    apply(kubectl, service("in-cm", ports=((82, "TCP"),), annotations=in_cm))
    assert wait_ips(kubectl, "in-cm") == ["10.60.0.0"]
    apply(kubectl, service("in-cm-2", ports=((83, "TCP"),), annotations=in_cm))
    wait_event(kubectl, "in-cm-2", "AllocationFailed", contains='no available IPs in pool "from-cm"')
    assert service_ips(kubectl, "keeper") == ["10.60.0.1"]
