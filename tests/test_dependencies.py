"""pyproject declares every third-party package forgather/ imports, and nothing it does not."""

from __future__ import annotations

import ast
import re
import sys
import tomllib

from .conftest import REPO

# Import name → distribution name, where they differ.
DISTRIBUTION = {"yaml": "pyyaml", "pynvml": "nvidia-ml-py"}
# Modules that need another distribution at import time (SummaryWriter imports tensorboard).
IMPORTS_ALSO = {"torch.utils.tensorboard": "tensorboard"}
# Imported only behind a check that it is installed (attn_implementation flash_attention_2 asks for it).
OPTIONAL = {"flash_attn"}


def _declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {re.split(r"[<>=!~ \[;]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside a `try` whose handler catches ImportError (an optional extra used when present)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try) and any(
                h.type is not None and any(n in ast.unparse(h.type) for n in ("ImportError", "ModuleNotFoundError"))
                for h in node.handlers):
            return True
    return False


def third_party_imports() -> dict[str, str]:
    """Top-level package of every unguarded non-stdlib import in forgather/, with one place it is imported."""
    found: dict[str, str] = {}
    for path in sorted((REPO / "forgather").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "forgather" or _guarded(node, parents):
                    continue
                found.setdefault(top, f"{path.relative_to(REPO)}:{node.lineno}")
                if name in IMPORTS_ALSO:
                    found.setdefault(IMPORTS_ALSO[name], f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_every_third_party_import_is_a_declared_dependency():
    declared = _declared()
    missing = {top: where for top, where in third_party_imports().items()
               if top not in OPTIONAL and DISTRIBUTION.get(top, top).lower() not in declared}
    assert not missing, f"imported but not in pyproject dependencies: {missing}"


def test_every_declared_dependency_is_imported():
    imported = {DISTRIBUTION.get(top, top).lower() for top in third_party_imports()}
    unused = _declared() - imported
    assert not unused, f"declared in pyproject but imported nowhere in forgather/: {sorted(unused)}"


def test_no_hf_extra_and_no_torchdata():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "hf" not in project.get("optional-dependencies", {})
    assert "torchdata" not in _declared() and "torchdata" not in third_party_imports()
