"""The REST semantics of the server, independent of HTTP: create/get/list/update/patch/delete with
resourceVersions, generation, status subresources, finalizers, namespaces' lifecycle, owner-reference garbage
collection, dry runs and CustomResourceDefinitions. Raises ApiError; returns plain objects.
"""

from __future__ import annotations

import base64
import contextvars
import copy
import datetime
import json
import logging
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from common.selectors import Requirement
from lab.apiserver import crdvalidation, errors, managedfields, validation
from lab.apiserver.admission import mount_service_account_token
from lab.apiserver.errors import ApiError, Cause
from lab.apiserver.resources import CRD_KEY, NAMESPACE_KEY, Registry, ResourceType
from lab.apiserver.selectors import FieldRequirement, fields_match, labels_match
from lab.apiserver.store import Event, Key, Obj, Store

log = logging.getLogger("ironlb.apiserver")

GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# The Warning headers of the request being served: each request runs in its own asyncio task, hence its own
# context, so concurrent requests never share the list.
WARNINGS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("warnings", default=None)
SYSTEM_NAMESPACES = ["default", "kube-system", "kube-public", "kube-node-lease"]
POD_KEY = ("", "pods")
SERVICE_ACCOUNT_KEY = ("", "serviceaccounts")
IMMORTAL_NAMESPACES = {"default", "kube-system", "kube-public"}  # the real NamespaceLifecycle plugin refuses


class AdmissionLike(Protocol):
    def restore(self, objects: Iterable[tuple[str, str, dict[str, Any]]]) -> None: ...
    def create(self, group: str, resource: str, obj: dict[str, Any], dry_run: bool) -> dict[str, Any]: ...
    def update(
        self, group: str, resource: str, old: dict[str, Any], new: dict[str, Any], dry_run: bool
    ) -> dict[str, Any]: ...
    def update_status(
        self, group: str, resource: str, old: dict[str, Any], new: dict[str, Any], dry_run: bool
    ) -> dict[str, Any]: ...
    def deleted(self, group: str, resource: str, obj: dict[str, Any]) -> None: ...
    def abort_create(self, group: str, resource: str, obj: dict[str, Any]) -> None: ...


