"""Where the lab kubelet writes a container's output and how the API server reads it back (`kubectl logs`).

The layout is the CRI's `/var/log/pods`: `<dir>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log`, one
file per run of the container, so `--previous` is the file before the current one. The lab has no kubelet API
on port 10250 to proxy to; kubelets and the API server run on one machine and share this directory instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def pod_dir(root: Path, namespace: str, pod: str, uid: str) -> Path:
    return root / f"{namespace}_{pod}_{uid}"


def container_log(root: Path, namespace: str, pod: str, uid: str, container: str, restarts: int) -> Path:
    return pod_dir(root, namespace, pod, uid) / container / f"{restarts}.log"


@dataclass(frozen=True)
class LogQuery:
    """The `pods/log` parameters the lab serves."""

    container: str = ""
    previous: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    follow: bool = False


def tail(data: bytes, query: LogQuery) -> bytes:
    """The part of a log `query` asks for: the last tailLines lines, then at most limitBytes."""
    if query.tail_lines is not None:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[-query.tail_lines :]) if query.tail_lines > 0 else b""
    if query.limit_bytes is not None:
        data = data[: query.limit_bytes]
    return data


def newest_run(directory: Path) -> int | None:
    """The highest restart number with a log file in a container's directory."""
    runs = [int(p.stem) for p in directory.glob("*.log") if p.stem.isdigit()]
    return max(runs) if runs else None
