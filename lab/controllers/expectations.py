"""Writes a controller made and has not yet seen come back through its watch, pure.

A controller reads from informer caches, which lag behind its own writes. Acting again on a cache that does
not show the last writes yet would create duplicates (two slices, extra pods). So after writing, a controller
records what it expects to see, and holds off on that object until the cache shows it or a deadline passes
(after which it trusts the cache again; the deadline protects against a write whose watch event was lost).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Key = tuple[str, str]  # namespace, name
Lookup = Callable[[Key], Mapping[str, Any] | None]


def _version(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def observed(cached: Mapping[str, Any] | None, expected_version: str | None) -> bool:
    """Whether a cache entry reflects a write: absent for a delete, at or past the version for a write."""
    if expected_version is None:
        return cached is None
    if cached is None:
        return False
    have = str((cached.get("metadata") or {}).get("resourceVersion") or "")
    if have == expected_version:
        return True
    mine, theirs = _version(expected_version), _version(have)
    return mine is not None and theirs is not None and theirs > mine


class Expectations:
    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        # owner (e.g. a Service's key) -> object key -> (expected resourceVersion or None for gone, deadline)
        self._pending: dict[Key, dict[Key, tuple[str | None, float]]] = {}

    def expect(self, owner: Key, obj: Key, version: str | None, now: float) -> None:
        self._pending.setdefault(owner, {})[obj] = (version, now + self.timeout)

    def satisfied(self, owner: Key, lookup: Lookup, now: float) -> bool:
        """True when every write for `owner` is visible (or timed out); forgets those that are."""
        pending = self._pending.get(owner)
        if not pending:
            return True
        for obj, (version, deadline) in list(pending.items()):
            if now >= deadline or observed(lookup(obj), version):
                del pending[obj]
        if not pending:
            del self._pending[owner]
            return True
        return False

    def pending(self, owner: Key) -> dict[Key, str | None]:
        return {obj: version for obj, (version, _) in self._pending.get(owner, {}).items()}

    def forget(self, owner: Key) -> None:
        self._pending.pop(owner, None)