def rfc3339(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_part(obj: Obj) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _without_rv(obj: Obj) -> Obj:
    """An object as a no-op check compares it: without resourceVersion, and its managers without times (a
    write that changes only those times is no write, as in genericregistry.Store.Update)."""
    meta = dict(obj.get("metadata") or {})
    meta.pop("resourceVersion", None)
    meta["managedFields"] = [
        {k: v for k, v in entry.items() if k != "time"}
        for entry in meta.get("managedFields") or []
        if isinstance(entry, dict)
    ]
    return dict(obj, metadata=meta)


@dataclass(frozen=True)
class Writer:
    """Who writes, for metadata.managedFields: the request's fieldManager (or its User-Agent's product), and
    for a server-side apply the fields it applied and the managers after its conflicts were settled."""

    manager: str = "kube-apiserver"
    operation: str = "Update"
    applied: managedfields.FieldSet | None = None
    managers: managedfields.Managed | None = None


INTERNAL_WRITER = Writer()
WRITER: contextvars.ContextVar[Writer | None] = contextvars.ContextVar("writer", default=None)


def encode_continue(rv: int, after: tuple[str, str]) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": list(after)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        return int(data["rv"]), (str(data["start"][0]), str(data["start"][1]))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise errors.bad_request(f"continue key is not valid: {exc}") from exc


class Api:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        admission: AdmissionLike,
        now: Callable[[], datetime.datetime] | None = None,
        after_write: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.admission = admission
        self.now = now or (lambda: datetime.datetime.now(datetime.UTC))
        self.after_write = after_write or (lambda: None)
        # owner uid -> dependents, for the garbage collection a controller-manager would do.
        self._dependents: dict[str, set[tuple[Key, str, str]]] = {}
        store.listeners.append(self._track_owners)

    # -- start-up -----------------------------------------------------------------------------------

    def start(self) -> None:
        """After a restore: register stored CRDs, rebuild indexes and admission, create the system objects."""
        for crd in self.store.list_objects(CRD_KEY):
            self.registry.register_crd(crd)
        for key, obj in self.store.all_objects():
            self._index_owners(key, obj, None)
        self.admission.restore((k[0], k[1], o) for k, o in self.store.all_objects())
        ns_rt = self._rt(NAMESPACE_KEY)
        for name in SYSTEM_NAMESPACES:
            if self.store.get(NAMESPACE_KEY, "", name) is None:
                self.create(ns_rt, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        for ns in self.store.list_objects(NAMESPACE_KEY):
            if not ns["metadata"].get("deletionTimestamp"):
                self._ensure_default_service_account(ns["metadata"]["name"])
        if self.store.get(("", "services"), "default", "kubernetes") is None:
            svc = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "kubernetes",
                    "namespace": "default",
                    "labels": {"component": "apiserver", "provider": "kubernetes"},
                },
                "spec": {
                    "type": "ClusterIP",
                    "clusterIP": "10.96.0.1",
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                    "sessionAffinity": "None",
                },
            }
            self.create(self._rt(("", "services")), "default", svc)

    def reconcile_kubernetes_endpoints(self, address: str, port: int) -> None:
        """Point the default/kubernetes Service at this server, as the real one does at every start: its
        targetPort, and its Endpoints and EndpointSlice (the Service has no selector, so no controller
        writes them). Unchanged objects are not rewritten."""
        services = self._rt(("", "services"))
        svc = self.store.get(services.key, "default", "kubernetes")
        if svc is not None:
            ports = svc["spec"].get("ports") or []
            if ports and ports[0].get("targetPort") != port:
                wanted = copy.deepcopy(svc)
                wanted["spec"]["ports"][0]["targetPort"] = port
                self.update(services, "default", "kubernetes", wanted)
        family = "IPv6" if ":" in address else "IPv4"
        endpoints: Obj = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                # As on a real cluster: the EndpointSlice below is written directly, not mirrored.
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
            },
            "subsets": [
                {
                    "addresses": [{"ip": address}],
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
                }
            ],
        }
        endpoint_slice: Obj = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "kubernetes"},
            },
            "addressType": family,
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }
        targets: list[tuple[Key, Obj, tuple[str, ...]]] = [
            (("", "endpoints"), endpoints, ("subsets",)),
            (("discovery.k8s.io", "endpointslices"), endpoint_slice, ("addressType", "endpoints", "ports")),
        ]
        for key, desired, fields in targets:
            rt = self._rt(key)
            current = self.store.get(rt.key, "default", "kubernetes")
            if current is not None and all(current.get(f) == desired[f] for f in fields):
                continue
            # Stored as the server's own record, past validation: the lab's server often listens on loopback,
            # an address a real kube-apiserver cannot advertise (ValidateEndpointIP refuses 127.0.0.0/8).
            obj = copy.deepcopy(current) if current is not None else desired
            obj.update({f: desired[f] for f in fields})
            meta = obj["metadata"]
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", rfc3339(self.now()))
            self.store.put(rt.key, obj)
            self.after_write()

    def _rt(self, key: Key) -> ResourceType:
        rt = self.registry.any_version(key)
        assert rt is not None, key
        return rt

    # -- reads --------------------------------------------------------------------------------------

    def out(self, rt: ResourceType, obj: Obj) -> Obj:
        """The object as seen through rt's version (custom resources: no conversion, apiVersion only)."""
        if obj.get("apiVersion") == rt.api_version:
            return obj
        return dict(obj, apiVersion=rt.api_version)

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.store.get(rt.key, namespace if rt.namespaced else "", name)
        if obj is None:
            raise errors.not_found(rt.plural, name, rt.group)
        return self.out(rt, obj)

    def list_objects(
        self,
        rt: ResourceType,
        namespace: str,
        labels: list[Requirement],
        fields: list[FieldRequirement],
        limit: int = 0,
        continue_token: str = "",
    ) -> tuple[list[Obj], int, str, int | None]:
        """-> (items, list resourceVersion, continue token, remainingItemCount)."""
        rv = self.store.rv
        after: tuple[str, str] | None = None
        if continue_token:
            rv, after = decode_continue(continue_token)
        objs = self.store.list_objects(rt.key, namespace if rt.namespaced else None)
        if after is not None:
            objs = [o for o in objs if _okey(o) > after]
        if labels or fields:
            objs = [o for o in objs if labels_match(labels, o) and fields_match(fields, o)]
        token = ""
        remaining: int | None = None
        if limit > 0 and len(objs) > limit:
            remaining = len(objs) - limit
            objs = objs[:limit]
            token = encode_continue(rv, _okey(objs[-1]))
        return [self.out(rt, o) for o in objs], rv, token, remaining

    # -- create -------------------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str, body: Any, dry_run: bool = False) -> Obj:
        obj = self._check_body(rt, body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            namespace = namespace or body_ns or "default"
            meta["namespace"] = namespace
            self._check_namespace_open(rt, namespace, str(meta.get("name") or meta.get("generateName") or ""))
        else:
            meta.pop("namespace", None)
            namespace = ""
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(random.choices(GENERATE_ALPHABET, k=5))
            else:
                raise errors.invalid(
                    rt.kind,
                    "",
                    [
                        Cause(
                            "metadata.name",
                            "Required value: name or generateName is required",
                            "FieldValueRequired",
                        )
                    ],
                    rt.group,
                )
        name = meta["name"]
        existing = self.store.get(rt.key, namespace, name)
        if existing is not None:
            err = errors.already_exists(rt.plural, name, rt.group)
            if existing["metadata"].get("deletionTimestamp"):
                # genericregistry.Store.Create: "object is being deleted: <the AlreadyExists message>".
                err.message = f"object is being deleted: {err.message}"
            raise err
        for server_field in (
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
        ):  # managedFields are the server's record here (clients cannot rewrite them)
            meta.pop(server_field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339(self.now())
        if rt.has_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        _validate_metadata(rt, meta, warnings=WARNINGS.get())
        if rt.reset_status_on_create:
            obj.pop("status", None)
        if rt.custom:
            obj = self._custom_resource_admitted(rt, obj)
        obj = self.admission.create(rt.group, rt.plural, obj, dry_run)
        if rt.key == POD_KEY:
            self._admit_service_account(obj)
        if rt.key == CRD_KEY:
            obj = self._crd_prepare(obj)
        obj["metadata"]["managedFields"] = self._managed_after(rt, None, obj, "")
        if dry_run:
            return self.out(rt, obj)
        try:
            self.store.put(rt.key, obj)
        except Exception:
            self.admission.abort_create(rt.group, rt.plural, obj)
            raise
        if rt.key == CRD_KEY:
            self.registry.register_crd(obj)
        if rt.key == NAMESPACE_KEY:
            self._ensure_default_service_account(name)
        self.after_write()
        return self.out(rt, obj)

    def _ensure_default_service_account(self, namespace: str) -> None:
        """What kube-controller-manager's serviceaccounts controller does at once: every namespace has a
        `default` ServiceAccount (pods are admitted against it)."""
        if self.store.get(SERVICE_ACCOUNT_KEY, namespace, "default") is None:
            account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}
            self.create(self._rt(SERVICE_ACCOUNT_KEY), namespace, account)

    def _admit_service_account(self, pod: Obj) -> None:
        """The ServiceAccount admission plugin (plugin/pkg/admission/serviceaccount/admission.go): default
        serviceAccountName, refuse a missing account, automount its token. Mirror pods are left alone."""
        meta = pod["metadata"]
        if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
            return
        spec = pod.setdefault("spec", {})
        name = str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
        spec["serviceAccountName"] = name
        spec["serviceAccount"] = name  # the deprecated alias v1 conversion keeps in step
        namespace = meta["namespace"]
        account = self.store.get(SERVICE_ACCOUNT_KEY, namespace, name)
        if account is None:
            raise errors.forbidden(
                "pods",
                meta["name"],
                f'error looking up service account {namespace}/{name}: serviceaccount "{name}" not found',
            )
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            automount = account.get("automountServiceAccountToken")
        if automount is not False:
            mount_service_account_token(spec, "".join(random.choices(GENERATE_ALPHABET, k=5)))

    def _check_body(self, rt: ResourceType, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request was not a JSON object")
        kind = body.get("kind")
        if kind and kind != rt.kind:
            raise errors.bad_request(
                f"the kind of the object ({kind}) does not match the endpoint's ({rt.kind})"
            )
        obj = dict(body)
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        return obj

    def _check_namespace_open(self, rt: ResourceType, namespace: str, name: str) -> None:
        ns = self.store.get(NAMESPACE_KEY, "", namespace)
        if ns is None:
            raise errors.not_found("namespaces", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            # The NamespaceLifecycle admission plugin (plugin/pkg/admission/namespace/lifecycle).
            reason = f"namespace {namespace} is being terminated"
            cause = Cause("metadata.namespace", reason, "NamespaceTerminating")
            raise errors.forbidden(
                rt.plural,
                name or "Unknown",
                f"unable to create new content in namespace {namespace} because it is being terminated",
                rt.group,
                [cause],
            )

    # -- update / patch -----------------------------------------------------------------------------

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        dry_run: bool = False,
        subresource: str = "",
    ) -> Obj:
        ns = namespace if rt.namespaced else ""
        old = self.store.get(rt.key, ns, name)
        if old is None:
            raise errors.not_found(rt.plural, name, rt.group)
        new = self._check_body(rt, body)
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            meta = new["metadata"] = {}
        if meta.get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        if meta.get("namespace") and rt.namespaced and meta["namespace"] != ns:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        rv = meta.get("resourceVersion")
        if rv in (None, "") and not _allows_unconditional_update(rt):
            # genericregistry.Store.Update: the value shown is the uint64 0, which Go's %#v prints as 0x0.
            raise errors.invalid(
                rt.plural,
                name,
                [Cause("metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update")],
                rt.group,
            )
        if rv not in (None, "") and str(rv) != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.plural, name, rt.group)
        return self._apply_update(rt, old, new, dry_run, subresource)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patcher: Callable[[Obj], Any],
        dry_run: bool = False,
        subresource: str = "",
    ) -> Obj:
        ns = namespace if rt.namespaced else ""
        old = self.store.get(rt.key, ns, name)
        if old is None:
            raise errors.not_found(rt.plural, name, rt.group)
        patched = patcher(copy.deepcopy(self.out(rt, old)))
        if not isinstance(patched, dict):
            raise ApiError(422, "Invalid", "the patched object is not a JSON object")
        new = self._check_body(rt, patched)
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            meta = new["metadata"] = {}
        if meta.get("name") != name:
            raise errors.bad_request("the name of the object cannot be changed by a patch")
        if str(meta.get("resourceVersion", "")) != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.plural, name, rt.group)
        return self._apply_update(rt, old, new, dry_run, subresource)

    def _apply_update(self, rt: ResourceType, old: Obj, new: Obj, dry_run: bool, subresource: str) -> Obj:
        old_meta = old["metadata"]
        if subresource == "status":
            # Status writes change status only (the real ResetObjectMetaForStatus + spec reset).
            candidate = dict(old)
            candidate["metadata"] = dict(old_meta)
            if rt.key == ("", "services"):
                # The real Service status strategy resets only spec: labels and annotations sent along are
                # kept (MetalLB writes ip-allocated-from-pool this way, with no right to update Services).
                for field in ("labels", "annotations"):
                    value = (new.get("metadata") or {}).get(field)
                    if value:
                        candidate["metadata"][field] = value
                    else:
                        candidate["metadata"].pop(field, None)
                _validate_metadata(rt, candidate["metadata"], creating=False)
            if "status" in new:
                candidate["status"] = new["status"]
            else:
                candidate.pop("status", None)
            candidate["apiVersion"] = old["apiVersion"]
            if rt.custom:
                candidate = self._custom_resource_admitted(rt, candidate)
            result = self.admission.update_status(rt.group, rt.plural, old, candidate, dry_run)
        else:
            meta = new["metadata"]
            # rest.BeforeUpdate: a missing uid is filled in, a different one is refused
            # (ValidateObjectMetaUpdate); generation, creationTimestamp and a set deletionTimestamp stay.
            uid = meta.get("uid")
            if uid and uid != old_meta.get("uid"):
                immutable_uid = validation.invalid("metadata.uid", uid, "field is immutable")
                validation.raise_invalid(rt.kind, rt.group, old_meta["name"], [immutable_uid])
            for immutable in (
                "uid",
                "creationTimestamp",
                "name",
                "namespace",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if immutable in old_meta:
                    meta[immutable] = old_meta[immutable]
                else:
                    meta.pop(immutable, None)
            meta.pop("managedFields", None)
            _validate_metadata(rt, meta, creating=False, old=old_meta, warnings=WARNINGS.get())
            if rt.has_status:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            if rt.custom:
                new = self._custom_resource_admitted(rt, new)
            if rt.has_generation and _spec_part(new) != _spec_part(old):
                meta["generation"] = int(old_meta.get("generation", 1)) + 1
            result = self.admission.update(rt.group, rt.plural, old, new, dry_run)
            if rt.key == CRD_KEY:
                result = self._crd_prepare(result)
        result["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        result["metadata"]["managedFields"] = self._managed_after(rt, old, result, subresource)
        if _without_rv(result) == _without_rv(old):
            return self.out(rt, old)  # a no-op write keeps the resourceVersion, as etcd-backed servers do
        if dry_run:
            return self.out(rt, result)
        if result["metadata"].get("deletionTimestamp") and not result["metadata"].get("finalizers"):
            self._really_delete(rt, result)
            self.after_write()
            return self.out(rt, result)
        self.store.put(rt.key, result)
        if rt.key == CRD_KEY:
            self.registry.register_crd(result)
        self.after_write()
        return self.out(rt, result)

    def _custom_resource_admitted(self, rt: ResourceType, obj: Obj) -> Obj:
        """What the custom resource codec and strategy do with a write: prune the fields the structural schema
        does not declare (warning about each), apply its defaults, validate it and its list-type sets and
        maps."""
        warnings = WARNINGS.get()
        for path in crdvalidation.prune(obj, rt.schema):
            if warnings is not None and f'unknown field "{path}"' not in warnings:
                warnings.append(f'unknown field "{path}"')
        obj = apply_schema_defaults(rt.schema, obj)
        causes = crdvalidation.validate(rt.schema, obj) + crdvalidation.list_errors(obj, rt.schema)
        validation.raise_invalid(rt.kind, rt.group, obj["metadata"]["name"], causes)
        return obj

    def _managed_after(self, rt: ResourceType, old: Obj | None, new: Obj, subresource: str) -> list[Obj]:
        """metadata.managedFields after a write by the request's Writer."""
        writer = WRITER.get() or INTERNAL_WRITER
        node = self._schema_node(rt)
        before = managedfields.nodes(managedfields.tracked(old), node) if old is not None else {}
        after = managedfields.nodes(managedfields.tracked(new), node)
        comparison = managedfields.compare(before, after)
        if writer.managers is not None:
            managed = writer.managers
        else:
            managed = managedfields.read((old or {}).get("metadata", {}).get("managedFields"))
        key = managedfields.ManagerKey(
            writer.manager,
            writer.operation,
            subresource,
            rt.api_version if writer.operation == "Update" else "",
        )
        updated = managedfields.record_write(
            managed, comparison, key, rt.api_version, self.now(), writer.applied
        )
        return managedfields.write(updated)

    def _schema_node(self, rt: ResourceType) -> managedfields.Node:
        return managedfields.root_node(rt.group, rt.kind, (rt.schema or {}) if rt.custom else None)

    # -- server-side apply --------------------------------------------------------------------------

    def apply(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        config: Obj,
        manager: str,
        force: bool = False,
        dry_run: bool = False,
        subresource: str = "",
    ) -> tuple[Obj, bool]:
        """Server-side apply (structured-merge-diff's Updater.Apply): merge the configuration in, remove
        what this manager applied before and no longer does (unless someone else owns it), refuse changes
        to fields other managers own (409) unless forced. -> (object, created)."""
        node = self._schema_node(rt)
        applied = managedfields.field_set(managedfields.tracked(config), node)
        ns = namespace if rt.namespaced else ""
        live = self.store.get(rt.key, ns, name)
        writer = Writer(manager, "Apply", applied)
        if live is None and subresource != "status":
            body = copy.deepcopy(config)
            body.setdefault("metadata", {})["name"] = name
            token = WRITER.set(writer)
            try:
                return self.create(rt, namespace, body, dry_run), True
            finally:
                WRITER.reset(token)
        if live is None:
            raise errors.not_found(rt.plural, name, rt.group)
        managed = managedfields.read(live["metadata"].get("managedFields"))
        key = managedfields.ManagerKey(manager, "Apply", subresource)
        last = managed.fields.get(key, frozenset())
        managed.fields[key] = applied
        owned = frozenset().union(*managed.fields.values())
        live_out = self.out(rt, live)
        merged = managedfields.merge(live_out, managedfields.tracked(config), node)
        merged = managedfields.remove(merged, managedfields.prune_set(last, owned), node)
        comparison = managedfields.compare(
            managedfields.nodes(managedfields.tracked(live_out), node),
            managedfields.nodes(managedfields.tracked(merged), node),
        )
        conflicts = {
            other: paths & comparison.changed
            for other, paths in managed.fields.items()
            if other != key and paths & comparison.changed
        }
        if conflicts and not force:
            raise self._apply_conflict(conflicts, managed)
        for other, paths in conflicts.items():
            managed.fields[other] = managed.fields[other] - paths
        token = WRITER.set(replace(writer, managers=managed))
        try:
            return self.patch(rt, namespace, name, lambda _: merged, dry_run, subresource), False
        finally:
            WRITER.reset(token)

    @staticmethod
    def _apply_conflict(
        conflicts: dict[managedfields.ManagerKey, managedfields.FieldSet], managed: managedfields.Managed
    ) -> ApiError:
        """NewConflictError (k8s.io/apimachinery/pkg/util/managedfields/internal/conflict.go): 409 Conflict,
        one FieldManagerConflict cause per field."""
        causes = [
            Cause(
                managedfields.path_string(path),
                f"conflict with {managedfields.describe_manager(other, managed)}",
                "FieldManagerConflict",
            )
            for other, paths in conflicts.items()
            for path in sorted(paths, key=managedfields.path_string)
        ]
        return ApiError(409, "Conflict", managedfields.conflict_message(conflicts, managed), causes=causes)

    # -- delete -------------------------------------------------------------------------------------

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        options: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> Obj:
        ns = namespace if rt.namespaced else ""
        old = self.store.get(rt.key, ns, name)
        if old is None:
            raise errors.not_found(rt.plural, name, rt.group)
        if rt.key == NAMESPACE_KEY and name in IMMORTAL_NAMESPACES:
            raise ApiError(
                403,
                "Forbidden",
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                kind="namespaces",
                name=name,
            )
        options = options or {}
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != old["metadata"].get("uid"):
            raise ApiError(
                409,
                "Conflict",
                f"Precondition failed: UID in precondition: {pre['uid']}, "
                f"UID in object meta: {old['metadata'].get('uid')}",
                kind=rt.plural,
                name=name,
                group=rt.group,
            )
        if pre.get("resourceVersion") and str(pre["resourceVersion"]) != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {old['metadata']['resourceVersion']}",
                kind=rt.plural,
                name=name,
                group=rt.group,
            )
        if (
            rt.key == NAMESPACE_KEY
            and old["metadata"].get("deletionTimestamp")
            and ((old.get("spec") or {}).get("finalizers"))
        ):
            # The namespace REST Delete (pkg/registry/core/namespace/storage/storage.go), two spaces included.
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on namespaces "{name}": The system is ensuring all content '
                "is removed from this namespace.  Upon completion, this namespace will automatically be "
                "purged by the system.",
                kind="namespaces",
                name=name,
            )
        if dry_run:
            gone = not old["metadata"].get("finalizers") and rt.key != NAMESPACE_KEY
            return self._deleted(rt, old) if gone else self.out(rt, old)
        grace = options.get("gracePeriodSeconds")
        result = self._delete_object(
            rt,
            old,
            str(options.get("propagationPolicy") or "Background"),
            grace if isinstance(grace, int) and not isinstance(grace, bool) else None,
        )
        self.after_write()
        if self.store.get(rt.key, ns, name) is None:
            return self._deleted(rt, result)
        return self.out(rt, result)

    def _deleted(self, rt: ResourceType, obj: Obj) -> Obj:
        """What DELETE answers once the object is gone: the object for the kinds whose storage sets
        ReturnDeletedObject, else a Success Status naming it (genericregistry.Store.finalizeDelete)."""
        if rt.key in RETURNS_DELETED_OBJECT:
            return self.out(rt, obj)
        meta = obj["metadata"]
        details: dict[str, Any] = {"name": meta["name"]}
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.plural
        details["uid"] = meta.get("uid", "")
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def delete_collection(
        self,
        rt: ResourceType,
        namespace: str,
        labels: list[Requirement],
        fields: list[FieldRequirement],
        options: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> list[Obj]:
        items, _, _, _ = self.list_objects(rt, namespace, labels, fields)
        out = []
        for obj in items:
            meta = obj["metadata"]
            current = self.store.get(rt.key, meta.get("namespace", ""), meta["name"])
            if current is None:
                continue  # removed by an earlier cascade
            if dry_run:
                out.append(obj)
                continue
            policy = str((options or {}).get("propagationPolicy") or "Background")
            out.append(self.out(rt, self._delete_object(rt, current, policy)))
        if not dry_run:
            self.after_write()
        return out

    def _delete_object(self, rt: ResourceType, old: Obj, policy: str, grace: int | None = None) -> Obj:
        meta = old["metadata"]
        # A pod bound to a node is deleted gracefully, as by the real storage: it stays, terminating, until
        # its kubelet has stopped it and deletes it again with a grace period of 0.
        graceful_pod = rt.key == POD_KEY and bool((old.get("spec") or {}).get("nodeName"))
        if meta.get("deletionTimestamp"):
            if graceful_pod and grace == 0 and not meta.get("finalizers"):
                return self._really_delete(rt, old)
            return old  # already being deleted: waits for its finalizers (or its kubelet)
        if rt.key == NAMESPACE_KEY:
            return self._delete_namespace(old)
        if graceful_pod:
            period = (
                grace
                if grace is not None
                else (old.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            )
            if isinstance(period, int) and period > 0:
                marked = dict(old)
                marked["metadata"] = dict(
                    meta,
                    deletionTimestamp=rfc3339(self.now() + datetime.timedelta(seconds=period)),
                    deletionGracePeriodSeconds=period,
                )
                self.store.put(rt.key, marked)
                return marked
        if meta.get("finalizers"):
            marked = dict(old)
            marked["metadata"] = dict(
                meta, deletionTimestamp=rfc3339(self.now()), deletionGracePeriodSeconds=0
            )
            if rt.has_generation:
                marked["metadata"]["generation"] = int(meta.get("generation", 1)) + 1
            self.store.put(rt.key, marked)
            return marked
        if policy == "Orphan":
            self._orphan_dependents(meta.get("uid", ""))
        return self._really_delete(rt, old)

    def _really_delete(self, rt: ResourceType, obj: Obj) -> Obj:
        meta = obj["metadata"]
        ns = meta.get("namespace", "") if rt.namespaced else ""
        if rt.key == CRD_KEY:
            self._drop_custom_resources(obj)
        event = self.store.delete(rt.key, ns, meta["name"], final=obj)
        assert event is not None
        self.admission.deleted(rt.group, rt.plural, event.obj)
        if rt.key == CRD_KEY:
            self.registry.unregister_crd(meta["name"])
        self._collect_dependents(meta.get("uid", ""))
        if ns:
            self._maybe_finish_namespace(ns)
        return event.obj

    def _delete_namespace(self, ns_obj: Obj) -> Obj:
        name = ns_obj["metadata"]["name"]
        marked = copy.deepcopy(ns_obj)
        marked["metadata"]["deletionTimestamp"] = rfc3339(self.now())
        marked["metadata"]["deletionGracePeriodSeconds"] = 0
        marked.setdefault("status", {})["phase"] = "Terminating"
        self.store.put(NAMESPACE_KEY, marked)
        # What the namespace controller does: delete everything inside, then the namespace once empty.
        for key, obj in self.store.objects_in_namespace(name):
            rt = self.registry.any_version(key)
            current = self.store.get(key, name, obj["metadata"]["name"])
            if rt is None or current is None:
                continue
            self._delete_object(rt, current, "Background")
        return self._maybe_finish_namespace(name) or marked

    def _maybe_finish_namespace(self, name: str) -> Obj | None:
        ns_obj = self.store.get(NAMESPACE_KEY, "", name)
        if ns_obj is None or not ns_obj["metadata"].get("deletionTimestamp"):
            return None
        if self.store.namespace_object_count(name) > 0 or ns_obj["metadata"].get("finalizers"):
            return None
        event = self.store.delete(NAMESPACE_KEY, "", name)
        assert event is not None
        self.admission.deleted("", "namespaces", event.obj)
        return event.obj

    def _drop_custom_resources(self, crd: Obj) -> None:
        spec = crd.get("spec", {})
        key = (spec.get("group", ""), spec.get("names", {}).get("plural", ""))
        for obj in self.store.list_objects(key):
            meta = obj["metadata"]
            event = self.store.delete(key, meta.get("namespace", ""), meta["name"])
            if event is not None:
                self._collect_dependents(meta.get("uid", ""))

    # -- garbage collection by ownerReferences ------------------------------------------------------

    def _track_owners(self, event: Event) -> None:
        self._index_owners(event.key, event.obj if event.type != "DELETED" else None, event.old)

    def _index_owners(self, key: Key, new: Obj | None, old: Obj | None) -> None:
        ref = (key, "", "")
        for obj, add in ((old, False), (new, True)):
            if obj is None:
                continue
            meta = obj["metadata"]
            ref = (key, meta.get("namespace", ""), meta["name"])
            for owner in meta.get("ownerReferences") or []:
                uid = owner.get("uid")
                if not uid:
                    continue
                if add:
                    self._dependents.setdefault(uid, set()).add(ref)
                else:
                    deps = self._dependents.get(uid)
                    if deps is not None:
                        deps.discard(ref)
                        if not deps:
                            del self._dependents[uid]

    def _collect_dependents(self, owner_uid: str) -> None:
        for key, ns, name in sorted(self._dependents.get(owner_uid, ())):
            dep = self.store.get(key, ns, name)
            rt = self.registry.any_version(key)
            if dep is None or rt is None:
                continue
            self._delete_object(rt, dep, "Background")

    def _orphan_dependents(self, owner_uid: str) -> None:
        for key, ns, name in sorted(self._dependents.get(owner_uid, ())):
            dep = self.store.get(key, ns, name)
            if dep is None:
                continue
            updated = copy.deepcopy(dep)
            refs = [r for r in updated["metadata"].get("ownerReferences", []) if r.get("uid") != owner_uid]
            if refs:
                updated["metadata"]["ownerReferences"] = refs
            else:
                updated["metadata"].pop("ownerReferences", None)
            self.store.put(key, updated)

    # -- pods/binding (what the scheduler posts) ----------------------------------------------------

    def bind(self, rt: ResourceType, namespace: str, name: str, binding: Any, dry_run: bool = False) -> Obj:
        """Assign a pod to a node: spec.nodeName, the binding's annotations, condition PodScheduled."""
        old = self.store.get(rt.key, namespace, name)
        if old is None:
            raise errors.not_found(rt.plural, name, rt.group)
        target = (binding.get("target") or {}) if isinstance(binding, dict) else {}
        node = target.get("name")
        if not node:
            raise errors.invalid(
                "Binding", name, [Cause("target.name", "Required value", "FieldValueRequired")]
            )
        if old["metadata"].get("deletionTimestamp"):
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is being deleted, '
                "cannot be assigned to a host",
                kind="pods/binding",
                name=name,
            )
        assigned = (old.get("spec") or {}).get("nodeName")
        if assigned:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is already assigned '
                f'to node "{assigned}"',
                kind="pods/binding",
                name=name,
            )
        new = copy.deepcopy(old)
        new.setdefault("spec", {})["nodeName"] = node
        annotations = ((binding.get("metadata") or {}).get("annotations")) or {}
        if annotations:
            new["metadata"].setdefault("annotations", {}).update(annotations)
        status = new.setdefault("status", {})
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": rfc3339(self.now()),
            }
        )
        status["conditions"] = conditions
        if not dry_run:
            self.store.put(rt.key, new)
            self.after_write()
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    # -- scale subresource --------------------------------------------------------------------------

    def get_scale(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.get(rt, namespace, name)
        meta = obj["metadata"]
        selector = (obj.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": int(obj.get("spec", {}).get("replicas", 0))},
            "status": {
                "replicas": int((obj.get("status") or {}).get("replicas", 0)),
                "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
            },
        }

    def set_scale(
        self, rt: ResourceType, namespace: str, name: str, scale: Any, dry_run: bool = False
    ) -> Obj:
        if not isinstance(scale, dict) or not isinstance(scale.get("spec", {}).get("replicas"), int):
            raise errors.bad_request("spec.replicas of the Scale must be an integer")
        old = self.get(rt, namespace, name)
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv and str(rv) != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.plural, name, rt.group)
        new = copy.deepcopy(old)
        new.setdefault("spec", {})["replicas"] = scale["spec"]["replicas"]
        self.update(rt, namespace, name, new, dry_run)
        return self.get_scale(rt, namespace, name)

    # -- CRDs ---------------------------------------------------------------------------------------

    def _crd_prepare(self, crd: Obj) -> Obj:
        """Validate a CRD and set what the apiextensions controllers would: accepted names, conditions."""
        name = crd["metadata"]["name"]
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        causes: list[Cause] = []
        if not spec.get("group"):
            causes.append(Cause("spec.group", "Required value", "FieldValueRequired"))
        if not names.get("plural"):
            causes.append(Cause("spec.names.plural", "Required value", "FieldValueRequired"))
        if not names.get("kind"):
            causes.append(Cause("spec.names.kind", "Required value", "FieldValueRequired"))
        versions = spec.get("versions") or []
        if not versions or sum(1 for v in versions if v.get("storage")) != 1:
            causes.append(
                Cause(
                    "spec.versions", "Invalid value: must have exactly one version marked as storage version"
                )
            )
        if spec.get("scope", "Namespaced") not in ("Namespaced", "Cluster"):
            causes.append(
                Cause("spec.scope", f"Unsupported value: {spec.get('scope')!r}", "FieldValueNotSupported")
            )
        for i, version in enumerate(versions):
            schema = (
                (version.get("schema") or {}).get("openAPIV3Schema") if isinstance(version, dict) else None
            )
            path = f"spec.versions[{i}].schema.openAPIV3Schema"
            if schema is None:
                # apiextensions v1 needs a structural schema per version (pkg/apis/apiextensions/validation).
                causes.append(Cause(path, "Required value: schemas are required", "FieldValueRequired"))
            else:
                causes += crdvalidation.structural_errors(schema, path)
        if not causes and name != f"{names['plural']}.{spec['group']}":
            causes.append(
                Cause("metadata.name", f'Invalid value: {name!r}: must be spec.names.plural+"."+spec.group')
            )
        if causes:
            raise errors.invalid("CustomResourceDefinition", name, causes, "apiextensions.k8s.io")
        spec.setdefault("scope", "Namespaced")
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
        for version in versions:
            version.setdefault("served", True)
        now = rfc3339(self.now())
        old_status = crd.get("status") or {}
        old_conditions = {c.get("type"): c for c in old_status.get("conditions") or []}

        def condition(ctype: str, reason: str, message: str) -> dict[str, Any]:
            prev = old_conditions.get(ctype)
            when = prev["lastTransitionTime"] if prev and prev.get("status") == "True" else now
            return {
                "type": ctype,
                "status": "True",
                "lastTransitionTime": when,
                "reason": reason,
                "message": message,
            }

        storage = next(v["name"] for v in versions if v.get("storage"))
        stored = list(old_status.get("storedVersions") or [])
        if storage not in stored:
            stored.append(storage)
        crd["status"] = {
            "conditions": [
                condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            ],
            "acceptedNames": {
                k: names[k]
                for k in ("plural", "singular", "shortNames", "kind", "listKind", "categories")
                if k in names
            },
            "storedVersions": stored,
        }
        return crd


