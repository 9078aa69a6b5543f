"""Network namespaces for nftables mode's kernel tests: `nftt-<pid>-<n>`, removed even when a test fails."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

_names = itertools.count()


def _netns() -> str:
    name = f"nftt-{os.getpid()}-{next(_names)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    return name


@pytest.fixture
def netns_factory() -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        made.append(_netns())
        return made[-1]

    try:
        yield make
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], check=False)


def nft(netns: str, *args: str, input: str | None = None) -> str:
    result = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", *args], input=input, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def table_state(netns: str, family: str) -> dict[tuple[str, str], Any]:
    """Our table as comparable data: each set's declaration and sorted elements, each chain's rules
    (handles dropped). Empty when there is no table."""
    listing = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-j", "list", "table", family, "ironlb"],
        capture_output=True,
        text=True,
        check=False,
    )
    if listing.returncode != 0:
        return {}
    state: dict[tuple[str, str], Any] = {}
    for item in json.loads(listing.stdout)["nftables"]:
        ((kind, body),) = item.items()
        if kind == "metainfo":
            continue
        body = {k: v for k, v in body.items() if k != "handle"}
        if "elem" in body:
            body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body["elem"])
        if kind == "rule":
            state.setdefault(("rules", body["chain"]), []).append(json.dumps(body["expr"], sort_keys=True))
        else:
            state[(kind, body.get("name", ""))] = json.dumps(body, sort_keys=True)
    return state
