"""`forgather model show` (torch-free shape/size/FLOPs report) and `forgather model import` (HF → model project)."""

from __future__ import annotations

import argparse
import os

import pytest
import torch

from forgather.commands.model import human_count, import_checkpoint, parameter_breakdown, parse_count, size_class
from forgather.errors import ModelError
from forgather.models.spec import ModelSpec, flops_per_token, parameter_counts, preset

from ..conftest import set_in_project
from . import forgather, one_line_error

os.environ.setdefault("OMP_NUM_THREADS", "1")


def test_top_level_help_lists_model_data_and_tokenizer(tmp_path):
    result = forgather("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("model", "data", "tokenizer"):
        assert command in result.stdout


def test_help_has_examples_outside_a_project(tmp_path):
    result = forgather("model", "show", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "--target-params" in result.stdout and "examples:" in result.stdout
    assert "forgather model import" in forgather("model", "--help", cwd=tmp_path).stdout


def test_show_in_project_reports_the_resolved_model_without_importing_torch(tiny_project):
    result = forgather("model", "show", cwd=tiny_project, probe_torch=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "TORCH_FREE"
    spec = ModelSpec(architecture="llama", vocab_size=300, hidden_size=64, num_layers=1, num_heads=4,
                     num_kv_heads=2, intermediate_size=128)  # models/toy/tiny.yaml over base.yaml
    total, non_embedding = parameter_counts(spec)
    out = result.stdout
    assert "../models/toy / tiny" in out and "1 layers × hidden 64" in out
    assert f"{total:,}  total" in out and f"{non_embedding:,}  non-embedding" in out
    assert f"{flops_per_token(spec, 64):,}" in out and "seq_len 64" in out  # data.block_size of the project
    assert "summary" in out


def test_show_other_size_of_the_projects_model_project_with_seq_len(tiny_project):
    result = forgather("model", "show", "--model-config", "base", "--seq-len", "128", cwd=tiny_project)
    assert result.returncode == 0, result.stderr
    assert "2 layers × hidden 64" in result.stdout and "seq_len 128" in result.stdout
    line = one_line_error(forgather("model", "show", "--model-config", "999M", cwd=tiny_project))
    assert line.startswith("forgather: error: flag --model-config: no model config '999M'")  # not project.yaml's


def test_show_124m_model_project_reads_as_124m_class(tmp_path):
    result = forgather("model", "show", "--model-project", "llama",
                       "--model-config", "124M", cwd=tmp_path, probe_torch=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "TORCH_FREE"
    assert "(123.9M)" in result.stdout and "a 124M-class llama" in result.stdout
    assert "19 layers × hidden 576, 9 heads / 3 kv (head_dim 64)" in result.stdout


def test_show_preset_and_target_params_outside_a_project(tmp_path):
    result = forgather("model", "show", "--preset", "small", "--architecture", "qwen3", "--vocab-size", "49152",
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{parameter_counts(preset('small', 'qwen3', 49152))[0]:,}  total" in result.stdout
    result = forgather("model", "show", "--target-params", "30M", "--prefer-depth", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "closest shape to 30.0M params (deep and thin)" in result.stdout


@pytest.mark.parametrize("text, value", [("124M", 124_000_000), ("1.5B", 1_500_000_000), ("30000000", 30_000_000),
                                         ("30_000_000", 30_000_000), ("500k", 500_000), ("3e7", 30_000_000)])
def test_target_params_accepts_suffixes_and_plain_counts(text, value):
    assert parse_count(text) == value


@pytest.mark.parametrize("text", ["12x", "", "-5M", "M", "0"])
def test_target_params_rejects_non_counts(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_count(text)


@pytest.mark.parametrize("arch, tied", [("llama", False), ("llama", True), ("qwen3", True), ("deepone", False)])
def test_parameter_breakdown_adds_up_to_the_total(arch, tied):
    spec = preset("mini", arch, 5000, tie_embeddings=tied)
    assert sum(parameter_breakdown(spec).values()) == parameter_counts(spec)[0]


def test_show_counts_a_tied_matrix_once_and_leaves_it_out_of_non_embedding(tmp_path):
    result = forgather("model", "show", "--preset", "mini", "--architecture", "qwen3", "--vocab-size", "5000",
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    spec = preset("mini", "qwen3", 5000)
    assert spec.tie_embeddings
    total, non_embedding = parameter_counts(spec)
    assert non_embedding == total - 5000 * 384  # the shared matrix once, not twice and not zero times
    assert f"{total:,}  total" in result.stdout and f"{non_embedding:,}  non-embedding" in result.stdout
    assert "(tied: also the lm_head)" in result.stdout and "· lm_head" not in result.stdout


def test_show_says_what_a_size_name_is_at_the_vocab_in_use(tmp_path):
    result = forgather("model", "show", "--model-project", "llama", "--model-config",
                       "4M", "--vocab-size", "8192", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    total = parameter_counts(ModelSpec(architecture="llama", vocab_size=8192, hidden_size=64, num_layers=2,
                                       num_heads=4, num_kv_heads=2, intermediate_size=192))[0]
    assert human_count(total) == "1.1M"
    assert result.stdout.splitlines()[0].endswith("4M.yaml: 1.1M at vocab 8,192")
    assert "'4M' is its size at its model project's vocab 32,000; at vocab 8,192 it has 1.1M parameters" in result.stdout


def test_show_in_a_project_names_the_model_projects_own_vocab(tiny_project):
    set_in_project(tiny_project, "model", "project: llama")
    set_in_project(tiny_project, "model", "config: 4M")
    set_in_project(tiny_project, "model", "arch: {vocab_size: 8192}")
    result = forgather("model", "show", cwd=tiny_project)
    assert result.returncode == 0, result.stderr
    assert "(model " in result.stdout and "/ 4M): 1.1M at vocab 8,192" in result.stdout
    assert "'4M' is its size at its model project's vocab 32,000" in result.stdout
    at_its_own_vocab = forgather("model", "show", "--model-project", "llama",
                                 "--model-config", "4M", cwd=tiny_project)
    assert "is its size" not in at_its_own_vocab.stdout and "at vocab" not in at_its_own_vocab.stdout.splitlines()[0]


def test_counts_print_as_people_quote_them():
    assert (human_count(123_912_768), size_class(123_912_768)) == ("123.9M", "124M")
    assert (human_count(1_543_000_000), size_class(1_543_000_000)) == ("1.5B", "1.5B")
    assert size_class(4_194_304) == "4.2M"


@pytest.mark.parametrize("args, needle", [
    (["--target-params", "12x"], "is not a parameter count"),
    (["--preset", "small", "--target-params", "1M"], "not allowed with argument"),
    (["--model-project", "llama", "--model-config", "12M"], "did you mean '124M'"),
    (["--model-project", "llama"], "needs --model-config"),
    (["--architecture", "qwen3"], "--architecture applies to --preset"),
    ([], "or say which model: --model-project"),
])
def test_user_mistakes_are_one_line_errors(tmp_path, args, needle):
    assert needle in one_line_error(forgather("model", "show", *args, cwd=tmp_path))


# ------------------------------------------------------------------------------------------- import

def hf_checkpoint(path, arch: str = "llama"):
    """A tiny random HF model saved to path; returns the model (eval mode)."""
    transformers = pytest.importorskip("transformers")
    common = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    if arch == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common, rope_theta=50000.0))
    else:
        model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**common, head_dim=32,
                                                                       tie_word_embeddings=True))
    with torch.no_grad():  # non-trivial norms so a wiring mistake shows in the logits
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    model.save_pretrained(str(path))
    return model.eval()


def assert_same_logits(hf_model, weights_dir):
    from forgather.models.hf import load_hf
    from forgather.models.transformer import Transformer

    spec, state = load_hf(weights_dir)
    ours = Transformer(spec)
    ours.load_state_dict(state, strict=True)
    x = torch.randint(0, 96, (2, 13), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (ours.eval()(x) - hf_model(x).logits).abs().max().item() <= 1e-4


def test_import_writes_a_usable_model_project_with_equal_logits(tmp_path, tiny_project):
    hf_model = hf_checkpoint(tmp_path / "SmolTest", "llama")
    (tmp_path / "SmolTest" / "tokenizer.json").write_text("{}")
    out = tmp_path / "imported"
    result = forgather("model", "import", str(tmp_path / "SmolTest"), "--output", str(out), cwd=tiny_project)
    assert result.returncode == 0, result.stderr
    weights = out / "weights" / "SmolTest"
    assert (out / "SmolTest.yaml").is_file()
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {p.name for p in weights.iterdir()}
    assert "project: ../imported" in result.stdout and "config: SmolTest" in result.stdout  # relative to the project
    assert str(weights) in result.stdout
    copied = next(l for l in result.stdout.splitlines() if l.startswith("copied "))
    assert "tokenizer.json" in copied and copied.endswith(f"from {tmp_path / 'SmolTest'}")
    assert "no config key loads them" not in result.stdout
    assert "init_from: ../imported/weights/SmolTest" in result.stdout and "forgather train --init-model" in result.stdout
    assert_same_logits(hf_model, weights)

    # The printed lines work: the project now shows the imported model.
    set_in_project(tiny_project, "model", "project: ../imported")
    set_in_project(tiny_project, "model", "config: SmolTest")
    shown = forgather("model", "show", cwd=tiny_project)
    assert shown.returncode == 0, shown.stderr
    assert "2 layers × hidden 64" in shown.stdout and "rope_theta 50000" in shown.stdout
    # ... and the printed init_from resolves, from the project, to the imported weights.
    dry = forgather("config", "show", "--set", "train.init_from=../imported/weights/SmolTest", cwd=tiny_project)
    assert dry.returncode == 0, dry.stderr
    assert (tiny_project / "../imported/weights/SmolTest/config.json").resolve().is_file()


def test_import_qwen3_with_tied_embeddings(tmp_path):
    hf_model = hf_checkpoint(tmp_path / "hf", "qwen3")
    spec, yaml_path, weights = import_checkpoint(tmp_path / "hf", tmp_path / "out", "tiny")
    assert spec.architecture == "qwen3" and spec.tie_embeddings and spec.head_dim == 32
    assert yaml_path == tmp_path / "out" / "tiny.yaml"
    assert_same_logits(hf_model, weights)


def test_import_refuses_to_overwrite_and_names_bad_input(tmp_path):
    hf_checkpoint(tmp_path / "hf")
    import_checkpoint(tmp_path / "hf", tmp_path / "out", "m")
    with pytest.raises(ModelError, match="already exists; pass --force"):
        import_checkpoint(tmp_path / "hf", tmp_path / "out", "m")
    import_checkpoint(tmp_path / "hf", tmp_path / "out", "m", force=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="config.json"):
        import_checkpoint(tmp_path / "empty", tmp_path / "out", "e")
    with pytest.raises(ModelError, match="not a directory"):
        import_checkpoint(tmp_path / "missing", tmp_path / "out", "x")


def test_show_preset_and_target_params_inside_a_project_use_its_vocab_and_block_size(tmp_path):
    (tmp_path / "notes.md").write_text("a few words for a project\n")
    assert forgather("init", "proj", "--data", "notes.md", "--vocab-size", "300", "--block-size", "64",
                     cwd=tmp_path).returncode == 0
    shown = forgather("model", "show", "--preset", "small", cwd=tmp_path / "proj")
    assert shown.returncode == 0, shown.stderr  # it showed vocab 32,000 and 2,048 positions: not what train builds
    assert "vocab 300" in shown.stdout and "max positions 64" in shown.stdout and "preset small" in shown.stdout
    target = forgather("model", "show", "--target-params", "1.5B", "--prefer-depth", cwd=tmp_path / "proj")
    config = forgather("config", "show", "--target-params", "1.5B", "--prefer-depth", cwd=tmp_path / "proj")
    layers = next(line.split(":")[1].strip() for line in config.stdout.splitlines() if "num_layers:" in line)
    assert f"{layers} layers" in target.stdout and "vocab 300" in target.stdout
