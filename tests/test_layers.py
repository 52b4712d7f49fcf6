"""The shape of the code: which way imports run, read from the source with `ast` (nothing is imported).

- no module imports another that (directly or through others) imports it back;
- `transport.core` imports nothing else of the project;
- `queues`, `pickup` and `agents` build on the core only, `replay` on the core and `pickup`;
- nothing but the composition root (`transport.hub`, and the command that runs it) imports the hub.

Every import counts: at module level, inside functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("transport", "agents", "queues", "pickup", "replay")

# layer → the layers it may import (besides itself)
ALLOWED = {
    "transport.core": set(),
    "queues": {"transport.core"},
    "pickup": {"transport.core"},
    "replay": {"transport.core", "pickup"},
    "agents": {"transport.core"},
    "transport": {"transport.core", "queues", "pickup", "replay"},
}
COMPOSITION_ROOT = {"transport.hub", "transport.cli"}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules `name` imports (a `from package import submodule` counts as the submodule)."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in MODULES and t != name)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> str:
    if module == "transport.core" or module.startswith("transport.core."):
        return "transport.core"
    return module.split(".")[0]


def test_the_walk_finds_the_project_and_its_imports():
    assert {"transport.hub", "transport.core.mailitem", "queues.store", "pickup.watcher", "replay.rules"} <= set(GRAPH)
    assert "queues.store" in GRAPH["transport.hub"] and "transport.core.mailitem" in GRAPH["queues.store"]
    assert "transport.core.events" in GRAPH["transport.receive"]  # `from .core import events as ev`


def test_no_module_imports_itself_back():
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycles.append(" → ".join(path[path.index(target):] + [module, target]) if target in path
                              else f"{module} → {target}")
            elif target not in state:
                visit(target, path + [module])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [])
    assert cycles == []


def test_each_layer_imports_only_what_it_builds_on():
    wrong = [f"{m} imports {t}" for m, targets in GRAPH.items() for t in targets
             if _layer(t) != _layer(m) and _layer(t) not in ALLOWED[_layer(m)]]
    assert wrong == []


def test_only_the_composition_root_imports_the_hub():
    assert sorted(m for m, targets in GRAPH.items() if "transport.hub" in targets and m not in COMPOSITION_ROOT) == []
