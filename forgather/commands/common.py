"""Shared pieces of the subcommands: resolving the project's config with its flags."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import RunConfig, build_config
from ..flags import add_flags
from ..project import ComposedConfig, apply_flags, compose_project, find_project, resolve
from ..yamlio import Origins


def add_project_flags(parser: argparse.ArgumentParser, composed: ComposedConfig | None) -> None:
    """Project-declared flags, when a project was found (help still works without one)."""
    if composed is not None:
        add_flags(parser, composed.flags)


def load_composed(args: argparse.Namespace) -> ComposedConfig:
    """Locate the project named by -p/-c (or the cwd) and compose its templates."""
    start = Path(args.project) if args.project else None
    return compose_project(find_project(start, args.config))


def resolve_config(composed: ComposedConfig, args: argparse.Namespace) -> tuple[RunConfig, Origins]:
    """Apply flags, merge the model project, interpolate, and type-check."""
    apply_flags(composed, args)
    tree, origins = resolve(composed)
    return build_config(tree, origins), origins
