"""What a run says while it starts: a line per phase, each as it begins, all before the first step's figures."""

from __future__ import annotations

from ..conftest import set_in_project
from .harness import make_trainer, project_config
from .processes import Training

PHASES = ("data: opening the sources and the tokenizer", "data: training a byte-level BPE tokenizer",
          "model: building llama with", "data: packing chunks of", "training steps 0→4",
          "first step: waiting for the first batches", "first step: forward, backward and optimizer step",
          "step 1/4 | loss pending")


def test_startup_phases_are_announced_in_order_before_the_first_step(tiny_project):
    for line in ("max_steps: 4", "log_every: 10", "eval_every: 0", "warmup_steps: 0"):
        set_in_project(tiny_project, "train", line)
    run = Training(tiny_project, "--init-model")
    assert run.finish(timeout=240) == 0, run.output[-3000:]
    lines = run.output.splitlines()
    at = [next((i for i, line in enumerate(lines) if phase in line), None) for phase in PHASES]
    assert None not in at and at == sorted(at), run.output[-3000:]
    model_line = lines[at[2]]
    assert "parameters (" in model_line and "non-embedding)" in model_line and "FLOPs/token" in model_line
    assert all(lines[i].startswith("forgather: [") for i in at[:4])  # seconds since start, so gaps show


def test_the_first_step_says_it_compiles_when_the_blocks_are_compiled(tiny_project, capsys):
    config = project_config(tiny_project, max_steps=1, log_every=1, eval_every=0, warmup_steps=0)
    config.checkpoint.save_strategy = "no"
    assert make_trainer(config, compiled=True).fit() == 0
    out = capsys.readouterr().out
    assert "first step: compiling the model's blocks (torch.compile" in out
    assert out.index("compiling the model's blocks") < out.index("step 1/1 |")
