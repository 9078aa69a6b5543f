"""Field ownership (metadata.managedFields) and server-side apply, after sigs.k8s.io/structured-merge-diff as
kube-apiserver runs it (k8s.io/apimachinery/pkg/util/managedfields): pure functions over plain objects.

A field set is a set of paths; a path is a tuple of elements ("f", field), ("k", '{"name":"x"}') for a list
item by its keys, ("v", '"x"') for a set item, ("i", 3) for an atomic list's index. Members are the leaves,
the list items and the nodes of map-typed fields (labels, data); struct fields are not members of their own.
The schema says what a list is: a map keyed by some fields, a set, or atomic (replaced whole).
"""

from __future__ import annotations

import copy
import datetime
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lab.apiserver import schemas

Path = tuple[tuple[str, Any], ...]
FieldSet = frozenset[Path]
Obj = dict[str, Any]

# ObjectMeta fields whose ownership is tracked (the rest belong to the server).
TRACKED_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")
# The list-map keys of built-in lists whose server-side apply keys differ from their patch merge key
# (+listMapKey in staging/src/k8s.io/api/core/v1/types.go), with the defaults that fill a missing key field.
_BUILTIN_MAP_KEYS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    schemas.CORE + "ServicePort": (("port", "protocol"), {"protocol": "TCP"}),
    schemas.CORE + "ContainerPort": (("containerPort", "protocol"), {"protocol": "TCP"}),
}


# ------------------------------------------------------------------------------------------------ schema


@dataclass(frozen=True)
class Node:
    """A schema node: built-in OpenAPI v2 definitions (with $refs) or a CRD's structural schema."""

    raw: dict[str, Any] | None
    builtin: bool

    def resolved(self) -> dict[str, Any] | None:
        return schemas.resolve(self.raw) if self.builtin else self.raw

    def child(self, key: str) -> tuple[Node, bool]:
        """The schema of a map entry, and whether it is a declared struct field."""
        schema = self.resolved() or {}
        props = schema.get("properties")
        if isinstance(props, dict) and key in props:
            return Node(props[key], self.builtin), True
        extra = schema.get("additionalProperties")
        return Node(extra if isinstance(extra, dict) else None, self.builtin), False

    def items(self) -> Node:
        schema = self.resolved() or {}
        items = schema.get("items")
        return Node(items if isinstance(items, dict) else None, self.builtin)

    def is_struct(self) -> bool:
        schema = self.resolved() or {}
        return isinstance(schema.get("properties"), dict) and bool(schema["properties"])

    def atomic_map(self) -> bool:
        schema = self.resolved() or {}
        return schema.get("x-kubernetes-map-type") == "atomic"

    def list_semantics(self) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        """("map", keys, key defaults) | ("set", (), {}) | ("atomic", (), {})."""
        schema = self.resolved() or {}
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "map":
            return "map", tuple(schema.get("x-kubernetes-list-map-keys") or ()), {}
        if list_type in ("set", "atomic"):
            return str(list_type), (), {}
        if not self.builtin:
            return "atomic", (), {}  # a CRD list without a list type is atomic
        strategy = str(schema.get("x-kubernetes-patch-strategy", "")).split(",")
        merge_key = schema.get("x-kubernetes-patch-merge-key")
        if "merge" not in strategy:
            return "atomic", (), {}
        if not merge_key:
            return "set", (), {}
        items_ref = str((schema.get("items") or {}).get("$ref", ""))
        keys, defaults = _BUILTIN_MAP_KEYS.get(items_ref.removeprefix(schemas.PREFIX), ((merge_key,), {}))
        return "map", keys, defaults


def root_node(group: str, kind: str, crd_schema: dict[str, Any] | None) -> Node:
    """The schema of a kind's tracked fields; metadata always takes the built-in ObjectMeta."""
    if crd_schema is not None:
        props = dict(crd_schema.get("properties") or {})
        props["metadata"] = schemas.ref(schemas.META)
        return _MixedRoot({**crd_schema, "properties": props})
    root = schemas.root_for(group, kind)
    return Node(schemas.ref(root) if root else None, True)


