"""The lab kubelet's pure side: what a Pod asks for, names of its kernel objects, and the statuses to report.

The lab runs every pod as one echo server in its own network namespace, whatever its containers' images are:
the echo server listens on every containerPort (TCP and UDP), or 80/TCP when none is declared. Names carry the
lab prefix so cleanup finds them, and stay within Linux's 15-character limit for interfaces.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.ipam import PodAddresses

IFNAMSIZ = 15
KUBELET_VERSION = "v1.37.0-ironlb"
RUNTIME = "ironlb-lab"


class PodSpecError(ValueError):
    """A Pod the lab kubelet cannot run; the message names the field."""


@dataclass(frozen=True)
class PodPorts:
    tcp: tuple[int, ...]
    udp: tuple[int, ...]
    warnings: tuple[str, ...] = field(default=())


def pod_ports(pod: Mapping[str, Any], host_network_ok: bool = False) -> PodPorts:
    """The echo server's ports. `host_network_ok`: the pod runs ironlb's own image, the only kind the lab runs
    in the node's network namespace."""
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork") and not host_network_ok:
        raise PodSpecError(
            "spec.hostNetwork: host-network pods run only ironlb's own image in the lab kubelet"
        )
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise PodSpecError("spec.containers: at least one container is required")
    tcp: list[int] = []
    udp: list[int] = []
    warnings: list[str] = []
    for ci, container in enumerate(containers):
        if not isinstance(container, dict):
            raise PodSpecError(f"spec.containers[{ci}]: not an object")
        ports = container.get("ports") or []
        if not isinstance(ports, list):
            raise PodSpecError(f"spec.containers[{ci}].ports: not a list")
        for pi, port in enumerate(ports):
            where = f"spec.containers[{ci}].ports[{pi}]"
            number = port.get("containerPort") if isinstance(port, dict) else None
            if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 65535:
                raise PodSpecError(f"{where}.containerPort: {number!r} is not a port number (1-65535)")
            protocol = port.get("protocol") or "TCP"
            if protocol == "TCP":
                if number not in tcp:
                    tcp.append(number)
            elif protocol == "UDP":
                if number not in udp:
                    udp.append(number)
            else:
                warnings.append(f"{where}.protocol: {protocol} is not served by the lab echo server")
    if not tcp and not udp:
        tcp = [80]
    return PodPorts(tuple(tcp), tuple(udp), tuple(warnings))


def prestop_seconds(pod: Mapping[str, Any]) -> float:
    """How long a deleted pod keeps serving: its first container's preStop sleep (the native `sleep` action or
    an exec of `sleep N`), within the grace period. The echo server stands in for a container that finishes
    its in-flight work before it exits."""
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    hook = (
        (containers[0] if containers and isinstance(containers[0], dict) else {}).get("lifecycle") or {}
    ).get("preStop") or {}
    seconds: Any = (hook.get("sleep") or {}).get("seconds")
    command = (hook.get("exec") or {}).get("command") or []
    if (
        seconds is None
        and isinstance(command, list)
        and len(command) == 2
        and command[0] in ("sleep", "/bin/sleep")
    ):
        seconds = command[1]
    try:
        wanted = float(seconds) if seconds is not None else 0.0
    except (TypeError, ValueError):
        return 0.0
    metadata = pod.get("metadata") or {}
    grace = metadata.get("deletionGracePeriodSeconds", spec.get("terminationGracePeriodSeconds", 30))
    try:
        return max(0.0, min(wanted, float(grace)))
    except (TypeError, ValueError):
        return max(0.0, wanted)


