"""Fixtures for the shell's tests: a client bound to a real embedded API server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from k8s.client import Client
from lab.apiserver.process import ApiServerProcess

CMS = "/api/v1/namespaces/default/configmaps"


def configmap(name: str, **data: str) -> dict[str, object]:
    return {"metadata": {"name": name}, "data": data}


@pytest.fixture
def client(apiserver: ApiServerProcess) -> Iterator[Client]:
    with Client.load(str(apiserver.kubeconfig)) as c:
        yield c


@pytest.fixture
def short_history(tmp_path: Path) -> Iterator[ApiServerProcess]:
    """A server that keeps only 5 watch events per resource, so older resourceVersions expire (410)."""
    with ApiServerProcess(tmp_path / "short", extra_args=["--history-size", "5"]) as server:
        yield server
