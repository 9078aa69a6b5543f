"""Kubernetes API errors, rendered as the meta/v1 Status objects a real kube-apiserver sends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cause:
    """One field-level cause of an Invalid error (status.details.causes[])."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"


@dataclass
class ApiError(Exception):
    """An error the API answers with; `status()` is the body, `code` the HTTP status."""

    code: int
    reason: str
    message: str
    kind: str = ""
    name: str = ""
    group: str = ""
    causes: list[Cause] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [
                {"reason": c.reason, "message": c.message, "field": c.field} for c in self.causes
            ]
        if details:
            body["details"] = details
        return body


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    qualified = f"{resource}.{group}" if group else resource
    return ApiError(404, "NotFound", f'{qualified} "{name}" not found', kind=resource, name=name, group=group)


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    qualified = f"{resource}.{group}" if group else resource
    return ApiError(
        409, "AlreadyExists", f'{qualified} "{name}" already exists', kind=resource, name=name, group=group
    )


def conflict(resource: str, name: str, group: str = "") -> ApiError:
    qualified = f"{resource}.{group}" if group else resource
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        kind=resource,
        name=name,
        group=group,
    )


def invalid(kind: str, name: str, causes: list[Cause], group: str = "") -> ApiError:
    """422 Invalid, worded as the real server words it.

    Example: `Service "x" is invalid: spec.ports[0].nodePort: Invalid value: ...`.
    """
    qualified = f"{kind}.{group}" if group else kind
    details = ", ".join(f"{c.field}: {c.message}" for c in causes)
    message = f'{qualified} "{name}" is invalid: {details}' if causes else f'{qualified} "{name}" is invalid'
    return ApiError(422, "Invalid", message, kind=kind, name=name, group=group, causes=causes)


def forbidden(
    resource: str, name: str, reason: str, group: str = "", causes: list[Cause] | None = None
) -> ApiError:
    """403 Forbidden as apierrors.NewForbidden words it: `<resource> "<name>" is forbidden: <reason>`."""
    qualified = f"{resource}.{group}" if group else resource
    return ApiError(
        403,
        "Forbidden",
        f'{qualified} "{name}" is forbidden: {reason}',
        kind=resource,
        name=name,
        group=group,
        causes=list(causes or []),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)