# Kinds whose names are path segments rather than DNS subdomains (e.g. "system:controller:x").
PATH_SEGMENT_NAMED = {"roles", "rolebindings", "clusterroles", "clusterrolebindings"}


def _validate_metadata(
    rt: ResourceType,
    meta: dict[str, Any],
    creating: bool = True,
    old: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
) -> None:
    """ObjectMeta validation every kind gets: name format (Services: admission checks their names), label
    keys and values, finalizer names, and on update no new finalizer on an object being deleted. 422 Invalid
    with the real wording; what the real server only warns about goes to `warnings`."""
    causes: list[Cause] = []
    name = str(meta.get("name", ""))
    if creating and rt.key != ("", "services"):
        if rt.key == NAMESPACE_KEY:
            causes += validation.check_dns1123_label("metadata.name", name)
        elif rt.plural in PATH_SEGMENT_NAMED and rt.group == "rbac.authorization.k8s.io":
            if name in (".", "..") or "/" in name or "%" in name:
                causes.append(validation.invalid("metadata.name", name, "may not contain '/' or '%'"))
        else:
            causes += validation.check_dns1123_subdomain("metadata.name", name)
    causes += validation.check_label_map("metadata.labels", meta.get("labels"))
    annotations = meta.get("annotations")
    if annotations is not None and not (
        isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values())
    ):
        causes.append(validation.invalid("metadata.annotations", annotations, "must be a map of strings"))
    finalizers = [str(f) for f in meta.get("finalizers") or []]
    old_finalizers = [str(f) for f in (old or {}).get("finalizers") or []]
    causes += validation.check_finalizers(finalizers, custom=rt.custom)
    if rt.custom and warnings is not None:
        warnings += validation.finalizer_warnings([f for f in finalizers if f not in old_finalizers])
    if old is not None and old.get("deletionTimestamp"):
        added = sorted(set(finalizers) - set(old_finalizers))
        if added:
            causes.append(
                validation.forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted, found new finalizers "
                    + validation.go_value(added),
                )
            )
    validation.raise_invalid(rt.kind, rt.group, name, causes)


