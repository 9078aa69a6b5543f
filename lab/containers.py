"""What the lab kubelet runs for a container, pure: the command line, the environment, the volumes and the
privileges, worked out from the Pod the way a kubelet and a container runtime do.

The lab has no container runtime and no registry. ironlb's own image (any `.../ironlb[:tag][@digest]`) runs
the component from this checkout: the container's command and args as written (`python -m speaker --flag...`,
with `$(VAR)` expanded), `python` being the lab's interpreter. Every other image runs the lab's echo server
(lab.echoserver). Lookups of ConfigMaps, Secrets and service-account tokens are passed in, so this module does
no I/O.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LOCAL_IMAGE = "ironlb"
# The image's ENTRYPOINT (Dockerfile), for a container that gives no command.
LOCAL_ENTRYPOINT = ("python", "-m", "controller")
# PATH of a container: the Debian image's default.
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What containerd grants a container that asks for no capabilities (its default spec).
DEFAULT_CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP", "SETPCAP",
    "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)  # fmt: skip
DEFAULT_FILE_MODE = 0o644

# (namespace, name) -> the object's data as bytes per key, or None when it does not exist.
DataLookup = Callable[[str, str], Mapping[str, bytes] | None]
# (service account, audiences, expiration seconds) -> a token bound to the pod.
TokenSource = Callable[[str, Sequence[str], int], str]


class ContainerConfigError(ValueError):
    """The container cannot start yet (a missing ConfigMap, Secret or key): the kubelet retries, as the real
    one does, and shows CreateContainerConfigError. The message names the object or field."""


class VolumeError(ContainerConfigError):
    """A volume cannot be set up yet (FailedMount)."""


def is_local_image(image: str) -> bool:
    """Whether `image` names ironlb's own image: `ironlb`, `ironlb:0.1.0`, `registry/x/ironlb@sha256:...`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0] == LOCAL_IMAGE


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined variables are replaced, undefined ones kept as written, `$$`
    escapes a `$`."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR.sub(one, text)


@dataclass(frozen=True)
class PodFacts:
    """What the downward API may name, known when the container starts."""

    pod_ip: str
    host_ip: str
    pod_ips: tuple[str, ...] = ()
    host_ips: tuple[str, ...] = ()


def field_ref(pod: Mapping[str, Any], path: str, facts: PodFacts) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": facts.pod_ip,
        "status.hostIP": facts.host_ip,
        "status.podIPs": ",".join(facts.pod_ips or (facts.pod_ip,)),
        "status.hostIPs": ",".join(facts.host_ips or (facts.host_ip,)),
    }
    if path in simple:
        return str(simple[path] or "")
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2)) or "")
    raise ContainerConfigError(f"fieldRef.fieldPath: {path!r} is not supported")


def _key_ref(kind: str, ref: Mapping[str, Any], namespace: str, lookup: DataLookup, where: str) -> str | None:
    name, key = str(ref.get("name") or ""), str(ref.get("key") or "")
    data = lookup(namespace, name)
    if data is None or key not in data:
        if ref.get("optional"):
            return None
        what = (
            f'{kind} "{name}" not found'
            if data is None
            else f"couldn't find key {key} in {kind} {namespace}/{name}"
        )
        raise ContainerConfigError(f"{where}: {what}")
    return data[key].decode(errors="replace")


def container_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    facts: PodFacts,
    configmaps: DataLookup,
    secrets: DataLookup,
    base: Mapping[str, str],
) -> dict[str, str]:
    """The container's environment: `base` (PATH, HOSTNAME, the kubernetes Service variables), then envFrom,
    then env, each value expanded against what came before."""
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    env = dict(base)
    for index, source in enumerate(container.get("envFrom") or []):
        prefix = str(source.get("prefix") or "")
        for kind, lookup in (("configMapRef", configmaps), ("secretRef", secrets)):
            ref = source.get(kind)
            if not isinstance(ref, dict):
                continue
            data = lookup(namespace, str(ref.get("name") or ""))
            if data is None:
                if ref.get("optional"):
                    continue
                noun = "configmap" if kind == "configMapRef" else "secret"
                raise ContainerConfigError(f'envFrom[{index}].{kind}: {noun} "{ref.get("name")}" not found')
            for key, raw in data.items():
                env[prefix + key] = raw.decode(errors="replace")
    for index, var in enumerate(container.get("env") or []):
        name = str(var.get("name") or "")
        where = f"env[{index}] ({name})"
        if "value" in var or not var.get("valueFrom"):
            env[name] = expand(str(var.get("value") or ""), env)
            continue
        source = var["valueFrom"]
        value: str | None
        if "fieldRef" in source:
            value = field_ref(pod, str(source["fieldRef"].get("fieldPath") or ""), facts)
        elif "configMapKeyRef" in source:
            value = _key_ref("configmap", source["configMapKeyRef"], namespace, configmaps, where)
        elif "secretKeyRef" in source:
            value = _key_ref("secret", source["secretKeyRef"], namespace, secrets, where)
        else:
            raise ContainerConfigError(
                f"{where}.valueFrom: only fieldRef, configMapKeyRef and secretKeyRef are supported"
            )
        if value is not None:
            env[name] = value
    return env


