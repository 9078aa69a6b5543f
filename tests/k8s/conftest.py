"""Fixtures for the shell's tests: a client bound to a real embedded API server.

Most tests share one server per module and get a namespace of their own (`ns`, `cms`): starting a server
costs more than the test. Tests that stop, restart or tune a server start their own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from k8s.client import Client
from lab.apiserver.process import ApiServerProcess

CMS = "/api/v1/namespaces/default/configmaps"

_namespaces = itertools.count()


def configmap(name: str, **data: str) -> dict[str, object]:
    return {"metadata": {"name": name}, "data": data}


@pytest.fixture(scope="module")
def shared_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    with ApiServerProcess(tmp_path_factory.mktemp("k8s-apiserver")) as server:
        yield server


@pytest.fixture
def client(shared_apiserver: ApiServerProcess) -> Iterator[Client]:
    with Client.load(str(shared_apiserver.kubeconfig)) as c:
        yield c


@pytest.fixture
def ns(client: Client) -> str:
    """A fresh namespace on the shared server, so tests do not see each other's objects."""
    name = f"test-{next(_namespaces)}"
    client.create("/api/v1/namespaces", {"metadata": {"name": name}})
    return name


@pytest.fixture
def cms(ns: str) -> str:
    return f"/api/v1/namespaces/{ns}/configmaps"


@pytest.fixture
def short_history(tmp_path: Path) -> Iterator[ApiServerProcess]:
    """A server that keeps only 5 watch events per resource, so older resourceVersions expire (410)."""
    with ApiServerProcess(tmp_path / "short", extra_args=["--history-size", "5"]) as server:
        yield server
