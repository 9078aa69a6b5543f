"""A real kopf operator (`kopf run --standalone`) against the embedded server handles Service create, update
and delete, with no inconsistency warnings and no errors in its log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lab.apiserver.process import ApiServerProcess

OPERATOR = Path(__file__).parent / "operators" / "service_watcher.py"
SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: kopf-svc
  labels: {ilbt: kopf}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""


def wait_for(path: Path, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = path.read_text()
        if text in log:
            return log
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in the operator log:\n{path.read_text()}")


def test_kopf_operator_handles_service_lifecycle(
    apiserver: ApiServerProcess, kubectl, tmp_path: Path
) -> None:
    log_path = tmp_path / "kopf.log"
    env = dict(os.environ, KUBECONFIG=str(apiserver.kubeconfig))
    kopf = str(Path(sys.executable).parent / "kopf")
    with log_path.open("w") as out:
        proc = subprocess.Popen(
            [kopf, "run", "--standalone", "--all-namespaces", "--verbose", str(OPERATOR)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_for(log_path, "Starting the watch-stream for services.v1")
        kubectl("apply", "-f", "-", "--validate=false", input=SERVICE)
        wait_for(log_path, "ilbt-created name=kopf-svc type=LoadBalancer")
        wait_for(log_path, "Handler 'on_create' succeeded")
        kubectl("label", "svc", "kopf-svc", "extra=yes")
        wait_for(log_path, "ilbt-updated name=kopf-svc")
        wait_for(log_path, "Handler 'on_update' succeeded")
        kubectl(
            "patch",
            "svc",
            "kopf-svc",
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.10"}]}}}',
        )
        kubectl("delete", "svc", "kopf-svc", "--wait=true", "--timeout=20s")
        wait_for(log_path, "ilbt-deleted name=kopf-svc")
        wait_for(log_path, "Handler 'on_delete' succeeded")
        assert kubectl("get", "svc", "kopf-svc", check=False).returncode != 0
        # A later object's events come after kopf-svc's last ones on the same watch stream: once kopf has
        # handled it, whatever kopf had to say about kopf-svc is in the log.
        kubectl("apply", "-f", "-", "--validate=false", input=SERVICE.replace("kopf-svc", "kopf-sentinel"))
        wait_for(log_path, "ilbt-created name=kopf-sentinel")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log = log_path.read_text()
    assert "inconsistencies" not in log, log
    assert "[ERROR" not in log and "Traceback" not in log, log
    assert "Hung tasks" in log or "Root tasks are stopped" in log, "kopf did not stop cleanly"
