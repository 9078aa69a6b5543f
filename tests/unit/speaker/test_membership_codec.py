"""The membership wire format: every message round-trips; forged, damaged or foreign datagrams are refused."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speaker.membership import Ack, Answer, Fact, Gossip, Heartbeat, Message, Ping, Query, Sync
from speaker.membership_codec import MAGIC, CodecError, decode, encode

KEY = b"0123456789abcdef-memberlist-secret"
u64 = st.integers(min_value=0, max_value=2**64 - 1)
names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=40)
facts = st.lists(st.builds(Fact, names, u64, st.integers(0, 2)), max_size=5).map(tuple)
head = (names, u64, u64)
messages = st.one_of(
    st.builds(Heartbeat, *head, u64, facts),
    st.builds(Ping, *head, u64, facts),
    st.builds(Ack, *head, u64, facts),
    st.builds(Query, *head, u64, names),
    st.builds(Answer, *head, u64, names, st.booleans()),
    st.builds(Gossip, *head, facts),
    st.builds(Sync, *head, u64, st.booleans(), facts),
)


@settings(max_examples=300)
@given(messages)
def test_round_trip(message: Message) -> None:
    assert decode(encode(message, KEY), [KEY]) == message


def test_a_heartbeat_is_small() -> None:
    data = encode(Heartbeat("worker-0042.example.internal", 1733097600123, 123456, 2**63 + 5), KEY)
    assert len(data) < 120, len(data)


def test_rotation_accepts_any_configured_key() -> None:
    data = encode(Gossip("a", 1, 1), b"old")
    assert decode(data, [b"new", b"old"]) == Gossip("a", 1, 1)
    with pytest.raises(CodecError, match="bad signature"):
        decode(data, [b"new"])


def resign(body: object) -> bytes:
    raw = json.dumps(body).encode()
    return MAGIC + hmac.new(KEY, MAGIC + raw, hashlib.sha256).digest() + raw


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "not an ironlb membership datagram"),
        (b"GET / HTTP/1.1\r\n\r\n" + b"x" * 40, "not an ironlb membership datagram"),
        (encode(Ping("a", 1, 1, 5), KEY).replace(b",5,", b",6,"), "bad signature"),
        (encode(Ping("a", 1, 1, 5), b"another key"), "bad signature"),
        (resign([9, "a", 1, 1, 0]), "unknown message kind 9"),
        (resign([2, "a", 1, 1, 5]), "kind 2: expected 2 fields"),
        (resign([2, "", 1, 1, 5, []]), "sender"),
        (resign([2, "a", -1, 1, 5, []]), "incarnation"),
        (resign([2, "a", 1, 1, 5, [["b", 1, 7]]]), "unknown status 7"),
        (resign([2, "a", 1, 1, 5, [["b", 1]]]), "expected \\[name, incarnation, status\\]"),
        (resign([5, "a", 1, 1, 5, "b", 2]), "alive: expected 0 or 1"),
        (resign([6, "a", 1, True, []]), "seq"),
        (resign({"kind": 1}), "expected \\[kind, sender"),
        (MAGIC + b"\0" * 32 + b"\xff\xfe", "bad signature"),
    ],
)
def test_refused(data: bytes, why: str) -> None:
    with pytest.raises(CodecError, match=why):
        decode(data, [KEY])


def test_non_json_body_with_a_valid_signature() -> None:
    body = b"\xff not json"
    data = MAGIC + hmac.new(KEY, MAGIC + body, hashlib.sha256).digest() + body
    with pytest.raises(CodecError, match="not JSON"):
        decode(data, [KEY])


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_garbage_never_raises_anything_else(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode(data, [KEY])
