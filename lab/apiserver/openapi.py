"""The OpenAPI documents kubectl reads: /openapi/v2 and /openapi/v3 (discovery, one document per GV).

kubectl uses them for two things. `kubectl apply` builds strategic merge patches for built-in kinds from the
`x-kubernetes-patch-merge-key` / `x-kubernetes-patch-strategy` extensions (v3 first, then v2). And validation:
kubectl (--validate=strict, the default) looks in the v3 document of the object's group/version for a PATCH
operation carrying the object's `x-kubernetes-group-version-kind`; when that operation lists the
`fieldValidation` query parameter, kubectl sends `?fieldValidation=Strict` and leaves the checking to the
server (`unknown_fields` below is that check); otherwise it validates on the client against /openapi/v2.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from lab.apiserver import patch as patching
from lab.apiserver import schemas

Obj = dict[str, Any]

SERVER_VERSION = "v1.37.0"
V2_PREFIX = "#/definitions/"
V3_PREFIX = "#/components/schemas/"
META = schemas.META

# Advertising `fieldValidation` makes kubectl rely on server-side field validation, as on a real cluster.
ADVERTISE_FIELD_VALIDATION = True

_QUERY_DOCS = {
    "dryRun": "When present, indicates that modifications should not be persisted. An invalid or "
    "unrecognized dryRun directive will result in an error response and no further processing of the "
    "request. Valid values are: - All: all dry run stages will be processed",
    "fieldManager": "fieldManager is a name associated with the actor or entity that is making these "
    "changes.",
    "fieldValidation": "fieldValidation instructs the server on how to handle objects in the request "
    "(POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict",
    "force": 'Force is going to "force" Apply requests.',
}

_META_COMPONENTS: dict[str, Obj] = {
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch": {
        "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request "
        "body.",
        "type": "object",
    },
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status": {
        "description": "Status is a return value for calls that don't return other objects.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    },
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions": {
        "description": "DeleteOptions may be provided when deleting an API object.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    },
}


# ------------------------------------------------------------------------------------------------ kinds


def _definition_name(kind: Obj) -> str:
    """The definition of a kind: the built-in one, or reverse-domain naming for custom resources."""
    builtin = schemas.ROOTS.get((kind["group"], kind["version"], kind["kind"]))
    if builtin and kind.get("schema") is None:
        return builtin
    group = str(kind["group"])
    prefix = ".".join(reversed(group.split("."))) if group else "io.k8s.api.core"
    return f"{prefix}.{kind['version']}.{kind['kind']}"


def _gvk(kind: Obj) -> list[Obj]:
    return [{"group": kind["group"], "version": kind["version"], "kind": kind["kind"]}]


def _custom_definition(kind: Obj, for_v2: bool) -> Obj:
    """A custom resource's schema (a CRD's openAPIV3Schema), published as the real server does."""
    raw = kind.get("schema")
    schema: Obj = copy.deepcopy(raw) if isinstance(raw, dict) else {"type": "object"}
    if for_v2:
        schema = _to_v2(schema)
    if not isinstance(raw, dict) or schema.get("x-kubernetes-preserve-unknown-fields") is True:
        # Without a structural schema anything goes (kubectl must not reject fields it cannot know).
        schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    properties = schema.get("properties")
    if isinstance(properties, dict):
        properties["apiVersion"] = schemas.string("APIVersion defines the versioned schema of this object.")
        properties["kind"] = schemas.string("Kind is a string value representing the REST resource.")
        properties["metadata"] = {"$ref": V2_PREFIX + META}
    schema["type"] = "object"
    schema["x-kubernetes-group-version-kind"] = _gvk(kind)
    return schema


_V2_DROP = ("nullable", "oneOf", "anyOf", "allOf", "not", "x-kubernetes-validations", "default")


def _to_v2(schema: Any) -> Any:
    """Reduce an OpenAPI v3 schema to what kubectl's v2 validator understands, as the real server does:
    objects that preserve unknown fields lose their property list, int-or-string becomes untyped."""
    if isinstance(schema, list):
        return [_to_v2(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _to_v2(v) for k, v in schema.items() if k not in _V2_DROP}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.pop("properties", None)
    if out.get("x-kubernetes-preserve-unknown-fields") is True:
        out.pop("properties", None)
        out.pop("additionalProperties", None)
        out.pop("required", None)
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _to_v2(v) for k, v in schema["properties"].items()}
    return out


def _definitions(kinds: list[Obj], for_v2: bool) -> dict[str, Obj]:
    defs: dict[str, Obj] = copy.deepcopy(schemas.DEFINITIONS)
    for kind in kinds:
        name = _definition_name(kind)
        if name in schemas.DEFINITIONS and kind.get("schema") is None:
            continue
        # A custom resource, or a built-in kind we have no detailed schema for (then permissive).
        defs[name] = _custom_definition(kind, for_v2)
    return defs


# -------------------------------------------------------------------------------------------------- v2


def openapi_v2(kinds: list[Obj]) -> Obj:
    """The Swagger 2.0 document at /openapi/v2."""
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": SERVER_VERSION},
        "paths": {},
        "definitions": _definitions(kinds, for_v2=True),
    }


# -------------------------------------------------------------------------------------------------- v3


def _v3_refs(value: Any) -> Any:
    """Rewrite v2 refs to v3; a $ref with siblings becomes allOf[$ref] plus the siblings, as real."""
    if isinstance(value, list):
        return [_v3_refs(item) for item in value]
    if not isinstance(value, dict):
        return value
    out = {k: _v3_refs(v) for k, v in value.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith(V2_PREFIX):
        ref = V3_PREFIX + ref[len(V2_PREFIX) :]
        siblings = {k: v for k, v in out.items() if k != "$ref"}
        out = {"allOf": [{"$ref": ref}], **siblings} if siblings else {"$ref": ref}
    return out


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if group == "" else f"apis/{group}/{version}"


def _kinds_of(kinds: list[Obj], group: str, version: str) -> list[Obj]:
    return [k for k in kinds if k["group"] == group and k["version"] == version]


def _param(name: str, schema_type: str = "string") -> Obj:
    return {
        "name": name,
        "in": "query",
        "description": _QUERY_DOCS[name],
        "schema": {"type": schema_type, "uniqueItems": True},
    }


def _operation(action: str, verb: str, kind: Obj, definition: str, namespaced: bool, collection: bool) -> Obj:
    group = str(kind["group"])
    tag = (group.split(".")[0] if group else "core") + "_" + str(kind["version"])
    scope = "Namespaced" if namespaced else ""
    suffix = "Collection" if action == "deletecollection" else ""
    op_id = f"{verb}{tag.title().replace('_', '')}{scope}{kind['kind']}{suffix}"
    ref = {"$ref": V3_PREFIX + definition}
    operation: Obj = {
        "operationId": op_id,
        "tags": [tag],
        "description": f"{action} {kind['kind']}",
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(kind)[0],
    }
    params: list[Obj] = []
    if action in ("post", "put", "patch"):
        params = [_param("dryRun"), _param("fieldManager")]
        if ADVERTISE_FIELD_VALIDATION:
            params.append(_param("fieldValidation"))
    if action == "patch":
        params.append(_param("force", "boolean"))
        patch_ref = {"$ref": V3_PREFIX + "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}
        content_types = [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ]
        if patching.supports_strategic_merge(group, str(kind["kind"])):
            content_types.append("application/strategic-merge-patch+json")
        operation["requestBody"] = {
            "content": {t: {"schema": patch_ref} for t in content_types},
            "required": True,
        }
    elif action in ("post", "put"):
        operation["requestBody"] = {"content": {"*/*": {"schema": ref}}, "required": True}
    if params:
        operation["parameters"] = params
    if collection and action == "list":
        operation["x-kubernetes-action"] = "list"
    return operation


def _paths(kind: Obj, definition: str) -> dict[str, Obj]:
    group, version, plural = str(kind["group"]), str(kind["version"]), str(kind["plural"])
    base = "/" + _gv_path(group, version)
    name_param = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    ns_param = {"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}}
    namespaced = bool(kind.get("namespaced"))
    scoped = f"{base}/namespaces/{{namespace}}/{plural}" if namespaced else f"{base}/{plural}"
    common = [ns_param] if namespaced else []

    def op(action: str, verb: str, collection: bool = False) -> Obj:
        return _operation(action, verb, kind, definition, namespaced, collection)

    paths: dict[str, Obj] = {
        scoped: {
            "get": op("list", "list", collection=True),
            "post": op("post", "create"),
            "delete": op("deletecollection", "delete", collection=True),
            "parameters": common,
        },
        f"{scoped}/{{name}}": {
            "get": op("get", "read"),
            "put": op("put", "replace"),
            "patch": op("patch", "patch"),
            "delete": op("delete", "delete"),
            "parameters": [name_param, *common],
        },
        f"{scoped}/{{name}}/status": {
            "get": op("get", "read"),
            "put": op("put", "replace"),
            "patch": op("patch", "patch"),
            "parameters": [name_param, *common],
        },
    }
    if namespaced:
        paths[f"{base}/{plural}"] = {"get": op("list", "list", collection=True)}
    return paths


def _reachable(defs: dict[str, Obj], roots: list[str]) -> dict[str, Obj]:
    """Only the definitions the group/version's kinds reference, like the real per-group documents."""
    seen: dict[str, Obj] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen[name] = defs[name]
        stack: list[Any] = [defs[name]]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, str) and ref.startswith(V2_PREFIX):
                    todo.append(ref[len(V2_PREFIX) :])
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    return dict(sorted(seen.items()))


