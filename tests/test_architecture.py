"""The floors of the house, proved from the source: imports only point down, and nothing goes in circles.

Every module of every package is parsed (AST, nothing imported) and each import, also one inside a
function, becomes an edge. Imports under ``if TYPE_CHECKING:`` are type hints only and are left out.
The rules (docs/architecture.md):
- the contract (``mediqa/*.py`` outside ``mediqa/cli``) imports no other package of ours;
- ``engines`` and ``export`` import only the contract (and themselves);
- ``training`` imports the contract, the libraries and the agent's DICOM reader (``agent.dicom``);
- ``agent`` imports neither ``training`` nor ``export`` (the running agent never loads torch);
- ``backfill`` (archive scoring) imports the contract, the engines and the agent, never ``training``;
- nothing but the CLI layer itself imports ``mediqa.cli`` (the entry point is ``mediqa.cli.main:main``);
- no circles between modules, nor between the folders (sub-packages) of one layer.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOT = "mediqa"


def layer_folders(repo: Path = REPO) -> dict[str, Path]:
    """The packaging rule of setup.py: a top-level folder X/ with an __init__.py installs as mediqa.X."""
    found = {ROOT: repo / ROOT}
    for path in sorted(repo.iterdir()):
        if (path / "__init__.py").is_file() and path.name != ROOT:
            found[f"{ROOT}.{path.name}"] = path
    return found


def module_files(repo: Path = REPO) -> dict[str, Path]:
    """Dotted module name -> file, for every module the project installs."""
    out: dict[str, Path] = {}
    for package, folder in layer_folders(repo).items():
        for file in sorted(folder.rglob("*.py")):
            rel = file.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = file
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(source: str, modules: Iterable[str]) -> set[str]:
    """Our modules imported by ``source`` (function-level imports count; TYPE_CHECKING ones do not)."""
    known = set(modules)
    tree = ast.parse(source)
    hints = _type_checking_lines(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in hints:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from pkg import mod`` imports the module pkg.mod when there is one, else a name of pkg.
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                     for a in node.names]
        else:
            continue
        found.update(n for n in names if n == ROOT or n.startswith(ROOT + "."))
    return {n for n in found if n in known}


def import_graph(repo: Path = REPO) -> dict[str, set[str]]:
    files = module_files(repo)
    return {name: imports_of(path.read_text(encoding="utf-8"), files) - {name} for name, path in files.items()}


def floor_of(module: str) -> str:
    """contract, cli, or the layer (agent, engines, training, export, configs)."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] not in LAYER_NAMES and parts[1] != "cli":
        return "contract"
    return parts[1]


LAYER_NAMES = {name.split(".")[1] for name in layer_folders() if name != ROOT}

# What each floor may import besides itself. The CLI may import everything.
ALLOWED: Mapping[str, tuple[str, ...]] = {
    "contract": ("contract",),
    "engines": ("contract",),
    "export": ("contract",),
    "configs": (),
    "agent": ("contract", "engines"),
    "training": ("contract", "engines", "export", "agent.dicom"),
    "backfill": ("contract", "engines", "agent"),
    "cli": ("contract", "engines", "export", "agent", "training", "configs", "backfill"),
}


def violations(graph: Mapping[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in sorted(graph.items()):
        floor = floor_of(module)
        for target in sorted(targets):
            to = floor_of(target)
            if to == floor:
                continue
            allowed = ALLOWED.get(floor, ())
            sub = ".".join(target.split(".")[1:3])  # e.g. agent.dicom
            if to in allowed or sub in allowed:
                continue
            bad.append(f"{module} ({floor}) imports {target} ({to})")
    return bad


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph.get(start, ())))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def unit_graph(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """The graph between the units of one layer (its top-level modules and sub-packages), e.g.
    ``mediqa.engines.fp16`` and ``mediqa.engines.cache``: a circle between two folders is a circle too."""
    def unit(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:3]) if floor_of(module) != "contract" else ".".join(parts[:2])

    out: dict[str, set[str]] = {}
    for module, targets in graph.items():
        out.setdefault(unit(module), set()).update(unit(t) for t in targets if unit(t) != unit(module))
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_every_layer_is_found_by_the_packaging_rule():
    assert set(LAYER_NAMES) >= {"agent", "engines", "training", "export", "configs", "backfill"}
    assert "tests" not in LAYER_NAMES and "scripts" not in LAYER_NAMES


@pytest.mark.slow
def test_imports_only_point_down(graph):
    assert violations(graph) == []


def test_nothing_but_the_cli_imports_the_cli(graph):
    importers = sorted(m for m, targets in graph.items() if floor_of(m) != "cli"
                       and any(floor_of(t) == "cli" for t in targets))
    assert importers == []


def test_no_import_circles(graph):
    assert cycles(graph) == []


def test_no_circles_between_folders(graph):
    assert cycles(unit_graph(graph)) == []


def test_the_checks_can_fail():
    """The checker itself: a planted upward import, a CLI import and a circle are all caught."""
    planted = {
        "mediqa.errors": {"mediqa.agent.config"},  # the contract reaching up
        "mediqa.engines.x": {"mediqa.agent.service"},  # a library importing the daemon
        "mediqa.agent.a": {"mediqa.cli.main", "mediqa.agent.b"},  # the daemon importing the CLI...
        "mediqa.agent.b": {"mediqa.agent.a"},  # ...and a circle
        "mediqa.training.t": {"mediqa.agent.dicom.index", "mediqa.agent.scoring.base"},
    }
    found = violations(planted)
    assert any("mediqa.errors (contract)" in v for v in found)
    assert any("mediqa.engines.x" in v for v in found)
    assert any("mediqa.cli.main" in v for v in found)
    assert any("mediqa.agent.scoring.base" in v for v in found)
    assert not any("mediqa.agent.dicom.index" in v for v in found)
    assert cycles(planted) == [["mediqa.agent.a", "mediqa.agent.b"]]
    folders = {"mediqa.engines.fp16": {"mediqa.engines.cache.files"},
               "mediqa.engines.cache.key": {"mediqa.engines.fp16"}}
    assert cycles(folders) == [] and cycles(unit_graph(folders)) == [["mediqa.engines.cache", "mediqa.engines.fp16"]]


def test_type_checking_imports_are_hints_not_edges():
    src = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mediqa.agent.config import AgentConfig\n"
    assert imports_of(src, ["mediqa.agent.config"]) == set()
    assert imports_of("def f():\n    import mediqa.agent.config\n", ["mediqa.agent.config"]) == {"mediqa.agent.config"}
