"""projects/finetune_example: resolves without weights, ships SmolLM2-135M's true shape, and its recipe runs."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from forgather.models.hf import spec_from_hf_config
from forgather.models.spec import ModelSpec

from .conftest import REPO

PROJECT = REPO / "projects" / "finetune_example"

# HuggingFaceTB/SmolLM2-135M's config.json (the fields forgather reads).
SMOLLM2_135M = {"model_type": "llama", "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
                "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
                "hidden_act": "silu", "max_position_embeddings": 8192, "rms_norm_eps": 1e-05,
                "rope_theta": 100000, "rope_scaling": None, "tie_word_embeddings": True,
                "initializer_range": 0.041666666666666664, "attention_bias": False, "mlp_bias": False}


def forgather(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "forgather.cli", *args], cwd=cwd, capture_output=True, text=True,
                            env=env, timeout=180)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def fresh_copy(tmp_path: Path) -> Path:
    """The project as a fresh checkout has it: no imported weights, no run output."""
    copy = tmp_path / "finetune_example"
    shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns("weights", "output"))
    return copy


def test_config_resolves_before_any_weights_exist(tmp_path):
    project = fresh_copy(tmp_path)
    shown = yaml.safe_load(forgather("-p", str(project), "config", "show", cwd=tmp_path).stdout)
    assert shown["train"]["init_from"] == "model/weights/SmolLM2-135M"
    assert shown["model"]["arch"]["hidden_size"] == 576
    assert shown["data"]["tokenizer"]["path"] == "model/weights/SmolLM2-135M/tokenizer.json"
    assert not (project / "model" / "weights").exists()


def test_the_shipped_model_yaml_is_smollm2_135m_as_import_reads_it():
    # train.init_from refuses weights whose shape differs from model.arch, so this must match exactly.
    shipped = ModelSpec.from_dict(yaml.safe_load((PROJECT / "model" / "SmolLM2-135M.yaml").read_text()))
    assert shipped == spec_from_hf_config(SMOLLM2_135M)


def test_the_recipe_runs_on_a_tiny_imported_llama(tmp_path):
    """README steps 1, 3 and 5 with a 2-layer stand-in for SmolLM2: import, train from its weights, eval."""
    from safetensors.torch import load_file

    from forgather.commands.model import import_checkpoint
    from forgather.data.tokenizer import train_tokenizer
    from forgather.models.hf import save_pretrained_hf
    from forgather.models.transformer import build_model

    project = fresh_copy(tmp_path)
    hf_dir = tmp_path / "hf_tiny_llama"
    texts = [json.loads(line)["text"] for line in (project / "data" / "example.jsonl").read_text().splitlines()]
    train_tokenizer(texts, 300, hf_dir / "tokenizer.json")
    spec = ModelSpec(architecture="llama", vocab_size=300, hidden_size=64, num_layers=2, num_heads=4,
                     num_kv_heads=2, intermediate_size=128, tie_embeddings=True)
    save_pretrained_hf(build_model(spec, device="cpu"), spec, hf_dir)

    # Step 1 (`forgather model import HF_DIR --output model --name SmolLM2-135M --force`), in this process.
    import_checkpoint(hf_dir, project / "model", "SmolLM2-135M", force=True)
    forgather("train", "--init-model", "--no-accelerator", "--max-steps", "2", cwd=project)
    imported = load_file(project / "model" / "weights" / "SmolLM2-135M" / "model.safetensors")
    initial = load_file(project / "output" / "initial_model" / "model.safetensors")
    assert all((initial[k] == v).all() for k, v in imported.items())  # training started from the imported weights
    assert (project / "output" / "checkpoints" / "step-000002" / "tokenizer.json").is_file()

    baseline = json.loads(forgather("eval", "output/initial_model", "--json", cwd=project).stdout)
    assert baseline["data"] == "validation" and baseline["tokens"] > 0 and math.isfinite(baseline["loss"])
