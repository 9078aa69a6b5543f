"""Conformance: field selectors as kube-apiserver 1.36 supports them, per kind, over the REST API.

The labels a kind accepts come from its field-label conversion function (pkg/apis/core/v1/conversion.go,
pkg/apis/apps/v1/conversion.go, and for custom resources apiextensions-apiserver's converter); every other
kind has runtime.DefaultMetaV1FieldSelectorConversion (k8s.io/apimachinery/pkg/runtime/conversion.go).
handlers/get.go answers a refused label with 400 BadRequest carrying the conversion error as message.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.apiserver.rest import Rest


def names(live: Rest, path: str, selector: str) -> list[str]:
    body = live.ok("GET", path, fieldSelector=selector)
    return [item["metadata"]["name"] for item in body["items"]]


def bad_request(live: Rest, path: str, selector: str) -> str:
    resp = live.request("GET", path, fieldSelector=selector)
    assert resp.status_code == 400, resp.text
    assert resp.json()["reason"] == "BadRequest"
    return str(resp.json()["message"])


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "sel"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}], **spec},
    }


@pytest.fixture(scope="module")
def seeded(live: Rest) -> Rest:
    live.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "sel"}})
    live.ok("POST", "/api/v1/namespaces/sel/pods", pod("plain"))
    live.ok("POST", "/api/v1/namespaces/sel/pods", pod("host", hostNetwork=True, nodeName="n1"))
    for name, type_ in (("lb", "LoadBalancer"), ("cip", "ClusterIP")):
        svc = {"metadata": {"name": name}, "spec": {"type": type_, "ports": [{"port": 80}]}}
        live.ok("POST", "/api/v1/namespaces/sel/services", svc)
    live.ok("POST", "/api/v1/namespaces/sel/configmaps", {"metadata": {"name": "cm"}})
    return live


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        # ToSelectableFields (pkg/registry/core/pod/strategy.go): hostNetwork reads "false" when unset.
        ("spec.hostNetwork=false", ["plain"]),
        ("spec.hostNetwork=true", ["host"]),
        ("spec.nodeName=n1", ["host"]),
        ("spec.host=n1", ["host"]),  # the old name, converted to spec.nodeName
        ("spec.nodeName=", ["plain"]),
        ("status.phase=Pending", ["host", "plain"]),
        ("metadata.name=plain,metadata.namespace=sel", ["plain"]),
    ],
)
def test_pod_fields(seeded: Rest, selector: str, expected: list[str]) -> None:
    assert names(seeded, "/api/v1/namespaces/sel/pods", selector) == expected


def test_service_fields(seeded: Rest) -> None:
    # AddFieldLabelConversionsForService: metadata.namespace, metadata.name, spec.clusterIP, spec.type.
    assert names(seeded, "/api/v1/namespaces/sel/services", "spec.type=LoadBalancer") == ["lb"]
    cluster_ip = seeded.ok("GET", "/api/v1/namespaces/sel/services/cip")["spec"]["clusterIP"]
    assert names(seeded, "/api/v1/services", f"spec.clusterIP={cluster_ip}") == ["cip"]


@pytest.mark.parametrize(
    ("path", "selector", "message"),
    [
        ("/api/v1/namespaces/sel/pods", "spec.containers=x", "field label not supported: spec.containers"),
        ("/api/v1/namespaces/sel/services", "spec.ports=x", "field label not supported: spec.ports"),
        ("/api/v1/nodes", "status.phase=Ready", "field label not supported: status.phase"),
        (
            "/api/v1/namespaces/sel/configmaps",
            "data.key=x",
            '"data.key" is not a known field selector: only "metadata.name", "metadata.namespace"',
        ),
        (
            "/apis/discovery.k8s.io/v1/namespaces/sel/endpointslices",
            "addressType=IPv4",
            '"addressType" is not a known field selector: only "metadata.name", "metadata.namespace"',
        ),
        (
            "/apis/events.k8s.io/v1/namespaces/sel/events",
            "reason=Started",
            '"reason" is not a known field selector: only "metadata.name", "metadata.namespace"',
        ),
    ],
)
def test_unsupported_fields_are_400_with_the_real_message(
    seeded: Rest, path: str, selector: str, message: str
) -> None:
    assert bad_request(seeded, path, selector) == message


def test_watch_checks_the_selector_too(seeded: Rest) -> None:
    resp = seeded.request("GET", "/api/v1/namespaces/sel/pods", watch="true", fieldSelector="spec.image=x")
    assert resp.status_code == 400
    assert resp.json()["message"] == "field label not supported: spec.image"


def test_core_events_select_on_involved_object_and_source(seeded: Rest) -> None:
    event = {
        "metadata": {"name": "ev1"},
        "involvedObject": {"kind": "Pod", "name": "plain", "namespace": "sel"},
        "reason": "Pulled",
        "type": "Normal",
        "source": {"component": "kubelet"},
    }
    seeded.ok("POST", "/api/v1/namespaces/sel/events", event)
    path = "/api/v1/namespaces/sel/events"
    assert names(seeded, path, "involvedObject.name=plain,reason=Pulled,source=kubelet") == ["ev1"]
