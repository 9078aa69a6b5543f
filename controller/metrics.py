"""Prometheus metrics under MetalLB's names, served on --metrics-port (controller/health.py)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge

addresses_total = Gauge(
    "metallb_allocator_addresses_total", "Number of usable IP addresses, per pool", ["pool"]
)
addresses_in_use_total = Gauge(
    "metallb_allocator_addresses_in_use_total", "Number of IP addresses in use, per pool", ["pool"]
)
config_loaded = Gauge(
    "metallb_k8s_client_config_loaded_bool", "1 once a valid configuration was loaded"
)
config_stale = Gauge(
    "metallb_k8s_client_config_stale_bool", "1 while the latest configuration is invalid"
)
updates = Counter("metallb_k8s_client_updates", "Number of Kubernetes object updates processed")
update_errors = Counter("metallb_k8s_client_update_errors", "Number of Kubernetes object updates that failed")

_known_pools: set[str] = set()


def set_pool_stats(stats: Mapping[str, tuple[int, int]]) -> None:
    """Per-pool (total, in use); pools that disappeared lose their series."""
    for pool in _known_pools - set(stats):
        addresses_total.remove(pool)
        addresses_in_use_total.remove(pool)
    _known_pools.clear()
    for pool, (total, in_use) in stats.items():
        addresses_total.labels(pool=pool).set(total)
        addresses_in_use_total.labels(pool=pool).set(in_use)
        _known_pools.add(pool)
