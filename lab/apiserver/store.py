"""The object store: every object by (group, plural) and (namespace, name), a store-wide monotonic
resourceVersion, and a bounded per-resource event history that watches replay from.

Pure and single-threaded: the server calls it from one event loop, so a write is atomic between awaits.
Stored objects are never mutated in place; a write stores a new dict.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

Key = tuple[str, str]  # (group, plural)
ObjKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects
Obj = dict[str, Any]


@dataclass
class Event:
    """One committed change; `old` is the previous state (None for ADDED)."""

    type: str  # ADDED, MODIFIED, DELETED
    rv: int
    key: Key
    obj: Obj
    old: Obj | None = None
    _line: bytes | None = field(default=None, repr=False)

    def line(self) -> bytes:
        """The watch-stream line for this event, serialized once however many watchers receive it."""
        if self._line is None:
            self._line = (
                json.dumps({"type": self.type, "object": self.obj}, separators=(",", ":")).encode() + b"\n"
            )
        return self._line


class Journal(Protocol):
    """Durability hook: called with every committed change before any watcher or client hears of it."""

    def record(self, rv: int, op: str, key: Key, obj: Obj) -> None: ...


def obj_key(obj: Obj) -> ObjKey:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


class Store:
    def __init__(self, history_size: int = 10000) -> None:
        self.rv = 0
        self._objects: dict[Key, dict[ObjKey, Obj]] = {}
        self._history: dict[Key, deque[Event]] = {}
        # Per resource: every event with rv <= this is gone from the history (older watches get 410).
        self._evicted_upto: dict[Key, int] = {}
        self._history_size = history_size
        self._base_rv = 0  # events at or below it were never seen by this process (snapshot restore)
        self._ns_counts: Counter[str] = Counter()
        self.journal: Journal | None = None
        self.listeners: list[Callable[[Event], None]] = []

    # -- reads --------------------------------------------------------------------------------------

    def get(self, key: Key, namespace: str, name: str) -> Obj | None:
        return self._objects.get(key, {}).get((namespace, name))

    def list_objects(self, key: Key, namespace: str | None = None) -> list[Obj]:
        """Objects sorted by (namespace, name), as etcd's key order gives them."""
        bucket = self._objects.get(key, {})
        if namespace:
            items = [(k, o) for k, o in bucket.items() if k[0] == namespace]
        else:
            items = list(bucket.items())
        items.sort(key=lambda kv: kv[0])
        return [o for _, o in items]

    def count(self, key: Key) -> int:
        return len(self._objects.get(key, {}))

    def namespace_object_count(self, namespace: str) -> int:
        return self._ns_counts[namespace]

    def keys(self) -> list[Key]:
        return list(self._objects)

    def all_objects(self) -> Iterator[tuple[Key, Obj]]:
        for key, bucket in self._objects.items():
            for obj in bucket.values():
                yield key, obj

    def objects_in_namespace(self, namespace: str) -> list[tuple[Key, Obj]]:
        return [
            (key, obj)
            for key, bucket in self._objects.items()
            for (ns, _), obj in bucket.items()
            if ns == namespace
        ]

    # -- history ------------------------------------------------------------------------------------

    def events_since(self, key: Key, rv: int) -> list[Event] | None:
        """Events of `key` with resourceVersion > rv, or None when some of them are no longer kept."""
        if rv < max(self._evicted_upto.get(key, 0), self._base_rv):
            return None
        history = self._history.get(key)
        if not history:
            return []
        if history[0].rv > rv:
            return list(history)
        return [e for e in history if e.rv > rv]

    def oldest_rv(self, key: Key) -> int:
        return max(self._evicted_upto.get(key, 0), self._base_rv)

    # -- writes -------------------------------------------------------------------------------------

    def next_rv(self) -> int:
        return self.rv + 1

    def put(self, key: Key, obj: Obj) -> Event:
        """Store obj (its metadata.resourceVersion is set here) and emit ADDED or MODIFIED."""
        rv = self.rv + 1
        obj["metadata"]["resourceVersion"] = str(rv)
        k = obj_key(obj)
        bucket = self._objects.setdefault(key, {})
        old = bucket.get(k)
        if self.journal is not None:
            self.journal.record(rv, "put", key, obj)
        self.rv = rv
        bucket[k] = obj
        if old is None and k[0]:
            self._ns_counts[k[0]] += 1
        event = Event("ADDED" if old is None else "MODIFIED", rv, key, obj, old)
        self._emit(event)
        return event

    def delete(self, key: Key, namespace: str, name: str, final: Obj | None = None) -> Event | None:
        """Remove an object; the DELETED event carries `final` (default: the stored state), at a new rv."""
        bucket = self._objects.get(key, {})
        old = bucket.get((namespace, name))
        if old is None:
            return None
        rv = self.rv + 1
        base = final if final is not None else old
        final = dict(base)
        final["metadata"] = dict(base["metadata"], resourceVersion=str(rv))
        if self.journal is not None:
            self.journal.record(rv, "delete", key, final)
        self.rv = rv
        del bucket[(namespace, name)]
        if namespace:
            self._ns_counts[namespace] -= 1
            if self._ns_counts[namespace] <= 0:
                del self._ns_counts[namespace]
        event = Event("DELETED", rv, key, final, old)
        self._emit(event)
        return event

    def _emit(self, event: Event) -> None:
        self._remember(event)
        for listener in self.listeners:
            listener(event)

    def _remember(self, event: Event) -> None:
        history = self._history.get(event.key)
        if history is None:
            history = self._history[event.key] = deque()
        if len(history) >= self._history_size:
            self._evicted_upto[event.key] = history.popleft().rv
        history.append(event)

    # -- restore (persistence) ----------------------------------------------------------------------

    def restore_object(self, key: Key, obj: Obj) -> None:
        """Load an object from a snapshot, without an event."""
        k = obj_key(obj)
        bucket = self._objects.setdefault(key, {})
        if k not in bucket and k[0]:
            self._ns_counts[k[0]] += 1
        bucket[k] = obj

    def set_base_rv(self, rv: int) -> None:
        self.rv = max(self.rv, rv)
        self._base_rv = rv

    def replay(self, rv: int, op: str, key: Key, obj: Obj) -> None:
        """Apply one journal record at start: the store and the event history come back as they were."""
        k = obj_key(obj)
        bucket = self._objects.setdefault(key, {})
        old = bucket.get(k)
        if op == "delete":
            if old is not None:
                del bucket[k]
                if k[0]:
                    self._ns_counts[k[0]] -= 1
                    if self._ns_counts[k[0]] <= 0:
                        del self._ns_counts[k[0]]
            event = Event("DELETED", rv, key, obj, old)
        else:
            bucket[k] = obj
            if old is None and k[0]:
                self._ns_counts[k[0]] += 1
            event = Event("ADDED" if old is None else "MODIFIED", rv, key, obj, old)
        self.rv = max(self.rv, rv)
        self._remember(event)
