"""Node health from heartbeats and the unreachable handling (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lab.controllers import nodelifecycle as nl
from tests.unit.lab.helpers import pod

NOW = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
GRACE = timedelta(seconds=40)


def node(
    beat: str | None = None, ready: str = "True", taints: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    cond: dict[str, Any] = {"type": "Ready", "status": ready, "reason": "KubeletReady"}
    if beat:
        cond["lastHeartbeatTime"] = beat
    return {
        "metadata": {"name": "node1", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"taints": taints or []},
        "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, cond]},
    }


def lease(renew: str) -> dict[str, Any]:
    return {"spec": {"renewTime": renew}}


def test_staleness_uses_the_freshest_heartbeat() -> None:
    assert not nl.is_stale(node("2026-01-01T00:00:00Z"), lease("2026-01-01T00:00:50.000000Z"), NOW, GRACE)
    assert nl.is_stale(node("2026-01-01T00:00:00Z"), lease("2026-01-01T00:00:10.000000Z"), NOW, GRACE)
    assert not nl.is_stale(node("2026-01-01T00:00:30Z"), None, NOW, GRACE)
    assert nl.is_stale(node(None), None, NOW, GRACE)  # never heard of, created 60 s ago
    assert not nl.is_stale(node(None), None, NOW, timedelta(seconds=90))


def test_unreachable_status_and_taint() -> None:
    status = nl.unreachable_status(node("x"), "T")
    assert status is not None
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Ready"]["status"] == "Unknown" and conds["Ready"]["reason"] == "NodeStatusUnknown"
    assert conds["MemoryPressure"]["status"] == "Unknown"
    assert nl.unreachable_status(node("x", ready="Unknown"), "T") is None
    other = {"key": "dedicated", "effect": "NoSchedule"}
    taints = nl.taints_with_unreachable(node(taints=[other]), "T")
    assert taints == [other, {"key": nl.UNREACHABLE_TAINT, "effect": "NoSchedule", "timeAdded": "T"}]
    assert nl.taints_with_unreachable(node(taints=taints), "T") is None


def test_taint_removed_once_ready_again() -> None:
    tainted = [
        {"key": "dedicated", "effect": "NoSchedule"},
        {"key": nl.UNREACHABLE_TAINT, "effect": "NoSchedule"},
    ]
    assert nl.taints_without_unreachable(node(taints=tainted)) == [tainted[0]]
    assert nl.taints_without_unreachable(node(ready="Unknown", taints=tainted)) is None
    assert nl.taints_without_unreachable(node()) is None


def test_pods_marked_not_ready_once() -> None:
    conditions = nl.pod_not_ready_conditions(pod("a"), "T")
    assert conditions == [
        {"type": "Ready", "status": "False", "lastTransitionTime": "T", "reason": "NodeNotReady"}
    ]
    assert nl.pod_not_ready_conditions(pod("b", ready=False), "T") is None
