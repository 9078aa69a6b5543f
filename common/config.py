"""Parsing of both MetalLB configuration sources into the common pool model, with field-precise errors.

Sources: the v0.12 ConfigMap (``config`` key, strict like MetalLB's yaml.UnmarshalStrict) and the
metallb.io/v1beta1 IPAddressPool and L2Advertisement custom resources. ``build_config`` cross-checks
pools from both sources; ``rebuild_config`` does it all from the source objects and names the object to blame.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import yaml

from common.addresses import parse_cidr, parse_ip
from common.errors import ConfigError, preview, shorten, type_name
from common.pools import (
    IP_SHARING_CLUSTER,
    IP_SHARING_SCOPES,
    AddressRange,
    Config,
    IPAddress,
    L2Advertisement,
    Pool,
    ServiceAllocation,
)
from common.selectors import LabelSelector, parse_label_selector

CONFIGMAP_KEY = "config"
# On an IPAddressPool: who may share its IPs (common.pools.IP_SHARING_SCOPES). MetalLB's CRD has no field for
# it, and users may keep MetalLB's CRDs, hence an annotation.
IP_SHARING_ANNOTATION = "ironlb.io/ip-sharing"

# Keys MetalLB v0.12's configFile and addressPool structs accept. The BGP-only top-level sections are accepted
# (a v0.12 file may carry them) but ignored: ironlb serves layer2 only.
_TOP_LEVEL_KEYS = ("address-pools", "peers", "bgp-communities", "bfd-profiles")
_POOL_KEYS = ("name", "protocol", "addresses", "auto-assign", "avoid-buggy-ips", "bgp-advertisements")


def _expect_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(field, f"must be a boolean, got {type_name(value)} {preview(value)}")
    return value


def _expect_str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(field, f"must be a string, got {type_name(value)} {preview(value)}")
    return value


def _expect_list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(field, f"must be a list, got {type_name(value)}")
    return value


def _expect_mapping(value: Any, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(field, f"must be a mapping, got {type_name(value)}")
    return value


# Two full IPv6 addresses, a dash and generous padding: anything longer is not an address entry.
_LONGEST_ADDRESS_ENTRY = 128


def parse_address_range(text: str) -> AddressRange:
    """One ``addresses`` entry: a CIDR (host bits must be zero, as MetalLB requires) or an ``A-B`` range.

    As in MetalLB, a CIDR is taken exactly as written (no whitespace) while a range's ends may be padded
    with spaces. Raises ValueError with a message naming the entry; callers add the field path.
    """
    if len(text) > _LONGEST_ADDRESS_ENTRY:
        raise ValueError(f'invalid address entry "{shorten(text)}": longer than any CIDR or range')
    if "-" not in text:
        if "/" not in text:
            raise ValueError(f'invalid CIDR "{text}": expected address/prefix-length or a "first-last" range')
        try:
            interface = parse_cidr(text)
        except ValueError as exc:
            raise ValueError(f'invalid CIDR "{text}": {exc}') from None
        network = interface.network
        if interface.ip != network.network_address:
            raise ValueError(f'invalid CIDR "{text}": host bits set (did you mean "{network}"?)')
        return AddressRange(network.network_address, network.broadcast_address)
    start_text, _, end_text = text.partition("-")
    ends: list[IPAddress] = []
    for which, part in (("first", start_text.strip()), ("last", end_text.strip())):
        try:
            ends.append(parse_ip(part))
        except ValueError as exc:
            raise ValueError(f'invalid range "{text}": invalid {which} address "{part}": {exc}') from None
    start, end = ends
    if start.version != end.version:
        raise ValueError(f'invalid range "{text}": first and last are of different address families')
    if int(start) > int(end):
        raise ValueError(f'invalid range "{text}": first > last')
    return AddressRange(start, end)


def _parse_addresses(value: Any, field: str) -> tuple[AddressRange, ...]:
    entries = _expect_list(value, field)
    if not entries:
        raise ConfigError(field, "pool has no addresses")
    ranges = []
    for index, entry in enumerate(entries):
        entry_field = f"{field}[{index}]"
        text = _expect_str(entry, entry_field)
        try:
            ranges.append(parse_address_range(text))
        except ValueError as exc:
            raise ConfigError(entry_field, str(exc)) from None
    return tuple(ranges)


def _parse_configmap_pool(obj: Any, field: str) -> Pool:
    pool = _expect_mapping(obj, field)
    if not isinstance(obj, Mapping):
        raise ConfigError(field, f"must be a mapping, got {type_name(obj)}")
    for key in pool:
        if key not in _POOL_KEYS:
            unknown = shorten(str(key))
            raise ConfigError(f"{field}.{unknown}", f'unknown field "{unknown}" in an address pool')
    name = pool.get("name")
    if name is None or name == "":
        raise ConfigError(f"{field}.name", "missing pool name")
    if isinstance(name, int) and not isinstance(name, bool):
        name = str(name)  # Go's yaml decodes a bare number into the string field
    name = _expect_str(name, f"{field}.name")
    protocol = pool.get("protocol")
    if protocol is None or protocol == "":
        raise ConfigError(f"{field}.protocol", f'missing protocol in pool "{name}"')
    protocol = _expect_str(protocol, f"{field}.protocol")
    if protocol == "bgp":
        raise ConfigError(f"{field}.protocol", 'protocol "bgp" is not supported: ironlb serves layer2 only')
    if protocol != "layer2":
        raise ConfigError(f"{field}.protocol", f'unknown protocol "{protocol}" (supported: layer2)')
    if _expect_list(pool.get("bgp-advertisements"), f"{field}.bgp-advertisements"):
        raise ConfigError(f"{field}.bgp-advertisements", "bgp-advertisements are only valid for bgp pools")
    auto_assign = pool.get("auto-assign")
    avoid_buggy = pool.get("avoid-buggy-ips")
    return Pool(
        name=name,
        ranges=_parse_addresses(pool.get("addresses"), f"{field}.addresses"),
        protocol=protocol,
        auto_assign=True if auto_assign is None else _expect_bool(auto_assign, f"{field}.auto-assign"),
        avoid_buggy_ips=(
            False if avoid_buggy is None else _expect_bool(avoid_buggy, f"{field}.avoid-buggy-ips")
        ),
    )


# A MetalLB config nests about six levels deep. PyYAML composes and flattens merge keys recursively, so
# without these bounds a short text raises RecursionError or expands exponentially (each merge level may
# copy the previous one twice).
MAX_YAML_DEPTH = 100
MAX_MERGED_KEYS = 10_000
# Aliases make a short text stand for an exponentially large document (a 428-byte "billion laughs" is 10^9
# nodes): PyYAML shares the aliased objects, but anything that walks the result (a repr in an error message,
# a parser iterating a list) pays for the whole expansion. Larger documents, once expanded, are refused.
MAX_EXPANDED_NODES = 100_000
# The ConfigMap's `config` text. MetalLB's files are a few KB; 256 KiB holds thousands of pools.
MAX_CONFIG_CHARACTERS = 256 * 1024
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that reads YAML as Go's yaml.UnmarshalStrict does and fails only with YAMLError.

    A key repeated in one mapping is an error (PyYAML would silently keep the last value, hiding e.g. a
    second ``addresses`` list); merge keys (``<<: *anchor``) are expanded, and explicit keys override merged
    ones. Keys that are lists or mappings, nesting deeper than MAX_YAML_DEPTH and merges expanding to more
    than MAX_MERGED_KEYS keys are errors too.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._merged_keys = 0

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            problem = _expansion_problem(node)
            if problem is not None:
                raise yaml.composer.ComposerError(None, None, problem, node.start_mark)
        return node

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            # e.g. the timestamp 2001-02-30, `!!bool maybe`, `!!int x`: PyYAML lets the Python error through.
            tag = node.tag.rpartition(":")[2] or node.tag
            problem = f"invalid {tag} value: {exc}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        merges = any(key_node.tag == _MERGE_TAG for key_node, _ in node.value)
        super().flatten_mapping(node)
        if merges:
            self._merged_keys += len(node.value)
            if self._merged_keys > MAX_MERGED_KEYS:
                problem = f"merge keys expand to more than {MAX_MERGED_KEYS} keys"
                raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                problem = f"a mapping key must be a scalar, got a {kind}"
                raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {preview(key)} in a mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expansion_problem(root: yaml.Node) -> str | None:
    """Why the document is too large with its aliases expanded (or recursive), else None. Linear in the
    number of distinct nodes: each node's expanded size is computed once (an iterative post-order walk, since
    alias chains may nest deeper than the recursion limit)."""
    sizes: dict[int, int] = {}
    entered: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if children_done:
            entered.discard(id(node))
            size = sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if size > MAX_EXPANDED_NODES:
                return f"aliases expand the document to more than {MAX_EXPANDED_NODES} nodes"
            continue
        if id(node) in sizes:
            continue
        if id(node) in entered:
            return "an alias refers to a node that contains it"
        entered.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return f"invalid YAML: {' '.join(str(exc).split())}"


def parse_configmap(data: Mapping[str, str] | None, source: str) -> tuple[Pool, ...]:
    """Pools from a MetalLB v0.12 ConfigMap's ``data``; no ``config`` key or an empty document: no pools."""
    try:
        text = (data or {}).get(CONFIGMAP_KEY)
        if text is None:
            return ()
        if not isinstance(text, str):
            raise ConfigError(CONFIGMAP_KEY, f"must be a string, got {type_name(text)}")
        if len(text) > MAX_CONFIG_CHARACTERS:
            limit = MAX_CONFIG_CHARACTERS
            raise ConfigError(CONFIGMAP_KEY, f"is {len(text)} characters long, more than {limit} accepted")
        try:
            document = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
        except yaml.YAMLError as exc:
            raise ConfigError(CONFIGMAP_KEY, _yaml_problem(exc)) from None
        if document is None:
            return ()
        if not isinstance(document, Mapping):
            raise ConfigError(CONFIGMAP_KEY, f"must be a YAML mapping, got {type_name(document)}")
        for key in document:
            if key not in _TOP_LEVEL_KEYS:
                expected = ", ".join(_TOP_LEVEL_KEYS)
                name = shorten(str(key))
                raise ConfigError(name, f'unknown field "{name}" (expected one of {expected})')
        pools = []
        seen: dict[str, int] = {}
        for index, obj in enumerate(_expect_list(document.get("address-pools"), "address-pools")):
            pool = _parse_configmap_pool(obj, f"address-pools[{index}]")
            if pool.name in seen:
                raise ConfigError(
                    f"address-pools[{index}].name",
                    f'duplicate definition of pool "{pool.name}" (first at address-pools[{seen[pool.name]}])',
                )
            seen[pool.name] = index
            pools.append(Pool(**{**pool.__dict__, "source": source}))
        return tuple(pools)
    except ConfigError as exc:
        raise exc.with_source(source) from None


