"""One Kubernetes API client for every ironlb process: JSON dicts over the kubernetes package's connections.

The kubernetes package finds the credentials (kubeconfig or the in-cluster service account, refreshing a
rotating token) and owns the TLS connection pool (urllib3, thread-safe); everything else speaks plain JSON
dicts, which is what the pure cores take. A request answers with the decoded body or raises `ApiError`; when
no answer came at all it raises one of TRANSPORT_ERRORS. Watches raise `WatchExpired` (a 410 Gone) when their
resourceVersion is too old, so the caller lists again.

Safe to share between threads; asyncio code calls it through `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import kubernetes
import urllib3

from common.errors import shorten
from k8s.listdecode import decode_list
from k8s.meta import JSON

log = logging.getLogger("k8s.client")

# What a request raises when the server gave no answer (refused, reset, timed out, TLS failure).
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (OSError, urllib3.exceptions.HTTPError)

JSON_TYPE = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
MAX_ERROR_MESSAGE = 1000


class ApiError(Exception):
    """A non-2xx answer; `status` is the HTTP code, `reason` the Status reason (NotFound, Conflict...)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


# Everything a request may raise: an answer that is an error, or no answer at all.
REQUEST_ERRORS: tuple[type[Exception], ...] = (ApiError, *TRANSPORT_ERRORS)


class WatchExpired(ApiError):
    """The resourceVersion is too old (410 Gone): list again."""

    def __init__(self, message: str) -> None:
        super().__init__(410, "Expired", message)


class ConfigError(Exception):
    """No usable credentials: a missing or broken kubeconfig, or an incomplete in-cluster environment."""


def load_configuration(kubeconfig: str | None = None) -> Any:
    """Credentials the way every Kubernetes client finds them: --kubeconfig, then KUBECONFIG, then the
    in-cluster service account, then ~/.kube/config. Returns a kubernetes.client.Configuration; raises
    ConfigError naming the source and the reason.

    The kubernetes package copies a kubeconfig's inline certificates and private key into temporary files
    that stay on disk if the process is killed. Here they land in a private scratch directory, are moved into
    anonymous memory files at once, and the directory is removed: nothing is left behind.
    """
    configuration: Any = kubernetes.client.Configuration()  # partly typed: its hooks are set below
    # The kubernetes package is only partly typed: its untyped corners are reached through Any.
    loader: Any = kubernetes.config
    if not kubeconfig and not os.environ.get("KUBECONFIG") and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            # The mounted service account files are read in place: no copies.
            loader.load_incluster_config(client_configuration=configuration)
        except Exception as exc:  # ConfigException, OSError: name the source, whatever the loader raised
            raise ConfigError(f"in-cluster: {exc}") from exc
        return configuration
    # Read KUBECONFIG now: the kubernetes package reads it once, when it is imported. A list (a:b) is merged,
    # as kubectl does.
    source = kubeconfig or os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    scratch = Path(tempfile.mkdtemp(prefix="ironlb-credentials-"))
    try:
        loader.load_kube_config(
            config_file=source, client_configuration=configuration, temp_file_path=str(scratch)
        )
        moved = {}
        for attribute in ("ssl_ca_cert", "cert_file", "key_file"):
            path = getattr(configuration, attribute, None)
            if path and Path(path).parent == scratch:
                moved[attribute] = memory_file(Path(path).read_bytes(), attribute)
                setattr(configuration, attribute, moved[attribute])
        hook = getattr(configuration, "refresh_api_key_hook", None)
        if hook is not None and moved:
            # A token user's refresh hook (run before every request) sets the loader's file paths again, those
            # in the removed scratch directory, and installs itself anew: keep the memory files.
            def refresh(conf: Any) -> None:
                hook(conf)
                for attribute, memory_path in moved.items():
                    setattr(conf, attribute, memory_path)
                conf.refresh_api_key_hook = refresh

            configuration.refresh_api_key_hook = refresh
    except Exception as exc:  # ConfigException, OSError, YAML and key errors alike
        raise ConfigError(f"{source}: {exc}") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return configuration


