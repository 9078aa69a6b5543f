"""k8s.leader against the embedded API server: client-go's Lease rules, fencing, release and run()."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from k8s.client import Client
from k8s.leader import LeaderElector


def lease(client: Client, ns: str) -> dict[str, Any]:
    return client.get(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/ironlb-test")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(
    client: Client, ns: str, identity: str, clock: FakeClock | None = None, **timing: float
) -> LeaderElector:
    timing = {"lease_duration": 15.0, "renew_deadline": 10.0, "retry_period": 2.0, **timing}
    return LeaderElector(client, ns, "ironlb-test", identity, clock=clock or time.monotonic, **timing)


def test_one_holder_takeover_only_after_the_lease_duration_of_our_own_clock(client: Client, ns: str) -> None:
    a_clock, b_clock = FakeClock(), FakeClock()
    a, b = elector(client, ns, "a", a_clock), elector(client, ns, "b", b_clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # held, and just observed
    b_clock.now += 14.9
    assert not b.try_acquire_or_renew()  # the record has not changed, but not for 15 s of b's clock yet
    assert a.try_acquire_or_renew()  # a renews: the record changes
    b_clock.now += 14.9
    assert not b.try_acquire_or_renew()  # b starts counting again from the renewal it saw
    b_clock.now += 15.1
    assert b.try_acquire_or_renew()  # a went silent for a whole lease duration: b takes over
    spec = lease(client, ns)["spec"]
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    assert not a.try_acquire_or_renew()  # a sees b's fresh record and steps back


def test_may_write_ends_at_the_renew_deadline_even_before_the_renew_loop_notices(
    client: Client, ns: str
) -> None:
    clock = FakeClock()
    a = elector(client, ns, "a", clock)
    stop = threading.Event()
    assert a.acquire(stop) and a.is_leader
    assert a.may_write()
    clock.now += 9.9
    assert a.may_write()
    clock.now += 0.2  # paused past the deadline: still "leader" as far as the loop knows, but fenced
    assert a.is_leader and not a.may_write()
    assert a.try_acquire_or_renew()
    assert a.may_write()  # a successful renewal lifts the fence


def test_a_leader_that_cannot_renew_loses_and_stops(client: Client, ns: str) -> None:
    a = elector(client, ns, "a", lease_duration=3.0, renew_deadline=1.0, retry_period=0.2)
    stop = threading.Event()
    assert a.acquire(stop)
    # Another replica (with a clock far ahead, as if the lease had long expired) takes the lease over.
    far = FakeClock()
    usurper = elector(client, ns, "b", far, lease_duration=3.0, renew_deadline=1.0, retry_period=0.2)
    usurper.try_acquire_or_renew()
    far.now += 10
    assert usurper.try_acquire_or_renew()
    began = time.monotonic()
    assert a.renew(stop) is False  # lost: renewals fail until the deadline
    assert 0.9 < time.monotonic() - began < 5
    assert not a.is_leader and not a.may_write()


def test_run_releases_on_stop_so_a_standby_takes_over_at_once(
    client: Client, ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    timing = {"lease_duration": 30.0, "renew_deadline": 20.0, "retry_period": 0.1}
    a, b = elector(client, ns, "a", None, **timing), elector(client, ns, "b", None, **timing)
    stop_a, stop_b = threading.Event(), threading.Event()
    log: list[str] = []
    started = threading.Event()

    def on_started() -> None:
        log.append("a started")
        started.set()

    def run_a() -> None:
        a.run(stop_a, on_started, lambda: log.append("a stopped"))

    thread_a = threading.Thread(target=run_a)
    thread_a.start()
    assert started.wait(10)
    assert lease(client, ns)["spec"]["holderIdentity"] == "a"
    acquired_b: list[bool] = []
    thread_b = threading.Thread(target=lambda: acquired_b.append(b.acquire(stop_b)))
    with caplog.at_level(logging.INFO, logger="k8s.leader"):
        thread_b.start()
        deadline = time.monotonic() + 30
        while not any("event=leader_waiting" in r.getMessage() and "identity=b" in r.getMessage()
                      for r in caplog.records):
            assert time.monotonic() < deadline, "b never tried the lease"
            time.sleep(0.05)
    assert not acquired_b  # b tried and found the lease held: a holds a 30 s lease and renews it
    stop_a.set()
    thread_a.join(10)
    assert log == ["a started", "a stopped"]
    thread_b.join(5)  # far sooner than the 30 s lease duration: a handed the lease back
    assert acquired_b == [True]
    assert lease(client, ns)["spec"]["holderIdentity"] == "b"
    assert not a.may_write()


def test_timing_must_leave_room_to_step_down(client: Client, ns: str) -> None:
    with pytest.raises(ValueError):
        elector(client, ns, "a", lease_duration=10.0, renew_deadline=10.0)
    with pytest.raises(ValueError):
        elector(client, ns, "a", renew_deadline=2.4, retry_period=2.0)  # room for a single attempt only
    elector(client, ns, "a", renew_deadline=2.5, retry_period=2.0)


def test_the_leader_renews_with_one_write(client: Client, ns: str) -> None:
    calls: list[str] = []

    class Counting(Client):
        def request(self, method: str, path: str, **options: Any) -> Any:
            calls.append(method)
            return super().request(method, path, **options)

    with Counting(client.configuration) as counting:
        a = elector(counting, ns, "a")
        assert a.acquire(threading.Event())
        calls.clear()
        assert a.try_acquire_or_renew()
        assert calls == ["PUT"]  # the Lease as last written, guarded by its resourceVersion: no read
        lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/ironlb-test"
        client.merge_patch(lease_path, {"metadata": {"labels": {"touched": "by-someone-else"}}})
        calls.clear()
        assert a.try_acquire_or_renew()
        assert calls == ["PUT", "GET", "PUT"]  # the stale write conflicts: read, then write again
        assert lease(client, ns)["spec"]["holderIdentity"] == "a"
