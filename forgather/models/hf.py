"""Hugging Face checkpoint format: save Llama/Qwen3 so stock `transformers` loads them, and load them back.

Our module names are HF's without the "model." prefix (lm_head excepted), so the mapping is a
prefix. Only safetensors are read or written (never pickles).

DeepOne has no HF architecture; it is saved in the same layout with its own config.json:

    {"model_type": "forgather_deepone", "architectures": ["ForgatherDeepOne"],
     "forgather_spec": {<every ModelSpec field>}, "torch_dtype": "float32"}

Keys are as for Llama ("model.layers.N.self_attn.q_norm.weight" etc.; there is no "model.norm"
because post-norm blocks end in a norm). `load_hf` reads it back; transformers cannot.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from forgather.errors import ModelError
from forgather.models.spec import ModelSpec

_HF_ARCH = {"llama": ("llama", "LlamaForCausalLM"), "qwen3": ("qwen3", "Qwen3ForCausalLM")}
DEEPONE_MODEL_TYPE = "forgather_deepone"


def to_hf_key(key: str) -> str:
    """Our parameter name → HF name."""
    return key if key.startswith("lm_head.") else f"model.{key}"


def from_hf_key(key: str) -> str:
    """HF parameter name → ours."""
    return key[len("model."):] if key.startswith("model.") else key


def hf_config(spec: ModelSpec, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """config.json contents for spec (stock LlamaConfig/Qwen3Config fields, or the DeepOne format)."""
    spec.validate()
    dtype_name = str(dtype).removeprefix("torch.")
    if spec.architecture == "deepone":
        return {"model_type": DEEPONE_MODEL_TYPE, "architectures": ["ForgatherDeepOne"],
                "forgather_spec": spec.to_dict(), "torch_dtype": dtype_name}
    if spec.qk_norm != (spec.architecture == "qwen3"):
        raise ModelError(
            f"model.qk_norm={spec.qk_norm} cannot be expressed as HF {spec.architecture}; "
            f"{'qwen3 always has' if spec.architecture == 'qwen3' else 'llama never has'} QK-norm"
        )
    model_type, arch = _HF_ARCH[spec.architecture]
    config: dict[str, Any] = {
        "model_type": model_type,
        "architectures": [arch],
        "vocab_size": spec.vocab_size,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "head_dim": spec.attn_head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": spec.max_position_embeddings,
        "initializer_range": spec.init_std,
        "rms_norm_eps": spec.rms_norm_eps,
        "tie_word_embeddings": spec.tie_embeddings,
        # Both spellings: transformers<5 reads rope_theta, >=5 rope_parameters.
        "rope_theta": spec.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": spec.rope_theta},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "torch_dtype": dtype_name,
    }
    if spec.architecture == "llama":
        config["mlp_bias"] = False
    else:
        config.update(use_sliding_window=False, sliding_window=None, max_window_layers=spec.num_layers,
                      layer_types=["full_attention"] * spec.num_layers)
    return config


def _full(t: torch.Tensor) -> torch.Tensor:
    """A plain, contiguous CPU tensor (gathers a DTensor shard if given one)."""
    if hasattr(t, "full_tensor"):
        t = t.full_tensor()
    return t.detach().to("cpu").contiguous()


def save_pretrained_hf(model_or_state_dict: nn.Module | dict[str, torch.Tensor], spec: ModelSpec,
                       out_dir: str | Path) -> Path:
    """Write config.json + model.safetensors loadable by transformers.AutoModelForCausalLM (Llama/Qwen3)."""
    state = (model_or_state_dict.state_dict() if isinstance(model_or_state_dict, nn.Module)
             else dict(model_or_state_dict))
    tensors: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if spec.tie_embeddings and key == "lm_head.weight":
            continue  # HF re-ties from embed_tokens; safetensors refuses shared storage anyway
        tensors[to_hf_key(key)] = _full(value).clone()
    if "model.embed_tokens.weight" not in tensors:
        raise ModelError("save_pretrained_hf: state dict has no embed_tokens.weight; is this a forgather Transformer?")
    dtype = tensors["model.embed_tokens.weight"].dtype
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(hf_config(spec, dtype), indent=2) + "\n", encoding="utf-8")
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def spec_from_hf_config(config: dict[str, Any], source: str = "config.json") -> ModelSpec:
    """ModelSpec for an HF Llama/Qwen3 config dict (or our DeepOne config); ModelError on anything else."""
    model_type = config.get("model_type")
    if model_type == DEEPONE_MODEL_TYPE:
        return ModelSpec.from_dict(config["forgather_spec"], source=source)
    if model_type not in ("llama", "qwen3"):
        raise ModelError(
            f"{source}: model_type={model_type!r} is not supported; forgather loads llama, qwen3 "
            f"and {DEEPONE_MODEL_TYPE}"
        )
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    unsupported = {
        "hidden_act": config.get("hidden_act", "silu") != "silu",
        "attention_bias": bool(config.get("attention_bias", False)),
        "mlp_bias": bool(config.get("mlp_bias", False)),
        "rope_type": rope_type != "default",
        "use_sliding_window": bool(config.get("use_sliding_window", False)),
    }
    for field, bad in unsupported.items():
        if bad:
            value = rope_type if field == "rope_type" else config.get(field)
            raise ModelError(f"{source}: {field}={value!r} is not supported by the forgather model")
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or None
    if head_dim is not None and head_dim * heads == config["hidden_size"]:
        head_dim = None  # the default; keeps specs from our own configs equal on a round trip
    theta = rope.get("rope_theta", config.get("rope_theta", 10000.0 if model_type == "llama" else 1e6))
    spec = ModelSpec(
        architecture=model_type,
        vocab_size=config["vocab_size"],
        hidden_size=config["hidden_size"],
        num_layers=config["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=config.get("num_key_value_heads") or heads,
        head_dim=head_dim,
        intermediate_size=config["intermediate_size"],
        rope_theta=float(theta),
        rms_norm_eps=config.get("rms_norm_eps", 1e-6),
        tie_embeddings=bool(config.get("tie_word_embeddings", model_type == "qwen3")),
        qk_norm=model_type == "qwen3",
        max_position_embeddings=config.get("max_position_embeddings", 2048),
        init_std=config.get("initializer_range", 0.02),
    )
    try:
        return spec.validate()
    except ModelError as e:
        raise ModelError(f"{source}: {e}") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors from model.safetensors or a sharded model.safetensors.index.json."""
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        return load_file(str(single))
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        tensors: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(load_file(str(path / shard)))
        return tensors
    raise ModelError(
        f"{path}: no model.safetensors or model.safetensors.index.json; only safetensors checkpoints "
        "are loaded (convert .bin pickles with transformers' save_pretrained(safe_serialization=True))"
    )


def load_hf(path: str | Path) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    """(spec, state_dict in our names) from an HF-format dir; load with Transformer(spec).load_state_dict."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelError(f"{config_file}: not found; expected an HF model directory with config.json")
    spec = spec_from_hf_config(json.loads(config_file.read_text(encoding="utf-8")), source=str(config_file))
    state = {from_hf_key(k): v for k, v in _read_tensors(path).items()}
    # Non-persistent buffers some exporters include; we compute RoPE tables per forward.
    state = {k: v for k, v in state.items() if not k.endswith("rotary_emb.inv_freq")}
    if "embed_tokens.weight" not in state:
        raise ModelError(f"{path}: checkpoint has no model.embed_tokens.weight")
    if spec.tie_embeddings:
        state["lm_head.weight"] = state["embed_tokens.weight"]
    return spec, state
