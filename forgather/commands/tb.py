"""`forgather tb`: start TensorBoard on the project's run directory."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from .common import load_composed, resolve_config


def register(subparsers: Any, composed: Any) -> None:
    parser = subparsers.add_parser(
        "tb", help="start TensorBoard on the run's logs",
        description="Start TensorBoard on RUN_DIR/runs (default: the project's run dir). "
                    "Example: forgather tb output --port 6007",
    )
    parser.add_argument("run_dir", nargs="?", metavar="RUN_DIR",
                        help="a run directory (default: output_dir of the project at -p or the cwd)")
    parser.add_argument("--port", type=int, default=6006, help="port to serve on (default 6006)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 to reach it from elsewhere)")
    parser.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, composed: Any) -> int:
    if args.run_dir:
        run_dir = Path(args.run_dir).expanduser().resolve()
        if not run_dir.is_dir():
            raise UserError(f"{args.run_dir}: not a directory; give a run directory (one holding runs/)")
    else:
        run_dir = resolve_config(composed or load_composed(args), args)[0].run_dir
    logdir = run_dir / "runs"
    if not logdir.is_dir():
        raise UserError(f"{logdir}: no TensorBoard logs yet; run `forgather train` first")
    binary = shutil.which("tensorboard")
    argv = [binary] if binary else [sys.executable, "-m", "tensorboard.main"]
    argv += ["--logdir", str(logdir), "--port", str(args.port), "--host", args.host]
    if args.dry_run:
        print(" ".join(argv))
        return 0
    os.execvp(argv[0], argv)
    return 0  # unreachable
