"""Partial syncs keep the record equal to what a full sync of the same snapshot would record (pure)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.backend import RenderConfig
from dataplane.iptables.restore import Record, apply_partial, full_restore, partial_restore
from dataplane.iptables.rules import ServiceRules, render_service, render_static
from dataplane.model import ServiceInfo, ServiceKey
from tests.unit.dataplane.strategies import snapshots

CONFIG = RenderConfig(family=4, local_cidrs=("10.244.0.0/16",), node_ips=("192.168.10.11",))


def rendered(snapshot: dict[ServiceKey, ServiceInfo]) -> dict[ServiceKey, ServiceRules]:
    return {key: render_service(info, CONFIG) for key, info in snapshot.items()}


@settings(max_examples=60, deadline=None)
@given(st.lists(snapshots(), min_size=2, max_size=5))
def test_partial_syncs_track_a_full_sync(sequence):
    static = render_static(CONFIG)
    record = Record()
    record.reset(static, rendered(sequence[0]))
    previous = sequence[0]
    for snapshot in sequence[1:]:
        changed = set(previous) | set(snapshot)
        updates = {key: render_service(snapshot[key], CONFIG) if key in snapshot else None for key in changed}
        partial_restore(record, updates)  # never raises while the record is right
        apply_partial(record, updates)
        previous = snapshot
    expected = Record()
    expected.reset(static, {k: v for k, v in rendered(previous).items() if v.chains or v.shared})
    assert record.services == expected.services
    assert record.shared == expected.shared


@settings(max_examples=30, deadline=None)
@given(snapshots())
def test_full_restore_declares_every_chain_it_fills(snapshot):
    text = full_restore(render_static(CONFIG), rendered(snapshot), services_per_transaction=2)
    declared = {line[1:].split()[0] for line in text.splitlines() if line.startswith(":")}
    filled = {line.split()[1] for line in text.splitlines() if line.startswith("-A ")}
    assert filled <= declared