def _object_source(kind: str, obj: Mapping[str, Any]) -> tuple[str, str]:
    """(name, "Kind namespace/name") of a custom resource; raises ConfigError without a usable name."""
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("metadata.name", "missing name", kind)
    return name, object_source(kind, obj)


def _parse_selectors(value: Any, field: str) -> tuple[LabelSelector, ...]:
    return tuple(
        parse_label_selector(item, f"{field}[{index}]")
        for index, item in enumerate(_expect_list(value, field))
    )


def _parse_strings(value: Any, field: str) -> tuple[str, ...]:
    items = _expect_list(value, field)
    return tuple(_expect_str(item, f"{field}[{index}]") for index, item in enumerate(items))


def _parse_service_allocation(value: Any, field: str) -> ServiceAllocation | None:
    if value is None:
        return None
    spec = _expect_mapping(value, field)
    priority = spec.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise ConfigError(
            f"{field}.priority", f"must be an integer, got {type_name(priority)} {preview(priority)}"
        )
    return ServiceAllocation(
        priority=priority,
        namespaces=_parse_strings(spec.get("namespaces"), f"{field}.namespaces"),
        namespace_selectors=_parse_selectors(spec.get("namespaceSelectors"), f"{field}.namespaceSelectors"),
        service_selectors=_parse_selectors(spec.get("serviceSelectors"), f"{field}.serviceSelectors"),
    )


