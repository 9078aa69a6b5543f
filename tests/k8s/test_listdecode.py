"""Decoding a List response item by item (k8s/listdecode.py): the same result as json.loads, with the
transform applied to each item as it is decoded."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k8s.listdecode import ListDecodeError, decode_list

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)
OBJECTS = st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=4)
Obj = dict[str, Any]


@given(items=st.lists(OBJECTS, max_size=5), metadata=OBJECTS, indent=st.none() | st.integers(0, 2))
def test_same_as_json_loads(items: list[Obj], metadata: Obj, indent: int | None) -> None:
    text = json.dumps({"kind": "ServiceList", "metadata": metadata, "items": items}, indent=indent)
    seen: list[dict[str, Any]] = []

    def transform(item: dict[str, Any]) -> dict[str, Any]:
        seen.append(item)
        return {"n": len(seen)}

    top, decoded = decode_list(text, transform)
    assert top == {"kind": "ServiceList", "metadata": metadata}
    assert seen == items and decoded == [{"n": i + 1} for i in range(len(items))]


def test_items_anywhere_and_null_items() -> None:
    top, items = decode_list('{"items":[{"a":1}],"metadata":{"continue":"x"}}', lambda item: item)
    assert top == {"metadata": {"continue": "x"}} and items == [{"a": 1}]
    top, items = decode_list('{"items": null, "kind": "List"}', lambda item: item)
    assert top == {"items": None, "kind": "List"} and items == []
    assert decode_list("{}", lambda item: item) == ({}, [])


MALFORMED = ["", "[]", '{"items": [1]}', '{"items": [{"a": 1}', '{"a" 1}', '{"a": 1,}', "<html>", '{} x']


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed(text: str) -> None:
    with pytest.raises(ListDecodeError):
        decode_list(text, lambda item: item)
