"""RBAC authorization: the pure evaluator (lab/apiserver/rbac.py) rule by rule, then the real server with
`--authorization-mode RBAC` and `--token-auth-file`, over raw HTTP and with kubectl."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.apiserver.process import ApiServerProcess
from lab.apiserver.rbac import (
    Authorizer,
    Policy,
    RequestAttributes,
    UserInfo,
    authenticated_user,
    forbidden_message,
    parse_token_csv,
    request_attributes,
)
from tests.apiserver.rest import Rest, configmap
from tests.conftest import Kubectl, make_kubectl

SA = "system:serviceaccount:metallb-system:ironlb-controller"
ALICE = authenticated_user("alice", "1", ["dev"])
RBAC_V1 = "/apis/rbac.authorization.k8s.io/v1"
CONTROLLER, M = "ironlb-controller", "metallb-system"
GET_LIST, LIST, PATCH = ["get", "list"], ["list"], ["patch"]

# -- pure: users, tokens, request attributes ------------------------------------------------------------


def test_service_account_users_get_their_groups_and_everyone_is_authenticated() -> None:
    sa = authenticated_user(SA)
    assert sa.groups == (
        "system:serviceaccounts",
        "system:serviceaccounts:metallb-system",
        "system:authenticated",
    )
    assert ALICE.groups == ("dev", "system:authenticated")
    assert not ALICE.is_master
    assert authenticated_user("kubernetes-admin", "", ["system:masters"]).is_master


def test_token_file_in_kube_apiserver_format() -> None:
    tokens = parse_token_csv('t1,admin,admin,"system:masters"\nt2,bob,42\n\nt3,carol,7,"a,b"\n')
    assert tokens["t1"].is_master
    assert tokens["t2"] == UserInfo("bob", "42", ("system:authenticated",))
    assert tokens["t3"].groups == ("a", "b", "system:authenticated")
    with pytest.raises(ValueError, match="line 1"):
        parse_token_csv("only-a-token\n")


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/namespaces/default/services/x", {}, ("get", "", "services", "", "default", "x")),
        ("GET", "/api/v1/namespaces/default/services", {}, ("list", "", "services", "", "default", "")),
        ("GET", "/api/v1/services", {}, ("list", "", "services", "", "", "")),
        ("GET", "/api/v1/services", {"watch": "true"}, ("watch", "", "services", "", "", "")),
        ("GET", "/api/v1/watch/namespaces/a/pods", {}, ("watch", "", "pods", "", "a", "")),
        ("GET", "/api/v1/watch/namespaces/a/pods/p", {}, ("watch", "", "pods", "", "a", "p")),
        (
            "GET",
            "/api/v1/namespaces/a/services",
            {"watch": "1", "fieldSelector": "metadata.name=web"},
            ("watch", "", "services", "", "a", "web"),
        ),
        ("POST", "/api/v1/namespaces/a/configmaps", {}, ("create", "", "configmaps", "", "a", "")),
        ("PUT", "/api/v1/namespaces/a/configmaps/c", {}, ("update", "", "configmaps", "", "a", "c")),
        (
            "PATCH",
            "/api/v1/namespaces/a/services/s/status",
            {},
            ("patch", "", "services", "status", "a", "s"),
        ),
        ("DELETE", "/api/v1/namespaces/a/configmaps/c", {}, ("delete", "", "configmaps", "", "a", "c")),
        ("DELETE", "/api/v1/namespaces/a/secrets", {}, ("deletecollection", "", "secrets", "", "a", "")),
        # A namespace is "in" itself, as in the real RequestInfoFactory.
        ("GET", "/api/v1/namespaces/a", {}, ("get", "", "namespaces", "", "a", "a")),
        ("PUT", "/api/v1/namespaces/a/finalize", {}, ("update", "", "namespaces", "finalize", "a", "a")),
        ("GET", "/api/v1/namespaces", {}, ("list", "", "namespaces", "", "", "")),
        (
            "PATCH",
            "/apis/metallb.io/v1beta1/namespaces/m/ipaddresspools/p/status",
            {},
            ("patch", "metallb.io", "ipaddresspools", "status", "m", "p"),
        ),
        (
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/m/leases/l",
            {},
            ("update", "coordination.k8s.io", "leases", "", "m", "l"),
        ),
    ],
)
def test_request_attributes_like_the_real_request_info(
    method: str, path: str, query: dict[str, str], expected: tuple[str, ...]
) -> None:
    attrs = request_attributes(method, path, query)
    assert attrs.resource_request
    got = (attrs.verb, attrs.api_group, attrs.resource, attrs.subresource, attrs.namespace, attrs.name)
    assert got == expected


@pytest.mark.parametrize("path", ["/api", "/api/v1", "/apis", "/apis/metallb.io", "/apis/apps/v1", "/livez"])
def test_discovery_paths_are_non_resource_requests(path: str) -> None:
    attrs = request_attributes("GET", path, {})
    assert (attrs.resource_request, attrs.verb, attrs.path) == (False, "get", path)


def test_forbidden_messages_word_for_word() -> None:
    sa = authenticated_user(SA)
    patch_status = request_attributes("PATCH", "/api/v1/namespaces/default/services/x/status", {})
    assert forbidden_message(sa, patch_status) == (
        'services "x" is forbidden: User "system:serviceaccount:metallb-system:ironlb-controller" '
        'cannot patch resource "services/status" in API group "" in the namespace "default"'
    )
    assert forbidden_message(ALICE, request_attributes("GET", "/api/v1/services", {})) == (
        'services is forbidden: User "alice" cannot list resource "services" in API group "" '
        "at the cluster scope"
    )
    pools = request_attributes("GET", "/apis/metallb.io/v1beta1/namespaces/m/ipaddresspools/p", {})
    assert forbidden_message(ALICE, pools) == (
        'ipaddresspools.metallb.io "p" is forbidden: User "alice" cannot get resource "ipaddresspools" '
        'in API group "metallb.io" in the namespace "m"'
    )
    metrics = RequestAttributes(verb="get", path="/metrics", resource_request=False)
    assert forbidden_message(ALICE, metrics) == 'forbidden: User "alice" cannot get path "/metrics"'


# -- pure: the policy -----------------------------------------------------------------------------------


def role(name: str, rules: list[dict[str, Any]], namespace: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"kind": "Role" if namespace else "ClusterRole", "metadata": meta, "rules": rules}


def binding(
    name: str, ref_kind: str, ref_name: str, subjects: list[dict[str, str]], namespace: str = ""
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "kind": "RoleBinding" if namespace else "ClusterRoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref_kind, "name": ref_name},
        "subjects": subjects,
    }


def stored(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj, apiVersion="rbac.authorization.k8s.io/v1")


def user(name: str) -> dict[str, str]:
    return {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name}


def req(method: str, path: str, **query: str) -> RequestAttributes:
    return request_attributes(method, path, query)


def test_role_binding_grants_only_in_its_namespace() -> None:
    policy = Policy.build(
        [role("cm-reader", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": GET_LIST}], "a")],
        [],
        [binding("alice-reads", "Role", "cm-reader", [user("alice")], "a")],
        [],
    )
    assert policy.allows(ALICE, req("GET", "/api/v1/namespaces/a/configmaps/x"))
    assert policy.allows(ALICE, req("GET", "/api/v1/namespaces/a/configmaps"))
    assert not policy.allows(ALICE, req("GET", "/api/v1/namespaces/b/configmaps/x"))
    assert not policy.allows(ALICE, req("GET", "/api/v1/configmaps"))  # all namespaces: cluster scope
    assert not policy.allows(ALICE, req("DELETE", "/api/v1/namespaces/a/configmaps/x"))
    assert not policy.allows(ALICE, req("GET", "/api/v1/namespaces/a/secrets/x"))
    assert not policy.allows(authenticated_user("bob"), req("GET", "/api/v1/namespaces/a/configmaps/x"))


def test_a_role_binding_to_a_cluster_role_grants_it_only_in_the_binding_namespace() -> None:
    policy = Policy.build(
        [],
        [role("svc-admin", [{"apiGroups": [""], "resources": ["services"], "verbs": ["*"]}])],
        [binding("b", "ClusterRole", "svc-admin", [user("alice")], "a")],
        [],
    )
    assert policy.allows(ALICE, req("DELETE", "/api/v1/namespaces/a/services"))
    assert not policy.allows(ALICE, req("DELETE", "/api/v1/namespaces/b/services/s"))
    assert not policy.allows(ALICE, req("GET", "/api/v1/services"))


def test_a_cluster_role_binding_grants_everywhere_and_at_cluster_scope() -> None:
    policy = Policy.build(
        [],
        [role("ns-reader", [{"apiGroups": [""], "resources": ["namespaces", "services"], "verbs": LIST}])],
        [],
        [binding("b", "ClusterRole", "ns-reader", [{"kind": "Group", "name": "dev"}])],
    )
    assert policy.allows(ALICE, req("GET", "/api/v1/namespaces"))
    assert policy.allows(ALICE, req("GET", "/api/v1/services"))
    assert policy.allows(ALICE, req("GET", "/api/v1/namespaces/z/services"))
    assert not policy.allows(ALICE, req("GET", "/api/v1/namespaces/z/services", watch="true"))
    assert not policy.allows(authenticated_user("bob"), req("GET", "/api/v1/namespaces"))


def test_service_account_subjects_default_to_the_binding_namespace() -> None:
    rules = [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]}]
    policy = Policy.build(
        [role("lease", rules, "metallb-system")],
        [],
        [binding("b", "Role", "lease", [{"kind": "ServiceAccount", "name": CONTROLLER}], M)],
        [],
    )
    create = req("POST", "/apis/coordination.k8s.io/v1/namespaces/metallb-system/leases")
    assert policy.allows(authenticated_user(SA), create)
    assert not policy.allows(authenticated_user("system:serviceaccount:other:ironlb-controller"), create)


def test_resource_names_narrow_a_rule_and_never_grant_list_or_create() -> None:
    rules = [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["mine"],
            "verbs": ["get", "update", "list", "create"],
        }
    ]
    policy = Policy.build([role("r", rules, "m")], [], [binding("b", "Role", "r", [user("alice")], "m")], [])
    leases = "/apis/coordination.k8s.io/v1/namespaces/m/leases"
    assert policy.allows(ALICE, req("GET", f"{leases}/mine"))
    assert policy.allows(ALICE, req("PUT", f"{leases}/mine"))
    assert not policy.allows(ALICE, req("PUT", f"{leases}/theirs"))
    assert not policy.allows(ALICE, req("GET", leases))
    assert not policy.allows(ALICE, req("POST", leases))
    # A list narrowed to the name by a field selector is allowed, as in the real server.
    assert policy.allows(ALICE, req("GET", leases, fieldSelector="metadata.name=mine"))


def test_subresources_are_separate_resources_unless_a_wildcard_names_them() -> None:
    policy = Policy.build(
        [],
        [
            role("main", [{"apiGroups": [""], "resources": ["services"], "verbs": ["patch"]}]),
            role("any-status", [{"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["patch"]}]),
            role("scale", [{"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["update"]}]),
        ],
        [],
        [
            binding("a", "ClusterRole", "main", [user("alice")]),
            binding("b", "ClusterRole", "any-status", [user("bob")]),
            binding("c", "ClusterRole", "scale", [user("alice")]),
        ],
    )
    bob = authenticated_user("bob")
    status = req("PATCH", "/api/v1/namespaces/d/services/s/status")
    assert policy.allows(ALICE, req("PATCH", "/api/v1/namespaces/d/services/s"))
    assert not policy.allows(ALICE, status)
    assert policy.allows(bob, status)
    assert policy.allows(bob, req("PATCH", "/apis/metallb.io/v1beta1/namespaces/m/ipaddresspools/p/status"))
    assert not policy.allows(bob, req("PATCH", "/api/v1/namespaces/d/services/s"))
    assert policy.allows(ALICE, req("PUT", "/apis/apps/v1/namespaces/d/deployments/x/scale"))
    assert not policy.allows(ALICE, req("PUT", "/apis/apps/v1/namespaces/d/deployments/x"))


def test_api_groups_must_match() -> None:
    policy = Policy.build(
        [],
        [role("core-events", [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}])],
        [],
        [binding("b", "ClusterRole", "core-events", [user("alice")])],
    )
    assert policy.allows(ALICE, req("POST", "/api/v1/namespaces/d/events"))
    assert not policy.allows(ALICE, req("POST", "/apis/events.k8s.io/v1/namespaces/d/events"))


def test_non_resource_urls_need_a_cluster_role_binding_and_discovery_is_open_to_the_authenticated() -> None:
    metrics = [{"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]}]
    policy = Policy.build(
        [],
        [role("metrics", metrics)],
        [binding("ns", "ClusterRole", "metrics", [user("bob")], "d")],
        [binding("c", "ClusterRole", "metrics", [user("alice")])],
    )
    bob = authenticated_user("bob")
    assert policy.allows(ALICE, req("GET", "/metrics"))
    assert policy.allows(ALICE, req("GET", "/logs/kube.log"))
    assert not policy.allows(ALICE, req("POST", "/metrics"))
    assert not policy.allows(ALICE, req("GET", "/debug"))
    assert not policy.allows(bob, req("GET", "/metrics"))  # a RoleBinding never grants a URL
    for path in ("/api", "/api/v1", "/apis", "/apis/metallb.io/v1beta1", "/openapi/v3", "/version", "/livez"):
        assert policy.allows(bob, req("GET", path)), path
    assert not policy.allows(UserInfo("no-groups"), req("GET", "/api"))


def test_masters_are_allowed_everything_and_dangling_bindings_grant_nothing() -> None:
    policy = Policy.build(
        [role("r", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}], "other")],
        [],
        [
            binding("missing", "ClusterRole", "no-such-role", [user("alice")], "a"),
            binding("cross-ns", "Role", "r", [user("alice")], "a"),  # a Role binds only in its own namespace
        ],
        [binding("role-ref", "Role", "r", [user("alice")])],  # a ClusterRoleBinding cannot name a Role
    )
    admin = authenticated_user("kubernetes-admin", "", ["system:masters"])
    assert policy.allows(admin, req("DELETE", "/api/v1/namespaces"))
    assert not policy.allows(ALICE, req("GET", "/api/v1/namespaces/a/configmaps"))
    assert not policy.allows(ALICE, req("GET", "/api/v1/namespaces/other/configmaps"))


def test_authorizer_rebuilds_only_when_the_generation_changes() -> None:
    stored: list[list[dict[str, Any]]] = [[], [], [], []]
    authorizer = Authorizer(lambda: stored)
    get_cm = req("GET", "/api/v1/namespaces/a/configmaps/x")
    assert not authorizer.allows(ALICE, get_cm, 1)
    stored[1] = [role("all", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}])]
    stored[3] = [binding("b", "ClusterRole", "all", [user("alice")])]
    assert not authorizer.allows(ALICE, get_cm, 1)  # cached: nothing told it RBAC changed
    assert authorizer.allows(ALICE, get_cm, 2)
    for _ in range(100):
        authorizer.allows(ALICE, get_cm, 2)
    assert authorizer.rebuilds == 2


# -- the real server ------------------------------------------------------------------------------------

ALICE_TOKEN = "alice-token-0123456789"


@pytest.fixture
def rbac_server(tmp_path: Path) -> Iterator[ApiServerProcess]:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(f'{ALICE_TOKEN},alice,1001,"dev,qa"\n')
    server = ApiServerProcess(
        data_dir=tmp_path / "apiserver",
        extra_args=["--authorization-mode", "RBAC", "--token-auth-file", str(tokens)],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.cleanup()


def token_kubeconfig(server: ApiServerProcess, token: str, path: Path) -> Path:
    """A kubeconfig for a bearer-token user: the admin kubeconfig's server and CA, no client certificate."""
    admin = yaml.safe_load(server.kubeconfig.read_text())
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": admin["clusters"],
                "users": [{"name": "token-user", "user": {"token": token}}],
                "contexts": [
                    {"name": "c", "context": {"cluster": admin["clusters"][0]["name"], "user": "token-user"}}
                ],
                "current-context": "c",
            }
        )
    )
    return path


