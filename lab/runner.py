"""One lab's life cycle: `up` (network, API server, controllers, kubelets, wait for Ready Nodes), `down`,
`status`.

Paths (state root /run/ironlb-lab unless --state-root or $IRONLB_LAB_STATE_ROOT):
  <root>/<lab name>/kubeconfig        admin kubeconfig for the host (https://127.0.0.1:<port>)
  <root>/<lab name>/kubeconfig.node   the same credentials pointing at the mgmt gateway, for use inside nodes
  <root>/<lab name>/lab.json          what `up` built (prefix, topology, API URL, phase)
  <root>/<lab name>/apiserver/        the API server's data dir
  <root>/<lab name>/kubelet/<node>/   each kubelet's state dir
  <root>/<lab name>/pids/, logs/      pid file and log of every lab process
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from lab import network
from lab.controllers.scheduling import node_is_ready
from lab.supervisor import Supervisor, find_marked_processes, is_running, signal_and_wait
from lab.topology import (
    DEFAULT_STATE_ROOT,
    POD_BRIDGE,
    SERVICE_CIDR,
    SERVICE_CIDR6,
    LabNode,
    LabPlan,
    Topology,
    is_valid_prefix,
    plan_lab,
)

log = logging.getLogger("lab.runner")

STATE_ROOT_ENV = "IRONLB_LAB_STATE_ROOT"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOPOLOGY = Path(__file__).resolve().parent / "topologies" / "default.clab.yml"
_READY_RE = re.compile(r"ironlb-apiserver ready url=(?P<url>\S+) kubeconfig=(?P<kubeconfig>\S+)")


class LabError(RuntimeError):
    """The lab cannot be brought up or inspected as asked; the message says what to do."""


class LabInterrupted(BaseException):
    """SIGTERM (or SIGINT) arrived while the lab was being built; the builder cleans up and re-raises."""


def default_state_root() -> Path:
    return Path(os.environ.get(STATE_ROOT_ENV) or DEFAULT_STATE_ROOT)




@dataclass(frozen=True)
class LabPaths:
    state_dir: Path

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def node_kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig.node"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "lab.json"

    @property
    def apiserver_dir(self) -> Path:
        return self.state_dir / "apiserver"

    @property
    def tmp_dir(self) -> Path:
        """TMPDIR of the lab's processes: whatever temp files a killed process leaves go with the lab."""
        return self.state_dir / "tmp"

    @property
    def pod_log_dir(self) -> Path:
        """Containers' output, written by the kubelets and read by the API server (`kubectl logs`)."""
        return self.state_dir / "pod-logs"

    def kubelet_dir(self, node: LabNode) -> Path:
        return self.state_dir / "kubelet" / node.name


def kubelet_process_name(node: LabNode) -> str:
    return f"kubelet-{node.name}"


def kubelet_argv(plan: LabPlan, node: LabNode, kubeconfig: Path, state_dir: Path) -> list[str]:
    """The command line of H4b's lab kubelet for one node (contract in docs/lab.md)."""
    assert node.k8s_node_name is not None and node.pod_cidr is not None and node.ipv4 is not None
    argv = [
        sys.executable, "-m", "lab.kubelet",
        "--kubeconfig", str(kubeconfig),
        "--node-name", node.k8s_node_name,
        "--netns", node.netns,
        "--pod-bridge", POD_BRIDGE,
        "--pod-cidr", str(node.pod_cidr),
        "--internal-ip", str(node.ipv4.ip),
        "--prefix", plan.prefix,
        "--state-dir", str(state_dir),
    ]  # fmt: skip
    if node.pod_cidr6 is not None:
        argv += ["--pod-cidr6", str(node.pod_cidr6)]
    if node.ipv6 is not None:
        argv += ["--internal-ip6", str(node.ipv6.ip)]
    if node.node_labels:
        argv += ["--labels", ",".join(f"{k}={v}" for k, v in node.node_labels)]
    return argv


def node_kubeconfig_text(admin_kubeconfig: str, server: str) -> str:
    """The admin kubeconfig with every cluster's server replaced (nodes reach the API via the mgmt
    gateway)."""
    config = yaml.safe_load(admin_kubeconfig)
    for cluster in config.get("clusters") or []:
        cluster.setdefault("cluster", {})["server"] = server
    return yaml.safe_dump(config, sort_keys=False)


