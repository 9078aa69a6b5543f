"""The membership protocol on the wire: compact JSON, authenticated with HMAC-SHA256.

A datagram is ``b"ILB1" + HMAC-SHA256(key, b"ILB1" + body) + body``; the body is a JSON array whose first item
is the message kind. The key comes from a Secret (MetalLB's ``memberlist`` Secret, key ``secretkey``), so only
speakers that hold it can speak; sequence numbers in every message let the state machine drop replays.
Several keys may be accepted at once (the first one signs) to rotate a key without a partition.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any

from speaker.membership import (
    ALIVE,
    LEFT,
    Ack,
    Answer,
    Fact,
    Gossip,
    Heartbeat,
    Message,
    Ping,
    Query,
    Sync,
)

MAGIC = b"ILB1"
MAC_SIZE = 32
MAX_NAME = 253  # a Node name is a DNS subdomain
MAX_DATAGRAM = 65507


class CodecError(ValueError):
    """A datagram that is not a valid, authentic message."""


KIND = {Heartbeat: 1, Ping: 2, Ack: 3, Query: 4, Answer: 5, Gossip: 6, Sync: 7}


def _facts(facts: Sequence[Fact]) -> list[list[Any]]:
    return [[f.name, f.incarnation, f.status] for f in facts]


def _fields(message: Message) -> list[Any]:
    head: list[Any] = [KIND[type(message)], message.sender, message.incarnation, message.seq]
    if isinstance(message, Heartbeat):
        return [*head, message.digest, _facts(message.facts)]
    if isinstance(message, Ping | Ack):
        return [*head, message.nonce, _facts(message.facts)]
    if isinstance(message, Query):
        return [*head, message.nonce, message.subject]
    if isinstance(message, Answer):
        return [*head, message.nonce, message.subject, int(message.alive)]
    if isinstance(message, Gossip):
        return [*head, _facts(message.facts)]
    return [*head, message.nonce, int(message.reply), _facts(message.facts)]


def encode(message: Message, key: bytes) -> bytes:
    body = json.dumps(_fields(message), separators=(",", ":")).encode()
    return MAGIC + hmac.new(key, MAGIC + body, hashlib.sha256).digest() + body


def _int(value: Any, what: str, bits: int = 64) -> int:
    if type(value) is not int or not 0 <= value < 1 << bits:
        raise CodecError(f"{what}: expected an integer in [0, 2^{bits})")
    return value


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME:
        raise CodecError(f"{what}: expected a name of 1-{MAX_NAME} characters")
    return value


def _flag(value: Any, what: str) -> bool:
    if value not in (0, 1) or type(value) is not int:
        raise CodecError(f"{what}: expected 0 or 1")
    return bool(value)


def _parse_facts(value: Any) -> tuple[Fact, ...]:
    if not isinstance(value, list):
        raise CodecError("facts: expected a list")
    facts = []
    for item in value:
        if not isinstance(item, list) or len(item) != 3:
            raise CodecError("fact: expected [name, incarnation, status]")
        status = _int(item[2], "fact status")
        if not ALIVE <= status <= LEFT:
            raise CodecError(f"fact status: unknown status {status}")
        facts.append(Fact(_name(item[0], "fact name"), _int(item[1], "fact incarnation"), status))
    return tuple(facts)


def decode(data: bytes, keys: Sequence[bytes]) -> Message:
    """The message in ``data``, if one of ``keys`` signed it; else CodecError (nothing else is raised)."""
    if len(data) < len(MAGIC) + MAC_SIZE + 2 or not data.startswith(MAGIC):
        raise CodecError("not an ironlb membership datagram")
    mac, body = data[len(MAGIC) : len(MAGIC) + MAC_SIZE], data[len(MAGIC) + MAC_SIZE :]
    if not any(hmac.compare_digest(mac, hmac.new(k, MAGIC + body, hashlib.sha256).digest()) for k in keys):
        raise CodecError("bad signature (a different secret key, or a forged or damaged datagram)")
    try:
        fields = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CodecError(f"body is not JSON: {exc}") from None
    if not isinstance(fields, list) or len(fields) < 5:
        raise CodecError("body: expected [kind, sender, incarnation, seq, ...]")
    kind = fields[0]
    sender = _name(fields[1], "sender")
    incarnation = _int(fields[2], "incarnation")
    seq = _int(fields[3], "seq")
    rest = fields[4:]
    expected = {1: 2, 2: 2, 3: 2, 4: 2, 5: 3, 6: 1, 7: 3}.get(kind) if type(kind) is int else None
    if expected is None:
        raise CodecError(f"unknown message kind {kind!r}")
    if len(rest) != expected:
        raise CodecError(f"kind {kind}: expected {expected} fields after the header, got {len(rest)}")
    if kind == 1:
        return Heartbeat(sender, incarnation, seq, _int(rest[0], "digest"), _parse_facts(rest[1]))
    if kind in (2, 3):
        cls = Ping if kind == 2 else Ack
        return cls(sender, incarnation, seq, _int(rest[0], "nonce"), _parse_facts(rest[1]))
    if kind == 4:
        return Query(sender, incarnation, seq, _int(rest[0], "nonce"), _name(rest[1], "subject"))
    if kind == 5:
        return Answer(sender, incarnation, seq, _int(rest[0], "nonce"), _name(rest[1], "subject"),
                      _flag(rest[2], "alive"))  # fmt: skip
    if kind == 6:
        return Gossip(sender, incarnation, seq, _parse_facts(rest[0]))
    return Sync(
        sender, incarnation, seq, _int(rest[0], "nonce"), _flag(rest[1], "reply"), _parse_facts(rest[2])
    )
