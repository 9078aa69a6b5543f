"""The speaker's Prometheus metrics, under MetalLB's names where MetalLB has one."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


class BareCounterNames(Collector):
    """MetalLB's speaker (Go) exposes its layer-2 counters under bare names, such as
    `metallb_layer2_requests_received{ip="..."}`, and dashboards and alerts query those. prometheus_client
    always names a counter's samples `<name>_total`, so these counters live outside the registry and are
    exposed here under MetalLB's names, untyped (the text format ties the counter type to a `_total` name)."""

    def __init__(self, counters: Sequence[Counter]) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        for counter in self.counters:
            for family in counter.collect():
                bare = Metric(family.name, family.documentation, "unknown")
                for sample in family.samples:
                    if sample.name == f"{family.name}_total":
                        bare.add_sample(family.name, sample.labels, sample.value)
                yield bare


class Metrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests_received = Counter(
            "metallb_layer2_requests_received",
            "Number of layer2 requests received for owned IPs",
            ["ip"],
            registry=None,
        )
        self.responses_sent = Counter(
            "metallb_layer2_responses_sent",
            "Number of layer2 responses sent for owned IPs in response to requests",
            ["ip"],
            registry=None,
        )
        self.gratuitous_sent = Counter(
            "metallb_layer2_gratuitous_sent",
            "Number of gratuitous layer2 packets sent for owned IPs as a result of failovers",
            ["ip"],
            registry=None,
        )
        registry.register(
            BareCounterNames([self.requests_received, self.responses_sent, self.gratuitous_sent])
        )
        self.announced = Gauge(
            "metallb_speaker_announced",
            "Services being announced from this node. This is desired state, it does not guarantee that the "
            "routing protocols have converged.",
            ["ip", "node", "protocol", "service"],
            registry=registry,
        )
        self.conflicts = Counter(
            "ironlb_layer2_address_conflicts",
            "Times another host (not a speaker) answered or announced an IP this speaker announces",
            ["ip", "interface"],
            registry=registry,
        )
        self.members = Gauge(
            "ironlb_speaker_members_alive",
            "Speakers alive in this speaker's membership view, itself included",
            registry=registry,
        )
        self.announcing = Gauge(
            "ironlb_speaker_may_announce",
            "1 while this speaker may announce (joined, not isolated, in the majority), else 0",
            registry=registry,
        )
