"""Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into JSON objects.

kubectl's typed commands (`kubectl create service|deployment|configmap|secret|namespace|...`) send their body
as protobuf and do not fall back to JSON on 415, so the server must read it. The wire format is the
`k8s\\x00` magic followed by a runtime.Unknown envelope whose `raw` field holds the object. Field numbers
below are those of the Kubernetes API's protobuf schema for the kinds kubectl builds; fields not listed are
dropped (and named in the error log) instead of guessed.
"""

from __future__ import annotations

import base64
import datetime
import logging
from typing import Any

from lab.apiserver.errors import ApiError

log = logging.getLogger("ironlb.apiserver.protobuf")

MAGIC = b"k8s\x00"

# Field spec: (json name, type, repeated). Types: "string", "int", "bool", "bytes", "time", "map" (string ->
# string), "bmap" (string -> bytes as base64), "qmap" (string -> Quantity), "intstr", "quantity", or a message
# name from MESSAGES. A json name starting with "*" inlines the message's fields into the parent.
Field = tuple[str, str, bool]

MESSAGES: dict[str, dict[int, Field]] = {
    "ObjectMeta": {
        1: ("name", "string", False),
        2: ("generateName", "string", False),
        3: ("namespace", "string", False),
        4: ("selfLink", "ignored", False),
        17: ("managedFields", "ignored", True),
        5: ("uid", "string", False),
        6: ("resourceVersion", "string", False),
        7: ("generation", "int", False),
        8: ("creationTimestamp", "time", False),
        9: ("deletionTimestamp", "time", False),
        10: ("deletionGracePeriodSeconds", "int", False),
        11: ("labels", "map", False),
        12: ("annotations", "map", False),
        13: ("ownerReferences", "OwnerReference", True),
        14: ("finalizers", "string", True),
    },
    "OwnerReference": {
        1: ("kind", "string", False),
        3: ("name", "string", False),
        4: ("uid", "string", False),
        5: ("apiVersion", "string", False),
        6: ("controller", "bool", False),
        7: ("blockOwnerDeletion", "bool", False),
    },
    "LabelSelector": {
        1: ("matchLabels", "map", False),
        2: ("matchExpressions", "LabelSelectorRequirement", True),
    },
    "LabelSelectorRequirement": {
        1: ("key", "string", False),
        2: ("operator", "string", False),
        3: ("values", "string", True),
    },
    # core/v1
    "Service": {
        3: ("status", "ignored", False),
        1: ("metadata", "ObjectMeta", False),
        2: ("spec", "ServiceSpec", False),
    },
    "ServiceSpec": {
        1: ("ports", "ServicePort", True),
        2: ("selector", "map", False),
        3: ("clusterIP", "string", False),
        4: ("type", "string", False),
        5: ("externalIPs", "string", True),
        7: ("sessionAffinity", "string", False),
        8: ("loadBalancerIP", "string", False),
        9: ("loadBalancerSourceRanges", "string", True),
        10: ("externalName", "string", False),
        11: ("externalTrafficPolicy", "string", False),
        12: ("healthCheckNodePort", "int", False),
        13: ("publishNotReadyAddresses", "bool", False),
        14: ("sessionAffinityConfig", "SessionAffinityConfig", False),
        17: ("ipFamilyPolicy", "string", False),
        18: ("clusterIPs", "string", True),
        19: ("ipFamilies", "string", True),
        20: ("allocateLoadBalancerNodePorts", "bool", False),
        21: ("loadBalancerClass", "string", False),
        22: ("internalTrafficPolicy", "string", False),
        23: ("trafficDistribution", "string", False),
    },
    "ServicePort": {
        1: ("name", "string", False),
        2: ("protocol", "string", False),
        3: ("port", "int", False),
        4: ("targetPort", "intstr", False),
        5: ("nodePort", "int", False),
        6: ("appProtocol", "string", False),
    },
    "SessionAffinityConfig": {1: ("clientIP", "ClientIPConfig", False)},
    "ClientIPConfig": {1: ("timeoutSeconds", "int", False)},
    "ConfigMap": {
        1: ("metadata", "ObjectMeta", False),
        2: ("data", "map", False),
        3: ("binaryData", "bmap", False),
        4: ("immutable", "bool", False),
    },
    "Secret": {
        1: ("metadata", "ObjectMeta", False),
        2: ("data", "bmap", False),
        3: ("type", "string", False),
        4: ("stringData", "map", False),
        5: ("immutable", "bool", False),
    },
    "Namespace": {
        3: ("status", "ignored", False),
        1: ("metadata", "ObjectMeta", False),
        2: ("spec", "NamespaceSpec", False),
    },
    "NamespaceSpec": {1: ("finalizers", "string", True)},
    "ServiceAccount": {
        1: ("metadata", "ObjectMeta", False),
        2: ("secrets", "ObjectReference", True),
        3: ("imagePullSecrets", "LocalObjectReference", True),
        4: ("automountServiceAccountToken", "bool", False),
    },
    "ObjectReference": {
        1: ("kind", "string", False),
        2: ("namespace", "string", False),
        3: ("name", "string", False),
        4: ("uid", "string", False),
        5: ("apiVersion", "string", False),
        6: ("resourceVersion", "string", False),
        7: ("fieldPath", "string", False),
    },
    "LocalObjectReference": {1: ("name", "string", False)},
    "Pod": {
        3: ("status", "ignored", False),
        1: ("metadata", "ObjectMeta", False),
        2: ("spec", "PodSpec", False),
    },
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "PodSpec", False)},
    "PodSpec": {
        1: ("volumes", "Volume", True),
        2: ("containers", "Container", True),
        3: ("restartPolicy", "string", False),
        4: ("terminationGracePeriodSeconds", "int", False),
        5: ("activeDeadlineSeconds", "int", False),
        6: ("dnsPolicy", "string", False),
        7: ("nodeSelector", "map", False),
        8: ("serviceAccountName", "string", False),
        9: ("serviceAccount", "string", False),
        10: ("nodeName", "string", False),
        11: ("hostNetwork", "bool", False),
        12: ("hostPID", "bool", False),
        13: ("hostIPC", "bool", False),
        15: ("imagePullSecrets", "LocalObjectReference", True),
        16: ("hostname", "string", False),
        17: ("subdomain", "string", False),
        19: ("schedulerName", "string", False),
        20: ("initContainers", "Container", True),
        21: ("automountServiceAccountToken", "bool", False),
        22: ("tolerations", "Toleration", True),
        24: ("priorityClassName", "string", False),
        25: ("priority", "int", False),
        30: ("enableServiceLinks", "bool", False),
    },
    "Container": {
        1: ("name", "string", False),
        2: ("image", "string", False),
        3: ("command", "string", True),
        4: ("args", "string", True),
        5: ("workingDir", "string", False),
        6: ("ports", "ContainerPort", True),
        7: ("env", "EnvVar", True),
        8: ("resources", "ResourceRequirements", False),
        9: ("volumeMounts", "VolumeMount", True),
        13: ("terminationMessagePath", "string", False),
        14: ("imagePullPolicy", "string", False),
        16: ("stdin", "bool", False),
        17: ("stdinOnce", "bool", False),
        18: ("tty", "bool", False),
        20: ("terminationMessagePolicy", "string", False),
    },
    "ContainerPort": {
        1: ("name", "string", False),
        2: ("hostPort", "int", False),
        3: ("containerPort", "int", False),
        4: ("protocol", "string", False),
        5: ("hostIP", "string", False),
    },
    "EnvVar": {1: ("name", "string", False), 2: ("value", "string", False)},
    "ResourceRequirements": {1: ("limits", "qmap", False), 2: ("requests", "qmap", False)},
    "VolumeMount": {
        1: ("name", "string", False),
        2: ("readOnly", "bool", False),
        3: ("mountPath", "string", False),
        4: ("subPath", "string", False),
    },
    "Volume": {1: ("name", "string", False), 2: ("*volumeSource", "VolumeSource", False)},
    "VolumeSource": {
        1: ("hostPath", "HostPathVolumeSource", False),
        2: ("emptyDir", "EmptyDirVolumeSource", False),
        6: ("secret", "SecretVolumeSource", False),
        19: ("configMap", "ConfigMapVolumeSource", False),
    },
    "HostPathVolumeSource": {1: ("path", "string", False), 2: ("type", "string", False)},
    "EmptyDirVolumeSource": {1: ("medium", "string", False), 2: ("sizeLimit", "quantity", False)},
    "SecretVolumeSource": {
        1: ("secretName", "string", False),
        3: ("defaultMode", "int", False),
        4: ("optional", "bool", False),
    },
    "ConfigMapVolumeSource": {
        1: ("*localObjectReference", "LocalObjectReference", False),
        3: ("defaultMode", "int", False),
        4: ("optional", "bool", False),
    },
    "Toleration": {
        1: ("key", "string", False),
        2: ("operator", "string", False),
        3: ("value", "string", False),
        4: ("effect", "string", False),
        5: ("tolerationSeconds", "int", False),
    },
    # apps/v1
    "Deployment": {
        3: ("status", "ignored", False),
        1: ("metadata", "ObjectMeta", False),
        2: ("spec", "DeploymentSpec", False),
    },
    "DeploymentSpec": {
        1: ("replicas", "int", False),
        2: ("selector", "LabelSelector", False),
        3: ("template", "PodTemplateSpec", False),
        4: ("strategy", "DeploymentStrategy", False),
        5: ("minReadySeconds", "int", False),
        6: ("revisionHistoryLimit", "int", False),
        7: ("paused", "bool", False),
        9: ("progressDeadlineSeconds", "int", False),
    },
    "DeploymentStrategy": {
        1: ("type", "string", False),
        2: ("rollingUpdate", "RollingUpdateDeployment", False),
    },
    "RollingUpdateDeployment": {1: ("maxUnavailable", "intstr", False), 2: ("maxSurge", "intstr", False)},
    # rbac.authorization.k8s.io/v1
    "Role": {1: ("metadata", "ObjectMeta", False), 2: ("rules", "PolicyRule", True)},
    "ClusterRole": {
        1: ("metadata", "ObjectMeta", False),
        2: ("rules", "PolicyRule", True),
        3: ("aggregationRule", "AggregationRule", False),
    },
    "AggregationRule": {1: ("clusterRoleSelectors", "LabelSelector", True)},
    "PolicyRule": {
        1: ("verbs", "string", True),
        2: ("apiGroups", "string", True),
        3: ("resources", "string", True),
        4: ("resourceNames", "string", True),
        5: ("nonResourceURLs", "string", True),
    },
    "RoleBinding": {
        1: ("metadata", "ObjectMeta", False),
        2: ("subjects", "Subject", True),
        3: ("roleRef", "RoleRef", False),
    },
    "ClusterRoleBinding": {
        1: ("metadata", "ObjectMeta", False),
        2: ("subjects", "Subject", True),
        3: ("roleRef", "RoleRef", False),
    },
    "Subject": {
        1: ("kind", "string", False),
        2: ("apiGroup", "string", False),
        3: ("name", "string", False),
        4: ("namespace", "string", False),
    },
    "RoleRef": {1: ("apiGroup", "string", False), 2: ("kind", "string", False), 3: ("name", "string", False)},
}

