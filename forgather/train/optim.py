"""AdamW and the learning-rate schedules (warmup + cosine / linear / constant / step / WSD)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainSection


def scaled_learning_rate(train: TrainSection, global_batch_tokens: int) -> float:
    """Peak LR, scaled by sqrt(global batch / base batch) when `scale_lr` is on (as in the seed)."""
    if not train.scale_lr:
        return train.learning_rate
    return train.learning_rate * math.sqrt(global_batch_tokens / train.base_batch_tokens)


def build_optimizer(model: nn.Module, train: TrainSection, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with decay on matrices only (norm gains and biases are not decayed), fused where supported."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused kernel is one launch per step on CUDA; on CPU the foreach path is as fast and more portable.
    extra = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(train.betas), **extra)


# A warmup as long as the run would never reach the peak LR nor decay; a tenth of the run is the common choice.
CLAMPED_WARMUP_FRACTION = 0.1


def effective_warmup(train: TrainSection, total_steps: int) -> int:
    """train.warmup_steps, or a tenth of the run when the configured warmup is not shorter than the run."""
    if train.warmup_steps < total_steps:
        return train.warmup_steps
    return int(total_steps * CLAMPED_WARMUP_FRACTION)


def warmup_warning(train: TrainSection, total_steps: int) -> str | None:
    """The one line saying that, and to what, the warmup was clamped; None when it was not."""
    if train.warmup_steps < total_steps or total_steps <= 0:
        return None
    budget = (f"train.max_tokens={train.max_tokens}" if train.max_tokens else f"train.max_steps={train.max_steps}")
    return (f"forgather: warning: train.warmup_steps={train.warmup_steps} is not shorter than the run "
            f"({budget}: {total_steps} steps); warming up over {effective_warmup(train, total_steps)} steps "
            f"({CLAMPED_WARMUP_FRACTION:.0%} of the run) instead: set train.warmup_steps below {total_steps}")


def lr_multiplier(step: int, train: TrainSection, total_steps: int) -> float:
    """Factor on the peak LR at `step` (0-based): linear warmup, then the chosen decay to min_lr_ratio."""
    warmup = effective_warmup(train, total_steps)
    floor = train.min_lr_ratio
    if step < warmup:
        return (step + 1) / (warmup + 1)
    span = max(total_steps - warmup, 1)
    progress = min((step - warmup) / span, 1.0)
    schedule = train.lr_schedule
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "linear":
        return floor + (1 - floor) * (1 - progress)
    if schedule == "step":
        # Divide by 10 at 2/3 and again at 8/9 of the decay span (a classic step schedule), never below the floor.
        drops = (progress >= 2 / 3) + (progress >= 8 / 9)
        return max(floor, 0.1**drops)
    if schedule == "wsd":
        # Warmup-stable-decay: flat until the final `decay_fraction` of steps, then linear to the floor.
        stable_until = 1 - train.decay_fraction
        if progress <= stable_until:
            return 1.0
        return floor + (1 - floor) * (1 - (progress - stable_until) / max(train.decay_fraction, 1e-12))
    raise ValueError(f"unknown lr_schedule {schedule!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainSection, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR over `lr_multiplier`; its state_dict is just the step counter."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(step, train, total_steps))
