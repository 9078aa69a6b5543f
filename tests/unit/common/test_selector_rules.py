"""Label keys, values and selector requirements: Kubernetes' length limits at their exact bounds, and each
error with its whole text (a user reads it in an InvalidConfig event)."""

from __future__ import annotations

from typing import Any

import pytest

from common.errors import ConfigError, RequestError, preview, shorten, type_name
from common.selectors import Requirement, label_key_problem, label_value_problem, parse_label_selector

KEY_NAME_RULE = (
    "name must be 1-63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
)
VALUE_RULE = (
    "must be at most 63 characters of alphanumerics, '-', '_' or '.', "
    "starting and ending with an alphanumeric"
)


def test_label_key_lengths_at_the_bounds() -> None:
    assert label_key_problem("a" * 63) is None
    assert label_key_problem("a" * 64) == f"invalid label key {preview('a' * 64)}: {KEY_NAME_RULE}"
    prefix = ".".join(["b" * 63] * 3) + "." + "c" * 61  # 253 characters
    assert len(prefix) == 253 and label_key_problem(f"{prefix}/app") is None
    assert label_key_problem(f"{prefix}c/app") == (
        f"invalid label key {preview(prefix + 'c/app')}: prefix must be a DNS subdomain"
    )


def test_label_key_parts_must_not_be_empty() -> None:
    assert label_key_problem("/app") == "invalid label key '/app': prefix must be a DNS subdomain"
    assert label_key_problem("example.com/") == f"invalid label key 'example.com/': {KEY_NAME_RULE}"
    assert label_key_problem("") == f"invalid label key '': {KEY_NAME_RULE}"
    assert label_key_problem("example.com/app.v1_x-y") is None


def test_label_values_at_the_bounds() -> None:
    assert label_value_problem("") is None
    assert label_value_problem("v" * 63) is None
    assert label_value_problem("v" * 64) == f"invalid label value {preview('v' * 64)}: {VALUE_RULE}"
    assert label_value_problem("-v") == f"invalid label value '-v': {VALUE_RULE}"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ({"key": "", "operator": "Exists"}, "f.matchExpressions[0].key: must be a non-empty string"),
        ({"key": 7, "operator": "Exists"}, "f.matchExpressions[0].key: must be a non-empty string"),
        (
            {"key": "-k", "operator": "Exists"},
            f"f.matchExpressions[0].key: invalid label key '-k': {KEY_NAME_RULE}",
        ),
        (
            {"key": "k", "operator": "in"},
            "f.matchExpressions[0].operator: unknown operator 'in': "
            "must be one of In, NotIn, Exists, DoesNotExist",
        ),
        (
            {"key": "k", "operator": "In", "values": "a"},
            "f.matchExpressions[0].values: must be a list of strings, got string",
        ),
        (
            {"key": "k", "operator": "In", "values": [None]},
            "f.matchExpressions[0].values[0]: must be a string, got null",
        ),
        (
            {"key": "k", "operator": "In", "values": ["ok", 5]},
            "f.matchExpressions[0].values[1]: must be a string, got integer",
        ),
        (
            {"key": "k", "operator": "Exists", "value": ["x"]},
            "f.matchExpressions[0].value: unknown field 'value'",
        ),
        (
            {"key": "k", "operator": "In", "values": ["ok", "-bad"]},
            f"f.matchExpressions[0].values[1]: invalid label value '-bad': {VALUE_RULE}",
        ),
        (
            {"key": "k", "operator": "In", "values": []},
            "f.matchExpressions[0].values: must be non-empty for operator In",
        ),
        (
            {"key": "k", "operator": "NotIn"},
            "f.matchExpressions[0].values: must be non-empty for operator NotIn",
        ),
        (
            {"key": "k", "operator": "DoesNotExist", "values": ["x"]},
            "f.matchExpressions[0].values: must be empty for operator DoesNotExist",
        ),
    ],
)
def test_requirement_errors_in_full(expression: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_label_selector({"matchExpressions": [expression]}, "f")
    assert str(info.value) == expected


def test_requirements_parse_to_what_they_say() -> None:
    selector = parse_label_selector(
        {
            "matchExpressions": [
                {"key": "a", "operator": "NotIn", "values": ["x", "y"]},
                {"key": "b", "operator": "DoesNotExist", "values": None},
                {"key": "c", "operator": "Exists", "values": []},
            ]
        },
        "f",
    )
    assert selector.match_expressions == (
        Requirement("a", "NotIn", ("x", "y")),
        Requirement("b", "DoesNotExist"),
        Requirement("c", "Exists"),
    )
    assert selector.matches({"c": ""}) and selector.matches({"a": "z", "c": "1"})
    assert not selector.matches({"a": "x", "c": ""}) and not selector.matches({"b": "", "c": ""})


def test_match_labels_key_errors_name_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_label_selector({"matchLabels": {5: "x"}}, "f")
    assert str(info.value) == "f.matchLabels: invalid key 5"
    with pytest.raises(ConfigError) as info:
        parse_label_selector({"matchLabels": {"a/b/c": "x"}}, "f")
    assert str(info.value) == "f.matchLabels: invalid label key 'a/b/c': prefix must be a DNS subdomain"


def test_type_names_in_messages() -> None:
    values: list[Any] = [None, {}, [], "", True, 1, 1.5, b""]
    assert [type_name(v) for v in values] == [
        "null",
        "mapping",
        "list",
        "string",
        "boolean",
        "integer",
        "number",
        "bytes",
    ]


def test_config_error_parts() -> None:
    error = ConfigError("spec.addresses[0]", "bad", "IPAddressPool ns/p")
    assert (error.field, error.message, error.source) == ("spec.addresses[0]", "bad", "IPAddressPool ns/p")
    assert str(error) == error.args[0] == "IPAddressPool ns/p: spec.addresses[0]: bad"
    nested = ConfigError("", "bad", "Kind ns/n").under("spec.x")
    assert (nested.field, nested.source, str(nested)) == ("spec.x", "Kind ns/n", "Kind ns/n: spec.x: bad")
    indexed = ConfigError("[2].key", "bad", "Kind ns/n").under("spec.list")
    assert (indexed.field, indexed.source) == ("spec.list[2].key", "Kind ns/n")
    assert str(ConfigError("", "only a message")) == "only a message"


def test_request_error_parts() -> None:
    error = RequestError("spec.loadBalancerIP", '"x" is not an IP address')
    assert (error.field, error.message) == ("spec.loadBalancerIP", '"x" is not an IP address')
    assert str(error) == 'spec.loadBalancerIP: "x" is not an IP address'


def test_previews_are_bounded_exactly() -> None:
    assert shorten("x" * 64) == "x" * 64
    assert shorten("x" * 65) == "x" * 64 + "...(+1 characters)"
    # A value that is not text is cut at 128 characters of its (already abbreviated) repr.
    big = {"a": "x" * 100, "b": "y" * 100, "c": "z" * 100}
    head, cut, _ = preview(big).partition("...(+")
    assert cut and len(head) == 128 and head.startswith("{'a': 'xxx")
