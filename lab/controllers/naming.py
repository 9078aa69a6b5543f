"""Object names as the real controllers make them, pure.

A Deployment's pods are called `<deployment>-<pod-template-hash>-<5 chars>`
(nginx-server1-77d4c485d8-gsrmq): the hash is FNV-32a of the pod template, written as its decimal digits
mapped onto the alphabet Kubernetes uses for generated names (no vowels, no confusable characters), and
the suffix is random from the same alphabet.
"""

from __future__ import annotations

import json
import random
from typing import Any

# k8s.io/apimachinery/pkg/util/rand: consonants and digits that cannot spell words or be confused.
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MAX_NAME = 63


def fnv32a(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value


def safe_encode(text: str) -> str:
    return "".join(SAFE_ALPHABET[ord(char) % len(SAFE_ALPHABET)] for char in text)


def pod_template_hash(template: dict[str, Any], collision_count: int = 0) -> str:
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        canonical += str(collision_count).encode()
    return safe_encode(str(fnv32a(canonical)))


def random_suffix(rng: random.Random | None = None, length: int = 5) -> str:
    source = rng if rng is not None else random
    return "".join(source.choice(SAFE_ALPHABET) for _ in range(length))


def generate_name(prefix: str, suffix: str) -> str:
    """`prefix` + `suffix`, trimming the prefix like the API server's generateName so the name stays <= 63."""
    return prefix[: MAX_NAME - len(suffix)] + suffix


def replica_set_name(deployment: str, template_hash: str) -> str:
    return f"{deployment}-{template_hash}"
