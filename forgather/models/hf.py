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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from safetensors.torch import save_file
from torch import nn

from forgather.errors import ModelError
from forgather.filemodes import as_created
from forgather.models.hf_config import DEEPONE_MODEL_TYPE, spec_from_hf_config  # noqa: F401 (re-exported)
from forgather.models.spec import ModelSpec

_HF_ARCH = {"llama": ("llama", "LlamaForCausalLM"), "qwen3": ("qwen3", "Qwen3ForCausalLM")}


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


DEFAULT_MAX_SHARD_BYTES = 5 * 2**30  # above this, weights go into several files with an index (as HF does)


@dataclass
class TokenIds:
    """The tokenizer's special ids, written into config.json and generation_config.json so stock transformers
    knows where a document ends (without them it assumes Llama's 1/2 and `generate` never stops)."""

    bos: int | None = None
    eos: int | None = None
    pad: int | None = None

    def config_fields(self) -> dict[str, int]:
        return {f"{k}_token_id": v for k, v in (("bos", self.bos), ("eos", self.eos), ("pad", self.pad))
                if v is not None}


def generation_config(ids: TokenIds) -> dict[str, Any]:
    """generation_config.json: the special ids, so `generate` stops at the end-of-text token."""
    return {**ids.config_fields(), "_from_model_config": False}


def write_hf_weights(named: Iterable[tuple[str, torch.Tensor]], out: Path,
                     max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> torch.dtype:
    """Write (HF name, tensor) pairs as model.safetensors, or as model-0000i-of-0000n.safetensors plus
    model.safetensors.index.json when they exceed max_shard_bytes; tensors are held one shard at a time."""
    out.mkdir(parents=True, exist_ok=True)
    parts: list[list[str]] = []
    pending: dict[str, torch.Tensor] = {}
    size, total, dtype = 0, 0, None

    def flush() -> None:
        nonlocal pending, size
        if pending:
            save_file(pending, str(out / f".part-{len(parts):05d}.safetensors"), metadata={"format": "pt"})
            parts.append(list(pending))
            pending, size = {}, 0

    for name, tensor in named:
        tensor = tensor.detach().to("cpu").contiguous().clone()
        dtype = dtype or tensor.dtype
        nbytes = tensor.numel() * tensor.element_size()
        if pending and size + nbytes > max_shard_bytes:
            flush()
        pending[name] = tensor
        size, total = size + nbytes, total + nbytes
    flush()
    if len(parts) == 1:
        as_created(out / ".part-00000.safetensors")  # safetensors writes 0600
        os.replace(out / ".part-00000.safetensors", out / "model.safetensors")
    else:
        weight_map = {}
        for i, names in enumerate(parts):
            final = f"model-{i + 1:05d}-of-{len(parts):05d}.safetensors"
            as_created(out / f".part-{i:05d}.safetensors")
            os.replace(out / f".part-{i:05d}.safetensors", out / final)
            weight_map.update({name: final for name in names})
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    if dtype is None:
        raise ModelError("no weights to write")
    return dtype


def write_hf_config(spec: ModelSpec, out: Path, dtype: torch.dtype, ids: TokenIds | None = None) -> None:
    """config.json (with the tokenizer's special ids) and generation_config.json."""
    ids = ids or TokenIds()
    config = {**hf_config(spec, dtype), **ids.config_fields()}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out / "generation_config.json").write_text(json.dumps(generation_config(ids), indent=2) + "\n",
                                                encoding="utf-8")


def hf_named(state: dict[str, torch.Tensor], spec: ModelSpec) -> Iterator[tuple[str, torch.Tensor]]:
    """Our state dict as (HF name, tensor), without the tied head (HF re-ties it; safetensors refuses sharing)."""
    for key, value in state.items():
        if spec.tie_embeddings and key == "lm_head.weight":
            continue
        if hasattr(value, "full_tensor"):
            value = value.full_tensor()
        yield to_hf_key(key), value


def save_pretrained_hf(model_or_state_dict: nn.Module | dict[str, torch.Tensor], spec: ModelSpec,
                       out_dir: str | Path, ids: TokenIds | None = None,
                       max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> Path:
    """Write config.json + weights loadable by transformers.AutoModelForCausalLM (Llama/Qwen3)."""
    state = (model_or_state_dict.state_dict() if isinstance(model_or_state_dict, nn.Module)
             else dict(model_or_state_dict))
    if "embed_tokens.weight" not in state:
        raise ModelError("save_pretrained_hf: state dict has no embed_tokens.weight; is this a forgather Transformer?")
    out = Path(out_dir)
    dtype = write_hf_weights(hf_named(state, spec), out, max_shard_bytes)
    write_hf_config(spec, out, dtype, ids)
    return out


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of an HF model dir (model.safetensors or an index of shards) or a forgather checkpoint's
    per-rank model/ shards, read through the one reader of every weights layout."""
    from forgather.checkpoint.tensorstore import model_store

    if not any(p.exists() for p in (path / "model", path / "model.safetensors", path / "model.safetensors.index.json")):
        raise ModelError(
            f"{path}: no model.safetensors or model.safetensors.index.json; only safetensors checkpoints "
            "are loaded (convert .bin pickles with transformers' save_pretrained(safe_serialization=True))"
        )
    store = model_store(path)
    try:
        return {name: store.rows(name) for name in store.names()}
    finally:
        store.close()


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
