"""Two tenants under an RBAC-enforcing API server (root): alice may manage Services and read Events only in
tenant-a, bob only in tenant-b; the controller runs in-cluster with the shipped RBAC.

What one tenant sees of the other through the controller: nothing (no Service name, no sharing key in its
Events or in the controller's log); who may share an IP: by default any Services with the same key (MetalLB's
rule), and only Services of one namespace once the pool says so. And a Service whose namespace labels cannot
be read is not given an IP a namespace selector might forbid.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.conftest import Kubectl
from tests.controller.conftest import InClusterController, RbacCluster
from tests.controller.helpers import CONFIG, apply, get_json, service, service_ips, wait_for, wait_ips

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

SHIPPED_RBAC = CONFIG / "controller-rbac.yaml"


def ip_address_pool(name: str, addresses: list[str], **metadata: Any) -> str:
    body = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": "metallb-system", **metadata},
        "spec": {"addresses": addresses},
    }
    return json.dumps(body)


def tenant_events(kubectl: Kubectl) -> list[dict[str, Any]]:
    """The Events the tenant can list in its own namespace (as the tenant: RBAC applies)."""
    result = kubectl("get", "events", "-o", "json")
    return list(json.loads(result.stdout)["items"])


def messages(kubectl: Kubectl, name: str, reason: str) -> list[str]:
    return [
        e["message"]
        for e in tenant_events(kubectl)
        if e["involvedObject"]["name"] == name and e["reason"] == reason
    ]


def test_a_tenant_learns_nothing_of_another_and_pools_can_keep_sharing_in_a_namespace(
    rbac_cluster: RbacCluster, in_cluster_controller: Callable[..., InClusterController]
) -> None:
    admin = rbac_cluster.kubectl
    alice, bob = rbac_cluster.tenant("alice"), rbac_cluster.tenant("bob")
    apply(admin, SHIPPED_RBAC)
    apply(admin, ip_address_pool("shared", ["192.168.70.10/32"]))
    controller = in_cluster_controller()
    assert alice("get", "events", "-n", "tenant-b", check=False).returncode != 0  # RBAC is enforced

    bob_service = service("svc-b1", "tenant-b", {"metallb.io/allow-shared-ip": "bob-secret-key"})
    apply(bob, bob_service)
    assert wait_ips(bob, "svc-b1", "tenant-b", timeout=30) == ["192.168.70.10"]

    # Alice asks for Bob's IP with her own key: refused, and told nothing about Bob's Service or key.
    alice_request = {"metallb.io/loadBalancerIPs": "192.168.70.10", "metallb.io/allow-shared-ip": "alice-key"}
    apply(alice, service("svc-a1", "tenant-a", alice_request, ports=((443, "TCP"),)))
    [refusal] = wait_for("alice's AllocationFailed", lambda: messages(alice, "svc-a1", "AllocationFailed"))
    assert "already in use by a Service in another namespace" in refusal, refusal
    for secret in ("tenant-b", "svc-b1", "bob-secret-key", "alice-key"):
        assert all(secret not in json.dumps(event) for event in tenant_events(alice)), secret
        assert secret not in refusal

    # MetalLB's rule (the default): the same key shares across namespaces; a guessed key is enough.
    alice_request["metallb.io/allow-shared-ip"] = "bob-secret-key"
    apply(alice, service("svc-a1", "tenant-a", alice_request, ports=((443, "TCP"),)))
    assert wait_ips(alice, "svc-a1", "tenant-a", timeout=30) == ["192.168.70.10"]

    # The pool's owner keeps sharing within one namespace: Bob, who held the IP first, keeps it; Alice's
    # Service loses it and is told why, still without a word about Bob.
    scope = {"ironlb.io/ip-sharing": "namespace"}
    apply(admin, ip_address_pool("shared", ["192.168.70.10/32"], annotations=scope))
    wait_for("alice's Service cleared", lambda: service_ips(alice, "svc-a1", "tenant-a") == [], timeout=30)
    scoped = wait_for(
        "the namespace-scope refusal",
        lambda: [m for m in messages(alice, "svc-a1", "AllocationFailed") if "shares IPs only" in m],
        timeout=30,
    )
    assert 'pool "shared" shares IPs only between Services of one namespace' in scoped[0], scoped
    assert service_ips(bob, "svc-b1", "tenant-b") == ["192.168.70.10"]
    for secret in ("tenant-b", "svc-b1", "bob-secret-key"):
        assert all(secret not in json.dumps(event) for event in tenant_events(alice)), secret
    assert "bob-secret-key" not in controller.log() and "alice-key" not in controller.log()
    assert controller.alive() and rbac_cluster.denials() == []


def test_unreadable_namespace_labels_fail_closed(
    rbac_cluster: RbacCluster, in_cluster_controller: Callable[..., InClusterController]
) -> None:
    """A pool open to every namespace except those labelled tier=restricted. The controller may list
    Namespaces at start but neither watch nor get them (a denied read stands for any failed one): a Service in
    a restricted namespace created later must wait, not be admitted as if its namespace had no labels; once
    the labels can be read it is refused. Before: it got an IP at once."""
    admin = rbac_cluster.kubectl
    docs = [doc for doc in yaml.safe_load_all(SHIPPED_RBAC.read_text()) if doc]
    cluster_role = next(doc for doc in docs if doc["kind"] == "ClusterRole")
    [namespaces_rule] = [rule for rule in cluster_role["rules"] if rule["resources"] == ["namespaces"]]
    namespaces_rule["verbs"] = ["list"]
    admin("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    restricted_out = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "open", "namespace": "metallb-system"},
        "spec": {
            "addresses": ["192.168.60.0/30"],
            "serviceAllocation": {
                "namespaceSelectors": [
                    {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["restricted"]}]}
                ]
            },
        },
    }
    apply(admin, json.dumps(restricted_out))
    controller = in_cluster_controller()
    # Its Namespace list is done once its watch is denied: tenant-r is then known to it only through a read.
    wait_for(
        "the controller's Namespace watch denied",
        lambda: any("verb=watch resource=namespaces " in line for line in rbac_cluster.denials()),
        timeout=30,
    )
    metadata = {"name": "tenant-r", "labels": {"tier": "restricted"}}
    apply(admin, json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}))
    apply(admin, service("svc-r", "tenant-r"))
    wait_for(
        "the Service held back",
        lambda: any(
            "cannot read the labels of namespace" in e["message"]
            for e in (get_json(admin, "events", "-n", "tenant-r") or {"items": []})["items"]
        ),
        timeout=30,
    )
    assert service_ips(admin, "svc-r", "tenant-r") == []

    apply(admin, SHIPPED_RBAC)  # the namespace can be read again: the retry decides
    wait_for(
        "the refusal once the labels are known",
        lambda: any(
            'pool "open" does not admit' in e["message"] or "no pool available" in e["message"]
            for e in (get_json(admin, "events", "-n", "tenant-r") or {"items": []})["items"]
        ),
        timeout=60,
    )
    assert service_ips(admin, "svc-r", "tenant-r") == []
    # An unrestricted namespace is served by the same pool.
    admin("create", "namespace", "tenant-o")
    apply(admin, service("svc-o", "tenant-o"))
    assert wait_ips(admin, "svc-o", "tenant-o", timeout=30) == ["192.168.60.0"]
    assert controller.alive()
