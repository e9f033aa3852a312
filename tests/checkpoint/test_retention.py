"""Retention keeps the last N, the best N by eval loss, and always the newest verified checkpoint."""

from __future__ import annotations

import json

from forgather.checkpoint import layout
from forgather.checkpoint.manifest import write_manifest
from forgather.checkpoint.retention import apply_retention

from .test_manifest import flip_byte


def make(root, losses: dict[int, float | None]):
    for step, loss in losses.items():
        path = layout.step_dir(root, step)
        path.mkdir(parents=True)
        (path / "trainer_state.json").write_text(json.dumps({"step": step, "eval_loss": loss}))
        (path / "model.safetensors").write_bytes(b"w")
        write_manifest(path, step)


def steps(root):
    return [step for step, _ in layout.list_checkpoints(root)]


def test_keeps_the_last_n(tmp_path):
    make(tmp_path, {100: 3.0, 200: 2.0, 300: 1.0, 400: 0.5})
    removed = apply_retention(tmp_path, keep_last=2, keep_best=0)
    assert [p.name for p in removed] == ["step-000100", "step-000200"]
    assert steps(tmp_path) == [300, 400]
    assert not list(tmp_path.glob("*.tmp"))


def test_keeps_the_best_n_by_eval_loss_besides_the_last(tmp_path):
    make(tmp_path, {100: 1.0, 200: 0.5, 300: 2.0, 400: None, 500: 3.0})
    apply_retention(tmp_path, keep_last=1, keep_best=2)
    assert steps(tmp_path) == [100, 200, 500]


def test_never_deletes_the_newest_verified_checkpoint(tmp_path):
    make(tmp_path, {100: 1.0, 200: 0.5, 300: 2.0})
    flip_byte(tmp_path / "step-000300" / "model.safetensors", offset=0)
    apply_retention(tmp_path, keep_last=1, keep_best=0)
    # step 300 is the last but corrupt, so step 200 (newest verified) stays too.
    assert steps(tmp_path) == [200, 300]


def test_zero_keeps_only_the_newest_verified(tmp_path):
    make(tmp_path, {100: 1.0, 200: 2.0})
    apply_retention(tmp_path, keep_last=0, keep_best=0)
    assert steps(tmp_path) == [200]
