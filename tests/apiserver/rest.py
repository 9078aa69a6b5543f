"""A small raw-HTTP client for tests: the same requests kubectl or a controller would send, with the
kubeconfig's client certificate (or a bearer token), so status codes and bodies can be asserted exactly."""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

import requests
import yaml


class Rest:
    def __init__(self, kubeconfig: Path, token: str | None = None, use_cert: bool = True) -> None:
        cfg = yaml.safe_load(kubeconfig.read_text())
        cluster = cfg["clusters"][0]["cluster"]
        user = cfg["users"][0]["user"]
        self.base = cluster["server"]
        self._tmp = tempfile.TemporaryDirectory(prefix="ilbt-rest-")
        tmp = Path(self._tmp.name)
        (tmp / "ca.crt").write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        (tmp / "tls.crt").write_bytes(base64.b64decode(user["client-certificate-data"]))
        (tmp / "tls.key").write_bytes(base64.b64decode(user["client-key-data"]))
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would replace our CA
        self.session.verify = str(tmp / "ca.crt")
        if use_cert:
            self.session.cert = (str(tmp / "tls.crt"), str(tmp / "tls.key"))
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json", **params: Any
    ) -> requests.Response:
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.session.request(
            method,
            self.base + path,
            data=data,
            params=params or None,
            headers={"Content-Type": content_type},
            timeout=30,
        )

    def ok(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json", **params: Any
    ) -> Any:
        resp = self.request(method, path, body, content_type, **params)
        assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp.json()

    def watch(self, path: str, timeout: float = 10, **params: Any) -> Generator[dict[str, Any], None, None]:
        """Yields watch events (dicts) until the server closes the stream."""
        params.setdefault("watch", "true")
        with self.session.get(self.base + path, params=params, stream=True, timeout=timeout) as resp:
            assert resp.status_code == 200, resp.text
            for line in resp.iter_lines():
                if line:
                    yield json.loads(line)

    def close(self) -> None:
        self.session.close()
        self._tmp.cleanup()


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
