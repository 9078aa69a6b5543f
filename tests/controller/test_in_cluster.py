"""In-cluster credentials, for real (root).

With no kubeconfig anywhere, the controller finds the API server the way a pod does:
KUBERNETES_SERVICE_HOST/PORT plus the service account's token and CA at
/var/run/secrets/kubernetes.io/serviceaccount. A private mount namespace puts them there, so the host's /run
is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.controller.conftest import Cluster
from tests.controller.helpers import FAST_LEASE, REPO, apply, service, wait_ips
from tests.tutorial import TUTORIAL_DIR

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# Inside the new mount namespace: a private tmpfs on /run (so mkdir leaves no trace on the host), the service
# account files bind-mounted where the in-cluster loader reads them, then the controller itself.
MOUNT_AND_EXEC = (
    'mount -t tmpfs ilbt-run /run && mkdir -p "$1" && mount --bind "$0" "$1" && shift && exec "$@"'
)


def test_controller_runs_with_in_cluster_config(cluster: Cluster, tmp_path: Path) -> None:
    assert cluster.server.data_dir is not None
    host_had_account = Path(SERVICE_ACCOUNT_DIR).exists()
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(cluster.server.token)
    shutil.copy(cluster.server.data_dir / "pki" / "ca.crt", account / "ca.crt")
    (account / "namespace").write_text("metallb-system")

    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
    env.update(
        HOME=str(tmp_path),  # no ~/.kube/config to fall back on
        PYTHONPATH=str(REPO),
        KUBERNETES_SERVICE_HOST="127.0.0.1",
        KUBERNETES_SERVICE_PORT=str(cluster.server.port),
    )
    log_file = tmp_path / "controller.log"
    command = [
        "unshare", "--mount", "--propagation", "private",
        "sh", "-c", MOUNT_AND_EXEC, str(account), SERVICE_ACCOUNT_DIR,
        sys.executable, "-m", "controller", "--metrics-port", "0", *FAST_LEASE,
    ]  # fmt: skip
    apply(cluster.kubectl, TUTORIAL_DIR / "metallb-config.yaml")
    with log_file.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        apply(cluster.kubectl, service("in-cluster"))
        assert wait_ips(cluster.kubectl, "in-cluster", timeout=30) == ["192.168.10.90"], log_file.read_text()
        assert proc.poll() is None, log_file.read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert Path(SERVICE_ACCOUNT_DIR).exists() == host_had_account
