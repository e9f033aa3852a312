"""HF format round trips against stock transformers (Llama, Qwen3), DeepOne's own format, and bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from forgather.errors import ModelError
from forgather.models.hf import hf_config, load_hf, save_pretrained_hf
from forgather.models.spec import ModelSpec, parameter_counts
from forgather.models.transformer import Transformer

os.environ.setdefault("OMP_NUM_THREADS", "1")
transformers = pytest.importorskip("transformers")

V = 256


def tiny(arch: str, **kw) -> ModelSpec:
    fields = dict(architecture=arch, vocab_size=V, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2)
    if arch == "qwen3":
        fields["head_dim"] = 32
    return ModelSpec(**{**fields, **kw}).validate()


def ours(spec: ModelSpec) -> Transformer:
    torch.manual_seed(0)
    m = Transformer(spec)
    with torch.no_grad():  # non-trivial norms so norm wiring/naming mistakes show up in logits
        for name, p in m.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    return m.eval()


def hf_from_pretrained(path: Path):
    return transformers.AutoModelForCausalLM.from_pretrained(str(path), attn_implementation="eager").eval()


def tokens() -> torch.Tensor:
    return torch.randint(0, V, (2, 17), generator=torch.Generator().manual_seed(1))


CASES = [
    ("llama", {}),
    ("llama", dict(tie_embeddings=True, rope_theta=500000.0)),
    ("qwen3", {}),
    ("qwen3", dict(tie_embeddings=False, head_dim=None, num_kv_heads=4)),
]


@pytest.mark.parametrize("arch, kw", CASES, ids=[f"{a}-{i}" for i, (a, _) in enumerate(CASES)])
def test_ours_to_hf_logits_match(tmp_path, arch, kw):
    spec = tiny(arch, **kw)
    model = ours(spec)
    save_pretrained_hf(model, spec, tmp_path)
    hf = hf_from_pretrained(tmp_path)
    expected = {"llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM"}[arch]
    assert type(hf).__name__ == expected
    x = tokens()
    with torch.no_grad():
        diff = (model(x) - hf(x).logits).abs().max().item()
    assert diff <= 1e-4
    # Parameter counts agree three ways.
    hf_params = sum(p.numel() for p in hf.parameters())
    assert hf_params == sum(p.numel() for p in model.parameters()) == parameter_counts(spec)[0]


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_hf_initialised_model_loads_into_ours(tmp_path, arch):
    spec = tiny(arch)
    config = transformers.AutoConfig.for_model(**hf_config(spec))
    torch.manual_seed(3)
    hf = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    hf.save_pretrained(str(tmp_path))
    loaded_spec, state = load_hf(tmp_path)
    assert loaded_spec == spec
    model = Transformer(loaded_spec)
    model.load_state_dict(state, strict=True)
    x = tokens()
    with torch.no_grad():
        assert (model(x) - hf(x).logits).abs().max().item() <= 1e-4


def test_sharded_index_is_read(tmp_path):
    spec = tiny("llama")
    model = ours(spec)
    save_pretrained_hf(model, spec, tmp_path / "single")
    _, state = load_hf(tmp_path / "single")
    shard_dir = tmp_path / "sharded"
    shard_dir.mkdir()
    (shard_dir / "config.json").write_text((tmp_path / "single" / "config.json").read_text())
    keys = sorted(f"model.{k}" if not k.startswith("lm_head") else k for k in state)
    halves = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    weight_map = {}
    for shard, names in halves.items():
        tensors = {n: state[n.removeprefix("model.")].contiguous() for n in names}
        save_file(tensors, str(shard_dir / shard), metadata={"format": "pt"})
        weight_map.update({n: shard for n in names})
    (shard_dir / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    _, sharded = load_hf(shard_dir)
    assert sharded.keys() == state.keys()
    assert all(torch.equal(sharded[k], state[k]) for k in state)


def test_deepone_round_trip_in_own_format(tmp_path):
    spec = tiny("deepone")
    model = ours(spec)
    save_pretrained_hf(model, spec, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "forgather_deepone"
    loaded_spec, state = load_hf(tmp_path)
    assert loaded_spec == spec
    other = Transformer(loaded_spec)
    other.load_state_dict(state, strict=True)
    x = tokens()
    with torch.no_grad():
        torch.testing.assert_close(other(x), model(x), atol=0, rtol=0)


def test_unknown_model_type_names_file_and_value(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 64}))
    with pytest.raises(ModelError) as err:
        load_hf(tmp_path)
    assert "'gpt2'" in str(err.value) and "config.json" in str(err.value)


def test_unsupported_rope_scaling_is_rejected(tmp_path):
    spec = tiny("llama")
    save_pretrained_hf(ours(spec), spec, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="llama3"):
        load_hf(tmp_path)


def test_pickle_only_checkpoint_is_refused(tmp_path):
    spec = tiny("llama")
    save_pretrained_hf(ours(spec), spec, tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")
    with pytest.raises(ModelError, match="safetensors"):
        load_hf(tmp_path)


def test_missing_config_is_model_error(tmp_path):
    with pytest.raises(ModelError, match="config.json"):
        load_hf(tmp_path)


@pytest.mark.parametrize("damage, message", [
    ("index_without_weight_map", "model.safetensors.index.json: unreadable"),
    ("truncated_weights", "model.safetensors: cannot read"),
])
def test_damaged_weight_files_are_one_line_errors_naming_the_file(tmp_path, damage, message):
    from forgather.errors import UserError

    spec = tiny("llama")
    save_pretrained_hf(ours(spec), spec, tmp_path)
    if damage == "index_without_weight_map":
        (tmp_path / "model.safetensors").rename(tmp_path / "shard-1.safetensors")
        (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}}))
    else:
        data = (tmp_path / "model.safetensors").read_bytes()
        (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=message):
        load_hf(tmp_path)
