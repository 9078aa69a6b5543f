"""Label and field selectors, parsed as the real server parses them and matched against plain objects."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.selectors import Requirement
from lab.apiserver.errors import bad_request

# The query-string operators, as Kubernetes maps them onto LabelSelectorRequirement operators.
_SET_OPERATORS = {"in": "In", "notin": "NotIn"}

_SET_RE = re.compile(r"^\s*([^\s!=(),]+)\s+(in|notin)\s*\(([^)]*)\)\s*")
_EQ_RE = re.compile(r"^\s*([^\s!=(),]+)\s*(==|=|!=)\s*([^\s,]*)\s*")
_EXISTS_RE = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s*")
_KEY_RE = re.compile(
    r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


def parse_label_selector(text: str | None) -> list[Requirement]:
    """`a=b,c!=d,e in (x,y),f notin (z),g,!h` -> requirements (all must match). Raises ApiError 400."""
    if not text or not text.strip():
        return []
    reqs: list[Requirement] = []
    rest = text
    while rest.strip():
        m = _SET_RE.match(rest)
        if m:
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            reqs.append(Requirement(_check_key(m.group(1), text), _SET_OPERATORS[m.group(2)], values))
        else:
            m = _EQ_RE.match(rest)
            if m:
                operator = "NotIn" if m.group(2) == "!=" else "In"
                reqs.append(Requirement(_check_key(m.group(1), text), operator, (m.group(3),)))
            else:
                m = _EXISTS_RE.match(rest)
                if not m:
                    raise bad_request(f"unable to parse requirement: {text!r}")
                operator = "DoesNotExist" if m.group(1) else "Exists"
                reqs.append(Requirement(_check_key(m.group(2), text), operator))
        rest = rest[m.end() :]
        if rest.strip():
            if not rest.lstrip().startswith(","):
                raise bad_request(f"unable to parse requirement: found '{rest.strip()}', expected: ','")
            rest = rest.lstrip()[1:]
            if not rest.strip():
                raise bad_request("unable to parse requirement: found '', expected: identifier")
    return reqs


def _check_key(key: str, text: str) -> str:
    if not _KEY_RE.match(key):
        raise bad_request(f"unable to parse requirement: invalid label key {key!r} in selector {text!r}")
    return key


def labels_match(reqs: list[Requirement], obj: dict[str, Any]) -> bool:
    if not reqs:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in reqs)


@dataclass(frozen=True)
class FieldRequirement:
    """One term of a field selector, bound to how its kind computes that field's value."""

    label: str
    negate: bool
    value: str
    getter: Callable[[dict[str, Any]], str] | None = None

    def matches(self, obj: dict[str, Any]) -> bool:
        getter = self.getter or _path_getter(self.label)
        actual = getter(obj)
        return (actual != self.value) if self.negate else (actual == self.value)


def _field_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _path_getter(label: str) -> Callable[[dict[str, Any]], str]:
    path = label.split(".")

    def get(obj: dict[str, Any]) -> str:
        current: Any = obj
        for part in path:
            current = current.get(part) if isinstance(current, dict) else None
        return _field_text(current)

    return get


def parse_field_selector(text: str | None) -> list[FieldRequirement]:
    """`metadata.name=x,spec.nodeName!=y` -> requirements, not yet checked against a kind."""
    if not text or not text.strip():
        return []
    reqs: list[FieldRequirement] = []
    for term in text.split(","):
        term = term.strip()
        if not term:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(==|=|!=)\s*(.*)", term)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        reqs.append(FieldRequirement(m.group(1), m.group(2) == "!=", m.group(3)))
    return reqs


def fields_match(reqs: list[FieldRequirement], obj: dict[str, Any]) -> bool:
    return all(r.matches(obj) for r in reqs)


# The labels each kind's field-label conversion function accepts (pkg/apis/core/v1/conversion.go,
# pkg/apis/apps/v1/conversion.go); every other built-in kind has DefaultMetaV1FieldSelectorConversion
# (k8s.io/apimachinery/pkg/runtime/conversion.go): metadata.name and metadata.namespace only.
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
)
FIELD_LABELS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): (
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.podIPs",
        "status.nominatedNodeName",
    ),
    ("", "nodes"): ("metadata.name", "spec.unschedulable"),
    ("", "events"): _EVENT_FIELDS,
    ("", "namespaces"): ("status.phase", "metadata.name"),
    ("", "secrets"): ("type", "metadata.namespace", "metadata.name"),
    ("", "services"): ("metadata.namespace", "metadata.name", "spec.clusterIP", "spec.type"),
    ("apps", "replicasets"): ("metadata.name", "metadata.namespace", "status.replicas"),
}
# Old clients send spec.host for pods (pkg/apis/core/v1/conversion.go).
_ALIASES = {("", "pods", "spec.host"): "spec.nodeName"}


def _pod_ip(pod: dict[str, Any]) -> str:
    ips = (pod.get("status") or {}).get("podIPs") or []
    first = ips[0] if ips and isinstance(ips[0], dict) else {}
    return _field_text(first.get("ip"))


def _bool_field(label: str) -> Callable[[dict[str, Any]], str]:
    inner = _path_getter(label)
    return lambda obj: inner(obj) or "false"


# Values the kinds' GetAttrs compute rather than read (pkg/registry/core/pod/strategy.go ToSelectableFields,
# pkg/registry/core/node/strategy.go, pkg/registry/core/event/strategy.go, pkg/registry/apps/replicaset).
_COMPUTED: dict[tuple[str, str, str], Callable[[dict[str, Any]], str]] = {
    ("", "pods", "spec.hostNetwork"): _bool_field("spec.hostNetwork"),
    ("", "pods", "status.podIP"): _pod_ip,
    ("", "pods", "status.podIPs"): lambda obj: "",
    ("", "nodes", "spec.unschedulable"): _bool_field("spec.unschedulable"),
    ("", "events", "source"): _path_getter("source.component"),
    ("apps", "replicasets", "status.replicas"): lambda obj: _path_getter("status.replicas")(obj) or "0",
}


def for_kind(
    reqs: list[FieldRequirement],
    group: str,
    plural: str,
    custom: bool = False,
    namespaced: bool = True,
    selectable: tuple[str, ...] = (),
) -> list[FieldRequirement]:
    """Check a field selector against what the kind supports (400 with the real message otherwise) and bind
    each term to how that kind computes the field."""
    out: list[FieldRequirement] = []
    for req in reqs:
        label = _ALIASES.get((group, plural, req.label), req.label)
        if custom:
            # The custom resource converter (apiextensions-apiserver pkg/apiserver/conversion).
            allowed: tuple[str, ...] = ("metadata.name", *(("metadata.namespace",) if namespaced else ()))
            if label not in allowed + selectable:
                raise bad_request(f"field label not supported: {label}")
        elif (group, plural) in FIELD_LABELS:
            if label not in FIELD_LABELS[(group, plural)]:
                raise bad_request(f"field label not supported: {label}")
        elif label not in ("metadata.name", "metadata.namespace"):
            raise bad_request(
                f'"{label}" is not a known field selector: only "metadata.name", "metadata.namespace"'
            )
        getter = _COMPUTED.get((group, plural, label)) or _path_getter(label)
        out.append(FieldRequirement(label, req.negate, req.value, getter))
    return out
