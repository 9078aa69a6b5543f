from dataplane.model import ServiceKey
from dataplane.tracker import ChangeTracker, parse_trigger_time
from tests.unit.dataplane.helpers import endpoint, endpoint_slice, service

WEB = ServiceKey("default", "web")


def test_service_and_slices_make_a_snapshot():
    tracker = ChangeTracker("node1")
    tracker.update_service(service(), now=1.0)
    tracker.update_slice(
        endpoint_slice(endpoints=[endpoint("10.244.1.5"), endpoint("10.244.2.5", node="node2")]), 2.0
    )
    changes = tracker.take()
    assert changes.changed == {WEB}
    info = changes.snapshot.services[WEB]
    (port,) = info.ports
    (endpoints,) = info.endpoints
    assert [(e.ip, e.port, e.local) for e in endpoints] == [
        ("10.244.1.5", 8080, True),
        ("10.244.2.5", 8080, False),
    ]
    assert port.name == "default/web:http"
    assert changes.trigger_times == (1.0,)


def test_nothing_pending_after_take_and_no_change_for_irrelevant_updates():
    tracker = ChangeTracker("node1")
    tracker.update_service(service(), 1.0)
    tracker.update_slice(endpoint_slice(endpoints=[endpoint("10.244.1.5")]), 1.0)
    tracker.take()
    assert not tracker.pending
    # A label or a targetRef the dataplane ignores: the Service is re-examined but did not change.
    relabelled = service()
    relabelled["metadata"]["labels"] = {"team": "a"}
    tracker.update_service(relabelled, 2.0)
    with_ref = endpoint_slice(
        endpoints=[dict(endpoint("10.244.1.5"), targetRef={"kind": "Pod", "name": "p"})]
    )
    tracker.update_slice(with_ref, 2.0)
    assert tracker.take().changed == frozenset()


def test_slice_ports_must_match_name_protocol_and_family():
    tracker = ChangeTracker("node1")
    tracker.update_service(service(cluster_ips=("10.96.0.10", "fd00::a")), 1.0)
    tracker.update_slice(endpoint_slice(endpoints=[endpoint("10.244.1.5")]), 1.0)
    tracker.update_slice(
        endpoint_slice(name="web-v6", address_type="IPv6", endpoints=[endpoint("fd00:244:1::5")]), 1.0
    )
    tracker.update_slice(
        endpoint_slice(
            name="web-other",
            endpoints=[endpoint("10.244.1.9")],
            ports=[
                {"name": "metrics", "protocol": "TCP", "port": 9090},
                {"name": "http", "protocol": "UDP", "port": 1},
            ],
        ),
        1.0,
    )
    info = tracker.take().snapshot.services[WEB]
    assert [[e.ip for e in eps] for eps in info.endpoints] == [["10.244.1.5"], ["fd00:244:1::5"]]


def test_an_address_in_two_slices_is_kept_once_preferring_ready():
    tracker = ChangeTracker("node1")
    tracker.update_service(service(), 1.0)
    tracker.update_slice(endpoint_slice(name="a", endpoints=[endpoint("10.244.1.5", ready=False)]), 1.0)
    tracker.update_slice(endpoint_slice(name="b", endpoints=[endpoint("10.244.1.5")]), 1.0)
    (endpoints,) = tracker.take().snapshot.services[WEB].endpoints
    assert len(endpoints) == 1 and endpoints[0].ready


def test_deletes_and_headless_conversion_remove_the_service():
    tracker = ChangeTracker("node1")
    tracker.update_service(service(), 1.0)
    tracker.update_slice(endpoint_slice(endpoints=[endpoint("10.244.1.5")]), 1.0)
    tracker.take()
    tracker.delete_slice("default", "web-abcde", 2.0)
    changes = tracker.take()
    assert changes.changed == {WEB} and changes.snapshot.services[WEB].endpoints == ((),)
    tracker.update_service(service(cluster_ips=("None",)), 3.0)
    changes = tracker.take()
    assert changes.changed == {WEB} and WEB not in changes.snapshot.services
    tracker.delete_service("default", "web", 4.0)
    assert tracker.take().changed == frozenset()  # already gone from the snapshot


def test_relabelled_slice_moves_to_the_other_service():
    tracker = ChangeTracker("node1")
    for name in ("web", "api"):
        tracker.update_service(service(name=name), 1.0)
    tracker.update_slice(
        endpoint_slice(service_name="web", name="s1", endpoints=[endpoint("10.244.1.5")]), 1.0
    )
    tracker.take()
    tracker.update_slice(
        endpoint_slice(service_name="api", name="s1", endpoints=[endpoint("10.244.1.5")]), 2.0
    )
    changes = tracker.take()
    assert changes.changed == {WEB, ServiceKey("default", "api")}
    assert changes.snapshot.services[WEB].endpoints == ((),)


def test_trigger_time_comes_from_the_slice_annotation_when_sane():
    tracker = ChangeTracker("node1")
    tracker.update_service(service(), 100.0)
    tracker.take()
    body = endpoint_slice(endpoints=[endpoint("10.244.1.5")])
    body["metadata"]["annotations"] = {
        "endpoints.kubernetes.io/last-change-trigger-time": "1970-01-01T00:01:30Z"
    }
    tracker.update_slice(body, now=200.0)
    assert tracker.take().trigger_times == (90.0,)
    assert parse_trigger_time("garbage") is None and parse_trigger_time("") is None
