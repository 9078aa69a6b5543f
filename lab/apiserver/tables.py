"""meta.k8s.io/v1 Tables for `kubectl get`, with the columns and cell formats of kube-apiserver's printers.

The server renders every column (wide ones carry priority 1, which kubectl hides without `-o wide`), and ages
are rendered server-side with Kubernetes' duration.HumanDuration.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]
Row = list[Any]

NAME_DESC = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources "
    "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
    "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
AGE_DESC = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is "
    "not guaranteed to be set in happens-before order across separate operations. Clients may not set this "
    "value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. "
    "Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)


def column(name: str, description: str, type_: str = "string", priority: int = 0, format_: str = "") -> Obj:
    return {"name": name, "type": type_, "format": format_, "description": description, "priority": priority}


NAME = column("Name", NAME_DESC, format_="name")
AGE = column("Age", AGE_DESC)
CREATED_AT = column("Created At", AGE_DESC, type_="date")


# ------------------------------------------------------------------------------------------- formatting


def human_duration(seconds_total: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    seconds = int(seconds_total)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def parse_time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def since(value: Any, now: datetime.datetime) -> str:
    """printers' translateTimestampSince: `<unknown>` for a missing time."""
    then = parse_time(value)
    if then is None:
        return "<unknown>"
    return human_duration((now - then).total_seconds())


