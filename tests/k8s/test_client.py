"""k8s.client against the embedded API server: requests, patches, apply, lists, watches, credentials."""

from __future__ import annotations

import base64
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from k8s.client import TRANSPORT_ERRORS, ApiError, Client, ConfigError, WatchExpired, load_configuration
from lab.apiserver.process import ApiServerProcess
from tests.k8s.conftest import CMS, configmap


def test_requests_and_every_kind_of_write(client: Client, cms: str) -> None:
    created = client.create(cms, configmap("a", k="v"))
    assert client.get(f"{cms}/a")["data"] == {"k": "v"}
    assert client.get_or_none(f"{cms}/missing") is None
    with pytest.raises(ApiError) as missing:
        client.get(f"{cms}/missing")
    assert (missing.value.status, missing.value.reason) == (404, "NotFound")

    updated = client.replace(f"{cms}/a", {**created, "data": {"k": "w"}})
    with pytest.raises(ApiError) as stale:
        client.replace(f"{cms}/a", {**created, "data": {"k": "x"}})  # created's resourceVersion is old now
    assert (stale.value.status, stale.value.reason) == (409, "Conflict")

    merged = client.merge_patch(f"{cms}/a", {"data": {"m": "1"}})
    assert merged["data"] == {"k": "w", "m": "1"}
    assert int(merged["metadata"]["resourceVersion"]) > int(updated["metadata"]["resourceVersion"])
    patched = client.json_patch(f"{cms}/a", [{"op": "remove", "path": "/data/m"}])
    assert patched["data"] == {"k": "w"}
    with pytest.raises(ApiError) as failed_test:
        client.json_patch(f"{cms}/a", [{"op": "test", "path": "/data/k", "value": "nope"}])
    assert failed_test.value.status == 422
    assert client.get(f"{cms}/a")["data"] == {"k": "w"}

    applied = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ap"}, "data": {"q": "1"}}
    assert client.apply(f"{cms}/ap", applied, field_manager="ironlb-test")["data"] == {"q": "1"}
    again = client.apply(
        f"{cms}/ap", {**applied, "data": {"q": "2"}}, field_manager="ironlb-test", force=True
    )
    assert again["data"] == {"q": "2"}

    with pytest.raises(ApiError) as wrong_uid:
        client.delete(f"{cms}/a", uid="not-its-uid")
    assert wrong_uid.value.status == 409
    assert client.delete(f"{cms}/a", uid=created["metadata"]["uid"]) is True
    assert client.delete(f"{cms}/a") is False


def test_paginated_list_yields_items_page_by_page(client: Client, cms: str) -> None:
    for i in range(7):
        client.create(cms, configmap(f"p{i}"))
    pages = list(client.pages(cms, limit=3))
    assert [len(p["items"]) for p in pages] == [3, 3, 1]
    assert "continue" not in pages[-1]["metadata"] or not pages[-1]["metadata"]["continue"]
    # Every page belongs to the same snapshot: the informer watches from this version.
    assert len({p["metadata"]["resourceVersion"] for p in pages}) == 1

    fetched: list[str | None] = []

    class Counting(Client):
        def get(self, path: str, **query: Any) -> Any:
            fetched.append(query.get("continue"))
            return super().get(path, **query)

    with Counting(client.configuration) as counting:
        items = counting.list(cms, limit=3)
        first = next(items)
        assert len(fetched) == 1  # an iterator: the next page is asked for only when the caller gets there
        names = [first["metadata"]["name"], *(i["metadata"]["name"] for i in items)]
    assert names == [f"p{i}" for i in range(7)]
    assert len(fetched) == 3 and fetched[0] is None and all(fetched[1:])


def test_watch_streams_events_bookmarks_and_lines_of_any_size(client: Client, cms: str) -> None:
    version = client.get(cms)["metadata"]["resourceVersion"]
    big = "x" * (1024 * 1024 - 4096)  # near the 1 MiB object limit: far beyond one read chunk
    client.create(cms, configmap("big", big=big))
    client.merge_patch(f"{cms}/big", {"data": {"more": "1"}})
    client.delete(f"{cms}/big")
    events = list(client.watch(cms, version, timeout_seconds=1))
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
    assert events[0]["object"]["data"]["big"] == big
    assert int(events[-1]["object"]["metadata"]["resourceVersion"]) >= int(
        events[2]["object"]["metadata"]["resourceVersion"]
    )


def test_watch_from_an_expired_version_raises_watch_expired(short_history: ApiServerProcess) -> None:
    with Client.load(str(short_history.kubeconfig)) as client:
        first = client.create(CMS, configmap("c0"))["metadata"]["resourceVersion"]
        for i in range(1, 10):
            client.create(CMS, configmap(f"c{i}"))
        with pytest.raises(WatchExpired) as expired:
            list(client.watch(CMS, first, timeout_seconds=1))
        assert expired.value.status == 410 and "too old resource version" in expired.value.message


