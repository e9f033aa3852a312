"""`forgather config show`: the resolved config, optionally with where each value came from."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from ..config import config_tree
from ..yamlio import Origins, dump_yaml, join_key
from .common import add_data_argument, add_project_flags, resolve_config


def register(subparsers: Any, composed: Any) -> None:
    parser = subparsers.add_parser(
        "config", help="show the resolved config",
        description="Print the project's resolved config. Example: forgather config show --origins --lr 1e-3",
    )
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the resolved config (YAML)")
    show.add_argument("--origins", action="store_true", help="annotate each value with its file:line or flag")
    show.add_argument("--show-env", action="store_true",
                      help="print values taken from the environment (default: their ${env:...} form)")
    add_data_argument(show)
    add_project_flags(show, composed)
    show.set_defaults(handler=run)


def _scalar(value: Any) -> str:
    # A bare scalar document ends with an explicit "..." end marker; drop it.
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1 << 20).strip().removesuffix("\n...")


def render_with_origins(tree: dict, origins: Origins, prefix: str = "", indent: int = 0) -> list[str]:
    """YAML lines with a `# file:line` comment after every value."""
    lines = []
    pad = "  " * indent
    for key, value in tree.items():
        path = join_key(prefix, str(key))
        where = origins.get(path, "")
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{key}:")
            lines.extend(render_with_origins(value, origins, path, indent + 1))
        else:
            text = f"{pad}{key}: {_scalar(value)}"
            lines.append(f"{text:<48} # {where}" if where else text)
    return lines


def run(args: argparse.Namespace, composed: Any) -> int:
    config, origins = resolve_config(composed, args)
    plain = config_tree(config, show_environment=args.show_env)
    if args.origins:
        print("\n".join(render_with_origins(plain, origins)))
    else:
        print(dump_yaml(plain), end="")
    return 0
