"""The speaker's Prometheus metrics, under MetalLB's names where MetalLB has one."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge


class Metrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests_received = Counter(
            "metallb_layer2_requests_received",
            "Number of layer2 requests received for owned IPs",
            ["ip"],
            registry=registry,
        )
        self.responses_sent = Counter(
            "metallb_layer2_responses_sent",
            "Number of layer2 responses sent for owned IPs",
            ["ip"],
            registry=registry,
        )
        self.gratuitous_sent = Counter(
            "metallb_layer2_gratuitous_sent",
            "Number of gratuitous layer2 packets sent for owned IPs as a result of failovers",
            ["ip"],
            registry=registry,
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
