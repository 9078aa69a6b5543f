"""A kubeconfig whose user is a bearer token and whose CA is inline (service-account kubeconfigs, many managed
clusters): the CA, kept in a memory file, must stay readable across the token refresh run before each request
(found by the fencing test: every request failed with ENOENT)."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from k8s.client import bearer_token, load_configuration

CA = b"-----BEGIN CERTIFICATE-----\nnot checked here\n-----END CERTIFICATE-----\n"


def test_inline_ca_survives_the_token_refresh(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {
            "server": "https://127.0.0.1:6443",
            "certificate-authority-data": base64.b64encode(CA).decode(),
        }}],
        "users": [{"name": "u", "user": {"token": "ilbt-token"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }))  # fmt: skip
    configuration = load_configuration(str(kubeconfig))
    for _ in range(2):
        assert bearer_token(configuration) == ("Bearer", "ilbt-token")
        assert Path(configuration.ssl_ca_cert).read_bytes() == CA
