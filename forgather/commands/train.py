"""`forgather train`: resolve the project, write the run's config, and exec torchrun on it."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..config import RunConfig, write_config
from ..errors import UserError
from ..launch import add_launch_arguments, execute, plan_launch
from ..preflight import launch_problems
from .common import add_project_flags, resolve_config

EXAMPLES = """examples:
  forgather train --init-model                 start fresh (refuses to replace checkpoints)
  forgather train                              resume from the latest checkpoint
  forgather train --dry-run -d 0,1             print the exact torchrun command for GPUs 0 and 1
  forgather train --nnodes 2 --rdzv-endpoint 10.0.0.1:29400 --rdzv-id job42
  forgather train -- --max-restarts 3          everything after -- goes to torchrun verbatim
"""


def register(subparsers: Any, composed: Any) -> None:
    parser = subparsers.add_parser(
        "train", help="train the project under torchrun", epilog=EXAMPLES,
        description="Resolve the project's config, write it to the run directory, and run torchrun on it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_launch_arguments(parser)
    add_project_flags(parser, composed)
    parser.set_defaults(handler=run)


def apply_launcher_overrides(config: RunConfig, args: argparse.Namespace) -> None:
    """Launcher flags that also change what the ranks do."""
    if args.no_accelerator:
        config.dist.accelerator = False
    if args.dist_backend:
        config.dist.backend = args.dist_backend


def run(args: argparse.Namespace, composed: Any) -> int:
    config, origins = resolve_config(composed, args)
    apply_launcher_overrides(config, args)
    problems = launch_problems(config, args, origins, os.environ)
    if problems and not args.dry_run:
        raise UserError(problems[0])  # before torchrun and before any data is prepared
    config_path = config.run_dir / "config.yaml"
    plan = plan_launch(args, config_path)
    write_config(config, config_path)
    if args.dry_run:
        for problem in problems:  # the command may be meant for another machine: say, don't refuse
            print(f"# warning: {problem}")
        print(f"# resolved config written to {config_path}")
        for key, value in plan.env.items():
            print(f"# env: {key}={value!r}")
        print(plan.shell())
        return 0
    print(f"forgather: {plan.shell()}", file=sys.stderr)
    return execute(plan)
