"""The controller's own API calls: credentials for kopf and a small asyncio client for reads and writes.

kopf watches Namespaces; everything else (Services and the config objects through paginated lists and
watches, status patches, events, the Lease) goes through `KubeClient`, so that least-privilege namespaced RBAC
is enough, lists are paginated and decoded item by item, and writes can be made from any task.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import aiohttp
import kubernetes.client
import kubernetes.config

from k8s.listdecode import decode_list

log = logging.getLogger("controller.kube")

JSON = dict[str, Any]

T = TypeVar("T")


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{status} {reason}: {message}")


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


def load_client_configuration(kubeconfig: str | None) -> Any:
    """Credentials the way every Kubernetes client finds them: --kubeconfig, then KUBECONFIG, then the
    in-cluster service account, then ~/.kube/config. Returns a kubernetes.client.Configuration.

    The kubernetes package copies a kubeconfig's inline certificates and private key into temporary files
    that stay on disk if the process is killed. Here they land in a private scratch directory, are moved
    into anonymous memory files at once, and the directory is removed: nothing is left behind.
    """
    configuration = kubernetes.client.Configuration()
    if not kubeconfig and not os.environ.get("KUBECONFIG") and os.environ.get("KUBERNETES_SERVICE_HOST"):
        # The mounted service account files are read in place: no copies.
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return configuration
    scratch = Path(tempfile.mkdtemp(prefix="ironlb-credentials-"))
    try:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig or None, client_configuration=configuration, temp_file_path=str(scratch)
        )
        moved = {}
        for attribute in ("ssl_ca_cert", "cert_file", "key_file"):
            path = getattr(configuration, attribute, None)
            if path and Path(path).parent == scratch:
                moved[attribute] = memory_file(Path(path).read_bytes(), attribute)
                setattr(configuration, attribute, moved[attribute])
        hook = getattr(configuration, "refresh_api_key_hook", None)
        if hook is not None and moved:
            # A token user's refresh hook (run before every request) sets the loader's file paths again,
            # those in the removed scratch directory, and installs itself anew: keep the memory files.
            def refresh(conf: Any) -> None:
                hook(conf)
                for attribute, memory_path in moved.items():
                    setattr(conf, attribute, memory_path)
                conf.refresh_api_key_hook = refresh

            settable: Any = configuration  # typed without the hook
            settable.refresh_api_key_hook = refresh
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return configuration


def memory_file(data: bytes, name: str) -> str:
    """A path to `data` held only in this process's memory (a memfd): gone when the process ends, however
    it ends. Open for the process's lifetime; readers (ssl, kopf) open the path like any file."""
    fd = os.memfd_create(f"ironlb-{name}", os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return f"/proc/self/fd/{fd}"


def bearer_token(configuration: Any) -> tuple[str | None, str | None]:
    """(scheme, token) from a client Configuration, refreshing a rotating in-cluster token first."""
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


def micro_time(moment: datetime.datetime | None = None) -> str:
    """A meta/v1 MicroTime string."""
    moment = moment or datetime.datetime.now(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rv_newer_or_equal(candidate: str | None, current: str | None) -> bool:
    """Whether a body with resourceVersion `candidate` may replace one with `current`.

    resourceVersions are opaque, but every API server we target uses increasing integers; comparing them
    keeps a late watch event from overwriting the fresher body a patch returned.
    """
    if not candidate or not current:
        return True
    try:
        return int(candidate) >= int(current)
    except ValueError:
        return True


class KubeClient:
    """JSON over HTTPS with the credentials of a kubernetes.client.Configuration."""

    def __init__(self, configuration: Any, connections: int = 32) -> None:
        self._configuration = configuration
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self.server = str(configuration.host).rstrip("/")

    def _ssl_context(self) -> ssl.SSLContext | bool:
        if self.server.startswith("http://"):
            return False
        context = ssl.create_default_context(cafile=self._configuration.ssl_ca_cert or None)
        if not self._configuration.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self._configuration.cert_file:
            context.load_cert_chain(self._configuration.cert_file, self._configuration.key_file)
        return context

    def _headers(self) -> dict[str, str]:
        scheme, token = bearer_token(self._configuration)
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"{scheme or 'Bearer'} {token}"
        return headers

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl_context(), limit=self._connections)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JSON:
        return await self._request(
            method, path, _decode_object, params=params, body=body, content_type=content_type
        )

    async def _request(
        self,
        method: str,
        path: str,
        decode: Callable[[str], T],
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> T:
        headers = self._headers()
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        timeout = aiohttp.ClientTimeout(total=30)
        async with self.session().request(
            method, self.server + path, params=params, data=data, headers=headers, timeout=timeout
        ) as response:
            status = response.status
            text = await response.text()
            del response  # it holds the raw body too: one copy of a large page is enough
        if status >= 300:
            raise _api_error(status, text)
        try:
            return decode(text)
        except ValueError as e:  # a proxy's HTML page, a truncated body: an API failure like any other
            raise ApiError(status, "InvalidResponse", _shorten(str(e))) from None

    async def list_page(
        self,
        path: str,
        transform: Callable[[JSON], JSON],
        limit: int,
        continue_token: str = "",
        **params: str,
    ) -> tuple[JSON, list[JSON]]:
        """One page of a List: (its metadata, transform(item) for each item), each item transformed as soon
        as it is decoded, so a page of large objects never exists decoded as a whole."""
        query = dict(params, limit=str(limit))
        if continue_token:
            query["continue"] = continue_token
        top, items = await self._request(
            "GET", path, lambda text: decode_list(text, transform), params=query
        )
        metadata = top.get("metadata")
        return (metadata if isinstance(metadata, dict) else {}), items

    async def get(self, path: str) -> JSON | None:
        try:
            return await self.request("GET", path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    async def list(self, path: str, **params: str) -> JSON:
        return await self.request("GET", path, params=params)

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> JSON:
        return await self.request("PATCH", path, body=body, content_type="application/merge-patch+json")

    async def create(self, path: str, body: Mapping[str, Any]) -> JSON:
        return await self.request("POST", path, body=body)

    async def replace(self, path: str, body: Mapping[str, Any]) -> JSON:
        return await self.request("PUT", path, body=body)

    async def watch(self, path: str, resource_version: str, **params: str) -> AsyncIterator[JSON]:
        """Watch events from `resource_version` until the server ends the stream; WatchExpired on 410."""
        query = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true"}
        query.update(params)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None)
        async with self.session().get(
            self.server + path, params=query, headers=self._headers(), timeout=timeout
        ) as response:
            if response.status == 410:
                raise WatchExpired(path)
            if response.status >= 300:
                raise _api_error(response.status, await response.text())
            async for line in _lines(response.content):
                event = cast(JSON, json.loads(line))
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    if status.get("code") == 410:
                        raise WatchExpired(path)
                    raise ApiError(int(status.get("code") or 500), str(status.get("reason")), str(status))
                yield event


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Newline-separated records of any size (aiohttp's own line iterator refuses lines over 128 KiB, and a
    ConfigMap may hold up to 1 MiB). Chunks of a long line are joined once, not re-copied per chunk."""
    pending: list[bytes] = []
    async for chunk in stream.iter_any():
        *complete, rest = chunk.split(b"\n")
        for piece in complete:
            line = b"".join([*pending, piece])
            pending.clear()
            if line.strip():
                yield line
        if rest:
            pending.append(rest)
    line = b"".join(pending)
    if line.strip():
        yield line


def _decode_object(text: str) -> JSON:
    if not text:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("the response is not a JSON object")
    return cast(JSON, value)


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def _api_error(status: int, text: str) -> ApiError:
    reason, message = "", text
    with contextlib.suppress(ValueError, AttributeError):
        body = json.loads(text)
        reason, message = str(body.get("reason", "")), str(body.get("message", text))
    return ApiError(status, reason, _shorten(message, 1000))


async def retry_forever(what: str, attempt: Any, delay: float = 1.0) -> Any:
    """Await `attempt()` until it succeeds; API hiccups at start-up must not kill the controller."""
    while True:
        try:
            return await attempt()
        except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as e:
            log.warning("event=api_retry what=%s error=%r", what, str(e))
            await asyncio.sleep(delay)
