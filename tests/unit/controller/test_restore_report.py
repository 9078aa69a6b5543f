"""Start-up: restore_assignments' report for each kind of Service found showing IPs, and the request a Service
whose own request cannot be used holds its IPs under (holding_request)."""

from __future__ import annotations

from typing import Any

from common.pools import ServiceAllocation
from common.selectors import parse_label_selector
from controller.allocator import Allocator
from controller.reconcile import Restored, creation_order, restore_assignments
from controller.requests import ServiceRequest, holding_request
from tests.unit.controller.helpers import config, ip, pool


def svc(
    name: str,
    ingress: tuple[str, ...],
    created: str = "2026-01-01T00:00:00Z",
    namespace: str = "ns",
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    metadata = {"name": name, "namespace": namespace, "creationTimestamp": created}
    return {
        "metadata": {**metadata, "annotations": annotations or {}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], **spec},
        "status": {"loadBalancer": {"ingress": [{"ip": i} for i in ingress]}},
    }


def allocator() -> Allocator:
    return Allocator(config(pool("a", "10.0.0.0/29", "fd00::/125"), pool("b", "10.0.1.0/29")))


LABELS = {"ns": {"team": "x"}}
OUTSIDE = "outside every pool, or in use by an older Service"
NOT_MET = "its request is not met by these IPs"


def test_a_service_whose_request_its_ips_meet_adopts_them() -> None:
    alloc = allocator()
    report = restore_assignments(alloc, [svc("web", ("10.0.0.3",))], LABELS, None)
    assert report == [Restored("ns/web", (ip("10.0.0.3"),), held=True, exact=True)]
    assert alloc.holders(ip("10.0.0.3")) == {"ns/web"}


def test_services_showing_nothing_or_not_ours_are_skipped() -> None:
    alloc = allocator()
    services = [
        svc("empty", ()),
        svc("cluster-ip", ("10.0.0.1",), type="ClusterIP"),
        svc("classy", ("10.0.0.2",), loadBalancerClass="other"),
    ]
    assert restore_assignments(alloc, services, LABELS, None) == []
    assert alloc.assignments() == {}
    # With our class set, only that class is ours.
    mine = restore_assignments(alloc, services, LABELS, "other")
    assert mine == [Restored("ns/classy", (ip("10.0.0.2"),), held=True, exact=True)]


def test_a_malformed_request_still_holds_its_ips_for_now() -> None:
    alloc = allocator()
    bad = svc("bad", ("10.0.0.4",), annotations={"metallb.io/loadBalancerIPs": "nope"})
    reason = 'metadata.annotations[metallb.io/loadBalancerIPs]: "nope" is not an IP address'
    assert restore_assignments(alloc, [bad], LABELS, None) == [
        Restored("ns/bad", (ip("10.0.0.4"),), held=True, exact=False, reason=reason)
    ]
    assert alloc.holders(ip("10.0.0.4")) == {"ns/bad"}


def test_a_request_its_ips_do_not_meet_still_holds_them_for_now() -> None:
    alloc = allocator()
    moved = svc("moved", ("10.0.0.4",), annotations={"metallb.io/address-pool": "b"})
    assert restore_assignments(alloc, [moved], LABELS, None) == [
        Restored("ns/moved", (ip("10.0.0.4"),), held=True, exact=False, reason=NOT_MET)
    ]


def test_a_service_in_a_namespace_not_known_yet_holds_its_ips() -> None:
    alloc = allocator()
    report = restore_assignments(alloc, [svc("web", ("10.0.0.3",), namespace="new")], LABELS, None)
    assert report == [
        Restored("new/web", (ip("10.0.0.3"),), held=True, exact=False, reason="namespace not known yet")
    ]
    assert alloc.holders(ip("10.0.0.3")) == {"new/web"}


def test_ips_outside_every_pool_are_not_held() -> None:
    alloc = allocator()
    assert restore_assignments(alloc, [svc("web", ("192.0.2.1",))], LABELS, None) == [
        Restored("ns/web", (ip("192.0.2.1"),), held=False, exact=False, reason=OUTSIDE)
    ]
    assert alloc.assignments() == {}


