"""ModelSpec validation, parameter/FLOP arithmetic, presets and the shipped model YAMLs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from forgather.errors import ModelError
from forgather.resources import MODELS_DIR
from forgather.models.spec import (
    ARCHITECTURES,
    PRESETS,
    ModelSpec,
    flops_per_token,
    parameter_counts,
    preset,
    shape_for_target_params,
)

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = MODELS_DIR  # the bundled model projects


def test_spec_module_does_not_import_torch():
    code = "import sys, forgather.models.spec; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_architecture_defaults():
    llama, qwen, deep = (ModelSpec(architecture=a) for a in ARCHITECTURES)
    assert (llama.rope_theta, llama.tie_embeddings, llama.qk_norm) == (10000.0, False, False)
    assert (qwen.rope_theta, qwen.tie_embeddings, qwen.qk_norm) == (1e6, True, True)
    assert deep.qk_norm and deep.post_norm and not llama.post_norm
    assert llama.num_kv_heads == llama.num_heads
    assert llama.attn_head_dim == 512 // 8


@pytest.mark.parametrize(
    "fields, needle",
    [
        (dict(hidden_size=100, num_heads=3), "num_heads=3"),
        (dict(num_heads=8, num_kv_heads=3), "num_kv_heads=3"),
        (dict(architecture="gpt2"), "'gpt2'"),
        (dict(hidden_size=0), "hidden_size=0"),
        (dict(num_layers=-1), "num_layers=-1"),
        (dict(vocab_size=0), "vocab_size=0"),
        (dict(intermediate_size=0), "intermediate_size=0"),
        (dict(head_dim=0), "head_dim=0"),
        (dict(rope_theta=-1.0), "rope_theta=-1.0"),
    ],
)
def test_validate_names_the_bad_value(fields, needle):
    with pytest.raises(ModelError) as err:
        ModelSpec(**fields).validate()
    message = str(err.value)
    assert needle in message and "\n" not in message


def test_explicit_head_dim_lifts_divisibility():
    spec = ModelSpec(architecture="qwen3", hidden_size=96, num_heads=4, num_kv_heads=2, head_dim=32).validate()
    assert spec.attn_head_dim == 32


def test_from_dict_rejects_unknown_field():
    with pytest.raises(ModelError, match="n_embd"):
        ModelSpec.from_dict({"architecture": "llama", "n_embd": 64})


def _by_hand(spec: ModelSpec) -> int:
    h, d, i, v = spec.hidden_size, spec.attn_head_dim, spec.intermediate_size, spec.vocab_size
    layer = h * d * (2 * spec.num_heads + 2 * spec.num_kv_heads) + 3 * h * i + 2 * h
    layer += 2 * d if spec.qk_norm else 0
    return v * h * (1 if spec.tie_embeddings else 2) + spec.num_layers * layer + (0 if spec.post_norm else h)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_parameter_counts_and_flops(arch):
    spec = ModelSpec(architecture=arch, vocab_size=1000, hidden_size=64, num_layers=3, num_heads=4, num_kv_heads=2)
    total, non_embedding = parameter_counts(spec)
    assert total == _by_hand(spec)
    embed = 1000 * 64
    assert non_embedding == total - embed * (1 if spec.tie_embeddings else 2)  # the shared matrix removed once
    # the head's matmul is compute either way
    assert flops_per_token(spec, 128) == 6 * (non_embedding + embed) + 12 * 3 * 4 * 16 * 128


def test_tying_changes_total_but_not_non_embedding_or_flops():
    shape = dict(architecture="llama", vocab_size=1000, hidden_size=64, num_layers=3, num_heads=4, num_kv_heads=2)
    untied, tied = ModelSpec(**shape, tie_embeddings=False), ModelSpec(**shape, tie_embeddings=True)
    assert parameter_counts(untied)[0] - parameter_counts(tied)[0] == 1000 * 64
    assert parameter_counts(untied)[1] == parameter_counts(tied)[1]
    assert flops_per_token(untied, 128) == flops_per_token(tied, 128)


@pytest.mark.parametrize("name", PRESETS)
def test_presets_are_valid(name):
    spec = preset(name, architecture="qwen3", vocab_size=49152)
    assert parameter_counts(spec)[0] > 0


def test_presets_grow():
    totals = [parameter_counts(preset(n))[0] for n in PRESETS]
    assert totals == sorted(totals)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("target, vocab", [(30_000_000, 32000), (124_000_000, 49152), (1_000_000_000, 49152)])
@pytest.mark.parametrize("prefer_depth", [False, True])
def test_shape_for_target_params_within_5_percent(arch, target, vocab, prefer_depth):
    spec = shape_for_target_params(arch, target, vocab, prefer_depth=prefer_depth)
    assert spec.architecture == arch and spec.vocab_size == vocab
    assert abs(parameter_counts(spec)[0] - target) <= 0.05 * target


def test_prefer_depth_is_deeper():
    wide = shape_for_target_params("llama", 124_000_000, 49152)
    deep = shape_for_target_params("llama", 124_000_000, 49152, prefer_depth=True)
    assert deep.num_layers > wide.num_layers


def test_unreachable_target_is_a_model_error():
    with pytest.raises(ModelError, match="1,000"):
        shape_for_target_params("llama", 1000, 49152)


def load_model_yaml(path: Path) -> dict:
    """Minimal `extends:` resolution (the real loader lives in the config layer)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    base = data.pop("extends", None)
    return {**load_model_yaml(path.parent / base), **data} if base else data


SIZE_FILES = sorted(MODEL_DIR.glob("*/[0-9]*M.yaml"))


def test_expected_size_files_exist():
    names = {f"{p.parent.name}/{p.name}" for p in SIZE_FILES}
    for arch in ("llama", "qwen3"):
        assert {f"{arch}/4M.yaml", f"{arch}/30M.yaml", f"{arch}/124M.yaml"} <= names
    assert {"deepone/4M.yaml", "deepone/30M.yaml", "deepone/117M.yaml"} <= names


@pytest.mark.parametrize("path", SIZE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_model_yaml_sizes_are_honest(path):
    spec = ModelSpec.from_dict(load_model_yaml(path), source=str(path))
    assert spec.architecture == path.parent.name
    named = float(path.stem.removesuffix("M")) * 1e6
    total, _ = parameter_counts(spec)
    assert abs(total - named) <= 0.05 * named, f"{path.name}: {total:,} params"


@pytest.mark.parametrize("text", ["1e400", "1e30"])
def test_a_parameter_count_past_any_machine_is_refused_not_an_overflow(text):
    from forgather.models.spec import parse_param_count

    with pytest.raises(ValueError, match="past 1e\\+13 parameters"):  # 1e400 raised OverflowError (a traceback)
        parse_param_count(text)
    assert parse_param_count("70B") == 70_000_000_000
