"""Safe YAML loading that remembers the file:line of every value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

# A dotted key path ("train.batch_size") mapped to where its value was written ("base.yaml:12").
Origins = dict[str, str]


def join_key(prefix: str, key: str) -> str:
    """Dotted path of `key` under `prefix`."""
    return f"{prefix}.{key}" if prefix else key


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _walk(node: yaml.Node, value: Any, prefix: str, where: str, origins: Origins) -> None:
    """Record node start lines for every key path, rejecting duplicate keys."""
    origins[prefix] = f"{where}:{node.start_mark.line + 1}" if prefix else where
    if not isinstance(node, yaml.MappingNode) or not isinstance(value, dict):
        return
    seen: set[str] = set()
    for key_node, value_node in node.value:
        key = str(key_node.value)
        if key in seen:
            raise ConfigError(f"{where}:{key_node.start_mark.line + 1}: duplicate key '{key}'; keep one of them")
        seen.add(key)
        child = value.get(key, value.get(_typed_key(key)))
        _walk(value_node, child, join_key(prefix, key), where, origins)


def _typed_key(text: str) -> Any:
    # YAML may have constructed a non-string key (e.g. 1 or true); look it up by its typed form.
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def load_yaml(path: Path) -> tuple[dict[str, Any], Origins]:
    """Parse one YAML mapping with the safe loader; return it with the origin of each key path."""
    where = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read: {exc}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise ConfigError(f"{where}{line}: malformed YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: malformed YAML: {exc}") from None
    finally:
        loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys at the top level, found {type(data).__name__}")
    origins: Origins = {}
    if node is not None:
        _walk(node, data, "", where, origins)
    return data, origins


def dump_yaml(data: dict[str, Any]) -> str:
    """Serialise a resolved config as plain YAML, keys in their declared order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
