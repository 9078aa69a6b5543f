"""k8s.informer against the embedded API server: list + watch, transform, 410 relists, restarts, resync."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from k8s.client import Client
from k8s.informer import Handlers, Informer
from k8s.meta import JSON, resource_version
from k8s.store import EncodedStore
from lab.apiserver.process import ApiServerProcess
from tests.k8s.conftest import CMS, configmap

Seen = tuple[str, str]  # (callback, object name)


class Recorder:
    """Handlers that put what they see on a queue, so a test waits for an event instead of sleeping."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, JSON, JSON | None]] = queue.Queue()

    def handlers(self) -> Handlers:
        return Handlers(
            on_add=lambda obj: self.events.put(("add", obj, None)),
            on_update=lambda old, new: self.events.put(("update", new, old)),
            on_delete=lambda obj: self.events.put(("delete", obj, None)),
        )

    def next(self, timeout: float = 10.0) -> tuple[str, JSON, JSON | None]:
        return self.events.get(timeout=timeout)

    def take(self, count: int, timeout: float = 10.0) -> set[Seen]:
        return {
            (kind, obj["metadata"]["name"]) for kind, obj, _ in (self.next(timeout) for _ in range(count))
        }

    def quiet(self) -> bool:
        return self.events.empty()


def slim(obj: JSON) -> JSON:
    metadata = obj["metadata"]
    return {
        "metadata": {"name": metadata["name"], "namespace": metadata["namespace"]},
        "data": obj.get("data"),
    }


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_lists_in_pages_watches_transforms_and_reports(
    client: Client, cms: str, ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("a", "b", "c"):
        client.create(cms, configmap(name, k=name))
    pages: list[str | None] = []

    class Counting(Client):
        def _send(self, method: str, path: str, query: Any, *args: Any) -> Any:
            pages.append((query or {}).get("continue"))
            return super()._send(method, path, query, *args)

    recorder = Recorder()
    handlers = recorder.handlers()

    def on_add(obj: JSON) -> None:
        if obj["metadata"]["name"] == "faulty":
            raise RuntimeError("a handler bug")
        handlers.on_add(obj)

    counting = Counting(client.configuration)
    informer = Informer(
        counting,
        cms,
        Handlers(on_add=on_add, on_update=handlers.on_update, on_delete=handlers.on_delete),
        transform=slim,
        page_size=2,
    ).start()
    try:
        assert informer.wait_for_sync(10)
        assert informer.has_synced()
        assert recorder.take(3) == {("add", "a"), ("add", "b"), ("add", "c")}
        assert len(pages) == 2 and pages[1]  # 3 objects, 2 per page
        assert sorted(informer.keys()) == [f"{ns}/a", f"{ns}/b", f"{ns}/c"]
        assert informer.get(ns, "a") == {
            "metadata": {"name": "a", "namespace": ns},
            "data": {"k": "a"},
        }

        with caplog.at_level(logging.ERROR, logger="k8s.informer"):
            client.create(cms, configmap("faulty"))
            client.create(cms, configmap("d", k="d"))
            kind, obj, _ = recorder.next()
        assert (kind, obj["metadata"]["name"]) == ("add", "d")  # the faulty handler did not stop the informer
        assert "event=handler_failed" in caplog.text
        assert informer.get(ns, "faulty") is not None

        client.merge_patch(f"{cms}/a", {"data": {"k": "changed"}})
        kind, new, old = recorder.next()
        assert kind == "update" and old is not None
        assert (old["data"], new["data"]) == ({"k": "a"}, {"k": "changed"})
        client.delete(f"{cms}/b")
        assert recorder.take(1) == {("delete", "b")}
        assert informer.get(ns, "b") is None
        assert len(informer) == 4
    finally:
        informer.stop()
        counting.close()


def test_an_expired_watch_relists_and_reports_what_changed_meanwhile(
    short_history: ApiServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client.load(str(short_history.kubeconfig))
    for name in ("keep", "gone", "changes"):
        client.create(CMS, configmap(name))
    recorder = Recorder()
    entered, release = threading.Event(), threading.Event()

    def on_add(obj: JSON) -> None:
        if obj["metadata"]["name"] == "block":
            entered.set()
            release.wait(30)  # hold the informer thread while its watch's version falls out of the history
        recorder.events.put(("add", obj, None))

    handlers = recorder.handlers()
    informer = Informer(
        client,
        CMS,
        Handlers(on_add=on_add, on_update=handlers.on_update, on_delete=handlers.on_delete),
        transform=slim,  # no resourceVersion kept: the relist compares content
        watch_timeout=1,
    ).start()
    try:
        assert informer.wait_for_sync(10)
        assert recorder.take(3) == {("add", "keep"), ("add", "gone"), ("add", "changes")}
        with caplog.at_level(logging.INFO, logger="k8s.informer"):
            client.create(CMS, configmap("block"))
            assert entered.wait(10)
            # Wait until the server has ended the informer's watch (timeoutSeconds=1), so that what follows
            # is not in its stream: a watch opened now with the same timeout ends after it, since the server
            # runs both on one event loop and its timers fire in deadline order.
            version = client.get(CMS)["metadata"]["resourceVersion"]
            assert list(client.watch(CMS, version, timeout_seconds=1, bookmarks=False)) == []
            client.delete(f"{CMS}/gone")
            client.merge_patch(f"{CMS}/changes", {"data": {"k": "v"}})
            for i in range(6):  # more writes than the server keeps: the informer's version expires
                client.create(CMS, configmap(f"n{i}"))
            release.set()
            assert recorder.take(1) == {("add", "block")}
            seen = recorder.take(8)
        assert seen == {("delete", "gone"), ("update", "changes"), *{("add", f"n{i}") for i in range(6)}}
        wait_for(lambda: informer._watch is not None)  # the relist is over: nothing else was reported
        assert recorder.quiet()
        assert "event=watch_expired" in caplog.text
        assert sorted(informer.keys()) == sorted(f"default/{i['metadata']['name']}" for i in client.list(CMS))
    finally:
        release.set()
        informer.stop()
        client.close()


def test_survives_an_api_server_restart(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "srv"
    server = ApiServerProcess(data).start()
    port = server.port
    client = Client.load(str(server.kubeconfig), timeout=5)
    recorder = Recorder()
    informer = Informer(client, CMS, recorder.handlers(), backoff_initial=0.1, backoff_max=0.5).start()
    try:
        client.create(CMS, configmap("before"))
        assert informer.wait_for_sync(10)
        assert recorder.take(1) == {("add", "before")}
        with caplog.at_level(logging.WARNING, logger="k8s.informer"):
            server.stop()
            wait_for(lambda: "event=watch_failed" in caplog.text)
        assert informer.has_synced() and informer.get("default", "before") is not None  # the cache stays
        server = ApiServerProcess(data, port=port).start()
        client.create(CMS, configmap("after"))
        assert recorder.take(1, timeout=30) == {("add", "after")}
        client.delete(f"{CMS}/before")
        assert recorder.take(1) == {("delete", "before")}
    finally:
        informer.stop()
        client.close()
        server.stop()


def test_resync_redelivers_the_cache_as_updates(client: Client, cms: str) -> None:
    client.create(cms, configmap("r"))
    recorder = Recorder()
    informer = Informer(client, cms, recorder.handlers(), resync_period=0.2).start()
    try:
        assert recorder.take(1) == {("add", "r")}
        for _ in range(2):
            kind, new, old = recorder.next()
            assert kind == "update" and old is new  # from the cache: no API call, the very same object
    finally:
        informer.stop()


async def test_handlers_can_deliver_to_an_asyncio_loop(client: Client, cms: str) -> None:
    loop = asyncio.get_running_loop()
    received: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    handlers = Handlers(
        on_add=lambda obj: received.put_nowait((obj["metadata"]["name"], threading.get_ident()))
    )
    informer = Informer(client, cms, handlers.on_loop(loop)).start()
    try:
        await asyncio.to_thread(client.create, cms, configmap("async"))
        name, thread = await asyncio.wait_for(received.get(), 10)
        assert (name, thread) == ("async", threading.get_ident())  # ran on the loop's thread
    finally:
        await asyncio.to_thread(informer.stop)


def test_stop_ends_an_open_watch_at_once(client: Client, cms: str) -> None:
    informer = Informer(client, cms, watch_timeout=300).start()
    assert informer.wait_for_sync(10)
    wait_for(lambda: informer._watch is not None)  # the watch is open
    began = time.monotonic()
    informer.stop()
    assert time.monotonic() - began < 3
    assert not any(t.is_alive() for t in informer._threads)


def versioned(obj: JSON) -> JSON:
    return {**slim(obj), "metadata": {**slim(obj)["metadata"], "resourceVersion": resource_version(obj)}}


def test_own_writes_are_remembered_once_and_the_encoded_store_hands_out_copies(
    client: Client, cms: str
) -> None:
    client.create(cms, configmap("mine", k="1"))
    recorder = Recorder()
    entered, release = threading.Event(), threading.Event()
    handlers = recorder.handlers()

    def on_add(obj: JSON) -> None:
        if obj["metadata"]["name"] == "block":
            entered.set()
            release.wait(30)  # hold the informer thread: our write's answer comes before its watch event
        handlers.on_add(obj)

    informer = Informer(
        client,
        cms,
        Handlers(on_add=on_add, on_update=handlers.on_update, on_delete=handlers.on_delete),
        transform=versioned,
        store=EncodedStore,
    ).start()
    try:
        assert recorder.take(1) == {("add", "mine")}
        client.create(cms, configmap("block"))
        assert entered.wait(10)
        written = client.merge_patch(f"{cms}/mine", {"data": {"k": "2"}})
        assert informer.remember(written)
        assert not informer.remember(written)  # the same version again: nothing to do
        ns = written["metadata"]["namespace"]
        assert informer.get(ns, "mine") == versioned(written)
        release.set()
        assert recorder.take(1) == {("add", "block")}
        # The write's own watch event arrives later and is not reported: the cache had it already.
        wait_for(lambda: informer.resource_version == resource_version(written))
        assert recorder.quiet()
        copy = informer.get(ns, "mine")
        assert copy is not None
        copy["data"]["k"] = "changed by the reader"
        assert informer.get(ns, "mine") == versioned(written)
        client.merge_patch(f"{cms}/mine", {"data": {"k": "3"}})  # someone else's write is reported
        kind, new, old = recorder.next()
        assert kind == "update" and (old or {})["data"] == {"k": "2"} and new["data"] == {"k": "3"}
    finally:
        release.set()
        informer.stop()


def test_relist_period_lists_again_and_reports_only_what_changed(client: Client, cms: str) -> None:
    client.create(cms, configmap("steady"))
    lists: list[float] = []

    class Counting(Client):
        def _send(self, method: str, path: str, query: Any, *args: Any) -> Any:
            lists.append(time.monotonic())
            return super()._send(method, path, query, *args)

    counting = Counting(client.configuration)
    recorder = Recorder()
    informer = Informer(counting, cms, recorder.handlers(), transform=versioned, relist_period=1).start()
    try:
        assert recorder.take(1) == {("add", "steady")}
        wait_for(lambda: len(lists) >= 3)  # watches only go through Client.watch: these are lists
        assert lists[2] - lists[0] >= 1.5
        assert recorder.quiet()
    finally:
        informer.stop()
        counting.close()


def test_a_resource_not_installed_is_empty_and_synced_with_missing_ok(client: Client) -> None:
    path = "/apis/example.ironlb.io/v1/namespaces/default/widgets"
    informer = Informer(client, path, missing_ok=True, backoff_max=0.2).start()
    strict = Informer(client, path, backoff_max=0.2).start()
    try:
        assert informer.wait_for_sync(10) and len(informer) == 0
        assert not strict.wait_for_sync(1)
    finally:
        informer.stop()
        strict.stop()
