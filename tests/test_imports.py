"""The package is built in floors: no module imports one that (directly or not) imports it back.

Why: an import circle makes the import order matter (a module half-initialised when another asks
for it), hides which module owns a rule, and forces lazy imports to dodge it. The graph is read
from the source (every ``import``, in functions too, except the ``if TYPE_CHECKING:`` blocks that
only name types), so a lazy import cannot hide a circle; and every module is imported alone in a
fresh interpreter, so none depends on another having been imported first.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest


REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("hinterval", "tune")


def modules() -> Dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node except those inside ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph(mods: Dict[str, Path]) -> Dict[str, Set[str]]:
    """module -> the project modules it imports (resolved to the deepest existing module)."""
    graph: Dict[str, Set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_nodes(ast.parse(path.read_text())):
            targets: List[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import circle as a path ``[a, b, ..., a]``, or ``None``."""
    state: Dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph(modules()))
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_hinterval_imports_no_ray():
    graph_sources = [p for m, p in modules().items() if m.startswith("hinterval")]
    for path in graph_sources:
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "ray" for a in node.names), path
            if isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] != "ray", path


_IMPORT_EACH = """
import importlib, sys
failures = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("hinterval", "tune")]:
        del sys.modules[loaded]  # each module first, with no other project module imported before it
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - reported below
        failures.append(f"{name}: {type(exc).__name__}: {exc}")
print("\\n".join(failures))
sys.exit(1 if failures else 0)
"""


@pytest.mark.slow
def test_every_module_imports_alone_in_a_fresh_interpreter():
    """One fresh interpreter; before each module the project's modules are forgotten, so each is
    imported first (third-party packages such as torch stay loaded: they are not ours to order)."""
    entry_points = ("hinterval.__main__",)  # importing it runs the command line
    names = sorted(m for m in modules() if m not in entry_points)
    done = subprocess.run([sys.executable, "-c", _IMPORT_EACH, *names], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
