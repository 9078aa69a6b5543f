"""What the lab kubelet runs for ironlb's image: command line, environment, volumes, privileges (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from lab import containers
from lab.containers import ContainerConfigError, PodFacts, VolumeError, VolumeFiles

FACTS = PodFacts(pod_ip="192.168.10.11", host_ip="192.168.10.11")


def lookup(objects: Mapping[tuple[str, str], Mapping[str, bytes]]) -> containers.DataLookup:
    return lambda namespace, name: objects.get((namespace, name))


NONE = lookup({})


def pod(container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "speaker-x", "namespace": "ironlb-speaker", "uid": "u-1"},
        "spec": {
            "nodeName": "node1",
            "serviceAccountName": "ironlb-speaker",
            "containers": [container],
            **spec,
        },
    }


@pytest.mark.parametrize(
    ("image", "local"),
    [
        ("ironlb:0.1.0", True),
        ("ironlb", True),
        ("registry.example.com/team/ironlb@sha256:abc", True),
        ("registry:5000/ironlb:1", True),
        ("nginx:1.15-alpine", False),
        ("ironlb-other:1", False),
    ],
)
def test_the_local_image_is_recognised_by_its_name(image: str, local: bool) -> None:
    assert containers.is_local_image(image) is local


def test_env_resolves_field_refs_configmaps_and_expands_args() -> None:
    container = {
        "command": ["python", "-m", "dataplane"],
        "args": ["--mode=$(MODE)", "--node=$(NODE_NAME)", "--keep=$(UNDEFINED)", "--cost=$$(MODE)"],
        "env": [
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "dp", "key": "mode"}}},
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "GREETING", "value": "on $(NODE_NAME)"},
        ],
    }
    maps = lookup({("ironlb-speaker", "dp"): {"mode": b"nftables"}})
    env = containers.container_env(pod(container), container, FACTS, maps, NONE, {"PATH": "/bin"})
    assert env["MODE"] == "nftables" and env["POD_IP"] == "192.168.10.11"
    assert env["GREETING"] == "on node1" and env["PATH"] == "/bin"
    argv = containers.command_line(container, env, "/venv/bin/python")
    assert argv == [
        "/venv/bin/python", "-m", "dataplane", "--mode=nftables", "--node=node1", "--keep=$(UNDEFINED)",
        "--cost=$(MODE)",
    ]  # fmt: skip


def test_a_missing_configmap_key_waits_unless_optional() -> None:
    ref: dict[str, dict[str, Any]] = {"configMapKeyRef": {"name": "dp", "key": "mode"}}
    container: dict[str, Any] = {"env": [{"name": "MODE", "valueFrom": ref}]}
    with pytest.raises(ContainerConfigError, match=r'env\[0\] \(MODE\): configmap "dp" not found'):
        containers.container_env(pod(container), container, FACTS, NONE, NONE, {})
    ref["configMapKeyRef"]["optional"] = True
    assert "MODE" not in containers.container_env(pod(container), container, FACTS, NONE, NONE, {})


def test_volumes_project_the_token_ca_and_namespace_and_mount_secrets() -> None:
    container = {
        "volumeMounts": [
            {"name": "memberlist", "mountPath": "/etc/ml_secret_key", "readOnly": True},
            {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
            {"name": "tmp", "mountPath": "/tmp"},
        ]
    }
    spec = {
        "volumes": [
            {"name": "memberlist", "secret": {"secretName": "memberlist", "defaultMode": 0o400}},
            {"name": "tmp", "emptyDir": {}},
            {
                "name": "kube-api-access-x",
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {
                            "configMap": {
                                "name": "kube-root-ca.crt",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            }
                        },
                        {
                            "downwardAPI": {
                                "items": [
                                    {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
                                ]
                            }
                        },
                    ],
                },
            },
        ]
    }
    asked: list[tuple[str, Sequence[str], int]] = []

    def token(account: str, audiences: Sequence[str], seconds: int) -> str:
        asked.append((account, audiences, seconds))
        return "eyJ.token"

    secrets = lookup({("ironlb-speaker", "memberlist"): {"secretkey": b"k"}})
    maps = lookup({("ironlb-speaker", "kube-root-ca.crt"): {"ca.crt": b"CA"}})
    volumes = containers.pod_volumes(pod(container, **spec), container, FACTS, maps, secrets, token)
    assert asked == [("ironlb-speaker", [], 3607)]
    account = volumes.sources["kube-api-access-x"]
    assert isinstance(account, VolumeFiles)
    assert account.files == {
        "token": (b"eyJ.token", 0o644),
        "ca.crt": (b"CA", 0o644),
        "namespace": (b"ironlb-speaker", 0o644),
    }
    assert volumes.sources["memberlist"] == VolumeFiles({"secretkey": (b"k", 0o400)})
    assert [m.target for m in volumes.mounts if m.read_only] == ["/etc/ml_secret_key"]
    with pytest.raises(VolumeError, match='secret "memberlist" not found'):
        containers.pod_volumes(pod(container, **spec), container, FACTS, maps, NONE, token)


def test_privileges_follow_the_security_contexts() -> None:
    speaker = {"securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": False,
                                   "capabilities": {"drop": ["ALL"], "add": ["NET_RAW"]}}}  # fmt: skip
    priv = containers.privileges(pod(speaker), speaker)
    assert (priv.uid, priv.capabilities, priv.no_new_privs) == (0, ("NET_RAW",), True)
    assert containers.setpriv_argv(priv) == [
        "setpriv", "--reuid", "0", "--regid", "0", "--clear-groups",
        "--bounding-set", "-all,+net_raw", "--inh-caps", "-all,+net_raw", "--no-new-privs", "--",
    ]  # fmt: skip
    controller = {"securityContext": {"capabilities": {"drop": ["ALL"]}, "allowPrivilegeEscalation": False}}
    pod_context = {"runAsUser": 65534, "runAsGroup": 65534, "fsGroup": 65534, "runAsNonRoot": True}
    priv = containers.privileges(pod(controller, securityContext=pod_context), controller)
    assert (priv.uid, priv.gid, priv.groups, priv.capabilities) == (65534, 65534, (65534,), ())
    with pytest.raises(ContainerConfigError, match="runAsNonRoot"):
        containers.privileges(pod({}, securityContext={"runAsNonRoot": True}), {})
    assert "NET_RAW" in containers.privileges(pod({}), {}).capabilities  # the runtime's defaults
