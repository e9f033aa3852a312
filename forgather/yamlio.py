"""Safe YAML loading that remembers the file:line of every value."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

# A dotted key path ("train.batch_size") mapped to where its value was written ("base.yaml:12").
Origins = dict[str, str]

# A config is a few hundred values. These bounds stop a hostile or broken file (an alias "billion laughs"
# expands 400 bytes into billions of values) before anything walks, merges or interpolates it.
MAX_TEXT_BYTES = 4 << 20
MAX_VALUES = 100_000
MAX_DEPTH = 64  # nesting levels; deeper input is an attack or a mistake, and every reader of a tree recurses


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
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text


class _Loader(yaml.SafeLoader):
    """The safe loader, reading exponent numbers without a dot (1e-3, 5e5) as floats, as YAML 1.2 and every user
    do: PyYAML's YAML 1.1 rules kept them strings, so `rope_theta: 5e5` was the text '5e5' in an untyped section."""


_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def _expanded_size(node: yaml.Node, where: str) -> int:
    """Values the node stands for once aliases are expanded (shared subtrees counted each time they appear)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(n: yaml.Node, depth: int = 0) -> int:
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where}:{n.start_mark.line + 1}: YAML nests deeper than {MAX_DEPTH} levels; a config "
                              "is far shallower: flatten it")
        if id(n) in sizes:
            return sizes[id(n)]
        if id(n) in active:
            raise ConfigError(f"{where}:{n.start_mark.line + 1}: a YAML alias refers to itself; configs cannot be "
                              "recursive")
        active.add(id(n))
        if isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in n.value)
        elif isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(v, depth + 1) for v in n.value)
        else:
            total = 1
        active.discard(id(n))
        if total > MAX_VALUES:
            raise ConfigError(f"{where}: YAML expands to more than {MAX_VALUES:,} values (aliases repeat "
                              "subtrees); a config is far smaller: remove the aliases that multiply it")
        sizes[id(n)] = total
        return total

    return size(node)


def _check_text_size(text: str, where: str) -> None:
    if len(text) > MAX_TEXT_BYTES:
        raise ConfigError(f"{where}: {len(text):,} characters is too large for a config (limit {MAX_TEXT_BYTES:,})")


def _compose_and_construct(text: str, where: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (aliases bounded before anything is built) and the constructed value of one document."""
    _check_text_size(text, where)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _expanded_size(node, where)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise ConfigError(f"{where}{line}: malformed YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: malformed YAML: {exc}") from None
    except RecursionError:  # the parser itself recurses per level, before the depth check sees the tree
        raise ConfigError(f"{where}: YAML nests deeper than {MAX_DEPTH} levels; a config is far shallower: "
                          "flatten it") from None
    finally:
        loader.dispose()
    return node, data


def parse_yaml(text: str, where: str) -> Any:
    """Safe-load one YAML document of bounded size and alias expansion; ConfigError naming `where`."""
    return _compose_and_construct(text, where)[1]


def load_yaml(path: Path) -> tuple[dict[str, Any], Origins]:
    """Parse one YAML mapping with the bounded safe loader; return it with the origin of each key path."""
    where = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read: {exc}") from None
    node, data = _compose_and_construct(text, where)
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
