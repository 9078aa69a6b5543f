"""Fuzz the ConfigMap parser: whatever the text, it returns pools or raises a ConfigError naming the
ConfigMap.

Three generators: YAML structure (block and flow collections, complex keys, anchors, aliases, merge keys,
tags, deep nesting, MetalLB's own words as scalars), MetalLB-shaped documents with wrong types and values in
every field, and raw bytes / arbitrary text. CI runs IRONLB_FUZZ_EXAMPLES examples of each (default 100);
the long run recorded in docs/benchmarks.md ("Controller: long property and fuzz runs") sets it higher.
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from common.config import ConfigProblem, parse_configmap, rebuild_config
from common.errors import ConfigError
from common.pools import Config, Pool

CM = "ConfigMap metallb-system/config"
EXAMPLES = int(os.environ.get("IRONLB_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    derandomize=False,
)

WORDS = [
    "address-pools", "name", "protocol", "layer2", "bgp", "addresses", "auto-assign", "avoid-buggy-ips",
    "bgp-advertisements", "peers", "bgp-communities", "bfd-profiles", "a", "b",
    "10.0.0.0/24", "10.0.0.1-10.0.0.9", "10.0.0.9-10.0.0.1", "fd00::/120", "fd00::1-fd00::ff", "10.0.0.1/24",
    "::ffff:1.2.3.0/120", "fe80::%eth0/64", "10.0.0.0/255.255.255.0", "10.0.0.0/33", "1.2.3.4-fd00::1",
    "true", "false", "yes", "no", "null", "~", "0", "-1", "0x1F", "0o17", "1e400", "-.inf", ".nan", "1_000",
    "2001-02-03", "2001-02-30", "2001-12-14t21:59:43.10-05:00", "'quoted'", '"dq\\n"', "''", "<<", "=",
    "!!bool maybe", "!!int x", "!!float y", "!!str 5", "!!binary aGk=", "!!binary '!!!'", "!!null x",
    "!!timestamp 2001-13-01", "!foo bar", "!!python/object:os.system x", "|\n  literal", ">-\n  folded",
]  # fmt: skip

# A YAML node: ("scalar", text) | ("alias", n) | ("seq", [node]) | ("map", [(key, value)]) | ("merge", n),
# with an optional anchor and a preference for block or flow style.
scalar_nodes = st.sampled_from(WORDS).map(lambda w: ("scalar", w)) | st.text(max_size=6).map(
    lambda t: ("scalar", repr(t))
)
leaf_nodes = scalar_nodes | st.integers(0, 7).map(lambda n: ("alias", n))
MERGES = [("merge", 0), ("merge", 3), ("merge", 5)]


def _collections(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.tuples(st.just("seq"), st.lists(children, max_size=4)),
        st.tuples(
            st.just("map"),
            st.lists(st.tuples(children | st.sampled_from(MERGES), children), max_size=4),
        ),
    )


nodes = st.recursive(leaf_nodes, _collections, max_leaves=30)
# node, anchor (a5-a7 for entries: PyYAML refuses an anchor defined twice; 8 and 9: none), block style?
anchored = st.tuples(nodes, st.integers(5, 9), st.booleans())


def render_flow(node: Any, anchors: list[int]) -> str:
    kind = node[0]
    if kind == "scalar":
        return str(node[1]).replace("\n", " ")
    if kind == "alias":
        return f"*a{node[1]}"
    if kind == "merge":
        return "<<"
    if kind == "seq":
        return "[" + ", ".join(render_flow(child, anchors) for child in node[1]) + "]"
    pairs = []
    for key, value in node[1]:
        value_text = f"*a{key[1]}" if key[0] == "merge" else render_flow(value, anchors)
        pairs.append(f"{render_flow(key, anchors)}: {value_text}")
    return "{" + ", ".join(pairs) + "}"


def render_block(node: Any, indent: int, anchors: list[int]) -> str:
    pad = " " * indent
    kind = node[0]
    if kind == "seq" and node[1]:
        lines = []
        for child in node[1]:
            if child[0] in ("seq", "map") and child[1]:
                lines.append(f"{pad}-\n{render_block(child, indent + 2, anchors)}")
            else:
                lines.append(f"{pad}- {render_flow(child, anchors)}")
        return "\n".join(lines)
    if kind == "map" and node[1]:
        lines = []
        for key, value in node[1]:
            if key[0] == "merge":
                lines.append(f"{pad}<<: *a{key[1]}")
                continue
            key_text = render_flow(key, anchors)
            if key[0] in ("seq", "map"):
                lines.append(f"{pad}? {key_text}\n{pad}: {render_flow(value, anchors)}")
            elif value[0] in ("seq", "map") and value[1]:
                lines.append(f"{pad}{key_text}:\n{render_block(value, indent + 2, anchors)}")
            else:
                lines.append(f"{pad}{key_text}: {render_flow(value, anchors)}")
        return "\n".join(lines)
    return pad + render_flow(node, anchors)


# Anchors a0-a4 exist before any entry refers to them.
PRELUDE = (
    "bfd-profiles: [&a0 {name: a, protocol: layer2, addresses: [10.0.0.0/24]}, &a1 [10.1.0.0/24], "
    "&a2 {name: b}, &a3 {auto-assign: false}, &a4 layer2]\n"
)


@st.composite
def yaml_documents(draw: st.DrawFn) -> str:
    """Several top-level entries, some anchored, in block or flow style; sometimes wrapped in deep nesting."""
    parts = [PRELUDE] if draw(st.integers(0, 9)) else []
    anchors: list[int] = []
    for index, (node, anchor, block) in enumerate(draw(st.lists(anchored, min_size=1, max_size=5))):
        mark = f"&a{anchor} " if anchor < 8 and anchor not in anchors else ""
        key = draw(st.sampled_from(["address-pools", "peers", "bgp-communities", f"k{index}", "<<"]))
        if block and node[0] in ("seq", "map") and node[1]:
            parts.append(f"{key}: {mark}\n{render_block(node, 2, anchors)}")
        else:
            parts.append(f"{key}: {mark}{render_flow(node, anchors)}")
        if mark:
            anchors.append(anchor)
    text = "\n".join(parts) + "\n"
    depth = draw(st.sampled_from([0] * 12 + [50, 98, 99, 120, 2000]))
    if depth:
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
        text = f"peers: {opener * depth}1{closer * draw(st.sampled_from([depth, 0]))}\n" + text
    return text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from(WORDS) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(WORDS) | st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)
ADDRESSES = [w for w in WORDS if w[:1].isdigit() or w[:1] in ":f"]


def mostly(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid values nine times in ten, so that later fields get parsed too; anything otherwise."""
    return st.integers(0, 9).flatmap(lambda n: good if n else json_values)


