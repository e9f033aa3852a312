"""Learning-rate schedules and LR scaling."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from forgather.config import TrainSection
from forgather.train.optim import effective_warmup, lr_multiplier, scaled_learning_rate, warmup_warning
from forgather.typed import from_plain
from forgather.yamlio import load_yaml
from forgather.resources import TEMPLATES_DIR

from .harness import make_trainer, project_config


@pytest.fixture
def train() -> TrainSection:
    tree, origins = load_yaml(TEMPLATES_DIR / "base.yaml")
    return from_plain(TrainSection, tree["train"], origins, "train")


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant", "step", "wsd"])
def test_warmup_rises_linearly_then_schedule_ends_at_its_floor(train, schedule):
    cfg = replace(train, lr_schedule=schedule, warmup_steps=10, min_lr_ratio=0.1, decay_fraction=0.2)
    values = [lr_multiplier(s, cfg, 100) for s in range(100)]
    assert values[:10] == pytest.approx([(s + 1) / 11 for s in range(10)])
    assert max(values) <= 1.0 + 1e-12 and min(values[10:]) >= 0.1 - 1e-12
    expected_end = {"cosine": 0.1, "linear": 0.1, "constant": 1.0, "step": 0.1, "wsd": 0.1}[schedule]
    assert lr_multiplier(100, cfg, 100) == pytest.approx(expected_end)


def test_cosine_midpoint_is_halfway_between_peak_and_floor(train):
    cfg = replace(train, lr_schedule="cosine", warmup_steps=0, min_lr_ratio=0.0)
    assert lr_multiplier(50, cfg, 100) == pytest.approx(0.5)


def test_wsd_is_flat_until_the_decay_fraction(train):
    cfg = replace(train, lr_schedule="wsd", warmup_steps=0, min_lr_ratio=0.0, decay_fraction=0.25)
    assert lr_multiplier(70, cfg, 100) == 1.0
    assert lr_multiplier(87, cfg, 100) == pytest.approx(0.52)


def test_lr_scales_with_sqrt_of_global_batch_only_when_asked(train):
    on = replace(train, scale_lr=True, learning_rate=1e-3, base_batch_tokens=1000)
    assert scaled_learning_rate(on, 4000) == pytest.approx(2e-3)
    assert scaled_learning_rate(replace(on, scale_lr=False), 4000) == 1e-3
    assert math.isclose(scaled_learning_rate(on, 1000), 1e-3)


def test_a_warmup_longer_than_the_run_is_clamped_to_a_tenth_of_it(train):
    cfg = replace(train, lr_schedule="cosine", warmup_steps=100, min_lr_ratio=0.0, max_steps=50, max_tokens=None)
    values = [lr_multiplier(s, cfg, 50) for s in range(50)]
    assert values[:5] == pytest.approx([(s + 1) / 6 for s in range(5)])
    assert values[5] == 1.0 and values[-1] < 0.01  # reaches the peak, then decays over the rest of the run
    assert warmup_warning(cfg, 50) == ("forgather: warning: train.warmup_steps=100 is not shorter than the run "
                                       "(train.max_steps=50: 50 steps); warming up over 5 steps (10% of the run) "
                                       "instead: set train.warmup_steps below 50")
    assert warmup_warning(replace(cfg, warmup_steps=49), 50) is None and effective_warmup(cfg, 500) == 100


def test_the_trainer_warns_once_about_a_clamped_warmup(tiny_project, capsys):
    config = project_config(tiny_project, max_steps=4, log_every=2, eval_every=0, warmup_steps=10)
    config.checkpoint.save_strategy = "no"
    assert make_trainer(config).fit() == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "warmup_steps" in line]
    assert lines == ["forgather: warning: train.warmup_steps=10 is not shorter than the run (train.max_steps=4: "
                     "4 steps); warming up over 0 steps (10% of the run) instead: set train.warmup_steps below 4"]
