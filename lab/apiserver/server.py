"""The HTTPS front: routes Kubernetes REST paths to Api, streams watches, renders discovery, Tables and
OpenAPI, and authenticates every request by client certificate or bearer token."""

from __future__ import annotations

import asyncio
import datetime
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from lab import podlogs
from lab.apiserver import errors, openapi, protobuf, rbac, serviceaccounts, tables
from lab.apiserver import patch as patching
from lab.apiserver.api import WARNINGS, WRITER, Api, Writer
from lab.apiserver.errors import ApiError, Cause
from lab.apiserver.resources import Registry, ResourceType
from lab.apiserver.selectors import FieldRequirement, for_kind, parse_field_selector, parse_label_selector
from lab.apiserver.store import Event, Obj, Store
from lab.apiserver.watch import STOP, Watcher, WatchHub

log = logging.getLogger("ironlb.apiserver")

VERSION_INFO = {
    "major": "1",
    "minor": "36",
    "emulationMajor": "1",
    "emulationMinor": "36",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "35",
    "gitVersion": "v1.36.0-ironlb",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.25.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
ENDPOINTS_WARNING = '299 - "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"'
PODS = ("", "pods")
SERVICE_ACCOUNTS = ("", "serviceaccounts")
PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")
JSON_DUMPS_SEPARATORS = (",", ":")
DEFAULT_WATCH_TIMEOUT = 1800.0


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=JSON_DUMPS_SEPARATORS).encode()


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_dumps(obj), status=status, content_type="application/json", headers=headers)


def error_response(err: ApiError) -> web.Response:
    return json_response(err.status(), status=err.code)


@dataclass
class ServerConfig:
    tokens: dict[str, rbac.UserInfo] = field(default_factory=dict)  # bearer token -> user
    bookmark_interval: float = 60.0
    server_address: str = "127.0.0.1:6443"
    authorization_mode: str = "AlwaysAllow"  # or "RBAC"
    # Signs and checks service-account tokens (the TokenRequest API); None: no service-account tokens.
    token_issuer: serviceaccounts.TokenIssuer | None = None
    # Where the lab's kubelets write container output (lab.podlogs); None: no `pods/log`.
    pod_log_dir: Path | None = None


@dataclass
class Route:
    rt: ResourceType
    namespace: str
    name: str
    subresource: str
    watch_path: bool


