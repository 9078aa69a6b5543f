"""PATCH semantics: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and Kubernetes strategic merge patch.

The strategic merge patch follows the documented behaviour of k8s.io/apimachinery's strategicpatch package:
lists with a patch merge key are merged element by element, lists of primitives with strategy "merge" are
merged as sets, every other list is replaced; the directives `$patch` (replace/delete/merge), `$retainKeys`,
`$setElementOrder/<field>` and `$deleteFromPrimitiveList/<field>` are honoured. The patch metadata comes from
schemas.py, the same table the OpenAPI document publishes, so kubectl and the server agree on it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from lab.apiserver import resources, schemas
from lab.apiserver.errors import ApiError

# ----------------------------------------------------------------------------------------------------
# RFC 7386 JSON merge patch


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch; returns a new value (the inputs are not modified)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ----------------------------------------------------------------------------------------------------
# RFC 6902 JSON patch


class JsonPatchError(ApiError):
    """A JSON patch that cannot be applied. The real server answers a generic 422 (the json-patch library's
    message is dropped from the Status); `detail` keeps it for logs and tests."""

    def __init__(self, detail: str) -> None:
        super().__init__(422, "Invalid", "the server rejected our request due to an error in our request")
        self.detail = detail


def _bad_patch(message: str) -> ApiError:
    return JsonPatchError(message)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _bad_patch(f'invalid JSON pointer "{path}": must start with "/"')
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _array_index(container: list[Any], token: str, path: str, for_add: bool) -> int:
    if token == "-" and for_add:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise _bad_patch(f'invalid array index "{token}" in path "{path}"')
    index = int(token)
    limit = len(container) if for_add else len(container) - 1
    if index > limit:
        raise _bad_patch(f'array index {index} out of bounds in path "{path}"')
    return index


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise _bad_patch(f'missing path "{path}"')
            node = node[token]
        elif isinstance(node, list):
            node = node[_array_index(node, token, path, for_add=False)]
        else:
            raise _bad_patch(f'missing path "{path}"')
    return node


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _bad_patch(f'missing path "{path}"')
        return parent[last]
    if isinstance(parent, list):
        return parent[_array_index(parent, last, path, for_add=False)]
    raise _bad_patch(f'missing path "{path}"')


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_array_index(parent, last, path, for_add=True), value)
    else:
        raise _bad_patch(f'missing path "{path}"')
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    tokens = _pointer(path)
    if not tokens:
        raise _bad_patch("cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _bad_patch(f'unable to remove nonexistent key "{last}": missing value')
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_array_index(parent, last, path, for_add=False))
    raise _bad_patch(f'missing path "{path}"')


def _op_path(op: dict[str, Any], field: str = "path") -> str:
    value = op.get(field)
    if not isinstance(value, str):
        raise _bad_patch(f'operation "{op.get("op")}" is missing "{field}"')
    return value


def _op_value(op: dict[str, Any]) -> Any:
    if "value" not in op:
        raise _bad_patch(f'operation "{op.get("op")}" is missing "value"')
    return copy.deepcopy(op["value"])


def json_patch(target: Any, ops: list[dict[str, Any]]) -> Any:
    """Apply an RFC 6902 JSON patch atomically; raises ApiError 422 when an operation cannot apply."""
    if not isinstance(ops, list):
        raise _bad_patch("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict):
            raise _bad_patch("each JSON patch operation must be an object")
        kind = op.get("op")
        if kind == "add":
            doc = _add(doc, _op_path(op), _op_value(op))
        elif kind == "remove":
            doc, _ = _remove(doc, _op_path(op))
        elif kind == "replace":
            path = _op_path(op)
            value = _op_value(op)
            if _pointer(path):
                _get(doc, path)  # replace needs an existing target
                doc, _ = _remove(doc, path)
                doc = _add(doc, path, value)
            else:
                doc = value
        elif kind == "move":
            source, path = _op_path(op, "from"), _op_path(op)
            if path.startswith(source + "/"):
                raise _bad_patch(f'cannot move "{source}" into its own child "{path}"')
            doc, value = _remove(doc, source)
            doc = _add(doc, path, value)
        elif kind == "copy":
            value = copy.deepcopy(_get(doc, _op_path(op, "from")))
            doc = _add(doc, _op_path(op), value)
        elif kind == "test":
            path = _op_path(op)
            if _get(doc, path) != op.get("value"):
                raise _bad_patch(f"testing value {path} failed: test failed")
        else:
            raise _bad_patch(f'unexpected kind of operation "{kind}"')
    return doc


# ----------------------------------------------------------------------------------------------------
# Strategic merge patch

_PATCH = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


class _Delete:
    """Marker returned when a map carries `$patch: delete` (the field it sits in is removed)."""


_DELETE = _Delete()


def supports_strategic_merge(group: str, kind: str) -> bool:
    """Built-in kinds support strategic merge patch; custom resources do not (the server answers 415).

    Every built-in kind does, including those whose fields we do not spell out in schemas (such as a
    PodDisruptionBudget): `kubectl apply` of an existing object of any built-in kind sends one.
    """
    return any(rt.group == group and rt.kind == kind for rt in resources.BUILTIN)


# A built-in kind we keep no schema for still has ObjectMeta's merge keys; its other lists are replaced,
# which is strategicpatch's behaviour for a field without a patch strategy.
_METADATA_ONLY: schemas.Schema = {"properties": {"metadata": {"$ref": schemas.PREFIX + schemas.META}}}


def strategic_merge_patch(
    target: dict[str, Any], patch: dict[str, Any], group: str, kind: str
) -> dict[str, Any]:
    """Apply a strategic merge patch to an object of a built-in kind; returns a new object."""
    if not isinstance(patch, dict):
        raise ApiError(400, "BadRequest", "a strategic merge patch must be a JSON object")
    root = schemas.root_for(group, kind)
    schema = schemas.resolve(schemas.ref(root)) if root else _METADATA_ONLY
    merged = _merge_map(copy.deepcopy(target) if isinstance(target, dict) else {}, patch, schema)
    if not isinstance(merged, dict):
        return {}
    return merged


def _properties(schema: schemas.Schema | None) -> dict[str, Any]:
    if schema is None:
        return {}
    props = schema.get("properties")
    return props if isinstance(props, dict) else {}


def _field_schema(schema: schemas.Schema | None, field: str) -> schemas.Schema | None:
    """The schema of one field of a map (a struct property, or the value type of a map)."""
    if schema is None:
        return None
    prop = _properties(schema).get(field)
    if prop is None and isinstance(schema.get("additionalProperties"), dict):
        prop = schema["additionalProperties"]
    return schemas.resolve(prop) if isinstance(prop, dict) else None


def _strategy(schema: schemas.Schema | None) -> set[str]:
    if schema is None:
        return set()
    raw = schema.get("x-kubernetes-patch-strategy", "")
    return {part for part in str(raw).split(",") if part}


def _invalid_patch(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def _strip_directives(value: Any, schema: schemas.Schema | None) -> Any:
    """A patch value that has no counterpart in the target: merge it into nothing (drops directives)."""
    if isinstance(value, dict):
        result = _merge_map({}, value, schema)
        return result
    if isinstance(value, list):
        return _merge_list([], value, schema, None, None)
    return copy.deepcopy(value)


def _merge_map(original: dict[str, Any], patch: dict[str, Any], schema: schemas.Schema | None) -> Any:
    directive = patch.get(_PATCH)
    if directive is not None and directive not in ("replace", "delete", "merge"):
        raise _invalid_patch(f"Unknown patch type: {directive!r} in map: {patch!r}")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        # The map is replaced by the patch, still without directives of its own.
        original = {}
    result = original

    retain = patch.get(_RETAIN_KEYS)
    if retain is not None and not isinstance(retain, list):
        raise _invalid_patch(f"$retainKeys must be a list, got {retain!r}")

    orders: dict[str, list[Any]] = {}
    deletions: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key.startswith(_SET_ORDER):
            if not isinstance(value, list):
                raise _invalid_patch(f"{key} must be a list")
            orders[key[len(_SET_ORDER) :]] = value
        elif key.startswith(_DELETE_PRIMITIVE):
            if not isinstance(value, list):
                raise _invalid_patch(f"{key} must be a list")
            deletions[key[len(_DELETE_PRIMITIVE) :]] = value

    for field, doomed in deletions.items():
        current = result.get(field)
        if isinstance(current, list):
            result[field] = [item for item in current if item not in doomed]
            if not result[field] and field not in patch:
                del result[field]

    for key, value in patch.items():
        if key.startswith("$"):
            continue
        field_schema = _field_schema(schema, key)
        if value is None:
            result.pop(key, None)
            continue
        current = result.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merged = _merge_map(current, value, field_schema)
        elif isinstance(value, list) and isinstance(current, list):
            merged = _merge_list(current, value, field_schema, orders.get(key), key)
        elif isinstance(value, list) and current is None and key in orders:
            merged = _merge_list([], value, field_schema, orders.get(key), key)
        else:
            merged = _strip_directives(value, field_schema)
        if isinstance(merged, _Delete):
            result.pop(key, None)
        else:
            result[key] = merged

    # A $setElementOrder for a list the patch does not otherwise touch still reorders it.
    for field, order in orders.items():
        if field in patch or not isinstance(result.get(field), list):
            continue
        field_schema = _field_schema(schema, field)
        result[field] = _merge_list(result[field], [], field_schema, order, field)

    if retain is not None:
        keep = {str(k) for k in retain}
        for key in list(result):
            if key not in keep:
                del result[key]
    return result


def _merge_key(schema: schemas.Schema | None) -> str | None:
    if schema is None:
        return None
    key = schema.get("x-kubernetes-patch-merge-key")
    return key if isinstance(key, str) else None


def _merge_list(
    original: list[Any],
    patch: list[Any],
    schema: schemas.Schema | None,
    order: list[Any] | None,
    field: str | None,
) -> list[Any]:
    items = schema.get("items") if schema else None
    items_schema = schemas.resolve(items) if isinstance(items, dict) else None
    strategy = _strategy(schema)
    merge_key = _merge_key(schema)

    # A list element {"$patch": "replace"} replaces the whole list by the rest of the patch.
    if any(isinstance(item, dict) and item.get(_PATCH) == "replace" and len(item) == 1 for item in patch):
        rest = [item for item in patch if not (isinstance(item, dict) and item.get(_PATCH) == "replace")]
        return [_strip_directives(item, items_schema) for item in rest]

    if "merge" not in strategy:
        # No merge strategy: the patch's list replaces the original (directives inside it are dropped).
        return [_strip_directives(item, items_schema) for item in patch if not _is_delete(item)]

    if merge_key is None:
        return _merge_primitive_list(original, patch, order)
    return _merge_keyed_list(original, patch, items_schema, merge_key, order, field)


def _is_delete(item: Any) -> bool:
    return isinstance(item, dict) and item.get(_PATCH) == "delete"


def _merge_primitive_list(original: list[Any], patch: list[Any], order: list[Any] | None) -> list[Any]:
    merged = list(original)
    for item in patch:
        if isinstance(item, (dict, list)):
            raise _invalid_patch("a list of primitives with merge strategy cannot contain objects")
        if item not in merged:
            merged.append(item)
    return _normalize_order(merged, original, patch if order is None else order, lambda item: item)


def _merge_keyed_list(
    original: list[Any],
    patch: list[Any],
    items_schema: schemas.Schema | None,
    merge_key: str,
    order: list[Any] | None,
    field: str | None,
) -> list[Any]:
    result = [copy.deepcopy(item) for item in original]
    server_order = [copy.deepcopy(item) for item in original]

    def index_of(key_value: Any) -> int:
        for i, item in enumerate(result):
            if isinstance(item, dict) and item.get(merge_key) == key_value:
                return i
        return -1

    kept: list[Any] = []
    for item in patch:
        if not isinstance(item, dict):
            raise _invalid_patch(f"the list {field!r} merges maps by {merge_key!r}, got element {item!r}")
        if merge_key not in item:
            raise _invalid_patch(f"map: {item!r} does not contain declared merge key: {merge_key}")
        key_value = item[merge_key]
        position = index_of(key_value)
        if item.get(_PATCH) == "delete":
            while position >= 0:
                del result[position]
                position = index_of(key_value)
            server_order = [o for o in server_order if _key_of(o, merge_key) != key_value]
            continue
        kept.append(item)
        if position >= 0:
            merged = _merge_map(result[position], item, items_schema)
            if isinstance(merged, _Delete):
                del result[position]
            else:
                result[position] = merged
        else:
            merged = _merge_map({}, item, items_schema)
            if not isinstance(merged, _Delete):
                result.append(merged)
    key = lambda element: _key_of(element, merge_key)  # noqa: E731
    return _normalize_order(result, server_order, kept if order is None else order, key)


def _key_of(element: Any, merge_key: str) -> Any:
    if isinstance(element, dict):
        return element.get(merge_key)
    return element


def _normalize_order(
    merged: list[Any], server: list[Any], order: list[Any], key: Callable[[Any], Any]
) -> list[Any]:
    """The order strategicpatch gives a merged list (normalizeElementOrder and mergeSortedSlice in
    k8s.io/apimachinery/pkg/util/strategicpatch/patch.go): the elements the patch (or its
    $setElementOrder) names, in that order, interleaved with the server-only elements in their old order.
    An element the server did not have goes before the server-only elements not yet placed: items a patch
    adds come first."""
    wanted = [key(o) for o in order]
    server_keys = [key(s) for s in server]

    def position(values: list[Any], value: Any) -> int:
        for i, candidate in enumerate(values):
            if candidate == value:
                return i
        return -1

    in_patch = sorted((e for e in merged if key(e) in wanted), key=lambda e: position(wanted, key(e)))
    server_only = sorted(
        (e for e in merged if key(e) not in wanted), key=lambda e: position(server_keys, key(e))
    )
    out: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(in_patch):
        if i >= len(server_only):
            out.append(in_patch[j])
            j += 1
        elif j >= len(in_patch):
            out.append(server_only[i])
            i += 1
        else:
            left = position(server_keys, key(server_only[i]))
            right = position(server_keys, key(in_patch[j]))
            if left >= 0 and right >= 0 and left < right:
                out.append(server_only[i])
                i += 1
            else:
                out.append(in_patch[j])
                j += 1
    return out
