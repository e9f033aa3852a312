"""An HF config.json read as a ModelSpec (torch-free, so the launcher can check pretrained weights before any rank
starts): Llama, Qwen3, and DeepOne's own config (hf.py writes it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .spec import ModelSpec

DEEPONE_MODEL_TYPE = "forgather_deepone"


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


def init_from_problem(spec: ModelSpec, directory: Path) -> str | None:
    """Why the HF model dir `directory` (train.init_from) cannot load into `spec`, or None when it fits."""
    config_file = Path(directory) / "config.json"
    if not config_file.is_file():
        return f"train.init_from {directory}: no config.json there; point it at an HF model directory"
    loaded = spec_from_hf_config(json.loads(config_file.read_text(encoding="utf-8")), str(config_file))
    mismatched = {k: (v, getattr(spec, k)) for k, v in loaded.to_dict().items()
                  if k not in ("max_position_embeddings", "init_std") and getattr(spec, k) != v}
    if not mismatched:
        return None
    fields = ", ".join(f"{k}: weights {a!r} vs config {b!r}" for k, (a, b) in sorted(mismatched.items()))
    return (f"train.init_from {directory}: the weights do not fit model.arch ({fields}); point "
            "model.project/model.config at the imported model project")
