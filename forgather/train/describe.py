"""The run described in plain lines at start: model, data and parallelism (`--verbose-info`)."""

from __future__ import annotations

from typing import Any

from ..config import RunConfig
from ..dist.setup import DistInfo
from ..models.attention_plan import AttentionPlan, plan_attention
from ..models.spec import ModelSpec, flops_per_token, human_count, parameter_counts
from .precision import PrecisionPlan


def built_parameter_counts(model: Any) -> tuple[int, int]:
    """(total, non_embedding) parameters of the built model (global sizes, also when sharded; tied weights once).

    non_embedding leaves out the vocabulary matrices, a tied one once, as models.spec.parameter_counts does.
    """
    total = sum(p.numel() for p in model.parameters())
    vocabulary = {id(w): w for w in (model.embed_tokens.weight, model.lm_head.weight)}  # one entry when tied
    return total, total - sum(w.numel() for w in vocabulary.values())


def describe_model(config: RunConfig, spec: ModelSpec, block_size: int, attention: AttentionPlan,
                   model: Any = None) -> list[str]:
    """Architecture, shape, the attention backends used, parameter counts (of the built model) and FLOPs/token."""
    total, non_embedding = (parameter_counts(spec) if model is None
                            else built_parameter_counts(model))
    return [
        f"model: {spec.architecture} from {config.model.project}/{config.model.config}, attention "
        f"{attention.requested} → {attention.packed} for packed rows, {attention.causal} for one-document rows",
        f"  layers {spec.num_layers}, hidden {spec.hidden_size}, heads {spec.num_heads} (kv {spec.num_kv_heads}, "
        f"head_dim {spec.attn_head_dim}), mlp {spec.intermediate_size}, vocab {spec.vocab_size}, "
        f"rope θ {spec.rope_theta:g}, tied embeddings {spec.tie_embeddings}, qk-norm {spec.qk_norm}",
        f"  parameters {total:,} total ({human_count(total)}), {non_embedding:,} non-embedding "
        f"({human_count(non_embedding)}); {human_count(flops_per_token(spec, block_size))} training FLOPs/token at "
        f"{block_size} tokens",
    ]


def describe_data(data: Any) -> list[str]:
    """Sources with their documents and draw shares, tokenizer, blocks and fill (rank 0's opened data)."""
    if data is None:
        return ["data: read by rank 0 and dispatched"]
    spec, train = data.spec, data.train
    total = max(1, sum(train.counts))
    lines = [f"data: {spec.mode} mode, block {spec.block_size} tokens, pack window {spec.pack_window}, "
             f"seed {spec.seed}, tokenizer {data.tokenizer.path} ({data.tokenizer.vocab_size} ids)"]
    for source, n in zip(train.sources, train.counts):
        lines.append(f"  train source {source.name}: {n:,} documents, draw share {n / total:.3f}")
    if data.val is not None:
        lines.append(f"  validation: {sum(data.val.counts):,} documents from {len(data.val.sources)} source(s)")
    lines.append(f"  {train.shards} shards of ~{sum(train.counts) // train.shards:,} documents, chunks of "
                 f"{spec.chunk_tokens:,} tokens, shuffle {spec.shuffle}")
    return lines


def describe_build(config: RunConfig, spec: ModelSpec, info: DistInfo, block_size: int) -> str:
    """The startup line of the model build: size, FLOPs per token and where it goes."""
    total, non_embedding = parameter_counts(spec)
    return (f"model: building {spec.architecture} with {human_count(total)} parameters ({human_count(non_embedding)} "
            f"non-embedding), {human_count(flops_per_token(spec, block_size))} training FLOPs/token at {block_size} "
            f"tokens; {config.dist.mode} over {info.world_size} rank(s) on {info.device.type}")


def describe_first_reads(data: Any) -> str:
    """The startup line of where the first batches come from: the data cache, packing into it, or streaming."""
    train = data.train
    if train.mode != "cached":
        return "data: streaming: documents are tokenized and packed as they are read"
    if train.chunk_path(0, 0).is_dir():
        return f"data: reading packed chunks from the cache {train.cache_root}"
    return (f"data: packing chunks of ~{train.chunk_tokens:,} tokens into the cache {train.cache_root} as they are "
            "first read (once for these data settings; `forgather data prepare` does it ahead of training)")


def describe_parallelism(config: RunConfig, info: DistInfo, tokens_per_step: int, use_compile: bool,
                         precision: PrecisionPlan) -> list[str]:
    """World, backend, device, mode, the precision used and the batch arithmetic."""
    train = config.train
    compute = "bf16" if precision.bf16 else "fp32"
    return [
        f"parallelism: {config.dist.mode} over {info.world_size} rank(s), backend {info.backend}, device "
        f"{info.device.type}; compile {use_compile}, activation checkpointing {train.activation_checkpointing}, "
        f"precision {train.precision} → {compute} compute, {precision.master} master weights, {precision.reduce} "
        f"reductions{', TF32 matmuls' if precision.tf32 else ''}".replace("float32", "fp32"),
        f"  batch {train.batch_size} sequences/rank × {train.grad_accum_steps} accumulation × {info.world_size} "
        f"ranks = {tokens_per_step:,} tokens/step",
    ]


def describe_policies(config: RunConfig, info: DistInfo, precision: PrecisionPlan) -> list[str]:
    """The run-wide decisions every rank applies (precision, attention backend), printed once at start."""
    return [precision.describe(), plan_attention(config.model.attn_implementation, info.device.type).describe()]
