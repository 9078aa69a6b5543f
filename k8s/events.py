"""An Event recorder: core/v1 Events posted off the caller's thread, correlated as client-go's recorder does.

- `EventCorrelator` (pure) decides what reaches the API:
  - a spam filter per involved object (a token bucket: a burst of 25, then one per 5 minutes);
  - aggregation: more than 10 distinct messages with the same reason about one object within 10 minutes
    become one Event "(combined from similar events): <latest message>";
  - de-duplication: an Event identical to one already posted becomes a patch of that Event's count and
    lastTimestamp, instead of a new object.
- `EventRecorder` builds the body (common.events.event_body, message cut to 1 KiB) on the caller's thread
  and posts it from its own thread, once `may_post()` (a leader's fence) allows it. Events are advisory: a
  failure is logged, never raised; a full queue drops.
"""

from __future__ import annotations

import datetime
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from common.events import event_body
from k8s.client import REQUEST_ERRORS, ApiError, Client
from k8s.meta import JSON, resource_path

log = logging.getLogger("k8s.events")

MAX_MESSAGE_BYTES = 1024  # the API's limit for an event note (events.k8s.io); core/v1 recorders keep it too
TRUNCATED_SUFFIX = " ..."
COMBINED_PREFIX = "(combined from similar events): "
AGGREGATE_MAX_EVENTS = 10
AGGREGATE_INTERVAL = 600.0
SPAM_BURST = 25
SPAM_REFILL_SECONDS = 300.0
CACHE_SIZE = 4096
FENCE_POLL = 0.05


