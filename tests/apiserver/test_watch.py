"""Watch semantics: ordering, resume from a resourceVersion, selector transitions, bookmarks, 410."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.apiserver.process import ApiServerProcess
from tests.apiserver.rest import Rest, configmap

CMS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
def tuned(tmp_path: Path) -> Iterator[Rest]:
    """A server with fast bookmarks and a tiny history window."""
    server = ApiServerProcess(
        tmp_path / "srv", extra_args=["--watch-bookmark-interval", "0.3", "--history-size", "5"]
    )
    server.start()
    client = Rest(server.kubeconfig)
    try:
        yield client
    finally:
        client.close()
        server.stop()


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]


def test_watch_from_resource_version_is_ordered_and_resumable(rest: Rest) -> None:
    start = rest.ok("POST", CMS, configmap("a"))["metadata"]["resourceVersion"]
    rest.ok("POST", CMS, configmap("b"))
    mid = rest.ok("PATCH", f"{CMS}/a", {"data": {"k": "v"}}, content_type="application/merge-patch+json")
    rest.ok("DELETE", f"{CMS}/b")
    events = list(rest.watch(CMS, resourceVersion=start, timeoutSeconds="1"))
    assert summary(events) == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs) and rvs[0] > int(start)
    resumed = list(rest.watch(CMS, resourceVersion=mid["metadata"]["resourceVersion"], timeoutSeconds="1"))
    assert summary(resumed) == [("DELETED", "b")]


def test_watch_without_version_lists_first_then_streams_live(rest: Rest) -> None:
    rest.ok("POST", CMS, configmap("old"))
    stream = rest.watch(CMS, timeoutSeconds="30")
    try:
        # The server registers the watch before it sends the listing, so once "old" arrived the watch is live.
        listed = next(stream)
        rest.ok("POST", CMS, configmap("new"))
        live = next(stream)
    finally:
        stream.close()
    assert summary([listed, live]) == [("ADDED", "old"), ("ADDED", "new")]


def test_selector_watch_sees_objects_enter_and_leave(rest: Rest) -> None:
    start = rest.ok("POST", CMS, configmap("x", labels={"team": "a"}))["metadata"]["resourceVersion"]
    patch = "application/merge-patch+json"
    rest.ok("PATCH", f"{CMS}/x", {"metadata": {"labels": {"team": "b"}}}, content_type=patch)
    rest.ok("PATCH", f"{CMS}/x", {"metadata": {"labels": {"team": "a"}}}, content_type=patch)
    rest.ok("PATCH", f"{CMS}/x", {"data": {"k": "v"}}, content_type=patch)
    events = list(rest.watch(CMS, resourceVersion=start, labelSelector="team=a", timeoutSeconds="1"))
    assert summary(events) == [("DELETED", "x"), ("ADDED", "x"), ("MODIFIED", "x")]
    named = list(rest.watch(f"{CMS}", fieldSelector="metadata.name=nothere", timeoutSeconds="1"))
    assert named == []


def test_timeout_seconds_closes_the_stream(rest: Rest) -> None:
    began = time.monotonic()
    assert list(rest.watch(CMS, timeoutSeconds="1", resourceVersion="1")) == []
    assert 0.8 < time.monotonic() - began < 5


def test_bookmarks(tuned: Rest) -> None:
    rv = tuned.ok("POST", CMS, configmap("a"))["metadata"]["resourceVersion"]
    events = list(tuned.watch(CMS, resourceVersion=rv, allowWatchBookmarks="true", timeoutSeconds="1"))
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert len(bookmarks) >= 2
    assert bookmarks[0]["object"]["kind"] == "ConfigMap"
    assert int(bookmarks[-1]["object"]["metadata"]["resourceVersion"]) >= int(rv)
    initial = list(
        tuned.watch(
            CMS,
            sendInitialEvents="true",
            allowWatchBookmarks="true",
            timeoutSeconds="1",
            resourceVersionMatch="NotOlderThan",
        )
    )
    assert initial[0]["type"] == "ADDED"
    assert initial[1]["type"] == "BOOKMARK"
    assert initial[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_too_old_resource_version_gives_410(tuned: Rest) -> None:
    first = tuned.ok("POST", CMS, configmap("c0"))["metadata"]["resourceVersion"]
    for i in range(1, 10):
        tuned.ok("POST", CMS, configmap(f"c{i}"))
    events = list(tuned.watch(CMS, resourceVersion=first, timeoutSeconds="1"))
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert status["kind"] == "Status" and status["code"] == 410 and status["reason"] == "Expired"
    assert status["message"].startswith(f"too old resource version: {first} (")
    exact = tuned.request("GET", CMS, resourceVersion=first, resourceVersionMatch="Exact")
    assert exact.status_code == 410
    # A recent version is still in the window.
    latest = tuned.ok("GET", CMS)["metadata"]["resourceVersion"]
    assert list(tuned.watch(CMS, resourceVersion=latest, timeoutSeconds="1")) == []


def test_a_watch_that_times_out_loses_no_event(rest: Rest) -> None:
    """A client resuming from the last resourceVersion it saw (event or bookmark) sees every write, even when
    its watches keep timing out in the middle of a burst (the closing bookmark once skipped queued events)."""
    import concurrent.futures

    start = rest.ok("POST", CMS, configmap("burst-start"))["metadata"]["resourceVersion"]
    names = [f"burst-{i}" for i in range(1500)]
    writers = concurrent.futures.ThreadPoolExecutor(4)
    done = writers.map(lambda name: rest.ok("POST", CMS, configmap(name)), names)
    seen: set[str] = set()
    resume = start
    deadline = time.monotonic() + 120
    try:
        while len(seen) < len(names) and time.monotonic() < deadline:
            for event in rest.watch(
                CMS, resourceVersion=resume, timeoutSeconds="1", allowWatchBookmarks="true"
            ):
                resume = event["object"]["metadata"]["resourceVersion"]
                if event["type"] == "ADDED":
                    seen.add(event["object"]["metadata"]["name"])
    finally:
        list(done)
        writers.shutdown()
    assert sorted(set(names) - seen) == []


def test_a_slow_watcher_that_resumes_as_client_go_does_sees_every_version(tmp_path: Path) -> None:
    """Every committed version reaches a client-go-like reader: one that reads slowly (the server's writes
    back up), resumes from the last resourceVersion it saw (event or bookmark) when a watch times out, and
    lists again on 410 Gone (a tiny history forces that path). Each object's final resourceVersion must be
    what the reader holds: a gap (an event dropped, or a bookmark past an undelivered event) leaves an object
    stale. The controller's 5,000-Service burst stalled on such a gap (docs/benchmarks.md)."""
    import concurrent.futures

    server = ApiServerProcess(
        tmp_path / "srv", extra_args=["--watch-bookmark-interval", "0.2", "--history-size", "300"]
    ).start()
    writer, reader = Rest(server.kubeconfig), Rest(server.kubeconfig)
    pool = concurrent.futures.ThreadPoolExecutor(6)
    try:
        final: dict[str, int] = {}

        def create_then_update(name: str) -> None:
            writer.ok("POST", CMS, configmap(name, v="1"))
            patch = {"data": {"v": "2"}}
            updated = writer.ok("PATCH", f"{CMS}/{name}", patch, "application/merge-patch+json")
            final[name] = int(updated["metadata"]["resourceVersion"])

        def versions(listed: dict[str, Any]) -> dict[str, int]:
            return {o["metadata"]["name"]: int(o["metadata"]["resourceVersion"]) for o in listed["items"]}

        listed = reader.ok("GET", CMS)
        held = versions(listed)
        resume = listed["metadata"]["resourceVersion"]
        burst = [pool.submit(create_then_update, f"slow-{i}") for i in range(1000)]
        relists = watches = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            writes_done = all(f.done() for f in burst)
            watches += 1
            for event in reader.watch(
                CMS, resourceVersion=resume, timeoutSeconds="1", allowWatchBookmarks="true"
            ):
                obj = event["object"]
                if event["type"] == "ERROR":
                    assert obj["code"] == 410, obj
                    relists += 1
                    listed = reader.ok("GET", CMS)
                    held = versions(listed)
                    resume = listed["metadata"]["resourceVersion"]
                    break
                resume = obj["metadata"]["resourceVersion"]
                if event["type"] in ("ADDED", "MODIFIED"):
                    held[obj["metadata"]["name"]] = int(resume)
                time.sleep(0.001)  # a slow consumer: the server's socket buffer fills while writes go on
            if writes_done and all(held.get(name) == rv for name, rv in final.items()):
                break
        for f in burst:
            f.result()
        stale = {name: (rv, held.get(name)) for name, rv in final.items() if held.get(name) != rv}
        assert stale == {}, f"{len(stale)} of {len(final)} stale after {watches} watches, {relists} relists"
    finally:
        pool.shutdown(cancel_futures=True)
        writer.close()
        reader.close()
        server.stop()
