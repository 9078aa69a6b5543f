"""`python -m lab.podinit SPEC.json`: the container runtime's last step, run by the lab kubelet inside the
pod's network namespace and a private mount namespace (`ip netns exec NS unshare --mount --propagation
private ...`).

It mounts the container's volumes where the container expects them (the service account's token at
/var/run/secrets/kubernetes.io/serviceaccount, Secrets, emptyDirs, hostPaths), then executes the container's
command through setpriv with its user, groups and capabilities. A mount point whose directory does not exist
on the host (/etc/ml_secret_key) is made in an overlay of its nearest existing parent, private to this mount
namespace: the host's own directories are never written. Everything happens in this namespace, which dies with
the container.

The lab's image is the host's own files (this repository, its virtualenv, the interpreter). A volume mounted
on one of their ancestors (an emptyDir on /tmp, with the repository cloned under /tmp) would hide them, where
a real container's volume never hides its image; each hidden image path is bound back over the volume.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"mount {' '.join(args)}: {result.stderr.strip()}")


def _bind_fd(fd: int, target: Path) -> None:
    # --no-canonicalize: mount(8) would resolve /proc/PID/fd/N to its path name, which an earlier mount may
    # hide now; the kernel follows the descriptor itself to the directory opened before any mount.
    _mount("--no-canonicalize", "--bind", f"/proc/{os.getpid()}/fd/{fd}", str(target))


def _existing_ancestor(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def _is_under(path: Path, ancestor: Path) -> bool:
    return path != ancestor and path.is_relative_to(ancestor)


def prepare_mounts(scratch: Path, mounts: list[dict[str, Any]], image: list[str] | None = None) -> None:
    # The sources are opened before anything is mounted: a mount on /tmp or /run must not hide a source.
    opened = [(os.open(m["source"], os.O_PATH), m) for m in mounts]
    image_paths = sorted(
        {Path(os.path.realpath(p)) for p in image or [] if Path(p).is_dir()}, key=lambda p: len(p.parts)
    )
    kept: list[Path] = []
    for path in image_paths:
        if not any(_is_under(path, outer) or path == outer for outer in kept):
            kept.append(path)
    image_fds = [(os.open(path, os.O_PATH), path) for path in kept]
    _mount("-t", "tmpfs", "-o", "mode=0700", "ilb-podinit", str(scratch))
    overlaid: set[Path] = set()
    targets: list[tuple[int, Path, dict[str, Any]]] = []
    for fd, mount in opened:
        target = Path(os.path.realpath(mount["target"]))
        if not target.exists():
            parent = _existing_ancestor(target)
            if parent == Path("/"):
                raise OSError(f"{target}: refusing to overlay / for a mount point")
            if parent not in overlaid:
                layer = scratch / f"layer{len(overlaid)}"
                (layer / "upper").mkdir(parents=True)
                (layer / "work").mkdir()
                options = f"lowerdir={parent},upperdir={layer / 'upper'},workdir={layer / 'work'}"
                _mount("-t", "overlay", "-o", options, "ilb-podinit", str(parent))
                overlaid.add(parent)
            if Path(mount["source"]).is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
        targets.append((fd, target, mount))
    for fd, target, mount in targets:
        _bind_fd(fd, target)
        if mount.get("read_only"):
            _mount("-o", "remount,bind,ro", str(target))
        os.close(fd)
    for fd, path in image_fds:
        hiding = [target for _, target, _ in targets if _is_under(path, target)]
        if hiding:
            try:
                # The mount point lives in the pod's own volume (an emptyDir's directory), gone with the pod.
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OSError(f"the volume at {hiding[-1]} hides the lab's image at {path}: {exc}") from exc
            _bind_fd(fd, path)
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lab.podinit SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text())
    try:
        prepare_mounts(Path(spec["scratch"]), spec["mounts"], spec.get("image"))
    except OSError as exc:
        print(f"lab.podinit: error: {exc}", file=sys.stderr, flush=True)
        return 126
    os.chdir("/")
    command = [*spec["setpriv"], *spec["argv"]]
    try:
        os.execvpe(command[0], command, spec["env"])
    except OSError as exc:
        print(f"lab.podinit: cannot run {command[0]}: {exc}", file=sys.stderr, flush=True)
        return 127


if __name__ == "__main__":
    sys.exit(main())