def create_role_and_binding(
    admin: Rest, namespace: str, rules: list[dict[str, Any]], subject: dict[str, str]
) -> None:
    admin.ok("POST", f"{RBAC_V1}/namespaces/{namespace}/roles", stored(role("r", rules, namespace)))
    rolebinding = binding("rb", "Role", "r", [subject], namespace)
    admin.ok("POST", f"{RBAC_V1}/namespaces/{namespace}/rolebindings", stored(rolebinding))


def test_token_user_is_forbidden_until_bound_and_only_there(rbac_server: ApiServerProcess) -> None:
    admin = Rest(rbac_server.kubeconfig)
    alice = Rest(rbac_server.kubeconfig, token=ALICE_TOKEN, use_cert=False)
    try:
        admin.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "team"}})
        admin.ok("POST", "/api/v1/namespaces/team/configmaps", configmap("c", x="1"))
        admin.ok("POST", "/api/v1/namespaces/default/configmaps", configmap("c", x="1"))
        # Authenticated users may discover, as with the real default roles.
        assert alice.request("GET", "/api/v1").status_code == 200
        assert alice.request("GET", "/apis").status_code == 200
        assert alice.request("GET", "/version").status_code == 200

        denied = alice.request("GET", "/api/v1/namespaces/team/configmaps/c")
        assert denied.status_code == 403
        assert denied.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": 'configmaps "c" is forbidden: User "alice" cannot get resource "configmaps" '
            'in API group "" in the namespace "team"',
            "reason": "Forbidden",
            "details": {"name": "c", "kind": "configmaps"},
            "code": 403,
        }
        rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "patch"]}]
        create_role_and_binding(admin, "team", rules, {"kind": "Group", "name": "qa"})
        assert alice.ok("GET", "/api/v1/namespaces/team/configmaps/c")["data"] == {"x": "1"}
        listed = alice.ok("GET", "/api/v1/namespaces/team/configmaps")["items"]
        assert [o["metadata"]["name"] for o in listed] == ["c"]
        patched = alice.ok(
            "PATCH", "/api/v1/namespaces/team/configmaps/c", {"data": {"x": "2"}},
            content_type="application/merge-patch+json",
        )  # fmt: skip
        assert patched["data"] == {"x": "2"}
        assert alice.request("DELETE", "/api/v1/namespaces/team/configmaps/c").status_code == 403
        assert alice.request("GET", "/api/v1/namespaces/default/configmaps/c").status_code == 403
        everywhere = alice.request("GET", "/api/v1/configmaps")
        assert everywhere.status_code == 403
        assert everywhere.json()["message"] == (
            'configmaps is forbidden: User "alice" cannot list resource "configmaps" in API group "" '
            "at the cluster scope"
        )
        # Deleting the binding takes the access away again (the policy follows RBAC writes).
        admin.ok("DELETE", f"{RBAC_V1}/namespaces/team/rolebindings/rb")
        assert alice.request("GET", "/api/v1/namespaces/team/configmaps/c").status_code == 403
        # The admin client certificate is system:masters: never denied.
        admin.ok("DELETE", "/api/v1/namespaces/team/configmaps/c")
        admin.ok("GET", "/api/v1/configmaps")
    finally:
        admin.close()
        alice.close()
    log = rbac_server.log_file
    assert log is not None
    denials = [line for line in log.read_text().splitlines() if "event=forbidden" in line]
    assert any(
        "user=alice verb=get resource=configmaps " in line and "namespace=team" in line for line in denials
    )
    assert not any("user=kubernetes-admin" in line for line in denials)