def format_labels(labels: Any) -> str:
    """labels.FormatLabels: sorted k=v pairs, `<none>` when empty."""
    if not isinstance(labels, dict) or not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def format_selector(selector: Any) -> str:
    """metav1.LabelSelectorAsSelector(...).String(): requirements sorted by key."""
    if not isinstance(selector, dict):
        return "<none>" if selector is None else "<invalid>"
    parts: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        parts.append((key, f"{key}={value}"))
    for expr in selector.get("matchExpressions") or []:
        if not isinstance(expr, dict):
            return "<invalid>"
        key = str(expr.get("key", ""))
        values = ",".join(sorted(str(v) for v in expr.get("values") or []))
        op = expr.get("operator")
        rendered = {
            "In": f"{key} in ({values})",
            "NotIn": f"{key} notin ({values})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }.get(str(op))
        if rendered is None:
            return "<invalid>"
        parts.append((key, rendered))
    return ",".join(p for _, p in sorted(parts, key=lambda item: item[0]))


def _meta(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _get(obj: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _with_more(items: list[str], more: bool, count: int, limit: int, empty: str) -> str:
    joined = ",".join(items)
    if more:
        return f"{joined} + {count - limit} more..."
    return joined or empty


def _host_port(ip: str, port: Any) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# ----------------------------------------------------------------------------------------------- printers


def _service(obj: Obj, now: datetime.datetime) -> Row:
    spec = obj.get("spec") or {}
    ips = _list(spec.get("clusterIPs"))
    internal = ips[0] if ips else "<none>"
    ports = []
    for port in _list(spec.get("ports")):
        if not isinstance(port, dict):
            continue
        protocol = port.get("protocol", "TCP")
        if _int(port.get("nodePort")) > 0:
            ports.append(f"{port.get('port')}:{port['nodePort']}/{protocol}")
        else:
            ports.append(f"{port.get('port')}/{protocol}")
    return [
        _meta(obj).get("name", ""),
        spec.get("type", ""),
        internal,
        _service_external_ip(obj),
        ",".join(ports) or "<none>",
        since(_meta(obj).get("creationTimestamp"), now),
        format_labels(spec.get("selector")),
    ]


def _service_external_ip(obj: Obj) -> str:
    spec = obj.get("spec") or {}
    external_ips = [str(ip) for ip in _list(spec.get("externalIPs"))]
    kind = spec.get("type")
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) or "<none>"
    if kind == "LoadBalancer":
        found: set[str] = set()
        for ingress in _list(_get(obj, "status", "loadBalancer", "ingress")):
            if not isinstance(ingress, dict):
                continue
            if ingress.get("ip"):
                found.add(str(ingress["ip"]))
            elif ingress.get("hostname"):
                found.add(str(ingress["hostname"]))
        lb = sorted(found)
        if external_ips:
            return ",".join(lb + external_ips)
        return ",".join(lb) or "<pending>"
    if kind == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


POD_SUCCEEDED = [
    {
        "type": "Completed",
        "status": "True",
        "reason": "Succeeded",
        "message": "The pod has completed successfully.",
    }
]
POD_FAILED = [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]


def _pod_status(obj: Obj, now: datetime.datetime) -> tuple[str, int, int, str]:
    """(reason, ready, total, restarts) as printPod computes them."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    phase = str(status.get("phase") or "")
    reason = str(status.get("reason") or phase)
    for condition in _list(status.get("conditions")):
        if _get(condition, "type") == "PodScheduled" and _get(condition, "reason") == "SchedulingGated":
            reason = "SchedulingGated"
    containers = _list(spec.get("containers"))
    init_specs = {c.get("name"): c for c in _list(spec.get("initContainers")) if isinstance(c, dict)}
    sidecars = {name for name, c in init_specs.items() if c.get("restartPolicy") == "Always"}
    total = len(containers) + len(sidecars)
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    last_restart: datetime.datetime | None = None
    sidecar_last: datetime.datetime | None = None

    def later(a: datetime.datetime | None, b: Any) -> datetime.datetime | None:
        t = parse_time(b)
        return t if t is not None and (a is None or t > a) else a

    initializing = False
    init_statuses = _list(status.get("initContainerStatuses"))
    for i, cs in enumerate(init_statuses):
        if not isinstance(cs, dict):
            continue
        restarts += _int(cs.get("restartCount"))
        finished = _get(cs, "lastState", "terminated", "finishedAt")
        last_restart = later(last_restart, finished)
        is_sidecar = cs.get("name") in sidecars
        if is_sidecar:
            sidecar_restarts += _int(cs.get("restartCount"))
            sidecar_last = later(sidecar_last, finished)
        state = cs.get("state") or {}
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if isinstance(terminated, dict) and _int(terminated.get("exitCode")) == 0:
            continue
        if is_sidecar and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if isinstance(terminated, dict):
            if terminated.get("reason"):
                reason = "Init:" + str(terminated["reason"])
            elif _int(terminated.get("signal")):
                reason = f"Init:Signal:{terminated['signal']}"
            else:
                reason = f"Init:ExitCode:{_int(terminated.get('exitCode'))}"
        elif isinstance(waiting, dict) and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + str(waiting["reason"])
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    initialized = any(
        _get(c, "type") == "Initialized" and _get(c, "status") == "True"
        for c in _list(status.get("conditions"))
    )
    if not initializing or initialized:
        restarts = sidecar_restarts
        last_restart = sidecar_last
        has_running = False
        for cs in reversed(_list(status.get("containerStatuses"))):
            if not isinstance(cs, dict):
                continue
            restarts += _int(cs.get("restartCount"))
            last_restart = later(last_restart, _get(cs, "lastState", "terminated", "finishedAt"))
            state = cs.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if isinstance(waiting, dict) and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif isinstance(terminated, dict) and terminated.get("reason"):
                reason = str(terminated["reason"])
            elif isinstance(terminated, dict):
                signal = _int(terminated.get("signal"))
                reason = f"Signal:{signal}" if signal else f"ExitCode:{_int(terminated.get('exitCode'))}"
            elif cs.get("ready") and isinstance(state.get("running"), dict):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(
                _get(c, "type") == "Ready" and _get(c, "status") == "True"
                for c in _list(status.get("conditions"))
            )
            reason = "Running" if pod_ready else "NotReady"

    if _meta(obj).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"
    return reason, ready, total, restarts_text


def _pod(obj: Obj, now: datetime.datetime) -> Row:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    reason, ready, total, restarts = _pod_status(obj, now)
    pod_ips = _list(status.get("podIPs"))
    pod_ip = (_get(pod_ips[0], "ip") if pod_ips else None) or status.get("podIP") or "<none>"
    gates = _list(spec.get("readinessGates"))
    gates_text = "<none>"
    if gates:
        conditions = {_get(c, "type"): _get(c, "status") for c in _list(status.get("conditions"))}
        true_count = sum(1 for g in gates if conditions.get(_get(g, "conditionType")) == "True")
        gates_text = f"{true_count}/{len(gates)}"
    return [
        _meta(obj).get("name", ""),
        f"{ready}/{total}",
        reason,
        restarts,
        since(_meta(obj).get("creationTimestamp"), now),
        pod_ip,
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_text,
    ]


def _pod_conditions(obj: Obj) -> list[Obj] | None:
    phase = _get(obj, "status", "phase")
    if phase == "Succeeded":
        return POD_SUCCEEDED
    if phase == "Failed":
        return POD_FAILED
    return None


def _node(obj: Obj, now: datetime.datetime) -> Row:
    status = obj.get("status") or {}
    ready = [c for c in _list(status.get("conditions")) if _get(c, "type") == "Ready"]
    states = ["Ready" if _get(ready[-1], "status") == "True" else "NotReady"] if ready else ["Unknown"]
    if _get(obj, "spec", "unschedulable"):
        states.append("SchedulingDisabled")
    roles: set[str] = set()
    for key, value in (_meta(obj).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/"):
            role = key[len("node-role.kubernetes.io/") :]
            if role:
                roles.add(role)
        elif key == "kubernetes.io/role" and value:
            roles.add(str(value))
    info = status.get("nodeInfo") or {}

    def address(kind: str) -> str:
        for item in _list(status.get("addresses")):
            if _get(item, "type") == kind:
                return str(_get(item, "address"))
        return "<none>"

    return [
        _meta(obj).get("name", ""),
        ",".join(states),
        ",".join(sorted(roles)) or "<none>",
        since(_meta(obj).get("creationTimestamp"), now),
        info.get("kubeletVersion", ""),
        address("InternalIP"),
        address("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _endpoints(obj: Obj, now: datetime.datetime) -> Row:
    subsets = _list(obj.get("subsets"))
    limit, count, more = 3, 0, False
    listed: list[str] = []
    for subset in subsets:
        addresses = [str(_get(a, "ip")) for a in _list(_get(subset, "addresses"))]
        ports = _list(_get(subset, "ports"))
        if not ports:
            count += len(addresses)
            for ip in addresses:
                if len(listed) == limit:
                    more = True
                    break
                listed.append(ip)
            continue
        for port in ports:
            count += len(addresses)
            for ip in addresses:
                if len(listed) == limit:
                    more = True
                    break
                listed.append(_host_port(ip, _get(port, "port")))
    text = "<none>" if not subsets else _with_more(listed, more, count, limit, "<none>")
    return [_meta(obj).get("name", ""), text, since(_meta(obj).get("creationTimestamp"), now)]


def _endpointslice(obj: Obj, now: datetime.datetime) -> Row:
    limit = 3
    ports: list[str] = []
    port_count, ports_more = 0, False
    for port in _list(obj.get("ports")):
        if len(ports) < limit:
            number = _get(port, "port")
            name = _get(port, "name")
            ports.append(str(number) if number is not None else (str(name) if name is not None else "*"))
        else:
            ports_more = True
        port_count += 1
    addresses: list[str] = []
    address_count, addresses_more = 0, False
    for endpoint in _list(obj.get("endpoints")):
        for address in _list(_get(endpoint, "addresses")):
            if len(addresses) < limit:
                addresses.append(str(address))
            else:
                addresses_more = True
            address_count += 1
    return [
        _meta(obj).get("name", ""),
        obj.get("addressType", ""),
        _with_more(ports, ports_more, port_count, limit, "<unset>"),
        _with_more(addresses, addresses_more, address_count, limit, "<unset>"),
        since(_meta(obj).get("creationTimestamp"), now),
    ]


def _workload_wide(obj: Obj) -> list[str]:
    containers = [
        c for c in _list(_get(obj, "spec", "template", "spec", "containers")) if isinstance(c, dict)
    ]
    return [
        ",".join(str(c.get("name", "")) for c in containers),
        ",".join(str(c.get("image", "")) for c in containers),
        format_selector(_get(obj, "spec", "selector")),
    ]


def _deployment(obj: Obj, now: datetime.datetime) -> Row:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    desired = spec.get("replicas", 1)
    return [
        _meta(obj).get("name", ""),
        f"{_int(status.get('readyReplicas'))}/{_int(desired)}",
        _int(status.get("updatedReplicas")),
        _int(status.get("availableReplicas")),
        since(_meta(obj).get("creationTimestamp"), now),
        *_workload_wide(obj),
    ]


def _daemonset(obj: Obj, now: datetime.datetime) -> Row:
    status = obj.get("status") or {}
    return [
        _meta(obj).get("name", ""),
        _int(status.get("desiredNumberScheduled")),
        _int(status.get("currentNumberScheduled")),
        _int(status.get("numberReady")),
        _int(status.get("updatedNumberScheduled")),
        _int(status.get("numberAvailable")),
        format_labels(_get(obj, "spec", "template", "spec", "nodeSelector")),
        since(_meta(obj).get("creationTimestamp"), now),
        *_workload_wide(obj),
    ]


def _configmap(obj: Obj, now: datetime.datetime) -> Row:
    count = len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
    return [_meta(obj).get("name", ""), count, since(_meta(obj).get("creationTimestamp"), now)]


def _secret(obj: Obj, now: datetime.datetime) -> Row:
    return [
        _meta(obj).get("name", ""),
        obj.get("type", ""),
        len(obj.get("data") or {}),
        since(_meta(obj).get("creationTimestamp"), now),
    ]


def _namespace(obj: Obj, now: datetime.datetime) -> Row:
    return [
        _meta(obj).get("name", ""),
        _get(obj, "status", "phase") or "",
        since(_meta(obj).get("creationTimestamp"), now),
    ]


def _serviceaccount(obj: Obj, now: datetime.datetime) -> Row:
    return [
        _meta(obj).get("name", ""),
        len(_list(obj.get("secrets"))),
        since(_meta(obj).get("creationTimestamp"), now),
    ]


def _lease(obj: Obj, now: datetime.datetime) -> Row:
    return [
        _meta(obj).get("name", ""),
        _get(obj, "spec", "holderIdentity") or "",
        since(_meta(obj).get("creationTimestamp"), now),
    ]


def _event_fields(obj: Obj) -> Obj:
    """core/v1 and events.k8s.io/v1 Events in one shape (the real server prints both with one printer)."""
    if "regarding" in obj or "note" in obj or "deprecatedCount" in obj:
        return {
            "involvedObject": obj.get("regarding") or {},
            "message": obj.get("note", ""),
            "count": obj.get("deprecatedCount"),
            "firstTimestamp": obj.get("deprecatedFirstTimestamp"),
            "lastTimestamp": obj.get("deprecatedLastTimestamp"),
            "source": obj.get("deprecatedSource") or {},
            "reportingComponent": obj.get("reportingController", ""),
            "reportingInstance": obj.get("reportingInstance", ""),
            "eventTime": obj.get("eventTime"),
            "series": obj.get("series"),
            "type": obj.get("type", ""),
            "reason": obj.get("reason", ""),
        }
    return obj


def _event(obj: Obj, now: datetime.datetime) -> Row:
    e = _event_fields(obj)
    involved = e.get("involvedObject") or {}
    if e.get("firstTimestamp"):
        first = since(e["firstTimestamp"], now)
    elif e.get("eventTime"):
        first = since(e["eventTime"], now)
    else:
        first = "<unknown>"
    last = since(e["lastTimestamp"], now) if e.get("lastTimestamp") else first
    count = _int(e.get("count"))
    series = e.get("series")
    if isinstance(series, dict):
        last = since(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    elif count == 0:
        count = 1
    source = e.get("source") or {}
    component = source.get("component") or e.get("reportingComponent") or ""
    instance = source.get("host") or e.get("reportingInstance") or ""
    source_text = "" if not component else (f"{component}, {instance}" if instance else component)
    return [
        last,
        e.get("type", ""),
        e.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        involved.get("fieldPath", ""),
        source_text,
        e.get("message", ""),
        first,
        count,
        _meta(obj).get("name", ""),
    ]


def _created_at(obj: Obj, now: datetime.datetime) -> Row:
    created = parse_time(_meta(obj).get("creationTimestamp"))
    stamp = created.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if created else None
    return [_meta(obj).get("name", ""), stamp]


def _binding(obj: Obj, now: datetime.datetime) -> Row:
    ref = obj.get("roleRef") or {}
    users, groups, accounts = [], [], []
    for subject in _list(obj.get("subjects")):
        kind = _get(subject, "kind")
        if kind == "User":
            users.append(str(_get(subject, "name")))
        elif kind == "Group":
            groups.append(str(_get(subject, "name")))
        elif kind == "ServiceAccount":
            accounts.append(f"{_get(subject, 'namespace') or ''}/{_get(subject, 'name')}")
    return [
        _meta(obj).get("name", ""),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        since(_meta(obj).get("creationTimestamp"), now),
        ", ".join(users),
        ", ".join(groups),
        ", ".join(accounts),
    ]


def _name_age(obj: Obj, now: datetime.datetime) -> Row:
    return [_meta(obj).get("name", ""), since(_meta(obj).get("creationTimestamp"), now)]


Printer = Callable[[Obj, datetime.datetime], Row]

_WORKLOAD_WIDE = [
    column("Containers", "Names of each container in the template.", priority=1),
    column("Images", "Images referenced by each container in the template.", priority=1),
    column(
        "Selector",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will "
        "be the ones affected by this deployment.",
        priority=1,
    ),
]

_EVENT_COLUMNS = [
    column("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
    column("Type", "Type of this event (Normal, Warning), new types could be added in the future"),
    column(
        "Reason",
        "This should be a short, machine understandable string that gives the reason for the "
        "transition into the object's current status.",
    ),
    column("Object", "The object that this event is about."),
    column(
        "Subobject",
        "If referring to a piece of an object instead of an entire object, this string "
        "should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
        priority=1,
    ),
    column(
        "Source",
        "The component reporting this event. Should be a short machine understandable string.",
        priority=1,
    ),
    column("Message", "A human-readable description of the status of this operation."),
    column(
        "First Seen",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
        priority=1,
    ),
    column("Count", "The number of times this event has occurred.", priority=1),
    column("Name", NAME_DESC, priority=1, format_="name"),
]

PRINTERS: dict[tuple[str, str], tuple[list[Obj], Printer]] = {
    ("", "services"): (
        [
            NAME,
            column("Type", "type determines how the Service is exposed. Defaults to ClusterIP."),
            column(
                "Cluster-IP", "clusterIP is the IP address of the service and is usually assigned randomly."
            ),
            column(
                "External-IP",
                "externalIPs is a list of IP addresses for which nodes in the cluster will "
                "also accept traffic for this service.",
            ),
            column("Port(s)", "The list of ports that are exposed by this service."),
            AGE,
            column(
                "Selector",
                "Route service traffic to pods with label keys and values matching this selector.",
                priority=1,
            ),
        ],
        _service,
    ),
    ("", "pods"): (
        [
            NAME,
            column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
            column("Status", "The aggregate status of the containers in this pod."),
            column(
                "Restarts",
                "The number of times the containers in this pod have been restarted and when "
                "the last container in this pod has restarted.",
            ),
            AGE,
            column(
                "IP", "podIP address allocated to the pod. Routable at least within the cluster.", priority=1
            ),
            column("Node", "NodeName indicates in which node this pod is scheduled.", priority=1),
            column(
                "Nominated Node",
                "nominatedNodeName is set only when this pod preempts other pods on the node.",
                priority=1,
            ),
            column(
                "Readiness Gates",
                "If specified, all readiness gates will be evaluated for pod readiness.",
                priority=1,
            ),
        ],
        _pod,
    ),
    ("", "nodes"): (
        [
            NAME,
            column("Status", "The status of the node"),
            column("Roles", "The roles of the node"),
            AGE,
            column("Version", "Kubelet Version reported by the node."),
            column("Internal-IP", "List of addresses reachable to the node.", priority=1),
            column("External-IP", "List of addresses reachable to the node.", priority=1),
            column("OS-Image", "OS Image reported by the node from /etc/os-release.", priority=1),
            column("Kernel-Version", "Kernel Version reported by the node from 'uname -r'.", priority=1),
            column(
                "Container-Runtime",
                "ContainerRuntime Version reported by the node through runtime remote API.",
                priority=1,
            ),
        ],
        _node,
    ),
    ("", "endpoints"): (
        [NAME, column("Endpoints", "The set of all endpoints is the union of all subsets."), AGE],
        _endpoints,
    ),
    ("discovery.k8s.io", "endpointslices"): (
        [
            NAME,
            column("AddressType", "addressType specifies the type of address carried by this EndpointSlice."),
            column(
                "Ports", "ports specifies the list of network ports exposed by each endpoint in this slice."
            ),
            column("Endpoints", "endpoints is a list of unique endpoints in this slice."),
            AGE,
        ],
        _endpointslice,
    ),
    ("", "configmaps"): (
        [NAME, column("Data", "Data contains the configuration data."), AGE],
        _configmap,
    ),
    ("", "secrets"): (
        [
            NAME,
            column("Type", "Used to facilitate programmatic handling of secret data."),
            column("Data", "Data contains the secret data."),
            AGE,
        ],
        _secret,
    ),
    ("", "namespaces"): (
        [NAME, column("Status", "The status of the namespace"), AGE],
        _namespace,
    ),
    ("", "serviceaccounts"): (
        [
            NAME,
            column(
                "Secrets",
                "Secrets is a list of the secrets in the same namespace that pods running "
                "using this ServiceAccount are allowed to use.",
            ),
            AGE,
        ],
        _serviceaccount,
    ),
    ("apps", "deployments"): (
        [
            NAME,
            column("Ready", "Number of the pod with ready state"),
            column(
                "Up-to-date",
                "Total number of non-terminated pods targeted by this deployment that have "
                "the desired template spec.",
            ),
            column(
                "Available",
                "Total number of available pods (ready for at least minReadySeconds) targeted "
                "by this deployment.",
            ),
            AGE,
            *_WORKLOAD_WIDE,
        ],
        _deployment,
    ),
    ("apps", "daemonsets"): (
        [
            NAME,
            column("Desired", "The total number of nodes that should be running the daemon pod.", "integer"),
            column("Current", "The number of nodes that are running at least 1 daemon pod.", "integer"),
            column(
                "Ready",
                "The number of nodes that should be running the daemon pod and have one or more of "
                "the daemon pod running with a Ready Condition.",
                "integer",
            ),
            column("Up-to-date", "The total number of nodes that are running updated daemon pod", "integer"),
            column(
                "Available",
                "The number of nodes that should be running the daemon pod and have one or more "
                "of the daemon pod running and available.",
                "integer",
            ),
            column(
                "Node Selector", "NodeSelector is a selector which must be true for the pod to fit on a node."
            ),
            AGE,
            *_WORKLOAD_WIDE,
        ],
        _daemonset,
    ),
    ("", "events"): (_EVENT_COLUMNS, _event),
    ("events.k8s.io", "events"): (_EVENT_COLUMNS, _event),
    ("coordination.k8s.io", "leases"): (
        [
            NAME,
            column("Holder", "holderIdentity contains the identity of the holder of a current lease."),
            AGE,
        ],
        _lease,
    ),
    ("apiextensions.k8s.io", "customresourcedefinitions"): ([NAME, CREATED_AT], _created_at),
    ("rbac.authorization.k8s.io", "roles"): ([NAME, column("Created At", AGE_DESC)], _created_at),
    ("rbac.authorization.k8s.io", "clusterroles"): ([NAME, column("Created At", AGE_DESC)], _created_at),
}
_BINDING_COLUMNS = [
    NAME,
    column("Role", "Role references a role, but does not contain it."),
    AGE,
    column("Users", "Users in the binding.", priority=1),
    column("Groups", "Groups in the binding.", priority=1),
    column("ServiceAccounts", "ServiceAccounts in the binding.", priority=1),
]
PRINTERS[("rbac.authorization.k8s.io", "rolebindings")] = (_BINDING_COLUMNS, _binding)
PRINTERS[("rbac.authorization.k8s.io", "clusterrolebindings")] = (_BINDING_COLUMNS, _binding)


# ---------------------------------------------------------------------------------- custom resource columns

_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\?\(@\.([^=!]+?)\s*==\s*[\"']([^\"']*)[\"']\)\]|\[\*\]")


def eval_json_path(obj: Any, path: str) -> list[Any]:
    """A simple JSONPath (`.a.b[0]`, `.a[*].b`, `.a[?(@.type=="Ready")].status`), as printer columns use."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    values = [obj]
    pos = 0
    while pos < len(path):
        match = _SEGMENT.match(path, pos)
        if match is None:
            return []
        pos = match.end()
        field, index, filter_key, filter_value = match.groups()
        nxt: list[Any] = []
        for value in values:
            if field is not None:
                if isinstance(value, dict) and field in value:
                    nxt.append(value[field])
            elif index is not None:
                if isinstance(value, list) and int(index) < len(value):
                    nxt.append(value[int(index)])
            elif filter_key is not None:
                if isinstance(value, list):
                    nxt.extend(
                        item
                        for item in value
                        if isinstance(item, dict) and str(item.get(filter_key.strip())) == filter_value
                    )
            elif isinstance(value, list):
                nxt.extend(value)
        values = nxt
    return values


def _go_print(value: Any) -> str:
    """How kubectl's JSONPath printer renders a non-string value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _custom_cell(type_: str, value: Any, now: datetime.datetime) -> Any:
    if value is None:
        return None
    if type_ == "string":
        return value if isinstance(value, str) else _go_print(value)
    if type_ == "integer":
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if type_ == "number":
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if type_ == "boolean":
        return value if isinstance(value, bool) else None
    if type_ == "date":
        if not isinstance(value, str):
            return None
        then = parse_time(value)
        return "<invalid>" if then is None else human_duration((now - then).total_seconds())
    return value


def _custom_columns(printer_columns: list[Obj] | None) -> list[Obj]:
    if not printer_columns:
        # The real server's default for CRDs without additionalPrinterColumns.
        return [
            {
                "name": "Age",
                "type": "date",
                "jsonPath": ".metadata.creationTimestamp",
                "description": AGE_DESC,
            }
        ]
    return printer_columns


# --------------------------------------------------------------------------------------------------- tables


def is_builtin_group(group: str) -> bool:
    return group in ("", "apps", "batch", "policy", "autoscaling") or group.endswith(".k8s.io")


def _row_object(obj: Obj, include_object: str) -> Obj | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": _meta(obj)}


def to_table(
    group: str,
    resource: str,
    objects: list[Obj],
    now: datetime.datetime,
    printer_columns: list[Obj] | None = None,
    include_object: str = "Metadata",
) -> Obj:
    """A meta.k8s.io/v1 Table of `objects` (the server adds list metadata)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=datetime.UTC)
    builtin = PRINTERS.get((group, resource))
    rows: list[Obj] = []
    if builtin is not None and printer_columns is None:
        definitions, printer = builtin
        for obj in objects:
            row: Obj = {"cells": printer(obj, now)}
            if resource == "pods" and group == "":
                conditions = _pod_conditions(obj)
                if conditions:
                    row["conditions"] = conditions
            rows.append(row)
    elif printer_columns is not None or not is_builtin_group(group):
        columns = _custom_columns(printer_columns)
        definitions = [NAME] + [
            column(
                str(c.get("name", "")),
                str(c.get("description", "")),
                type_=str(c.get("type", "string")),
                priority=int(c.get("priority", 0) or 0),
                format_=str(c.get("format", "") or ""),
            )
            for c in columns
        ]
        for obj in objects:
            cells: Row = [_meta(obj).get("name", "")]
            for c in columns:
                found = eval_json_path(obj, str(c.get("jsonPath", "")))
                cells.append(_custom_cell(str(c.get("type", "string")), found[0] if found else None, now))
            rows.append({"cells": cells})
    else:
        definitions = [NAME, AGE]
        rows = [{"cells": _name_age(obj, now)} for obj in objects]
    for row, obj in zip(rows, objects, strict=True):
        embedded = _row_object(obj, include_object)
        if embedded is not None:
            row["object"] = embedded
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": [dict(d) for d in definitions],
        "rows": rows,
    }