def short_hash(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def pod_netns(prefix: str, node: str, uid: str) -> str:
    return f"{prefix}-p-{node}-{short_hash(uid, 8)}"


def netns_prefix(prefix: str, node: str) -> str:
    """Every pod netns of this node starts with this (the sweep on restart uses it)."""
    return f"{prefix}-p-{node}-"


def host_veth(prefix: str, uid: str) -> str:
    """The node-side veth of a pod: `<prefix>-<hash>`, exactly 15 characters."""
    room = IFNAMSIZ - len(prefix) - 1
    if room < 4:
        raise PodSpecError(
            f"lab prefix {prefix!r} is too long for interface names (at most {IFNAMSIZ - 5} chars)"
        )
    return f"{prefix}-{short_hash(uid, room)}"


def container_id(uid: str, container: str, restarts: int) -> str:
    return f"{RUNTIME}://{short_hash(f'{uid}/{container}/{restarts}', 64)}"


def qos_class(pod: Mapping[str, Any]) -> str:
    containers = (pod.get("spec") or {}).get("containers") or []
    resources = [c.get("resources") or {} for c in containers if isinstance(c, dict)]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        (r.get("limits") or {}).get(k)
        and (r.get("requests") or {}).get(k, (r.get("limits") or {}).get(k)) == (r.get("limits") or {}).get(k)
        for r in resources
        for k in ("cpu", "memory")
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _conditions(
    previous: Sequence[Mapping[str, Any]], wanted: Sequence[tuple[str, bool, str]], now: str
) -> list[dict[str, Any]]:
    old = {c.get("type"): c for c in previous}
    out = []
    for kind, ok, reason in wanted:
        status = "True" if ok else "False"
        prior = old.get(kind)
        since = prior.get("lastTransitionTime") if prior and prior.get("status") == status else None
        cond: dict[str, Any] = {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": since or now,
        }
        if not ok and reason:
            cond["reason"] = reason
        out.append(cond)
    return out


@dataclass(frozen=True)
class RunState:
    """What the kubelet knows about a pod's echo server."""

    addresses: PodAddresses | None
    started_at: str | None
    ready: bool
    restarts: int = 0
    last_exit_code: int | None = None
    last_finished_at: str | None = None
    waiting_reason: str = ""
    waiting_message: str = ""


KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


def readiness_gates_pass(pod: Mapping[str, Any]) -> bool:
    """Every spec.readinessGates condition is True in the pod's status (set by whoever owns the gate)."""
    gates = [
        g.get("conditionType")
        for g in (pod.get("spec") or {}).get("readinessGates") or []
        if isinstance(g, dict)
    ]
    conditions = {c.get("type"): c.get("status") for c in (pod.get("status") or {}).get("conditions") or []}
    return all(conditions.get(gate) == "True" for gate in gates)


def pod_status(pod: Mapping[str, Any], state: RunState, host_ips: Sequence[str], now: str) -> dict[str, Any]:
    """The pod's status subresource as a real kubelet would write it. Ready also needs every readiness gate
    (spec.readinessGates) True; conditions the kubelet does not own (the gates') are kept as they are."""
    old = pod.get("status") or {}
    running = state.started_at is not None and not state.waiting_reason
    not_ready_reason = "ContainersNotReady"
    sandbox = state.addresses is not None
    gates = readiness_gates_pass(pod)
    previous = old.get("conditions") or []
    conditions = _conditions(
        previous,
        [
            ("PodReadyToStartContainers", sandbox, ""),
            ("Initialized", True, ""),
            (
                "Ready",
                state.ready and gates,
                not_ready_reason if not state.ready else "ReadinessGatesNotReady",
            ),
            ("ContainersReady", state.ready, not_ready_reason),
            ("PodScheduled", True, ""),
        ],
        now,
    )
    conditions += [dict(c) for c in previous if c.get("type") not in KUBELET_CONDITIONS]
    statuses = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        name = str(container.get("name") or "")
        image = str(container.get("image") or "")
        entry: dict[str, Any] = {
            "name": name,
            "image": image,
            "imageID": f"{RUNTIME}://{image}",
            "ready": state.ready,
            "restartCount": state.restarts,
            "started": running,
        }
        if running:
            entry["containerID"] = container_id(str(pod["metadata"].get("uid")), name, state.restarts)
            entry["state"] = {"running": {"startedAt": state.started_at}}
        else:
            waiting: dict[str, Any] = {"reason": state.waiting_reason or "ContainerCreating"}
            if state.waiting_message:
                waiting["message"] = state.waiting_message
            entry["state"] = {"waiting": waiting}
        if state.last_exit_code is not None:
            entry["lastState"] = {
                "terminated": {
                    "exitCode": state.last_exit_code,
                    "reason": "Error" if state.last_exit_code else "Completed",
                    "finishedAt": state.last_finished_at or now,
                }
            }
        else:
            entry["lastState"] = {}
        statuses.append(entry)
    status: dict[str, Any] = {
        # A container that ran once keeps the pod Running while it restarts (CrashLoopBackOff), as in k8s.
        "phase": "Running" if state.started_at is not None else "Pending",
        "conditions": conditions,
        "hostIP": host_ips[0] if host_ips else None,
        "hostIPs": [{"ip": ip} for ip in host_ips],
        "startTime": old.get("startTime") or now,
        "containerStatuses": statuses,
        "qosClass": qos_class(pod),
    }
    if state.addresses is not None:
        status["podIP"] = state.addresses.ipv4
        status["podIPs"] = [{"ip": ip} for ip in state.addresses.ips]
    return status


def status_differs(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether `desired` says anything `current` does not (timestamps that only move are ignored)."""

    def strip(status: Mapping[str, Any] | None) -> Any:
        status = dict(status or {})
        status["conditions"] = sorted(
            (
                {k: v for k, v in c.items() if k not in ("lastTransitionTime", "lastProbeTime")}
                for c in status.get("conditions") or []
            ),
            key=lambda c: str(c.get("type")),
        )
        return status

    return bool(strip(current) != strip(desired))


def node_arch() -> str:
    machine = platform.machine()
    return {
        "x86_64": "amd64",
        "aarch64": "arm64",
        "armv7l": "arm",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
    }.get(machine, machine)


def node_object(name: str, labels: Mapping[str, str], pod_cidrs: Sequence[str], arch: str) -> dict[str, Any]:
    all_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch,
        **labels,
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "spec": {"podCIDR": pod_cidrs[0], "podCIDRs": list(pod_cidrs)},
    }


def node_status(
    name: str,
    internal_ips: Sequence[str],
    previous: Mapping[str, Any] | None,
    now: str,
    node_info: Mapping[str, str],
    ready: bool = True,
) -> dict[str, Any]:
    old = {c.get("type"): c for c in (previous or {}).get("conditions") or []}

    def cond(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
        status = "True" if ok else "False"
        prior = old.get(kind)
        since = prior.get("lastTransitionTime") if prior and prior.get("status") == status else None
        return {
            "type": kind,
            "status": status,
            "lastHeartbeatTime": now,
            "lastTransitionTime": since or now,
            "reason": reason,
            "message": message,
        }

    capacity = {"cpu": "2", "memory": "4Gi", "pods": "110", "ephemeral-storage": "10Gi", "hugepages-2Mi": "0"}
    own = ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")
    # Conditions others set (NetworkUnavailable from the network plugin or a test) stay, as the real kubelet's
    # strategic merge keeps them.
    foreign = [c for c in (previous or {}).get("conditions") or [] if c.get("type") not in own]
    return {
        "conditions": [
            *foreign,
            cond(
                "MemoryPressure",
                False,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            cond("DiskPressure", False, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", False, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", True, "KubeletReady", "kubelet is posting ready status")
            if ready
            else cond("Ready", False, "KubeletNotReady", "kubelet is stopping"),
        ],
        "addresses": [{"type": "InternalIP", "address": ip} for ip in internal_ips]
        + [{"type": "Hostname", "address": name}],
        "capacity": capacity,
        "allocatable": dict(capacity),
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": short_hash(name, 32),
            "systemUUID": short_hash("uuid/" + name, 32),
            "bootID": node_info.get("bootID", ""),
            "kernelVersion": node_info.get("kernelVersion", ""),
            "osImage": node_info.get("osImage", ""),
            "containerRuntimeVersion": f"{RUNTIME}://0.1.0",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": node_info.get("architecture", node_arch()),
        },
    }


def parse_labels(text: str) -> dict[str, str]:
    """`k=v,k2=v2` (the --labels flag); raises ValueError naming the bad item."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--labels: {item!r} is not key=value")
        labels[key] = value
    return labels
