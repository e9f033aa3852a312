"""Template composition: `extends:` chains, deep merge with `null` deletion, `${...}` interpolation."""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path
from typing import Any

from .errors import ConfigError, keep_out_of_messages
from .yamlio import Origins, join_key, load_yaml, parse_yaml

_REFERENCE = re.compile(r"\$\{([^${}]+)\}")


def find_template(name: str, search_dirs: list[Path], requested_by: str) -> Path:
    """Locate an `extends:` target: relative to the extending file, then the project, then the package's templates."""
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


def env_scalar(text: str) -> Any:
    """An environment value typed like a YAML scalar ('2000' → 2000, 'true' → True), else the string itself."""
    try:
        value = parse_yaml(text, "environment value") if text.strip() else text
    except ConfigError:
        return text
    return value if isinstance(value, (int, float, bool, str)) or value is None else text


def interpolate(tree: dict, origins: Origins, env_forms: dict[str, Any] | None = None) -> dict:
    """Resolve `${a.b}` and `${env:NAME,default}` everywhere; a whole-string reference keeps its type.

    Values that came from the environment are never written or shown: `env_forms` receives, for each key path
    whose value used the environment (directly or through references), the same value with every
    `${env:...}` kept as written and every other reference resolved. The resolved config is saved in that
    form and each rank fills the environment back in (expand_env).
    """
    resolving: list[str] = []
    forms = {} if env_forms is None else env_forms

    def resolve_value(value: Any, path: str, record: bool = True) -> tuple[Any, Any]:
        """(value, its environment-free form or None when it does not depend on the environment). A form is
        recorded under a dotted key path; inside a list (data.sources) the list's whole form is recorded instead,
        as a dotted path cannot address an item."""
        if isinstance(value, dict):
            items = {k: resolve_value(v, join_key(path, str(k)), record) for k, v in value.items()}
            kept = None if all(k is None for _, k in items.values()) else {
                key: v if k is None else k for key, (v, k) in items.items()}
            return {key: v for key, (v, _) in items.items()}, kept
        if isinstance(value, list):
            items = [resolve_value(v, path, record=False) for v in value]
            kept = None if all(k is None for _, k in items) else [v if k is None else k for v, k in items]
            if kept is not None and record:
                forms[path] = kept
            return [v for v, _ in items], kept
        if not isinstance(value, str) or "${" not in value:
            return value, None
        whole = _REFERENCE.fullmatch(value)
        if whole:
            resolved, kept = lookup(whole.group(1).strip(), path)
        else:
            pieces = [lookup(m.group(1).strip(), path) for m in _REFERENCE.finditer(value)]
            resolved = _substitute(value, [str(v) for v, _ in pieces])
            kept = None if all(k is None for _, k in pieces) else _substitute(
                value, [str(v) if k is None else str(k) for v, k in pieces])
        if kept is not None and record:
            forms[path] = kept
        return resolved, kept

    def lookup(reference: str, path: str) -> tuple[Any, Any]:
        where = origins.get(path, path)
        if reference.startswith("env:"):
            return env_value(reference, where), "${" + reference + "}"
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

    return resolve_value(tree, "")[0]


def _substitute(template: str, values: list[str]) -> str:
    parts = iter(values)
    return _REFERENCE.sub(lambda _: next(parts), template)


def env_value(reference: str, where: str) -> Any:
    """The value of `env:NAME[,default]` from this process's environment, typed like a YAML scalar."""
    name, has_default, default = reference[4:].partition(",")
    name = name.strip()
    if name in os.environ:
        keep_out_of_messages(os.environ[name], f"${{env:{name}}}")
        return env_scalar(os.environ[name])
    if has_default:
        return env_scalar(default.strip())
    raise ConfigError(f"{where}: ${{{reference}}}: environment variable {name} is not set and has no default")


def expand_env(value: Any, where: str) -> Any:
    """Fill `${env:...}` references back in (a saved environment-free form, read by a rank)."""
    if isinstance(value, list):
        return [expand_env(v, where) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v, where) for k, v in value.items()}
    if not isinstance(value, str) or "${env:" not in value:
        return value
    whole = _REFERENCE.fullmatch(value)
    if whole:
        return env_value(whole.group(1).strip(), where)
    return _REFERENCE.sub(lambda m: str(env_value(m.group(1).strip(), where)), value)