def memory_file(data: bytes, name: str) -> str:
    """A path to `data` held only in this process's memory (a memfd): gone when the process ends, however
    it ends. Open for the process's lifetime; readers (ssl, kopf) open the path like any file."""
    fd = os.memfd_create(f"ironlb-{name}", os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return f"/proc/self/fd/{fd}"


def bearer_token(configuration: Any) -> tuple[str | None, str | None]:
    """(scheme, token) from a client Configuration, refreshing a rotating in-cluster token first (kopf's
    login handler needs them apart)."""
    hook = getattr(configuration, "refresh_api_key_hook", None)
    if hook is not None:
        hook(configuration)
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    if not header:
        return None, None
    parts = str(header).split(" ", 1)
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


class Client:
    """JSON over HTTPS with the credentials and the connection pool of a kubernetes Configuration."""

    def __init__(self, configuration: Any, *, user_agent: str = "ironlb", timeout: float = 30.0) -> None:
        self.configuration = configuration
        self._api_client: Any = kubernetes.client.ApiClient(configuration)
        self._pool: urllib3.PoolManager = self._api_client.rest_client.pool_manager
        self.host = str(configuration.host).rstrip("/")
        self.timeout = timeout
        self._base_headers = {"Accept": JSON_TYPE, "User-Agent": user_agent}

    @classmethod
    def load(cls, kubeconfig: str | None = None, **options: Any) -> Client:
        """A client with the credentials load_configuration finds; raises ConfigError."""
        return cls(load_configuration(kubeconfig), **options)

    @classmethod
    def open_or_report(cls, kubeconfig: str | None, **options: Any) -> Client | None:
        """A client, or None after one log line naming the kubeconfig that is missing or broken."""
        try:
            return cls.load(kubeconfig, **options)
        except ConfigError as exc:
            log.error("event=bad_kubeconfig path=%s error=%s", kubeconfig or "-", exc)
            return None

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._api_client.close()

    def _headers(self) -> dict[str, str]:
        headers = dict(self._base_headers)
        # Per request: auth_settings() runs the loaders' refresh hook, so a rotated service-account token or
        # an expiring exec credential is picked up without a restart.
        for setting in dict(self.configuration.auth_settings()).values():
            headers[str(setting["key"])] = str(setting["value"])
        return headers

    def _url(self, path: str, query: Mapping[str, Any] | None) -> str:
        url = self.host + path
        if query:
            params = {k: v for k, v in query.items() if v is not None}
            if params:
                url += "?" + urllib.parse.urlencode(params)
        return url

    # ---- requests -------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = JSON_TYPE,
        timeout: float | None = None,
    ) -> JSON:
        """Send one request; the decoded answer, or ApiError for a non-2xx one."""
        status, text = self._send(method, path, query, body, content_type, timeout)
        try:
            return _decode_object(text)
        except ValueError as exc:  # a proxy's HTML page, a truncated body: an API failure like any other
            raise ApiError(status, "InvalidResponse", shorten(str(exc), 200)) from None

    def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None,
        body: Any,
        content_type: str,
        timeout: float | None,
    ) -> tuple[int, str]:
        """(status, body text) of a 2xx answer; ApiError for any other."""
        headers = self._headers()
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        response = self._pool.request(
            method,
            self._url(path, query),
            body=data,
            headers=headers,
            timeout=urllib3.Timeout(total=timeout or self.timeout),
            retries=False,
        )
        status, payload = response.status, response.data
        del response  # it holds the body too: one copy of a large page is enough
        if status >= 300:
            raise api_error(status, payload)
        return status, payload.decode()

    def get(self, path: str, **query: Any) -> JSON:
        return self.request("GET", path, query=query)

    def get_or_none(self, path: str, **query: Any) -> JSON | None:
        """The object, or None when it does not exist."""
        try:
            return self.get(path, **query)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, path: str, body: Mapping[str, Any], **query: Any) -> JSON:
        return self.request("POST", path, query=query, body=body)

    def replace(self, path: str, body: Mapping[str, Any], **query: Any) -> JSON:
        """PUT: an update guarded by the body's resourceVersion (409 Conflict when it is stale)."""
        return self.request("PUT", path, query=query, body=body)

    def merge_patch(self, path: str, patch: Mapping[str, Any], **query: Any) -> JSON:
        """RFC 7386: maps merge, lists and scalars are replaced, null deletes."""
        return self.request("PATCH", path, query=query, body=patch, content_type=MERGE_PATCH)

    def json_patch(self, path: str, operations: Sequence[Mapping[str, Any]], **query: Any) -> JSON:
        """RFC 6902 operations, applied atomically (a failed "test" makes it a 422 and changes nothing)."""
        return self.request("PATCH", path, query=query, body=list(operations), content_type=JSON_PATCH)

    def apply(self, path: str, body: Mapping[str, Any], *, field_manager: str, force: bool = False) -> JSON:
        """Server-side apply of `body` (a full object: apiVersion, kind, metadata.name) as `field_manager`;
        `force` takes over fields another manager owns instead of answering 409."""
        query = {"fieldManager": field_manager, "force": "true" if force else None}
        return self.request("PATCH", path, query=query, body=body, content_type=APPLY_PATCH)

    def delete(
        self,
        path: str,
        *,
        grace_period: int | None = None,
        uid: str | None = None,
        propagation: str | None = None,
    ) -> bool:
        """Delete; False when it was already gone. `uid` makes it a no-op (409) for a re-created object."""
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace_period is not None:
            options["gracePeriodSeconds"] = grace_period
        if uid:
            options["preconditions"] = {"uid": uid}
        if propagation:
            options["propagationPolicy"] = propagation
        try:
            self.request("DELETE", path, body=options)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # ---- lists and watches ----------------------------------------------------------------------------

    def pages(
        self, path: str, *, limit: int = 500, transform: Callable[[JSON], JSON] | None = None, **query: Any
    ) -> Iterator[JSON]:
        """Every page of a list (limit/continue), each with its metadata; the first page's resourceVersion
        is the list's. A continue token that expired mid-list raises WatchExpired: list again.

        With `transform`, each item is transformed as soon as it is decoded (k8s.listdecode): a page of large
        objects never exists decoded as a whole, only what the transform keeps."""
        token: str | None = None
        while True:
            try:
                page_query = {"limit": limit if limit > 0 else None, "continue": token, **query}
                if transform is None:
                    page = self.get(path, **page_query)
                else:
                    page = self._decoded_page(path, page_query, transform)
            except ApiError as exc:
                if exc.status == 410 and token:
                    raise WatchExpired(exc.message) from exc
                raise
            yield page
            token = str((page.get("metadata") or {}).get("continue") or "") or None
            if token is None:
                return

    def _decoded_page(self, path: str, query: Mapping[str, Any], transform: Callable[[JSON], JSON]) -> JSON:
        status, text = self._send("GET", path, query, None, JSON_TYPE, None)
        try:
            top, items = decode_list(text, transform)
        except ValueError as exc:
            raise ApiError(status, "InvalidResponse", shorten(str(exc), 200)) from None
        top["items"] = items
        return top

    def list(self, path: str, *, limit: int = 500, **query: Any) -> Iterator[JSON]:
        """The items of a list, page by page, so a caller never holds a whole large list."""
        for page in self.pages(path, limit=limit, **query):
            yield from page.get("items") or []

    def watch(
        self,
        path: str,
        resource_version: str,
        *,
        timeout_seconds: int = 300,
        bookmarks: bool = True,
        **query: Any,
    ) -> Watch:
        """A stream of watch events ({"type", "object"}) from `resource_version` until the server ends it.

        BOOKMARK events are yielded too (they carry only a newer resourceVersion). A too-old version raises
        WatchExpired; any other ERROR event raises ApiError. `Watch.close()` ends it from another thread.
        """
        params: dict[str, Any] = {
            "watch": "true",
            "resourceVersion": resource_version or None,
            "allowWatchBookmarks": "true" if bookmarks else None,
            "timeoutSeconds": str(timeout_seconds),
            **query,
        }
        response = self._pool.request(
            "GET",
            self._url(path, params),
            headers=self._headers(),
            preload_content=False,
            # The server ends the stream at timeoutSeconds; a read that stays silent well past it is a dead
            # connection, not a quiet collection.
            timeout=urllib3.Timeout(connect=10, read=timeout_seconds + 15),
            retries=False,
        )
        if response.status >= 300:
            payload = response.read()
            response.release_conn()
            error = api_error(response.status, payload)
            if error.status == 410:
                raise WatchExpired(error.message)
            raise error
        return Watch(response, path)


