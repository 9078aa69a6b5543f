import datetime
import time

import pytest

from common.events import event_body

NOW = datetime.datetime(2026, 11, 27, 12, 0, 5, tzinfo=datetime.UTC)


def test_event_names_the_object_and_its_source():
    pod = {"metadata": {"name": "web-1", "namespace": "ns1", "uid": "u-1", "resourceVersion": "7"}}
    body = event_body(
        pod,
        event_type="Warning",
        reason="Failed",
        message="bad port",
        component="kubelet",
        now=NOW,
        instance="node1",
        host="node1",
        default_kind="Pod",
    )
    assert body["metadata"] == {"generateName": "web-1.", "namespace": "ns1"}
    assert body["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": "ns1",
        "name": "web-1",
        "uid": "u-1",
        "resourceVersion": "7",
    }
    assert (body["type"], body["reason"], body["message"]) == ("Warning", "Failed", "bad port")
    assert body["source"] == {"component": "kubelet", "host": "node1"}
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2026-11-27T12:00:05Z"
    assert body["reportingInstance"] == "node1"


def test_kind_and_api_version_of_the_object_win_over_defaults():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}
    body = event_body(
        svc, event_type="Normal", reason="IPAllocated", message="m", component="c", now=NOW, default_kind="x"
    )
    assert body["involvedObject"]["kind"] == "Service"
    assert body["involvedObject"]["namespace"] == "default"
    assert "uid" not in body["involvedObject"]
    assert "reportingInstance" not in body
    assert body["source"] == {"component": "c"}


def test_whole_event_body_with_only_the_required_arguments():
    body = event_body({"metadata": {}}, event_type="Normal", reason="R", message="m", component="c", now=NOW)
    assert body == {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": ".", "namespace": "default"},
        "involvedObject": {"apiVersion": "v1", "kind": "", "namespace": "default", "name": ""},
        "reason": "R",
        "message": "m",
        "type": "Normal",
        "count": 1,
        "firstTimestamp": "2026-11-27T12:00:05Z",
        "lastTimestamp": "2026-11-27T12:00:05Z",
        "source": {"component": "c"},
        "reportingComponent": "c",
    }


def test_event_times_are_utc_whatever_the_callers_zone():
    two_hours_east = datetime.timezone(datetime.timedelta(hours=2))
    local = datetime.datetime(2026, 11, 27, 14, 0, 5, tzinfo=two_hours_east)
    body = event_body(
        {"kind": "Node", "metadata": {"name": "n"}},
        event_type="Normal",
        reason="R",
        message="m",
        component="c",
        now=local,
        default_api_version="v9",
    )
    assert body["firstTimestamp"] == "2026-11-27T12:00:05Z"
    assert body["involvedObject"]["apiVersion"] == "v9" and body["involvedObject"]["kind"] == "Node"


def test_event_times_are_utc_whatever_the_machines_zone(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        local = datetime.datetime(
            2026, 11, 27, 14, 0, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
        )
        body = event_body(
            {"metadata": {}}, event_type="Normal", reason="R", message="m", component="c", now=local
        )
    finally:
        monkeypatch.undo()
        time.tzset()
    assert body["firstTimestamp"] == "2026-11-27T12:00:05Z"


def test_the_objects_own_api_version_wins():
    pool = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "p"}}
    body = event_body(pool, event_type="Warning", reason="R", message="m", component="c", now=NOW)
    assert body["involvedObject"]["apiVersion"] == "metallb.io/v1beta1"
