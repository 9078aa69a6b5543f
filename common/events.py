"""core/v1 Event objects, built the way Kubernetes' event recorders build them."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any


def event_body(
    involved: Mapping[str, Any],
    *,
    event_type: str,
    reason: str,
    message: str,
    component: str,
    now: datetime.datetime,
    instance: str | None = None,
    host: str | None = None,
    default_kind: str = "",
    default_api_version: str = "v1",
) -> dict[str, Any]:
    """An Event about ``involved`` (any object with metadata); the server picks its name.

    Listed items carry no kind or apiVersion, so the caller names them with ``default_kind`` and
    ``default_api_version``.
    """
    metadata = involved.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "default")
    name = str(metadata.get("name") or "")
    stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    involved_ref: dict[str, Any] = {
        "apiVersion": involved.get("apiVersion") or default_api_version,
        "kind": involved.get("kind") or default_kind,
        "namespace": namespace,
        "name": name,
    }
    for key in ("uid", "resourceVersion"):
        if metadata.get(key):
            involved_ref[key] = metadata[key]
    source: dict[str, str] = {"component": component}
    if host:
        source["host"] = host
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{name}.", "namespace": namespace},
        "involvedObject": involved_ref,
        "reason": reason,
        "message": message,
        "type": event_type,
        "count": 1,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "source": source,
        "reportingComponent": component,
    }
    if instance:
        body["reportingInstance"] = instance
    return body