# Kinds whose DELETE answers the deleted object rather than a Status (ReturnDeletedObject in their
# pkg/registry/core/*/storage/storage.go): pods, services, serviceaccounts, namespaces, persistent volumes
# and claims; and CRDs, whose real DELETE only marks them (the customresourcecleanup finalizer) and answers
# the CRD (apiextensions-apiserver pkg/registry/customresourcedefinition/etcd.go).
RETURNS_DELETED_OBJECT = {
    ("", "pods"),
    ("", "services"),
    ("", "serviceaccounts"),
    NAMESPACE_KEY,
    ("", "persistentvolumes"),
    ("", "persistentvolumeclaims"),
    CRD_KEY,
}

# Kinds whose update strategy refuses a PUT without metadata.resourceVersion (AllowUnconditionalUpdate false:
# pkg/registry/coordination/lease/strategy.go, the apiextensions CRD and custom resource strategies).
_CONDITIONAL_UPDATE_ONLY = {("coordination.k8s.io", "leases"), CRD_KEY}


def _allows_unconditional_update(rt: ResourceType) -> bool:
    return not rt.custom and rt.key not in _CONDITIONAL_UPDATE_ONLY


def apply_schema_defaults(schema: dict[str, Any] | None, value: Any) -> Any:
    """Fill in the `default`s of a CRD's structural schema where the object leaves the field out, as the
    real server does on create and update (nested objects and array items included)."""
    if not schema:
        return value
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, prop in props.items():
            if key not in value and isinstance(prop, dict) and "default" in prop:
                value[key] = copy.deepcopy(prop["default"])
            if key in value:
                value[key] = apply_schema_defaults(prop, value[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                if key not in props:
                    value[key] = apply_schema_defaults(extra, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_schema_defaults(schema["items"], item) for item in value]
    return value


def _okey(obj: Obj) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])
