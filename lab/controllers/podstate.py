"""Facts about a Pod object that several controllers need, pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def is_ready(pod: Mapping[str, Any]) -> bool:
    cond = condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def is_terminating(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def is_finished(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_active(pod: Mapping[str, Any]) -> bool:
    return not is_terminating(pod) and not is_finished(pod)


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str] | None) -> bool:
    """Equality-based selector (a Service's spec.selector, a matchLabels map)."""
    labels = labels or {}
    return all(labels.get(key) == value for key, value in selector.items())
