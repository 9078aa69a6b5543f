"""Running `python -m controller` against the embedded API server, and polling what it did through kubectl."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tests.conftest import Kubectl

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"
T = TypeVar("T")

# Short lease timings keep the HA and restart tests to seconds; a short resync period makes every test also
# check that re-listing never drops a live Service.
FAST_LEASE = (
    "--lease-duration",
    "3",
    "--renew-deadline",
    "2",
    "--retry-period",
    "0.3",
    "--resync-period",
    "1",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` (and the last value) on timeout.
    The default timeout is generous: waiting costs nothing when the condition comes, and on a shared 2-core
    machine at load 30 a controller start or a Lease hand-over can take several times its idle duration."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


class ControllerProcess:
    """One controller replica as a child process, its log in a file; stopped by PID only."""

    def __init__(
        self, kubeconfig: Path, log_file: Path, args: Sequence[str] = (), kubeconfig_from_env: bool = False
    ) -> None:
        self.kubeconfig = kubeconfig
        self.kubeconfig_from_env = kubeconfig_from_env
        self.log_file = log_file
        self.metrics_port = free_port()
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_started: bool = True) -> ControllerProcess:
        env = dict(os.environ)
        env.pop("KUBERNETES_SERVICE_HOST", None)
        env["PYTHONPATH"] = str(REPO)
        if self.kubeconfig_from_env:
            env["KUBECONFIG"] = str(self.kubeconfig)
        else:
            env.pop("KUBECONFIG", None)
        command = [
            sys.executable,
            "-m",
            "controller",
            *([] if self.kubeconfig_from_env else ["--kubeconfig", str(self.kubeconfig)]),
            "--metrics-port",
            str(self.metrics_port),
            "--metrics-address",
            "127.0.0.1",
            *FAST_LEASE,
            *self.args,
        ]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        if wait_started:
            self.wait_started()
        return self

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[self._log_offset :] if self.log_file.exists() else ""

    def wait_started(self, timeout: float = 60.0) -> None:
        def started() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"controller exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            return "event=started" in self.log()

        wait_for("controller start", started, timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self) -> dict[str, float]:
        """Samples of the /metrics page, keyed by `name{labels}` as printed."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# Inside the new mount namespace: a private tmpfs on /run (so mkdir leaves no trace on the host), the service
# account files bind-mounted where the in-cluster loader reads them, then the controller itself.
MOUNT_AND_EXEC = (
    'mount -t tmpfs ilbt-run /run && mkdir -p "$1" && mount --bind "$0" "$1" && shift && exec "$@"'
)


def start_in_cluster_controller(
    port: int, ca_file: Path, token: str, workdir: Path, log_file: Path, *args: str
) -> subprocess.Popen[bytes]:
    """`python -m controller` (root) as a pod runs it: no kubeconfig anywhere, KUBERNETES_SERVICE_HOST/PORT
    and the service account's token, CA and namespace mounted at SERVICE_ACCOUNT_DIR in a private mount
    namespace, so the host's /run is never touched. Stop it with stop_process."""
    account = workdir / "serviceaccount"
    account.mkdir(parents=True, exist_ok=True)
    (account / "token").write_text(token)
    shutil.copy(ca_file, account / "ca.crt")
    (account / "namespace").write_text("metallb-system")
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
    env.update(
        HOME=str(workdir),  # no ~/.kube/config to fall back on
        PYTHONPATH=str(REPO),
        KUBERNETES_SERVICE_HOST="127.0.0.1",
        KUBERNETES_SERVICE_PORT=str(port),
    )
    command = [
        "unshare", "--mount", "--propagation", "private",
        "sh", "-c", MOUNT_AND_EXEC, str(account), SERVICE_ACCOUNT_DIR,
        sys.executable, "-m", "controller", "--metrics-port", "0", *FAST_LEASE, *args,
    ]  # fmt: skip
    with log_file.open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def apply(kubectl: Kubectl, manifest: str | Path, namespace: str | None = None) -> None:
    args = ["apply"]
    if namespace:
        args += ["-n", namespace]
    if isinstance(manifest, Path):
        kubectl(*args, "-f", str(manifest))
    else:
        kubectl(*args, "-f", "-", input=manifest)


def configmap(pools_yaml: str, name: str = "config", namespace: str = "metallb-system") -> str:
    body = "\n".join("    " + line for line in pools_yaml.strip("\n").splitlines())
    return (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
        f"data:\n  config: |\n{body}\n"
    )


def service(
    name: str,
    namespace: str = "default",
    annotations: dict[str, str] | None = None,
    ports: Sequence[tuple[int, str]] = ((80, "TCP"),),
    type_: str = "LoadBalancer",
    **spec: Any,
) -> str:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": {
            "type": type_,
            "selector": {"app": name},
            "ports": [
                {"name": f"p{port}-{proto.lower()}", "port": port, "protocol": proto} for port, proto in ports
            ],
            **spec,
        },
    }
    return json.dumps(body)


def get_json(kubectl: Kubectl, *args: str) -> Any:
    result = kubectl("get", *args, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)


def service_ips(kubectl: Kubectl, name: str, namespace: str = "default") -> list[str]:
    svc = get_json(kubectl, "service", name, "-n", namespace)
    if svc is None:
        return []
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [entry["ip"] for entry in ingress if "ip" in entry]


def wait_ips(kubectl: Kubectl, name: str, namespace: str = "default", timeout: float = 10.0) -> list[str]:
    return wait_for(f"IPs of {namespace}/{name}", lambda: service_ips(kubectl, name, namespace), timeout)


def events(
    kubectl: Kubectl, name: str, namespace: str = "default", reason: str | None = None
) -> list[dict[str, Any]]:
    listing = get_json(kubectl, "events", "-n", namespace) or {"items": []}
    found = [e for e in listing["items"] if (e.get("involvedObject") or {}).get("name") == name]
    if reason is not None:
        found = [e for e in found if e.get("reason") == reason]
    return found


def wait_event(
    kubectl: Kubectl,
    name: str,
    reason: str,
    namespace: str = "default",
    contains: str = "",
    timeout: float = 10.0,
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        for event in events(kubectl, name, namespace, reason):
            if contains in event.get("message", ""):
                return event
        return None

    return wait_for(f"{reason} event on {namespace}/{name} containing {contains!r}", probe, timeout)


def all_assigned(kubectl: Kubectl) -> dict[str, list[str]]:
    """namespace/name -> IPs for every Service that shows some."""
    listing = get_json(kubectl, "services", "-A") or {"items": []}
    result = {}
    for svc in listing["items"]:
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ips = [entry["ip"] for entry in ingress if "ip" in entry]
        if ips:
            result[f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"] = ips
    return result


def external_ip_column(kubectl: Kubectl, name: str, namespace: str = "default") -> str:
    """EXTERNAL-IP as `kubectl get svc` prints it."""
    result = kubectl("get", "svc", name, "-n", namespace, check=False)
    lines = result.stdout.splitlines()
    if result.returncode != 0 or len(lines) < 2:
        return ""
    header = lines[0]
    start = header.find("EXTERNAL-IP")
    if start < 0:
        return ""
    return lines[1][start:].split()[0]
