"""Build one rank's model, data and trainer from the resolved config, then train."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from ..checkpoint.layout import launched_config, start_over_applies
from ..config import RunConfig
from ..console import phase
from ..data.shards import check_world_size
from ..data.spec import DataSpec
from ..dist.parallelize import apply_activation_checkpointing, apply_compile, unwrap, wrap_ddp, wrap_fsdp2
from ..dist.setup import DistInfo
from ..dist import sync
from ..dist.sync import barrier
from ..dist.shared_dir import check_shared_directory
from ..errors import ConfigError, DataError, ModelError
from ..models.attention_plan import plan_attention, training_problem
from ..models.spec import ModelSpec, flops_per_token
from ..models.transformer import build_model, materialize
from .checkpointing import RunCheckpointer
from .describe import describe_build, describe_first_reads, describe_policies
from .precision import PrecisionPlan, apply_process_settings, fsdp_mixed_precision, plan_precision
from .trainer import Components, Trainer


def seed_everything(seed: int) -> None:
    """The same seed on every rank, so every rank initialises identical weights."""
    random.seed(seed)
    torch.manual_seed(seed)


def data_spec(config: RunConfig, batch_size: int) -> DataSpec:
    """The data section as a DataSpec, relative paths taken from the project directory."""
    spec = DataSpec.from_dict(config.data, base_dir=config.project_dir)
    spec.batch_size = batch_size
    return spec


def open_rank_data(spec: DataSpec, info: DistInfo, reads_data: bool) -> Any:
    """Open tokenizer and streams. A tokenizer trained on the fly is trained by each node's local rank 0 while the
    others wait; chunks are packed (or read from the cache) later, by each rank for its own shards only."""
    from ..data.opening import open_data

    data = open_data(spec) if reads_data and info.local_rank == 0 else None
    barrier()
    if reads_data and info.local_rank != 0:
        data = open_data(spec)
    return data


def build_loaders(spec: DataSpec, data: Any, info: DistInfo, dispatch: bool) -> tuple[Any, Callable | None]:
    """(train loader, eval-loader factory): each rank reads its own shards, or rank 0 reads and dispatches."""
    from ..data.loader import OnePassLoader, ShardedLoader

    batch = spec.batch_size
    pin = info.device.type == "cuda"
    if not dispatch:
        train = ShardedLoader(data.train, batch, info.rank, info.world_size, pin)
        if data.val is None:
            return train, None
        return train, lambda: OnePassLoader(data.val, batch, info.rank, info.world_size, pin)

    from ..dist.dispatch import DispatchLoader

    # gloo moves CPU tensors; nccl needs them on the GPU.
    device = info.device if info.backend == "nccl" else torch.device("cpu")
    world_batch = batch * info.world_size
    main = info.is_main
    train = DispatchLoader(ShardedLoader(data.train, world_batch, 0, 1, pin) if main else None, batch,
                           spec.block_size, device)
    has_val = [data.val is not None] if main else [None]
    dist.broadcast_object_list(has_val, src=0)
    if not has_val[0]:
        return train, None
    return train, lambda: DispatchLoader(OnePassLoader(data.val, world_batch, 0, 1, pin) if main else None,
                                         batch, spec.block_size, device)


def hold_run_dir(run_dir: Path, info: DistInfo) -> None:
    """Rank 0 takes the run dir's exclusive lock for the job (one writer per run dir); every rank fails alike
    when another job holds it."""
    from ..dist import sync
    from ..run_lock import acquire

    sync.from_rank0(lambda: acquire(run_dir) and None)


def keep_checkpoint_tokenizer(spec: DataSpec, saved: Path | None, allow_change: bool, report: bool) -> None:
    """A resumed run tokenizes with the tokenizer its checkpoint was trained with: a tokenizer trained on the fly
    is not trained again on changed data, and a different configured one is refused unless allowed."""
    if saved is None:
        return
    from ..data.parquet_source import is_url
    from ..data.tokenizer import fetch_tokenizer, file_sha256, keep_copy

    configured = spec.tokenizer.path
    if configured is None:  # a copy outside the checkpoint, which retention may delete later in this run
        spec.tokenizer.path = str(keep_copy(saved, spec.resolved_cache_dir()))
        return

    local = fetch_tokenizer(configured, spec.resolved_cache_dir()) if is_url(configured) else Path(configured)
    if Path(local).is_file() and file_sha256(local) == file_sha256(saved):
        return
    if not allow_change:
        raise DataError(f"data.tokenizer.path {configured} is not the tokenizer {saved.parent.name} was trained with "
                        f"({saved}); the model's embeddings belong to that one: restore data.tokenizer.path, or add "
                        "--allow-tokenizer-change to continue with the new tokenizer anyway")
    if report:
        print(f"forgather: continuing with a different tokenizer than {saved} (--allow-tokenizer-change)", flush=True)


def load_initial_weights(model: nn.Module, spec: ModelSpec, directory: Path) -> None:
    """Start from pretrained HF weights (a resumed checkpoint still takes precedence)."""
    from ..models.hf_config import init_from_problem

    problem = init_from_problem(spec, directory)  # the launcher checked too, unless the directory changed since
    if problem:
        raise ModelError(problem)
    from ..checkpoint.load import load_weights

    load_weights(directory, model)  # this rank's rows only (its shard under FSDP2)


def compile_enabled(config: RunConfig, info: DistInfo) -> bool:
    """train.compile, or by default on for GPUs and off for CPU (where compile time outweighs the gain)."""
    return config.train.compile if config.train.compile is not None else info.device.type == "cuda"


def build_wrapped_model(config: RunConfig, spec: ModelSpec, info: DistInfo, checkpointer: RunCheckpointer,
                        precision: PrecisionPlan) -> nn.Module:
    """Initialise identically on every rank (same seed), AC and compile per block, then DDP or FSDP2; start from
    init_from's weights if given.

    Under FSDP2 the model is built on the meta device and sharded before any weight exists; each rank then
    allocates and initialises only its own rows (the same values an unsharded init gives), so no rank ever
    holds the whole model."""
    seed_everything(config.seed)
    fsdp = config.dist.mode == "fsdp2"
    model = build_model(spec, config.model.attn_implementation, device="meta" if fsdp else info.device)
    train = config.train
    if train.activation_checkpointing:
        apply_activation_checkpointing(model, train.activation_checkpointing_every)
    if compile_enabled(config, info):
        attention = plan_attention(config.model.attn_implementation, info.device.type)
        apply_compile(model, fullgraph=attention.compiles_whole)
    if fsdp:
        model = wrap_fsdp2(model, info, fsdp_mixed_precision(precision), config.dist.fsdp_shard_size)
        materialize(model, info.device)
    if config.train.init_from:
        load_initial_weights(model, spec, config.path(config.train.init_from))
    return model if fsdp else wrap_ddp(model, info)


def print_run_description(config: RunConfig, spec: ModelSpec, info: DistInfo, data: Any, dspec: DataSpec,
                          model: nn.Module, precision: PrecisionPlan) -> None:
    """--verbose-info: model (as built), data and parallelism details, with the precision and attention used."""
    from .describe import describe_data, describe_model, describe_parallelism

    tokens_per_step = dspec.batch_size * dspec.block_size * config.train.grad_accum_steps * info.world_size
    attention = plan_attention(config.model.attn_implementation, info.device.type)
    lines = [*describe_model(config, spec, dspec.block_size, attention, model), *describe_data(data),
             *describe_parallelism(config, info, tokens_per_step, compile_enabled(config, info), precision)]
    print("\n".join(lines), flush=True)


def after_elastic_restart(config: RunConfig, info: DistInfo) -> None:
    """When torchrun restarted the workers (--max-restarts), --init-model applies only while the failed attempt had
    not yet replaced the previous run (start_over_applies); otherwise the restart resumes from the latest checkpoint.
    """
    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    if restarts == 0 or not config.train.init_model:
        return
    # Rank 0 looks and tells the others: every rank must take the same path, whatever its node's view of the files.
    if sync.from_rank0(lambda: start_over_applies(launched_config(), True, restarts)):
        if info.is_main:
            print(f"forgather: worker restart {restarts} after a failure: starting over again (the failed attempt "
                  "had not yet replaced the previous run)", flush=True)
        return
    config.train.init_model = config.train.overwrite = False
    if info.is_main:
        print(f"forgather: worker restart {restarts} after a failure: resuming from the latest checkpoint "
              "(--init-model applied to the first attempt only)", flush=True)


def train(config: RunConfig, info: DistInfo) -> int:
    """Everything one rank does for `forgather train`; returns the exit status."""
    after_elastic_restart(config, info)
    spec = ModelSpec.from_dict(config.model.arch, source="model.arch")
    check_shared_directory(config.run_dir)
    hold_run_dir(config.run_dir, info)
    checkpointer = RunCheckpointer(config, spec, info)
    checkpointer.check_init_policy()
    precision = plan_precision(config.train.precision, info.device.type)
    problem = training_problem(config.model.attn_implementation, info.device.type, precision.compute)
    if problem:  # the CLI checked this already, unless the ranks got another device than it saw
        raise ConfigError(f"model.attn_implementation={config.model.attn_implementation}: {problem}")
    apply_process_settings(precision)
    if info.is_main:
        print("\n".join(describe_policies(config, info, precision)), flush=True)
    checkpointer.locate()

    dspec = data_spec(config, config.train.batch_size)
    dispatch = config.dist.mode == "dispatch" and info.world_size > 1
    check_world_size(dspec.shards, 1 if dispatch else info.world_size)
    keep_checkpoint_tokenizer(dspec, checkpointer.checkpoint_tokenizer(), config.checkpoint.allow_tokenizer_change,
                              info.is_main)
    phase("data: opening the sources and the tokenizer", info.is_main)
    data = open_rank_data(dspec, info, reads_data=info.is_main or not dispatch)
    if data is not None:
        from ..data.tokenizer import check_vocab

        check_vocab(data.tokenizer.vocab_size, spec.vocab_size)
        checkpointer.tokenizer = data.tokenizer
    train_loader, eval_loader = build_loaders(dspec, data, info, dispatch)
    phase(describe_build(config, spec, info, dspec.block_size), info.is_main)
    model = build_wrapped_model(config, spec, info, checkpointer, precision)
    if config.train.verbose_info and info.is_main:
        print_run_description(config, spec, info, data, dspec, model, precision)

    parts = Components(
        model=model,
        flops_per_token=flops_per_token(spec, dspec.block_size),
        train_batches=train_loader,
        eval_batches=eval_loader,
        tokens_per_batch=dspec.batch_size * dspec.block_size,
        precision=precision,
        compiled=compile_enabled(config, info),
        checkpointer=checkpointer,
    )
    checkpointer.clear_previous_run()  # only now: a start that failed above left the old run as it was
    checkpointer.write_initial_model(unwrap(model))
    if info.is_main:
        phase(describe_first_reads(data))
    return Trainer(config, info, parts).fit()
