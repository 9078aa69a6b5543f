"""Custom resources against their CRD's structural schema (openAPIV3Schema), with the field paths and
wording of the real apiextensions-apiserver: validation (types, required, enum, nullable, numeric bounds,
string length and pattern, item counts), unique list-type sets and maps, pruning of undeclared fields, and
whether a CRD's schema is structural at all. CEL rules (x-kubernetes-validations) are not evaluated.
"""

from __future__ import annotations

import json
import re
from typing import Any

from lab.apiserver.errors import Cause

TYPE_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


def _go(value: Any) -> str:
    """A value as Go's %v-ish quoting in field errors: strings quoted, the rest JSON."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    return TYPE_NAMES.get(type(value), type(value).__name__)


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return True


def validate(schema: dict[str, Any] | None, obj: dict[str, Any]) -> list[Cause]:
    """Causes for every violation in `obj` (apiVersion, kind and metadata are the server's business)."""
    if not schema:
        return []
    causes: list[Cause] = []
    props = schema.get("properties") or {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind", "metadata"):
            continue
        if key in props:
            _check(props[key], value, key, causes)
    for key in schema.get("required") or []:
        if key not in obj and key not in ("apiVersion", "kind", "metadata"):
            causes.append(Cause(key, "Required value", "FieldValueRequired"))
    return causes


def _check(schema: Any, value: Any, path: str, causes: list[Cause]) -> None:
    if not isinstance(schema, dict):
        return
    if value is None:
        if not schema.get("nullable"):
            causes.append(
                Cause(
                    path,
                    f'Invalid value: "null": {path} in body must be of type {schema.get("type", "object")}: '
                    '"null"',
                    "FieldValueTypeInvalid",
                )
            )
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))):
            causes.append(
                Cause(
                    path,
                    f'Invalid value: "{_type_of(value)}": {path} in body must be of type integer,string: '
                    f'"{_type_of(value)}"',
                    "FieldValueTypeInvalid",
                )
            )
        return
    expected = schema.get("type")
    if expected and not _type_ok(expected, value):
        actual = _type_of(value)
        causes.append(
            Cause(
                path,
                f'Invalid value: "{actual}": {path} in body must be of type {expected}: "{actual}"',
                "FieldValueTypeInvalid",
            )
        )
        return
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_go(v) for v in schema["enum"])
        causes.append(
            Cause(
                path,
                f"Unsupported value: {_go(value)}: supported values: {supported}",
                "FieldValueNotSupported",
            )
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _bounds(schema, value, path, causes)
    elif isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            causes.append(
                Cause(path, f"Too long: may not be longer than {schema['maxLength']}", "FieldValueTooLong")
            )
        if "minLength" in schema and len(value) < schema["minLength"]:
            causes.append(
                Cause(
                    path,
                    f"Invalid value: {_go(value)}: {path} in body should be at least "
                    f"{schema['minLength']} chars long",
                )
            )
        pattern = schema.get("pattern")
        if pattern and not re.search(pattern, value):
            causes.append(
                Cause(path, f"Invalid value: {_go(value)}: {path} in body should match '{pattern}'")
            )
    elif isinstance(value, list):
        _array(schema, value, path, causes)
    elif isinstance(value, dict):
        _object(schema, value, path, causes)


def _bounds(schema: dict[str, Any], value: float, path: str, causes: list[Cause]) -> None:
    if "minimum" in schema:
        low = schema["minimum"]
        if value < low or (schema.get("exclusiveMinimum") and value == low):
            op = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
            causes.append(Cause(path, f"Invalid value: {_go(value)}: {path} in body should be {op} {low}"))
    if "maximum" in schema:
        high = schema["maximum"]
        if value > high or (schema.get("exclusiveMaximum") and value == high):
            op = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
            causes.append(Cause(path, f"Invalid value: {_go(value)}: {path} in body should be {op} {high}"))


def _array(schema: dict[str, Any], value: list[Any], path: str, causes: list[Cause]) -> None:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        causes.append(
            Cause(
                path,
                f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
                "FieldValueTooMany",
            )
        )
    if "minItems" in schema and len(value) < schema["minItems"]:
        causes.append(
            Cause(
                path,
                f"Invalid value: {len(value)}: {path} in body should have at least "
                f"{schema['minItems']} items",
            )
        )
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            _check(items, item, f"{path}[{i}]", causes)


def _object(schema: dict[str, Any], value: dict[str, Any], path: str, causes: list[Cause]) -> None:
    if schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties"):
        return
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        if key in props:
            _check(props[key], item, f"{path}.{key}", causes)
        elif isinstance(extra, dict):
            _check(extra, item, f"{path}.{key}", causes)
    for key in schema.get("required") or []:
        if key not in value:
            causes.append(Cause(f"{path}.{key}", "Required value", "FieldValueRequired"))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        causes.append(
            Cause(
                path,
                f"Too many: {len(value)}: must have at most {schema['maxProperties']} items",
                "FieldValueTooMany",
            )
        )
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        causes.append(
            Cause(
                path,
                f"Invalid value: {len(value)}: {path} in body should have at least "
                f"{schema['minProperties']} properties",
            )
        )


# ------------------------------------------------------------------------------------ structural schemas

_LEVEL_DETAIL = {
    "root": "must not be empty at the root",
    "item": "must not be empty for specified array items",
    "field": "must not be empty for specified object fields",
}


def structural_errors(schema: Any, path: str, level: str = "root") -> list[Cause]:
    """Why a CRD version's openAPIV3Schema is not structural (validateStructuralInvariants and
    validateStructuralCompleteness in apiextensions-apiserver pkg/apiserver/schema/validation.go): every node
    has a type (unless int-or-string or preserving unknown fields), the root is an object, arrays have items,
    and properties and additionalProperties do not mix."""
    if not isinstance(schema, dict):
        return []
    causes: list[Cause] = []
    kind = schema.get("type") or ""
    if (
        not kind
        and not schema.get("x-kubernetes-int-or-string")
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        causes.append(Cause(f"{path}.type", f"Required value: {_LEVEL_DETAIL[level]}", "FieldValueRequired"))
    if level == "root" and kind and kind != "object":
        causes.append(Cause(f"{path}.type", f'Invalid value: "{kind}": must be object at the root'))
    properties = schema.get("properties")
    extra = schema.get("additionalProperties")
    if isinstance(properties, dict) and properties and extra not in (None, False):
        causes.append(
            Cause(
                f"{path}.additionalProperties",
                "Forbidden: additionalProperties and properties are mutual exclusive",
                "FieldValueForbidden",
            )
        )
    if kind == "array" and not isinstance(schema.get("items"), dict):
        causes.append(Cause(f"{path}.items", "Required value: must be specified", "FieldValueRequired"))
    if schema.get("x-kubernetes-list-type") == "map" and not schema.get("x-kubernetes-list-map-keys"):
        causes.append(
            Cause(
                f"{path}.x-kubernetes-list-map-keys",
                "Required value: must not be empty if x-kubernetes-list-type is map",
                "FieldValueRequired",
            )
        )
    for key, sub in (properties or {}).items() if isinstance(properties, dict) else ():
        causes += structural_errors(sub, f"{path}.properties[{key}]", "field")
    if isinstance(extra, dict):
        causes += structural_errors(extra, f"{path}.additionalProperties", "field")
    if isinstance(schema.get("items"), dict):
        causes += structural_errors(schema["items"], f"{path}.items", "item")
    return causes


# --------------------------------------------------------------------------------------------- pruning

_ROOT_FIELDS = ("apiVersion", "kind", "metadata")


def prune(obj: dict[str, Any], schema: dict[str, Any] | None) -> list[str]:
    """Drop, in place, every field the structural schema does not declare, unless a node preserves unknown
    fields (apiextensions-apiserver pkg/apiserver/schema/pruning/algorithm.go); apiVersion, kind and metadata
    stay at the root. -> the pruned paths."""
    pruned: list[str] = []
    if schema is None:
        return pruned
    for key in list(obj):
        if key in _ROOT_FIELDS:
            continue
        _prune_field(obj, key, schema, "", pruned)
    return pruned


def _prune_field(
    parent: dict[str, Any], key: str, schema: dict[str, Any], prefix: str, pruned: list[str]
) -> None:
    path = f"{prefix}.{key}" if prefix else key
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    if key in properties:
        _prune(parent[key], properties[key], path, pruned)
    elif isinstance(extra, dict):
        _prune(parent[key], extra, path, pruned)
    elif extra is True or schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    else:
        pruned.append(path)
        del parent[key]


def _prune(value: Any, schema: Any, path: str, pruned: list[str]) -> None:
    if not isinstance(schema, dict):
        return
    if isinstance(value, dict):
        if schema.get("x-kubernetes-embedded-resource"):
            for key in list(value):
                if key not in _ROOT_FIELDS:
                    _prune_field(value, key, schema, path, pruned)
            return
        for key in list(value):
            _prune_field(value, key, schema, path, pruned)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _prune(item, schema["items"], f"{path}[{i}]", pruned)


# ------------------------------------------------------------------------------------ list sets and maps


def list_errors(value: Any, schema: Any, path: str = "") -> list[Cause]:
    """ValidateListSetsAndMaps (apiextensions-apiserver pkg/apiserver/schema/listtype/validation.go): items of
    an x-kubernetes-list-type set are unique, and so are the keys of a list-type map."""
    if not isinstance(schema, dict):
        return []
    causes: list[Cause] = []
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if not path and key in _ROOT_FIELDS:
                continue
            child = properties.get(key, extra if isinstance(extra, dict) else None)
            child_path = f"{path}.{key}" if path else key
            if key not in properties and isinstance(extra, dict):
                child_path = f"{path}[{key}]" if path else key
            causes += list_errors(item, child, child_path)
    elif isinstance(value, list):
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set":
            seen: list[Any] = []
            for i, item in enumerate(value):
                if item in seen:
                    causes.append(
                        Cause(f"{path}[{i}]", f"Duplicate value: {_go_value(item)}", "FieldValueDuplicate")
                    )
                seen.append(item)
        elif list_type == "map":
            keys = list(schema.get("x-kubernetes-list-map-keys") or [])
            seen_keys: list[dict[str, Any]] = []
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    key = {k: item[k] for k in keys if k in item}
                    if key in seen_keys:
                        causes.append(
                            Cause(f"{path}[{i}]", f"Duplicate value: {_go_map(key)}", "FieldValueDuplicate")
                        )
                    seen_keys.append(key)
        for i, item in enumerate(value):
            causes += list_errors(item, schema.get("items"), f"{path}[{i}]")
    return causes


def _go_value(value: Any) -> str:
    """Go's %#v of a decoded JSON value (field.Duplicate's detail)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return _go_map(value)
    return json.dumps(value)


def _go_map(value: dict[str, Any]) -> str:
    return (
        "map[string]interface {}{"
        + ", ".join(f"{json.dumps(k)}:{_go_value(v)}" for k, v in sorted(value.items()))
        + "}"
    )
