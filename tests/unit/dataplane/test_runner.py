from dataplane.runner import Schedule


def test_first_sync_runs_at_once_then_bursts_collapse_into_the_floor() -> None:
    schedule = Schedule(min_interval=1.0, max_interval=30.0)
    assert schedule.due(100.0) <= 100.0
    schedule.started(100.0)
    schedule.request()
    schedule.request()
    assert schedule.due(100.2) == 101.0  # not before min_interval after the last start
    schedule.started(101.0)
    assert not schedule.requested


def test_periodic_and_retry() -> None:
    schedule = Schedule(min_interval=1.0, max_interval=30.0)
    schedule.started(0.0)
    assert schedule.due(5.0) == 30.0  # nothing asked: the periodic sync
    schedule.retry(at=4.0)
    assert schedule.due(2.0) == 4.0
    schedule.retry(at=0.2)
    assert schedule.due(0.1) == 1.0  # a retry still respects the floor