class _MixedRoot(Node):
    """A CRD root whose metadata property is the built-in ObjectMeta definition."""

    def __init__(self, raw: dict[str, Any]) -> None:
        super().__init__(raw, False)

    def child(self, key: str) -> tuple[Node, bool]:
        if key == "metadata":
            return Node(schemas.ref(schemas.META), True), True
        return super().child(key)


# ---------------------------------------------------------------------------------------------- field sets


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def item_key(item: Any, keys: tuple[str, ...], defaults: dict[str, Any]) -> str:
    fields = item if isinstance(item, dict) else {}
    return _canon({k: fields.get(k, defaults.get(k)) for k in keys})


def tracked(obj: Obj) -> Obj:
    """The part of an object whose fields have owners: no apiVersion and kind, and only the metadata users
    set."""
    out = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    meta = obj.get("metadata") or {}
    kept = {k: meta[k] for k in TRACKED_METADATA if k in meta}
    if kept:
        out["metadata"] = kept
    return out


def nodes(value: Any, node: Node, map_nodes: bool = True) -> dict[Path, str | None]:
    """Every member path of `value` -> the leaf's canonical JSON, or None for a list item or map node.

    `map_nodes` also makes the node of every map-typed field (labels, data) a member, as the comparison of two
    objects reports it for updaters; an applier's set (ToFieldSet) leaves them out."""
    out: dict[Path, str | None] = {}
    _walk(value, node, (), out, map_nodes)
    out.pop((), None)
    return out


def _walk(value: Any, node: Node, path: Path, out: dict[Path, str | None], map_nodes: bool) -> None:
    if isinstance(value, dict) and not node.atomic_map():
        if not value:
            out[path] = "{}"
            return
        if map_nodes and path and not node.is_struct():
            out[path] = None
        for key, child_value in value.items():
            child, declared = node.child(key)
            child_path = (*path, ("f", key))
            if child_value is None:
                out[child_path] = "null"
                continue
            _walk(child_value, child, child_path, out, map_nodes)
            if not declared:
                out.setdefault(child_path, None)
        return
    if isinstance(value, list):
        kind, keys, defaults = node.list_semantics()
        if kind == "set":
            for item in value:
                out[(*path, ("v", _canon(item)))] = _canon(item)
            return
        if kind == "map" and keys:
            items = node.items()
            for item in value:
                item_path = (*path, ("k", item_key(item, keys, defaults)))
                if isinstance(item, dict) and item:
                    for key, child_value in item.items():
                        child, _ = items.child(key)
                        child_path = (*item_path, ("f", key))
                        if child_value is None:
                            out[child_path] = "null"
                        else:
                            _walk(child_value, child, child_path, out, map_nodes)
                out[item_path] = None
            return
    out[path] = _canon(value)


def field_set(value: Any, node: Node) -> FieldSet:
    """An applied configuration's fields (structured-merge-diff's ToFieldSet)."""
    return frozenset(nodes(value, node, map_nodes=False))


@dataclass(frozen=True)
class Comparison:
    added: FieldSet
    modified: FieldSet
    removed: FieldSet

    @property
    def changed(self) -> FieldSet:
        return self.added | self.modified


def compare(old: dict[Path, str | None], new: dict[Path, str | None]) -> Comparison:
    added = frozenset(new.keys() - old.keys())
    removed = frozenset(old.keys() - new.keys())
    modified = frozenset(p for p in new.keys() & old.keys() if new[p] != old[p])
    return Comparison(added, modified, removed)


# ---------------------------------------------------------------------------------------------- fieldsV1


def _element_key(element: tuple[str, Any]) -> str:
    kind, value = element
    return f"{kind}:{value}"


def encode(paths: Iterable[Path]) -> dict[str, Any]:
    """FieldsV1: nested objects keyed "f:name" / "k:{...}" / "v:..." / "i:n"; "." marks a member that has
    members below it, an empty object a member without."""
    root: dict[str, Any] = {}
    for path in sorted(paths, key=lambda p: [_element_key(e) for e in p]):
        node = root
        for element in path:
            node = node.setdefault(_element_key(element), {})
        node.setdefault(".", True)
    return _finish(root)


def _finish(node: dict[str, Any]) -> dict[str, Any]:
    member = node.pop(".", False)
    children = {k: _finish(v) for k, v in sorted(node.items())}
    if member and children:
        return {".": {}, **children}
    return children


