"""The loop reads nothing back from the device on ordinary steps, and still never checkpoints a bad step."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import forgather
from forgather.train.agreement import StepAgreement
from forgather.train.health import TrainingDiverged

from .harness import RecordingCheckpointer, ScaleLossAt, make_trainer, project_config

PACKAGE = str(Path(forgather.__file__).parent)
# What a host read of a device tensor looks like from Python; on CUDA each one waits for the GPU.
HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__")


def test_forgather_reads_tensors_back_on_log_steps_only(tiny_project, monkeypatch):
    # CPU shows no GPU stalls, so count what would stall one: forgather code reading a tensor's value. The
    # agreement's tensors are CPU tensors by construction (a gloo group), so its reads are not counted.
    iteration = [0]
    reads: list[tuple[int, str, str]] = []
    real_exchange = StepAgreement.exchange

    def exchange(self, **values):
        iteration[0] += 1
        return real_exchange(self, **values)

    monkeypatch.setattr(StepAgreement, "exchange", exchange)
    for name in HOST_READS:
        real = getattr(torch.Tensor, name)

        def spy(self, *args, _real=real, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(PACKAGE) and not caller.endswith("agreement.py"):
                reads.append((iteration[0], _name, f"{Path(caller).name}:{sys._getframe(1).f_lineno}"))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)
    config = project_config(tiny_project, max_steps=8, log_every=4, eval_every=0, warmup_steps=0)
    config.checkpoint.save_strategy = "no"
    assert make_trainer(config).fit() == 0
    steps_with_reads = {step for step, _, _ in reads}
    assert steps_with_reads == {4, 8}, reads  # log steps read (loss, grad norm), no other step does


def test_a_nan_between_log_steps_stops_the_run_before_its_checkpoint(tiny_project):
    config = project_config(tiny_project, max_steps=8, log_every=4, eval_every=0, warmup_steps=0)
    config.checkpoint.save_strategy, config.checkpoint.save_every = "steps", 3
    checkpointer = RecordingCheckpointer()
    trainer = make_trainer(config, lambda m: ScaleLossAt(m, step=2, factor=float("nan")), checkpointer)
    with pytest.raises(TrainingDiverged, match="is nan at step 2"):  # the gradient norm is checked first
        trainer.fit()
    assert checkpointer.saved == []  # the step-3 save read the losses first and stopped


def test_a_spike_is_found_at_the_next_log_step_with_its_own_step(tiny_project):
    config = project_config(tiny_project, max_steps=8, log_every=4, eval_every=0, warmup_steps=1)
    config.checkpoint.save_strategy = "no"
    trainer = make_trainer(config, lambda m: ScaleLossAt(m, step=6, factor=50.0))
    with pytest.raises(TrainingDiverged, match=r"loss spiked to .* at step 6"):
        trainer.fit()
    assert trainer.state.step == 8  # steps 7 and 8 ran; the read at log step 8 found step 6
