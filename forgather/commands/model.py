"""`forgather model show|import`: a model's shape, size and cost; bring a Hugging Face checkpoint in."""

from __future__ import annotations

import argparse
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelError, UserError
from ..models.spec import (ARCHITECTURES, PRESETS, ModelSpec, flops_per_token, human_count, parameter_counts,
                           parse_param_count, preset, shape_for_target_params)
from ..project import compose_project, find_project, merge_model_project
from ..resources import model_project_dir
from ..yamlio import dump_yaml
from .common import resolve_config

EXAMPLES = """examples:
  forgather model show                                   the project's model at its block size
  forgather model show --model-config 124M               another size from the project's model project
  forgather model show --model-project qwen3 --model-config 30M
  forgather model show --preset small --architecture qwen3 --vocab-size 49152
  forgather model show --target-params 124M --prefer-depth --seq-len 4096
  forgather model import ~/hf/SmolLM2-135M --output projects/models/smollm2
"""

def parse_count(text: str) -> int:
    """'124M', '1.5B', '30000000', '30_000_000' or '3e7' as an int (argparse type)."""
    try:
        return parse_param_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def size_class(total: int) -> str:
    """The size a model is quoted as: 124M for 123.9M parameters, 1.5B for 1.54B, 4.2M for 4.19M."""
    if total >= 1e9:
        return f"{total / 1e9:.1f}".removesuffix(".0") + "B"
    if total >= 1e7:
        return f"{round(total / 1e6)}M"
    return f"{total / 1e6:.1f}".removesuffix(".0") + "M"