def decode(fields: Any, prefix: Path = ()) -> FieldSet:
    out: set[Path] = set()
    if not isinstance(fields, dict):
        return frozenset()
    for key, child in fields.items():
        if key == ".":
            out.add(prefix)
            continue
        kind, _, raw = str(key).partition(":")
        element: tuple[str, Any] = (kind, int(raw) if kind == "i" and raw.isdigit() else raw)
        path = (*prefix, element)
        if isinstance(child, dict) and child:
            out |= decode(child, path)
        else:
            out.add(path)
    return frozenset(out)


# ------------------------------------------------------------------------------------------------ managers


@dataclass(frozen=True)
class ManagerKey:
    """A manager's identity: who, how (Apply or Update), on which subresource; updaters per apiVersion."""

    manager: str
    operation: str
    subresource: str = ""
    api_version: str = ""


@dataclass
class Managed:
    fields: dict[ManagerKey, FieldSet] = field(default_factory=dict)
    times: dict[ManagerKey, str] = field(default_factory=dict)
    versions: dict[ManagerKey, str] = field(default_factory=dict)


def read(entries: Any) -> Managed:
    managed = Managed()
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        operation = str(entry.get("operation", "Update"))
        version = str(entry.get("apiVersion", ""))
        key = ManagerKey(
            str(entry.get("manager", "")),
            operation,
            str(entry.get("subresource", "")),
            version if operation == "Update" else "",
        )
        managed.fields[key] = decode(entry.get("fieldsV1"))
        managed.times[key] = str(entry.get("time", ""))
        managed.versions[key] = version
    return managed


def write(managed: Managed) -> list[dict[str, Any]]:
    """metadata.managedFields: Apply entries first, then by time and manager (as the real encoder sorts)."""
    entries = []
    for key, paths in managed.fields.items():
        if not paths:
            continue
        entry: dict[str, Any] = {
            "manager": key.manager,
            "operation": key.operation,
            "apiVersion": managed.versions.get(key) or key.api_version,
            "time": managed.times.get(key, ""),
            "fieldsType": "FieldsV1",
            "fieldsV1": encode(paths),
        }
        if key.subresource:
            entry["subresource"] = key.subresource
        entries.append(entry)
    entries.sort(key=lambda e: (e["operation"] != "Apply", e["time"], e["manager"]))
    return entries


def record_write(
    managed: Managed,
    comparison: Comparison,
    writer: ManagerKey,
    api_version: str,
    now: datetime.datetime,
    applied: FieldSet | None = None,
) -> Managed:
    """The managers after a write: removed fields leave every owner; an updater takes the fields it changed
    from the others (Update is always forced); an applier owns exactly what it applied."""
    out = Managed(dict(managed.fields), dict(managed.times), dict(managed.versions))
    before = out.fields.get(writer)
    for key in list(out.fields):
        remaining = out.fields[key] - comparison.removed
        if key != writer and applied is None:
            remaining -= comparison.changed
        out.fields[key] = remaining
    if applied is not None:
        out.fields[writer] = applied
    else:
        out.fields[writer] = out.fields.get(writer, frozenset()) | comparison.changed
    for key in [k for k, v in out.fields.items() if not v]:
        out.fields.pop(key)
        out.times.pop(key, None)
        out.versions.pop(key, None)
    if writer in out.fields and (out.fields[writer] != before or writer not in out.times):
        out.times[writer] = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.versions[writer] = api_version
    return out


# ------------------------------------------------------------------------------------------------- apply


def merge(live: Any, config: Any, node: Node) -> Any:
    """The applied configuration merged into the live object: maps by key, list-maps by item key, sets as
    unions, everything else replaced by the configuration."""
    if isinstance(config, dict) and isinstance(live, dict) and not node.atomic_map():
        out = copy.deepcopy(live)
        for key, value in config.items():
            child, _ = node.child(key)
            if value is None:
                out.pop(key, None)
            else:
                out[key] = merge(live.get(key), value, child)
        return out
    if isinstance(config, list) and isinstance(live, list):
        kind, keys, defaults = node.list_semantics()
        if kind == "set":
            return copy.deepcopy(live) + [copy.deepcopy(v) for v in config if v not in live]
        if kind == "map" and keys:
            items = node.items()
            by_key = {item_key(item, keys, defaults): i for i, item in enumerate(live)}
            out_list = copy.deepcopy(live)
            for item in config:
                k = item_key(item, keys, defaults)
                if k in by_key:
                    out_list[by_key[k]] = merge(live[by_key[k]], item, items)
                else:
                    by_key[k] = len(out_list)
                    out_list.append(copy.deepcopy(item))
            return out_list
    return copy.deepcopy(config)