def truncate_message(message: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """`message`, cut to `limit` UTF-8 bytes (never inside a character) with " ..." marking the cut."""
    encoded = message.encode()
    if len(encoded) <= limit:
        return message
    head = encoded[: limit - len(TRUNCATED_SUFFIX)].decode(errors="ignore")
    return head + TRUNCATED_SUFFIX


def _object_key(event: Mapping[str, Any]) -> tuple[str, ...]:
    source = event.get("source") or {}
    involved = event.get("involvedObject") or {}
    return (
        str(source.get("component") or ""),
        str(source.get("host") or ""),
        str(involved.get("kind") or ""),
        str(involved.get("namespace") or ""),
        str(involved.get("name") or ""),
        str(involved.get("uid") or ""),
        str(involved.get("apiVersion") or ""),
    )


def _aggregate_key(event: Mapping[str, Any]) -> tuple[str, ...]:
    return (
        *_object_key(event),
        str(event.get("type") or ""),
        str(event.get("reason") or ""),
        str(event.get("reportingComponent") or ""),
        str(event.get("reportingInstance") or ""),
    )


class _Lru(OrderedDict[tuple[str, ...], Any]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def remember(self, key: tuple[str, ...], value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


@dataclass
class _Aggregate:
    messages: set[str] = field(default_factory=set)
    since: float = 0.0


@dataclass
class _Posted:
    name: str
    count: int
    first_timestamp: str


@dataclass(frozen=True)
class Decision:
    """What to send: a new Event (`patch_name` None) or a patch of the Event named `patch_name`."""

    body: JSON
    key: tuple[str, ...]
    patch_name: str | None = None


class EventCorrelator:
    """client-go's EventCorrelator over plain dicts; not thread-safe (the recorder's thread owns it)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: _Lru = _Lru(CACHE_SIZE)  # object key -> (tokens, last refill)
        self._aggregates: _Lru = _Lru(CACHE_SIZE)
        self._posted: _Lru = _Lru(CACHE_SIZE)  # event key -> _Posted

    def correlate(self, event: JSON) -> Decision | None:
        """The request for `event`, or None when the spam filter drops it."""
        if not self._allow(_object_key(event)):
            return None
        aggregate_key = _aggregate_key(event)
        message = str(event.get("message") or "")
        aggregate = self._aggregates.get(aggregate_key)
        now = self._clock()
        if aggregate is None or now - aggregate.since > AGGREGATE_INTERVAL:
            aggregate = _Aggregate(since=now)
        aggregate.messages.add(message)
        self._aggregates.remember(aggregate_key, aggregate)
        body = dict(event)
        if len(aggregate.messages) > AGGREGATE_MAX_EVENTS:
            key = aggregate_key
            body["message"] = truncate_message(COMBINED_PREFIX + message)
        else:
            key = (*aggregate_key, message)
        posted: _Posted | None = self._posted.get(key)
        if posted is None:
            return Decision(body, key)
        body["count"] = posted.count + 1
        body["firstTimestamp"] = posted.first_timestamp
        return Decision(body, key, patch_name=posted.name)

    def posted(self, decision: Decision, name: str) -> None:
        """Record that the Event for `decision` now exists under `name`."""
        body = decision.body
        self._posted.remember(
            decision.key,
            _Posted(name, int(body.get("count") or 1), str(body.get("firstTimestamp") or "")),
        )

    def _allow(self, key: tuple[str, ...]) -> bool:
        now = self._clock()
        tokens, last = cast(tuple[float, float], self._buckets.get(key, (float(SPAM_BURST), now)))
        tokens = min(float(SPAM_BURST), tokens + (now - last) / SPAM_REFILL_SECONDS)
        allowed = tokens >= 1.0
        self._buckets.remember(key, (tokens - 1.0 if allowed else tokens, now))
        return allowed


class EventRecorder:
    """`recorder.event(obj, "Warning", "InvalidConfig", message)` from any thread; posts in the background."""

    def __init__(
        self,
        client: Client,
        component: str,
        *,
        instance: str | None = None,
        host: str | None = None,
        queue_size: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        may_post: Callable[[], bool] | None = None,
    ) -> None:
        self.client = client
        self.may_post = may_post
        self.component = component
        self.instance = instance
        self.host = host
        self.correlator = EventCorrelator(clock)
        self._queue: queue.Queue[JSON | None] = queue.Queue(queue_size)
        self._thread = threading.Thread(target=self._run, name=f"events {component}", daemon=True)
        self._thread.start()

    def event(
        self,
        obj: Mapping[str, Any],
        event_type: str,
        reason: str,
        message: str,
        *,
        default_kind: str = "",
        default_api_version: str = "v1",
    ) -> None:
        """Record an Event about `obj` (any object with metadata). Never blocks and never raises."""
        body = event_body(
            obj,
            event_type=event_type,
            reason=reason,
            message=truncate_message(message),
            component=self.component,
            now=datetime.datetime.now(datetime.UTC),
            instance=self.instance,
            host=self.host,
            default_kind=default_kind,
            default_api_version=default_api_version,
        )
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            log.warning("event=event_dropped object=%s reason=%s cause=queue_full", _name(body), reason)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every recorded Event was posted (or failed); False on timeout."""
        deadline = time.monotonic() + timeout
        # unfinished_tasks is what Queue.join waits on; join has no timeout, so poll it.
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Post what is queued (for at most `timeout`), then end the posting thread."""
        self.flush(timeout)
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            body = self._queue.get()
            try:
                if body is None:
                    return
                self._post(body)
            except REQUEST_ERRORS as exc:
                assert body is not None
                log.warning(
                    "event=event_failed object=%s reason=%s error=%s", _name(body), body.get("reason"), exc
                )
            except Exception:  # a bug here must not end event posting for the whole process
                log.exception("event=event_failed object=%s", _name(body or {}))
            finally:
                self._queue.task_done()

    def _post(self, event: JSON) -> None:
        if self.may_post is not None:
            # A leader's fencing (k8s.leader.LeaderElector.may_write): a replica past its renew deadline posts
            # nothing until it has renewed; if it never does, it exits first.
            while not self.may_post():
                time.sleep(FENCE_POLL)
        decision = self.correlator.correlate(event)
        if decision is None:
            log.debug("event=event_spam_dropped object=%s reason=%s", _name(event), event.get("reason"))
            return
        namespace = str(event["metadata"]["namespace"])
        if decision.patch_name is not None:
            body = decision.body
            patch = {
                "count": body["count"],
                "lastTimestamp": body["lastTimestamp"],
                "message": body["message"],
            }
            try:
                self.client.merge_patch(resource_path("v1", "events", namespace, decision.patch_name), patch)
                self.correlator.posted(decision, decision.patch_name)
                return
            except ApiError as exc:
                if exc.status != 404:
                    raise
            # The Event expired (the API server keeps them an hour): post it anew, counting on.
        created = self.client.create(resource_path("v1", "events", namespace), decision.body)
        self.correlator.posted(decision, str((created.get("metadata") or {}).get("name") or ""))


def _name(event: Mapping[str, Any]) -> str:
    involved = event.get("involvedObject") or {}
    return f"{involved.get('namespace') or ''}/{involved.get('name') or ''}"