def openapi_v3_group_version(kinds: list[Obj], group: str, version: str) -> Obj | None:
    """The OpenAPI 3.0 document of one group/version (/openapi/v3/api/v1, /openapi/v3/apis/G/V), or None."""
    members = _kinds_of(kinds, group, version)
    if not members:
        return None
    defs = _definitions(members, for_v2=False)
    paths: dict[str, Obj] = {}
    roots = []
    for kind in sorted(members, key=lambda k: str(k["plural"])):
        definition = _definition_name(kind)
        roots.append(definition)
        paths.update(_paths(kind, definition))
    components = _reachable(defs, roots)
    components.update(copy.deepcopy(_META_COMPONENTS))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": SERVER_VERSION},
        "paths": paths,
        "components": {"schemas": _v3_refs(components)},
    }


def document_hash(doc: Obj) -> str:
    """The content hash the real server puts in serverRelativeURL (?hash=...): SHA-512, upper-case hex."""
    return hashlib.sha512(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest().upper()


def openapi_v3_discovery(kinds: list[Obj]) -> Obj:
    """/openapi/v3: every group/version with the URL (and content hash) of its document."""
    versions = sorted({(str(k["group"]), str(k["version"])) for k in kinds})
    paths: dict[str, Obj] = {}
    for group, version in versions:
        doc = openapi_v3_group_version(kinds, group, version)
        if doc is None:
            continue
        path = _gv_path(group, version)
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={document_hash(doc)}"}
    return {"paths": paths}


# ------------------------------------------------------------------------------ server-side validation


def unknown_fields(kinds: list[Obj], group: str, version: str, kind: str, obj: Any) -> list[str]:
    """Field paths of `obj` its schema does not know, as strict field validation reports them
    (e.g. `spec.ports[0].nme`). Empty when the kind is unknown or its schema accepts anything."""
    match = next((k for k in kinds if (k["group"], k["version"], k["kind"]) == (group, version, kind)), None)
    if match is None:
        if schemas.ROOTS.get((group, version, kind)) is None:
            return []
        match = {"group": group, "version": version, "kind": kind, "schema": None}
    name = _definition_name(match)
    defs = schemas.DEFINITIONS
    if match.get("schema") is not None:
        root = _custom_definition(match, for_v2=False)
    elif name in defs:
        root = defs[name]
    else:
        return []
    found: list[str] = []
    _walk(root, obj, "", found, defs)
    return found


def _resolve(schema: Any, defs: dict[str, Obj]) -> Obj | None:
    if not isinstance(schema, dict):
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        for prefix in (V2_PREFIX, V3_PREFIX):
            if ref.startswith(prefix):
                return defs.get(ref[len(prefix) :])
        return None
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and not schema.get("properties"):
        return _resolve(all_of[0], defs)
    return schema


def _walk(schema: Any, value: Any, path: str, found: list[str], defs: dict[str, Obj]) -> None:
    resolved = _resolve(schema, defs)
    if resolved is None or resolved.get("x-kubernetes-preserve-unknown-fields") is True:
        return
    if isinstance(value, dict):
        properties = resolved.get("properties")
        additional = resolved.get("additionalProperties")
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if isinstance(properties, dict) and key in properties:
                _walk(properties[key], item, child, found, defs)
            elif isinstance(additional, dict):
                _walk(additional, item, child, found, defs)
            elif isinstance(properties, dict) and additional is not True:
                found.append(child)
    elif isinstance(value, list):
        items = resolved.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                _walk(items, item, f"{path}[{i}]", found, defs)
