"""Learning-rate schedules and LR scaling."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from forgather.config import TrainSection
from forgather.train.optim import lr_multiplier, scaled_learning_rate
from forgather.typed import from_plain
from forgather.yamlio import load_yaml
from forgather.templates import TEMPLATES_DIR


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
