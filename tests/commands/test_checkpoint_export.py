"""`forgather checkpoint export`: an FSDP2 run's per-rank shards become an HF dir that stock transformers loads,
with the tokenizer's end-of-text id, so `generate` stops there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ..conftest import set_in_project
from ..train.test_distributed_training import train
from . import forgather, one_line_error


def test_export_of_fsdp2_shards_loads_in_transformers_and_generate_stops_at_end_of_text(tiny_project: Path, tmp_path):
    transformers = __import__("transformers")
    from forgather.models.hf import load_hf
    from forgather.models.transformer import build_model

    for line in ("max_steps: 2", "eval_every: 0"):
        set_in_project(tiny_project, "train", line)
    set_in_project(tiny_project, "dist", "mode: fsdp2")
    set_in_project(tiny_project, "checkpoint", "save_every: 1")
    set_in_project(tiny_project, "checkpoint", "export_final: false")
    train(tiny_project, "--init-model", nproc=2)
    step = tiny_project / "output" / "checkpoints" / "step-000002"
    assert sorted(p.name for p in (step / "model").iterdir())[-2:] == ["shard-00000-of-00002.safetensors",
                                                                       "shard-00001-of-00002.safetensors"]
    out = tmp_path / "hf"
    result = forgather("checkpoint", "export", "2", "--output", str(out), "--max-shard-size", "0.00005",
                       cwd=tiny_project)
    assert result.returncode == 0, result.stderr
    assert (out / "model.safetensors.index.json").is_file()  # above the threshold: several files and an index
    config = json.loads((out / "config.json").read_text())
    eos = config["eos_token_id"]
    tokenizer = json.loads((out / "tokenizer.json").read_text())
    assert tokenizer["added_tokens"][0]["content"] == "<|endoftext|>" and tokenizer["added_tokens"][0]["id"] == eos
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == eos

    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    spec, state = load_hf(step)  # our model from the checkpoint's shards, assembled
    ours = build_model(spec, "sdpa", device="cpu").eval()
    ours.load_state_dict(state)
    ids = torch.tensor([[5, 17, 42, 99, 7, 250, 3, 64]])
    with torch.no_grad():
        assert torch.allclose(hf(ids).logits, ours(ids), atol=1e-4)
        hf.lm_head.weight.zero_()  # every logit 0: greedy decoding picks id 0, the end-of-text token
        generated = hf.generate(ids, max_new_tokens=10, do_sample=False)
    assert eos == 0 and generated.shape[1] == ids.shape[1] + 1  # stopped right after end-of-text

    refused = one_line_error(forgather("checkpoint", "export", "2", "--output", str(out), cwd=tiny_project))
    assert "already exists" in refused and "--force" in refused
    assert forgather("checkpoint", "export", "2", "--output", str(out), "--force", cwd=tiny_project).returncode == 0
    run_dir = tiny_project / "output"  # --force never deletes a run dir (and the checkpoint with it)
    refused = one_line_error(forgather("checkpoint", "export", "2", "--output", str(run_dir), "--force",
                                       cwd=tiny_project))
    assert "is not an exported model dir" in refused and (step / "manifest.json").is_file()


@pytest.mark.parametrize("args, needle", [
    (["checkpoint", "export", "2", "--output", "x", "--max-shard-size", "nan"], "--max-shard-size: nan must be"),
    (["checkpoint", "export", "2", "--output", "x", "--max-shard-size", "inf"], "--max-shard-size: inf must be"),
    (["generate", "--prompt", "a", "--seed", "99999999999999999999999"], "must be between 0 and 2^63-1"),
])
def test_values_no_machine_can_use_are_one_line(tiny_project, args, needle):
    line = one_line_error(forgather(*args, cwd=tiny_project))  # they were ValueError/OverflowError tracebacks
    assert needle in line


def test_an_export_to_a_place_that_cannot_be_written_is_one_line(tmp_path):
    from forgather.checkpoint.export import export_checkpoint
    from forgather.errors import CheckpointError

    checkpoint = tmp_path / "step-000002"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": 300, "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": 128}))
    (tmp_path / "a-file").write_text("")  # a file where the output's parent must be: FileExistsError, a traceback
    with pytest.raises(CheckpointError, match="cannot write .*a-file/sub .*choose another --output"):
        export_checkpoint(checkpoint, tmp_path / "a-file" / "sub", verify=False)
