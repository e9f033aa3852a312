"""Shared pieces of the subcommands: resolving the project's config with its flags."""

from __future__ import annotations

import argparse
import glob
from pathlib import Path
from typing import Any, Callable

from ..config import RunConfig, build_config
from ..data.spec import named_sources
from ..errors import DataError, UserError
from ..flags import add_flags, add_set_option, apply_sets, flag_overrides
from ..project import ComposedConfig, apply_flags, compose_project, find_project, resolve
from ..yamlio import Origins


def add_project_flags(parser: argparse.ArgumentParser, composed: ComposedConfig | None) -> None:
    """Project-declared flags, when a project was found (help still works without one), and --set."""
    add_set_option(parser)
    if composed is not None:
        add_flags(parser, composed.flags)


def refuse_unused_overrides(args: argparse.Namespace, composed: ComposedConfig | None, path: str) -> None:
    """UserError when --set or a config flag was given to a command that reads `path` instead of the project.

    Such an override would change nothing, and the user would read the output as if it had applied.
    """
    given = [f"--set {key}" for key, _ in getattr(args, "set", None) or []]
    if composed is not None:
        given += [spec.options[0] for spec, _ in flag_overrides(args, composed.flags)]
    if given:
        raise UserError(f"{', '.join(given)}: {path} is read without the project's config, so this changes "
                        "nothing; drop it, or leave out the path to use the project")


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """`--data PATH [PATH ...]`: train on these files instead of the project's data.sources."""
    parser.add_argument("--data", nargs="+", dest="data_paths", metavar="PATH",
                        help="files, globs or directories (.parquet, .jsonl, .txt, .md) replacing data.sources; "
                             "one source per path, named after it [sets data.sources]")


def data_sources_from_paths(paths: list[str], cwd: Path | None = None) -> list[dict[str, str]]:
    """data.sources entries for --data paths (made absolute: they are given relative to where the user is)."""
    base = (cwd or Path.cwd()).resolve()
    entries = []
    for text in paths:
        if "${" in text:  # the path goes into the config, where ${...} is a reference: it would not stay literal
            raise DataError(f"--data {text}: '${{' in a --data path would be read as a config reference; give the "
                            "path as the shell expands it, or rename the file")
        path = Path(text).expanduser()
        path = path if path.is_absolute() else base / path
        if any(c in text for c in "*?["):
            if not glob.glob(str(path), recursive=True):
                raise DataError(f"--data {text}: the pattern matches no file; check the path (relative to {base})")
        elif not path.exists():
            raise DataError(f"--data {text}: no such file or directory ({path})")
        entries.append({"path": str(path)})
    return named_sources(entries)


def load_composed(args: argparse.Namespace) -> ComposedConfig:
    """Locate the project named by -p/-c (or the cwd) and compose its templates."""
    start = Path(args.project) if args.project else None
    return compose_project(find_project(start, args.config))


def resolve_config(composed: ComposedConfig, args: argparse.Namespace) -> tuple[RunConfig, Origins]:
    """Apply flags and --set, merge the model project, interpolate, and type-check."""
    apply_flags(composed, args)
    if getattr(args, "data_paths", None):
        composed.tree.setdefault("data", {})["sources"] = data_sources_from_paths(args.data_paths)
        for key in [k for k in composed.origins if k.startswith("data.sources.")]:
            del composed.origins[key]  # the project's entries are gone; their file:line would mislead
        composed.origins["data.sources"] = "flag --data"
    apply_sets(composed.tree, composed.origins, args)  # after the flags: the more specific spelling wins
    tree, origins = resolve(composed)
    return build_config(tree, origins), origins


def checked_number(kind: Callable[[str], Any], test: Callable[[Any], bool], rule: str) -> Callable[[str], Any]:
    """An argparse type that also checks a range, so a bad value is a one-line usage error before torch loads."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"{text} {rule}")
        return value

    return parse


positive_int = checked_number(int, lambda v: v >= 1, "must be at least 1")


def add_target_argument(parser: argparse.ArgumentParser) -> None:
    """The CHECKPOINT_OR_PROJECT positional of generate and eval."""
    parser.add_argument("target", nargs="?", metavar="CHECKPOINT_OR_PROJECT",
                        help="checkpoint, model dir, run dir or project dir (default: the project at -p or the cwd)")
