"""Durability (restart, SIGKILL, watch resume across restarts) and authentication."""

from __future__ import annotations

import ipaddress
import ssl
import threading
import time
from pathlib import Path

from cryptography import x509

from lab.apiserver.process import ApiServerProcess
from tests.apiserver.rest import Rest, configmap

CMS = "/api/v1/namespaces/default/configmaps"
SVCS = "/api/v1/namespaces/default/services"


def nodeport_service(name: str, port: int) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]},
    }


def test_restart_keeps_objects_allocations_and_watch_history(tmp_path: Path) -> None:
    data = tmp_path / "srv"
    with ApiServerProcess(data) as server:
        rest = Rest(server.kubeconfig)
        a = rest.ok("POST", CMS, configmap("a", x="1"))
        since = a["metadata"]["resourceVersion"]
        rest.ok("POST", CMS, configmap("b"))
        rest.ok("PATCH", f"{CMS}/a", {"data": {"x": "2"}}, content_type="application/merge-patch+json")
        rest.ok("DELETE", f"{CMS}/b")
        svc = rest.ok("POST", SVCS, nodeport_service("np", 30080))
        before = {o["metadata"]["name"]: o for o in rest.ok("GET", CMS)["items"]}
        rest.close()
        kubeconfig_before = server.kubeconfig.read_text()
    with ApiServerProcess(data) as server:
        assert server.kubeconfig.read_text().split("server:")[0] == kubeconfig_before.split("server:")[0]
        # The old client certificate is still accepted (same CA).
        rest = Rest(server.kubeconfig)
        after = {o["metadata"]["name"]: o for o in rest.ok("GET", CMS)["items"]}
        assert after == before
        assert rest.ok("GET", f"{SVCS}/np")["spec"] == svc["spec"]
        clash = rest.request("POST", SVCS, nodeport_service("np2", 30080))
        assert clash.status_code == 422 and "provided port is already allocated" in clash.json()["message"]
        events = list(rest.watch(CMS, resourceVersion=since, timeoutSeconds="1"))
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
            ("ADDED", "b"),
            ("MODIFIED", "a"),
            ("DELETED", "b"),
        ]
        created = rest.ok("POST", CMS, configmap("c"))
        assert int(created["metadata"]["resourceVersion"]) > int(svc["metadata"]["resourceVersion"])
        rest.close()


def test_sigkill_right_after_an_acknowledged_write_keeps_it(tmp_path: Path) -> None:
    data = tmp_path / "srv"
    server = ApiServerProcess(data).start()
    rest = Rest(server.kubeconfig)
    acked = rest.ok("POST", CMS, configmap("survivor", k="v"))
    server.kill()
    rest.close()
    with ApiServerProcess(data) as again:
        rest = Rest(again.kubeconfig)
        assert rest.ok("GET", f"{CMS}/survivor") == acked
        rest.close()


def test_compaction_keeps_everything(tmp_path: Path) -> None:
    data = tmp_path / "srv"
    with ApiServerProcess(data, extra_args=["--compact-every", "5"]) as server:
        rest = Rest(server.kubeconfig)
        for i in range(12):
            rest.ok("POST", CMS, configmap(f"c{i}"))
        rest.ok("DELETE", f"{CMS}/c3")
        rest.close()
    assert (data / "snapshot.json").exists()
    with ApiServerProcess(data) as server:
        rest = Rest(server.kubeconfig)
        names = sorted(o["metadata"]["name"] for o in rest.ok("GET", CMS)["items"])
        assert names == sorted(f"c{i}" for i in range(12) if i != 3)
        rest.close()


def test_bearer_token_and_unauthenticated(apiserver: ApiServerProcess) -> None:
    with_token = Rest(apiserver.kubeconfig, token=apiserver.token, use_cert=False)
    assert with_token.ok("GET", "/api/v1/namespaces/default")["metadata"]["name"] == "default"
    # The scheme is case-insensitive: the kubernetes client's in-cluster loader sends "bearer <token>".
    with_token.session.headers["Authorization"] = f"bearer {apiserver.token}"
    assert with_token.ok("GET", "/api/v1/namespaces/default")["metadata"]["name"] == "default"
    anonymous = Rest(apiserver.kubeconfig, use_cert=False)
    denied = anonymous.request("GET", "/api/v1/namespaces")
    assert denied.status_code == 401 and denied.json()["reason"] == "Unauthorized"
    assert anonymous.request("GET", "/healthz").status_code == 200
    wrong = Rest(apiserver.kubeconfig, token="not-the-token", use_cert=False)
    assert wrong.request("GET", "/api/v1/namespaces").status_code == 401
    for client in (with_token, anonymous, wrong):
        client.close()


def test_serving_certificate_names_bind_addresses_and_sans(tmp_path: Path) -> None:
    with ApiServerProcess(tmp_path / "srv", extra_args=["--tls-san", "api.ilbt.example"]) as server:
        pem = ssl.get_server_certificate(("127.0.0.1", server.port))
    cert = x509.load_pem_x509_certificate(pem.encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = sans.get_values_for_type(x509.DNSName)
    assert "api.ilbt.example" in names and "localhost" in names and "kubernetes.default.svc" in names
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)


def test_every_bind_address_serves(tmp_path: Path) -> None:
    args = ["--bind-address", "127.0.0.1", "--bind-address", "127.0.0.2"]
    with ApiServerProcess(tmp_path / "srv", extra_args=args) as server:
        assert server.url.startswith("https://127.0.0.1:")
        pem = ssl.get_server_certificate(("127.0.0.2", server.port))
        rest = Rest(server.kubeconfig)
        assert rest.ok("GET", "/api/v1/namespaces/default")["metadata"]["name"] == "default"
        rest.close()
    sans = x509.load_pem_x509_certificate(pem.encode()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert ipaddress.ip_address("127.0.0.2") in sans.value.get_values_for_type(x509.IPAddress)


def test_one_server_per_data_dir_and_a_successor_waits(tmp_path: Path) -> None:
    data = tmp_path / "srv"
    first = ApiServerProcess(data).start()
    rest = Rest(first.kubeconfig)
    rest.ok("POST", CMS, configmap("before"))
    rest.close()
    successor = ApiServerProcess(data)
    stopper = threading.Timer(1.0, first.stop)
    stopper.start()
    began = time.monotonic()
    successor.start()  # blocks on the data dir lock until the first server has let it go at its exit
    try:
        assert time.monotonic() - began >= 0.9
        rest = Rest(successor.kubeconfig)
        assert rest.ok("GET", f"{CMS}/before")["metadata"]["name"] == "before"
        rest.close()
    finally:
        stopper.join()
        successor.stop()
