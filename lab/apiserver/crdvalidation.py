"""Validation of custom resources against their CRD's structural schema (openAPIV3Schema), with the field
paths and wording of the real apiextensions-apiserver: types, required, enum, nullable, numeric bounds,
string length and pattern, item counts and uniqueness. CEL rules (x-kubernetes-validations) are not evaluated.
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
    if schema.get("uniqueItems") or schema.get("x-kubernetes-list-type") == "set":
        seen: list[Any] = []
        for i, item in enumerate(value):
            if item in seen:
                causes.append(Cause(f"{path}[{i}]", f"Duplicate value: {_go(item)}", "FieldValueDuplicate"))
            seen.append(item)
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