def remove(value: Any, paths: Iterable[Path], node: Node) -> Any:
    """`value` without the given member paths (deepest first, so a parent goes after its children)."""
    out = copy.deepcopy(value)
    for path in sorted(paths, key=len, reverse=True):
        _remove_one(out, path, node)
    return out


def _remove_one(value: Any, path: Path, node: Node) -> None:
    *parents, last = path
    current: Any = value
    current_node = node
    for element in parents:
        found = _step(current, element, current_node)
        if found is None:
            return
        current, current_node = found
    kind, name = last
    if kind == "f" and isinstance(current, dict):
        current.pop(name, None)
    elif isinstance(current, list):
        match = _list_match(current, last, current_node)
        current[:] = [item for i, item in enumerate(current) if not match(i, item)]


def _step(current: Any, element: tuple[str, Any], node: Node) -> tuple[Any, Node] | None:
    kind, name = element
    if kind == "f":
        if not isinstance(current, dict) or name not in current:
            return None
        child, _ = node.child(name)
        return current[name], child
    if isinstance(current, list):
        match = _list_match(current, element, node)
        for i, item in enumerate(current):
            if match(i, item):
                return item, node.items()
    return None


def _list_match(current: list[Any], element: tuple[str, Any], node: Node) -> Callable[[int, Any], bool]:
    kind, name = element
    _, keys, defaults = node.list_semantics()
    if kind == "k":
        return lambda i, item: item_key(item, keys, defaults) == name
    if kind == "v":
        return lambda i, item: _canon(item) == name
    return lambda i, item: i == name


def prune_set(last: FieldSet, owned: FieldSet) -> FieldSet:
    """What a re-apply removes: fields it applied last time and no manager (itself included) owns now, unless
    something still owned lies below them."""
    candidates = last - owned
    return frozenset(p for p in candidates if not any(q[: len(p)] == p and q != p for q in owned))


def path_string(path: Path) -> str:
    """fieldpath.Path.String(): .spec.ports[port=80,protocol="TCP"], [="x"] for set items."""
    parts = []
    for kind, value in path:
        if kind == "f":
            parts.append("." + str(value))
        elif kind == "k":
            fields = json.loads(value)
            parts.append("[" + ",".join(f"{k}={_canon(v)}" for k, v in sorted(fields.items())) + "]")
        elif kind == "v":
            parts.append(f"[={value}]")
        else:
            parts.append(f"[{value}]")
    return "".join(parts)


def describe_manager(key: ManagerKey, managed: Managed) -> str:
    """printManager (k8s.io/apimachinery/pkg/util/managedfields/internal/conflict.go), without the time: the
    manager identity leaves it out."""
    text = json.dumps(key.manager)
    if key.subresource:
        text += f" with subresource {json.dumps(key.subresource)}"
    if key.operation == "Update":
        text += f" using {managed.versions.get(key) or key.api_version}"
    return text


def conflict_message(conflicts: dict[ManagerKey, FieldSet], managed: Managed) -> str:
    """getConflictMessage (conflict.go): one conflict on one line, several grouped by manager."""
    flat = [(key, path) for key, paths in conflicts.items() for path in sorted(paths, key=path_string)]
    if len(flat) == 1:
        key, path = flat[0]
        who = describe_manager(key, managed)
        return f"Apply failed with 1 conflict: conflict with {who}: {path_string(path)}"
    lines = []
    for key in sorted(conflicts, key=lambda k: json.dumps([k.manager, k.operation, k.subresource])):
        lines.append(f"conflicts with {describe_manager(key, managed)}:")
        lines += [f"- {path_string(p)}" for p in sorted(conflicts[key], key=path_string)]
    return f"Apply failed with {len(flat)} conflicts: " + "\n".join(lines)
