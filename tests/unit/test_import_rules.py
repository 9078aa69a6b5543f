"""Which package may import which, checked on every import statement of the tree (parsed, not run).

- The components (controller, speaker, dataplane) never import lab/ or one another: they share common/ (pure
  models) and k8s/ (the Kubernetes shell). k8s/ is their only way to the API: no component imports a
  Kubernetes or HTTP client library itself (the controller's kopf is its operator framework, not its client).
- The controller and lab/ are built on k8s/.
- common/ is pure: no Kubernetes client, no kopf, no network or kernel access, no subprocess.
- k8s/ serves the components: it imports none of them, and nothing of lab/.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ("controller", "speaker", "dataplane")
IO_MODULES = (
    "kopf",
    "kubernetes",
    "aiohttp",
    "pyroute2",
    "scapy",
    "subprocess",
    "socket",
    "urllib3",
    "requests",
)

# What only k8s/ may use to reach the API server.
CLIENT_LIBRARIES = ("kubernetes", "aiohttp", "urllib3", "requests")

# package -> top-level modules it must not import
FORBIDDEN: dict[str, set[str]] = {
    **{c: {"lab", *CLIENT_LIBRARIES, *(other for other in COMPONENTS if other != c)} for c in COMPONENTS},
    "common": {"lab", "k8s", *COMPONENTS, *IO_MODULES},
    "k8s": {"lab", *COMPONENTS},
}


def imported_modules(source: str, module: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, the module named `module` (a.b.c), including
    imports inside functions, relative imports and importlib.import_module("literal") calls."""
    package = module.rsplit(".", 1)[0] if "." in module else module
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                yield node.lineno, ".".join([*base, *([node.module] if node.module else [])])
            elif node.module:
                yield node.lineno, node.module
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Attribute, ast.Name))
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def imports_of(package: str, root: Path = REPO) -> Iterator[tuple[str, int, str]]:
    """(file, line, module) of every import in `package`."""
    for path in sorted((root / package).rglob("*.py")):
        relative = path.relative_to(root)
        module = ".".join(relative.with_suffix("").parts)
        for line, name in sorted(imported_modules(path.read_text(), module)):
            yield str(relative), line, name


def violations(package: str, root: Path = REPO) -> list[str]:
    return [
        f"{relative}:{line} imports {name}"
        for relative, line, name in imports_of(package, root)
        if name.split(".")[0] in FORBIDDEN[package]
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_its_layer_may(package: str) -> None:
    assert (REPO / package).is_dir()
    assert violations(package) == []


@pytest.mark.parametrize("package", ["controller", "lab"])
def test_the_controller_and_lab_are_built_on_the_shared_shell(package: str) -> None:
    """Their client, informers, Lease and Events are k8s/'s: each of those modules is imported."""
    used = {name for _, _, name in imports_of(package) if name.split(".")[0] == "k8s"}
    assert {"k8s.client", "k8s.informer"} <= used, sorted(used)
    if package == "controller":
        assert {"k8s.leader", "k8s.events", "k8s.serving", "k8s.workqueue"} <= used, sorted(used)


def test_the_checker_sees_every_kind_of_import(tmp_path: Path) -> None:
    speaker = tmp_path / "speaker"
    (speaker / "sub").mkdir(parents=True)
    (speaker / "__init__.py").write_text("")
    (speaker / "sub" / "deep.py").write_text(
        "import importlib\n"
        "from controller import allocator\n"
        "def later():\n"
        "    import lab.apiserver\n"
        "    return importlib.import_module('dataplane.model')\n"
        "from .. import election\n"  # speaker.election: allowed
        "import kubernetes.client\n"
        "from k8s.client import Client\n"  # allowed
    )
    assert violations("speaker", tmp_path) == [
        "speaker/sub/deep.py:2 imports controller",
        "speaker/sub/deep.py:4 imports lab.apiserver",
        "speaker/sub/deep.py:5 imports dataplane.model",
        "speaker/sub/deep.py:7 imports kubernetes.client",
    ]
    common = tmp_path / "common"
    common.mkdir()
    (common / "pure.py").write_text(
        "import socket\nfrom subprocess import run\nimport yaml\nfrom k8s.meta import JSON\n"
    )
    assert violations("common", tmp_path) == [
        "common/pure.py:1 imports socket",
        "common/pure.py:2 imports subprocess",
        "common/pure.py:4 imports k8s.meta",
    ]
