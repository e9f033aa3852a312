"""The training loop: steps, evaluation, logging, checkpoints, resume and clean stops.

Nothing is read back from the device on ordinary steps: the loss and grad norm are read on log steps,
loss health is checked when they are (health.py), and a stop request is agreed one step late without a
blocking collective (agreement.py). Evaluation and checkpoints sync, and are left out of throughput.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from ..config import RunConfig
from ..console import phase
from ..errors import CheckpointError
from ..dist.parallelize import describe_graph_breaks, graph_breaks
from ..checkpoint.layout import adopt_launch_config, launched_config
from ..dist.setup import DistInfo, report_stopped, use_step_timeout
from ..lifeline import STOP_SIGNALS, stop_requested_early
from ..resume_config import budget_behind_the_run
from .agreement import StepAgreement
from .health import LossMonitor
from .metrics import MetricsSink, ThroughputMeter, local_state_bytes, memory_stats, peak_flops
from .optim import build_optimizer, build_scheduler, effective_warmup, scaled_learning_rate, warmup_warning
from .precision import PrecisionPlan, autocast
from .progress import Progress
from .step import drop_single_document_ids, eval_loss, train_step

SECOND_SIGNAL_AFTER_S = 2.0
SAVE_DRAIN_S = 300.0  # how long a failing run waits for a checkpoint still being written
NO_DATA_EPOCH = 1 << 40  # posted by a rank that reads no data; never the minimum


@dataclass
class TrainState:
    """Progress that a checkpoint carries besides weights and optimizer moments."""

    step: int = 0
    tokens: int = 0
    best_eval_loss: float | None = None
    eval_loss: float | None = None
    loss: float | None = None
    loss_ema: float | None = None
    evals_without_improvement: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Components:
    """What the trainer is handed: built and wrapped by forgather.run."""

    model: nn.Module
    flops_per_token: float
    train_batches: Any  # iterable of batch dicts, with state_dict()/load_state_dict()
    eval_batches: Callable[[], Iterable[dict[str, torch.Tensor]]] | None
    tokens_per_batch: int  # tokens in one rank's micro-batch
    precision: PrecisionPlan
    compiled: bool = False  # blocks under torch.compile: graph breaks are reported after the first step
    # save(step, model, optimizer, trainer_state, data_state, on_saved) / resume(model, optimizer) / finish(final)
    # / failure() / drain(timeout): see train/checkpointing.py
    checkpointer: Any = None


def scaled_interval(every: int, cadence: float) -> int:
    """An interval multiplied by `step_cadence`; 0 stays 0 (disabled)."""
    return 0 if every <= 0 else max(1, round(every * cadence))


class Trainer:
    """Runs `fit()` on one rank; every rank runs the same sequence of collectives."""

    def __init__(self, config: RunConfig, info: DistInfo, parts: Components) -> None:
        self.config = config
        self.train_cfg = config.train
        self.info = info
        self.parts = parts
        self.model = parts.model
        self.state = TrainState()
        self.stop_requested = 0
        self._signals_seen = 0
        self._epoch_seen: int | None = None

    # -- hooks a subclass may override -------------------------------------------------------
    def _prepare(self) -> None:
        """Budget, optimizer, schedule, resume state and outputs."""
        cfg = self.train_cfg
        micro = self.parts.tokens_per_batch
        self.tokens_per_step = micro * cfg.grad_accum_steps * self.info.world_size
        self.total_steps = cfg.max_steps or 0
        if cfg.max_tokens:  # the tokens still to train, at this launch's tokens per step (the batch may have changed)
            done_steps, done_tokens = self.parts.checkpointer.resumed_progress() if self.parts.checkpointer else (0, 0)
            self.total_steps = done_steps + max(0, math.ceil((cfg.max_tokens - done_tokens) / self.tokens_per_step))
        cadence = cfg.step_cadence
        self.log_every = scaled_interval(cfg.log_every, cadence)
        self.eval_every = scaled_interval(cfg.eval_every, cadence)
        self.save_every = scaled_interval(self.config.checkpoint.save_every, cadence)
        lr = scaled_learning_rate(cfg, self.tokens_per_step)
        self.optimizer = build_optimizer(self.model, cfg, lr, self.info.device)
        self.scheduler = build_scheduler(self.optimizer, cfg, max(self.total_steps, 1))
        self.autocast = autocast(self.parts.precision)
        self._resume()
        self._loss_step = self.state.step if self.state.loss is not None else None  # the step state.loss is of
        self.losses = LossMonitor(cfg.divergence_factor, effective_warmup(cfg, self.total_steps), self.state.loss_ema)
        # Losses are read on log steps; without logging, every 100 steps, so unread ones never pile up.
        self.read_every = self.log_every or 100
        # Stop requests, a failed background save, and the data epoch (the minimum over ranks, posted negated:
        # the agreement is a MAX).
        self.agreement = StepAgreement(("stop", "save_failed", "minus_epoch"), self.info.world_size)
        self.sink = MetricsSink(self.config.run_dir / "runs", self.total_steps, self.state.step, self.info.is_main)
        clamped = warmup_warning(cfg, self.total_steps)
        if clamped:
            self.sink.message(clamped)
        self.meter = ThroughputMeter(self.parts.flops_per_token, peak_flops(self.info.device, cfg.peak_flops),
                                     self.info.world_size, synchronize=self._synchronize)

    def _resume(self) -> None:
        if self.parts.checkpointer is None:
            return
        restored = self.parts.checkpointer.resume(self.model, self.optimizer)
        if restored is None:
            return
        trainer_state, data_state = restored
        self.scheduler.load_state_dict(trainer_state.pop("scheduler"))
        trainer_state.pop("weights_finite", None)  # the checkpoint's record that nothing non-finite was saved
        self._apply_configured_learning_rate()
        self.state = TrainState(**trainer_state)
        if data_state and self.config.checkpoint.restore_dataset_state:
            self.parts.train_batches.load_state_dict(data_state)
        elif data_state and self.info.is_main:  # the one resume change that was not said anywhere
            print("forgather: checkpoint.restore_dataset_state is false: the data stream starts again from its "
                  "beginning, not from the checkpoint's position", flush=True)

    def _apply_configured_learning_rate(self) -> None:
        """The scheduler's saved base LR is the old run's; a resumed run's config (which records a --lr change)
        decides it, from the restored step on."""
        peak = scaled_learning_rate(self.train_cfg, self.tokens_per_step)
        factor = self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)
        self.scheduler.base_lrs = [peak] * len(self.optimizer.param_groups)
        for group in self.optimizer.param_groups:
            group["initial_lr"], group["lr"] = peak, peak * factor
        self.scheduler._last_lr = [peak * factor] * len(self.optimizer.param_groups)

    def _train_step(self, micro_batches: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; returns (loss, grad norm) as device scalars, unread."""
        sharded_accum = self.config.dist.mode == "fsdp2" and self.config.dist.fsdp_sharded_grad_accum
        loss, _ = train_step(self.model, micro_batches, self.info.world_size, self.autocast, sharded_accum)
        clip = self.train_cfg.clip_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip if clip > 0 else float("inf"))
        if hasattr(norm, "full_tensor"):  # a DTensor under FSDP2
            norm = norm.full_tensor()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return loss, norm

    def _evaluate(self) -> dict[str, float]:
        if self.parts.eval_batches is None:
            return {}
        self.model.eval()
        batches = [self._to_device(b) for _, b in zip(range(self.train_cfg.eval_batches), self.parts.eval_batches())]
        loss, tokens = eval_loss(self.model, batches, self.autocast)
        self.model.train()
        if not tokens:
            return {}
        return {"eval/loss": loss, "eval/perplexity": math.exp(min(loss, 50.0))}

    # -- the loop -------------------------------------------------------------------------------
    def fit(self) -> int:
        """Train to the budget or a stop signal; returns the process exit status."""
        self._prepare()
        self._install_signal_handlers()
        if self.info.is_main:
            self.sink.message(f"training steps {self.state.step}→{self.total_steps}, "
                              f"{self.tokens_per_step:,} tokens/step, world {self.info.world_size}")
        batches = self._batch_iterator()
        try:
            status = self._loop(batches)
            self.agreement.close()
            return status
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # stops the loader's read-ahead thread before the process group goes away
            if self.parts.checkpointer is not None:  # a save in flight when an error stops the run still lands
                self.parts.checkpointer.drain(timeout=SAVE_DRAIN_S)
            self.sink.close()

    def _loop(self, batches: Iterator[dict[str, torch.Tensor]]) -> int:
        self.model.train()
        self._first_step = self.state.step
        if self._first_step >= self.total_steps:  # resumed at or past its budget (or a budget of 0 steps)
            return self._nothing_to_train()
        if self.info.is_main:  # under way: this launch's settings become the run's (a refused one never did)
            adopt_launch_config(self.config.run_dir, launched_config())
        self.progress = Progress(self.state.step, self.total_steps, self.tokens_per_step)
        while self.state.step < self.total_steps:
            agreed = self.agreement.exchange(stop=self.stop_requested, save_failed=self._save_failed(),
                                             minus_epoch=-self._data_epoch())
            if agreed["save_failed"]:  # every rank stops at the same step, with the failing rank's message
                self._raise_save_failure()
            if agreed["stop"]:
                if self.state.step > self._first_step:
                    self._save("signal", wait=True)
                    self.sink.message(f"stopped by signal at step {self.state.step}; checkpoint saved")
                else:  # asked before a step was trained: what the run holds already is where it resumes
                    self.sink.message(f"stopped by signal at step {self.state.step}, before training a step; "
                                      "nothing new to save")
                report_stopped(self.info.rank)
                return 0
            self._save_at_epoch_end(-agreed["minus_epoch"])
            first = self.state.step == self._first_step
            if first:
                phase("first step: waiting for the first batches", self.info.is_main)
            waited_from = time.perf_counter()
            micro = [self._to_device(next(batches)) for _ in range(self.train_cfg.grad_accum_steps)]
            data_wait = time.perf_counter() - waited_from
            if first:
                what = ("compiling the model's blocks (torch.compile, once per process)" if self.parts.compiled
                        else "forward, backward and optimizer step")
                phase(f"first step: {what}", self.info.is_main)
            loss, grad_norm = self._train_step(micro)
            self.state.step += 1
            self.state.tokens += self.tokens_per_step
            self.meter.add(self.tokens_per_step, data_wait)
            self.losses.add(loss, grad_norm)
            if self.state.step == self._first_step + 1:
                use_step_timeout(self.config.dist)  # startup (data, compile) is over
                if self.parts.compiled:
                    self.sink.message(describe_graph_breaks(graph_breaks()))  # every block has compiled by now
            self._after_step(grad_norm)
            if self._patience_exhausted():
                self.sink.message(f"early stopping at step {self.state.step}: no better eval loss in "
                                  f"{self.state.evals_without_improvement} evaluations")
                break
        self._read_losses()  # the last steps' losses, checked even when nothing is saved
        if self.config.checkpoint.save_strategy != "no" and self.state.step > 0:
            self._save("final", wait=True)
        elif self.parts.checkpointer is not None:
            self.parts.checkpointer.finish()
        return 0

    def _nothing_to_train(self) -> int:
        """A resume at the budget does nothing, and saves and exports nothing again; one past it is refused (the
        steps it asks for are behind the run)."""
        step, total = self._first_step, self.total_steps
        if step > total:
            raise budget_behind_the_run(step, total)
        self.sink.message(f"the run is at step {step} of {total}: nothing to train; raise --max-steps to continue")
        if self.parts.checkpointer is not None:
            self.parts.checkpointer.finish()
        return 0

    def _after_step(self, grad_norm: torch.Tensor) -> None:
        step = self.state.step
        self.sink.advance()
        scalars: dict[str, float] = {}
        # The last step always logs, so every run records its final loss (log_every 0: only that one).
        log_step = step == self.total_steps or (bool(self.log_every) and step % self.log_every == 0)
        if log_step or step % self.read_every == 0:
            self._read_losses()
        if log_step:
            scalars = {"loss": self.state.loss, "lr": self.scheduler.get_last_lr()[0], "grad_norm": grad_norm.item(),
                       "tokens": float(self.state.tokens), **self.meter.report(), **memory_stats(self.info.device),
                       **local_state_bytes(self.model, self.optimizer)}
            if self.parts.compiled:
                scalars["compile/graph_breaks"] = float(sum(graph_breaks().values()))
        if self.eval_every and step % self.eval_every == 0:
            with self.meter.excluded():
                scalars.update(self._evaluate_and_track())
        if scalars:
            head = self.progress.report(step, tokens=False) if log_step else [f"step {step}/{self.total_steps}"]
            self.sink.log(step, scalars, head)
        elif self.progress.due(step):
            report = self.progress.report(step)
            self.sink.progress([report[0], self._loss_text(), *report[1:]])
        strategy = self.config.checkpoint.save_strategy
        if strategy == "steps" and self.save_every and step % self.save_every == 0 and step < self.total_steps:
            self._save("interval")

    def _data_epoch(self) -> int:
        """This rank's data epoch (its slowest shard's); ranks that read no data (dispatch) do not count."""
        epoch = getattr(self.parts.train_batches, "epoch", None)
        return NO_DATA_EPOCH if epoch is None else int(epoch)

    def _save_at_epoch_end(self, epoch: int) -> None:
        """save_strategy epoch: a checkpoint when every shard of the data has finished an epoch (agreed by all
        ranks one step late: the step after the one that drew the next epoch's first block)."""
        if self.config.checkpoint.save_strategy != "epoch" or epoch == NO_DATA_EPOCH:
            return
        if self._epoch_seen is not None and epoch > self._epoch_seen and 0 < self.state.step < self.total_steps:
            self._save(f"epoch {self._epoch_seen} done")
        self._epoch_seen = epoch

    def _read_losses(self) -> None:
        """Bring the unread losses to the host and check them (raises TrainingDiverged); one device sync."""
        if self.losses.pending:
            self.state.loss = self.losses.read(self.state.step)
            self.state.loss_ema = self.losses.ema
            self._loss_step = self.state.step

    def _loss_text(self) -> str:
        """The last loss read (losses are read on log steps only, so reading one here would cost a device sync)."""
        if self.state.loss is None or self._loss_step is None:
            first = (self._first_step // self.read_every + 1) * self.read_every
            return f"loss pending (first read at step {min(first, self.total_steps)})"
        suffix = "" if self._loss_step == self.state.step else f" (step {self._loss_step})"
        return f"loss {self.state.loss:.4f}{suffix}"

    def _evaluate_and_track(self) -> dict[str, float]:
        metrics = self._evaluate()
        if "eval/loss" in metrics:
            loss = metrics["eval/loss"]
            self.state.eval_loss = loss
            if self.state.best_eval_loss is None or loss < self.state.best_eval_loss:
                self.state.best_eval_loss = loss
                self.state.evals_without_improvement = 0
            else:
                self.state.evals_without_improvement += 1
        return metrics

    def _patience_exhausted(self) -> bool:
        patience = self.train_cfg.early_stopping_patience
        return patience > 0 and self.state.evals_without_improvement >= patience

    def _save(self, reason: str, wait: bool = False) -> None:
        """A checkpoint of this step (written in the background unless `wait`: the run ends after it)."""
        if self.parts.checkpointer is None or self.config.checkpoint.save_strategy == "no":
            return
        self._read_losses()  # a step with a NaN/Inf or spiking loss never reaches a checkpoint
        with self.meter.excluded():
            trainer_state = {**self.state.__dict__, "scheduler": self.scheduler.state_dict()}
            data_state = self.parts.train_batches.state_dict()
            path = self.parts.checkpointer.save(self.state.step, self.model, self.optimizer, trainer_state, data_state,
                                                on_saved=lambda p: self.sink.message(f"saved checkpoint {p} ({reason})"))
            if wait:
                self.parts.checkpointer.finish(final=path if reason == "final" else None)

    def _save_failed(self) -> int:
        return int(self.parts.checkpointer is not None and self.parts.checkpointer.failure() is not None)

    def _raise_save_failure(self) -> None:
        self.parts.checkpointer.raise_failure()
        raise CheckpointError("a background checkpoint save failed on another rank; the previous checkpoint is still "
                              "the latest")

    # -- plumbing ---------------------------------------------------------------------------
    def _batch_iterator(self) -> Iterator[dict[str, torch.Tensor]]:
        return iter(self.parts.train_batches)

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        device = self.info.device
        batch = drop_single_document_ids(batch)
        return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _install_signal_handlers(self) -> None:
        first_at: list[float] = []

        def handler(signum: int, _frame: Any) -> None:
            # One stop request can arrive twice (a terminal's Ctrl-C reaches the whole process group, and the
            # launcher forwards it too); only a signal well after the first means "leave now, without saving".
            now = time.monotonic()
            if first_at and now - first_at[0] > SECOND_SIGNAL_AFTER_S:
                raise SystemExit(128 + signum)
            first_at[:1] = first_at[:1] or [now]
            self.stop_requested = 1

        for sig in STOP_SIGNALS:
            signal.signal(sig, handler)
        if stop_requested_early():  # asked while the rank was starting: stop at the first agreed step boundary
            self.stop_requested = 1

    def _synchronize(self) -> None:
        """Wait for queued device work (so a timing window ends where the host thinks it does)."""
        if self.info.device.type == "cuda":
            torch.cuda.synchronize(self.info.device)
