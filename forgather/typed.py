"""Strict conversion of plain YAML data into dataclasses: unknown keys and wrong types are errors."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Literal, Union

from .errors import ConfigError, UserError
from .templates import suggest
from .yamlio import Origins, join_key


def _where(origins: Origins, path: str) -> str:
    while path and path not in origins:
        path = path.rpartition(".")[0]
    return origins.get(path, "config")


def from_plain(cls: type, value: Any, origins: Origins, path: str = "") -> Any:
    """Build `cls` from plain data, naming file:line and the key for anything that does not fit."""
    return _convert(cls, value, origins, path)


def _convert(tp: Any, value: Any, origins: Origins, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for candidate in inner:
            try:
                return _convert(candidate, value, origins, path)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            raise _type_error(origins, path, f"'{value}' is not one of {list(args)}{suggest(str(value), list(map(str, args)))}")
        return value
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp, value, origins, path)
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(origins, path, f"expected a list, got {_show(value)}")
        return [_convert(args[0], v, origins, path) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(origins, path, f"expected a mapping, got {_show(value)}")
        return {str(k): _convert(args[1], v, origins, join_key(path, str(k))) for k, v in value.items()}
    return _scalar(tp, value, origins, path)


def _scalar(tp: Any, value: Any, origins: Origins, path: str) -> Any:
    if value is None:
        raise _type_error(origins, path, f"is required (expected {tp.__name__}); set it or remove the null")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads `3e-4` as a string; accept it as the number the user meant.
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    else:
        return value
    raise _type_error(origins, path, f"expected {tp.__name__}, got {_show(value)}")


def _dataclass(cls: type, value: Any, origins: Origins, path: str) -> Any:
    if not isinstance(value, dict):
        raise _type_error(origins, path, f"expected a mapping of {cls.__name__} fields, got {_show(value)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in value:
        if key not in fields:
            full = join_key(path, str(key))
            where = origins.get(full, _where(origins, path))
            hint = suggest(str(key), list(fields))
            raise ConfigError(f"{where}: unknown key '{full}'{hint}")
    kwargs = {}
    for name, field in fields.items():
        full = join_key(path, name)
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], origins, full)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            where = _where(origins, path)
            raise ConfigError(f"{where}: missing required key '{full}'; set it in the project (a project starts with "
                              "`extends: base.yaml`, which gives every other key its default)")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except UserError as exc:  # a section's own validation (e.g. DataSpec.__post_init__): add where it was written
        raise ConfigError(f"{_where_named(origins, path, list(fields), str(exc))}: {exc}") from None


def _where_named(origins: Origins, path: str, names: list[str], message: str) -> str:
    """Where the key a validation message names first was set (a flag, --set, file:line), else the section's."""
    found = [(match.start(), full) for full in (join_key(path, name) for name in names) if full in origins
             for match in [re.search(rf"(?<![\w.]){re.escape(full)}(?![\w])", message)] if match]
    return origins[min(found)[1]] if found else _where(origins, path)


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _type_error(origins: Origins, path: str, message: str) -> ConfigError:
    return ConfigError(f"{_where(origins, path)}: {path}: {message}")


def to_plain(obj: Any) -> Any:
    """Dataclasses back to plain dicts/lists, for writing the resolved config."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj
