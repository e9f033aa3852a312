"""Loss health without a host sync per step: losses wait on the device and are checked when read.

The trainer reads them on log steps, before every checkpoint and at the end; each read copies every loss
since the last one to the host at once and checks them in step order, exactly as a per-step check would:
NaN/Inf, or a loss far above its running average once past warmup. A bad step between reads therefore stops
the run at the next read, and since a checkpoint is always preceded by a read, no checkpoint holds it.
"""

from __future__ import annotations

import math

import torch

from ..errors import UserError


class TrainingDiverged(UserError):
    """Loss became NaN/Inf or spiked far above its running average."""

    exit_code = 3


class LossMonitor:
    """Collects per-step loss tensors; `read()` brings them to the host and checks them in order."""

    def __init__(self, divergence_factor: float, warmup_steps: int, ema: float | None = None) -> None:
        self.factor = divergence_factor
        self.warmup_steps = warmup_steps
        self.ema = ema  # running average of the loss (kept in checkpoints)
        self.latest: float | None = None
        self._pending: list[torch.Tensor] = []
        self._norms: list[torch.Tensor] = []

    @property
    def pending(self) -> int:
        """Losses added since the last read."""
        return len(self._pending)

    def add(self, loss: torch.Tensor, grad_norm: torch.Tensor | None = None) -> None:
        """Keep one step's loss (and gradient norm), device scalars, without reading them."""
        self._pending.append(loss.detach())
        if grad_norm is not None:
            self._norms.append(grad_norm.detach().to(loss.device, torch.float64).reshape(()))

    def read(self, last_step: int) -> float | None:
        """Copy the pending losses (steps ..last_step) to the host in one read, check each; the latest loss."""
        if self._pending:
            values = torch.stack(self._pending).tolist()
            norms = torch.stack(self._norms).tolist() if len(self._norms) == len(values) else [0.0] * len(values)
            self._pending.clear()
            self._norms.clear()
            for offset, (loss, norm) in enumerate(zip(values, norms)):
                step = last_step - len(values) + 1 + offset
                if not math.isfinite(norm):
                    raise TrainingDiverged(f"the gradient norm is {norm} at step {step}; lower --learning-rate or "
                                           "check the data (no checkpoint holds this step)")
                self._check(loss, step)
                self.latest = loss
        return self.latest

    def _check(self, loss: float, step: int) -> None:
        if not math.isfinite(loss):
            raise TrainingDiverged(f"loss is {loss} at step {step}; lower --learning-rate or check the data "
                                   "(no checkpoint was written for this step)")
        ema = self.ema
        if ema is not None and self.factor > 0 and step > self.warmup_steps and loss > self.factor * ema:
            raise TrainingDiverged(f"loss spiked to {loss:.3f} at step {step}, {loss / ema:.1f}x its running "
                                   f"average {ema:.3f}; lower --learning-rate or resume from the last checkpoint")
        self.ema = loss if ema is None else 0.95 * ema + 0.05 * loss
