"""In-cluster credentials, for real (root).

With no kubeconfig anywhere, the controller finds the API server the way a pod does:
KUBERNETES_SERVICE_HOST/PORT plus the service account's token and CA at
/var/run/secrets/kubernetes.io/serviceaccount. A private mount namespace puts them there, so the host's /run
is never touched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.controller.conftest import Cluster
from tests.controller.helpers import (
    SERVICE_ACCOUNT_DIR,
    apply,
    service,
    start_in_cluster_controller,
    stop_process,
    wait_ips,
)
from tests.tutorial import TUTORIAL_DIR

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


def test_controller_runs_with_in_cluster_config(cluster: Cluster, tmp_path: Path) -> None:
    assert cluster.server.data_dir is not None
    host_had_account = Path(SERVICE_ACCOUNT_DIR).exists()
    log_file = tmp_path / "controller.log"
    apply(cluster.kubectl, TUTORIAL_DIR / "metallb-config.yaml")
    proc = start_in_cluster_controller(
        cluster.server.port,
        cluster.server.data_dir / "pki" / "ca.crt",
        cluster.server.token,
        tmp_path,
        log_file,
    )
    try:
        apply(cluster.kubectl, service("in-cluster"))
        assert wait_ips(cluster.kubectl, "in-cluster", timeout=30) == ["192.168.10.90"], log_file.read_text()
        assert proc.poll() is None, log_file.read_text()
    finally:
        stop_process(proc)
    assert Path(SERVICE_ACCOUNT_DIR).exists() == host_had_account
