"""`forgather ls`: the projects and their configs under a directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..project import PROJECT_FILE, list_configs
from ..yamlio import parse_yaml


def register(subparsers: Any, composed: Any) -> None:
    parser = subparsers.add_parser(
        "ls", help="list projects and configs under a directory",
        description="List projects (directories with project.yaml) and their configs. Example: forgather ls projects",
    )
    parser.add_argument("directory", nargs="?", default=".", help="where to look (default: current directory)")
    parser.set_defaults(handler=run, needs_project=False)


def _description(project_file: Path) -> str:
    try:
        data = parse_yaml(project_file.read_text(encoding="utf-8"), str(project_file)) or {}
    except (OSError, UnicodeDecodeError, ConfigError):
        return "(unreadable project.yaml)"
    return str(data.get("description", "")) if isinstance(data, dict) else ""


def run(args: argparse.Namespace, composed: Any) -> int:
    root = Path(args.directory).resolve()
    found = sorted(p.parent for p in root.rglob(PROJECT_FILE) if "output" not in p.relative_to(root).parts)
    if not found:
        print(f"no projects under {root}")
        return 1
    for project_dir in found:
        rel = project_dir.relative_to(root) if project_dir != root else Path(".")
        print(f"{rel}  {_description(project_dir / PROJECT_FILE)}")
        for name in list_configs(project_dir):
            print(f"    -c {name}")
    return 0
