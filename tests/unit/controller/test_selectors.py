"""Label selectors: Kubernetes matching semantics and precise parse errors."""

from __future__ import annotations

from typing import Any

import pytest

from common.errors import ConfigError
from common.selectors import LabelSelector, Requirement, parse_label_selector


def test_empty_selector_matches_everything() -> None:
    assert parse_label_selector({}, "s").matches({})
    assert parse_label_selector(None, "s").matches({"a": "b"})


def test_match_labels_and_expressions() -> None:
    selector = parse_label_selector(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "team", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        },
        "s",
    )
    ok = {"app": "web", "tier": "a", "team": "x"}
    assert selector.matches(ok)
    assert selector.matches({**ok, "env": "dev"})
    assert not selector.matches({**ok, "env": "prod"})
    assert not selector.matches({**ok, "app": "db"})
    assert not selector.matches({**ok, "tier": "c"})
    assert not selector.matches({k: v for k, v in ok.items() if k != "tier"})
    assert not selector.matches({k: v for k, v in ok.items() if k != "team"})
    assert not selector.matches({**ok, "legacy": ""})


def test_parsed_equals_constructed() -> None:
    parsed = parse_label_selector({"matchLabels": {"b": "2", "a": "1"}}, "s")
    assert parsed == LabelSelector(match_labels=(("a", "1"), ("b", "2")))
    assert Requirement("k", "Exists").matches({"k": ""})


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ("app=web", "f: must be a label selector mapping, got string"),
        ({"matchLabel": {"a": "b"}}, "f.matchLabel: unknown field 'matchLabel'"),
        ({"matchLabels": ["a"]}, "f.matchLabels: must be a mapping, got list"),
        ({"matchLabels": {"a": 1}}, "f.matchLabels[a]: must be a string, got integer"),
        ({"matchLabels": {"a": "has space"}}, "f.matchLabels[a]: invalid label value 'has space'"),
        ({"matchLabels": {"-a": "b"}}, "f.matchLabels: invalid label key '-a'"),
        ({"matchLabels": {"UPPER.io/a": "b"}}, "f.matchLabels: invalid label key 'UPPER.io/a': prefix"),
        ({"matchExpressions": {"key": "a"}}, "f.matchExpressions: must be a list, got mapping"),
        ({"matchExpressions": ["a"]}, "f.matchExpressions[0]: must be a mapping, got string"),
        (
            {"matchExpressions": [{"operator": "Exists"}]},
            "f.matchExpressions[0].key: must be a non-empty string",
        ),
        ({"matchExpressions": [{"key": "a", "operator": "Gt"}]}, "f.matchExpressions[0].operator: unknown"),
        ({"matchExpressions": [{"key": "a", "operator": "In"}]}, "values: must be non-empty for operator In"),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            "f.matchExpressions[0].values: must be empty for operator Exists",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]},
            "f.matchExpressions[0].values[0]: must be a string",
        ),
        ({"matchExpressions": [{"key": "a", "operator": "In", "value": ["x"]}]}, ".value: unknown field"),
    ],
)
def test_errors(obj: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_label_selector(obj, "f")
    assert expected in str(info.value)


def test_error_source_and_nesting() -> None:
    error = ConfigError("spec.x", "bad")
    assert str(error) == "spec.x: bad"
    assert str(error.with_source("Kind ns/n")) == "Kind ns/n: spec.x: bad"
    assert str(ConfigError("x", "bad").under("spec")) == "spec.x: bad"
    assert str(ConfigError("[0]", "bad").under("spec.list")) == "spec.list[0]: bad"
