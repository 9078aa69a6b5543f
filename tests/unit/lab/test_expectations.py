"""Controllers' expectations of their own writes (pure)."""

from __future__ import annotations

from typing import Any

from lab.controllers.expectations import Expectations, observed


def obj(version: str) -> dict[str, Any]:
    return {"metadata": {"resourceVersion": version}}


def test_observed() -> None:
    assert observed(None, None)
    assert not observed(obj("5"), None)
    assert not observed(None, "5")
    assert observed(obj("5"), "5") and observed(obj("9"), "5")
    assert not observed(obj("4"), "5")
    assert not observed(obj("abc"), "5")  # opaque versions only match exactly


def test_waits_for_writes_then_forgets() -> None:
    cache: dict[tuple[str, str], dict[str, Any]] = {}
    exp = Expectations(timeout=5)
    owner = ("default", "svc")
    exp.expect(owner, ("default", "slice-a"), "10", now=0)
    exp.expect(owner, ("default", "slice-b"), None, now=0)
    cache[("default", "slice-b")] = obj("3")
    assert not exp.satisfied(owner, cache.get, now=1)
    cache[("default", "slice-a")] = obj("10")
    assert not exp.satisfied(owner, cache.get, now=1)
    assert exp.pending(owner) == {("default", "slice-b"): None}
    del cache[("default", "slice-b")]
    assert exp.satisfied(owner, cache.get, now=1)
    assert exp.pending(owner) == {}
    assert exp.satisfied(("default", "other"), cache.get, now=1)


def test_deadline_releases_a_lost_write() -> None:
    exp = Expectations(timeout=5)
    exp.expect(("ns", "d"), ("ns", "pod"), "7", now=0)
    assert not exp.satisfied(("ns", "d"), lambda k: None, now=4.9)
    assert exp.satisfied(("ns", "d"), lambda k: None, now=5)
    exp.expect(("ns", "d"), ("ns", "pod"), "8", now=0)
    exp.forget(("ns", "d"))
    assert exp.satisfied(("ns", "d"), lambda k: None, now=0)
