"""Field errors worded as kube-apiserver words them (k8s.io/apimachinery/pkg/util/validation/field).

Each check returns `Cause`s; `raise_invalid` turns them into the 422 Status the real server sends, including
its `[a, b]` form when there is more than one cause.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Any

from common.pools import IPAddress
from lab.apiserver.errors import ApiError, Cause

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")

DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def go_value(value: Any) -> str:
    """Render a value as Go's %#v does for the simple types the messages show."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(json.dumps(v) for v in value) + "}"
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def invalid(path: str, value: Any, detail: str) -> Cause:
    return Cause(path, f"Invalid value: {go_value(value)}: {detail}", "FieldValueInvalid")


def required(path: str, detail: str = "") -> Cause:
    return Cause(path, "Required value" + (f": {detail}" if detail else ""), "FieldValueRequired")


def not_supported(path: str, value: Any, supported: Iterable[str]) -> Cause:
    options = ", ".join(json.dumps(s) for s in sorted(supported))
    return Cause(
        path, f"Unsupported value: {go_value(value)}: supported values: {options}", "FieldValueNotSupported"
    )


def duplicate(path: str, value: Any) -> Cause:
    return Cause(path, f"Duplicate value: {go_value(value)}", "FieldValueDuplicate")


def forbidden(path: str, detail: str) -> Cause:
    return Cause(path, f"Forbidden: {detail}", "FieldValueForbidden")


def raise_invalid(kind: str, group: str, name: str, causes: list[Cause]) -> None:
    """Raise the 422 Invalid error for `causes` (no-op when empty)."""
    if not causes:
        return
    qualified = f"{kind}.{group}" if group else kind
    rendered = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    detail = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    raise ApiError(
        422,
        "Invalid",
        f'{qualified} "{name}" is invalid: {detail}',
        kind=kind,
        name=name,
        group=group,
        causes=causes,
    )


def check_dns1123_label(path: str, value: str) -> list[Cause]:
    causes: list[Cause] = []
    if len(value) > 63:
        causes.append(invalid(path, value, "must be no more than 63 characters"))
    if not DNS1123_LABEL.match(value):
        causes.append(invalid(path, value, DNS1123_LABEL_MSG))
    return causes


def check_dns1123_subdomain(path: str, value: str) -> list[Cause]:
    causes: list[Cause] = []
    if len(value) > 253:
        causes.append(invalid(path, value, "must be no more than 253 characters"))
    if not DNS1123_SUBDOMAIN.match(value):
        causes.append(invalid(path, value, DNS1123_SUBDOMAIN_MSG))
    return causes


def check_label_map(path: str, labels: Any) -> list[Cause]:
    """Label keys must be qualified names and values valid label values (selectors use the same rules)."""
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [invalid(path, labels, "must be a map of string keys to string values")]
    causes: list[Cause] = []
    for key, value in labels.items():
        # ValidateLabels (k8s.io/apimachinery/pkg/apis/meta/v1/validation): IsQualifiedName for keys,
        # IsValidLabelValue for values (k8s.io/apimachinery/pkg/util/validation/validation.go).
        causes += [invalid(path, key, msg) for msg in qualified_name_errors(str(key))]
        if not isinstance(value, str):
            causes.append(invalid(f"{path}[{key}]", value, "must be a string"))
            continue
        if len(value) > 63:
            causes.append(invalid(path, value, "must be no more than 63 characters"))
        if not LABEL_VALUE.match(value):
            causes.append(invalid(path, value, LABEL_VALUE_MSG))
    return causes


LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


# k8s.io/apimachinery/pkg/util/validation/ip.go (parseIP)
IP_INVALID_MSG = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
IP_LEADING_ZEROS_MSG = "must not have leading 0s"
IP_MAPPED_MSG = "must not be an IPv4-mapped IPv6 address"


QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
    "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
STANDARD_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")


