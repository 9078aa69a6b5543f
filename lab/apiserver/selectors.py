"""Label and field selectors, parsed as the real server parses them and matched against plain objects."""

from __future__ import annotations

import re
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
    path: tuple[str, ...]
    negate: bool
    value: str

    def matches(self, obj: dict[str, Any]) -> bool:
        current: Any = obj
        for part in self.path:
            current = current.get(part) if isinstance(current, dict) else None
        actual = "" if current is None else _field_text(current)
        return (actual != self.value) if self.negate else (actual == self.value)


def _field_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_field_selector(text: str | None) -> list[FieldRequirement]:
    """`metadata.name=x,spec.nodeName!=y` -> requirements; any dotted path of the object is accepted."""
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
        reqs.append(FieldRequirement(tuple(m.group(1).split(".")), m.group(2) == "!=", m.group(3)))
    return reqs


def fields_match(reqs: list[FieldRequirement], obj: dict[str, Any]) -> bool:
    return all(r.matches(obj) for r in reqs)
