"""Project-declared CLI flags: each maps a command-line option onto one config key."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .templates import all_paths, get_path, set_path, suggest
from .yamlio import Origins, parse_yaml

_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "path": str, "bool": bool}
_ACTIONS = ("store", "store_true", "store_false", "negatable")
# Short options the CLI itself owns (help, project, config, devices): a project flag may not take them.
_RESERVED_SHORT = ("-h", "-p", "-c", "-d")
_ALIAS = re.compile(r"--[A-Za-z0-9][A-Za-z0-9_-]*|-[A-Za-z]")


@dataclass
class FlagSpec:
    """One `flags:` entry of a project: `--name` sets config `key`."""

    name: str
    key: str
    type: str = "str"
    action: str = "store"
    choices: list[Any] | None = None
    help: str = ""
    aliases: list[str] = field(default_factory=list)
    where: str = ""

    @property
    def options(self) -> list[str]:
        return [f"--{self.name}", *self.aliases]


def parse_flag_specs(raw: Any, origins: Origins) -> list[FlagSpec]:
    """Validate the `flags:` mapping of a project into FlagSpecs."""
    if raw is None:
        return []
    where = origins.get("flags", "flags")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'flags' must map flag names to {{key, type, help}}")
    specs = []
    for name, entry in raw.items():
        here = origins.get(f"flags.{name}", where)
        if not isinstance(entry, dict) or "key" not in entry:
            raise ConfigError(f"{here}: flag '{name}' needs at least 'key: <config.key>'")
        unknown = set(entry) - {"key", "type", "action", "choices", "help", "aliases"}
        if unknown:
            raise ConfigError(f"{here}: flag '{name}' has unknown field(s) {sorted(unknown)}")
        spec = FlagSpec(name=str(name), where=here, **entry)
        if spec.type not in _TYPES:
            raise ConfigError(f"{here}: flag '{name}' has type '{spec.type}'; use one of {sorted(_TYPES)}")
        if spec.action not in _ACTIONS:
            raise ConfigError(f"{here}: flag '{name}' has action '{spec.action}'; use one of {list(_ACTIONS)}")
        _check_aliases(spec, here)
        specs.append(spec)
    return specs


def _check_aliases(spec: FlagSpec, where: str) -> None:
    """Aliases are `--long-name` or a one-letter `-X` the CLI does not already use."""
    if not isinstance(spec.aliases, list):
        raise ConfigError(f"{where}: flag '{spec.name}' aliases must be a list such as [--lr, -L]")
    for alias in spec.aliases:
        if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
            raise ConfigError(f"{where}: flag '{spec.name}' alias {alias!r} must be --long-name or a single "
                              "letter such as -S")
        if alias in _RESERVED_SHORT:
            raise ConfigError(f"{where}: flag '{spec.name}' alias {alias} is taken by the CLI "
                              f"({', '.join(_RESERVED_SHORT)}); pick another letter")


def add_flags(parser: argparse.ArgumentParser, specs: list[FlagSpec]) -> None:
    """Register project flags on a parser; each stores under dest `flag:<name>`, default unset."""
    group = parser.add_argument_group(
        "config flags (each sets one config key: base.yaml's `flags:`, and the project's)")
    for spec in specs:
        dest = f"flag:{spec.name}"
        # argparse %-formats help text; a project's "30% faster" must print as written, not crash --help.
        help_text = f"{spec.help} [sets {spec.key}]".strip().replace("%", "%%")
        common = dict(dest=dest, default=argparse.SUPPRESS, help=help_text)
        if spec.action == "store_true":
            group.add_argument(*spec.options, action="store_true", **common)
        elif spec.action == "store_false":
            group.add_argument(*spec.options, action="store_false", **common)
        elif spec.action == "negatable":
            group.add_argument(*spec.options, action=argparse.BooleanOptionalAction, **common)
        else:
            metavar = None if spec.choices else spec.name.upper().replace("-", "_")  # not the internal dest
            group.add_argument(*spec.options, type=_TYPES[spec.type], choices=spec.choices, metavar=metavar, **common)


def flag_overrides(args: argparse.Namespace, specs: list[FlagSpec]) -> list[tuple[FlagSpec, Any]]:
    """The (flag, value) pairs the user actually gave on the command line."""
    given = vars(args)
    return [(spec, given[f"flag:{spec.name}"]) for spec in specs if f"flag:{spec.name}" in given]


SET_OPTION = "--set"


def parse_assignment(text: str) -> tuple[str, str]:
    """argparse type of --set: 'key.path=value' split at the first '='."""
    key, eq, value = text.partition("=")
    if not eq or not key.strip() or any(not part for part in key.strip().split(".")):
        raise argparse.ArgumentTypeError(f"expected key.path=value (e.g. train.learning_rate=1e-3), got {text!r}")
    return key.strip(), value


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """The generic --set key.path=value, repeatable, for any config key no flag covers."""
    parser.add_argument(SET_OPTION, dest="set", action="append", type=parse_assignment, default=[],
                        metavar="KEY=VALUE",
                        help="override any config key, typed like YAML (train.betas=[0.9,0.99], data.shuffle=false); "
                             "repeatable")


def apply_sets(tree: dict, origins: Origins, args: argparse.Namespace) -> None:
    """Write each --set into the composed config, recording '--set KEY' as its origin."""
    for key, text in getattr(args, "set", None) or []:
        # model.arch holds overrides of the model project's YAML, merged later: any architecture key may be new there.
        if not key.startswith("model.arch."):
            try:
                get_path(tree, key)
            except KeyError:
                raise ConfigError(f"--set {key}: no such config key{suggest(key, all_paths(tree))}; "
                                  "`forgather config show` lists them") from None
        value = parse_yaml(text, f"--set {key}") if text.strip() else ""
        set_path(tree, key, value)
        for path in [p for p in origins if p.startswith(key + ".")]:
            del origins[path]
        origins[key] = f"{SET_OPTION} {key}"
