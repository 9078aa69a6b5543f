"""The speaker's metrics are exposed under MetalLB's exact names, so its dashboards and alerts still work."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from speaker.metrics import Metrics


def test_layer2_counters_have_metallbs_bare_names() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.requests_received.labels("192.168.10.90").inc(3)
    metrics.responses_sent.labels("192.168.10.90").inc(2)
    metrics.gratuitous_sent.labels("fd00:10::80").inc()
    metrics.announced.labels("192.168.10.90", "node1", "layer2", "default/web").set(1)
    samples = {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in generate_latest(registry).decode().splitlines()
        if line and not line.startswith("#")
    }
    assert samples['metallb_layer2_requests_received{ip="192.168.10.90"}'] == 3
    assert samples['metallb_layer2_responses_sent{ip="192.168.10.90"}'] == 2
    assert samples['metallb_layer2_gratuitous_sent{ip="fd00:10::80"}'] == 1
    labels = 'ip="192.168.10.90",node="node1",protocol="layer2",service="default/web"'
    assert samples[f"metallb_speaker_announced{{{labels}}}"] == 1
    assert not [n for n in samples if n.startswith("metallb_") and ("_total" in n or "_created" in n)]
