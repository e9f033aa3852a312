"""Template composition: `extends:` chains, deep merge with `null` deletion, `${...}` interpolation."""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .yamlio import Origins, join_key, load_yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = Path(os.environ.get("FORGATHER_TEMPLATES", REPO_ROOT / "templates"))

_REFERENCE = re.compile(r"\$\{([^${}]+)\}")


def find_template(name: str, search_dirs: list[Path], requested_by: str) -> Path:
    """Locate an `extends:` target: relative to the extending file, then the project, then templates/."""
    candidates = [name] if name.endswith((".yaml", ".yml")) else [name + ".yaml", name]
    for directory in search_dirs:
        for candidate in candidates:
            path = (directory / candidate).resolve()
            if path.is_file():
                return path
    looked = ", ".join(str(d) for d in search_dirs)
    raise ConfigError(f"{requested_by}: template '{name}' not found (looked in: {looked})")


def deep_merge(base: dict, base_origins: Origins, over: dict, over_origins: Origins, prefix: str = "") -> None:
    """Merge `over` into `base` in place: maps merge, other values replace, `null` deletes the key."""
    for key, value in over.items():
        path = join_key(prefix, str(key))
        if value is None:
            base.pop(key, None)
            _drop_origins(base_origins, path)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            base_origins[path] = over_origins.get(path, base_origins.get(path, "?"))
            deep_merge(base[key], base_origins, value, over_origins, path)
        else:
            base[key] = copy.deepcopy(value)
            _drop_origins(base_origins, path)
            for origin_path, where in over_origins.items():
                if origin_path == path or origin_path.startswith(path + "."):
                    base_origins[origin_path] = where


def _drop_origins(origins: Origins, path: str) -> None:
    for origin_path in [p for p in origins if p == path or p.startswith(path + ".")]:
        del origins[origin_path]


def compose(path: Path, search_dirs: list[Path], _stack: tuple[Path, ...] = ()) -> tuple[dict, Origins]:
    """Load `path` and everything it extends (depth first, in list order), merged into one mapping."""
    path = path.resolve()
    if path in _stack:
        chain = " -> ".join(p.name for p in (*_stack, path))
        raise ConfigError(f"{path}: extends cycle: {chain}; remove one of the extends")
    data, origins = load_yaml(path)
    parents = data.pop("extends", None)
    origins.pop("extends", None)
    if parents is None:
        return data, origins
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise ConfigError(f"{origins.get('', path)}: 'extends' must be a file name or a list of file names")
    merged: dict = {}
    merged_origins: Origins = {}
    for parent in parents:
        parent_path = find_template(parent, [path.parent, *search_dirs], requested_by=str(path))
        parent_data, parent_origins = compose(parent_path, search_dirs, (*_stack, path))
        deep_merge(merged, merged_origins, parent_data, parent_origins)
    deep_merge(merged, merged_origins, data, origins)
    return merged, merged_origins


def get_path(tree: dict, dotted: str) -> Any:
    """Value at a dotted key path; KeyError if any part is missing."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def set_path(tree: dict, dotted: str, value: Any) -> None:
    """Set a value at a dotted key path, creating intermediate maps."""
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def all_paths(tree: dict, prefix: str = "") -> list[str]:
    """Every dotted key path in a nested mapping."""
    paths = []
    for key, value in tree.items():
        path = join_key(prefix, str(key))
        paths.append(path)
        if isinstance(value, dict):
            paths.extend(all_paths(value, path))
    return paths


def suggest(name: str, choices: list[str]) -> str:
    """' (did you mean X?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def interpolate(tree: dict, origins: Origins) -> dict:
    """Resolve `${a.b}` and `${env:NAME,default}` everywhere; a whole-string reference keeps its type."""
    resolving: list[str] = []

    def resolve_value(value: Any, path: str) -> Any:
        if isinstance(value, dict):
            return {k: resolve_value(v, join_key(path, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve_value(v, path) for v in value]
        if not isinstance(value, str) or "${" not in value:
            return value
        whole = _REFERENCE.fullmatch(value)
        if whole:
            return lookup(whole.group(1).strip(), path)
        return _REFERENCE.sub(lambda m: str(lookup(m.group(1).strip(), path)), value)

    def lookup(reference: str, path: str) -> Any:
        where = origins.get(path, path)
        if reference.startswith("env:"):
            name, _, default = reference[4:].partition(",")
            name = name.strip()
            if name in os.environ:
                return os.environ[name]
            if _:
                return default.strip()
            raise ConfigError(f"{where}: ${{{reference}}}: environment variable {name} is not set and has no default")
        if reference in resolving:
            chain = " -> ".join([*resolving, reference])
            raise ConfigError(f"{where}: interpolation cycle: {chain}")
        try:
            target = get_path(tree, reference)
        except KeyError:
            hint = suggest(reference, all_paths(tree))
            raise ConfigError(f"{where}: ${{{reference}}} refers to a missing key '{reference}'{hint}") from None
        resolving.append(reference)
        try:
            return resolve_value(target, reference)
        finally:
            resolving.pop()

    return resolve_value(tree, "")
