"""lab.podinit in a private mount namespace (root): a pod's volumes never hide the lab's image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.root


def run_container(tmp_path: Path, mounts: list[dict[str, object]], image: list[str], script: str) -> str:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    spec = {
        "scratch": str(scratch),
        "mounts": mounts,
        "image": image,
        "setpriv": [],
        "argv": ["sh", "-c", script],
        "env": {"PATH": os.environ["PATH"]},
    }
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    podinit = [sys.executable, "-m", "lab.podinit", str(spec_file)]
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", *podinit],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_an_empty_dir_over_an_image_ancestor_keeps_the_image_and_hides_the_rest(tmp_path: Path) -> None:
    """A repository cloned under /tmp, and a pod with an emptyDir on /tmp (every ironlb manifest has one): the
    container still finds its interpreter and code, as a real container finds its image's files."""
    clone = tmp_path / "clone"
    image = clone / "ironlb"
    image.mkdir(parents=True)
    (image / "marker").write_text("from the image\n")
    (clone / "beside-the-image").write_text("the host's\n")
    volume = tmp_path / "volume"
    volume.mkdir()
    script = f"cat {image}/marker; ls -A {clone}; echo written > {clone}/note"
    seen = run_container(
        tmp_path,
        [{"source": str(volume), "target": str(clone), "read_only": False}],
        [str(image), str(image / "nested")],
        script,
    )
    # The image is there; the volume's own view otherwise (the host's file beside the image is hidden).
    assert seen.splitlines() == ["from the image", "ironlb"]
    # What the container wrote went to its volume, not to the host's directory.
    assert (volume / "note").read_text() == "written\n"
    assert not (clone / "note").exists()
    assert (clone / "beside-the-image").exists()