def command_line(container: Mapping[str, Any], env: Mapping[str, str], python: str) -> list[str]:
    """The local image's command and args, `$(VAR)`-expanded, with `python` as the lab's interpreter."""
    command = [str(c) for c in container.get("command") or LOCAL_ENTRYPOINT]
    args = [str(a) for a in container.get("args") or []]
    argv = [expand(part, env) for part in command + args]
    if argv and argv[0] in ("python", "python3"):
        argv[0] = python
    return argv


# ---- volumes ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VolumeFiles:
    """A volume the kubelet writes: relative path -> (content, mode)."""

    files: dict[str, tuple[bytes, int]]


@dataclass(frozen=True)
class HostPath:
    path: str
    kind: str  # hostPath.type: "", File, FileOrCreate, Directory, DirectoryOrCreate, ...


@dataclass(frozen=True)
class EmptyDir:
    pass


VolumeSource = VolumeFiles | HostPath | EmptyDir


@dataclass(frozen=True)
class Mount:
    volume: str
    target: str
    read_only: bool
    sub_path: str = ""


@dataclass(frozen=True)
class Volumes:
    sources: dict[str, VolumeSource]
    mounts: tuple[Mount, ...]


def _items(
    data: Mapping[str, bytes], items: Sequence[Mapping[str, Any]] | None, mode: int, where: str
) -> dict[str, tuple[bytes, int]]:
    if not items:
        return {key: (value, mode) for key, value in data.items()}
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        key = str(item.get("key") or "")
        if key not in data:
            raise VolumeError(f"{where}: key {key!r} not found")
        files[str(item.get("path") or key)] = (data[key], int(item.get("mode") or mode))
    return files


def _object_files(
    kind: str, source: Mapping[str, Any], namespace: str, lookup: DataLookup, mode: int, where: str
) -> dict[str, tuple[bytes, int]]:
    name = str(source.get("name") or source.get("secretName") or "")
    data = lookup(namespace, name)
    if data is None:
        if source.get("optional"):
            return {}
        raise VolumeError(f'{where}: {kind} "{name}" not found')
    return _items(data, source.get("items"), mode, where)


def pod_volumes(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    facts: PodFacts,
    configmaps: DataLookup,
    secrets: DataLookup,
    token: TokenSource,
) -> Volumes:
    """The volumes `container` mounts, with the content of the ones the kubelet writes (Secrets, ConfigMaps,
    the projected service-account token, CA and namespace)."""
    meta = pod.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    account = str((pod.get("spec") or {}).get("serviceAccountName") or "default")
    volumes = {
        str(v.get("name")): v for v in (pod.get("spec") or {}).get("volumes") or [] if isinstance(v, dict)
    }
    sources: dict[str, VolumeSource] = {}
    mounts: list[Mount] = []
    for index, mount in enumerate(container.get("volumeMounts") or []):
        name = str(mount.get("name") or "")
        where = f"volumeMounts[{index}] ({name})"
        volume = volumes.get(name)
        if volume is None:
            raise VolumeError(f"{where}: no volume {name!r} in spec.volumes")
        mounts.append(
            Mount(
                name,
                str(mount.get("mountPath") or ""),
                bool(mount.get("readOnly")),
                str(mount.get("subPath") or ""),
            )
        )
        if name in sources:
            continue
        vwhere = f"spec.volumes[{name}]"
        if "emptyDir" in volume:
            sources[name] = EmptyDir()
        elif "hostPath" in volume:
            host = volume["hostPath"] or {}
            sources[name] = HostPath(str(host.get("path") or ""), str(host.get("type") or ""))
        elif "secret" in volume:
            src = volume["secret"] or {}
            mode = int(src.get("defaultMode") or DEFAULT_FILE_MODE)
            sources[name] = VolumeFiles(_object_files("secret", src, namespace, secrets, mode, vwhere))
        elif "configMap" in volume:
            src = volume["configMap"] or {}
            mode = int(src.get("defaultMode") or DEFAULT_FILE_MODE)
            sources[name] = VolumeFiles(_object_files("configmap", src, namespace, configmaps, mode, vwhere))
        elif "projected" in volume:
            projected = volume["projected"] or {}
            mode = int(projected.get("defaultMode") or DEFAULT_FILE_MODE)
            files: dict[str, tuple[bytes, int]] = {}
            for part in projected.get("sources") or []:
                if "serviceAccountToken" in part:
                    tok = part["serviceAccountToken"] or {}
                    audiences = [str(tok["audience"])] if tok.get("audience") else []
                    value = token(account, audiences, int(tok.get("expirationSeconds") or 3600))
                    files[str(tok.get("path") or "token")] = (value.encode(), mode)
                elif "configMap" in part:
                    files |= _object_files(
                        "configmap", part["configMap"], namespace, configmaps, mode, vwhere
                    )
                elif "secret" in part:
                    files |= _object_files("secret", part["secret"], namespace, secrets, mode, vwhere)
                elif "downwardAPI" in part:
                    for item in (part["downwardAPI"] or {}).get("items") or []:
                        ref = str((item.get("fieldRef") or {}).get("fieldPath") or "")
                        files[str(item.get("path"))] = (field_ref(pod, ref, facts).encode(), mode)
            sources[name] = VolumeFiles(files)
        else:
            kinds = sorted(k for k in volume if k != "name")
            raise VolumeError(f"{vwhere}: volume type {kinds} is not supported by the lab kubelet")
    return Volumes(sources, tuple(mounts))


