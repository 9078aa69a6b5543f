"""k8s.events: the recorder against the embedded API server, and the correlator's rules on their own."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from k8s.client import Client
from k8s.events import (
    AGGREGATE_INTERVAL,
    COMBINED_PREFIX,
    MAX_MESSAGE_BYTES,
    SPAM_BURST,
    SPAM_REFILL_SECONDS,
    EventCorrelator,
    EventRecorder,
    truncate_message,
)
from lab.apiserver.process import ApiServerProcess


def service(name: str = "web", namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
    }


def events_about(client: Client, namespace: str, name: str) -> list[dict[str, Any]]:
    events = client.list(f"/api/v1/namespaces/{namespace}/events")
    return [e for e in events if e["involvedObject"]["name"] == name]


def test_repeats_become_a_count_and_many_messages_one_combined_event(client: Client, ns: str) -> None:
    recorder = EventRecorder(client, "ironlb-test", instance="replica-1")
    try:
        for _ in range(3):
            recorder.event(service(namespace=ns), "Warning", "AllocationFailed", "no pool has a free address")
        assert recorder.flush()
        [event] = events_about(client, ns, "web")
        assert event["count"] == 3 and event["reason"] == "AllocationFailed"
        assert event["firstTimestamp"] <= event["lastTimestamp"]
        assert event["source"] == {"component": "ironlb-test"} and event["reportingInstance"] == "replica-1"

        for i in range(12):  # distinct messages, same reason: after 10, one aggregate event counts on
            recorder.event(service("busy", ns), "Normal", "IPAllocated", f"assigned 192.0.2.{i}")
        assert recorder.flush()
        events = events_about(client, ns, "busy")
        assert len(events) == 11
        [combined] = [e for e in events if e["message"].startswith(COMBINED_PREFIX)]
        assert combined["count"] == 2 and combined["message"] == COMBINED_PREFIX + "assigned 192.0.2.11"

        recorder.event(service("long", ns), "Warning", "InvalidConfig", "é" * 2000)
        assert recorder.flush()
        [long] = events_about(client, ns, "long")
        assert len(long["message"].encode()) <= MAX_MESSAGE_BYTES and long["message"].endswith(" ...")
    finally:
        recorder.stop()


def test_a_deleted_event_is_posted_anew(client: Client, ns: str) -> None:
    recorder = EventRecorder(client, "ironlb-test")
    try:
        recorder.event(service(namespace=ns), "Normal", "Synced", "ok")
        assert recorder.flush()
        [first] = events_about(client, ns, "web")
        client.delete(f"/api/v1/namespaces/{ns}/events/{first['metadata']['name']}")
        recorder.event(service(namespace=ns), "Normal", "Synced", "ok")
        assert recorder.flush()
        [second] = events_about(client, ns, "web")
        assert second["count"] == 2 and second["metadata"]["name"] != first["metadata"]["name"]
    finally:
        recorder.stop()


def test_failures_are_logged_never_raised(
    apiserver: ApiServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client.load(str(apiserver.kubeconfig), timeout=5)
    recorder = EventRecorder(client, "ironlb-test")
    apiserver.stop()
    with caplog.at_level(logging.WARNING, logger="k8s.events"):
        recorder.event(service(), "Warning", "InvalidConfig", "bad pool")  # returns at once
        assert recorder.flush(30)
    assert "event=event_failed object=default/web reason=InvalidConfig" in caplog.text
    recorder.stop()
    client.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def body(name: str, message: str, reason: str = "R") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "default"},
        "involvedObject": {"kind": "Service", "namespace": "default", "name": name},
        "source": {"component": "c"},
        "type": "Normal",
        "reason": reason,
        "message": message,
        "count": 1,
        "firstTimestamp": "t0",
        "lastTimestamp": "t1",
    }


def test_the_spam_filter_allows_a_burst_then_one_per_refill_per_object() -> None:
    clock = FakeClock()
    correlator = EventCorrelator(clock)
    allowed = [correlator.correlate(body("a", f"m{i}")) is not None for i in range(SPAM_BURST + 1)]
    assert allowed == [True] * SPAM_BURST + [False]
    assert correlator.correlate(body("other", "m")) is not None  # per object
    clock.now += SPAM_REFILL_SECONDS
    assert correlator.correlate(body("a", "again")) is not None
    assert correlator.correlate(body("a", "again")) is None


def test_aggregation_restarts_after_its_interval() -> None:
    clock = FakeClock()
    correlator = EventCorrelator(clock)
    for i in range(10):
        decision = correlator.correlate(body("a", f"m{i}"))
        assert decision is not None and decision.body["message"] == f"m{i}"
    decision = correlator.correlate(body("a", "m10"))
    assert decision is not None and decision.body["message"] == COMBINED_PREFIX + "m10"
    clock.now += AGGREGATE_INTERVAL + 1
    decision = correlator.correlate(body("a", "m11"))
    assert decision is not None and decision.body["message"] == "m11"


def test_a_repeat_patches_the_event_it_repeats() -> None:
    correlator = EventCorrelator(FakeClock())
    first = correlator.correlate(body("a", "same"))
    assert first is not None and first.patch_name is None
    correlator.posted(first, "a.123")
    again = correlator.correlate({**body("a", "same"), "firstTimestamp": "later", "lastTimestamp": "t9"})
    assert again is not None and again.patch_name == "a.123"
    assert (again.body["count"], again.body["firstTimestamp"]) == (2, "t0")


def test_truncation_counts_bytes_and_never_splits_a_character() -> None:
    assert truncate_message("short") == "short"
    cut = truncate_message("€" * 1000)
    assert len(cut.encode()) <= MAX_MESSAGE_BYTES and cut.endswith(" ...")
    assert cut[:-4] == "€" * len(cut[:-4])


def test_nothing_is_posted_while_may_post_says_no(client: Client) -> None:
    allowed = threading.Event()
    recorder = EventRecorder(client, "ironlb-test", may_post=allowed.is_set)
    try:
        recorder.event(service("fenced"), "Normal", "Test", "held back")
        assert not recorder.flush(0.5)
        assert events_about(client, "default", "fenced") == []
        allowed.set()
        assert recorder.flush(5)
        assert [e["message"] for e in events_about(client, "default", "fenced")] == ["held back"]
    finally:
        allowed.set()
        recorder.stop()
