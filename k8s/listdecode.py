"""Decode a Kubernetes List response one item at a time, transforming each item as soon as it is decoded.

`json.loads` of a page would hold every item's whole object at once (a tenant's Services may carry hundreds
of KB of annotations each); here only one decoded item is alive at a time, and what is kept is whatever the
transform returns (a projection of the few fields the caller reads).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from k8s.meta import JSON

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class ListDecodeError(ValueError):
    """The text is not a JSON object, or its `items` is not a list of objects."""


def decode_list(text: str, transform: Callable[[JSON], JSON]) -> tuple[JSON, list[JSON]]:
    """(the List's top-level fields except `items`, [transform(item) for each item])."""
    top: JSON = {}
    items: list[JSON] = []
    index = _expect(text, _skip(text, 0), "{")
    if text.startswith("}", index):
        return _end(text, index, top, items)
    while True:
        key, index = _value(text, index)
        if not isinstance(key, str):
            raise ListDecodeError(f"expected a key at offset {index}")
        index = _expect(text, index, ":")
        if key == "items" and text.startswith("[", index):
            index = _items(text, _skip(text, index + 1), transform, items)
        else:
            top[key], index = _value(text, index)
        if text.startswith("}", index):
            return _end(text, index, top, items)
        index = _skip(text, _expect(text, index, ","))


def _end(text: str, index: int, top: JSON, items: list[JSON]) -> tuple[JSON, list[JSON]]:
    if _skip(text, index + 1) != len(text):
        raise ListDecodeError(f"unexpected data after the object at offset {index + 1}")
    return top, items


def _items(text: str, index: int, transform: Callable[[JSON], JSON], out: list[JSON]) -> int:
    """Decode the array whose first element (or `]`) is at `index`; returns the offset after `]`."""
    if text.startswith("]", index):
        return _skip(text, index + 1)
    while True:
        item, index = _value(text, index)
        if not isinstance(item, dict):
            raise ListDecodeError(f"items[{len(out)}] is not an object")
        out.append(transform(item))
        del item  # before the next one is decoded: one whole object alive at a time
        if text.startswith("]", index):
            return _skip(text, index + 1)
        index = _skip(text, _expect(text, index, ","))


def _value(text: str, index: int) -> tuple[Any, int]:
    try:
        value, end = _DECODER.raw_decode(text, index)
    except json.JSONDecodeError as e:
        raise ListDecodeError(f"invalid JSON at offset {e.pos}: {e.msg}") from None
    return value, _skip(text, end)


def _skip(text: str, index: int) -> int:
    match = _WHITESPACE.match(text, index)
    return match.end() if match else index


def _expect(text: str, index: int, token: str) -> int:
    if not text.startswith(token, index):
        raise ListDecodeError(f"expected {token!r} at offset {index}")
    return _skip(text, index + 1)