pool_fields = st.fixed_dictionaries(
    {
        "name": mostly(st.sampled_from(["a", "b", "c", "", "2024"])),
        "protocol": mostly(st.sampled_from(["layer2", "layer2", "bgp"])),
        "addresses": mostly(st.lists(mostly(st.sampled_from(ADDRESSES) | st.text(max_size=12)), max_size=3)),
    },
    optional={
        "auto-assign": mostly(st.booleans()),
        "avoid-buggy-ips": mostly(st.booleans()),
        "bgp-advertisements": json_values,
    },
)
metallb_documents = st.fixed_dictionaries(
    {"address-pools": mostly(st.lists(mostly(pool_fields), max_size=4))},
    optional={"peers": json_values},
).map(lambda doc: yaml.safe_dump(doc, default_flow_style=None))


def assert_pools_or_config_error(text: str) -> None:
    try:
        pools = parse_configmap({"config": text}, CM)
    except ConfigError as exc:
        assert str(exc).startswith(f"{CM}: "), str(exc)
        event(f"ConfigError {exc.message.split(':')[0][:30]}")  # --hypothesis-show-statistics: what was hit
    else:
        assert isinstance(pools, tuple) and all(isinstance(pool, Pool) for pool in pools)
        event(f"{min(len(pools), 2)} pools")
    configmap = {"metadata": {"name": "config", "namespace": "metallb-system"}, "data": {"config": text}}
    try:
        config = rebuild_config(configmap, [], [])
    except ConfigProblem as problem:
        assert problem.target == ("ConfigMap", "metallb-system", "config")
    else:
        assert isinstance(config, Config)


@FUZZ
@given(text=yaml_documents())
def test_yaml_structure(text: str) -> None:
    assert_pools_or_config_error(text)


@FUZZ
@given(text=metallb_documents)
def test_metallb_shaped_documents(text: str) -> None:
    assert_pools_or_config_error(text)


@FUZZ
@given(
    raw=st.binary(max_size=400), encoding=st.sampled_from(["utf-8", "latin-1"]), text=st.text(max_size=200)
)
def test_raw_bytes_and_text(raw: bytes, encoding: str, text: str) -> None:
    assert_pools_or_config_error(raw.decode(encoding, errors="replace"))
    assert_pools_or_config_error(text)
