"""Fixtures for the API server tests: a raw REST client bound to the `apiserver` fixture."""

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
