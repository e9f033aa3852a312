"""`forgather data show|prepare`: what the project's data looks like once packed, and building its cache."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import DataError
from .common import add_project_flags, resolve_config

EXAMPLES = """examples:
  forgather data show                          sources, sizes, probabilities, fill and block 0 decoded
  forgather data show --block 5 --max-chars 4000
  forgather data show --max-length 1024        project flags apply (here: data.block_size)
  forgather data prepare --epochs 2            tokenize and pack the first two epochs ahead of training
"""


def register(subparsers: Any, composed: Any) -> None:
    parser = subparsers.add_parser(
        "data", help="inspect the project's data or build its cache", epilog=EXAMPLES,
        description="Inspect the project's packed training data, or tokenize and pack it ahead of training.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION", required=True)
    show = actions.add_parser(
        "show", help="sources, sizes, probabilities, fill and a decoded sample block", epilog=EXAMPLES,
        description="Open the project's data (building the cache if needed) and print each source's documents "
                    "and draw probability, the tokenizer, the cache's fill and one block decoded with a "
                    "⟦doc N · pos P⟧ marker at every document start.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("--block", type=int, default=0, metavar="K", help="which block of epoch 0 to decode (default 0)")
    show.add_argument("--max-chars", type=int, default=2000, metavar="N",
                      help="cut the decoded block after N characters (default 2000)")
    add_project_flags(show, composed)
    show.set_defaults(handler=run)
    prepare = actions.add_parser(
        "prepare", help="tokenize and pack the cache, with progress", epilog=EXAMPLES,
        description="Build the memory-mapped block cache (train epochs and validation) so training starts at once.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prepare.add_argument("--epochs", type=int, default=1, metavar="N", help="training epochs to build (default 1)")
    add_project_flags(prepare, composed)
    prepare.set_defaults(handler=run)


def project_data_spec(args: argparse.Namespace, composed: Any):
    """The project's DataSpec, with flags applied and relative paths taken from the project directory."""
    from ..data.spec import DataSpec

    config, _ = resolve_config(composed, args)
    return DataSpec.from_dict(config.data, base_dir=config.project_dir)


def run(args: argparse.Namespace, composed: Any) -> int:
    from ..data.inspect import prepare, show

    spec = project_data_spec(args, composed)
    if args.data_action == "prepare":
        if args.epochs < 1:
            raise DataError(f"--epochs {args.epochs} must be at least 1")
        print(prepare(spec, args.epochs))
        return 0
    if args.block < 0 or args.max_chars < 1:
        raise DataError(f"--block {args.block} must be >= 0 and --max-chars {args.max_chars} >= 1")
    try:
        print(show(spec, args.block, args.max_chars))
    except IndexError as exc:  # the stream names how many blocks there are
        raise DataError(f"--block {args.block}: {exc}; pick a smaller block") from None
    return 0
