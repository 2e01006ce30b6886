"""The package's shape: one package per stage, dependencies one way, no circles.

The contracts live in pyproject.toml (``[tool.importlinter]``) and are checked by import-linter,
as a developer runs it (``lint-imports``); the module-level cycle check below reads the same import
graph with grimp, lazy imports inside functions included.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

from tests.helpers import REPO

STAGES = ["cli", "views", "export", "search", "space", "measure", "training", "models", "data"]
# What may stay at the top of the package besides the stages: the public API and the foundation.
TOP_LEVEL = {"__init__.py", "__main__.py", "_version.py", "errors.py", "device.py", "files.py"}


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run(
        [str(lint), "--config", str(REPO / "pyproject.toml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 kept, 0 broken" in out.stdout, out.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            if i < len(edges[node]):
                work.append((node, i + 1))
                nxt = edges[node][i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("automl", exclude_type_checking_imports=False)
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for a, b in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")]:
        graph.add_import(importer=a, imported=b)
    assert _cycles(graph) == [["p.a", "p.b", "p.c"]]


def test_the_top_of_the_package_holds_only_the_stages_and_the_foundation() -> None:
    top = REPO / "automl"
    packages = {p.name for p in top.iterdir() if (p / "__init__.py").is_file()}
    assert packages == {*STAGES, "store"}
    assert {p.name for p in top.glob("*.py")} == TOP_LEVEL
    for stage in packages:
        init = (top / stage / "__init__.py").read_text()
        # Each stage says what it offers and what it guarantees.
        assert init.startswith('"""') and "__all__" in init, stage
