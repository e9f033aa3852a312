"""`forgather generate`: continue a prompt with a trained checkpoint or model dir, streaming the text."""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any

from ..errors import UserError
from .common import add_target_argument, checked_number, positive_int

EXAMPLES = """examples:
  forgather generate --prompt "Once upon a time"            latest checkpoint of the project in the cwd
  forgather generate output/checkpoints/step-000200 --prompt "def main(" --temperature 0
  forgather generate projects/smollm_pretrain --prompt "The" --num-samples 3 --top-p 0.9 --seed 7
  forgather generate models/smollm2/weights/135M --prompt "Hello" --max-new-tokens 50

CHECKPOINT_OR_PROJECT is a checkpoint (RUN_DIR/checkpoints/step-NNNNNN, verified against its manifest),
an HF-format model dir (config.json + model.safetensors, e.g. RUN_DIR/initial_model or an imported model),
a run directory or a project directory (their latest verified checkpoint). The tokenizer is the
tokenizer.json beside the weights, else the run's (data.tokenizer.path or the BPE it trained);
--tokenizer overrides. Generation stops at the tokenizer's EOS or after --max-new-tokens.
"""


def register(subparsers: Any, composed: Any) -> None:
    parser = subparsers.add_parser(
        "generate", help="sample text from a checkpoint or model", epilog=EXAMPLES,
        description="Continue --prompt with a trained model, printing the text as it is produced.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_target_argument(parser)
    parser.add_argument("--prompt", required=True, help="text to continue")
    parser.add_argument("--max-new-tokens", type=positive_int, default=100,
                        metavar="N", help="tokens to generate per sample (default 100)")
    parser.add_argument("--temperature", type=checked_number(float, lambda v: v >= 0 and math.isfinite(v),
                                                       "must be >= 0 (0 = greedy)"),
                        default=0.8, metavar="T", help="0: greedy (deterministic); higher: more random (default 0.8)")
    parser.add_argument("--top-k", type=checked_number(int, lambda v: v >= 0, "must be >= 0 (0 = off)"), default=50,
                        metavar="K", help="sample among the K most likely tokens (0: all; default 50)")
    parser.add_argument("--top-p", type=checked_number(float, lambda v: 0 < v <= 1, "must be in (0, 1] (1 = off)"),
                        default=1.0, metavar="P", help="nucleus sampling: smallest set with probability >= P "
                                                       "(default 1 = off)")
    parser.add_argument("--num-samples", type=positive_int, default=1,
                        metavar="N", help="independent continuations, each under a header (default 1)")
    parser.add_argument("--seed", type=checked_number(int, lambda v: 0 <= v < 2**63, "must be between 0 and 2^63-1"),
                        help="sampling seed, for reproducible output (default: random, "
                                                 "printed to stderr)")
    parser.add_argument("--tokenizer", metavar="PATH", help="a tokenizer.json (or its directory) to use instead")
    parser.add_argument("--no-kv-cache", action="store_true",
                        help="recompute the whole sequence every step (slow; same tokens, for checking)")
    parser.add_argument("--no-accelerator", action="store_true", help="run on CPU even where a GPU exists")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, composed: Any) -> int:
    from ..eval_target import load_model, open_tokenizer, resolve_target

    target = resolve_target(args.target, args.project, args.config)
    tokenizer = open_tokenizer(target, args.tokenizer)
    prompt = ([tokenizer.bos_id] if tokenizer.add_bos and tokenizer.bos_id is not None else [])
    prompt += tokenizer.tok.encode(args.prompt, add_special_tokens=False).ids
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")

    import torch

    from ..data.tokenizer import check_vocab
    from ..models.generate import Sampling, StreamDecoder, generate_tokens

    device = torch.device("cuda" if torch.cuda.is_available() and not args.no_accelerator else "cpu")
    model = load_model(target.model_dir, device)
    check_vocab(tokenizer.vocab_size, model.spec.vocab_size)
    max_new = min(args.max_new_tokens, model.spec.max_position_embeddings - len(prompt))
    if max_new < 1:
        raise UserError(f"the prompt is {len(prompt)} tokens and the model takes at most "
                        f"{model.spec.max_position_embeddings} positions: no room to generate; shorten --prompt")
    sampling = Sampling(args.temperature, args.top_k, args.top_p)
    generator = torch.Generator(device).manual_seed(seed)
    how = "greedy" if args.temperature == 0 else f"temperature {args.temperature:g}, top-k {args.top_k}, " \
                                                  f"top-p {args.top_p:g}, seed {seed}"
    if max_new < args.max_new_tokens:  # said once: the text stopping early is the model's context, not an EOS
        how += (f"; at most {max_new} new tokens, as the model takes {model.spec.max_position_embeddings} positions "
                f"and the prompt is {len(prompt)}")
    print(f"forgather: generating from {target.describe()}: {how}", file=sys.stderr, flush=True)
    for sample in range(args.num_samples):
        if args.num_samples > 1:
            print(f"{'' if sample == 0 else chr(10)}=== sample {sample + 1}/{args.num_samples} ===", flush=True)
        stream = StreamDecoder(tokenizer.decode, prompt)
        sys.stdout.write(args.prompt)
        for token in generate_tokens(model, prompt, max_new, sampling, generator, tokenizer.eos_id,
                                     use_cache=not args.no_kv_cache, vocab_size=tokenizer.vocab_size):
            if token == tokenizer.eos_id:
                break  # the document ended; its EOS is not text
            sys.stdout.write(stream.push(token))
            sys.stdout.flush()
        sys.stdout.write(stream.flush() + "\n")
        sys.stdout.flush()
    return 0

