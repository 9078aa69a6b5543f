"""Admission: the defaults and validation kube-apiserver applies to built-in kinds, and Service allocation.

The server calls one entry point per write; each takes the full object and returns the object to store.
Kinds without special treatment pass through unchanged. Defaults are kept to what users of this project see
on a real cluster (`kubectl get -o yaml` of a Pod, a Deployment, a Namespace, a Service).
"""

from __future__ import annotations

import base64
import copy
import ipaddress
from collections.abc import Iterable
from typing import Any

from common.pools import IPAddress
from lab.apiserver.errors import ApiError, Cause
from lab.apiserver.services import ServiceRegistry
from lab.apiserver.validation import (
    check_dns1123_label,
    check_dns1123_subdomain,
    check_label_map,
    duplicate,
    forbidden,
    go_value,
    invalid,
    micro_time_error,
    not_supported,
    parse_ip_sloppy,
    raise_invalid,
    required,
)

Obj = dict[str, Any]

ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")
CIDR_INVALID_MSG = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


class Admission:
    def __init__(
        self,
        service_cidr: str = "10.96.0.0/12",
        node_port_range: tuple[int, int] = (30000, 32767),
        service_cidr_v6: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.services = ServiceRegistry(service_cidr, node_port_range, service_cidr_v6, seed)

    # ------------------------------------------------------------------------------------- lifecycle

    def restore(self, objects: Iterable[tuple[str, str, Obj]]) -> None:
        for group, resource, obj in objects:
            if (group, resource) == ("", "services"):
                self.services.restore(obj)

    def deleted(self, group: str, resource: str, obj: Obj) -> None:
        if (group, resource) == ("", "services"):
            self.services.release(obj)

    def abort_create(self, group: str, resource: str, obj: Obj) -> None:
        self.deleted(group, resource, obj)

    # ----------------------------------------------------------------------------------------- writes

    def create(self, group: str, resource: str, obj: Obj, dry_run: bool) -> Obj:
        key = (group, resource)
        if key == ("", "services"):
            return self.services.create(obj, dry_run)
        handler = _CREATE.get(key)
        if handler is None:
            return obj
        out = copy.deepcopy(obj)
        handler(out, None)
        return out

    def update(self, group: str, resource: str, old: Obj, new: Obj, dry_run: bool) -> Obj:
        key = (group, resource)
        if key == ("", "services"):
            return self.services.update(old, new, dry_run)
        handler = _CREATE.get(key)
        if handler is None:
            return new
        out = copy.deepcopy(new)
        handler(out, old)
        return out

    def update_status(self, group: str, resource: str, old: Obj, new: Obj, dry_run: bool) -> Obj:
        if (group, resource) == ("", "services"):
            return self.services.update_status(old, new, dry_run)
        return new


# ------------------------------------------------------------------------------------------ per kind


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _spec(obj: Obj) -> dict[str, Any]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    return spec


def default_pod_spec(spec: dict[str, Any]) -> None:
    """The PodSpec defaults (pkg/apis/core/v1/defaults.go) a user sees in `kubectl get -o yaml`."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            if isinstance(container, dict):
                _default_container(container)


def _default_container(container: dict[str, Any]) -> None:
    image = container.get("image")
    if "imagePullPolicy" not in container and isinstance(image, str):
        # Images without a tag or with :latest are pulled every time; tagged ones only when missing.
        last = image.rsplit("/", 1)[-1]
        tag = last.split("@", 1)[0].partition(":")[2]
        container["imagePullPolicy"] = (
            "Always" if "@" not in last and tag in ("", "latest") else "IfNotPresent"
        )
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def _validate_pod_spec(path: str, spec: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    containers = spec.get("containers")
    if not containers:
        causes.append(required(f"{path}.containers"))
        return causes
    names: set[str] = set()
    for field in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(field) or []):
            cpath = f"{path}.{field}[{i}]"
            if not isinstance(container, dict):
                causes.append(invalid(cpath, container, "must be an object"))
                continue
            name = container.get("name")
            if not name:
                causes.append(required(f"{cpath}.name"))
            elif name in names:
                causes.append(duplicate(f"{cpath}.name", name))
            else:
                names.add(name)
            if not container.get("image"):
                causes.append(required(f"{cpath}.image"))
            for j, port in enumerate(container.get("ports") or []):
                number = port.get("containerPort") if isinstance(port, dict) else None
                if not isinstance(number, int) or not 1 <= number <= 65535:
                    causes.append(
                        invalid(
                            f"{cpath}.ports[{j}].containerPort",
                            number,
                            "must be between 1 and 65535, inclusive",
                        )
                    )
    policy = spec.get("restartPolicy")
    if policy not in ("Always", "OnFailure", "Never"):
        causes.append(not_supported(f"{path}.restartPolicy", policy, ("Always", "Never", "OnFailure")))
    return causes


SERVICE_ACCOUNT_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def mount_service_account_token(spec: dict[str, Any], suffix: str) -> None:
    """What the ServiceAccount admission plugin adds to a new pod whose token is automounted
    (plugin/pkg/admission/serviceaccount/admission.go, mountServiceAccountToken and TokenVolumeSource):
    a projected `kube-api-access-<suffix>` volume, mounted read-only at the token path in every container
    that has nothing mounted there yet."""
    volumes = spec.get("volumes")
    if not isinstance(volumes, list):
        volumes = []
    names = [str(v.get("name", "")) for v in volumes if isinstance(v, dict)]
    existing = next((n for n in names if n.startswith("kube-api-access-")), None)
    volume_name = existing or f"kube-api-access-{suffix}"
    needs_volume = False
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            if not isinstance(container, dict):
                continue
            mounts = container.get("volumeMounts")
            if not isinstance(mounts, list):
                mounts = container["volumeMounts"] = []
            if any(isinstance(m, dict) and m.get("mountPath") == SERVICE_ACCOUNT_TOKEN_PATH for m in mounts):
                continue
            mounts.append({"name": volume_name, "readOnly": True, "mountPath": SERVICE_ACCOUNT_TOKEN_PATH})
            needs_volume = True
    if existing is None and needs_volume:
        volumes.append(
            {
                "name": volume_name,
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {
                            "configMap": {
                                "name": "kube-root-ca.crt",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            }
                        },
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                    }
                                ]
                            }
                        },
                    ],
                },
            }
        )
        spec["volumes"] = volumes


def _pod(obj: Obj, old: Obj | None) -> None:
    spec = _spec(obj)
    default_pod_spec(spec)
    if old is None:
        status = obj.get("status")
        if not isinstance(status, dict):
            status = obj["status"] = {}
        status.setdefault("phase", "Pending")
    causes = _validate_pod_spec("spec", spec)
    raise_invalid("Pod", "", _name(obj), causes)


def _selector_matches(selector: Any, labels: dict[str, Any]) -> bool:
    if not isinstance(selector, dict):
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        if not isinstance(expr, dict):
            return False
        key, op, values = str(expr.get("key")), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _validate_workload(kind: str, obj: Obj, old: Obj | None) -> list[Cause]:
    spec = _spec(obj)
    causes: list[Cause] = []
    selector = spec.get("selector")
    template = spec.get("template")
    if not isinstance(selector, dict) or not (
        selector.get("matchLabels") or selector.get("matchExpressions")
    ):
        causes.append(required("spec.selector"))
    if not isinstance(template, dict):
        causes.append(required("spec.template"))
        return causes
    labels = (template.get("metadata") or {}).get("labels") or {}
    causes += check_label_map("spec.template.metadata.labels", labels)
    if isinstance(selector, dict) and not causes and not _selector_matches(selector, labels):
        causes.append(
            Cause(
                "spec.template.metadata.labels",
                f"Invalid value: {_go_map(labels)}: `selector` does not match template `labels`",
            )
        )
    if old is not None and (old.get("spec") or {}).get("selector") not in (None, selector):
        causes.append(Cause("spec.selector", f"Invalid value: {_go_selector(selector)}: field is immutable"))
    pod_spec = template.get("spec")
    if isinstance(pod_spec, dict):
        causes += _validate_pod_spec("spec.template.spec", pod_spec)
    else:
        causes.append(required("spec.template.spec.containers"))
    return causes


def _go_map(labels: dict[str, Any]) -> str:
    return "map[string]string{" + ", ".join(f"{go_value(k)}:{go_value(v)}" for k, v in labels.items()) + "}"


def _go_selector(selector: Any) -> str:
    if not isinstance(selector, dict):
        return go_value(selector)
    return "v1.LabelSelector{MatchLabels:" + _go_map(selector.get("matchLabels") or {}) + "}"


def _default_template(spec: dict[str, Any]) -> None:
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"])
        template.setdefault("metadata", {}).setdefault("creationTimestamp", None)


def _deployment(obj: Obj, old: Obj | None) -> None:
    spec = _spec(obj)
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    if isinstance(strategy, dict):
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            if isinstance(rolling, dict):
                rolling.setdefault("maxUnavailable", "25%")
                rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _default_template(spec)
    causes = _validate_workload("Deployment", obj, old)
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        causes.append(invalid("spec.replicas", replicas, "must be greater than or equal to 0"))
    strategy_type = spec["strategy"].get("type") if isinstance(spec["strategy"], dict) else None
    if strategy_type not in ("RollingUpdate", "Recreate"):
        causes.append(not_supported("spec.strategy.type", strategy_type, ("Recreate", "RollingUpdate")))
    raise_invalid("Deployment", "apps", _name(obj), causes)


def _daemonset(obj: Obj, old: Obj | None) -> None:
    spec = _spec(obj)
    strategy = spec.setdefault("updateStrategy", {})
    if isinstance(strategy, dict):
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            if isinstance(rolling, dict):
                rolling.setdefault("maxUnavailable", 1)
                rolling.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _default_template(spec)
    raise_invalid("DaemonSet", "apps", _name(obj), _validate_workload("DaemonSet", obj, old))


def _namespace(obj: Obj, old: Obj | None) -> None:
    meta = obj.setdefault("metadata", {})
    name = _name(obj)
    labels = meta.get("labels")
    if not isinstance(labels, dict):
        labels = meta["labels"] = {}
    # The real server enforces this label on every write.
    labels["kubernetes.io/metadata.name"] = name
    spec = _spec(obj)
    if old is None:
        spec.setdefault("finalizers", ["kubernetes"])
        status = obj.get("status")
        if not isinstance(status, dict):
            status = obj["status"] = {}
        status.setdefault("phase", "Active")


def _secret(obj: Obj, old: Obj | None) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        data = obj.get("data")
        if not isinstance(data, dict):
            data = obj["data"] = {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
    if old is not None and old.get("type") != obj.get("type"):
        raise_invalid(
            "Secret",
            "",
            _name(obj),
            [Cause("type", f"Invalid value: {go_value(obj.get('type'))}: field is immutable")],
        )


def _endpointslice(obj: Obj, old: Obj | None) -> None:
    """SetDefaults_EndpointPort (pkg/apis/discovery/v1/defaults.go) and ValidateEndpointSlice
    (pkg/apis/discovery/validation/validation.go), causes in the real order."""
    causes: list[Cause] = []
    address_type = obj.get("addressType")
    if not address_type:
        causes.append(required("addressType"))
    elif address_type not in ADDRESS_TYPES:
        causes.append(not_supported("addressType", address_type, ADDRESS_TYPES))
    endpoints = obj.get("endpoints")
    if endpoints is None:
        obj["endpoints"] = endpoints = []
    for i, endpoint in enumerate(endpoints if isinstance(endpoints, list) else []):
        path = f"endpoints[{i}]"
        if not isinstance(endpoint, dict):
            causes.append(invalid(path, endpoint, "must be an object"))
            continue
        # EndpointConditions is a struct, not a pointer: it is always serialized.
        if not isinstance(endpoint.get("conditions"), dict):
            endpoint["conditions"] = {}
        addresses = endpoint.get("addresses")
        if not addresses:
            causes.append(required(f"{path}.addresses", "must contain at least 1 address"))
        for j, address in enumerate(addresses if isinstance(addresses, list) else []):
            causes += _endpoint_address(f"{path}.addresses[{j}]", address_type, address)
        node_name = endpoint.get("nodeName")
        if node_name is not None:
            causes += check_dns1123_subdomain(f"{path}.nodeName", str(node_name))
        hostname = endpoint.get("hostname")
        if hostname is not None:
            causes += check_dns1123_label(f"{path}.hostname", str(hostname))
    names: set[str] = set()
    for i, port in enumerate(obj.get("ports") or []):
        if not isinstance(port, dict):
            continue
        port.setdefault("name", "")
        port.setdefault("protocol", "TCP")
        name = str(port["name"])
        if name:
            causes += check_dns1123_label(f"ports[{i}].name", name)
        if name in names:
            causes.append(duplicate(f"ports[{i}].name", name))
        names.add(name)
        if port["protocol"] not in ("TCP", "UDP", "SCTP"):
            causes.append(not_supported(f"ports[{i}].protocol", port["protocol"], ("SCTP", "TCP", "UDP")))
        # The port number itself is not validated: 0 (and a missing port) are accepted.
    if old is not None and address_type and old.get("addressType") != address_type:
        causes.append(Cause("addressType", f"Invalid value: {go_value(address_type)}: field is immutable"))
    raise_invalid("EndpointSlice", "discovery.k8s.io", _name(obj), causes)


def _endpoint_address(path: str, address_type: Any, address: Any) -> list[Cause]:
    """IsValidIPv4Address / IsValidIPv6Address, then ValidateEndpointIP (pkg/apis/core/validation)."""
    if address_type not in ("IPv4", "IPv6"):
        return []
    ip, _ = parse_ip_sloppy(address)
    v4 = ip is not None and (ip.version == 4 or getattr(ip, "ipv4_mapped", None) is not None)
    causes: list[Cause] = []
    if address_type == "IPv4" and not v4:
        causes.append(invalid(path, address, "must be a valid IPv4 address"))
    if address_type == "IPv6" and (ip is None or v4):
        causes.append(invalid(path, address, "must be a valid IPv6 address"))
    if ip is None:
        return [*causes, invalid(path, address, "must be a valid IP address")]
    if ip.is_unspecified:
        causes.append(invalid(path, address, f"may not be unspecified ({address})"))
    if ip.is_loopback:
        causes.append(invalid(path, address, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if ip.is_link_local:
        causes.append(
            invalid(path, address, "may not be in the link-local range (169.254.0.0/16, fe80::/10)")
        )
    if _link_local_multicast(ip):
        causes.append(
            invalid(path, address, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
        )
    return causes


def _link_local_multicast(ip: IPAddress) -> bool:
    # Go's IP.IsLinkLocalMulticast: 224.0.0.0/24 and ff02::/16.
    if ip.version == 4:
        return ip in ipaddress.ip_network("224.0.0.0/24")
    return ip in ipaddress.ip_network("ff02::/16")


def _endpoints(obj: Obj, old: Obj | None) -> None:
    for subset in obj.get("subsets") or []:
        if isinstance(subset, dict):
            for port in subset.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")


def _node(obj: Obj, old: Obj | None) -> None:
    """v1 NodeSpec conversion (pkg/apis/core/v1/conversion.go): podCIDRs is the primary field, podCIDR its
    first entry, and a node that only sets podCIDR gets podCIDRs = [podCIDR]. ValidateNode/ValidateNodeUpdate
    (pkg/apis/core/validation/validation.go): valid CIDRs, one per family, and no change once set."""
    spec = _spec(obj)
    cidrs = spec.get("podCIDRs")
    if not cidrs and spec.get("podCIDR"):
        cidrs = spec["podCIDRs"] = [spec["podCIDR"]]
    if not cidrs:
        spec.pop("podCIDRs", None)
        return
    if isinstance(cidrs, list) and cidrs:
        spec["podCIDR"] = cidrs[0]
    causes: list[Cause] = []
    families: set[int] = set()
    for i, cidr in enumerate(cidrs if isinstance(cidrs, list) else []):
        path = f"spec.podCIDRs[{i}]"
        try:
            network = ipaddress.ip_network(str(cidr), strict=True)
        except ValueError:
            causes.append(invalid(path, cidr, CIDR_INVALID_MSG))
            continue
        families.add(network.version)
    if isinstance(cidrs, list) and len(cidrs) > 2:
        causes.append(invalid("spec.podCIDRs", cidrs, "may specify no more than two CIDRs"))
    elif isinstance(cidrs, list) and len(cidrs) == 2 and not causes and len(families) != 2:
        causes.append(invalid("spec.podCIDRs", cidrs, "may specify no more than one CIDR for each IP family"))
    old_cidrs = ((old or {}).get("spec") or {}).get("podCIDRs") or []
    if old_cidrs and old_cidrs != cidrs:
        message = 'node updates may not change podCIDR except from "" to valid'
        causes.append(forbidden("spec.podCIDRs", message))
    raise_invalid("Node", "", _name(obj), causes)


def _lease(obj: Obj, old: Obj | None) -> None:
    """A Lease's MicroTimes must decode (400, as the real JSON decoder answers) and ValidateLeaseSpec
    (pkg/apis/coordination/validation/validation.go) holds."""
    spec = obj.get("spec") or {}
    for field in ("acquireTime", "renewTime"):
        value = spec.get(field)
        problem = micro_time_error(value) if isinstance(value, str) else None
        if problem is not None:
            message = f'Lease in version "v1" cannot be handled as a Lease: {problem}'
            raise ApiError(400, "BadRequest", message)
    causes: list[Cause] = []
    duration = spec.get("leaseDurationSeconds")
    if isinstance(duration, int) and duration <= 0:
        causes.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if isinstance(transitions, int) and transitions < 0:
        causes.append(invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0"))
    raise_invalid("Lease", "coordination.k8s.io", _name(obj), causes)


_CREATE = {
    ("", "pods"): _pod,
    ("apps", "deployments"): _deployment,
    ("apps", "daemonsets"): _daemonset,
    ("", "namespaces"): _namespace,
    ("", "secrets"): _secret,
    ("", "endpoints"): _endpoints,
    ("discovery.k8s.io", "endpointslices"): _endpointslice,
    ("coordination.k8s.io", "leases"): _lease,
    ("", "nodes"): _node,
}