def decode_secret(obj: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's data (base64) and stringData, as bytes per key."""
    data = {k: base64.b64decode(str(v)) for k, v in (obj.get("data") or {}).items()}
    data |= {k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()}
    return data


def configmap_data(obj: Mapping[str, Any]) -> dict[str, bytes]:
    data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    data |= {k: base64.b64decode(str(v)) for k, v in (obj.get("binaryData") or {}).items()}
    return data


# ---- privileges -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Privileges:
    uid: int
    gid: int
    groups: tuple[int, ...]
    capabilities: tuple[str, ...]  # upper case, without CAP_
    no_new_privs: bool
    privileged: bool = False


def privileges(pod: Mapping[str, Any], container: Mapping[str, Any]) -> Privileges:
    """The user, groups and capabilities the runtime would give the container (pod securityContext, then the
    container's)."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = container.get("securityContext") or {}

    def pick(key: str, default: int) -> int:
        value = sc.get(key, pod_sc.get(key))
        return int(value) if value is not None else default

    uid = pick("runAsUser", 0)
    gid = pick("runAsGroup", 0)
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) and uid == 0:
        raise ContainerConfigError(
            "securityContext.runAsNonRoot: container's runAsUser breaks non-root policy"
        )
    groups = [g for g in (pod_sc.get("fsGroup"), *(pod_sc.get("supplementalGroups") or [])) if g is not None]
    caps = (sc.get("capabilities") or {}) if isinstance(sc.get("capabilities"), dict) else {}
    drop = {str(c).upper().removeprefix("CAP_") for c in caps.get("drop") or []}
    add = [str(c).upper().removeprefix("CAP_") for c in caps.get("add") or []]
    granted = [] if "ALL" in drop else [c for c in DEFAULT_CAPABILITIES if c not in drop]
    granted += [c for c in add if c not in granted]
    return Privileges(
        uid=uid,
        gid=gid,
        groups=tuple(int(g) for g in groups),
        capabilities=tuple(granted),
        no_new_privs=sc.get("allowPrivilegeEscalation") is False,
        privileged=bool(sc.get("privileged")),
    )


def setpriv_argv(priv: Privileges) -> list[str]:
    """util-linux setpriv's flags for `priv` (nothing to change for a privileged container)."""
    if priv.privileged:
        return []
    caps = "".join(f",+{c.lower()}" for c in priv.capabilities)
    argv = ["setpriv", "--reuid", str(priv.uid), "--regid", str(priv.gid)]
    argv += ["--groups", ",".join(map(str, priv.groups))] if priv.groups else ["--clear-groups"]
    argv += ["--bounding-set", f"-all{caps}", "--inh-caps", f"-all{caps}"]
    if priv.uid != 0 and priv.capabilities:
        # A non-root process keeps capabilities across exec only as ambient ones.
        argv += ["--ambient-caps", caps.lstrip(",")]
    if priv.no_new_privs:
        argv.append("--no-new-privs")
    return [*argv, "--"]


@dataclass(frozen=True)
class ContainerPlan:
    argv: list[str]
    env: dict[str, str]
    volumes: Volumes
    privileges: Privileges
    host_network: bool
    warnings: tuple[str, ...] = field(default=())
