"""The lab kubelet: registers a Node and runs the Pods bound to it as netns with an echo server.

    python -m lab.kubelet --kubeconfig K --node-name N --netns NS --pod-bridge BR --pod-cidr CIDR
        [--pod-cidr6 CIDR6] --internal-ip IP [--internal-ip6 IP6] --prefix P [--labels k=v,...]
        [--state-dir D]

Runs in the host network namespace (it reaches the API server on 127.0.0.1) and acts on the node's netns
by name. Each pod gets a netns `<prefix>-p-<node>-<hash>`, a veth `<prefix>-<hash>` on the node's pod
bridge, an address from the node's pod CIDR(s) and `python -m lab.echoserver` on its containerPorts.
Pods of ironlb's own image run the component instead (lab.runtime and lab.containers: its command and
args, environment, volumes with the service account's token, user and capabilities), hostNetwork ones in the
node's netns, probed by their httpGet probes; their output goes where `kubectl logs` reads it. A
record per pod in the state dir lets a restarted kubelet adopt the pods that still run (or clean up those
that don't); SIGTERM tears every pod down. One thread watches the pods; the main thread does all the
work, so there are no races.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import os
import platform
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from k8s.client import ApiError, Client
from k8s.events import EventRecorder
from k8s.informer import Handlers, Informer
from k8s.meta import JSON, resource_path, rfc3339
from lab import containers, podspec, probes
from lab import pods as podnet
from lab.ipam import IpamError, PodAddresses, PodIpam
from lab.logsetup import configure_logging
from lab.runtime import ComponentRuntime
from lab.supervisor import is_running, signal_and_wait, start_time

log = logging.getLogger("lab.kubelet")

LEASE_SECONDS = 40
TERMINATE_WAIT = 5.0  # a component's SIGTERM grace, within `lab down`'s 8 s for a kubelet
RESYNC_EVERY = 30.0
READY_WAIT = 5.0
RETRY_AFTER = 5.0
LEASE_RETRY = 1.0  # seconds before a failed Lease renewal is tried again


@dataclass
class RunningPod:
    namespace: str
    name: str
    uid: str
    netns: str
    veth: str
    ipv4: str
    ipv6: str | None
    tcp: tuple[int, ...]
    udp: tuple[int, ...]
    pid: int
    started_at: str
    restarts: int = 0
    ready: bool = False
    last_exit_code: int | None = None
    last_finished_at: str | None = None
    exited: bool = False
    # ironlb's own image: the component runs (lab.containers), identified by its pid and start time.
    local: bool = False
    host_network: bool = False
    proc_start: str = ""
    # Why the container has not started yet (CreateContainerConfigError, ContainerCreating), and the message.
    waiting: str = ""
    waiting_message: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    next_restart: float = 0.0
    probe_state: dict[str, Any] = field(default_factory=dict, repr=False)
    tokens_at: float = field(default=0.0, repr=False)  # monotonic time the pod's tokens were written

    def record(self) -> dict[str, Any]:
        skip = ("proc", "next_restart", "probe_state")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


def _exit_code(returncode: int | None) -> int:
    if returncode is None:
        return 137  # not our child (adopted): we only know it is gone
    return 128 - returncode if returncode < 0 else returncode


class Kubelet:
    def __init__(self, args: argparse.Namespace, kube: Client) -> None:
        self.args = args
        self.kube = kube
        self.node = str(args.node_name)
        self.prefix = str(args.prefix)
        self.ipam = PodIpam(args.pod_cidr, args.pod_cidr6)
        self.host_ips = [ip for ip in (args.internal_ip, args.internal_ip6) if ip]
        self.state_dir = Path(args.state_dir or f"/run/{self.prefix}-kubelet-{self.node}")
        self.records_dir = self.state_dir / "pods"
        self.run_dir = self.state_dir / "run"
        self.pods: dict[tuple[str, str], RunningPod] = {}
        self.rejected: dict[tuple[str, str], str] = {}  # pod key -> uid whose spec we cannot run
        self.retry_at: dict[tuple[str, str], float] = {}
        self.terminating: dict[tuple[str, str], float] = {}  # deleted pods still serving -> until (monotonic)
        self.queue: queue.Queue[tuple[str, str]] = queue.Queue()
        self.stopping = threading.Event()
        self.node_uid = ""
        self.lease_renew = float(args.heartbeat_interval)
        self.node_status_every = 2 * self.lease_renew
        self.informer = Informer(
            kube,
            "/api/v1/pods",
            Handlers.by_type(self._on_pod_event),
            query={"fieldSelector": f"spec.nodeName={self.node}"},
            watch_timeout=60,  # as lab.controllers' WATCH_TIMEOUT
        )
        self.recorder = EventRecorder(kube, "kubelet", instance=self.node, host=self.node)
        pod_log_dir = Path(args.pod_log_dir) if args.pod_log_dir else self.state_dir / "pod-logs"
        self.runtime = ComponentRuntime(kube, self.node, self.host_ips, self.state_dir, pod_log_dir)

    # ---- lifecycle ---------------------------------------------------------------------------------

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._until_done(self.register_node, "register_node")
        if self.stopping.is_set():
            return 0
        self.renew_lease()
        self.informer.start()
        while not self.informer.wait_for_sync(0.5):
            if self.stopping.is_set():
                return 0
        self.adopt_or_clean()
        log.info("event=started node=%s pods=%d", self.node, len(self.pods))
        next_lease = next_status = time.monotonic()
        next_resync = time.monotonic() + RESYNC_EVERY
        while not self.stopping.is_set():
            try:
                key = self.queue.get(timeout=0.5)
            except queue.Empty:
                key = None
            if key is not None:
                self.sync_safely(key)
            now = time.monotonic()
            self.check_processes()
            for ending in [k for k, until in self.terminating.items() if until <= now]:
                self.queue.put(ending)
            if now >= next_lease:
                # A failed renewal (the API server down) is retried within a second, so the node's
                # heartbeat resumes as soon as the API is back, not a renew period later.
                next_lease = now + (self.lease_renew if self.renew_lease() else LEASE_RETRY)
            if now >= next_status:
                self._guard(self.post_node_status, "node_status")
                next_status = now + self.node_status_every
            if now >= next_resync or any(t <= now for t in self.retry_at.values()):
                for obj in self.informer.list():
                    self.queue.put(_key(obj))
                for stale in [k for k in self.pods if self.informer.get(*k) is None]:
                    self.queue.put(stale)
                self.retry_at = {k: t for k, t in self.retry_at.items() if t > now}
                next_resync = now + RESYNC_EVERY
                self.refresh_tokens(now)
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        log.info("event=stopping node=%s pods=%d", self.node, len(self.pods))
        self.informer.stop()
        # Every container gets its SIGTERM at once; the teardowns below then wait for them in turn.
        for rp in self.pods.values():
            if rp.proc is not None and rp.proc.poll() is None:
                rp.proc.terminate()
        api_up = True
        for key in list(self.pods):
            rp = self.pods[key]
            self.teardown(rp)
            if api_up:
                pod = self.informer.get(*key)
                try:
                    if pod is not None:
                        state = podspec.RunState(
                            None, None, False, rp.restarts, waiting_reason="KubeletStopped"
                        )
                        self.write_status(pod, state)
                except Exception as exc:
                    log.warning("event=status_failed pod=%s/%s error=%r", *key, exc)
                    api_up = False
        if api_up:
            self._guard(lambda: self.post_node_status(ready=False), "node_status")
        self.recorder.stop()

    def _until_done(self, action: Any, what: str) -> None:
        while not self.stopping.is_set():
            try:
                action()
                return
            except Exception as exc:
                log.warning("event=retry what=%s error=%r", what, exc)
                self.stopping.wait(2.0)

    def _guard(self, action: Any, what: str) -> None:
        try:
            action()
        except Exception as exc:
            log.warning("event=failed what=%s error=%r", what, exc)

    # ---- node --------------------------------------------------------------------------------------

    def node_info(self) -> dict[str, str]:
        info = {"kernelVersion": platform.release(), "architecture": podspec.node_arch()}
        with contextlib.suppress(OSError):
            info["bootID"] = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        with contextlib.suppress(OSError):
            for line in Path("/etc/os-release").read_text().splitlines():
                if line.startswith("PRETTY_NAME="):
                    info["osImage"] = line.split("=", 1)[1].strip('"')
        return info

    def register_node(self) -> None:
        cidrs = [c for c in (self.args.pod_cidr, self.args.pod_cidr6) if c]
        wanted = podspec.node_object(self.node, self.args.labels, cidrs, podspec.node_arch())
        path = resource_path("v1", "nodes", name=self.node)
        current = self.kube.get_or_none(path)
        if current is None:
            wanted["status"] = podspec.node_status(
                self.node, self.host_ips, None, rfc3339(), self.node_info()
            )
            current = self.kube.create(resource_path("v1", "nodes"), wanted)
            log.info("event=node_registered node=%s", self.node)
        else:
            current = self.kube.merge_patch(
                path, {"metadata": {"labels": wanted["metadata"]["labels"]}, "spec": wanted["spec"]}
            )
            log.info("event=node_updated node=%s", self.node)
        self.node_uid = str(current["metadata"].get("uid") or "")
        self.post_node_status()

    def post_node_status(self, ready: bool = True) -> None:
        path = resource_path("v1", "nodes", name=self.node)
        current = self.kube.get_or_none(path)
        if current is None:
            self.register_node()
            return
        status = podspec.node_status(
            self.node, self.host_ips, current.get("status"), rfc3339(), self.node_info(), ready=ready
        )
        self.kube.merge_patch(path + "/status", {"status": status})

    def renew_lease(self) -> bool:
        path = resource_path("coordination.k8s.io/v1", "leases", "kube-node-lease", self.node)
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        try:
            if self.kube.get_or_none(path) is None:
                lease: JSON = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.node, "namespace": "kube-node-lease"},
                    "spec": {
                        "holderIdentity": self.node,
                        "leaseDurationSeconds": LEASE_SECONDS,
                        "renewTime": now,
                    },
                }
                if self.node_uid:
                    lease["metadata"]["ownerReferences"] = [
                        {"apiVersion": "v1", "kind": "Node", "name": self.node, "uid": self.node_uid}
                    ]
                self.kube.create(resource_path("coordination.k8s.io/v1", "leases", "kube-node-lease"), lease)
            else:
                self.kube.merge_patch(path, {"spec": {"holderIdentity": self.node, "renewTime": now}})
        except Exception as exc:
            log.warning("event=lease_failed node=%s error=%r", self.node, exc)
            return False
        return True

    # ---- pods --------------------------------------------------------------------------------------

    def _on_pod_event(self, kind: str, obj: JSON) -> None:
        self.queue.put(_key(obj))

    def sync_safely(self, key: tuple[str, str]) -> None:
        try:
            self.sync_pod(key)
        except Exception as exc:  # one bad pod or a failed API call must never stop the kubelet
            log.exception("event=sync_failed pod=%s/%s error=%r", key[0], key[1], exc)
            self.retry_at[key] = time.monotonic() + RETRY_AFTER

    def sync_pod(self, key: tuple[str, str]) -> None:
        pod = self.informer.get(*key)
        running = self.pods.get(key)
        if pod is None:
            self.terminating.pop(key, None)
            if running is not None:
                log.info("event=pod_gone pod=%s/%s", *key)
                self.teardown(running)
            return
        meta = pod["metadata"]
        uid = str(meta.get("uid") or "")
        if running is not None and running.uid != uid:
            self.teardown(running)
            running = None
        if meta.get("deletionTimestamp"):
            if running is not None:
                # A preStop sleep keeps the pod serving (terminating) until it ends or the grace period does.
                linger = self.terminating.setdefault(key, time.monotonic() + podspec.prestop_seconds(pod))
                if time.monotonic() < linger:
                    log.info("event=pod_terminating pod=%s/%s seconds=%.1f", *key, linger - time.monotonic())
                    return
                self.teardown(running)
            self.terminating.pop(key, None)
            # The store marked it for graceful deletion: confirm, the way a kubelet finishes a pod.
            with contextlib.suppress(ApiError):
                self.kube.delete(resource_path("v1", "pods", key[0], key[1]), grace_period=0, uid=uid)
            log.info("event=pod_deleted pod=%s/%s", *key)
            return
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            if running is not None:
                self.teardown(running)
            return
        if running is None:
            if self.rejected.get(key) == uid or self.retry_at.get(key, 0) > time.monotonic():
                return
            self.start_pod(pod)
        else:
            self.write_status(pod, self.run_state(running))

    def start_pod(self, pod: JSON) -> None:
        key = _key(pod)
        meta = pod["metadata"]
        uid = str(meta.get("uid") or "")
        first = ((pod.get("spec") or {}).get("containers") or [{}])[0]
        local = isinstance(first, dict) and containers.is_local_image(str(first.get("image") or ""))
        host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
        try:
            ports = podspec.pod_ports(pod, host_network_ok=local)
            netns = podspec.pod_netns(self.prefix, self.node, uid)
            veth = podspec.host_veth(self.prefix, uid)
        except podspec.PodSpecError as exc:
            log.error("event=bad_pod_spec pod=%s/%s error=%s", *key, exc)
            self.rejected[key] = uid
            self.event(pod, "Warning", "Failed", f"Error: {exc}")
            state = podspec.RunState(
                None, None, False, waiting_reason="CreateContainerConfigError", waiting_message=str(exc)
            )
            self.write_status(pod, state)
            return
        for warning in ports.warnings:
            log.warning("event=pod_spec_warning pod=%s/%s warning=%s", *key, warning)
        if host_network:
            self.start_host_network_pod(pod)
            return
        try:
            addresses = self.allocate(key, pod)
        except IpamError as exc:
            log.error("event=ipam_failed pod=%s/%s error=%s", *key, exc)
            self.retry_at[key] = time.monotonic() + RETRY_AFTER
            self.event(pod, "Warning", "FailedCreatePodSandBox", f"Failed to allocate a pod IP: {exc}")
            return
        # Leftovers of an earlier attempt (e.g. a crash between two steps) would make `ip netns add` fail.
        podnet.kill_processes(netns)
        podnet.teardown_network(self.args.netns, netns, veth)
        network = podnet.PodNetwork(
            node_netns=self.args.netns,
            bridge=self.args.pod_bridge,
            netns=netns,
            host_veth=veth,
            addresses=addresses,
            gateway4=self.ipam.gateway4,
            gateway6=self.ipam.gateway6,
        )
        try:
            podnet.setup_network(network)
        except podnet.PodNetworkError as exc:
            log.error("event=sandbox_failed pod=%s/%s error=%s", *key, exc)
            self.ipam.release(_ipam_key(key))
            self.retry_at[key] = time.monotonic() + RETRY_AFTER
            self.event(pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {exc}")
            return
        rp = RunningPod(
            namespace=key[0],
            name=key[1],
            uid=uid,
            netns=netns,
            veth=veth,
            ipv4=addresses.ipv4,
            ipv6=addresses.ipv6,
            tcp=ports.tcp,
            udp=ports.udp,
            pid=0,
            started_at="",
            local=local,
        )
        self.pods[key] = rp
        self.launch(rp, pod)
        log.info(
            "event=pod_started pod=%s/%s ip=%s ip6=%s netns=%s tcp=%s udp=%s ready=%s",
            *key,
            rp.ipv4,
            rp.ipv6 or "",
            netns,
            list(rp.tcp),
            list(rp.udp),
            rp.ready,
        )
        self.event(
            pod, "Normal", "Started", f"Started container {pod['spec']['containers'][0].get('name', '')}"
        )
        self.write_status(pod, self.run_state(rp))

    def start_host_network_pod(self, pod: JSON) -> None:
        """A hostNetwork pod (ironlb's speaker, dataplane): no sandbox, the node's netns and addresses."""
        key = _key(pod)
        uid = str(pod["metadata"].get("uid") or "")
        rp = RunningPod(
            namespace=key[0],
            name=key[1],
            uid=uid,
            netns=self.args.netns,
            veth="",
            ipv4=str(self.args.internal_ip),
            ipv6=self.args.internal_ip6,
            tcp=(),
            udp=(),
            pid=0,
            started_at="",
            local=True,
            host_network=True,
        )
        self.pods[key] = rp
        self.launch(rp, pod)
        log.info("event=pod_started pod=%s/%s host_network=true netns=%s", *key, rp.netns)
        self.write_status(pod, self.run_state(rp))

    def allocate(self, key: tuple[str, str], pod: JSON) -> PodAddresses:
        """The pod's earlier IP when it had one from this node (kubelet restart), else the next free one."""
        previous = (pod.get("status") or {}).get("podIP")
        if previous and self.ipam.owner_of(str(previous)) is None:
            with contextlib.suppress(IpamError, ValueError):
                if ipaddress.ip_address(str(previous)) in self.ipam.net4:
                    return self.ipam.restore(_ipam_key(key), str(previous))
        return self.ipam.allocate(_ipam_key(key))

    def launch(self, rp: RunningPod, pod: JSON | None = None) -> None:
        if rp.local:
            pod = pod if pod is not None else self.informer.get(rp.namespace, rp.name)
            if pod is not None:
                self.launch_local(rp, pod)
            return
        ready_file = self.run_dir / f"{rp.netns}.ready"
        proc = podnet.start_echo_server(
            rp.netns, rp.name, rp.tcp, rp.udp, ready_file, self.state_dir / "logs" / f"{rp.netns}.log"
        )
        rp.proc, rp.pid, rp.started_at, rp.ready, rp.exited = proc, proc.pid, rfc3339(), False, False
        deadline = time.monotonic() + READY_WAIT
        while time.monotonic() < deadline and proc.poll() is None and not ready_file.exists():
            time.sleep(0.02)
        rp.ready = ready_file.exists() and proc.poll() is None
        self.save_record(rp)

    # ---- ironlb's own image ------------------------------------------------------------------------

    def launch_local(self, rp: RunningPod, pod: JSON) -> None:
        """Start the component the pod's first container names; on a configuration it cannot start with yet
        (a missing Secret or ConfigMap) the container waits and is retried."""
        container = pod["spec"]["containers"][0]
        try:
            pod_ips = [ip for ip in (rp.ipv4, rp.ipv6) if ip]
            plan = self.runtime.plan(pod, container, pod_ips, rp.host_network)
        except containers.ContainerConfigError as exc:
            volume = isinstance(exc, containers.VolumeError)
            reason = "ContainerCreating" if volume else "CreateContainerConfigError"
            if rp.waiting_message != str(exc):
                log.warning(
                    "event=container_config pod=%s/%s reason=%s error=%s", rp.namespace, rp.name, reason, exc
                )
                event = "FailedMount" if reason == "ContainerCreating" else "Failed"
                self.event(pod, "Warning", event, f"Error: {exc}")
            rp.waiting, rp.waiting_message = reason, str(exc)
            rp.next_restart = time.monotonic() + RETRY_AFTER
            rp.proc, rp.ready = None, False
            return
        rp.waiting = rp.waiting_message = ""
        proc = self.runtime.start(pod, container, rp.netns, rp.restarts, plan)
        rp.proc, rp.pid, rp.started_at, rp.exited = proc, proc.pid, rfc3339(), False
        rp.proc_start = start_time(proc.pid) or ""
        rp.tokens_at = time.monotonic()
        readiness = probes.http_probe(container.get("readinessProbe"), container, rp.ipv4)
        liveness = probes.http_probe(container.get("livenessProbe"), container, rp.ipv4)
        rp.ready = readiness is None
        rp.probe_state = {
            "readiness": readiness,
            "liveness": liveness,
            "started": time.monotonic(),
            "next": {},
            "failures": {},
            "successes": {},
        }
        self.save_record(rp)
        log.info(
            "event=container_started pod=%s/%s pid=%d restarts=%d argv=%r",
            rp.namespace, rp.name, proc.pid, rp.restarts, plan.argv,
        )  # fmt: skip

    def refresh_tokens(self, now: float) -> None:
        """Rewrite a running pod's projected service-account tokens at 80% of their lifetime, as the kubelet
        does; the file is replaced inside the mounted directory, where the in-cluster client re-reads it."""
        for key, rp in list(self.pods.items()):
            pod = self.informer.get(*key)
            if not rp.local or rp.waiting or pod is None or not rp.tokens_at:
                continue
            account = str(pod["spec"].get("serviceAccountName") or "default")
            for volume in pod["spec"].get("volumes") or []:
                for source in (volume.get("projected") or {}).get("sources") or []:
                    token = source.get("serviceAccountToken")
                    seconds = int((token or {}).get("expirationSeconds") or 3600)
                    if token is None or now - rp.tokens_at < 0.8 * seconds:
                        continue
                    audiences = [str(token["audience"])] if token.get("audience") else []
                    path = str(token.get("path") or "token")
                    try:
                        value = self.runtime.service_account_token(pod, account, audiences, seconds)
                        self.runtime.rewrite_token(pod, str(volume["name"]), path, value)
                    except (containers.VolumeError, OSError) as exc:
                        log.warning("event=token_refresh_failed pod=%s/%s error=%s", *key, exc)
                        continue
                    rp.tokens_at = now
                    log.info("event=token_refreshed pod=%s/%s volume=%s", *key, volume["name"])

    def probe(self, key: tuple[str, str], rp: RunningPod, now: float) -> None:
        """Run the pod's due httpGet probes: readiness sets Ready, liveness past its threshold kills the
        container (it is restarted like any crash)."""
        state = rp.probe_state
        if not state or rp.exited or rp.waiting:
            return
        for kind in ("readiness", "liveness"):
            probe = state.get(kind)
            if probe is None or now < state["started"] + probe.initial_delay:
                continue
            if now < state["next"].get(kind, 0):
                continue
            state["next"][kind] = now + probe.period
            ok = probes.check(rp.netns, probe)
            failures = 0 if ok else state["failures"].get(kind, 0) + 1
            successes = state["successes"].get(kind, 0) + 1 if ok else 0
            state["failures"][kind], state["successes"][kind] = failures, successes
            if kind == "readiness":
                ready = rp.ready
                if ok and successes >= probe.success_threshold:
                    ready = True
                elif not ok and failures >= probe.failure_threshold:
                    ready = False
                if ready != rp.ready:
                    rp.ready = ready
                    log.info("event=readiness pod=%s/%s ready=%s", *key, ready)
                    self._status_of(key, rp)
            elif failures >= probe.failure_threshold and rp.proc is not None and rp.proc.poll() is None:
                log.warning("event=liveness_failed pod=%s/%s failures=%d", *key, failures)
                pod = self.informer.get(*key)
                if pod is not None:
                    self.event(pod, "Warning", "Unhealthy", f"Liveness probe failed: {probe.path}")
                rp.proc.terminate()

    def run_state(self, rp: RunningPod) -> podspec.RunState:
        if rp.host_network:
            addresses = PodAddresses(rp.ipv4, rp.ipv6, 32, 128 if rp.ipv6 else None)
        else:
            prefix6 = self.ipam.net6.prefixlen if self.ipam.net6 else None
            addresses = PodAddresses(rp.ipv4, rp.ipv6, self.ipam.net4.prefixlen, prefix6)
        what = "the container" if rp.local else "the echo server"
        return podspec.RunState(
            addresses=addresses,
            started_at=rp.started_at or None,
            ready=rp.ready,
            restarts=rp.restarts,
            last_exit_code=rp.last_exit_code,
            last_finished_at=rp.last_finished_at,
            waiting_reason=rp.waiting or ("CrashLoopBackOff" if rp.exited else ""),
            waiting_message=rp.waiting_message or (f"back-off restarting {what}" if rp.exited else ""),
        )

    def write_status(self, pod: JSON, state: podspec.RunState) -> None:
        desired = podspec.pod_status(pod, state, self.host_ips, rfc3339())
        if not podspec.status_differs(pod.get("status"), desired):
            return
        key = _key(pod)
        try:
            self.kube.merge_patch(resource_path("v1", "pods", key[0], key[1], "status"), {"status": desired})
        except ApiError as exc:
            if exc.status != 404:
                raise

    def check_processes(self) -> None:
        now = time.monotonic()
        for key, rp in list(self.pods.items()):
            if rp.waiting:
                if now >= rp.next_restart:
                    self.launch(rp)
                    self._status_of(key, rp)
                continue
            if rp.proc is not None:
                alive = rp.proc.poll() is None
            elif rp.local:
                alive = rp.pid > 0 and is_running(rp.pid, rp.proc_start or None)
            else:
                alive = podnet.pid_alive(rp.pid, rp.netns)
            if alive and rp.local:
                self.probe(key, rp, now)
            if alive and not rp.ready and (self.run_dir / f"{rp.netns}.ready").exists():
                rp.ready = True
                self._status_of(key, rp)
            if alive:
                continue
            if not rp.exited:
                code = _exit_code(rp.proc.returncode if rp.proc is not None else None)
                log.warning(
                    "event=echo_died pod=%s/%s pid=%d exit_code=%d restarts=%d",
                    *key,
                    rp.pid,
                    code,
                    rp.restarts,
                )
                rp.exited, rp.ready = True, False
                rp.last_exit_code, rp.last_finished_at = code, rfc3339()
                if now < rp.next_restart:
                    self._status_of(key, rp)  # not ready while it waits out the back-off
            if now < rp.next_restart:
                continue
            rp.restarts += 1
            # Back-off doubles with every restart (capped), like CrashLoopBackOff but in seconds, not minutes.
            rp.next_restart = now + min(2.0**rp.restarts, 30.0)
            self.launch(rp)
            self._status_of(key, rp)

    def _status_of(self, key: tuple[str, str], rp: RunningPod) -> None:
        pod = self.informer.get(*key)
        if pod is not None and pod["metadata"].get("uid") == rp.uid:
            try:
                self.write_status(pod, self.run_state(rp))
            except Exception as exc:
                log.warning("event=status_failed pod=%s/%s error=%r", *key, exc)

    def teardown(self, rp: RunningPod) -> None:
        if rp.proc is not None and rp.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                rp.proc.terminate()
            try:
                rp.proc.wait(TERMINATE_WAIT if rp.local else 3)
            except subprocess.TimeoutExpired:
                rp.proc.kill()
                rp.proc.wait()
        elif rp.proc is None and rp.local and rp.pid > 0:
            signal_and_wait([rp.pid], TERMINATE_WAIT) if is_running(rp.pid, rp.proc_start or None) else None
        key = (rp.namespace, rp.name)
        if not rp.host_network:
            # Never for a hostNetwork pod: its "netns" is the node's own.
            podnet.kill_processes(rp.netns)
            podnet.teardown_network(self.args.netns, rp.netns, rp.veth)
            self.ipam.release(_ipam_key(key))
        if rp.local:
            self.runtime.remove(rp.namespace, rp.name, rp.uid)
        (self.records_dir / f"{rp.netns}.json").unlink(missing_ok=True)
        (self.run_dir / f"{rp.netns}.ready").unlink(missing_ok=True)
        if self.pods.get(key) is rp:
            del self.pods[key]
        log.info("event=pod_torn_down pod=%s/%s netns=%s", *key, rp.netns)

    def save_record(self, rp: RunningPod) -> None:
        path = self.records_dir / f"{rp.netns}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rp.record()))
        tmp.replace(path)

    def adopt_or_clean(self) -> None:
        """After a restart: keep the pods whose netns and echo server survived, remove everything else."""
        kept: set[str] = set()
        for path in sorted(self.records_dir.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                data["tcp"], data["udp"] = tuple(data["tcp"]), tuple(data["udp"])
                rp = RunningPod(**data)
            except (OSError, ValueError, TypeError, KeyError) as exc:
                log.warning("event=bad_record path=%s error=%r", path, exc)
                path.unlink(missing_ok=True)
                continue
            key = (rp.namespace, rp.name)
            pod = self.informer.get(*key)
            usable = (
                pod is not None
                and pod["metadata"].get("uid") == rp.uid
                and not pod["metadata"].get("deletionTimestamp")
                and podnet.netns_exists(rp.netns)
                and (
                    is_running(rp.pid, rp.proc_start or None)
                    if rp.local
                    else podnet.pid_alive(rp.pid, rp.netns)
                )
            )
            if rp.local:
                # The component's probes and volumes are the old kubelet's: start it afresh.
                if rp.pid > 0 and is_running(rp.pid, rp.proc_start or None):
                    signal_and_wait([rp.pid], TERMINATE_WAIT)
                usable = False
            if usable:
                try:
                    self.ipam.restore(_ipam_key(key), rp.ipv4)
                except IpamError as exc:
                    log.warning("event=adopt_failed pod=%s/%s error=%s", *key, exc)
                    usable = False
            if usable:
                self.pods[key] = rp
                kept.add(rp.netns)
                log.info("event=pod_adopted pod=%s/%s netns=%s pid=%d", *key, rp.netns, rp.pid)
                self.queue.put(key)
            else:
                if not rp.host_network:
                    podnet.kill_processes(rp.netns)
                    podnet.teardown_network(self.args.netns, rp.netns, rp.veth)
                path.unlink(missing_ok=True)
                log.info("event=pod_cleaned pod=%s/%s netns=%s", *key, rp.netns)
        for netns in podnet.list_netns(podspec.netns_prefix(self.prefix, self.node)):
            if netns not in kept:
                podnet.kill_processes(netns)
                podnet.ip("netns", "del", netns, check=False)
                log.info("event=netns_swept netns=%s", netns)

    def event(self, pod: JSON, kind: str, reason: str, message: str) -> None:
        self.recorder.event(pod, kind, reason, message, default_kind="Pod")


def _key(obj: JSON) -> tuple[str, str]:
    meta = obj["metadata"]
    return (str(meta.get("namespace") or "default"), str(meta["name"]))


def _ipam_key(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lab.kubelet", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--netns", required=True, help="the node's network namespace")
    parser.add_argument(
        "--pod-bridge", required=True, help="bridge inside the node netns holding the pod gateway"
    )
    parser.add_argument("--pod-cidr", required=True)
    parser.add_argument("--pod-cidr6")
    parser.add_argument("--internal-ip", required=True)
    parser.add_argument("--internal-ip6")
    parser.add_argument(
        "--prefix", required=True, help="lab prefix carried by every object this kubelet makes"
    )
    parser.add_argument("--labels", default="", help="extra node labels, k=v,k=v")
    parser.add_argument("--state-dir")
    parser.add_argument(
        "--pod-log-dir", help="where containers' output goes (lab.podlogs; default STATE_DIR/pod-logs)"
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="Lease renewal period; the Node status is posted every second heartbeat",
    )
    args = parser.parse_args(argv)
    if args.heartbeat_interval <= 0:
        parser.error("--heartbeat-interval must be positive")
    try:
        args.labels = podspec.parse_labels(args.labels)
        for flag in ("internal_ip", "internal_ip6"):
            if getattr(args, flag):
                ipaddress.ip_address(getattr(args, flag))
        PodIpam(args.pod_cidr, args.pod_cidr6)
        podspec.host_veth(args.prefix, "x")
    except (ValueError, podspec.PodSpecError) as exc:
        parser.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    if not podnet.netns_exists(args.netns):
        log.error("event=no_node_netns netns=%s", args.netns)
        return 2
    kube = Client.open_or_report(args.kubeconfig, user_agent="ironlb-lab")
    if kube is None:
        return 2
    try:
        return Kubelet(args, kube).run()
    finally:
        kube.close()


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
