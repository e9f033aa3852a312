"""Training under torchrun (gloo, CPU): DDP, FSDP2 and dispatch match one process; resume is exact."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import set_in_project

TOL = 1e-5


def train(project: Path, *args: str, nproc: int = 1, check: bool = True, timeout: int = 240) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "forgather.cli", "train", "--no-accelerator", "--nproc-per-node", str(nproc), *args],
        cwd=project, capture_output=True, text=True, timeout=timeout, env=dict(os.environ),
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def metrics(project: Path) -> dict[int, dict]:
    """The last logged record of every step (a resumed run re-logs the steps it repeats)."""
    records: dict[int, dict] = {}
    path = project / "output" / "runs" / "metrics.jsonl"
    for line in path.read_text().splitlines():
        record = json.loads(line)
        records.setdefault(record["step"], {}).update(record)
    return records


def losses(project: Path) -> dict[int, float]:
    return {step: r["loss"] for step, r in metrics(project).items() if "loss" in r}


@pytest.fixture
def project(tiny_project: Path) -> Path:
    """Constant LR, a loss logged every step, no eval: runs differ only in how they are distributed."""
    for line in ("max_steps: 6", "log_every: 1", "eval_every: 0", "lr_schedule: constant", "warmup_steps: 0",
                 "learning_rate: 0.01", "batch_size: 4"):
        set_in_project(tiny_project, "train", line)
    set_in_project(tiny_project, "checkpoint", "save_strategy: 'no'")
    return tiny_project


@pytest.fixture
def shared_corpus() -> Path:
    """../shared/data/corpus: real public-domain text (CI has it beside the checkout)."""
    corpus = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "corpus"
    if not (corpus / "quotes.parquet").is_file():
        pytest.skip("../shared/data/corpus not found beside the repository")
    return corpus


@pytest.fixture
def reference(project: Path, tmp_path_factory) -> dict[int, float]:
    """Six steps in one process with the global batch of 4 sequences."""
    train(project, "--init-model")
    return losses(project)




@pytest.mark.parametrize("mode", ["ddp", "fsdp2", "dispatch"])
def test_two_ranks_match_one_process_with_the_same_global_batch(project, reference, mode):
    set_in_project(project, "train", "batch_size: 2")
    set_in_project(project, "dist", f"mode: {mode}")
    (project / "output" / "runs" / "metrics.jsonl").unlink()
    output = train(project, "--init-model", "--overwrite", nproc=2).stdout
    # The run-wide decisions are printed once (rank 0), whatever the mode.
    assert output.count("precision: fp32 compute") == 1 and output.count("attention: auto on cpu:") == 1, output
    got = losses(project)
    assert sorted(got) == sorted(reference) == list(range(1, 7))
    for step in reference:
        assert abs(got[step] - reference[step]) <= TOL, (mode, step, got[step], reference[step])


def test_fsdp2_holds_about_half_the_parameter_and_optimizer_bytes_of_ddp(project):
    set_in_project(project, "train", "batch_size: 2")
    sizes = {}
    for mode in ("ddp", "fsdp2"):
        set_in_project(project, "dist", f"mode: {mode}")
        train(project, "--init-model", "--overwrite", "--max-steps", "1", nproc=2)
        record = metrics(project)[1]
        sizes[mode] = record["memory/param_bytes"] + record["memory/optimizer_bytes"]
    assert 0.45 <= sizes["fsdp2"] / sizes["ddp"] <= 0.56, sizes


def test_loss_falls_on_real_text_and_tensorboard_has_the_scalars(project, shared_corpus):
    # Real English from ../shared/data (quotes + speeches) with a BPE trained on it, not the toy corpus.
    set_in_project(project, "data", "sources: [{name: quotes, path: %s, max_samples: 3000}, "
                   "{name: speeches, path: %s, max_samples: 12}]" % (shared_corpus / "quotes.parquet",
                                                                      shared_corpus / "speeches.parquet"))
    set_in_project(project, "data", "tokenizer: {vocab_size: 1024}")
    set_in_project(project, "model", "arch: {vocab_size: 1024}")
    set_in_project(project, "train", "max_steps: 30")
    set_in_project(project, "train", "eval_every: 10")
    train(project, "--init-model")
    got = losses(project)
    first, last = sum(got[s] for s in (1, 2, 3)) / 3, sum(got[s] for s in (28, 29, 30)) / 3
    assert first > 6.5 and last < first - 0.5, (first, last)  # from ~ln(1024) towards the text's statistics
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(project / "output" / "runs"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "lr", "grad_norm", "tps", "data_wait(%)", "eval/loss", "eval/perplexity"} <= tags, tags
    assert [e.step for e in events.Scalars("loss")] == list(range(1, 31))


def test_init_from_starts_from_the_given_weights_and_early_stopping_ends_the_run(project, tmp_path):
    train(project, "--init-model", "--max-steps", "3", "--save-strategy", "steps")
    weights = shutil.copytree(project / "output" / "checkpoints" / "step-000003", tmp_path / "weights")
    first_fresh = losses(project)[1]
    (project / "output" / "runs" / "metrics.jsonl").unlink()
    set_in_project(project, "train", f"init_from: {weights}")
    set_in_project(project, "train", "eval_every: 1")
    set_in_project(project, "train", "learning_rate: 10.0")  # diverging steps never improve the eval loss
    set_in_project(project, "train", "divergence_factor: 0")
    set_in_project(project, "train", "early_stopping_patience: 2")
    result = train(project, "--init-model", "--overwrite", "--max-steps", "50", "--save-strategy", "no")
    got = losses(project)
    assert got[1] < first_fresh - 0.05, (got[1], first_fresh)  # trained weights, not a fresh init
    assert "early stopping at step 3" in result.stdout, result.stdout[-2000:]
    assert f"starting from the weights of train.init_from {weights}" in result.stdout  # not "initialised weights"
    assert max(got) == 3
