"""Each shared helper has one home, below every layer that uses it."""

from __future__ import annotations

import ast
from pathlib import Path

import forgather

PACKAGE = Path(forgather.__file__).parent


def _modules() -> dict[str, ast.Module]:
    return {str(p.relative_to(PACKAGE)): ast.parse(p.read_text(encoding="utf-8")) for p in PACKAGE.rglob("*.py")}


def _imported(path: str, tree: ast.Module) -> set[str]:
    """Absolute names of the forgather modules a file imports (relative imports resolved)."""
    package = ["forgather", *Path(path).parent.parts]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_layers_below_training_never_import_it():
    below = ("evaluation.py", "data/", "models/", "dist/", "checkpoint/")
    offenders = {path: sorted(n for n in _imported(path, tree) if n.startswith("forgather.train"))
                 for path, tree in _modules().items() if path.startswith(below)}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_barrier_sum_and_the_ignored_label_are_each_defined_once():
    barriers, sums, ignored = [], [], []
    for path, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and "barrier" in node.name:
                barriers.append(f"{path}:{node.name}")
            if isinstance(node, ast.FunctionDef) and node.name == "all_reduce_sum":
                sums.append(path)
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.UnaryOp) \
                    and getattr(node.value.operand, "value", None) == 100:
                ignored.append(f"{path}:{node.targets[0].id}")
    assert barriers == ["dist/sync.py:barrier"] and sums == ["dist/sync.py"]
    assert ignored == ["data/packing.py:IGNORE_INDEX"]
