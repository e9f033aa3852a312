"""`forgather data show|prepare`: what the project's data looks like once packed, and building its cache."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import DataError
from ..launch import add_launch_arguments
from .common import add_data_argument, add_project_flags, resolve_config

EXAMPLES = """examples:
  forgather data show                          sources, sizes, probabilities, fill and block 0 decoded
  forgather data show --block 5 --max-chars 4000
  forgather data show --max-length 1024        project flags apply (here: data.block_size)
  forgather data prepare                       pack every chunk of every shard into the cache
  forgather data prepare --nproc-per-node 8    the same with 8 processes (torchrun); add --nnodes etc. for nodes
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
    show.add_argument("--block", type=int, default=0, metavar="K",
                      help="which global block position to decode (default 0)")
    show.add_argument("--max-chars", type=int, default=2000, metavar="N",
                      help="cut the decoded block after N characters (default 2000)")
    add_data_argument(show)
    add_project_flags(show, composed)
    show.set_defaults(handler=run)
    prepare = actions.add_parser(
        "prepare", help="tokenize and pack the cache, with progress", epilog=EXAMPLES,
        description="Pack every chunk of every shard (and the validation data) into the cache, so training starts "
                    "at once. Chunks are packed once for all epochs. With --nproc-per-node/--nnodes it runs under "
                    "torchrun and rank r of W builds the shards r, r+W, ... (those it reads when training on W ranks).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_launch_arguments(prepare)
    add_data_argument(prepare)
    add_project_flags(prepare, composed)
    prepare.set_defaults(handler=run)


def project_data_spec(config: Any):
    """The run's DataSpec, relative paths taken from the project directory."""
    from ..data.spec import DataSpec

    return DataSpec.from_dict(config.data, base_dir=config.project_dir)


def launch_prepare(args: argparse.Namespace, config: Any) -> int:
    """`data prepare` under torchrun: write the resolved config beside the run's and exec torchrun on it."""
    from ..config import write_config
    from ..data.shards import check_world_size
    from ..launch import execute, plan_launch

    config_path = config.run_dir / "data-prepare.yaml"
    plan = plan_launch(args, config_path, entry="forgather.data.prepare")
    if str(args.nnodes).isdigit():
        check_world_size(config.data["shards"], int(args.nnodes) * plan.nproc_per_node)
    write_config(config, config_path)
    if args.dry_run:
        print(plan.shell())
        return 0
    print(f"forgather: {plan.shell()}", file=sys.stderr)
    return execute(plan)


def run(args: argparse.Namespace, composed: Any) -> int:
    config, _ = resolve_config(composed, args)
    if args.data_action == "prepare":
        if args.nproc_per_node is not None or str(args.nnodes) != "1":
            return launch_prepare(args, config)
        from ..data.prepare import prepare_in_process

        print(prepare_in_process(project_data_spec(config)))
        return 0
    from ..data.inspect import show

    if args.block < 0 or args.max_chars < 1:
        raise DataError(f"--block {args.block} must be >= 0 and --max-chars {args.max_chars} >= 1")
    spec = project_data_spec(config)
    try:
        print(show(spec, args.block, args.max_chars, batch_size=config.train.batch_size))
    except IndexError as exc:  # the stream names how many blocks there are
        raise DataError(f"--block {args.block}: {exc}; pick a smaller block") from None
    return 0