TOP_LEVEL = {
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Namespace"),
    ("v1", "ServiceAccount"),
    ("v1", "Pod"),
    ("apps/v1", "Deployment"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
}

# The encoder writes every non-pointer field, zero or not, so zero values read as "unset" (JSON omitempty)
# except for pointer fields, which are written only when set: their zero is meaningful.
KEEP_EMPTY = {"emptyDir"}
KEEP_ZERO = {
    "allocateLoadBalancerNodePorts",
    "automountServiceAccountToken",
    "immutable",
    "enableServiceLinks",
    "optional",
    "controller",
    "blockOwnerDeletion",
    "replicas",
    "revisionHistoryLimit",
    "progressDeadlineSeconds",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "defaultMode",
    "timeoutSeconds",
    "priority",
    "deletionGracePeriodSeconds",
    "tolerationSeconds",
}


def _unsupported(message: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", message)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise _unsupported("truncated protobuf varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise _unsupported("malformed protobuf varint")


def fields(data: bytes) -> list[tuple[int, int, Any]]:
    """Raw (field number, wire type, value) triples; length-delimited values stay bytes."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value = data[pos : pos + length]
            if len(value) != length:
                raise _unsupported("truncated protobuf field")
            pos += length
        elif wire == 1:
            value = int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        elif wire == 5:
            value = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        else:
            raise _unsupported(f"unsupported protobuf wire type {wire}")
        out.append((number, wire, value))
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _time(data: bytes) -> str | None:
    seconds = 0
    for number, _, value in fields(data):
        if number == 1:
            seconds = _signed(value)
    if seconds == 0:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _intstr(data: bytes) -> int | str:
    kind, int_val, str_val = 0, 0, ""
    for number, _, value in fields(data):
        if number == 1:
            kind = value
        elif number == 2:
            int_val = _signed(value)
        elif number == 3:
            str_val = value.decode()
    return str_val if kind == 1 else int_val


def _quantity(data: bytes) -> str:
    for number, _, value in fields(data):
        if number == 1:
            return str(value.decode())
    return "0"


def _map_entry(data: bytes) -> tuple[str, bytes]:
    key, value = "", b""
    for number, _, raw in fields(data):
        if number == 1:
            key = raw.decode()
        elif number == 2:
            value = raw
    return key, value


def decode_message(name: str, data: bytes, path: str = "") -> dict[str, Any]:
    spec = MESSAGES[name]
    out: dict[str, Any] = {}
    for number, _, raw in fields(data):
        field_spec = spec.get(number)
        if field_spec is None:
            log.warning("event=protobuf_field_dropped message=%s field=%d path=%s", name, number, path or ".")
            continue
        json_name, ftype, repeated = field_spec
        value = _decode_value(ftype, raw, f"{path}.{json_name}")
        if json_name.startswith("*"):
            if isinstance(value, dict):
                out.update(value)
            continue
        if ftype in ("map", "bmap", "qmap"):
            key, mapped = value
            out.setdefault(json_name, {})[key] = mapped
        elif repeated:
            out.setdefault(json_name, []).append(value)
        elif (
            value is None
            or (isinstance(value, dict) and not value and json_name not in KEEP_EMPTY)
            or (value in ("", 0, False) and not isinstance(value, dict) and json_name not in KEEP_ZERO)
        ):
            continue
        else:
            out[json_name] = value
    return out


def _decode_value(ftype: str, raw: Any, path: str) -> Any:
    if ftype == "ignored":  # server-owned parts (status) a client cannot set on create
        return None
    if ftype == "string":
        return raw.decode()
    if ftype == "int":
        return _signed(raw)
    if ftype == "bool":
        return bool(raw)
    if ftype == "bytes":
        return base64.b64encode(raw).decode()
    if ftype == "time":
        return _time(raw)
    if ftype == "intstr":
        return _intstr(raw)
    if ftype == "quantity":
        return _quantity(raw)
    if ftype == "map":
        key, value = _map_entry(raw)
        return key, value.decode()
    if ftype == "bmap":
        key, value = _map_entry(raw)
        return key, base64.b64encode(value).decode()
    if ftype == "qmap":
        key, value = _map_entry(raw)
        return key, _quantity(value)
    return decode_message(ftype, raw, path)


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf-encoded Kubernetes object -> its JSON form (apiVersion and kind included)."""
    if not body.startswith(MAGIC):
        raise _unsupported("protobuf body without the k8s magic prefix")
    api_version, kind, raw = "", "", b""
    for number, _, value in fields(body[len(MAGIC) :]):
        if number == 1:
            for tnum, _, tval in fields(value):
                if tnum == 1:
                    api_version = tval.decode()
                elif tnum == 2:
                    kind = tval.decode()
        elif number == 2:
            raw = value
    if (api_version, kind) not in TOP_LEVEL:
        raise _unsupported(
            f"protobuf encoding of {api_version}/{kind} is not supported by this server; send JSON"
        )
    obj = decode_message(kind, raw)
    return {"apiVersion": api_version, "kind": kind, **obj}
