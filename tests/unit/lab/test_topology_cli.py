"""The `python -m lab` command line: option placement, `--` handling, render-exec output (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab.cli import main
from lab.topology import load_topology

TOPOLOGIES = Path(__file__).resolve().parents[3] / "lab" / "topologies"


def test_render_exec_reproduces_the_files_exec_lines(capsys):
    assert main(["render-exec", "--topology", str(TOPOLOGIES / "mini.clab.yml")]) == 0
    rendered = yaml.safe_load(capsys.readouterr().out)
    topology = load_topology(TOPOLOGIES / "mini.clab.yml")
    assert set(rendered) == {"node1", "node2"}
    for name, body in rendered.items():
        assert body["exec"] == list(topology.node(name).exec)


@pytest.mark.parametrize("before", [True, False])
def test_topology_option_before_or_after_the_subcommand(capsys, before):
    topo = ["--topology", str(TOPOLOGIES / "mini.clab.yml")]
    argv = [*topo, "render-exec"] if before else ["render-exec", *topo]
    assert main(argv) == 0
    assert "node3" not in capsys.readouterr().out  # the mini lab, not the default


def test_bad_topology_is_a_clean_error(tmp_path, capsys):
    bad = tmp_path / "bad.clab.yml"
    bad.write_text("name: x\nprefix: x\ntopology:\n  nodes:\n    a: {kind: linux}\n  links: 5\n")
    assert main(["status", "--topology", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lab: error: ") and "topology.links: expected a list" in err


def test_exec_needs_a_command(capsys):
    assert main(["exec", "node1", "--topology", str(TOPOLOGIES / "mini.clab.yml")]) == 2
    assert "give a command after --" in capsys.readouterr().err
