"""Which endpoints a service port uses on this node, for Cluster and for Local traffic policy.

kube-proxy's CategorizeEndpoints (pkg/proxy/topology.go), without topology hints: ready endpoints by default,
and serving-terminating ones when no ready endpoint exists (KEP-1669), decided separately for the Cluster and
the Local lists. Pure; every mode renders from its result.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataplane.model import Endpoint, ServicePort


@dataclass(frozen=True, slots=True)
class Selection:
    cluster: tuple[Endpoint, ...]  # used by Cluster policy (empty when the port never uses Cluster policy)
    local: tuple[Endpoint, ...]  # used by Local policy (empty when the port never uses Local policy)
    reachable: tuple[Endpoint, ...]  # union of both: the endpoints that need rules on this node
    has_any: bool  # some usable endpoint exists anywhere in the cluster
    # Traffic to the cluster IP has somewhere to go (else REJECT when there are no endpoints at all, DROP when
    # internalTrafficPolicy Local finds none on this node).
    has_internal: bool
    # External traffic (NodePort, LB IP, external IP) from outside the node has somewhere to go.
    has_external: bool


def _usable(endpoints: tuple[Endpoint, ...], local_only: bool) -> tuple[Endpoint, ...]:
    candidates = [ep for ep in endpoints if ep.local] if local_only else list(endpoints)
    ready = tuple(ep for ep in candidates if ep.ready)
    if ready:
        return ready
    return tuple(ep for ep in candidates if ep.serving and ep.terminating)


def select(port: ServicePort, endpoints: tuple[Endpoint, ...]) -> Selection:
    cluster: tuple[Endpoint, ...] = ()
    local: tuple[Endpoint, ...] = ()
    if port.uses_cluster_endpoints:
        cluster = _usable(endpoints, local_only=False)
    if port.uses_local_endpoints:
        local = _usable(endpoints, local_only=True)
    has_any = bool(cluster) or any(ep.ready or (ep.serving and ep.terminating) for ep in endpoints)
    if not port.uses_local_endpoints:
        reachable = cluster
    elif not port.uses_cluster_endpoints:
        reachable = local
    else:
        # Local may hold terminating endpoints that Cluster (having ready ones elsewhere) does not.
        seen = {ep.address for ep in cluster}
        reachable = cluster + tuple(ep for ep in local if ep.address not in seen)
    internal_ok = has_any and (not port.internal_policy_local or bool(local))
    external_ok = has_any and (not port.external_policy_local or bool(local))
    return Selection(cluster, local, reachable, has_any, internal_ok, external_ok)
