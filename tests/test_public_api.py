"""The product (``hinterval/`` and ``tune/``) uses only the public API of its libraries.

A name with one leading underscore (``x._name``, ``module._private``) is private to the library
that defines it: its next release may rename or drop it without notice. This test parses every
module and fails on

* an attribute ``x._name`` unless ``x`` is ``self``/``cls``/``super()`` or one of our own modules
  or classes; on ``self``/``cls``/``super()`` when ``_name`` belongs to a third-party base class
  (read, assigned or overridden);
* ``getattr``/``setattr``/``hasattr``/``delattr`` with such a name on such an object;
* an import of a private module or name from another package, and a private module named in a
  string (``logging.getLogger("lib._internal")``, ``importlib.import_module``).

Nothing is exempt. ``os._exit`` and ``sys._current_frames`` are public: the Python library
reference documents them under these names.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
OWN_PACKAGES = ("hinterval", "tune")
#: standard-library functions documented with a leading underscore (docs.python.org: os, sys)
DOCUMENTED = {("os", "_exit"), ("sys", "_current_frames")}
#: calls whose first argument names a module or logger
MODULE_NAMING_CALLS = {"getLogger", "import_module", "__import__"}
ATTR_CALLS = {"getattr", "setattr", "hasattr", "delattr"}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_own(dotted: str) -> bool:
    return dotted.split(".")[0] in OWN_PACKAGES


def private_part(dotted: str) -> bool:
    return any(is_private(part) for part in dotted.split("."))


def sources() -> List[Path]:
    return sorted(p for package in OWN_PACKAGES for p in (ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(tree: ast.Module, module: str) -> Dict[str, str]:
    """Every name an import binds in the module (at any depth), to the dotted path it stands for."""
    names: Dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level] if node.level else []
                base = ".".join(package + ([base] if base else []))
            for a in node.names:
                names[a.asname or a.name] = f"{base}.{a.name}"
    return names


def dotted(expr: ast.expr) -> Optional[str]:
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        inner = dotted(expr.value)
        return None if inner is None else f"{inner}.{expr.attr}"
    return None


@lru_cache(maxsize=None)
def parsed(module: str) -> Optional[ast.Module]:
    path = ROOT / Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.exists():
            return ast.parse(candidate.read_text())
    return None


def load(dotted_path: str) -> object:
    """The object a dotted path names, importing its longest importable module prefix."""
    parts = dotted_path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted_path)


def third_party_bases(cls_node: ast.ClassDef, module: str, tree: ast.Module) -> List[type]:
    """The third-party classes a class of ours derives from, through our own classes."""
    names = imported_names(tree, module)
    local = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    found: List[type] = []
    for base in cls_node.bases:
        base = base.value if isinstance(base, ast.Subscript) else base
        path = dotted(base)
        if path is None:
            continue
        head, _, rest = path.partition(".")
        if head in local and not rest:
            found += third_party_bases(local[head], module, tree)
            continue
        full = names.get(head, f"builtins.{head}") + (f".{rest}" if rest else "")
        if is_own(full):
            owner, _, cls_name = full.rpartition(".")
            owner_tree = parsed(owner)
            node = next((n for n in owner_tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name), None) \
                if owner_tree else None
            if node is not None:
                found += third_party_bases(node, owner, owner_tree)
            continue
        obj = load(full)
        if isinstance(obj, type):
            found.append(obj)
    return found


def private_names_of(classes: List[type]) -> Set[str]:
    """Private attributes of third-party classes: defined on them, or set on ``self`` in their code."""
    names: Set[str] = set()
    for cls in {k for c in classes for k in c.__mro__ if k is not object}:
        names |= {n for n in vars(cls) if is_private(n)}
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        except (OSError, TypeError, SyntaxError):
            continue  # compiled classes: vars() has them all
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                  and n.value.id == "self" and is_private(n.attr)}
    return names


def is_self(expr: ast.expr) -> bool:
    return (isinstance(expr, ast.Name) and expr.id in ("self", "cls")) or (
        isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == "super")


def violations(source: str, module: str) -> Iterator[str]:
    """Each use of a private API of another package in one module's source, as ``line: code``."""
    tree = ast.parse(source)
    names = imported_names(tree, module)
    own_names = {n for n, path in names.items() if is_own(path)}
    own_names |= {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}

    def owned(expr: ast.expr) -> bool:
        path = dotted(expr)
        if path is not None:
            return path.split(".")[0] in own_names
        # sys.modules.get("hinterval.cli") / sys.modules["hinterval.cli"]
        key = None
        if isinstance(expr, ast.Call) and dotted(expr.func) == "sys.modules.get" and expr.args:
            key = expr.args[0]
        elif isinstance(expr, ast.Subscript) and dotted(expr.value) == "sys.modules":
            key = expr.slice
        return isinstance(key, ast.Constant) and isinstance(key.value, str) and is_own(key.value)

    def third_party(expr: ast.expr, attr: str) -> bool:
        if is_self(expr) or owned(expr):
            return False
        path = dotted(expr)
        return not (path is not None and (names.get(path.split(".")[0], path), attr) in DOCUMENTED)

    def where(node: ast.AST) -> str:
        return f"{node.lineno}: {ast.unparse(node)}"

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (where(node) for a in node.names if not is_own(a.name) and private_part(a.name))
        elif isinstance(node, ast.ImportFrom) and not node.level and not is_own(node.module or ""):
            if private_part(node.module or "") or any(is_private(a.name) for a in node.names):
                yield where(node)
        elif isinstance(node, ast.Attribute) and is_private(node.attr) and third_party(node.value, node.attr):
            yield where(node)
        elif isinstance(node, ast.Call):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            first = node.args[0] if node.args else None
            if func in MODULE_NAMING_CALLS and isinstance(first, ast.Constant) and isinstance(first.value, str):
                if not is_own(first.value) and private_part(first.value):
                    yield where(node)
            elif func in ATTR_CALLS and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                    and isinstance(node.args[1].value, str) and is_private(node.args[1].value) \
                    and third_party(node.args[0], node.args[1].value):
                yield where(node)

    # our subclasses of third-party classes: their private names, read, written or overridden
    for cls_node in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        theirs = private_names_of(third_party_bases(cls_node, module, tree))
        for node in ast.walk(cls_node):
            if isinstance(node, ast.Attribute) and is_self(node.value) and node.attr in theirs:
                yield where(node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in theirs \
                    and node in cls_node.body:
                yield f"{node.lineno}: def {node.name} (overrides a private method of a base class)"
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node in cls_node.body:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                yield from (f"{node.lineno}: {t.id} = ... (a private class attribute of a base class)"
                            for t in targets if isinstance(t, ast.Name) and t.id in theirs)


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_api_of_another_package(path):
    found = list(violations(path.read_text(), module_name(path)))
    assert not found, f"{path.relative_to(ROOT)} uses private API of another package:\n" + "\n".join(found)


@pytest.mark.parametrize("source", [
    "import optuna.storages._rdb.models",
    "from optuna.storages._rdb import models",
    "from torch.utils.tensorboard.writer import _something",
    "def f(writer):\n    return writer._get_file_writer()",
    "class A:\n    def f(self):\n        return self.writer._get_file_writer()",
    "import logging\nlogging.getLogger('ray.train._internal.storage')",
    "def f(trial):\n    return getattr(trial, '_trial_id')",
    "import argparse\nclass P(argparse.ArgumentParser):\n    def f(self):\n        self._negative_number_matcher = None",
    "import argparse\nclass P(argparse.ArgumentParser):\n    def _parse_optional(self, s):\n        return None",
    "from ray.tune.search.optuna import OptunaSearch\nclass S(OptunaSearch):\n    def f(self):\n        return self._ot_trials",
    "from ray.tune.schedulers import ASHAScheduler\nclass S(ASHAScheduler):\n    def f(self):\n        return super()._trial_info",
    "from torch import nn\nclass M(nn.Module):\n    def f(self):\n        return self._parameters",
    "import numpy\nnumpy._core",
])
def test_the_check_finds_private_use(source):
    assert list(violations(source, "hinterval.example")), source


@pytest.mark.parametrize("source", [
    "class A:\n    def __init__(self):\n        self._mine = 1\n    def f(self):\n        return self._mine",
    "from hinterval import cli\ncli._NEGATIVE_NUMBER",
    "import sys\ngetattr(sys.modules.get('hinterval.cli'), '_RUN', None)",
    "import os\nos._exit(1)",
    "from torch import nn\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self._cache = None",
    "from __future__ import annotations",
])
def test_the_check_passes_our_own_private_names(source):
    assert not list(violations(source, "hinterval.example")), source


def test_installed_libraries_are_inside_the_declared_ranges():
    """The suite passing says something about a version only if that version is inside the ranges."""
    import importlib.metadata

    from packaging.requirements import Requirement

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    outside = []
    for requirement in map(Requirement, declared):
        if requirement.name == project["name"]:
            continue
        assert not list(requirement.specifier.filter(["999999"])), f"{requirement} has no upper bound"
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an extra that is not installed here
        if not requirement.specifier.contains(version, prereleases=True):
            outside.append(f"{requirement.name} {version} (declared {requirement.specifier})")
    assert not outside, "installed outside pyproject.toml's ranges: " + ", ".join(outside)
