"""Cache stores for informers: a plain dict, or `EncodedStore`, which keeps each object as compact JSON text.

A controller that caches a projection of 10,000 Services holds ~4 MB as text instead of ~30 MB of nested
dicts and lists; a read decodes a fresh copy (~10 us), so callers may keep or change what they read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping

from k8s.meta import JSON

Store = MutableMapping[str, JSON]


class EncodedStore(MutableMapping[str, JSON]):
    def __init__(self) -> None:
        self._encoded: dict[str, str] = {}

    def __getitem__(self, key: str) -> JSON:
        value: JSON = json.loads(self._encoded[key])
        return value

    def __setitem__(self, key: str, value: JSON) -> None:
        self._encoded[key] = json.dumps(value, separators=(",", ":"))

    def __delitem__(self, key: str) -> None:
        del self._encoded[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._encoded)

    def __len__(self) -> int:
        return len(self._encoded)

    def __contains__(self, key: object) -> bool:
        return key in self._encoded
