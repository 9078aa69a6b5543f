"""An informer: a cache of one collection kept current by list + watch in its own thread, reporting changes.

As client-go's: list (paginated), then watch from the list's resourceVersion; a 410 Gone lists again at once,
a broken stream or a failed list lists again after a growing back-off. After a re-list, objects that vanished
meanwhile are reported deleted and changed ones updated, so no change is missed. `transform` runs on every
object as soon as it is decoded, before it is cached or delivered: a daemon keeps only the fields it reads
(memory), as client-go's TransformFunc; with `store=EncodedStore`, the cache keeps them as compact JSON text.
The transformed object must keep metadata.name and metadata.namespace; without its
metadata.resourceVersion, a relist compares content to tell what changed.

`remember` puts the answer of the daemon's own write into the cache (client-go's mutation cache): neither
that write's watch event nor an older list overwrites it or reports it again. `relist_period` lists the
whole collection again on a timer (a safety net for events lost in a watch gap, beyond the relist after a
410 or a broken stream). With `missing_ok`, a collection whose resource is not installed (404: a CRD not
applied yet) counts as empty and synced, and is listed again every `backoff_max`.

Callbacks run in the informer thread, one at a time, and must be quick: hand work to a queue (k8s.workqueue),
or to an asyncio loop with `Handlers.on_loop`. The cache is safe to read from any thread.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass

from k8s.client import ApiError, Client, Watch, WatchExpired
from k8s.meta import JSON, key_of, object_key, resource_version, rv_newer_or_equal

log = logging.getLogger("k8s.informer")

Transform = Callable[[JSON], JSON]


def _ignore_one(obj: JSON) -> None:
    return None


def _ignore_two(old: JSON, new: JSON) -> None:
    return None


@dataclass(frozen=True)
class Handlers:
    """client-go's ResourceEventHandlerFuncs. on_update(old, new) also runs for a periodic resync, with old
    and new the same object."""

    on_add: Callable[[JSON], None] = _ignore_one
    on_update: Callable[[JSON, JSON], None] = _ignore_two
    on_delete: Callable[[JSON], None] = _ignore_one

    @classmethod
    def by_type(cls, callback: Callable[[str, JSON], None]) -> Handlers:
        """One callback for everything, called with the watch event type: ADDED, MODIFIED or DELETED."""
        return cls(
            on_add=lambda obj: callback("ADDED", obj),
            on_update=lambda old, new: callback("MODIFIED", new),
            on_delete=lambda obj: callback("DELETED", obj),
        )

    def on_loop(self, loop: asyncio.AbstractEventLoop) -> Handlers:
        """The same callbacks, run on an asyncio loop rather than the informer thread (thread-safe)."""

        def add(obj: JSON) -> None:
            loop.call_soon_threadsafe(self.on_add, obj)

        def update(old: JSON, new: JSON) -> None:
            loop.call_soon_threadsafe(self.on_update, old, new)

        def delete(obj: JSON) -> None:
            loop.call_soon_threadsafe(self.on_delete, obj)

        return Handlers(on_add=add, on_update=update, on_delete=delete)


class Informer:
    def __init__(
        self,
        client: Client,
        path: str,
        handlers: Handlers | None = None,
        *,
        query: Mapping[str, str] | None = None,
        transform: Transform | None = None,
        store: Callable[[], MutableMapping[str, JSON]] = dict,
        resync_period: float = 0.0,
        relist_period: float = 0.0,
        page_size: int = 500,
        watch_timeout: int = 300,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        missing_ok: bool = False,
    ) -> None:
        self.client = client
        self.path = path
        self.handlers = handlers or Handlers()
        self.query = dict(query or {})
        self.transform = transform
        self.resync_period = resync_period
        self.relist_period = relist_period
        self.missing_ok = missing_ok
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.resource_version = ""  # of the last list, watch event or bookmark seen
        self._store = store
        self._cache: MutableMapping[str, JSON] = store()
        self._listed_at = 0.0
        self._lock = threading.Lock()
        self._deliver = threading.Lock()  # callbacks run one at a time, also against the resync thread
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._watch: Watch | None = None
        self._threads: list[threading.Thread] = []

    # ---- life cycle -----------------------------------------------------------------------------------

    def start(self) -> Informer:
        self._threads.append(threading.Thread(target=self._run, name=f"informer {self.path}", daemon=True))
        if self.resync_period > 0:
            self._threads.append(
                threading.Thread(target=self._resync_loop, name=f"resync {self.path}", daemon=True)
            )
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching (an open watch is closed at once) and wait for the threads to end."""
        self._stop.set()
        watch = self._watch
        if watch is not None:
            watch.close()
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current and thread.is_alive():
                thread.join(timeout)

    def has_synced(self) -> bool:
        """Whether the first complete list is cached and delivered."""
        return self._synced.is_set()

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    # ---- the cache ------------------------------------------------------------------------------------

    def list(self) -> builtins.list[JSON]:
        with self._lock:
            return list(self._cache.values())

    def keys(self) -> builtins.list[str]:
        with self._lock:
            return list(self._cache)

    def get(self, namespace: str, name: str) -> JSON | None:
        """The cached object; namespace "" for a cluster-scoped one."""
        return self.get_by_key(object_key(namespace, name))

    def get_by_key(self, key: str) -> JSON | None:
        with self._lock:
            return self._cache.get(key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)

    def remember(self, obj: JSON) -> bool:
        """Cache the answer of our own write (transformed here), unless the cache already holds that version
        or a newer one: a write's answer may arrive after the watch event it caused, or before. No handler
        runs for it. Whether it was cached."""
        obj = self._transformed(obj)
        key = key_of(obj)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and not _newer(obj, cached):
                return False
            self._cache[key] = obj
            return True

    # ---- list and watch -------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self.backoff_initial
        version = ""
        while not self._stop.is_set():
            try:
                if not version or self._relist_due():
                    version = self._relist()
                    if self._stop.is_set():
                        return
                    if not version:  # not installed (missing_ok): look again later
                        self._stop.wait(self.backoff_max)
                        continue
                version = self._watch_from(version)
                backoff = self.backoff_initial  # the server ended a healthy watch: watch on from there
            except WatchExpired as exc:
                log.info("event=watch_expired path=%s error=%s", self.path, exc.message)
                version = ""
            except Exception as exc:  # refused, reset, 5xx, a garbled body: list again after a pause
                if self._stop.is_set():
                    return
                log.warning("event=watch_failed path=%s error=%r backoff=%.1fs", self.path, exc, backoff)
                version = ""
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.backoff_max)

    def _relist_due(self) -> bool:
        return self.relist_period > 0 and time.monotonic() - self._listed_at >= self.relist_period

    def _list(self) -> tuple[MutableMapping[str, JSON], str]:
        """Every object, transformed as decoded, and the list's resourceVersion ("" when the resource is not
        installed and missing_ok)."""
        fresh = self._store()
        list_version = ""
        try:
            for page in self.client.pages(
                self.path, limit=self.page_size, transform=self.transform, **self.query
            ):
                list_version = list_version or resource_version(page)
                for item in page.get("items") or []:
                    fresh[key_of(item)] = item
        except ApiError as exc:
            if not (self.missing_ok and exc.status == 404):
                raise
            log.warning("event=resource_missing path=%s", self.path)
            return self._store(), ""
        return fresh, list_version

    def _relist(self) -> str:
        self._listed_at = time.monotonic()
        fresh, list_version = self._list()
        with self._lock:
            old = self._cache
            # What we wrote ourselves after the list was taken (remember) stays: the newer version wins.
            for key, cached in old.items():
                listed = fresh.get(key)
                if listed is None:
                    if not _listed_before(cached, list_version):
                        fresh[key] = cached
                elif resource_version(cached) and resource_version(listed) and _newer(cached, listed):
                    fresh[key] = cached
            self._cache = fresh
            self.resource_version = list_version
        with self._deliver:
            for key, obj in old.items():
                if key not in fresh:
                    self._call(self.handlers.on_delete, obj)
            for key, obj in fresh.items():
                previous = old.get(key)
                if previous is None:
                    self._call(self.handlers.on_add, obj)
                elif _changed(previous, obj):
                    self._call(self.handlers.on_update, previous, obj)
        self._synced.set()
        return list_version

    def _watch_timeout(self) -> int:
        """The server ends the watch when the next relist is due, if that comes before watch_timeout."""
        if self.relist_period <= 0:
            return self.watch_timeout
        remaining = self._listed_at + self.relist_period - time.monotonic()
        return max(1, min(self.watch_timeout, math.ceil(remaining)))

    def _watch_from(self, version: str) -> str:
        watch = self.client.watch(
            self.path, version, timeout_seconds=self._watch_timeout(), bookmarks=True, **self.query
        )
        self._watch = watch
        try:
            if self._stop.is_set():
                return version
            for event in watch:
                kind, raw = str(event.get("type")), event.get("object") or {}
                del event
                version = resource_version(raw) or version
                self.resource_version = version
                if kind != "BOOKMARK":
                    self._apply(kind, raw)
                raw = {}  # before the next event is decoded: one whole object alive at a time
                if self._stop.is_set():
                    break
            return version
        finally:
            self._watch = None
            watch.close()

    def _apply(self, kind: str, raw: JSON) -> None:
        key = key_of(raw)
        obj = self._transformed(raw)
        del raw  # before the next event is read: only the transformed object stays
        with self._lock:
            old = self._cache.get(key)
            if kind == "DELETED":
                if old is None:
                    return
                self._cache.pop(key, None)
            elif old is not None and not _newer(obj, old):
                return  # our own write's answer was cached already (remember)
            else:
                self._cache[key] = obj
        with self._deliver:
            if kind == "DELETED":
                self._call(self.handlers.on_delete, obj)
            elif old is None:
                self._call(self.handlers.on_add, obj)
            else:
                self._call(self.handlers.on_update, old, obj)

    def _transformed(self, obj: JSON) -> JSON:
        return self.transform(obj) if self.transform is not None else obj

    def _resync_loop(self) -> None:
        """Re-deliver every cached object as an update, from the cache (no API call): level-triggered
        handlers get a periodic chance to repair what a failed sync left behind."""
        while not self._stop.wait(self.resync_period):
            if not self._synced.is_set():
                continue
            with self._deliver:
                for obj in self.list():
                    if self._stop.is_set():
                        return
                    self._call(self.handlers.on_update, obj, obj)

    def _call(self, callback: Callable[..., None], *objects: JSON) -> None:
        try:
            callback(*objects)
        except Exception:  # one faulty handler must not end the informer (and its cache) for everyone
            log.exception("event=handler_failed path=%s", self.path)


def _newer(candidate: JSON, cached: JSON) -> bool:
    """Whether `candidate` is a later version than `cached` (by resourceVersion; by content when the
    transform kept none)."""
    new_version, old_version = resource_version(candidate), resource_version(cached)
    if new_version and old_version:
        return new_version != old_version and rv_newer_or_equal(new_version, old_version)
    return candidate != cached


def _listed_before(obj: JSON, list_version: str) -> bool:
    """Whether `obj` should have been in a list taken at `list_version` (integers on every server we target;
    when they are not, assume it should)."""
    version = resource_version(obj)
    if version.isdigit() and list_version.isdigit():
        return int(version) <= int(list_version)
    return True


def _changed(old: JSON, new: JSON) -> bool:
    """Whether a relisted object differs from the cached one: by resourceVersion, or by content when the
    transform kept no resourceVersion."""
    old_version, new_version = resource_version(old), resource_version(new)
    if old_version or new_version:
        return old_version != new_version
    return old != new
