"""The lab kubelet's container runtime for ironlb's own image: it works out what to run (lab.containers, fed
with the pod's ConfigMaps, Secrets and a bound service-account token from the API), writes the volumes'
content under the kubelet's state dir, and starts the component through lab.podinit in the pod's (or the
node's) network namespace and a private mount namespace, its output where `kubectl logs` reads it."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from k8s.client import ApiError, Client
from k8s.meta import JSON, resource_path
from lab import containers, podlogs
from lab.containers import ContainerPlan

REPO_ROOT = Path(__file__).resolve().parents[1]


class ComponentRuntime:
    def __init__(
        self, kube: Client, node: str, host_ips: Sequence[str], state_dir: Path, pod_log_dir: Path
    ) -> None:
        self.kube = kube
        self.node = node
        self.host_ips = list(host_ips)
        self.volumes_dir = state_dir / "volumes"
        self.run_dir = state_dir / "run"
        self.pod_log_dir = pod_log_dir
        ca_path = getattr(kube.configuration, "ssl_ca_cert", None)
        self.ca_pem = Path(ca_path).read_bytes() if ca_path else b""

    def plan(self, pod: JSON, container: JSON, pod_ips: Sequence[str], host_network: bool) -> ContainerPlan:
        """What to run; raises ContainerConfigError (VolumeError) while it cannot start yet."""
        facts = containers.PodFacts(
            pod_ip=pod_ips[0], host_ip=self.host_ips[0], pod_ips=tuple(pod_ips), host_ips=tuple(self.host_ips)
        )
        base = {
            "PATH": containers.CONTAINER_PATH,
            "HOME": "/",
            "HOSTNAME": self.node if host_network else str(pod["metadata"]["name"]),
            **self.kubernetes_service_env(),
        }
        env = containers.container_env(pod, container, facts, self.configmap_data, self.secret_data, base)
        token = functools.partial(self.service_account_token, pod)
        volumes = containers.pod_volumes(pod, container, facts, self.configmap_data, self.secret_data, token)
        return ContainerPlan(
            argv=containers.command_line(container, env, sys.executable),
            env=env,
            volumes=volumes,
            privileges=containers.privileges(pod, container),
            host_network=host_network,
        )

    def kubernetes_service_env(self) -> dict[str, str]:
        """KUBERNETES_SERVICE_HOST/PORT for the in-cluster config. The lab has no kube-proxy of its own
        (ironlb's dataplane is optional, and it needs the API before it can program anything): the variables
        name the API server's endpoint, the address the default/kubernetes Service's EndpointSlice holds, as
        clusters without kube-proxy do (a `kubernetes-services-endpoint` ConfigMap)."""
        path = resource_path("discovery.k8s.io/v1", "endpointslices", "default", "kubernetes")
        found = self.kube.get_or_none(path)
        endpoints = (found or {}).get("endpoints") or []
        ports = (found or {}).get("ports") or []
        if not endpoints or not ports:
            return {}
        host, port = str(endpoints[0]["addresses"][0]), str(ports[0]["port"])
        url_host = f"[{host}]" if ":" in host else host
        return {
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{url_host}:{port}",
        }

    def configmap_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        obj = self.kube.get_or_none(resource_path("v1", "configmaps", namespace, name))
        if obj is None and name == "kube-root-ca.crt":
            # kube-controller-manager's root-ca-cert-publisher puts the cluster CA in every namespace; the lab
            # has no such controller, and the kubelet's own kubeconfig holds the same CA.
            return {"ca.crt": self.ca_pem}
        return None if obj is None else containers.configmap_data(obj)

    def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        obj = self.kube.get_or_none(resource_path("v1", "secrets", namespace, name))
        return None if obj is None else containers.decode_secret(obj)

    def service_account_token(self, pod: JSON, account: str, audiences: Sequence[str], seconds: int) -> str:
        """A token for the pod's service account, bound to the pod (the TokenRequest API)."""
        meta = pod["metadata"]
        spec: JSON = {
            "expirationSeconds": seconds,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "uid": meta.get("uid"),
            },
        }
        if audiences:
            spec["audiences"] = list(audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        path = resource_path("v1", "serviceaccounts", str(meta.get("namespace")), account) + "/token"
        try:
            answer = self.kube.create(path, body)
        except ApiError as exc:
            raise containers.VolumeError(f"serviceaccounts/{account}/token: {exc}") from exc
        return str(answer["status"]["token"])

    def write_volumes(self, root: Path, volumes: containers.Volumes) -> list[dict[str, Any]]:
        """Make every volume's content on the host; the mounts lab.podinit makes from them."""
        sources: dict[str, Path] = {}
        for name, source in volumes.sources.items():
            path = root / name
            if isinstance(source, containers.VolumeFiles):
                staging = root / f".{name}.new"
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir(parents=True)
                for rel, (content, mode) in source.files.items():
                    target = staging / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(content)
                    target.chmod(mode)
                shutil.rmtree(path, ignore_errors=True)
                staging.rename(path)
            elif isinstance(source, containers.EmptyDir):
                path.mkdir(parents=True, exist_ok=True)
                path.chmod(0o1777)
            else:
                path = Path(source.path)
                if source.kind == "FileOrCreate" and not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
                elif source.kind == "DirectoryOrCreate":
                    path.mkdir(parents=True, exist_ok=True)
            sources[name] = path
        return [
            {
                "source": str(sources[m.volume] / m.sub_path if m.sub_path else sources[m.volume]),
                "target": m.target,
                "read_only": m.read_only,
            }
            for m in volumes.mounts
        ]

    def start(
        self, pod: JSON, container: JSON, netns: str, restarts: int, plan: ContainerPlan
    ) -> subprocess.Popen[bytes]:
        """Run `plan` as the container's `restarts`-th run: volumes written, then lab.podinit mounts them and
        executes the command; stdout and stderr go to the run's log file."""
        meta = pod["metadata"]
        uid, namespace, name = str(meta.get("uid")), str(meta.get("namespace")), str(meta["name"])
        volume_root = self.volumes_dir / uid
        mounts = self.write_volumes(volume_root, plan.volumes)
        scratch = volume_root / ".scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        spec_file = self.run_dir / f"{uid}.json"
        spec_file.touch(mode=0o600)  # the environment may hold a Secret's value
        spec = {
            "scratch": str(scratch),
            "mounts": mounts,
            "image": [str(REPO_ROOT), sys.prefix, sys.base_prefix],
            "setpriv": containers.setpriv_argv(plan.privileges),
            "argv": plan.argv,
            "env": plan.env,
        }
        spec_file.write_text(json.dumps(spec))
        log_file = podlogs.container_log(
            self.pod_log_dir, namespace, name, uid, str(container.get("name") or ""), restarts
        )
        log_file.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            "ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private",
            sys.executable, "-m", "lab.podinit", str(spec_file),
        ]  # fmt: skip
        env = dict(os.environ)
        paths = (str(REPO_ROOT), env.get("PYTHONPATH", ""))
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        with log_file.open("ab") as out:
            # Own session: a Ctrl-C on the kubelet's terminal must not reach the pods.
            return subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True
            )

    def rewrite_token(self, pod: JSON, volume: str, path: str, value: str) -> None:
        """Replace a projected token inside its mounted directory (the bind mount keeps showing the directory,
        so a rename within it is what the container sees)."""
        target = self.volumes_dir / str(pod["metadata"].get("uid")) / volume / path
        tmp = target.with_name(f".{target.name}.new")
        tmp.write_text(value)
        tmp.chmod(target.stat().st_mode & 0o777 if target.exists() else 0o644)
        tmp.replace(target)

    def remove(self, namespace: str, name: str, uid: str) -> None:
        shutil.rmtree(self.volumes_dir / uid, ignore_errors=True)
        (self.run_dir / f"{uid}.json").unlink(missing_ok=True)
        shutil.rmtree(podlogs.pod_dir(self.pod_log_dir, namespace, name, uid), ignore_errors=True)
