"""Watch fan-out: every committed event goes, filtered, into the queue of each watcher of that resource.

Queues are unbounded and per watcher, so a slow watcher never delays the writer nor the other watchers.
A selector watch sees an object leave its selection as DELETED and enter it as ADDED, as on a real server.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from common.selectors import Requirement
from lab.apiserver.selectors import FieldRequirement, fields_match, labels_match
from lab.apiserver.store import Event, Key, Obj

STOP: tuple[str, Obj, Event | None] = ("STOP", {}, None)
# A watcher this far behind is closed, as the real server closes too-slow watchers; the client re-watches
# from its last resourceVersion (replayed from the history, or 410 and a re-list).
MAX_BACKLOG = 100_000


@dataclass(eq=False)
class Watcher:
    key: Key
    namespace: str  # "" = all namespaces
    labels: list[Requirement]
    fields: list[FieldRequirement]
    queue: asyncio.Queue[tuple[str, Obj, Event | None]] = field(default_factory=asyncio.Queue)
    overflowed: bool = False

    @property
    def filtered(self) -> bool:
        return bool(self.namespace or self.labels or self.fields)

    def matches(self, obj: Obj) -> bool:
        if self.namespace and (obj.get("metadata") or {}).get("namespace") != self.namespace:
            return False
        return labels_match(self.labels, obj) and fields_match(self.fields, obj)

    def translate(self, event: Event) -> str | None:
        """The event type this watcher sees for `event`, or None when it does not concern it."""
        if not self.filtered:
            return event.type
        if event.type == "ADDED":
            return "ADDED" if self.matches(event.obj) else None
        if event.type == "DELETED":
            return "DELETED" if self.matches(event.obj) else None
        now = self.matches(event.obj)
        before = event.old is not None and self.matches(event.old)
        if now and before:
            return "MODIFIED"
        if now:
            return "ADDED"
        if before:
            return "DELETED"
        return None

    def offer(self, event: Event) -> None:
        if self.overflowed:
            return
        etype = self.translate(event)
        if etype is None:
            return
        if self.queue.qsize() >= MAX_BACKLOG:
            self.overflowed = True
            self.queue.put_nowait(STOP)
            return
        self.queue.put_nowait((etype, event.obj, event))


class WatchHub:
    def __init__(self) -> None:
        self._watchers: dict[Key, set[Watcher]] = {}

    def add(self, watcher: Watcher) -> Watcher:
        self._watchers.setdefault(watcher.key, set()).add(watcher)
        return watcher

    def remove(self, watcher: Watcher) -> None:
        watchers = self._watchers.get(watcher.key)
        if watchers is not None:
            watchers.discard(watcher)

    def close_all(self) -> None:
        """Ends every watch stream (server shutdown): each pump returns when it reads the STOP item."""
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.queue.put_nowait(STOP)

    def count(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    def dispatch(self, event: Event) -> None:
        for watcher in self._watchers.get(event.key, ()):
            watcher.offer(event)
