"""Writing a workload's status (Deployment, DaemonSet) as their controllers in kube-controller-manager do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from k8s.client import ApiError, Client
from k8s.meta import resource_path


def write_status(kube: Client, plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Merge `status` into apps/v1 `plural` namespace/name; a workload deleted meanwhile is no error."""
    try:
        kube.merge_patch(resource_path("apps/v1", plural, namespace, name, "status"), {"status": status})
    except ApiError as exc:
        if exc.status != 404:
            raise