def qualified_name_errors(value: str) -> list[str]:
    """IsQualifiedName (k8s.io/apimachinery/pkg/util/validation/validation.go)."""
    parts = value.split("/")
    if len(parts) > 2:
        return [
            f"a qualified name {QUALIFIED_NAME_MSG} with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    errors: list[str] = []
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errors.append("prefix part must be no more than 253 characters")
            if not DNS1123_SUBDOMAIN.match(prefix):
                errors.append("prefix part " + DNS1123_SUBDOMAIN_MSG)
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    if not QUALIFIED_NAME.match(name):
        errors.append("name part " + QUALIFIED_NAME_MSG)
    return errors


def check_finalizers(finalizers: list[str], custom: bool) -> list[Cause]:
    """ValidateFinalizers (k8s.io/apimachinery/pkg/api/validation/objectmeta.go): qualified names; and for
    built-in kinds validateKubeFinalizerName (pkg/apis/core/validation/validation.go): a name without a "/"
    must be one of the standard finalizers. Custom resources only get a warning for the latter."""
    causes: list[Cause] = []
    for i, finalizer in enumerate(finalizers):
        causes += [invalid("metadata.finalizers", finalizer, msg) for msg in qualified_name_errors(finalizer)]
        if not custom and "/" not in finalizer and finalizer not in STANDARD_FINALIZERS:
            causes.append(
                invalid(
                    f"metadata.finalizers[{i}]",
                    finalizer,
                    "name is neither a standard finalizer name nor is it fully qualified",
                )
            )
    return causes


def finalizer_warnings(added: list[str]) -> list[str]:
    """The warnings the custom resource strategy gives for added finalizers without a "/"
    (apiextensions-apiserver pkg/registry/customresource/validator.go)."""
    warnings = []
    for finalizer in added:
        if "/" in finalizer or finalizer in STANDARD_FINALIZERS:
            continue
        hint = " including a path (/)" if "." in finalizer else ""
        warnings.append(
            f"metadata.finalizers: {json.dumps(finalizer)}: prefer a domain-qualified finalizer name{hint}"
            " to avoid accidental conflicts with other finalizer writers"
        )
    return warnings


def parse_ip(value: Any) -> IPAddress | None:
    """A strictly valid IP: no leading 0s, no IPv6 zone (Python's parser would accept "fe80::1%eth0")."""
    if not isinstance(value, str) or "%" in value:
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def parse_ip_sloppy(value: Any) -> tuple[IPAddress | None, bool]:
    """Go's netutils.ParseIPSloppy: also IPv4 octets with leading 0s (read as decimal), never a zone.
    -> (address, had leading zeros)."""
    ip = parse_ip(value)
    if ip is not None or not isinstance(value, str):
        return ip, False
    parts = value.split(".")
    if len(parts) == 4 and all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts):
        octets = [int(p) for p in parts]
        if all(o <= 255 for o in octets):
            return ipaddress.IPv4Address(".".join(map(str, octets))), True
    return None, False


def check_legacy_ip(path: str, value: str, valid_old: Iterable[str] = ()) -> list[Cause]:
    """IsValidIPForLegacyField with strict validation, as kube-apiserver 1.36 runs it (StrictIPCIDRValidation
    is on by default): a value already in the old object (`valid_old`) is let through unchanged."""
    if value in valid_old:
        return []
    ip, leading_zeros = parse_ip_sloppy(value)
    if ip is None:
        return [invalid(path, value, IP_INVALID_MSG)]
    causes: list[Cause] = []
    if leading_zeros:
        causes.append(invalid(path, value, IP_LEADING_ZEROS_MSG))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        causes.append(invalid(path, value, IP_MAPPED_MSG))
    return causes


RFC3339_MICRO = "2006-01-02T15:04:05.000000Z07:00"
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def micro_time_error(value: str) -> str | None:
    """Why Go's time.Parse(RFC3339Micro, value) fails, worded as its ParseError (metav1.MicroTime's
    UnmarshalJSON, staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/micro_time.go), or None when it parses.
    The layout needs exactly six fractional digits and a zone ("Z" or "+hh:mm")."""

    def cannot(rest: str, element: str) -> str:
        return f"parsing time {json.dumps(value)} as {json.dumps(RFC3339_MICRO)}: cannot parse " + (
            f"{json.dumps(rest)} as {json.dumps(element)}"
        )

    def out_of_range(what: str) -> str:
        return f"parsing time {json.dumps(value)}: {what} out of range"

    rest = value
    numbers: dict[str, int] = {}
    # (literal before the element, element, digits it takes: exact count, or 0 for "1 or 2")
    elements = (
        ("", "2006", 4),
        ("-", "01", 2),
        ("-", "02", 2),
        ("T", "15", 0),
        (":", "04", 2),
        (":", "05", 2),
    )
    for literal, element, width in elements:
        if not rest.startswith(literal):
            return cannot(rest, literal)
        rest = rest[len(literal) :]
        take = width or (2 if len(rest) >= 2 and rest[1].isdigit() else 1)
        digits = rest[:take]
        if len(digits) < take or not (digits.isascii() and digits.isdigit()):
            return cannot(rest, element)
        numbers[element] = int(digits)
        rest = rest[take:]
    if len(rest) < 7 or rest[0] not in ".," or not (rest[1:7].isascii() and rest[1:7].isdigit()):
        return cannot(rest, ".000000")
    rest = rest[7:]
    if rest.startswith("Z"):
        rest = rest[1:]
    elif (
        len(rest) >= 6
        and rest[0] in "+-"
        and rest[3] == ":"
        and (rest[1:3] + rest[4:6]).isascii()
        and (rest[1:3] + rest[4:6]).isdigit()
    ):
        rest = rest[6:]
    else:
        return cannot(rest, "Z07:00")
    year, month, day = numbers["2006"], numbers["01"], numbers["02"]
    for what, number, high in (("month", month, 12), ("hour", numbers["15"], 23)):
        if not (what == "hour" or number >= 1) or number > high:
            return out_of_range(what)
    for what, number in (("minute", numbers["04"]), ("second", numbers["05"])):
        if number > 59:
            return out_of_range(what)
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not 1 <= day <= _DAYS_IN_MONTH[month - 1] + (1 if month == 2 and leap else 0):
        return out_of_range("day")
    if rest:
        return f"parsing time {json.dumps(value)}: extra text: {json.dumps(rest)}"
    return None
