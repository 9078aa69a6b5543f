"""IP address management: which Service holds which LoadBalancer IPs, from which pool.

Each pool keeps, per address family, an IntervalSet of free addresses, so picking the lowest free address is
a bisection and memory grows with the number of holes, not the pool size. IPs held by several Services (the
allow-shared-ip annotation) carry the set of their holders' keys; an IP returns to its pool when the last
holder lets go.

Rules (MetalLB's): a pool with a serviceAllocation only serves the Services it admits; auto-assign picks
admitting pools with a serviceAllocation first (lower priority number first), then the others, by name;
autoAssign=false pools serve only explicit requests (address-pool annotation or requested IPs);
avoid-buggy-ips pools never hand out IPv4 .0 or .255; a dual-stack Service gets all its IPs from one pool.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

from common.pools import IP_SHARING_NAMESPACE, Config, IPAddress, Pool, is_buggy_ip
from controller.ipset import IntervalSet
from controller.requests import ServiceRequest


class AllocationError(Exception):
    """A Service cannot get an IP now; ``reason`` is the text of the AllocationFailed event. ``waiting_on``
    names the pools where a released IP may let it through; empty when only a change of the Service or of
    the config can (an unknown pool, a pool that does not admit it, a requested IP outside every pool)."""

    def __init__(self, reason: str, waiting_on: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.waiting_on = waiting_on


@dataclass(frozen=True)
class Assignment:
    key: str
    ips: tuple[IPAddress, ...]  # in the order of the request's families
    pool: str


@dataclass(frozen=True)
class PoolStats:
    total: int  # assignable addresses (avoid-buggy-ips exclusions not counted)
    in_use: int  # distinct addresses held by at least one Service
    ipv4_total: int = 0
    ipv4_in_use: int = 0
    ipv6_total: int = 0
    ipv6_in_use: int = 0


def _ip(version: int, value: int) -> IPAddress:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def _family(version: int) -> str:
    return f"IPv{version}"


def _next_non_buggy(value: int) -> int:
    """The lowest IPv4 address >= value not ending in .0 or .255."""
    if value & 0xFF == 0xFF:
        value += 1
    if value & 0xFF == 0:
        value += 1
    return value


def _sharing_problem(new: ServiceRequest, holder: ServiceRequest, pool: Pool) -> str | None:
    """Why ``new`` may not share an IP of ``pool`` with ``holder`` (MetalLB's rule, plus the pool's
    ip-sharing scope), or None if it may. Never quotes a sharing key: the key is a shared secret."""
    if pool.ip_sharing == IP_SHARING_NAMESPACE and new.namespace != holder.namespace:
        return f'pool "{pool.name}" shares IPs only between Services of one namespace'
    if new.sharing_key is None or holder.sharing_key is None:
        return "allow-shared-ip is not set on both Services"
    if new.sharing_key != holder.sharing_key:
        return "their allow-shared-ip keys differ"
    clash = sorted(set(new.ports) & set(holder.ports))
    if clash:
        return "port " + ", ".join(f"{port}/{protocol}" for port, protocol in clash) + " is already in use"
    if new.external_traffic_policy != holder.external_traffic_policy:
        return "externalTrafficPolicy differs (Cluster and Local cannot share an IP)"
    if new.external_traffic_policy == "Local" and new.selector != holder.selector:
        return "externalTrafficPolicy Local needs identical pod selectors to share an IP"
    return None


def _admits(pool: Pool, request: ServiceRequest) -> bool:
    allocation = pool.service_allocation
    return allocation is None or allocation.admits(
        request.namespace, dict(request.namespace_labels), dict(request.labels)
    )


@dataclass
class _PoolState:
    pool: Pool
    free: dict[int, IntervalSet]  # version -> free addresses (avoid-buggy pools shed .0/.255 lazily)
    in_use: dict[int, int] = field(default_factory=lambda: {4: 0, 6: 0})

    def lowest_free(self, version: int) -> IPAddress | None:
        """The lowest assignable free address, without taking it.

        In avoid-buggy-ips pools, .0/.255 addresses reaching the front are dropped from the free set for good
        (they are never assignable under this config), so this stays O(log n) amortised.
        """
        free = self.free.get(version)
        if free is None:
            return None
        while (interval := free.first_interval()) is not None:
            first, last = interval
            if not (self.pool.avoid_buggy_ips and version == 4):
                return _ip(version, first)
            candidate = _next_non_buggy(first)
            if candidate > first:
                free.discard_front(min(candidate - 1, last))
            if candidate <= last:
                return _ip(version, candidate)
        return None


class Allocator:
    def __init__(self, config: Config) -> None:
        self._pools: dict[str, _PoolState] = {}
        # version -> (sorted range starts, parallel (last, pool name)) for IP -> pool lookups by bisection
        self._lookup: dict[int, tuple[list[int], list[tuple[int, str]]]] = {}
        self._assignments: dict[str, Assignment] = {}
        self._requests: dict[str, ServiceRequest] = {}
        self._holders: dict[IPAddress, set[str]] = {}
        # (pool, version, sharing key) -> IPs held under that key, to find a shareable IP without a scan
        self._shared: dict[tuple[str, int, str], set[IPAddress]] = {}
        self.set_config(config)

    # ----------------------------------------------------------------------------------------------- queries

    def assignment(self, key: str) -> Assignment | None:
        return self._assignments.get(key)

    def assignments(self) -> dict[str, Assignment]:
        return dict(self._assignments)

    def holders(self, ip: IPAddress) -> frozenset[str]:
        return frozenset(self._holders.get(ip, ()))

    def pool_for(self, ip: IPAddress) -> Pool | None:
        """The pool that hands out ``ip`` (None outside every pool, or a .0/.255 in an avoid-buggy pool)."""
        lookup = self._lookup.get(ip.version)
        if lookup is None:
            return None
        starts, entries = lookup
        i = bisect_right(starts, int(ip)) - 1
        if i < 0 or entries[i][0] < int(ip):
            return None
        pool = self._pools[entries[i][1]].pool
        return None if pool.avoid_buggy_ips and is_buggy_ip(ip) else pool

    def pool_stats(self) -> dict[str, PoolStats]:
        stats = {}
        for name, state in self._pools.items():
            v4_total, v6_total = state.pool.size(4), state.pool.size(6)
            stats[name] = PoolStats(
                total=v4_total + v6_total,
                in_use=state.in_use[4] + state.in_use[6],
                ipv4_total=v4_total,
                ipv4_in_use=state.in_use[4],
                ipv6_total=v6_total,
                ipv6_in_use=state.in_use[6],
            )
        return stats

    def consistency_problems(self) -> list[str]:
        """Internal invariants, for tests and debugging: an empty list when the bookkeeping agrees."""
        problems = []
        held: dict[str, dict[int, set[int]]] = {}
        for key, assignment in self._assignments.items():
            if key not in self._requests:
                problems.append(f"{key}: assignment without request")
            for ip in assignment.ips:
                if key not in self._holders.get(ip, ()):
                    problems.append(f"{key}: {ip} not recorded as held")
                held.setdefault(assignment.pool, {}).setdefault(ip.version, set()).add(int(ip))
        for ip, keys in self._holders.items():
            if not keys or any(ip not in self._assignments[k].ips for k in keys if k in self._assignments):
                problems.append(f"{ip}: stale holders {sorted(keys)}")
            holders = sorted(k for k in keys if k in self._requests)
            pool = self.pool_for(ip)
            for i, one in enumerate(holders if pool is not None else ()):
                for other in holders[i + 1 :]:
                    assert pool is not None
                    problem = _sharing_problem(self._requests[one], self._requests[other], pool)
                    if problem is not None:
                        problems.append(f"{ip}: held by {one} and {other}, who may not share: {problem}")
        for name, state in self._pools.items():
            for version, free in state.free.items():
                in_pool = held.get(name, {}).get(version, set())
                if state.in_use[version] != len(in_pool):
                    problems.append(f"{name}: in_use[{version}]={state.in_use[version]}, held {len(in_pool)}")
                if any(value in free for value in in_pool):
                    problems.append(f"{name}: a held IPv{version} address is also free")
                for first, last in free.intervals():
                    ends = (_ip(version, first), _ip(version, last))
                    if not all(any(end in r for r in state.pool.ranges) for end in ends):
                        problems.append(f"{name}: free interval {first}-{last} outside the pool")
                if free.count + len(in_pool) > sum(r.size for r in state.pool.ranges if r.version == version):
                    problems.append(f"{name}: more free and held IPv{version} addresses than the pool has")
        return problems

    # ------------------------------------------------------------------------------------------------ config

    def set_config(self, config: Config) -> list[str]:
        """Switch to ``config``; keep every assignment still valid under it (same IPs), withdraw the rest.

        Returns the keys withdrawn (now released): IPs that left every pool (or became .0/.255 under
        avoid-buggy-ips), moved to a pool the Service may not use (serviceAllocation, address-pool
        annotation), or were split across pools. Callers should assign() those again.
        """
        lookup: dict[int, list[tuple[int, int, str]]] = {}
        for pool in config.pools:
            for r in pool.ranges:
                lookup.setdefault(r.version, []).append((int(r.first), int(r.last), pool.name))
        self._lookup = {}
        for version, entries in lookup.items():
            entries.sort()
            self._lookup[version] = ([e[0] for e in entries], [(e[1], e[2]) for e in entries])
        self._pools = {pool.name: _PoolState(pool, {}) for pool in config.pools}

        # In assignment order, each checked against the survivors before it: when the new config forbids two
        # Services to share (a pool's ip-sharing scope narrowed), the one that held the IP first keeps it.
        outcomes: dict[str, tuple[str, tuple[IPAddress, ...]] | str] = {}
        survivors: dict[IPAddress, set[str]] = {}
        for key, assignment in self._assignments.items():
            outcome = outcomes[key] = self._usable(self._requests[key], assignment.ips, survivors)
            if not isinstance(outcome, str):
                for ip in outcome[1]:
                    survivors.setdefault(ip, set()).add(key)
        withdrawn = sorted(key for key, outcome in outcomes.items() if isinstance(outcome, str))
        for key, outcome in outcomes.items():
            if isinstance(outcome, str):
                del self._assignments[key]
                del self._requests[key]
            else:
                self._assignments[key] = Assignment(key, outcome[1], outcome[0])

        # Rebuild holders, shared index and free sets from the surviving assignments in one sweep per pool.
        self._holders = {}
        self._shared = {}
        held_in_pool: dict[str, dict[int, set[int]]] = {}
        for key, assignment in self._assignments.items():
            request = self._requests[key]
            for ip in assignment.ips:
                self._holders.setdefault(ip, set()).add(key)
                held_in_pool.setdefault(assignment.pool, {}).setdefault(ip.version, set()).add(int(ip))
                if request.sharing_key is not None:
                    shared_key = (assignment.pool, ip.version, request.sharing_key)
                    self._shared.setdefault(shared_key, set()).add(ip)
        for name, state in self._pools.items():
            held = held_in_pool.get(name, {})
            for version in state.pool.versions():
                ranges = [(int(r.first), int(r.last)) for r in state.pool.ranges if r.version == version]
                state.free[version] = IntervalSet.from_ranges(ranges, held.get(version, ()))
                state.in_use[version] = len(held.get(version, ()))
        return withdrawn

    # ------------------------------------------------------------------------------------------- mutations

    def release(self, key: str) -> None:
        assignment = self._assignments.pop(key, None)
        request = self._requests.pop(key, None)
        if assignment is None or request is None:
            return
        for ip in assignment.ips:
            holders = self._holders.get(ip)
            if holders is None:
                continue
            holders.discard(key)
            if holders:
                continue
            del self._holders[ip]
            if request.sharing_key is not None:
                shared = self._shared.get((assignment.pool, ip.version, request.sharing_key))
                if shared is not None:
                    shared.discard(ip)
                    if not shared:
                        del self._shared[(assignment.pool, ip.version, request.sharing_key)]
            state = self._pools.get(assignment.pool)
            if state is not None and ip.version in state.free:
                state.free[ip.version].add(int(ip))
                state.in_use[ip.version] -= 1

    def _occupy(self, request: ServiceRequest, pool_name: str, ips: Sequence[IPAddress]) -> Assignment:
        """Record ``ips`` for the request; the caller has checked they are free or shareable."""
        state = self._pools[pool_name]
        for ip in ips:
            holders = self._holders.setdefault(ip, set())
            if not holders:
                state.free[ip.version].discard(int(ip))
                state.in_use[ip.version] += 1
            holders.add(request.key)
            if request.sharing_key is not None:
                self._shared.setdefault((pool_name, ip.version, request.sharing_key), set()).add(ip)
        assignment = Assignment(request.key, tuple(ips), pool_name)
        self._assignments[request.key] = assignment
        self._requests[request.key] = request
        return assignment

    def assign(self, request: ServiceRequest) -> Assignment:
        """Give the Service its IPs. Idempotent: an existing assignment still valid for this request is kept.

        A changed request (address-pool annotation, requested IPs, families, sharing rules) that the current
        IPs no longer satisfy gets new IPs; the old ones are released first. Raises AllocationError, in which
        case the Service holds nothing.
        """
        existing = self._assignments.get(request.key)
        if existing is not None:
            kept = tuple(ip for ip in existing.ips if ip.version in request.families)
            outcome = self._usable(request, kept) if kept else "no IP of a requested family"
            self.release(request.key)
            if not isinstance(outcome, str):
                pool_name, ips = outcome
                ips = ips + self._top_up(request, pool_name, ips)
                ips = tuple(sorted(ips, key=lambda ip: request.families.index(ip.version)))
                return self._occupy(request, pool_name, ips)
        pool_name, ips = self._allocate(request)
        return self._occupy(request, pool_name, ips)

    def restore(self, request: ServiceRequest, ips: Sequence[IPAddress]) -> Assignment | None:
        """Adopt ``ips`` (from the Service's status, at controller start) if valid for the request: in one
        pool the Service may use, free or shareable, of its families. None otherwise (then call assign())."""
        existing = self._assignments.get(request.key)
        if existing is not None and set(existing.ips) == set(ips) and self._requests[request.key] == request:
            return existing
        if not ips or len(set(ips)) != len(ips):
            return None
        outcome = self._usable(request, tuple(ips))
        if isinstance(outcome, str):
            return None
        self.release(request.key)
        return self._occupy(request, outcome[0], outcome[1])

    def hold(self, request: ServiceRequest, ips: Sequence[IPAddress]) -> Assignment | None:
        """Take ``ips`` (from the Service's status, at controller start) for the request's key without asking
        whether the request wants them (its families, requested IPs, address-pool, serviceAllocation): only
        that they are one per family, in one pool, and free or shareable under the request's sharing rules.
        None otherwise. Pair with holding_request(): an IP a Service shows is then never given to another
        Service, whatever its request says now; assign() with its real request later moves it."""
        versions = [ip.version for ip in ips]
        if not ips or len(set(versions)) != len(versions):
            return None
        pools = {self.pool_for(ip) for ip in ips}
        if len(pools) != 1 or None in pools:
            return None
        (pool,) = pools
        assert pool is not None
        if any(self._conflict(request, ip, pool) is not None for ip in ips):
            return None
        self.release(request.key)
        return self._occupy(request, pool.name, tuple(ips))

    # ------------------------------------------------------------------------------------------- decisions

    def _usable(
        self,
        request: ServiceRequest,
        ips: Sequence[IPAddress],
        holders: dict[IPAddress, set[str]] | None = None,
    ) -> tuple[str, tuple[IPAddress, ...]] | str:
        """(pool name, IPs in family order) if the request may hold exactly ``ips``, else why not;
        ``holders`` replaces the current holders of each IP (set_config checks against survivors)."""
        versions = [ip.version for ip in ips]
        if len(set(versions)) != len(versions):
            return "more than one IP of a family"
        if any(version not in request.families for version in versions):
            return "an IP of a family the Service does not ask for"
        if request.require_all_families and set(versions) != set(request.families):
            return "RequireDualStack needs an IP of each family"
        if request.requested_ips and set(ips) != set(request.requested_ips):
            return "not the requested IPs"
        pools: set[str] = set()
        for ip in ips:
            pool = self.pool_for(ip)
            if pool is None:
                return self._outside_reason(ip)
            pools.add(pool.name)
        if len(pools) != 1:
            names = ", ".join(f'"{name}"' for name in sorted(pools))
            listed = ", ".join(map(str, ips))
            return f"the IPs {listed} are in different pools ({names}); one pool must hold them all"
        pool_name = pools.pop()
        pool = self._pools[pool_name].pool
        if request.pool is not None and request.pool != pool_name:
            return f'{", ".join(map(str, ips))} is in pool "{pool_name}", not in pool "{request.pool}"'
        if not _admits(pool, request):
            return f'pool "{pool_name}" does not admit Service {request.key} (its serviceAllocation)'
        for ip in ips:
            problem = self._conflict(request, ip, pool, holders)
            if problem is not None:
                return problem
        ordered = tuple(sorted(ips, key=lambda ip: request.families.index(ip.version)))
        return pool_name, ordered

    def _outside_reason(self, ip: IPAddress) -> str:
        lookup = self._lookup.get(ip.version)
        if lookup is not None:
            starts, entries = lookup
            i = bisect_right(starts, int(ip)) - 1
            if i >= 0 and entries[i][0] >= int(ip):
                return f'"{ip}" ends in .0 or .255 and pool "{entries[i][1]}" has avoid-buggy-ips set'
        return f'"{ip}" is not in any pool'

    def _conflict(
        self,
        request: ServiceRequest,
        ip: IPAddress,
        pool: Pool,
        holders: dict[IPAddress, set[str]] | None = None,
    ) -> str | None:
        """Why ``request`` may not share ``ip`` with its holders, or None. The reason goes into an Event in
        the requester's namespace: a holder in another namespace is not named, nor anything about it."""
        for holder in sorted((self._holders if holders is None else holders).get(ip, ())):
            if holder == request.key:
                continue
            holder_request = self._requests[holder]
            problem = _sharing_problem(request, holder_request, pool)
            if problem is None:
                continue
            if holder_request.namespace == request.namespace:
                return f'"{ip}" is already in use by {holder}: {problem}'
            reason = f'"{ip}" is already in use by a Service in another namespace'
            if pool.ip_sharing == IP_SHARING_NAMESPACE:
                reason += f' (pool "{pool.name}" shares IPs only between Services of one namespace)'
            return reason
        return None

    def _pick(self, request: ServiceRequest, state: _PoolState, version: int) -> IPAddress | None:
        """The IP of ``version`` the request would get in this pool: the lowest IP it can share under its
        sharing key, else the lowest free one. (MetalLB takes whichever its scan meets first; preferring the
        shared IP keeps Services that asked to share together even when a lower address is free.)"""
        if request.sharing_key is not None:
            shared = self._shared.get((state.pool.name, version, request.sharing_key), ())
            for ip in sorted(shared):
                if self._conflict(request, ip, state.pool) is None:
                    return ip
        return state.lowest_free(version)

    def _top_up(
        self, request: ServiceRequest, pool_name: str, ips: tuple[IPAddress, ...]
    ) -> tuple[IPAddress, ...]:
        """IPs for families a kept dual-stack assignment lacks (e.g. ipFamilyPolicy changed to
        PreferDualStack, or the pool gained that family), when the pool has room."""
        if request.requested_ips:
            return ()
        have = {ip.version for ip in ips}
        extra = []
        for version in request.families:
            if version not in have and version in self._pools[pool_name].free:
                ip = self._pick(request, self._pools[pool_name], version)
                if ip is not None:
                    extra.append(ip)
        return tuple(extra)

    def _picks(self, request: ServiceRequest, state: _PoolState) -> tuple[IPAddress, ...]:
        picks = []
        for version in request.families:
            ip = self._pick(request, state, version) if version in state.free else None
            if ip is not None:
                picks.append(ip)
        return tuple(picks)

    def _allocate(self, request: ServiceRequest) -> tuple[str, tuple[IPAddress, ...]]:
        if request.requested_ips:
            outcome = self._usable(request, request.requested_ips)
            if isinstance(outcome, str):
                requested = ", ".join(map(str, request.requested_ips))
                held = any(self._holders.get(ip, set()) - {request.key} for ip in request.requested_ips)
                pool = self.pool_for(request.requested_ips[0])
                waiting_on = (pool.name,) if held and pool is not None else ()
                raise AllocationError(f"cannot assign {requested}: {outcome}", waiting_on)
            return outcome

        wanted = len(request.families)
        if request.pool is not None:
            state = self._pools.get(request.pool)
            if state is None:
                raise AllocationError(f'unknown pool "{request.pool}"')
            if not _admits(state.pool, request):
                raise AllocationError(
                    f'pool "{request.pool}" does not admit Service {request.key} (its serviceAllocation)'
                )
            missing = [v for v in request.families if v not in state.free]
            if missing and (request.require_all_families or len(missing) == wanted):
                families = "/".join(_family(v) for v in missing)
                raise AllocationError(f'pool "{request.pool}" has no {families} addresses')
            picks = self._picks(request, state)
            if not picks or (request.require_all_families and len(picks) < wanted):
                raise AllocationError(f'no available IPs in pool "{request.pool}"', (request.pool,))
            return request.pool, picks

        candidates = self._candidate_pools(request)
        if not candidates:
            raise AllocationError(
                f"no pool available for Service {request.key}: no auto-assign pool "
                f"with {'/'.join(_family(v) for v in request.families)} addresses admits it"
            )
        # Prefer a pool that gives every family; a PreferDualStack Service then settles for fewer.
        partial: tuple[str, tuple[IPAddress, ...]] | None = None
        for state in candidates:
            picks = self._picks(request, state)
            if len(picks) == wanted:
                return state.pool.name, picks
            if picks and partial is None:
                partial = (state.pool.name, picks)
        if partial is not None and not request.require_all_families:
            return partial
        pools = tuple(state.pool.name for state in candidates)
        if len(candidates) == 1:
            raise AllocationError(f'no available IPs in pool "{candidates[0].pool.name}"', pools)
        names = ", ".join(f'"{name}"' for name in pools)
        raise AllocationError(f"no available IPs in pools {names}", pools)

    def _candidate_pools(self, request: ServiceRequest) -> list[_PoolState]:
        """Auto-assign pools for the request, best first: admitting pools with a serviceAllocation by
        priority (lower first, none last) then name, then pools without one by name."""
        with_allocation: list[tuple[bool, int, str, _PoolState]] = []
        without: list[tuple[str, _PoolState]] = []
        for name, state in self._pools.items():
            pool = state.pool
            if not pool.auto_assign or not any(v in state.free for v in request.families):
                continue
            if pool.service_allocation is None:
                without.append((name, state))
            elif _admits(pool, request):
                priority = pool.service_allocation.priority
                with_allocation.append((priority is None, priority or 0, name, state))
        with_allocation.sort(key=lambda entry: entry[:3])
        without.sort(key=lambda entry: entry[0])
        return [entry[3] for entry in with_allocation] + [entry[1] for entry in without]

