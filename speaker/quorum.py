"""Whether this speaker may announce at all: the partition rules of docs/speaker.md, as a pure function.

Each speaker holds a Lease (coordination.k8s.io, one per node) that it renews every few seconds; the Leases
say which speakers exist. A speaker announces only when

- it has joined the membership (it knows the others' table, or it found it is alone),
- it is not isolated (it hears someone) and reaches most of the members it holds alive (membership samples),
- the live members in its view are a majority of the expected ones: the speakers with a Lease, minus those
  whose Lease has gone unrenewed for ``stale_after`` (they are gone: a Lease deleted on SIGTERM leaves at
  once). An exact half wins when it holds the expected member first in ring order, so exactly one side of an
  even split goes on.

A Lease counts as unrenewed only while this speaker's own renewals succeed: when the API server is down for
everyone, nobody drops out of the expected set and the data plane goes on as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from speaker.membership import ring_key


@dataclass(frozen=True)
class Standing:
    announce: bool
    reason: str = ""  # why not, for the log and /readyz


def stale_members(
    renewed: Mapping[str, float], now: float, stale_after: float, own_renewed: float | None
) -> frozenset[str]:
    """Speakers whose Lease was last seen renewed more than ``stale_after`` ago. ``renewed`` maps a node to
    the time (this speaker's monotonic clock) its Lease was created or last seen to change; ``own_renewed``
    is when this speaker last renewed its own."""
    if own_renewed is None or now - own_renewed > stale_after:
        return frozenset()  # this speaker cannot read a live API: silence from the others means nothing
    return frozenset(name for name, at in renewed.items() if now - at > stale_after)


def standing(
    me: str,
    alive: AbstractSet[str],
    leases: AbstractSet[str],
    stale: AbstractSet[str],
    *,
    joined: bool,
    isolated: bool,
    reachable: bool,
) -> Standing:
    if not joined:
        return Standing(False, "joining the membership")
    if isolated:
        return Standing(False, "isolated: no other speaker heard")
    if not reachable:
        return Standing(False, "in a minority: most speakers do not answer")
    expected = (set(leases) - set(stale)) | {me}
    present = expected & (set(alive) | {me})
    if 2 * len(present) > len(expected):
        return Standing(True)
    if 2 * len(present) == len(expected) and min(expected, key=ring_key) in present:
        return Standing(True)
    return Standing(False, f"no majority: {len(present)} of {len(expected)} expected speakers alive")