def test_cluster_role_binding_resource_names_subresources(rbac_server: ApiServerProcess) -> None:
    admin = Rest(rbac_server.kubeconfig)
    alice = Rest(rbac_server.kubeconfig, token=ALICE_TOKEN, use_cert=False)
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    }
    try:
        admin.ok("POST", "/api/v1/namespaces/default/services", svc)
        admin.ok("POST", "/api/v1/namespaces/default/services", dict(svc, metadata={"name": "other"}))
        rules = [
            {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch"]},
            {"apiGroups": [""], "resources": ["services/status"], "resourceNames": ["web"], "verbs": PATCH},
        ]
        admin.ok("POST", f"{RBAC_V1}/clusterroles", stored(role("lb", rules)))
        crb = binding("lb", "ClusterRole", "lb", [user("alice")])
        admin.ok("POST", f"{RBAC_V1}/clusterrolebindings", stored(crb))
        assert len(alice.ok("GET", "/api/v1/services")["items"]) >= 2  # all namespaces: cluster scope
        ingress = {"status": {"loadBalancer": {"ingress": [{"ip": "192.168.10.90"}]}}}
        merge = "application/merge-patch+json"
        alice.ok("PATCH", "/api/v1/namespaces/default/services/web/status", ingress, content_type=merge)
        other = alice.request("PATCH", "/api/v1/namespaces/default/services/other/status", ingress, merge)
        assert other.status_code == 403
        assert other.json()["message"] == (
            'services "other" is forbidden: User "alice" cannot patch resource "services/status" '
            'in API group "" in the namespace "default"'
        )
        labels = {"metadata": {"labels": {"a": "b"}}}
        main = alice.request("PATCH", "/api/v1/namespaces/default/services/web", labels, merge)
        assert main.status_code == 403  # services/status does not grant services
        assert alice.request("GET", "/api/v1/namespaces/default/services/web").status_code == 403  # no get
    finally:
        admin.close()
        alice.close()


def test_kubectl_with_a_token_shows_forbidden(rbac_server: ApiServerProcess, tmp_path: Path) -> None:
    admin_kubectl = make_kubectl(rbac_server.kubeconfig)
    alice: Kubectl = make_kubectl(token_kubeconfig(rbac_server, ALICE_TOKEN, tmp_path / "alice.kubeconfig"))
    denied = alice("get", "services", "-n", "default", check=False)
    assert denied.returncode != 0
    assert (
        'Error from server (Forbidden): services is forbidden: User "alice" cannot list resource "services" '
        'in API group "" in the namespace "default"'
    ) in denied.stderr
    admin_kubectl("create", "role", "svc-reader", "-n", "default", "--verb=get,list", "--resource=services")
    admin_kubectl("create", "rolebinding", "alice-svc", "-n", "default", "--role=svc-reader", "--user=alice")
    listed = alice("get", "services", "-n", "default", "-o", "name")
    assert "service/kubernetes" in listed.stdout
    denied_create = alice("create", "configmap", "x", "-n", "default", check=False)
    assert (
        'configmaps is forbidden: User "alice" cannot create resource "configmaps" in API group "" '
        'in the namespace "default"'
    ) in denied_create.stderr
    assert alice("get", "services", "-n", "kube-system", check=False).returncode != 0
