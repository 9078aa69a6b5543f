"""Partial syncs keep the nftables record equal to what a full sync of the same snapshot records (pure)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.nftables.ruleset import NftConfig
from dataplane.nftables.transaction import Record, plan_full, plan_partial
from tests.unit.dataplane.strategies import snapshots

CONFIG = NftConfig(family=4, local_cidrs=("10.244.0.0/16",), node_ips=("192.168.10.11",))


def recorded(snapshot) -> Record:
    record = Record()
    plan_full(record, CONFIG, snapshot, None).commit()
    return record


@settings(max_examples=60, deadline=None)
@given(st.lists(snapshots(), min_size=2, max_size=5))
def test_partial_syncs_track_a_full_sync(sequence):
    record = recorded(sequence[0])
    previous = sequence[0]
    for snapshot in sequence[1:]:
        updates = {key: snapshot.get(key) for key in set(previous) | set(snapshot)}
        plan_partial(record, updates).commit()
        previous = snapshot
    expected = recorded(previous)
    assert record.services == expected.services
    assert record.claims == expected.claims
    assert record.refs == expected.refs
    assert record.chains == expected.chains
    assert record.sets == expected.sets


@settings(max_examples=30, deadline=None)
@given(snapshots())
def test_a_partial_sync_of_nothing_new_sends_nothing(snapshot):
    record = recorded(snapshot)
    assert plan_partial(record, dict(snapshot)).text == ""
