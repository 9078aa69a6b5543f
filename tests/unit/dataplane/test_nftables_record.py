"""Partial syncs keep the nftables record equal to what a full sync of the same snapshot records, and the
netlink reader parses attributes (pure)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.backend import RenderConfig
from dataplane.nftables.kernel import parse_attributes
from dataplane.nftables.transaction import Record, plan_full, plan_partial
from tests.unit.dataplane.strategies import snapshots

CONFIG = RenderConfig(family=4, local_cidrs=("10.244.0.0/16",), node_ips=("192.168.10.11",))


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


def test_netlink_attributes_are_parsed_with_padding_and_flags():
    name = b"ironlb\0"  # 7 bytes: padded to 8
    data = (
        (4 + len(name)).to_bytes(2, "little")
        + (1).to_bytes(2, "little")
        + name
        + b"\0"
        + (8).to_bytes(2, "little")
        + (3 | 0x8000).to_bytes(2, "little")
        + (0x8).to_bytes(4, "big")
    )
    assert parse_attributes(data) == {1: name, 3: (0x8).to_bytes(4, "big")}