def _child_env(tmp_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp_dir)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _existing(path: Path) -> str | None:
    return str(path) if path.exists() else None


def _runnable(module: str) -> bool:
    """Whether `python -m module` can run: a module, or a package with a __main__."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:
        return importlib.util.find_spec(f"{module}.__main__") is not None
    return True


def kube_entry_points_missing() -> list[str]:
    modules = ("lab.apiserver", "lab.kubelet", "lab.controllers")
    return [m for m in modules if not _runnable(m)]


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Turn SIGTERM into LabInterrupted while building, so a killed `up` still tears its half-built lab
    down."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise LabInterrupted(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Lab:
    """A lab described by a topology, its state under `<state_root>/<name>`."""

    def __init__(self, topology: Topology, state_root: Path | None = None) -> None:
        self.topology = topology
        self.plan = plan_lab(topology)
        self.paths = LabPaths((state_root or default_state_root()) / topology.name)
        self.supervisor = Supervisor(self.paths.state_dir)

    # ------------------------------------------------------------------------------------------------ state

    def read_state(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.paths.state_file.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _write_state(self, **fields: Any) -> None:
        state = self.read_state() or {}
        state.update(fields)
        self.paths.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.paths.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.paths.state_file)

    def leftovers(self) -> list[str]:
        """Every object of this lab that exists right now (netns, host links, state dir)."""
        found = network.list_netns(self.plan.prefix) + network.list_host_links(self.plan.prefix)
        if self.paths.state_dir.exists():
            found.append(str(self.paths.state_dir))
        return found

    def health(self) -> tuple[str, list[str]]:
        """('up' | 'down' | 'partial', problems)."""
        state = self.read_state()
        if state is None:
            return ("partial", self.leftovers()) if self.leftovers() else ("down", [])
        problems: list[str] = []
        if state.get("phase") != "up":
            problems.append(f"phase is {state.get('phase')!r}")
        present = set(network.list_netns(self.plan.prefix))
        problems += [f"netns {ns} missing" for ns in self.plan.netns_names if ns not in present]
        if self.plan.mgmt_bridge not in network.list_host_links(self.plan.prefix):
            problems.append(f"bridge {self.plan.mgmt_bridge} missing")
        running = self.supervisor.running()
        problems += [f"process {name} not running" for name, ok in running.items() if not ok]
        return ("up" if not problems else "partial", problems)

    # --------------------------------------------------------------------------------------------------- up

    def up(self, network_only: bool = False, timeout: float = 60.0) -> str:
        """Build the lab; returns 'started' or 'already-up'. On any failure or SIGTERM the lab is torn
        down."""
        status, problems = self.health()
        if status == "up":
            state = self.read_state() or {}
            if bool(state.get("network_only")) != network_only:
                raise LabError(
                    f"lab {self.plan.name} is already up with network_only={state.get('network_only')}; "
                    "run `python -m lab down` first"
                )
            return "already-up"
        if status == "partial":
            raise LabError(
                f"lab {self.plan.name} is partially up ({'; '.join(problems)}); "
                "run `python -m lab down` first"
            )
        if not network_only:
            missing = kube_entry_points_missing()
            if missing:
                raise LabError(
                    f"cannot start the cluster: {', '.join(missing)} not found (try --network-only)"
                )
        began = time.monotonic()
        try:
            with _interruptible():
                self.paths.state_dir.mkdir(parents=True, exist_ok=True)
                self._write_state(
                    name=self.plan.name,
                    prefix=self.plan.prefix,
                    topology=self.topology.source,
                    network_only=network_only,
                    phase="building",
                )
                network.build(self.plan)
                if not network_only:
                    self._start_cluster(timeout)
                self._write_state(phase="up", up_seconds=round(time.monotonic() - began, 2))
        except BaseException:
            log.error("event=up-failed lab=%s action=teardown", self.plan.name)
            self.down()
            raise
        log.info("event=lab-up lab=%s seconds=%.2f", self.plan.name, time.monotonic() - began)
        return "started"

    def _start_cluster(self, timeout: float) -> None:
        env = self.start_control_plane(timeout)
        for node in self.plan.k8s_nodes:
            state_dir = self.paths.kubelet_dir(node)
            state_dir.mkdir(parents=True, exist_ok=True)
            argv = kubelet_argv(self.plan, node, self.paths.kubeconfig, state_dir)
            argv += ["--pod-log-dir", str(self.paths.pod_log_dir)]
            self.supervisor.start(kubelet_process_name(node), argv, env=env)
        self.wait_nodes_ready(timeout)

    def start_control_plane(self, timeout: float = 60.0) -> dict[str, str]:
        """The API server and the controllers (no kubelets: lab.uml_lab runs those in its guest); returns the
        environment the lab's processes run with."""
        self.paths.tmp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = _child_env(self.paths.tmp_dir)
        gateway = str(self.plan.mgmt_gateway4.ip)
        pid = self.supervisor.start("apiserver", self._apiserver_argv(0), env=env)
        ready = self.supervisor.wait_for_line("apiserver", pid, _READY_RE, timeout=min(timeout, 30.0))
        url = ready.group("url")
        port = url.rsplit(":", 1)[1].rstrip("/")
        node_server = f"https://{gateway}:{port}"
        node_config = node_kubeconfig_text(self.paths.kubeconfig.read_text(), node_server)
        self.paths.node_kubeconfig.write_text(node_config)
        self.paths.node_kubeconfig.chmod(0o600)
        self._write_state(api_url=url, node_api_url=node_server, kubeconfig=str(self.paths.kubeconfig))

        self.supervisor.start(
            "controllers",
            [sys.executable, "-m", "lab.controllers", "--kubeconfig", str(self.paths.kubeconfig)],
            env=env,
        )
        return env

    def wait_nodes_ready(self, timeout: float) -> None:
        from k8s.client import Client  # only the cluster part of the lab needs the client (a slow import)

        wanted = {n.k8s_node_name for n in self.plan.k8s_nodes}
        deadline = time.monotonic() + timeout
        not_ready: set[str | None] = set(wanted)
        with Client.load(str(self.paths.kubeconfig), user_agent="ironlb-lab", timeout=5) as kube:
            while time.monotonic() < deadline:
                for rec in self.supervisor.recorded():
                    if not is_running(rec.pid, rec.start_time or None):
                        raise LabError(f"{rec.name} exited:\n{self.supervisor.log_tail(rec.name)}")
                try:
                    nodes = list(kube.list("/api/v1/nodes"))
                except Exception as exc:  # the API may still be settling; keep polling until the deadline
                    log.debug("event=list-nodes-failed error=%s", exc)
                    nodes = []
                not_ready = wanted - {n["metadata"].get("name") for n in nodes if node_is_ready(n)}
                if not not_ready:
                    return
                time.sleep(0.2)
        raise LabError(f"nodes not Ready after {timeout:.0f}s: {', '.join(sorted(map(str, not_ready)))}")

    # ------------------------------------------------------------------------------------------ API outage

    def _apiserver_argv(self, port: int) -> list[str]:
        gateway = str(self.plan.mgmt_gateway4.ip)
        return [
            sys.executable, "-m", "lab.apiserver",
            "--port", str(port),
            "--data-dir", str(self.paths.apiserver_dir),
            "--kubeconfig-out", str(self.paths.kubeconfig),
            "--bind-address", "127.0.0.1",
            "--bind-address", gateway,
            "--tls-san", gateway,
            # The lab's nodes and pods are dual-stack, so its Service network is too.
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--service-cluster-ip-range-v6", SERVICE_CIDR6,
            # As a real cluster: the components run with their service accounts and the manifests' RBAC.
            "--authorization-mode", "RBAC",
            "--pod-log-dir", str(self.paths.pod_log_dir),
        ]  # fmt: skip

    def stop_apiserver(self, grace: float = 8.0) -> None:
        """Stop the API server alone (a control-plane outage); everything else keeps running."""
        for rec in self.supervisor.recorded():
            if rec.name == "apiserver":
                signal_and_wait([rec.pid], grace)
        (self.supervisor.pid_dir / "apiserver.pid").unlink(missing_ok=True)
        self.supervisor.reap()

    def start_apiserver(self, timeout: float = 30.0) -> None:
        """Bring a stopped API server back as it was: same port, data dir, certificates and tokens, so every
        client's kubeconfig still holds."""
        url = str((self.read_state() or {}).get("api_url") or "")
        if not url:
            raise LabError(f"lab {self.plan.name} has no API server to restart")
        port = int(url.rsplit(":", 1)[1].rstrip("/"))
        log_size = self.supervisor.log_path("apiserver").stat().st_size
        env = _child_env(self.paths.tmp_dir)
        pid = self.supervisor.start("apiserver", self._apiserver_argv(port), env=env)
        self.supervisor.wait_for_line("apiserver", pid, _READY_RE, timeout, since=log_size)

    # ------------------------------------------------------------------------------------------------- down

    def down(self, grace: float = 8.0) -> list[str]:
        """Stop every lab process and delete every netns, link and file of the lab. Idempotent."""
        removed: list[str] = []
        kubelets = [kubelet_process_name(n) for n in self.plan.k8s_nodes]
        # Kubelets first (they tear their pods down), then the controllers, then the API server.
        stopped = self.supervisor.stop([kubelets, ["controllers"], ["apiserver"]], grace=grace)
        removed += [f"pid {pid}" for pid in stopped]
        prefixes = [self.plan.prefix]
        recorded_prefix = (self.read_state() or {}).get("prefix")
        if (
            isinstance(recorded_prefix, str)
            and is_valid_prefix(recorded_prefix)
            and recorded_prefix != self.plan.prefix
        ):
            # The file's prefix changed since `up`: what that run built still carries the old one.
            prefixes.append(recorded_prefix)
        marker = str(self.paths.state_dir) + os.sep
        # Also processes naming one of the lab's namespaces or host links as an argument (a kubelet started
        # by hand with --netns <prefix>-node1, a tcpdump on <prefix>-mgmt).
        lab_names = {*self.plan.netns_names, self.plan.mgmt_bridge, *(n.host_veth for n in self.plan.nodes)}
        for prefix in prefixes:
            lab_names |= set(network.list_netns(prefix)) | set(network.list_host_links(prefix))
        strays = signal_and_wait(find_marked_processes([marker], lab_names), grace=2.0)
        for prefix in prefixes:
            strays += signal_and_wait(network.lab_process_ids(prefix), grace=2.0)
        removed += [f"pid {pid}" for pid in strays]
        self.supervisor.reap()
        for prefix in prefixes:
            removed += network.destroy(prefix)
        if self.paths.state_dir.exists():
            shutil.rmtree(self.paths.state_dir)
            removed.append(str(self.paths.state_dir))
        root = self.paths.state_dir.parent
        with contextlib.suppress(OSError):
            root.rmdir()  # only when no other lab lives there
        log.info("event=lab-down lab=%s removed=%d", self.plan.name, len(removed))
        return removed

    # ----------------------------------------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        status, problems = self.health()
        state = self.read_state() or {}
        return {
            "lab": self.plan.name,
            "prefix": self.plan.prefix,
            "status": status,
            "problems": problems,
            "state_dir": str(self.paths.state_dir),
            "kubeconfig": _existing(self.paths.kubeconfig),
            "node_kubeconfig": _existing(self.paths.node_kubeconfig),
            "api_url": state.get("api_url"),
            "network_only": state.get("network_only"),
            "mgmt_gateway": [str(self.plan.mgmt_gateway4)]
            + ([str(self.plan.mgmt_gateway6)] if self.plan.mgmt_gateway6 else []),
            "nodes": [
                {
                    "name": n.name,
                    "role": n.role,
                    "netns": n.netns,
                    "k8s_node_name": n.k8s_node_name,
                    "mgmt": [str(a) for a in (n.mgmt_ipv4, n.mgmt_ipv6) if a is not None],
                    "addresses": [str(a) for a in (n.ipv4, n.ipv6) if a is not None],
                    "pod_cidrs": [str(c) for c in (n.pod_cidr, n.pod_cidr6) if c is not None],
                }
                for n in self.plan.nodes
            ],
            "processes": {
                rec.name: {"pid": rec.pid, "running": is_running(rec.pid, rec.start_time or None)}
                for rec in self.supervisor.recorded()
            },
        }
