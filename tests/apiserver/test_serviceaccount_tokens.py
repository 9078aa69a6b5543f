"""What the lab kubelet needs from the API server to run ironlb's pods as a cluster would: service-account
tokens (the TokenRequest API, accepted as the account's identity under RBAC, revoked with their pod) and
`pods/log` (`kubectl logs`) from the files the kubelets write."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import podlogs
from lab.apiserver.process import ApiServerProcess
from tests.apiserver.rest import Rest
from tests.conftest import KUBECTL, make_kubectl

PODS = "/api/v1/namespaces/default/pods"
TOKEN = "/api/v1/namespaces/default/serviceaccounts/default/token"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ApiServerProcess, Rest, Path]]:
    logs = tmp_path / "pod-logs"
    srv = ApiServerProcess(
        data_dir=tmp_path / "apiserver",
        extra_args=["--authorization-mode", "RBAC", "--pod-log-dir", str(logs)],
    )
    srv.start()
    rest = Rest(srv.kubeconfig)
    try:
        yield srv, rest, logs
    finally:
        rest.close()
        srv.stop()
        srv.cleanup()


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "ironlb:0.1.0"}]},
    }


def token_for(rest: Rest, name: str, uid: str, **spec: Any) -> Any:
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}, **spec},
    }
    return rest.request("POST", TOKEN, body)


def test_a_bound_token_is_its_account_under_rbac_until_its_pod_is_gone(
    server: tuple[ApiServerProcess, Rest, Path],
) -> None:
    srv, rest, _ = server
    created = rest.ok("POST", PODS, pod("p1"))
    answer = token_for(rest, "p1", created["metadata"]["uid"], expirationSeconds=3607)
    assert answer.status_code == 201, answer.text
    status = answer.json()["status"]
    assert status["token"].startswith("eyJ") and status["expirationTimestamp"].endswith("Z")

    as_pod = Rest(srv.kubeconfig, token=status["token"], use_cert=False)
    try:
        denied = as_pod.request("GET", PODS)
        assert denied.status_code == 403, denied.text
        user = "system:serviceaccount:default:default"
        assert f'User "{user}" cannot list resource "pods"' in denied.json()["message"]
        kubectl = make_kubectl(srv.kubeconfig)
        kubectl("create", "role", "pod-reader", "--verb=list", "--resource=pods")
        kubectl("create", "rolebinding", "reader", "--role=pod-reader", "--serviceaccount=default:default")
        assert as_pod.request("GET", PODS).status_code == 200
        # Deleting the pod revokes its token, as in the real server.
        rest.ok("DELETE", f"{PODS}/p1", gracePeriodSeconds=0)
        assert as_pod.request("GET", PODS).status_code == 401
    finally:
        as_pod.close()


def test_token_requests_are_validated(server: tuple[ApiServerProcess, Rest, Path]) -> None:
    _, rest, _ = server
    created = rest.ok("POST", PODS, pod("p2"))
    short = token_for(rest, "p2", created["metadata"]["uid"], expirationSeconds=60)
    assert short.status_code == 422 and "spec.expirationSeconds" in short.json()["message"], short.text
    assert token_for(rest, "nope", "x").status_code == 404
    assert token_for(rest, "p2", "another-uid").status_code == 409


def test_pod_logs_are_served_from_the_kubelets_files(server: tuple[ApiServerProcess, Rest, Path]) -> None:
    srv, rest, logs = server
    created = rest.ok("POST", PODS, pod("p3"))
    uid = created["metadata"]["uid"]
    waiting = rest.request("GET", f"{PODS}/p3/log")
    assert waiting.status_code == 400 and "waiting to start" in waiting.json()["message"]
    for run, text in ((0, "first run\ncrashed\n"), (1, "one\ntwo\nthree\n")):
        path = podlogs.container_log(logs, "default", "p3", uid, "c", run)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    kubectl = make_kubectl(srv.kubeconfig)
    assert kubectl("logs", "p3").stdout == "one\ntwo\nthree\n"
    assert kubectl("logs", "p3", "--tail", "1").stdout == "three\n"
    assert kubectl("logs", "p3", "--previous").stdout == "first run\ncrashed\n"
    wrong = kubectl("logs", "p3", "-c", "other", check=False)
    assert wrong.returncode != 0 and "container other is not valid for pod p3" in wrong.stderr

    # -f streams what the container writes next, and ends with the pod.
    follow = subprocess.Popen(
        [str(KUBECTL), "--kubeconfig", str(srv.kubeconfig), "logs", "-f", "p3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follow.stdout is not None and follow.stdout.readline() == "one\n"  # it is streaming
        with podlogs.container_log(logs, "default", "p3", uid, "c", 1).open("a") as out:
            out.write("four\n")
        assert [follow.stdout.readline() for _ in range(3)] == ["two\n", "three\n", "four\n"]
        rest.ok("DELETE", f"{PODS}/p3", gracePeriodSeconds=0)
        assert follow.wait(timeout=10) == 0
    finally:
        follow.kill()
        follow.wait()