def _labels(obj: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    metadata = obj.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    if not isinstance(labels, Mapping):
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


def _ip_sharing(obj: Mapping[str, Any], default: str) -> str:
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    value = annotations.get(IP_SHARING_ANNOTATION) if isinstance(annotations, Mapping) else None
    if value is None:
        return default
    if value not in IP_SHARING_SCOPES:
        choices = " or ".join(f'"{scope}"' for scope in IP_SHARING_SCOPES)
        field = f"metadata.annotations[{IP_SHARING_ANNOTATION}]"
        raise ConfigError(field, f"must be {choices}, got {preview(value)}")
    return str(value)


def parse_ip_address_pool(obj: Mapping[str, Any], ip_sharing: str = IP_SHARING_CLUSTER) -> Pool:
    """A metallb.io/v1beta1 IPAddressPool. Unknown spec fields are ignored, as the API server prunes them.
    ``ip_sharing`` is the scope of IP sharing when the pool's annotation does not set it."""
    name, source = _object_source("IPAddressPool", obj)
    try:
        spec = _expect_mapping(obj.get("spec"), "spec")
        auto_assign = spec.get("autoAssign")
        avoid_buggy = spec.get("avoidBuggyIPs")
        return Pool(
            name=name,
            ranges=_parse_addresses(spec.get("addresses"), "spec.addresses"),
            auto_assign=True if auto_assign is None else _expect_bool(auto_assign, "spec.autoAssign"),
            avoid_buggy_ips=False if avoid_buggy is None else _expect_bool(avoid_buggy, "spec.avoidBuggyIPs"),
            service_allocation=_parse_service_allocation(
                spec.get("serviceAllocation"), "spec.serviceAllocation"
            ),
            source=source,
            labels=_labels(obj),
            ip_sharing=_ip_sharing(obj, ip_sharing),
        )
    except ConfigError as exc:
        raise exc.with_source(source) from None


def parse_l2_advertisement(obj: Mapping[str, Any]) -> L2Advertisement:
    """A metallb.io/v1beta1 L2Advertisement; an empty spec advertises every pool from every node."""
    name, source = _object_source("L2Advertisement", obj)
    try:
        spec = _expect_mapping(obj.get("spec"), "spec")
        return L2Advertisement(
            name=name,
            ip_address_pools=_parse_strings(spec.get("ipAddressPools"), "spec.ipAddressPools"),
            ip_address_pool_selectors=_parse_selectors(
                spec.get("ipAddressPoolSelectors"), "spec.ipAddressPoolSelectors"
            ),
            node_selectors=_parse_selectors(spec.get("nodeSelectors"), "spec.nodeSelectors"),
            interfaces=_parse_strings(spec.get("interfaces"), "spec.interfaces"),
            source=source,
        )
    except ConfigError as exc:
        raise exc.with_source(source) from None


def _field_prefix(pool: Pool, index_in_source: int) -> str:
    """Where a pool's fields live in its source object: the ConfigMap's list, or a CR's spec."""
    if pool.source.startswith("ConfigMap") or not pool.source:
        return f"address-pools[{index_in_source}]"
    return "spec"


def _name_field(pool: Pool, index_in_source: int) -> str:
    prefix = _field_prefix(pool, index_in_source)
    return "metadata.name" if prefix == "spec" else f"{prefix}.name"


def build_config(pools: Iterable[Pool], l2_advertisements: Iterable[L2Advertisement]) -> Config:
    """Cross-check pools from every source: unique names, no address in two pools (nor twice in one pool).

    L2Advertisements naming unknown pools are allowed, as in MetalLB (the pool may be created later).
    """
    pools = tuple(pools)
    index_in_source: list[int] = []
    per_source: dict[str, int] = {}
    for pool in pools:
        index_in_source.append(per_source.get(pool.source, 0))
        per_source[pool.source] = index_in_source[-1] + 1

    first_definition: dict[str, Pool] = {}
    for position, pool in enumerate(pools):
        if pool.name in first_definition:
            other = first_definition[pool.name]
            where = f" (also defined by {other.source})" if other.source else ""
            raise ConfigError(
                _name_field(pool, index_in_source[position]),
                f'duplicate definition of pool "{pool.name}"{where}',
                pool.source,
            )
        first_definition[pool.name] = pool

    # Sweep ranges sorted by start: a range overlaps an earlier one iff it starts at or before the furthest
    # end seen so far in its family. O(n log n) over the number of ranges.
    entries = sorted(
        (r.version, int(r.first), int(r.last), position, range_index)
        for position, pool in enumerate(pools)
        for range_index, r in enumerate(pool.ranges)
    )
    furthest: dict[int, tuple[int, int, int]] = {}  # version -> (last, pool position, range index)
    for version, first, last, position, range_index in entries:
        previous = furthest.get(version)
        if previous is not None and first <= previous[0]:
            # Report the pool later in configuration order: the earlier one was there first.
            a, b = (previous[1], previous[2]), (position, range_index)
            (early_pos, early_range), (late_pos, late_range) = sorted([a, b])
            late, early = pools[late_pos], pools[early_pos]
            where = "" if early.source in ("", late.source) else f" (defined by {early.source})"
            raise ConfigError(
                f"{_field_prefix(late, index_in_source[late_pos])}.addresses[{late_range}]",
                f'"{late.ranges[late_range]}" in pool "{late.name}" overlaps with '
                f'"{early.ranges[early_range]}" in pool "{early.name}"{where}',
                late.source,
            )
        if previous is None or last > previous[0]:
            furthest[version] = (last, position, range_index)
    return Config(pools=pools, l2_advertisements=tuple(l2_advertisements))


class ConfigProblem(Exception):
    """An invalid configuration, with the object to put the Warning event on (kind, namespace, name)."""

    def __init__(self, error: ConfigError, target: tuple[str, str, str] | None) -> None:
        self.error = error
        self.target = target
        super().__init__(str(error))


def object_source(kind: str, obj: Mapping[str, Any]) -> str:
    """How errors name a source object: "Kind namespace/name", or "Kind name" for one without a namespace.
    The one spelling, so an error's source always finds the object it blames."""
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    name = metadata.get("name")
    namespace = metadata.get("namespace")
    name = name if isinstance(name, str) else ""
    return f"{kind} {namespace}/{name}" if isinstance(namespace, str) and namespace else f"{kind} {name}"


def _target(kind: str, obj: Mapping[str, Any]) -> tuple[str, str, str]:
    metadata = obj.get("metadata") or {}
    return kind, str(metadata.get("namespace", "")), str(metadata.get("name", ""))


def rebuild_config(
    configmap: Mapping[str, Any] | None,
    ip_address_pools: Iterable[Mapping[str, Any]],
    l2_advertisements: Iterable[Mapping[str, Any]],
    ip_sharing: str = IP_SHARING_CLUSTER,
) -> Config:
    """Parse every source object and cross-check them; raises ConfigProblem naming the object at fault.
    ``ip_sharing`` is the sharing scope of the ConfigMap's pools and of IPAddressPools not annotated."""
    targets: dict[str, tuple[str, str, str]] = {}
    pools: list[Pool] = []
    advertisements: list[L2Advertisement] = []
    if configmap is not None:
        source = object_source("ConfigMap", configmap)
        targets[source] = _target("ConfigMap", configmap)
        try:
            parsed = parse_configmap(configmap.get("data"), source)
            pools.extend(replace(pool, ip_sharing=ip_sharing) for pool in parsed)
        except ConfigError as e:
            raise ConfigProblem(e if e.source else e.with_source(source), targets[source]) from e
    for kind, objects in (("IPAddressPool", ip_address_pools), ("L2Advertisement", l2_advertisements)):
        for obj in objects:
            source = object_source(kind, obj)
            targets[source] = _target(kind, obj)
            try:
                if kind == "IPAddressPool":
                    pools.append(parse_ip_address_pool(obj, ip_sharing))
                else:
                    advertisements.append(parse_l2_advertisement(obj))
            except ConfigError as e:
                raise ConfigProblem(e if e.source else e.with_source(source), targets[source]) from e
    try:
        return build_config(pools, advertisements)
    except ConfigError as e:
        raise ConfigProblem(e, targets.get(e.source)) from e
