"""The controller process itself: no credentials on disk, supervised tasks, real health endpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.controller.conftest import StartController

pytestmark = pytest.mark.timeout(120)


def test_inline_kubeconfig_credentials_never_reach_the_disk(
    start_controller: StartController, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lab's kubeconfig carries its client key inline; nothing of it may be left in TMPDIR, neither while
    the controller runs nor after a SIGKILL (which runs no cleanup)."""
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    controller = start_controller("--standalone")
    assert list(private_tmp.iterdir()) == []
    controller.kill()
    assert list(private_tmp.iterdir()) == []
