"""Prometheus metrics under kube-proxy's names (pkg/proxy/metrics), so its dashboards and alerts work."""

from __future__ import annotations

import resource

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

SYNC_BUCKETS = tuple(0.001 * 2**i for i in range(15))  # kube-proxy: ExponentialBuckets(0.001, 2, 15)
# kube-proxy: 0.25 s steps to 0.5 s, 1 s steps to 59 s, 5 s steps to 115 s, then 30 s steps to 300 s.
PROGRAMMING_BUCKETS = (
    0.25,
    0.5,
    *(float(s) for s in range(1, 60)),
    *(float(s) for s in range(60, 120, 5)),
    *(float(s) for s in range(120, 330, 30)),
)


class Metrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.sync_duration = Histogram(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            buckets=SYNC_BUCKETS,
            registry=registry,
        )
        self.full_sync_duration = Histogram(
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
            buckets=SYNC_BUCKETS,
            registry=registry,
        )
        self.partial_sync_duration = Histogram(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
            buckets=SYNC_BUCKETS,
            registry=registry,
        )
        self.programming_duration = Histogram(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            buckets=PROGRAMMING_BUCKETS,
            registry=registry,
        )
        self.last_sync = Gauge(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            registry=registry,
        )
        self.last_queued = Gauge(
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "The last time a sync of proxy rules was queued",
            registry=registry,
        )
        self.restore_failures = Counter(
            "kubeproxy_sync_proxy_rules_iptables_restore_failures",
            "Cumulative proxy iptables restore failures",
            registry=registry,
        )
        self.partial_restore_failures = Counter(
            "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures",
            "Cumulative proxy iptables partial restore failures",
            registry=registry,
        )
        self.no_local_endpoints = Gauge(
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
            "Number of services with a Local traffic policy and no endpoints",
            ["traffic_policy"],
            registry=registry,
        )
        self.services = Gauge(
            "ironlb_dataplane_services", "Services the dataplane forwards for", registry=registry
        )


def cpu_seconds() -> float:
    """CPU time of this thread and of the children waited for (iptables-restore, nft): what a sync costs,
    whatever else runs on the machine (backends log the difference as `cpu=`)."""
    own = resource.getrusage(resource.RUSAGE_THREAD)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
