"""What ships: the image and the runtime install hold the components and their shell, never the lab.

The Dockerfile's build context is staged exactly as its COPY lines say, the wheel is built from it as the
image's `pip install .` builds it, and that wheel is installed with its dependencies into a fresh virtualenv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNTIME = {"common", "k8s", "controller", "speaker", "dataplane"}
METADATA = {"pyproject.toml", "constraints.txt", "README.md"}

pytestmark = pytest.mark.timeout(600)


def dockerfile_copies() -> list[str]:
    """The sources of every COPY/ADD instruction (a build context is only what these name)."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    sources: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        rest = " ".join(w for w in words[1:] if not w.startswith("--"))
        args = json.loads(rest) if rest.startswith("[") else rest.split()
        sources += args[:-1]
    return sources


def test_the_image_copies_the_runtime_and_no_lab() -> None:
    sources = dockerfile_copies()
    assert set(sources) == RUNTIME | METADATA
    assert not any(s in (".", "./", "*") or s.startswith("lab") for s in sources)


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's install, outside a container: the Dockerfile's context, its wheel, a fresh virtualenv."""
    tmp = tmp_path_factory.mktemp("packaging")
    context = tmp / "context"
    context.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for source in dockerfile_copies():
        if (REPO / source).is_dir():
            shutil.copytree(REPO / source, context / source, ignore=ignore)
        else:
            shutil.copy2(REPO / source, context / source)
    wheels = tmp / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # No build isolation: the venv's setuptools builds it, offline.
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(context)]
    subprocess.run(build, check=True, timeout=300)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    [wheel] = wheels.glob("ironlb-*.whl")
    # The wheel with its declared dependencies, resolved as `pip install .` resolves them in the image.
    subprocess.run(
        [
            *pip,
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-compile",
            "-c",
            str(REPO / "constraints.txt"),
            str(wheel),
        ],
        check=True,
        timeout=480,
    )
    return venv


def test_the_runtime_wheel_holds_no_lab_code(runtime_venv: Path) -> None:
    [wheel] = (runtime_venv.parent / "wheels").glob("ironlb-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist() if not name.startswith("ironlb-")}
    assert top_level == RUNTIME


def test_the_runtime_install_pulls_no_cryptography_and_has_no_lab(runtime_venv: Path, tmp_path: Path) -> None:
    python = str(runtime_venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # From an empty directory: nothing of the checkout is importable by accident.
        return subprocess.run(
            [python, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )

    listing = (
        "import importlib.metadata as m; print(*(d.metadata['Name'].lower() for d in m.distributions()))"
    )
    installed = run("-c", listing)
    assert installed.returncode == 0, installed.stderr
    names = set(installed.stdout.split())
    assert {"ironlb", "kopf", "kubernetes"} <= names
    assert "cryptography" not in names and "ironlb-lab" not in names
    lab = run("-m", "lab", "--help")
    assert lab.returncode != 0 and "No module named lab" in lab.stderr
    controller = run("-m", "controller", "--help")
    assert controller.returncode == 0, controller.stderr
    assert (
        run(
            "-c", "import k8s.client, k8s.informer, k8s.leader, k8s.events, k8s.serving, common.config"
        ).returncode
        == 0
    )
