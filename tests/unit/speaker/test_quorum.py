"""When a speaker may announce: joined, not isolated, reaching most, and a majority of the expected."""

from __future__ import annotations

import pytest

from speaker.membership import ring_key
from speaker.quorum import Standing, stale_members, standing

THREE = {"node1", "node2", "node3"}


def decide(
    alive: set[str], leases: set[str] = THREE, stale: set[str] | None = None, **flags: bool
) -> Standing:
    options = {"joined": True, "isolated": False, "reachable": True, **flags}
    return standing("node1", alive, leases, stale or set(), **options)


@pytest.mark.parametrize(
    ("alive", "leases", "stale", "announce"),
    [
        (THREE, THREE, set(), True),
        ({"node1", "node2"}, THREE, set(), True),  # one dead of three: the other two go on
        ({"node1"}, THREE, set(), False),  # two dead or cut off: stand down...
        ({"node1"}, THREE, {"node2", "node3"}, True),  # ...until their Leases go stale
        ({"node1"}, {"node1", "node3"}, set(), None),  # an even split: the side holding the first wins
        ({"node1"}, set(), set(), True),  # no Lease yet anywhere: alone, it counts itself
        ({"node1", "node9"}, THREE, set(), False),  # a live speaker without a Lease does not count
    ],
)
def test_majority_of_the_expected(
    alive: set[str], leases: set[str], stale: set[str], announce: bool | None
) -> None:
    result = decide(alive, leases, stale)
    if announce is None:
        first = min(leases | {"node1"}, key=ring_key)
        announce = first == "node1"
    assert result.announce is announce, result


def test_even_split_exactly_one_side_goes_on() -> None:
    for pair in (("a", "b"), ("node1", "node2"), ("x", "node3")):
        sides = [
            standing(me, {me}, set(pair), set(), joined=True, isolated=False, reachable=True) for me in pair
        ]
        assert sorted(s.announce for s in sides) == [False, True]


def test_flags_come_first() -> None:
    assert decide(THREE, joined=False) == Standing(False, "joining the membership")
    assert decide(THREE, isolated=True).reason == "isolated: no other speaker heard"
    assert decide(THREE, reachable=False).reason == "in a minority: most speakers do not answer"
    assert decide({"node1"}).reason == "no majority: 1 of 3 expected speakers alive"


def test_stale_only_while_this_speaker_reads_a_live_api() -> None:
    renewed = {"node1": 99.0, "node2": 95.0, "node3": 80.0}
    assert stale_members(renewed, 100.0, 10.0, own_renewed=99.0) == {"node3"}
    assert stale_members(renewed, 100.0, 10.0, own_renewed=85.0) == frozenset()  # its own renewals fail
    assert stale_members(renewed, 100.0, 10.0, own_renewed=None) == frozenset()
