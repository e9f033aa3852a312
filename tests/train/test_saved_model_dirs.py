"""What `forgather train` leaves behind loads in stock transformers: the initial model and every checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from ..conftest import set_in_project
from .test_distributed_training import train


def test_initial_model_and_checkpoint_load_in_transformers_with_the_runs_tokenizer(tiny_project: Path):
    transformers = __import__("transformers")
    from forgather.data.tokenizer import load_tokenizer
    from forgather.data.spec import TokenizerSpec
    from forgather.models.hf import load_hf
    from forgather.models.transformer import build_model

    for line in ("max_steps: 2", "eval_every: 0"):
        set_in_project(tiny_project, "train", line)
    set_in_project(tiny_project, "checkpoint", "save_every: 1")
    result = train(tiny_project, "--init-model", "--verbose-info")
    assert "parameters" in result.stdout and "draw share" in result.stdout and "tokens/step" in result.stdout

    run_dir = tiny_project / "output"
    ids = torch.tensor([[5, 17, 42, 99, 7, 250, 3, 64]])
    for model_dir in (run_dir / "initial_model", run_dir / "checkpoints" / "step-000002"):
        hf = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
        assert type(hf).__name__ == "LlamaForCausalLM"
        spec, state = load_hf(model_dir)
        ours = build_model(spec, "sdpa", device="cpu").eval()
        ours.load_state_dict(state)
        with torch.no_grad():
            assert torch.allclose(hf(ids).logits, ours(ids), atol=1e-4)

        text = "Document 7: the quick brown fox"
        hf_tok = transformers.AutoTokenizer.from_pretrained(model_dir)
        ours_tok = load_tokenizer(TokenizerSpec(add_eos=False), str(model_dir / "tokenizer.json"))
        assert hf_tok(text, add_special_tokens=False)["input_ids"] == ours_tok.encode_docs([text])[0].tolist()
        assert hf_tok.eos_token == "<|endoftext|>"

    # The checkpoint's weights moved away from the initial ones: the two dirs are not the same model twice.
    initial = load_hf(run_dir / "initial_model")[1]
    trained = load_hf(run_dir / "checkpoints" / "step-000002")[1]
    assert any(not torch.equal(initial[k], trained[k]) for k in initial)