def test_the_oldest_service_keeps_an_ip_two_show() -> None:
    alloc = allocator()
    younger = svc("aa-younger", ("10.0.0.5",), created="2026-01-02T00:00:00Z")
    elder = svc("zz-elder", ("10.0.0.5",), created="2026-01-01T00:00:00Z")
    assert restore_assignments(alloc, [younger, elder], LABELS, None) == [
        Restored("ns/zz-elder", (ip("10.0.0.5"),), held=True, exact=True),
        Restored("ns/aa-younger", (ip("10.0.0.5"),), held=False, exact=False, reason=OUTSIDE),
    ]
    assert creation_order(elder) < creation_order(younger)
    assert creation_order({"metadata": {"name": "n", "namespace": "x"}}) == ("", "x/n")


def test_a_dual_stack_pair_split_across_pools_keeps_what_it_can() -> None:
    alloc = allocator()
    split = svc("pair", ("10.0.1.2", "fd00::2"), ipFamilyPolicy="RequireDualStack")
    assert restore_assignments(alloc, [split], LABELS, None) == [
        Restored("ns/pair", (ip("10.0.1.2"),), held=True, exact=False, reason=NOT_MET)
    ]
    assert alloc.holders(ip("fd00::2")) == frozenset()


def test_a_single_ip_that_cannot_be_held_is_reported_once() -> None:
    alloc = allocator()
    assert alloc.restore(_plain("ns/first", "10.0.0.6"), [ip("10.0.0.6")]) is not None
    bad = svc("bad", ("10.0.0.6",), annotations={"metallb.io/loadBalancerIPs": "nope"})
    [report] = restore_assignments(alloc, [bad], LABELS, None)
    assert report == Restored("ns/bad", (ip("10.0.0.6"),), held=False, exact=False, reason=OUTSIDE)


def _plain(key: str, address: str) -> ServiceRequest:
    namespace, _, name = key.partition("/")
    return holding_request({"metadata": {"name": name, "namespace": namespace}}, {}, (ip(address),))


def test_holding_request_reads_what_it_can() -> None:
    service = {
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "labels": {"app": "web"},
            "annotations": {"metallb.io/allow-shared-ip": "k", "metallb.io/loadBalancerIPs": "garbage"},
        },
        "spec": {
            "type": "LoadBalancer",
            "ports": [{"port": 53, "protocol": "UDP"}],
            "selector": {"app": "web"},
            "externalTrafficPolicy": "Local",
        },
    }
    request = holding_request(service, {"team": "x"}, (ip("10.0.0.1"),))
    assert request == ServiceRequest(
        key="shop/web",
        namespace="shop",
        labels=(("app", "web"),),
        namespace_labels=(("team", "x"),),
        requested_ips=(),
        pool=None,
        sharing_key="k",
        ports=((53, "UDP"),),
        external_traffic_policy="Local",
        selector=(("app", "web"),),
        families=(4,),
        require_all_families=False,
    )


def test_holding_request_without_readable_sharing_rules_holds_unshared() -> None:
    bad_ports = {"metadata": {"name": "a"}, "spec": {"ports": [{"port": 0}], "selector": {"x": "y"}}}
    request = holding_request(bad_ports, {}, (ip("fd00::1"), ip("10.0.0.1")))
    assert (request.key, request.namespace, request.sharing_key, request.ports, request.selector) == (
        "default/a",
        "default",
        None,
        (),
        (),
    )
    assert (request.families, request.external_traffic_policy) == ((6, 4), "Cluster")
    odd_policy = {
        "metadata": {"name": "b", "namespace": "n", "annotations": {"metallb.io/allow-shared-ip": "k"}},
        "spec": {"externalTrafficPolicy": "Sometimes"},
    }
    request = holding_request(odd_policy, {}, (ip("10.0.0.1"),))
    assert (request.sharing_key, request.external_traffic_policy) == (None, "Cluster")
    bad_labels = {"metadata": {"name": "c", "labels": ["x"]}, "spec": {"externalTrafficPolicy": "Local"}}
    request = holding_request(bad_labels, {}, (ip("10.0.0.1"),))
    assert (request.labels, request.external_traffic_policy) == ((), "Local")


def test_a_pool_admitting_by_namespace_labels_is_judged_with_the_services_namespace_labels() -> None:
    team_x = ServiceAllocation(
        namespace_selectors=(parse_label_selector({"matchLabels": {"team": "x"}}, "s"),)
    )
    alloc = Allocator(config(pool("x-only", "10.0.0.0/29", service_allocation=team_x)))
    report = restore_assignments(alloc, [svc("web", ("10.0.0.3",))], LABELS, None)
    assert report == [Restored("ns/web", (ip("10.0.0.3"),), held=True, exact=True)]