def register(subparsers: Any, composed: Any) -> None:
    parser = subparsers.add_parser(
        "model", help="show a model's shape, size and FLOPs, or import a Hugging Face checkpoint", epilog=EXAMPLES,
        description="Inspect model shapes without building them (no torch), or import a Llama/Qwen3 checkpoint "
                    "as a model project.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="model_action", metavar="ACTION", required=True)
    show = actions.add_parser(
        "show", help="shape, parameter counts and training FLOPs/token", epilog=EXAMPLES,
        description="Show a model: the project's (default), a model project's config, a preset, or the shape "
                    "closest to a parameter target. Builds nothing and never imports torch.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = show.add_mutually_exclusive_group()
    source.add_argument("--model-project", metavar="DIR", help="a model project directory (one YAML per size)")
    source.add_argument("--preset", choices=list(PRESETS), help="a named preset shape")
    source.add_argument("--target-params", type=parse_count, metavar="N",
                        help="the shape (head_dim 64) closest to N total params, e.g. 124M, 1.5B, 30000000")
    show.add_argument("--model-config", metavar="NAME",
                      help="size inside --model-project (or, in a project, inside the project's model project)")
    show.add_argument("--prefer-depth", action="store_true",
                      help="with --target-params: deep and thin (hidden/layers ≈ 20 instead of 64)")
    show.add_argument("--architecture", choices=ARCHITECTURES,
                      help="with --preset or --target-params (default llama)")
    show.add_argument("--vocab-size", type=int, metavar="V", help="override the vocabulary size (default 32000 "
                                                                    "for presets and targets)")
    show.add_argument("--seq-len", "--max-length", "--max_length", dest="seq_len", type=int, metavar="T",
                      help="sequence length for the attention FLOPs (default: the project's data.block_size, "
                           "else max_position_embeddings)")
    show.set_defaults(handler=run)

    imp = actions.add_parser(
        "import", help="import an HF Llama/Qwen3 checkpoint as a model project + weights",
        description="Read an HF Llama/Qwen3 directory (config.json + safetensors), check it loads into the "
                    "forgather Transformer, and write OUTPUT/NAME.yaml plus OUTPUT/weights/NAME/ "
                    "(model.safetensors, config.json, tokenizer files).",
        epilog="example:\n  forgather model import ~/hf/SmolLM2-135M --output projects/models/smollm2 --name 135M",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("hf_dir", metavar="HF_DIR", help="directory with config.json and model.safetensors")
    imp.add_argument("--output", metavar="DIR", help="model project directory to write (default: models/NAME)")
    imp.add_argument("--name", help="config name inside the model project (default: HF_DIR's name)")
    imp.add_argument("--force", action="store_true", help="replace an existing NAME.yaml and its weights")
    imp.set_defaults(handler=run)


# ---------------------------------------------------------------------------------------------- show


def _model_project_spec(model_dir: str, name: str | None) -> tuple[ModelSpec, str]:
    """The spec of one size of a model project, and the YAML it came from."""
    model_dir = str(model_project_dir(model_dir, Path.cwd(), "--model-project"))  # a bundled name or a directory
    if not name:
        available = sorted(p.stem for p in Path(model_dir).glob("*.yaml") if p.stem != "base")
        raise ModelError(f"--model-project {model_dir} needs --model-config NAME; available: {available}")
    tree: dict[str, Any] = {"model": {"project": str(Path(model_dir).resolve()), "config": name}}
    merge_model_project(tree, {"model.project": "--model-project", "model.config": "--model-config"}, Path.cwd())
    path = Path(model_dir) / (name if name.endswith(".yaml") else name + ".yaml")
    return ModelSpec.from_dict(tree["model"]["arch"], source=str(path)), str(path)


def _own_vocab(model: Any, project_dir: Path) -> int | None:
    """The vocab_size the model project's own YAML gives (before the project's overrides), or None."""
    tree: dict[str, Any] = {"model": {"project": model.project, "config": model.config}}
    try:
        merge_model_project(tree, {}, project_dir)
    except UserError:
        return None
    vocab = tree["model"].get("arch", {}).get("vocab_size")
    return vocab if isinstance(vocab, int) else None


def _project_here(args: argparse.Namespace, composed: Any) -> Any:
    """The project `model show` runs in (-p, or found from the current directory), composed; None outside one."""
    if composed is not None:
        return composed
    try:
        return compose_project(find_project(Path(args.project) if args.project else None, args.config))
    except UserError:
        return None


def _project_spec(args: argparse.Namespace, composed: Any) -> tuple[ModelSpec, str, int, SizeName | None]:
    if composed is None:  # `model` works outside a project, so the CLI does not compose for it
        try:
            project = find_project(Path(args.project) if args.project else None, args.config)
        except UserError as exc:
            raise ModelError(f"{exc}; or say which model: --model-project DIR --model-config NAME, --preset NAME "
                             "or --target-params N") from None
        composed = compose_project(project)
    if args.model_config:
        composed.tree.setdefault("model", {})["config"] = args.model_config
        composed.origins["model.config"] = "flag --model-config"  # a bad name is the flag's, not project.yaml's
    config, _ = resolve_config(composed, args)
    model = config.model
    shaped = (f"preset {model.preset}" if model.preset else
              f"closest shape to {model.target_params} params" if model.target_params else model.config)
    source = f"project {config.project_dir} (model {model.project} / {shaped})"
    spec = ModelSpec.from_dict(config.model.arch, source=f"{model.project}/{model.config}")
    named = None
    if model.project and model.config and not (model.preset or model.target_params):
        named = SizeName(str(model.config), _own_vocab(model, Path(config.project_dir)))
    return spec, source, int(config.data["block_size"]), named


@dataclass
class SizeName:
    """A model config's name (4M, 124M) and the vocab_size its own YAML gives, which the name assumes."""

    name: str
    vocab: int | None


def size_name_note(named: SizeName | None, spec: ModelSpec) -> str:
    """'' when the config's name says its size; else what it has at this vocab and why the name differs."""
    if named is None:
        return ""
    try:
        claimed = parse_param_count(named.name)
    except ValueError:
        return ""  # a name that is not a size (e.g. 'base', 'smollm2') claims nothing
    total, _ = parameter_counts(spec)
    if abs(total - claimed) <= 0.1 * claimed:
        return ""
    if named.vocab and named.vocab != spec.vocab_size:
        return (f"'{named.name}' is its size at its model project's vocab {named.vocab:,}; at vocab "
                f"{spec.vocab_size:,} it has {human_count(total)} parameters")
    return f"'{named.name}' is not its size: it has {human_count(total)} parameters at vocab {spec.vocab_size:,}"


def resolve_spec(args: argparse.Namespace, composed: Any) -> tuple[ModelSpec, str, int, SizeName | None]:
    """(spec, where it came from, sequence length, the size name it goes by) for the show options given."""
    if args.architecture and not (args.preset or args.target_params):
        raise ModelError("--architecture applies to --preset and --target-params; a model project's YAML sets "
                         "its own architecture")
    if args.prefer_depth and not args.target_params:
        raise ModelError("--prefer-depth applies only to --target-params")
    if args.model_config and (args.preset or args.target_params):
        raise ModelError("--model-config picks a size inside a model project; drop it with --preset/--target-params")
    arch = args.architecture or "llama"
    vocab = 32000 if args.vocab_size is None else args.vocab_size
    seq_len, named = None, None
    project = _project_here(args, composed) if (args.preset or args.target_params) and not args.architecture else None
    if project is not None:  # the shape `train --model-preset/--target-params` builds: the project's vocab and block
        project.tree.setdefault("model", {}).update(preset=args.preset, target_params=args.target_params,
                                                    prefer_depth=args.prefer_depth)
        spec, source, seq_len, _ = _project_spec(args, project)
    elif args.preset:
        spec, source = preset(args.preset, arch, vocab), f"preset {args.preset}"
    elif args.target_params:
        spec = shape_for_target_params(arch, args.target_params, vocab, prefer_depth=args.prefer_depth)
        source = f"closest shape to {human_count(args.target_params)} params" + (
            " (deep and thin)" if args.prefer_depth else "")
    elif args.model_project:
        spec, source = _model_project_spec(args.model_project, args.model_config)
        named = SizeName(str(args.model_config), spec.vocab_size)
    else:
        spec, source, seq_len, named = _project_spec(args, composed)
    if args.vocab_size is not None:
        spec.vocab_size = args.vocab_size
        spec.validate()
    if args.seq_len is not None:
        if args.seq_len <= 0:
            raise ModelError(f"--seq-len {args.seq_len} must be positive")
        seq_len = args.seq_len
    return spec, source, seq_len or spec.max_position_embeddings, named


def parameter_breakdown(spec: ModelSpec) -> dict[str, int]:
    """Parameters by part: embedding, attention and MLP (all layers), norms, lm_head (0 when tied)."""
    h, d = spec.hidden_size, spec.attn_head_dim
    attn = 2 * h * spec.num_heads * d + 2 * h * spec.num_kv_heads * d + (2 * d if spec.qk_norm else 0)
    return {
        "embedding": spec.vocab_size * h,
        "attention": spec.num_layers * attn,
        "mlp": spec.num_layers * 3 * h * spec.intermediate_size,
        "norms": spec.num_layers * 2 * h + (0 if spec.post_norm else h),
        "lm_head": 0 if spec.tie_embeddings else spec.vocab_size * h,
    }


def describe(spec: ModelSpec, source: str, seq_len: int, named: SizeName | None = None) -> str:
    """The `model show` report: shape, parameter counts and breakdown, FLOPs/token, a plain-words summary."""
    total, non_embed = parameter_counts(spec)
    parts = parameter_breakdown(spec)
    flops = flops_per_token(spec, seq_len)
    dense = 6 * (non_embed + spec.vocab_size * spec.hidden_size)
    attn_flops = flops - dense
    note = size_name_note(named, spec)
    if note:
        source += f": {human_count(total)} at vocab {spec.vocab_size:,}"
    tied = " (tied: also the lm_head)" if spec.tie_embeddings else ""
    heads = (f"{spec.num_heads} heads" if spec.num_kv_heads == spec.num_heads
             else f"{spec.num_heads} heads / {spec.num_kv_heads} kv")
    lines = [
        f"model       {spec.architecture} — {source}",
        f"shape       {spec.num_layers} layers × hidden {spec.hidden_size}, {heads} (head_dim {spec.attn_head_dim}), "
        f"mlp {spec.intermediate_size}, vocab {spec.vocab_size:,}",
        f"            rope_theta {spec.rope_theta:g}, tied embeddings {'yes' if spec.tie_embeddings else 'no'}, "
        f"qk_norm {'yes' if spec.qk_norm else 'no'}, {'post' if spec.post_norm else 'pre'}-norm, "
        f"max positions {spec.max_position_embeddings:,}",
        f"params      {total:>15,}  total ({human_count(total)})",
        f"            {non_embed:>15,}  non-embedding ({human_count(non_embed)}: blocks and norms, without the "
        "vocabulary matrices)",
        "            " + " · ".join(f"{k} {human_count(v)}" + (tied if k == "embedding" else "")
                                    for k, v in parts.items() if v),
        f"FLOPs/token {flops:>15,}  training at seq_len {seq_len:,} "
        f"(6·(N + lm_head) {dense:,} + attention 12·L·H·d·T {attn_flops:,})",
        "summary     " + summary(spec, seq_len),
    ]
    if note:
        lines.insert(6, f"            {note}")
    return "\n".join(lines)


def summary(spec: ModelSpec, seq_len: int) -> str:
    """One paragraph in plain words: size class, shape, where the parameters are, and a training budget."""
    total, non_embed = parameter_counts(spec)
    parts = parameter_breakdown(spec)
    embed_share = (parts["embedding"] + parts["lm_head"]) / total
    flops = flops_per_token(spec, seq_len)
    attention = flops - 6 * (non_embed + spec.vocab_size * spec.hidden_size)
    gqa = (f", {spec.num_heads // spec.num_kv_heads} query heads per kv head"
           if spec.num_kv_heads != spec.num_heads else "")
    tokens = 20 * total  # Chinchilla's ~20 tokens per parameter
    return (
        f"a {size_class(total)}-class {spec.architecture}: {spec.num_layers} blocks of width {spec.hidden_size} "
        f"({spec.num_heads} heads of {spec.attn_head_dim}{gqa}; SwiGLU {spec.intermediate_size / spec.hidden_size:.2f}"
        f"× wide), {'tied' if spec.tie_embeddings else 'untied'} {spec.vocab_size:,}-token embeddings holding "
        f"{embed_share:.0%} of the weights. One training token costs {flops / 1e9:.3g} GFLOP at {seq_len:,} "
        f"context (attention adds {attention / (flops - attention):.0%} over the matmuls); a Chinchilla budget of "
        f"{human_count(tokens)} tokens is {flops * tokens:.2e} FLOPs."
    )


# -------------------------------------------------------------------------------------------- import


# Copied beside the weights when HF_DIR has them: the tokenizer, and generate's stop tokens.
IMPORTED_EXTRAS = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")


def _default_name(hf_dir: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", hf_dir.resolve().name).strip("-.")
    return name or "imported"


def import_checkpoint(hf_dir: Path, output: Path, name: str, force: bool = False) -> tuple[ModelSpec, Path, Path]:
    """Load HF_DIR, verify it loads strictly into Transformer, write NAME.yaml and weights/NAME/; returns paths."""
    import torch

    from ..models.hf import load_hf, save_pretrained_hf
    from ..models.transformer import Transformer

    if not hf_dir.is_dir():
        raise ModelError(f"{hf_dir}: not a directory; give an HF model directory with config.json")
    yaml_path, weights = output / f"{name}.yaml", output / "weights" / name
    if not force and (yaml_path.exists() or weights.exists()):
        raise ModelError(f"{yaml_path if yaml_path.exists() else weights} already exists; pass --force to replace "
                         "it or --name to import under another name")
    spec, state = load_hf(hf_dir)
    with torch.device("meta"):  # shapes and names only: no memory, no init
        model = Transformer(spec)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ModelError(f"{hf_dir}: weights do not match the forgather {spec.architecture} model: {detail}") from None
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where the directory must be, a read-only place
        raise ModelError(f"cannot write {output} ({exc.strerror or exc}); choose another --output") from None
    if weights.exists():
        shutil.rmtree(weights)
    save_pretrained_hf(state, spec, weights)
    for extra in IMPORTED_EXTRAS:
        if (hf_dir / extra).is_file():
            shutil.copy2(hf_dir / extra, weights / extra)
    header = (f"# Imported by `forgather model import` from {hf_dir.resolve()}.\n"
              f"# Weights: weights/{name}/ (HF format; forgather.models.hf.load_hf reads them).\n")
    yaml_path.write_text(header + dump_yaml(spec.to_dict()), encoding="utf-8")
    return spec, yaml_path, weights


def _project_relative(path: Path) -> str:
    """path as model.project should spell it: relative to the enclosing project, else absolute."""
    try:
        project_dir = find_project().dir
    except UserError:
        return str(path.resolve())
    return os.path.relpath(path.resolve(), project_dir)


def run_import(args: argparse.Namespace) -> int:
    hf_dir = Path(args.hf_dir).expanduser()
    name = args.name or _default_name(hf_dir)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ModelError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (it becomes NAME.yaml)")
    output = Path(args.output).expanduser() if args.output else Path("models") / name
    spec, yaml_path, weights = import_checkpoint(hf_dir, output, name, args.force)
    total, _ = parameter_counts(spec)
    print(f"imported {hf_dir} — {spec.architecture}, {spec.num_layers} layers × {spec.hidden_size}, "
          f"{human_count(total)} params; loads strictly into the forgather Transformer")
    copied = [extra for extra in IMPORTED_EXTRAS if (hf_dir / extra).is_file()]
    print(f"model config  {yaml_path}")
    print(f"weights       {weights}/ ({', '.join(sorted(p.name for p in weights.iterdir()))})")
    print(f"copied        {', '.join(copied) if copied else 'nothing'} from {hf_dir}")
    if not (weights / "tokenizer.json").is_file():
        print(f"tokenizer     none: {hf_dir} has no tokenizer.json; set data.tokenizer.path to the model's tokenizer")
    print("\nTo use it, put in your project.yaml:")
    print(f"  model:\n    project: {_project_relative(output)}\n    config: {name}")
    if (weights / "tokenizer.json").is_file():
        print(f"  data:\n    tokenizer:\n      path: {_project_relative(weights / 'tokenizer.json')}")
    init_from = _project_relative(weights)
    print(f"  train:\n    init_from: {init_from}    # start from these weights instead of a random init")
    print(f"then start the run: forgather train --init-model (or, without editing train.init_from: "
          f"forgather train --init-model --set train.init_from={init_from}). init_from applies to a fresh run; "
          "a resumed run continues from its own checkpoints.")
    return 0


def run(args: argparse.Namespace, composed: Any) -> int:
    if args.model_action == "import":
        return run_import(args)
    spec, source, seq_len, named = resolve_spec(args, composed)
    print(describe(spec, source, seq_len, named))
    return 0
