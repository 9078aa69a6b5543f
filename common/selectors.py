"""Kubernetes label selectors (metav1.LabelSelector): parsing with field-precise errors, and matching."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.errors import ConfigError, preview, shorten, type_name

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")

_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # one of OPERATORS
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        # NotIn: a missing key is "not in" the set, as in Kubernetes.
        return self.key not in labels or labels[self.key] not in self.values


@dataclass(frozen=True)
class LabelSelector:
    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """An empty selector matches everything (metav1.LabelSelectorAsSelector semantics)."""
        if any(labels.get(key) != value for key, value in self.match_labels):
            return False
        return all(requirement.matches(labels) for requirement in self.match_expressions)


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid label key (qualified name), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"invalid label key {preview(key)}: prefix must be a DNS subdomain"
    if not name or len(name) > 63 or not _NAME.match(name):
        return (
            f"invalid label key {preview(key)}: name must be 1-63 characters of alphanumerics, '-', '_' or "
            "'.', starting and ending with an alphanumeric"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a valid label value, or None (the empty value is valid)."""
    if value == "":
        return None
    if len(value) > 63 or not _NAME.match(value):
        return (
            f"invalid label value {preview(value)}: must be at most 63 characters of alphanumerics, '-', '_' "
            "or '.', starting and ending with an alphanumeric"
        )
    return None


def _parse_requirement(obj: Any, field: str) -> Requirement:
    if not isinstance(obj, Mapping):
        raise ConfigError(field, f"must be a mapping, got {type_name(obj)}")
    for name in obj:
        if name not in ("key", "operator", "values"):
            raise ConfigError(f"{field}.{shorten(str(name))}", f"unknown field {preview(name)}")
    key = obj.get("key")
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{field}.key", "must be a non-empty string")
    if (problem := label_key_problem(key)) is not None:
        raise ConfigError(f"{field}.key", problem)
    operator = obj.get("operator")
    if operator not in OPERATORS:
        problem = f"unknown operator {preview(operator)}: must be one of {', '.join(OPERATORS)}"
        raise ConfigError(f"{field}.operator", problem)
    raw_values = obj.get("values")
    if raw_values is None:
        raw_values = []
    if not isinstance(raw_values, list):
        raise ConfigError(f"{field}.values", f"must be a list of strings, got {type_name(raw_values)}")
    values: list[str] = []
    for index, value in enumerate(raw_values):
        if not isinstance(value, str):
            raise ConfigError(f"{field}.values[{index}]", f"must be a string, got {type_name(value)}")
        if (problem := label_value_problem(value)) is not None:
            raise ConfigError(f"{field}.values[{index}]", problem)
        values.append(value)
    if operator in ("In", "NotIn") and not values:
        raise ConfigError(f"{field}.values", f"must be non-empty for operator {operator}")
    if operator in ("Exists", "DoesNotExist") and values:
        raise ConfigError(f"{field}.values", f"must be empty for operator {operator}")
    return Requirement(key=key, operator=operator, values=tuple(values))


def parse_label_selector(obj: Any, field: str) -> LabelSelector:
    """Parse a metav1.LabelSelector; ``field`` is its path, used in errors. ``None`` is the empty selector.

    Unknown keys are rejected: a typo such as ``matchLabel`` would otherwise silently select everything.
    """
    if obj is None:
        return LabelSelector()
    if not isinstance(obj, Mapping):
        raise ConfigError(field, f"must be a label selector mapping, got {type_name(obj)}")
    for name in obj:
        if name not in ("matchLabels", "matchExpressions"):
            raise ConfigError(
                f"{field}.{shorten(str(name))}",
                f"unknown field {preview(name)} (expected matchLabels, matchExpressions)",
            )
    raw_labels = obj.get("matchLabels")
    if raw_labels is None:
        raw_labels = {}
    if not isinstance(raw_labels, Mapping):
        raise ConfigError(f"{field}.matchLabels", f"must be a mapping, got {type_name(raw_labels)}")
    labels: list[tuple[str, str]] = []
    for key, value in raw_labels.items():
        if not isinstance(key, str) or (problem := label_key_problem(key)) is not None:
            problem = label_key_problem(str(key)) or f"invalid key {preview(key)}"
            raise ConfigError(f"{field}.matchLabels", problem)
        if not isinstance(value, str):
            raise ConfigError(f"{field}.matchLabels[{key}]", f"must be a string, got {type_name(value)}")
        if (problem := label_value_problem(value)) is not None:
            raise ConfigError(f"{field}.matchLabels[{key}]", problem)
        labels.append((key, value))
    raw_expressions = obj.get("matchExpressions")
    if raw_expressions is None:
        raw_expressions = []
    if not isinstance(raw_expressions, list):
        raise ConfigError(f"{field}.matchExpressions", f"must be a list, got {type_name(raw_expressions)}")
    expressions = tuple(
        _parse_requirement(item, f"{field}.matchExpressions[{index}]")
        for index, item in enumerate(raw_expressions)
    )
    return LabelSelector(match_labels=tuple(sorted(labels)), match_expressions=expressions)
