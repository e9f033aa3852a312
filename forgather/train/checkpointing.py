"""The run's checkpoint policy: where checkpoints live, when --init-model may start, what resume restores."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import get_model_state_dict

from .. import checkpoint
from ..config import RunConfig, render_config
from ..data.tokenizer import Tokenizer, save_tokenizer_files
from ..dist import sync
from ..checkpoint.background import BackgroundWriter
from ..checkpoint.layout import TRAINER_STATE_FILE, adopt_launch_config, launched_config, record_start_over
from ..dist.setup import DistInfo
from ..errors import CheckpointError
from ..models.hf import TokenIds, hf_named, write_hf_config, write_hf_weights
from ..models.spec import ModelSpec


def weights_are_finite(model: nn.Module) -> bool:
    """Collective: whether every rank's parameters (its shards, under FSDP2) are all finite."""
    import torch.distributed as dist

    local = [p.to_local() if hasattr(p, "to_local") else p for p in model.parameters()]
    device = local[0].device if local else torch.device("cpu")
    finite = torch.stack([torch.isfinite(p).all() for p in local]).all() if local else torch.tensor(True)
    flag = finite.to(device=device, dtype=torch.int32).reshape(1)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


class RunCheckpointer:
    """Saves and restores this run's checkpoints under RUN_DIR/checkpoints, in HF-named safetensors."""

    def __init__(self, config: RunConfig, spec: ModelSpec, info: DistInfo) -> None:
        self.config = config
        self.spec = spec
        self.info = info
        # Set once the data is open; saved beside the weights (rank 0, the writer, reads data in every mode).
        self.tokenizer: Tokenizer | None = None
        self.root = config.run_dir / "checkpoints"
        self.latest: Path | None = None  # set by locate()
        # Step dirs named damaged when the run resumed (rank 0, which applies retention): kept, never counted.
        self.damaged: set[str] = set()
        self.config_text = render_config(config)  # never a value taken from the environment
        self.spec_dtype = torch.float32  # the dtype of the weights (fp32 master weights in every mode)
        self.writer = BackgroundWriter(info.world_size)
        self.saves = 0
        # An async save's host copy of this rank's state, kept for the next save to copy into (it waits for
        # the previous write first): allocating and pinning it again at every save cost more than the copy.
        self.staging = checkpoint.StagingBuffers()

    def token_ids(self) -> TokenIds:
        """The run tokenizer's special ids, for config.json / generation_config.json."""
        tok = self.tokenizer
        return TokenIds(tok.bos_id, tok.eos_id, tok.pad_id) if tok is not None else TokenIds()

    def write_model_files(self, hf_state: dict[str, torch.Tensor] | None, out: Path) -> None:
        """A checkpoint's HF files: the weights when given (an unsharded model, HF names), config.json with the
        tokenizer's ids, generation_config.json and the tokenizer: the directory transformers loads."""
        if hf_state is not None and self.spec.tie_embeddings:
            hf_state = {k: v for k, v in hf_state.items() if k != "lm_head.weight"}  # HF re-ties it
        dtype = write_hf_weights(hf_state.items(), out) if hf_state is not None else self.spec_dtype
        write_hf_config(self.spec, out, dtype, self.token_ids())
        if self.tokenizer is not None:
            save_tokenizer_files(self.tokenizer, out)

    def check_init_policy(self) -> None:
        """--init-model refuses to replace checkpoints unless --overwrite. Nothing is deleted here: the old run
        is cleared only once the new one has its data and model (clear_previous_run)."""
        checkpoint.check_fresh_start(self.root, self.config.train.init_model, self.config.train.overwrite)

    def clear_previous_run(self) -> None:
        """Collective. With --init-model --overwrite, once the new run's data, tokenizer and model are built (so
        a start that fails leaves the old run whole): delete the old checkpoints, and move the old run's logs
        (metrics.jsonl, TensorBoard events) and exports to RUN_DIR/archive, so runs never mix."""
        import torch.distributed as dist

        if self.config.train.init_model and self.info.is_main:
            if checkpoint.has_checkpoints(self.root):
                shutil.rmtree(self.root)
            # After the old checkpoints went: the new settings never sit beside them.
            adopt_launch_config(self.config.run_dir, launched_config())
            record_start_over(self.config.run_dir, dict(os.environ))  # a requeue of this job resumes from now on
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for name in ("runs", "exports"):
                self._archive(self.config.run_dir / name, f"{name}-{stamp}")
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.barrier()  # nobody saves or logs into the run dir while rank 0 may be clearing it

    def _archive(self, directory: Path, name: str) -> None:
        if not directory.is_dir() or not any(directory.iterdir()):
            return
        archive = next(path for n in range(1, 10_000)
                       if not (path := self.config.run_dir / "archive" / (name if n == 1 else f"{name}-{n}")).exists())
        archive.parent.mkdir(parents=True, exist_ok=True)
        directory.rename(archive)
        print(f"forgather: the previous run's {directory.name} moved to {archive}", flush=True)

    def write_initial_model(self, model: nn.Module) -> Path | None:
        """With --init-model, the freshly initialised weights as an HF model dir (RUN_DIR/initial_model).
        Collective under FSDP2 (each weight is gathered in turn); only rank 0 writes."""
        if not self.config.train.init_model:
            return None
        named = hf_named(get_model_state_dict(model), self.spec)
        if not self.info.is_main:
            for _ in named:  # take part in each weight's gather
                pass
            return None
        out = self.config.run_dir / "initial_model"
        self.write_model_files(dict(named), out)
        return out

    def save(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, trainer_state: dict,
             data_state: dict, on_saved: Callable[[Path], None] | None = None) -> Path:
        """Collective: check the weights are finite, stage this rank's part (the loop waits only for that), and
        write it on the background thread (checkpoint.async_save) or here; retention and exports follow on rank 0.
        A previous background save is finished first, and its failure raised."""
        self.writer.wait()
        self.raise_failure()
        if not weights_are_finite(model):
            from .health import TrainingDiverged

            raise TrainingDiverged(f"the weights hold NaN/Inf at step {step}: nothing was saved, the previous "
                                   "checkpoint stays the latest; lower --learning-rate or check the data")
        staged = checkpoint.stage_checkpoint(
            self.root, step, model, optimizer, trainer_state={**trainer_state, "weights_finite": True},
            data_state=data_state, config_text=self.config_text, write_model_files=self.write_model_files,
            pin_memory=self.info.device.type == "cuda",
            copy=self.config.checkpoint.async_save,  # written here at once: stream the live tensors, no copy
            buffers=self.staging)
        self.saves += 1
        export = self.saves % self.config.checkpoint.export_every == 0 if self.config.checkpoint.export_every else False

        def job(group: Any) -> None:
            path = checkpoint.write_staged(staged, group)
            if self.info.is_main:
                cfg = self.config.checkpoint
                self.damaged.discard(path.name)  # saved again: sound now
                checkpoint.apply_retention(self.root, cfg.keep_last, cfg.keep_best, newest=path,
                                           damaged=frozenset(self.damaged))
                if export:
                    self.export(path)
            if on_saved is not None:
                on_saved(path)

        self.writer.submit(job, background=self.config.checkpoint.async_save)
        return staged.final

    def export(self, path: Path) -> Path:
        """Rank 0: an HF model dir of a published checkpoint under RUN_DIR/exports/ (what transformers loads)."""
        from ..checkpoint.export import export_checkpoint

        out = self.config.run_dir / "exports" / path.name
        return export_checkpoint(path, out, force=True)

    def failure(self) -> str | None:
        """A background save's one-line failure, if one failed."""
        return self.writer.failure()

    def drain(self, timeout: float | None = None) -> None:
        """Let a save in flight finish (a run stopping on an error still gets the checkpoint it was writing)."""
        self.writer.wait(timeout)

    def raise_failure(self) -> None:
        """A background save's failure, as the one-line error it is (the previous checkpoint is still latest)."""
        failure = self.writer.failure()
        if failure is not None:
            raise CheckpointError(failure)

    def finish(self, final: Path | None = None) -> None:
        """Wait for the save in flight; export the final checkpoint (checkpoint.export_final); raise a failure."""
        self.writer.wait()
        self.raise_failure()
        if final is not None and self.config.checkpoint.export_final and self.info.is_main:
            out = self.export(final)
            print(f"forgather: exported {final.name} for transformers to {out}", flush=True)

    def locate(self) -> Path | None:
        """Collective: the checkpoint this run resumes from, found and verified once (rank 0) and broadcast.

        None for a fresh start (--init-model, or no checkpoint yet). A run dir whose checkpoints all fail to verify
        is refused, never restarted from scratch over them; a damaged newest one is named and skipped."""
        if self.config.train.init_model:
            self.latest = None
            return None

        def find() -> tuple[str | None, list[str]]:
            latest, failures = checkpoint.find_latest_verified(self.root)
            self.damaged = {path.name for path, _ in failures}
            reasons = [f"{path.name}: {reason}" for path, reason in failures]
            if latest is None and failures:
                raise CheckpointError(f"no checkpoint in {self.root} verifies ({'; '.join(reasons)}); refusing to start "
                                      "over them from scratch: restore the damaged files, remove the damaged "
                                      "checkpoints to resume from an older one, or start over with --init-model "
                                      "--overwrite")
            return (str(latest) if latest else None), reasons

        latest, skipped = sync.from_rank0(find)
        if self.info.is_main:
            for reason in skipped:
                print(f"forgather: skipping damaged checkpoint {reason}", flush=True)
        self.latest = Path(latest) if latest else None
        return self.latest

    def checkpoint_tokenizer(self) -> Path | None:
        """The tokenizer.json saved in the checkpoint this run resumes from (a resumed run keeps its tokenizer)."""
        found = self.latest / "tokenizer.json" if self.latest is not None else None
        return found if found is not None and found.is_file() else None

    def resumed_progress(self) -> tuple[int, int]:
        """(step, tokens trained) of the checkpoint this run resumes from; (0, 0) when starting fresh."""
        if self.latest is None:
            return 0, 0
        state = json.loads((self.latest / TRAINER_STATE_FILE).read_text(encoding="utf-8"))
        return int(state.get("step", 0)), int(state.get("tokens", 0))

    def resume(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict] | None:
        """Restore from the checkpoint `locate` found (verified there); None when starting fresh."""
        if self.latest is None:
            if self.info.is_main:
                init_from = self.config.train.init_from
                start = (f"the weights of train.init_from {self.config.path(init_from)}" if init_from
                         else "initialised weights")
                print(f"forgather: no checkpoint in {self.root}; starting from {start}", flush=True)
            return None
        if self.info.is_main:
            print(f"forgather: resuming from {self.latest}", flush=True)
        return checkpoint.load_checkpoint(self.latest, model, optimizer, verified=True)
