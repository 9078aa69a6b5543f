"""Issue 7, case 4: a leader that was paused past its lease writes nothing when it resumes.

Two replicas authenticate as two users, so the API server's request log (DEBUG) says who wrote what. The
leader is stopped with SIGSTOP until the standby has taken over and has served Services the paused leader has
queued watch events for; then it is resumed. It must not write a status, an annotation or an Event before it
notices that it lost the Lease and exits.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lab.apiserver.process import ApiServerProcess
from tests.conftest import Kubectl, make_kubectl
from tests.controller.helpers import (
    CONFIG,
    ControllerProcess,
    all_assigned,
    apply,
    configmap,
    service,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)

USERS = {"a": "ilbt-fence-token-a-5d1c", "b": "ilbt-fence-token-b-8e2f"}
POOL = "address-pools:\n- {name: p, protocol: layer2, addresses: [10.66.0.0/28]}\n"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def user_kubeconfig(admin: Path, token: str, path: Path) -> Path:
    config = yaml.safe_load(admin.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))
    return path


def writes_by(log: str, user: str) -> list[str]:
    """The API server's request lines for writes by `user`, Lease renewals aside."""
    return [
        line
        for line in log.splitlines()
        if "event=request " in line
        and f" user=ilbt-replica-{user} " in line
        and any(f"method={method} " in line for method in WRITES)
        and "/leases" not in line
    ]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ApiServerProcess]:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("".join(f"{token},ilbt-replica-{name},uid-{name}\n" for name, token in USERS.items()))
    process = ApiServerProcess(
        data_dir=tmp_path / "apiserver", extra_args=["--log-level", "DEBUG", "--token-auth-file", str(tokens)]
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()
        process.cleanup()


def test_a_resumed_leader_writes_nothing_after_its_deadline(server: ApiServerProcess, tmp_path: Path):
    kubectl: Kubectl = make_kubectl(server.kubeconfig)
    apply(kubectl, CONFIG / "namespace.yaml")
    apply(kubectl, configmap(POOL))
    replicas = {}
    for name, token in USERS.items():
        kubeconfig = user_kubeconfig(server.kubeconfig, token, tmp_path / f"kubeconfig-{name}")
        log = tmp_path / f"controller-{name}.log"
        replicas[name] = ControllerProcess(kubeconfig, log, ["--identity", name])
    try:
        leader = replicas["a"].start()
        standby = replicas["b"].start(wait_started=False)
        wait_for("standby waiting", lambda: "event=leader_waiting" in standby.log())
        for index in range(3):
            apply(kubectl, service(f"before-{index}"))
        wait_for("served by a", lambda: len(all_assigned(kubectl)) == 3)
        server_log = server.log_file
        assert server_log is not None
        wait_for("a's events posted", lambda: len([w for w in writes_by(server_log.read_text(), "a")
                                                  if "/events" in w]) >= 3)  # fmt: skip

        assert leader.proc is not None
        os.kill(leader.proc.pid, signal.SIGSTOP)
        try:
            standby.wait_started()
            # Work the paused leader will find queued on its watches when it wakes up.
            for index in range(4):
                apply(kubectl, service(f"while-paused-{index}"))
            kubectl("delete", "service", "before-0")
            wait_for("served by b", lambda: len(all_assigned(kubectl)) == 6)
            resumed_at = len(server_log.read_text())
        finally:
            os.kill(leader.proc.pid, signal.SIGCONT)
        assert leader.proc.wait(15) == 1, leader.log()[-3000:]
        assert "event=leader_lost" in leader.log()
        late = writes_by(server_log.read_text()[resumed_at:], "a")
        assert late == [], "\n".join(late)
        assigned = all_assigned(kubectl)
        ips = [ip for value in assigned.values() for ip in value]
        assert len(ips) == len(set(ips)) == 6, json.dumps(assigned)
    finally:
        for replica in replicas.values():
            replica.kill()
