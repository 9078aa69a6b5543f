"""Object metadata conventions shared by the shell: API paths, cache keys, resourceVersions and timestamps.

Pure functions over JSON dicts (no I/O), so every daemon names and orders objects the same way.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

JSON = dict[str, Any]


def resource_path(
    group_version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    sub: str | None = None,
) -> str:
    """The REST path of a collection, an object or a subresource: ("v1", "pods", "default", "p", "status")
    -> /api/v1/namespaces/default/pods/p/status; ("apps/v1", "deployments") -> /apis/apps/v1/deployments."""
    parts = ["/api/v1" if group_version == "v1" else f"/apis/{group_version}"]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name:
        parts.append(name)
    if sub:
        parts.append(sub)
    return "/".join(parts)


def namespaced_name(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name); the namespace is "" for cluster-scoped objects."""
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def object_key(namespace: str, name: str) -> str:
    """client-go's MetaNamespaceKeyFunc: "namespace/name", or "name" for a cluster-scoped object."""
    return f"{namespace}/{name}" if namespace else name


def key_of(obj: Mapping[str, Any]) -> str:
    return object_key(*namespaced_name(obj))


def resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def rv_newer_or_equal(candidate: str | None, current: str | None) -> bool:
    """Whether a body with resourceVersion `candidate` may replace one with `current`.

    resourceVersions are opaque, but every API server we target uses increasing integers; comparing them
    keeps a late watch event from overwriting the fresher body a write returned.
    """
    if not candidate or not current:
        return True
    try:
        return int(candidate) >= int(current)
    except ValueError:
        return True


def rfc3339(moment: datetime.datetime | None = None) -> str:
    """A meta/v1 Time string (whole seconds, UTC)."""
    moment = moment or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(moment: datetime.datetime | None = None) -> str:
    """A meta/v1 MicroTime string (Lease acquire and renew times)."""
    moment = moment or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