class ApiServer:
    def __init__(self, api: Api, config: ServerConfig) -> None:
        self.api = api
        self.store: Store = api.store
        self.registry: Registry = api.registry
        self.config = config
        self.hub = WatchHub()
        self.store.listeners.append(self.hub.dispatch)
        self._stopping = asyncio.Event()
        self._openapi_cache: dict[tuple[str, int], bytes] = {}
        self.authorizer: rbac.Authorizer | None = None
        self._rbac_generation = 0
        if config.authorization_mode == "RBAC":
            self.authorizer = rbac.Authorizer(
                lambda: [self.store.list_objects((rbac.RBAC_GROUP, plural)) for plural in rbac.RBAC_PLURALS]
            )
            self.store.listeners.append(self._note_rbac_change)

    def _note_rbac_change(self, event: Event) -> None:
        if event.key[0] == rbac.RBAC_GROUP:
            self._rbac_generation = event.rv

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, _app: web.Application) -> None:
        self.close_watches()

    def close_watches(self) -> None:
        self._stopping.set()
        self.hub.close_all()

    # -- auth, logging, errors ----------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        start = time.monotonic()
        user = self._authenticate(request)
        if user is None and not request.path.startswith(PUBLIC_PATHS):
            return json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": "Unauthorized",
                    "reason": "Unauthorized",
                    "code": 401,
                },
                status=401,
            )
        if user is not None and self.authorizer is not None and not user.is_master:
            attrs = rbac.request_attributes(request.method, request.path, request.query)
            if not self.authorizer.allows(user, attrs, self._rbac_generation):
                # WARNING so that the default log level keeps it: tests read denials from the server's log.
                log.warning(
                    "event=forbidden user=%s verb=%s resource=%s group=%s namespace=%s name=%s path=%s",
                    user.name,
                    attrs.verb,
                    attrs.combined_resource,
                    attrs.api_group,
                    attrs.namespace,
                    attrs.name,
                    request.path,
                )
                err = ApiError(
                    403,
                    "Forbidden",
                    rbac.forbidden_message(user, attrs),
                    kind=attrs.resource,
                    name=attrs.name,
                    group=attrs.api_group,
                )
                return error_response(err)
        try:
            resp: web.StreamResponse = await handler(request)
        except ApiError as err:
            resp = error_response(err)
        except web.HTTPException:
            raise
        except Exception as exc:
            log.exception("event=internal_error method=%s path=%s", request.method, request.path_qs)
            resp = error_response(ApiError(500, "InternalError", f"Internal error occurred: {exc}"))
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "event=request method=%s path=%s user=%s code=%s ms=%.1f",
                request.method,
                request.path_qs,
                user.name if user is not None else None,
                resp.status,
                (time.monotonic() - start) * 1000,
            )
        return resp

    def _authenticate(self, request: web.Request) -> rbac.UserInfo | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        # The scheme is case-insensitive, as in the real server: in-cluster clients send "bearer <token>".
        if scheme.lower() == "bearer":
            token = token.strip()
            for known, user in self.config.tokens.items():
                if hmac.compare_digest(known.encode(), token.encode()):
                    return user
            issuer = self.config.token_issuer
            if issuer is not None and serviceaccounts.looks_like_jwt(token):
                return serviceaccounts.authenticate(
                    issuer, token, self._uid_of(SERVICE_ACCOUNTS), self._uid_of(PODS), _now()
                )
            return None
        transport = request.transport
        cert = transport.get_extra_info("peercert") if transport is not None else None
        if cert:
            # As kube-apiserver: the subject's CN is the user, its O attributes the groups.
            name, groups = "unknown-cert-user", []
            for rdn in cert.get("subject", ()):
                for attr, value in rdn:
                    if attr == "commonName":
                        name = str(value)
                    elif attr == "organizationName":
                        groups.append(str(value))
            return rbac.authenticated_user(name, "", groups)
        return None

    def _uid_of(self, key: tuple[str, str]) -> serviceaccounts.UidLookup:
        def lookup(namespace: str, name: str) -> str | None:
            obj = self.store.get(key, namespace, name)
            return None if obj is None else str(obj["metadata"].get("uid") or "")

        return lookup

    # -- routing ------------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        if not parts:
            return json_response({"paths": sorted(self._root_paths())})
        head = parts[0]
        if head in ("healthz", "livez", "readyz"):
            return web.Response(text="ok", content_type="text/plain")
        if head == "version":
            return json_response(VERSION_INFO)
        if head == "openapi":
            return self._openapi(request, parts[1:])
        if head == "api":
            if len(parts) == 1:
                return json_response(
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": self.config.server_address}
                        ],
                    }
                )
            if len(parts) == 2:
                return self._resource_list("", parts[1])
            return await self._resource(request, "", parts[1], parts[2:])
        if head == "apis":
            if len(parts) == 1:
                return json_response(self.registry.api_group_list())
            if len(parts) == 2:
                group = self.registry.api_group(parts[1])
                if group is None:
                    raise _path_not_found(request)
                return json_response(dict(group, kind="APIGroup", apiVersion="v1"))
            if len(parts) == 3:
                return self._resource_list(parts[1], parts[2])
            return await self._resource(request, parts[1], parts[2], parts[3:])
        raise _path_not_found(request)

    def _root_paths(self) -> list[str]:
        paths = [
            "/api",
            "/api/v1",
            "/apis",
            "/healthz",
            "/livez",
            "/readyz",
            "/version",
            "/openapi/v2",
            "/openapi/v3",
        ]
        for group, versions in self.registry.group_versions().items():
            paths.append(f"/apis/{group}")
            paths += [f"/apis/{group}/{v}" for v in versions]
        return paths

    def _resource_list(self, group: str, version: str) -> web.Response:
        doc = self.registry.api_resource_list(group, version)
        if doc is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return json_response(doc)

    def _route(self, request: web.Request, group: str, version: str, rest: list[str]) -> Route:
        watch_path = False
        if rest and rest[0] == "watch":
            watch_path = True
            rest = rest[1:]
        namespace = ""
        if (
            len(rest) >= 3
            and rest[0] == "namespaces"
            and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace = rest[1]
            rest = rest[2:]
        if not rest or len(rest) > 3:
            raise _path_not_found(request)
        rt = self.registry.lookup(group, version, rest[0])
        if rt is None or (namespace and not rt.namespaced):
            raise _path_not_found(request)
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub and not (
            (sub == "status" and rt.has_status)
            or (sub == "scale" and rt.has_scale)
            or (sub == "finalize" and rt.plural == "namespaces" and not rt.group)
            or (sub == "binding" and rt.plural == "pods" and not rt.group)
            or (sub == "log" and rt.key == PODS)
            or (sub == "token" and rt.key == SERVICE_ACCOUNTS)
        ):
            raise _path_not_found(request)
        return Route(rt, namespace, name, sub, watch_path)

    async def _resource(
        self, request: web.Request, group: str, version: str, rest: list[str]
    ) -> web.StreamResponse:
        route = self._route(request, group, version, rest)
        rt, ns, name, sub = route.rt, route.namespace, route.name, route.subresource
        q = request.query
        dry_run = q.get("dryRun") == "All"
        method = request.method
        headers: dict[str, str] = {}
        warnings: list[str] = []
        WARNINGS.set(warnings)  # where the Api puts what the real server only warns about
        if method in ("POST", "PUT", "PATCH"):
            WRITER.set(Writer(_field_manager(request)))
        if rt.group == "" and rt.plural == "endpoints":
            headers["Warning"] = ENDPOINTS_WARNING
        resp: web.StreamResponse
        if method == "GET" and sub == "log" and name:
            return await self._pod_log(request, rt, ns, name)
        if method == "POST" and sub == "token" and name:
            return json_response(self._token_request(ns, name, await _read_body(request)), status=201)
        if method == "GET":
            if name and not route.watch_path:
                obj = self.api.get_scale(rt, ns, name) if sub == "scale" else self.api.get(rt, ns, name)
                resp = self._object_response(request, rt, obj)
            elif route.watch_path or q.get("watch") in ("true", "1", "True"):
                extra_fields = [f"metadata.name={name}"] if name else []
                resp = await self._watch(request, rt, ns, extra_fields, headers)
                return resp
            else:
                resp = self._list(request, rt, ns)
        elif method == "POST" and sub == "binding":
            body = await _read_body(request)
            resp = json_response(self.api.bind(rt, ns, name, body, dry_run), status=201)
        elif method == "POST":
            if name:
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            body = await _read_body(request)
            self._check_fields(request, rt, body, warnings)
            created = self.api.create(rt, ns, body, dry_run)
            resp = json_response(created, status=201)
        elif method == "PUT":
            if not name:
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            body = await _read_body(request)
            if sub != "scale":
                self._check_fields(request, rt, body, warnings)
            if sub == "scale":
                resp = json_response(self.api.set_scale(rt, ns, name, body, dry_run))
            else:
                resp = json_response(
                    self.api.update(rt, ns, name, body, dry_run, "status" if sub == "status" else "")
                )
        elif method == "PATCH":
            if not name:
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            resp = await self._patch(request, rt, ns, name, sub, dry_run, warnings)
        elif method == "DELETE":
            options = await _delete_options(request)
            dry_run = dry_run or options.get("dryRun") == ["All"]
            if name:
                resp = json_response(self.api.delete(rt, ns, name, options, dry_run))
            else:
                labels = parse_label_selector(q.get("labelSelector"))
                fields = _field_selector(rt, q.get("fieldSelector"))
                items = self.api.delete_collection(rt, ns, labels, fields, options, dry_run)
                resp = json_response(
                    {
                        "kind": rt.list_kind,
                        "apiVersion": rt.api_version,
                        "metadata": {"resourceVersion": str(self.store.rv)},
                        "items": items,
                    }
                )
        else:
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        for k, v in headers.items():
            resp.headers[k] = v
        for warning in warnings:
            resp.headers.add("Warning", '299 - "' + warning.replace('"', '\\"') + '"')
        return resp

    # -- subresources served by the kubelet's side of the lab -----------------------------------------

    def _token_request(self, namespace: str, name: str, body: Any) -> dict[str, Any]:
        """`POST serviceaccounts/NAME/token`: a token for the account, bound to a pod when asked."""
        issuer = self.config.token_issuer
        if issuer is None:
            raise _path_not_found_message()
        account = self.store.get(SERVICE_ACCOUNTS, namespace, name)
        if account is None:
            raise errors.not_found("serviceaccounts", name)
        request = body if isinstance(body, dict) else {}
        return issuer.issue(namespace, account, request, self._uid_of(PODS), _now())

    async def _pod_log(
        self, request: web.Request, rt: ResourceType, ns: str, name: str
    ) -> web.StreamResponse:
        """`GET pods/NAME/log`, from the files the lab kubelets write (lab.podlogs), like `kubectl logs`
        [-c C] [--previous] [--tail N] [--limit-bytes N] [-f]."""
        pod = self.api.get(rt, ns, name)
        q = request.query
        query = podlogs.LogQuery(
            container=q.get("container", ""),
            previous=q.get("previous") in ("true", "1", "True"),
            tail_lines=_int_param(q.get("tailLines"), "tailLines") if q.get("tailLines") else None,
            limit_bytes=_int_param(q.get("limitBytes"), "limitBytes") if q.get("limitBytes") else None,
            follow=q.get("follow") in ("true", "1", "True"),
        )
        names = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
        container = query.container
        if not container:
            if len(names) != 1:
                raise errors.bad_request(
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
                )
            container = names[0]
        elif container not in names:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        uid = str(pod["metadata"].get("uid") or "")
        root = self.config.pod_log_dir
        directory = podlogs.pod_dir(root, ns, name, uid) / container if root is not None else None
        run = podlogs.newest_run(directory) if directory is not None else None
        if run is None or directory is None:
            raise errors.bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
            )
        if query.previous:
            run -= 1
            if run < 0 or not (directory / f"{run}.log").exists():
                raise errors.bad_request(
                    f'previous terminated container "{container}" in pod "{name}" not found'
                )
        path = directory / f"{run}.log"
        data = path.read_bytes()
        if not query.follow or query.previous:
            return web.Response(body=podlogs.tail(data, query), content_type="text/plain")
        resp = web.StreamResponse(status=200)
        resp.content_type = "text/plain"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        chunk = podlogs.tail(data, query)
        offset = len(data)
        try:
            await resp.write(chunk)
            # Until the container ends: the pod is gone or replaced, or a newer run of the container began.
            while not self._stopping.is_set():
                await asyncio.sleep(0.25)
                current = self.store.get(PODS, ns, name)
                with path.open("rb") as f:
                    f.seek(offset)
                    more = f.read()
                if more:
                    offset += len(more)
                    await resp.write(more)
                gone = current is None or current["metadata"].get("uid") != uid
                if gone or podlogs.newest_run(directory) != run:
                    break
        except ConnectionResetError:
            return resp
        return resp

    # -- GET ----------------------------------------------------------------------------------------

    def _object_response(self, request: web.Request, rt: ResourceType, obj: Obj) -> web.Response:
        if _wants_table(request):
            table = self._table(request, rt, [obj])
            table["metadata"] = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            return json_response(table)
        return json_response(obj)

    def _list(self, request: web.Request, rt: ResourceType, ns: str) -> web.Response:
        q = request.query
        labels = parse_label_selector(q.get("labelSelector"))
        fields = _field_selector(rt, q.get("fieldSelector"))
        limit = _int_param(q.get("limit"), "limit")
        rv_param = q.get("resourceVersion", "")
        rv_match = q.get("resourceVersionMatch", "")
        if rv_param not in ("", "0"):
            wanted = _int_param(rv_param, "resourceVersion")
            if rv_match == "Exact" and wanted != self.store.rv:
                raise errors.gone(f"too old resource version: {wanted} ({self.store.rv})")
            if wanted > self.store.rv:
                raise ApiError(
                    504, "Timeout", f"Too large resource version: {wanted}, current: {self.store.rv}"
                )
        token_in = q.get("continue", "")
        items, rv, token, remaining = self.api.list_objects(rt, ns, labels, fields, limit, token_in)
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if token:
            meta["continue"] = token
        if remaining is not None:
            meta["remainingItemCount"] = remaining
        if _wants_table(request):
            table = self._table(request, rt, items)
            table["metadata"] = meta
            return json_response(table)
        return json_response(
            {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta, "items": items}
        )

    def _table(self, request: web.Request, rt: ResourceType, objects: list[Obj]) -> dict[str, Any]:
        include = request.query.get("includeObject", "Metadata")
        now = datetime.datetime.now(datetime.UTC)
        return _to_table(rt, objects, now, include)

    # -- PATCH --------------------------------------------------------------------------------------

    async def _patch(
        self,
        request: web.Request,
        rt: ResourceType,
        ns: str,
        name: str,
        sub: str,
        dry_run: bool,
        warnings: list[str],
    ) -> web.Response:
        ctype = request.content_type
        raw = await request.read()
        if ctype == "application/apply-patch+yaml":
            return self._apply(request, rt, ns, name, sub, raw, dry_run)
        try:
            body = json.loads(raw) if raw else None
        except ValueError as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from exc
        if ctype == "application/json-patch+json":
            if not isinstance(body, list):
                raise errors.bad_request("json patch must be a JSON array of operations")
            ops: list[dict[str, Any]] = body

            def patcher(target: Obj) -> Any:
                return patching.json_patch(target, ops)
        elif ctype == "application/merge-patch+json":

            def patcher(target: Obj) -> Any:
                return patching.merge_patch(target, body)
        elif ctype == "application/strategic-merge-patch+json":
            if not patching.supports_strategic_merge(rt.group, rt.kind):
                raise _unsupported_patch(ctype)
            if not isinstance(body, dict):
                raise errors.bad_request("strategic merge patch must be a JSON object")
            smp: dict[str, Any] = body

            def patcher(target: Obj) -> Any:
                return patching.strategic_merge_patch(target, smp, rt.group, rt.kind)
        else:
            raise _unsupported_patch(ctype)
        if sub == "scale":
            scale = self.api.get_scale(rt, ns, name)
            return json_response(self.api.set_scale(rt, ns, name, patcher(scale), dry_run))

        def checked(target: Obj) -> Any:
            result = patcher(target)
            self._check_fields(request, rt, result, warnings)
            return result

        return json_response(
            self.api.patch(rt, ns, name, checked, dry_run, "status" if sub == "status" else "")
        )

    def _apply(
        self, request: web.Request, rt: ResourceType, ns: str, name: str, sub: str, raw: bytes, dry_run: bool
    ) -> web.Response:
        """Server-side apply (application/apply-patch+yaml); the fieldManager is required."""
        q = request.query
        manager = q.get("fieldManager", "")
        if not manager:
            # ValidatePatchOptions (k8s.io/apimachinery/pkg/apis/meta/v1/validation/validation.go).
            cause = Cause("fieldManager", "Required value: is required for apply patch", "FieldValueRequired")
            raise errors.invalid("PatchOptions", "", [cause], "meta.k8s.io")
        try:
            body = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError as exc:
            raise errors.bad_request(f"error decoding YAML: {exc}") from exc
        if not isinstance(body, dict):
            raise errors.bad_request("the applied configuration must be an object")
        force = q.get("force") in ("true", "1", "True")
        obj, created = self.api.apply(
            rt, ns, name, body, manager, force, dry_run, "status" if sub == "status" else ""
        )
        return json_response(obj, status=201 if created else 200)

    # -- watch --------------------------------------------------------------------------------------

    async def _watch(
        self,
        request: web.Request,
        rt: ResourceType,
        ns: str,
        extra_fields: list[str],
        headers: dict[str, str],
    ) -> web.StreamResponse:
        q = request.query
        labels = parse_label_selector(q.get("labelSelector"))
        field_text = ",".join([t for t in [q.get("fieldSelector", "")] if t] + extra_fields)
        fields = _field_selector(rt, field_text)
        rv_param = q.get("resourceVersion", "")
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1", "True")
        send_initial = q.get("sendInitialEvents") in ("true", "1", "True")
        timeout = float(_int_param(q.get("timeoutSeconds"), "timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        as_table = _wants_table(request)
        include = q.get("includeObject", "Metadata")
        watcher = Watcher(rt.key, ns if rt.namespaced else "", labels, fields)
        # Register and read the backlog with no await in between: no event can fall in the gap.
        self.hub.add(watcher)
        try:
            backlog: list[tuple[str, Obj, Event | None]] = []
            expired: str | None = None
            if rv_param in ("", "0") or send_initial:
                current, _, _, _ = self.api.list_objects(rt, ns, labels, fields)
                backlog = [("ADDED", o, None) for o in current]
            else:
                since = _int_param(rv_param, "resourceVersion")
                events = self.store.events_since(rt.key, since)
                if events is None:
                    expired = f"too old resource version: {since} ({self.store.oldest_rv(rt.key) + 1})"
                else:
                    for e in events:
                        etype = watcher.translate(e)
                        if etype is not None:
                            backlog.append((etype, e.obj, e))
            resp = web.StreamResponse(status=200, headers=headers)
            resp.content_type = "application/json"
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            if expired is not None:
                status = errors.gone(expired).status()
                await resp.write(_dumps({"type": "ERROR", "object": status}) + b"\n")
                return resp
            encode = self._encoder(rt, as_table, include)
            if backlog:
                await resp.write(b"".join(encode(t, o, e) for t, o, e in backlog))
            if send_initial and bookmarks:
                await resp.write(self._bookmark(rt, initial_end=True))
            await self._pump(request, resp, watcher, encode, rt, timeout, bookmarks)
            return resp
        except ConnectionResetError:
            # The client went away (closed its watch); nothing to answer.
            log.debug("event=watch_client_gone path=%s", request.path_qs)
            return web.Response(status=499)
        finally:
            self.hub.remove(watcher)

    async def _pump(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        watcher: Watcher,
        encode: Any,
        rt: ResourceType,
        timeout: float,
        bookmarks: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        next_bookmark = loop.time() + self.config.bookmark_interval
        while not self._stopping.is_set():
            now = loop.time()
            if now >= deadline:
                # Send what is queued before the closing bookmark: the bookmark carries the store's current
                # resourceVersion, so a client resuming from it would never see events still in the queue.
                items = []
                while not watcher.queue.empty():
                    items.append(watcher.queue.get_nowait())
                chunk = [encode(*i) for i in items if i is not STOP]
                if chunk:
                    await resp.write(b"".join(chunk))
                if bookmarks and STOP not in items and watcher.queue.empty():
                    await resp.write(self._bookmark(rt))
                return
            wait = min(deadline, next_bookmark if bookmarks else deadline, now + 5.0) - now
            try:
                item = await asyncio.wait_for(watcher.queue.get(), timeout=max(wait, 0.0))
            except TimeoutError:
                transport = request.transport
                if transport is None or transport.is_closing():
                    return
                if bookmarks and loop.time() >= next_bookmark and watcher.queue.empty():
                    await resp.write(self._bookmark(rt))
                    next_bookmark = loop.time() + self.config.bookmark_interval
                continue
            items = [item]
            while not watcher.queue.empty():
                items.append(watcher.queue.get_nowait())
            stop = STOP in items
            chunk = [encode(*i) for i in items if i is not STOP]
            if chunk:
                await resp.write(b"".join(chunk))
            if stop:
                return

    def _encoder(self, rt: ResourceType, as_table: bool, include: str) -> Any:
        def encode(etype: str, obj: Obj, event: Event | None) -> bytes:
            if as_table:
                table = _to_table(rt, [obj], datetime.datetime.now(datetime.UTC), include)
                table["metadata"] = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
                return _dumps({"type": etype, "object": table}) + b"\n"
            if event is not None and etype == event.type and obj.get("apiVersion") == rt.api_version:
                return event.line()
            return _dumps({"type": etype, "object": self.api.out(rt, obj)}) + b"\n"

        return encode

    def _bookmark(self, rt: ResourceType, initial_end: bool = False) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return (
            _dumps(
                {
                    "type": "BOOKMARK",
                    "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta},
                }
            )
            + b"\n"
        )

    # -- OpenAPI ------------------------------------------------------------------------------------

    def _openapi(self, request: web.Request, rest: list[str]) -> web.Response:
        """OpenAPI documents, rendered once per set of served kinds (CRDs change it)."""
        key = ("/".join(rest), self.registry.generation)
        body = self._openapi_cache.get(key)
        if body is None:
            kinds = self.registry.openapi_kinds()
            doc: dict[str, Any] | None = None
            if rest == ["v2"]:
                doc = openapi.openapi_v2(kinds)
            elif rest == ["v3"]:
                doc = openapi.openapi_v3_discovery(kinds)
            elif len(rest) == 3 and rest[:2] == ["v3", "api"]:
                doc = openapi.openapi_v3_group_version(kinds, "", rest[2])
            elif len(rest) == 4 and rest[:2] == ["v3", "apis"]:
                doc = openapi.openapi_v3_group_version(kinds, rest[2], rest[3])
            if doc is None:
                raise _path_not_found(request)
            if len(self._openapi_cache) > 64:
                self._openapi_cache.clear()
            body = self._openapi_cache[key] = _dumps(doc)
        return web.Response(body=body, content_type="application/json")

    # -- field validation ---------------------------------------------------------------------------

    def _check_fields(self, request: web.Request, rt: ResourceType, obj: Any, warnings: list[str]) -> None:
        """Server-side field validation (?fieldValidation=Strict|Warn|Ignore; Warn when absent)."""
        mode = request.query.get("fieldValidation", "Warn")
        if mode == "Ignore" or not isinstance(obj, dict):
            return
        unknown = openapi.unknown_fields(
            self.registry.openapi_kinds_cached(), rt.group, rt.version, rt.kind, obj
        )
        if not unknown:
            return
        if mode == "Strict":
            details = ", ".join(f'unknown field "{f}"' for f in unknown)
            raise errors.bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                f"strict decoding error: {details}"
            )
        warnings.extend(f'unknown field "{f}"' for f in unknown)


def _to_table(rt: ResourceType, objects: list[Obj], now: datetime.datetime, include: str) -> dict[str, Any]:
    return tables.to_table(rt.group, rt.plural, objects, now, rt.printer_columns, include)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _path_not_found_message() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def _field_manager(request: web.Request) -> str:
    """The fieldManager of a write, else the product of its User-Agent (prefixFromUserAgent in
    staging/src/k8s.io/apiserver/pkg/endpoints/handlers/rest.go): "kubectl/v1.37 (...)" -> "kubectl"."""
    explicit = request.query.get("fieldManager", "")
    if explicit:
        return explicit
    agent = request.headers.get("User-Agent", "").split("/", 1)[0]
    return "".join(c for c in agent if c.isprintable())[:128]


def _field_selector(rt: ResourceType, text: str | None) -> list[FieldRequirement]:
    """The field selector of a request, checked against the fields its kind supports."""
    return for_kind(
        parse_field_selector(text), rt.group, rt.plural, rt.custom, rt.namespaced, rt.selectable_fields
    )


def _wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "as=Table" in accept


def _int_param(value: str | None, name: str) -> int:
    if value in (None, ""):
        return 0
    try:
        return int(value)
    except ValueError as exc:
        raise errors.bad_request(f"invalid value for {name}: {value!r}") from exc


def _path_not_found(request: web.Request) -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def _unsupported_patch(ctype: str) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
    )


async def _read_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise errors.bad_request("the request body is empty")
    ctype = request.content_type
    try:
        if ctype in ("application/yaml", "application/x-yaml", "text/yaml"):
            return yaml.safe_load(raw)
        if ctype == "application/vnd.kubernetes.protobuf":
            return protobuf.decode(raw)
        if "protobuf" in ctype or "cbor" in ctype:
            raise ApiError(415, "UnsupportedMediaType", f"the media type {ctype} is not supported")
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.bad_request(f"the request body could not be decoded: {exc}") from exc


async def _delete_options(request: web.Request) -> dict[str, Any]:
    options: dict[str, Any] = {}
    raw = await request.read()
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise errors.bad_request(f"the DeleteOptions could not be decoded: {exc}") from exc
        if isinstance(body, dict):
            options.update(body)
    q = request.query
    if q.get("propagationPolicy"):
        options["propagationPolicy"] = q["propagationPolicy"]
    if q.get("gracePeriodSeconds", "").lstrip("-").isdigit():
        options["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
    if q.get("orphanDependents") in ("true", "True", "1"):
        options.setdefault("propagationPolicy", "Orphan")
    if options.get("orphanDependents") is True:
        options.setdefault("propagationPolicy", "Orphan")
    return options
