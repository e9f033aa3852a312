"""`forgather eval`: loss, perplexity and bits per byte of a checkpoint, on one rank or under torchrun."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import DataError, UserError
from .common import add_target_argument, positive_int

EXAMPLES = """examples:
  forgather eval                                       latest checkpoint of the project in the cwd, validation data
  forgather eval output/checkpoints/step-000200 --json
  forgather eval projects/smollm_pretrain --split train --max-batches 20
  forgather eval output/initial_model --data held_out.jsonl      a baseline on your own test file
  forgather eval --nproc-per-node 2 --no-accelerator   two ranks under torchrun (gloo); same numbers as one

data: --split validation (default) is the run's validation stream (data.validation sources, or the
data.validation_fraction tail of each source); train is the training stream (epoch 0). forgather
configs have no test split, and the validation data steers training (eval loss, early stopping), so
--split test needs --data FILE holding your held-out documents (.parquet, .jsonl or .txt).
--data FILE evaluates all of FILE; FILE[START:STOP] only those rows of a .parquet/.jsonl file
(file.parquet[1000:], file.jsonl[:500], file.jsonl[:10%]).

blocks and EOS: a checkpoint, run dir, project or RUN_DIR/initial_model evaluates as the run trained:
its data.block_size and its EOS policy (data.tokenizer.add_eos, eos_token), with its tokenizer. A bare
model dir (no run config, e.g. an export or import) has only --data: blocks of
min(max_position_embeddings, 2048) tokens, and the EOS its config.json names (eos_token_id) after each
document, as training appends it; none if it names none. --block-size N overrides the block size for
both. The first stderr line says which block size and EOS were used.

metrics: loss is mean nats per predicted token, perplexity = exp(loss), bits_per_byte = total nats
/ ln 2 / bytes, where bytes are the UTF-8 bytes of the predicted tokens: each document's text except
its first token (and the first token of each block-sized piece of a long document), which only
serves as context. EOS tokens add their loss but no bytes. --max-batches N evaluates the first
N x --batch-size blocks of the stream, whatever the number of ranks.
"""


def register(subparsers: Any, composed: Any) -> None:
    parser = subparsers.add_parser(
        "eval", help="loss, perplexity and bits per byte of a checkpoint", epilog=EXAMPLES,
        description="Evaluate a checkpoint or model on the run's validation/train data or on a file.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_target_argument(parser)
    parser.add_argument("--split", choices=["validation", "test", "train"], default="validation",
                        help="which data (default validation; test needs --data, see below)")
    parser.add_argument("--data", metavar="FILE[A:B]",
                        help="evaluate this file's documents instead (.parquet/.jsonl/.txt); [A:B] takes rows A..B")
    parser.add_argument("--max-batches", type=positive_int, metavar="N", help="stop after N batches (default: all)")
    parser.add_argument("--batch-size", type=positive_int, metavar="B",
                        help="blocks per forward on each rank (default: the run's train.batch_size, else 4)")
    parser.add_argument("--block-size", "--max-length", "--max_length", dest="block_size", type=positive_int,
                        metavar="N",
                        help="tokens per block (default: the run's data.block_size; bare model dir: see below)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--tokenizer", metavar="PATH", help="a tokenizer.json (or its directory) to use instead")
    parser.add_argument("--nproc-per-node", type=positive_int, default=1, metavar="N",
                        help="ranks on this machine; N > 1 runs under torchrun (default 1, in this process)")
    parser.add_argument("--no-accelerator", action="store_true", help="run on CPU (gloo) even where GPUs exist")
    parser.set_defaults(handler=run)


def plan(args: argparse.Namespace) -> Any:
    """Resolve the target, tokenizer and data choice (torch-free), or raise a one-line UserError."""
    from ..eval_target import eval_settings, find_tokenizer_file, parse_data_argument, resolve_target
    from ..evaluation import EvalOptions

    if args.split == "test" and not args.data:
        raise UserError("--split test needs --data FILE: forgather configs have no test split, and the validation "
                        "data steers training (eval loss, early stopping); pass your held-out documents")
    data, data_split = parse_data_argument(args.data) if args.data else (None, "train")
    target = resolve_target(args.target, args.project, args.config)
    config = target.config
    if config is None and not args.data:
        raise UserError(f"{target.model_dir} has no run config (config.yaml) to find its data in; pass --data FILE")
    if config is not None and not args.data and args.split == "validation":
        if not config.data.get("validation") and not config.data.get("validation_fraction"):
            raise DataError("the run has no validation data (data.validation or data.validation_fraction); "
                            "use --split train or --data FILE")
    tokenizer = find_tokenizer_file(target, args.tokenizer)
    # Without the file, only the run's own data can rebuild the run's tokenizer (open_data re-trains it).
    if tokenizer is None and (config is None or args.data):
        raise DataError(f"no tokenizer found for {target.model_dir} (no tokenizer.json beside the weights); "
                        "pass --tokenizer PATH/tokenizer.json")
    settings = eval_settings(config, target.model_dir, tokenizer, args.block_size)
    what = args.data if args.data else f"the run's {args.split} stream"
    print(f"forgather: evaluating {target.describe()} on {what}, {settings.describe()}", file=sys.stderr, flush=True)
    return EvalOptions(
        model_dir=str(target.model_dir.resolve()),
        config_file=str(target.config_file.resolve()) if target.config_file else None,
        tokenizer=str(tokenizer.resolve()) if tokenizer else None,
        split=args.split, data=data, data_split=data_split, block_size=args.block_size,
        max_batches=args.max_batches, batch_size=args.batch_size, accelerator=not args.no_accelerator,
    )


def run(args: argparse.Namespace, composed: Any) -> int:
    options = plan(args)
    if args.nproc_per_node > 1:
        from ..launch import LaunchPlan, execute, torchrun_prefix

        env = {"CUDA_VISIBLE_DEVICES": ""} if args.no_accelerator else {}
        argv = [*torchrun_prefix(), "--standalone", "--nnodes", "1", "--nproc-per-node", str(args.nproc_per_node),
                "-m", "forgather.evaluation", *options.argv(), *(["--json"] if args.json else [])]
        launch = LaunchPlan(env, argv)
        print(f"forgather: {launch.shell()}", file=sys.stderr)
        return execute(launch)
    import torch

    from ..evaluation import format_results, run_eval

    device = torch.device("cuda" if options.accelerator and torch.cuda.is_available() else "cpu")
    print(format_results(run_eval(options, device=device), args.json))
    return 0
