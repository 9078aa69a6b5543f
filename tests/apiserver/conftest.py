"""Fixtures for the API server tests: a raw REST client bound to the `apiserver` fixture, and one server
shared by a whole conformance module (`live`), whose tests each use their own namespace or names."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.apiserver.process import ApiServerProcess
from tests.apiserver.rest import Rest


@pytest.fixture
def rest(apiserver: ApiServerProcess) -> Iterator[Rest]:
    client = Rest(apiserver.kubeconfig)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    with ApiServerProcess(data_dir=tmp_path_factory.mktemp("live") / "apiserver") as server:
        yield server


@pytest.fixture(scope="module")
def live(live_server: ApiServerProcess) -> Iterator[Rest]:
    """A REST client on the module's shared server."""
    client = Rest(live_server.kubeconfig)
    try:
        yield client
    finally:
        client.close()