def test_close_ends_a_watch_from_another_thread(client: Client, cms: str) -> None:
    version = client.get(cms)["metadata"]["resourceVersion"]
    watch = client.watch(cms, version, timeout_seconds=60)
    threading.Timer(0.3, watch.close).start()
    began = time.monotonic()
    assert list(watch) == []
    assert time.monotonic() - began < 10
    assert watch.closed
    client.create(cms, configmap("after-close"))  # the pool still serves requests


def test_a_stopped_server_raises_a_transport_error(apiserver: ApiServerProcess) -> None:
    client = Client.load(str(apiserver.kubeconfig), timeout=5)
    apiserver.stop()
    with pytest.raises(TRANSPORT_ERRORS):
        client.get(CMS)


def _kubeconfig_text(server: ApiServerProcess) -> str:
    return server.kubeconfig.read_text()


def _host_of(path: Path) -> str:
    return str(yaml.safe_load(path.read_text())["clusters"][0]["cluster"]["server"])


def test_credentials_are_found_in_the_controllers_order(
    shared_apiserver: ApiServerProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = shared_apiserver.kubeconfig
    other = tmp_path / "other-kubeconfig"
    other.write_text(_kubeconfig_text(shared_apiserver).replace(_host_of(real), "https://127.0.0.1:1"))
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text(_kubeconfig_text(shared_apiserver))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")

    # 1. --kubeconfig beats everything.
    monkeypatch.setenv("KUBECONFIG", str(other))
    assert load_configuration(str(real)).host == _host_of(real)
    # 2. KUBECONFIG beats the in-cluster service account.
    assert load_configuration(None).host == "https://127.0.0.1:1"
    # 3. In a pod without KUBECONFIG: the service account (absent here, so a ConfigError that says so).
    monkeypatch.delenv("KUBECONFIG")
    with pytest.raises(ConfigError, match="in-cluster"):
        load_configuration(None)
    # 4. Outside a pod: ~/.kube/config.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with Client.load(None) as client:
        assert client.host == _host_of(real).rstrip("/")
        assert client.get("/api/v1/namespaces/default")["metadata"]["name"] == "default"

    missing = str(tmp_path / "nope")
    with pytest.raises(ConfigError, match="nope"):
        load_configuration(missing)
    with caplog.at_level(logging.ERROR, logger="k8s.client"):
        assert Client.open_or_report(missing) is None
    assert f"event=bad_kubeconfig path={missing}" in caplog.text


def test_a_refreshed_token_is_used_on_the_next_request(tmp_path: Path) -> None:
    """What a rotating service-account token needs: the loader's refresh hook runs before every request."""
    with ApiServerProcess(tmp_path / "srv") as server:
        cluster = yaml.safe_load(server.kubeconfig.read_text())["clusters"][0]["cluster"]
        ca = tmp_path / "ca.crt"
        ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        configuration: Any = kubernetes.client.Configuration()
        configuration.host = cluster["server"]
        configuration.ssl_ca_cert = str(ca)
        configuration.api_key = {"BearerToken": "stale-token"}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        with Client(configuration) as client:
            with pytest.raises(ApiError) as unauthorized:
                client.get("/api/v1/namespaces")
            assert unauthorized.value.status == 401
            refreshed: list[int] = []

            def refresh(config: Any) -> None:
                refreshed.append(1)
                config.api_key["BearerToken"] = server.token

            configuration.refresh_api_key_hook = refresh
            assert client.get("/api/v1/namespaces/default")["metadata"]["name"] == "default"
            client.get("/api/v1/namespaces/default")
            assert len(refreshed) == 2


def test_inline_credentials_never_reach_the_disk(
    shared_apiserver: ApiServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lab's kubeconfig carries its client key inline; the kubernetes package would copy it to TMPDIR,
    where a killed process leaves it. It lives in memory files instead."""
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    configuration = load_configuration(str(shared_apiserver.kubeconfig))
    assert list(private_tmp.iterdir()) == []
    assert configuration.key_file.startswith("/proc/self/fd/")
    with Client(configuration) as client:
        assert client.get("/api/v1/namespaces/default")["metadata"]["name"] == "default"


def test_a_token_kubeconfig_with_an_inline_ca_keeps_working(
    shared_apiserver: ApiServerProcess, tmp_path: Path
) -> None:
    """A token user's refresh hook runs before every request and would point the CA back at the loader's
    removed temporary copy."""
    config = yaml.safe_load(shared_apiserver.kubeconfig.read_text())
    config["users"][0]["user"] = {"token": shared_apiserver.token}
    path = tmp_path / "token-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    with Client.load(str(path)) as client:
        assert client.configuration.ssl_ca_cert.startswith("/proc/self/fd/")
        for _ in range(2):
            assert client.get("/api/v1/namespaces/default")["metadata"]["name"] == "default"
        assert client.configuration.ssl_ca_cert.startswith("/proc/self/fd/")