class Watch:
    """An open watch: iterate for events; `close()` (from any thread) ends the iteration."""

    def __init__(self, response: urllib3.BaseHTTPResponse, path: str) -> None:
        self.path = path
        self._response = response
        self._closed = threading.Event()
        self._finished = threading.Event()
        self._events = self._read()

    def __iter__(self) -> Iterator[JSON]:
        return self

    def __next__(self) -> JSON:
        return next(self._events)

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._finished.is_set():
            return  # ended by the server: its connection went back to the pool
        # shutdown() unblocks a read in progress in another thread; the connection is not reused.
        with contextlib.suppress(RuntimeError):  # it finished in between and went back to the pool
            self._response.shutdown()
        self._response.close()

    def _read(self) -> Iterator[JSON]:
        try:
            for line in self._lines():
                event: JSON = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    code = int(status.get("code") or 500)
                    message = str(status.get("message") or status)
                    if code == 410:
                        raise WatchExpired(message)
                    raise ApiError(code, str(status.get("reason") or ""), message)
                yield event
        except TRANSPORT_ERRORS:
            if not self._closed.is_set():
                raise  # the stream broke: the caller lists again
        finally:
            self._finished.set()
            self._response.release_conn()

    def _lines(self) -> Iterator[bytes]:
        """Newline-separated records of any size (a ConfigMap may hold 1 MiB)."""
        pending: list[bytes] = []
        for chunk in self._response.stream(65536, decode_content=True):
            if self._closed.is_set():
                return
            if b"\n" not in chunk:
                pending.append(chunk)
                continue
            pending.append(chunk)
            *complete, rest = b"".join(pending).split(b"\n")
            pending = [rest] if rest else []
            for line in complete:
                if line.strip():
                    yield line
        if not self._closed.is_set():
            tail = b"".join(pending)
            if tail.strip():
                yield tail


def api_error(status: int, payload: bytes) -> ApiError:
    """An ApiError from a response: the Status body's reason and message when there is one (cut to 1,000
    characters: an error quoting a whole object must not flood logs and Events)."""
    try:
        body = json.loads(payload)
        message = str(body.get("message") or payload[:200])
        return ApiError(status, str(body.get("reason") or ""), shorten(message, MAX_ERROR_MESSAGE))
    except (ValueError, AttributeError):
        return ApiError(status, "", payload[:200].decode(errors="replace"))


def _decode_object(text: str) -> JSON:
    if not text:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("the response is not a JSON object")
    answer: JSON = value
    return answer
